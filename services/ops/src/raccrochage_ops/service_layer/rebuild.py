"""Rebuild the read models from the streams: empty them, forget what ops handled, and start ops'
durable consumers again from the first message of their streams (kept 400 days).

The projection rules commute (domain/projection.py), so the replay gives the same rows as the
live projection, whatever the interleaving of the streams. The caller stops its consumers
before and starts new ones after.
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from raccrochage_platform.topology import ConsumerDef, declare_consumer

from .unit_of_work import OpsUnitOfWork


async def rebuild(uow: OpsUnitOfWork, js: JetStreamContext, consumers: list[ConsumerDef]) -> None:
    async with uow:
        await uow.projections.erase()
        await uow.projections.forget_handled([definition.durable for definition in consumers])
        await uow.commit()
    for definition in consumers:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(definition.stream, definition.durable)
        await declare_consumer(js, definition)
