"""A partner reads its last answers again: `partner.<partner_id>.feedback.replay.v1`, a core NATS
request answered from FOQUALE's database.

A partner can read no stream: its NATS user publishes under `partner.<its id>.>` only and reads
its own inbox only (`_INBOX.partner_<its id>.>`). So the subject names the partner (it cannot ask
as another), and the answer goes to that partner's inbox and nowhere else: a request whose reply
subject is not its inbox gets no answer.

Request body (JSON, optional): `{"last": N}`, 1 to 500, 50 by default. Answer:
`{"status": "ok", "partner_id": ..., "feedback": [envelope, ...]}`, oldest first, each envelope as
published on `partner.<id>.seats.feedback.v1`; or `{"status": "rejected", "errors": [{"field",
"message"}]}`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from raccrochage_platform.logging import error_fields, get_logger

from ..adapters.partners import inbox_prefix
from ..service_layer.unit_of_work import FoqualeUnitOfWork

log = get_logger(__name__)
M = TypeVar("M", bound=BaseModel)
SUBJECT = "partner.*.feedback.replay.v1"
QUEUE = "foquale"  # several FOQUALE processes share the requests
LAST_BY_DEFAULT = 50
LAST_AT_MOST = 500


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    last: int = Field(LAST_BY_DEFAULT, ge=1, le=LAST_AT_MOST, description="how many answers, newest kept")


def _read_request(model: type[M], body: bytes) -> M | dict:
    """The request's body as `model` (an empty body is `{}`), or the rejected answer naming each
    field at fault."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as error:
        errors = [
            {"field": ".".join(map(str, e["loc"])) or "*", "message": e["msg"]}
            for e in error.errors(include_input=False, include_url=False)
        ]
        return {"status": "rejected", "errors": errors}


async def answer_partner(
    model: type[M], subject: str, reply: str, body: bytes, answer: Callable[[str, M], Awaitable[dict]]
) -> dict | None:
    """The answer to a partner's request on `partner.<id>....`: `answer(partner_id, request)`
    once the body reads as `model`, the rejected answer if it does not; None when none may be
    sent (the reply subject is not that partner's own inbox)."""
    partner_id = subject.split(".")[1]
    if not reply.startswith(f"{inbox_prefix(partner_id)}."):
        return None
    request = _read_request(model, body)
    return request if isinstance(request, dict) else await answer(partner_id, request)


async def replay(
    unit_of_work: Callable[[], FoqualeUnitOfWork], subject: str, reply: str, body: bytes
) -> dict | None:
    """The answer to one replay request (`answer_partner`)."""

    async def latest(partner_id: str, request: ReplayRequest) -> dict:
        async with unit_of_work() as uow:
            feedback = await uow.feedback.latest(partner_id, request.last)
        return {"status": "ok", "partner_id": partner_id, "feedback": feedback}

    return await answer_partner(ReplayRequest, subject, reply, body, latest)


# An answer to one request: (subject, reply subject, body) -> the answer, or None to send none.
Answer = Callable[[str, str, bytes], Awaitable[dict | None]]


class PartnerRequests:
    """Answers partners' requests on one subject pattern, on a plain nats-py queue subscription
    shared by the FOQUALE processes, one at a time (each is one indexed read)."""

    def __init__(self, subject: str, answer: Answer) -> None:
        self.subject = subject
        self.answer = answer
        self._subscription: Subscription | None = None

    async def subscribe(self, nc: Client) -> None:
        self._subscription = await nc.subscribe(self.subject, queue=QUEUE, cb=self._on_request)

    async def run_until_cancelled(self) -> None:
        """A background job of the service: lives as long as it, unsubscribes when it stops."""
        try:
            await asyncio.Event().wait()
        finally:
            if self._subscription is not None:
                await self._subscription.unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        try:
            answer = await self.answer(msg.subject, msg.reply or "", msg.data)
            if answer is None:
                log.warning(
                    "partner_request_not_to_its_inbox",
                    subject=self.subject,
                    partner_id=msg.subject.split(".")[1],
                )
                return
            await msg.respond(json.dumps(answer).encode())
        except Exception as error:
            log.error("partner_request_failed", subject=self.subject, **error_fields(error))


def feedback_replay(unit_of_work: Callable[[], FoqualeUnitOfWork]) -> PartnerRequests:
    return PartnerRequests(SUBJECT, functools.partial(replay, unit_of_work))
