"""FOQUALE's service: PSAD's requests answered with seats, partners' seat records applied and
answered, partners' requests for their answers, the clocks.

PSAD's requests are handled a fetched batch at a time, in the consumer's transaction
(`handlers.request_seats`): one inbox claim, one read of the offers, one conditional UPDATE per
seat, one insert of the reservations and one of the outbox, one commit. Partners' records are
each applied in a transaction of their own (`service_layer.partners`): that consumer is given
`EachHandlerCommits`, which claims nothing and commits nothing itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_platform.broker import connection
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger
from raccrochage_platform.privacy import answer_privacy
from raccrochage_platform.service import ServiceContext, ServiceSpec
from raccrochage_platform.uow import AbstractUnitOfWork

from ..adapters import privacy
from ..adapters.partners import partner_limits, seat_partners
from ..adapters.retention import rules as retention_rules
from ..config import FoqualeSettings
from ..domain.policy import Policy
from ..service_layer import handlers
from ..service_layer.commands import CheckFreshness, ExpireReservations, PruneFeedback, RequestSeat
from ..service_layer.unit_of_work import FoqualeUnitOfWork, SqlFoqualeUnitOfWork
from .api import foquale_router
from .demo import demo_main_job
from .feedback_replay import feedback_replay
from .partner_feed import partner_consumers
from .pending_reservations import pending_reservations

log = get_logger(__name__)

# Durable consumers, declared in deploy/topology.toml.
FROM_PSAD = "foquale_psad"


class EachHandlerCommits(AbstractUnitOfWork):
    """The consumer's unit of work when each handler runs its own: it claims every event (the
    handler's own claim is the inbox) and commits nothing. A batch that fails is handled again
    one event at a time; the events already committed are then skipped by their handler's
    inbox claim."""

    source = "raccrochage/foquale"

    async def claim(self, consumer: str, events: Sequence[tuple[uuid.UUID, str]]) -> set[uuid.UUID]:
        return {event_id for event_id, _ in events}

    async def _begin(self) -> None:
        return None

    async def _commit(self, events: list[CloudEvent]) -> None:
        if events:
            raise RuntimeError("FOQUALE's handlers add their events to their own unit of work")

    async def _rollback(self) -> None:
        return None


async def run_timers(unit_of_work, policy: Policy, batch: int, now: datetime) -> tuple[int, int]:
    """One pass of the clocks: expired reservations free their seats, stale offers are flagged
    or unpublished. Each pass takes at most `batch` rows; the next pass takes the rest."""
    expired = await handlers.expire_reservations(ExpireReservations(now, batch), unit_of_work())
    changed = await handlers.check_freshness(CheckFreshness(now, batch), unit_of_work(), policy)
    return expired, changed


async def build(context: ServiceContext) -> None:
    settings: FoqualeSettings = context.settings  # type: ignore[assignment]
    policy = settings.policy()
    unit_of_work = context.unit_of_work(SqlFoqualeUnitOfWork)

    psad = context.consumer(
        FROM_PSAD,
        unit_of_work,
        batch_size=settings.consumer_batch,
        concurrency=settings.consumer_concurrency,
    )

    @psad.on_batch("psad.solution.requested.v1")
    async def solution_requested(uow: FoqualeUnitOfWork, events: list[Event[SolutionRequested]]) -> None:
        now = datetime.now(UTC)
        commands = [RequestSeat.from_event(event.envelope, event.data, now) for event in events]
        ours = [cmd for cmd in commands if cmd is not None]  # not a request for an MLDS place, ...
        if not ours:
            return
        for cmd, answer in zip(ours, await handlers.request_seats(uow, ours, policy), strict=True):
            if answer.refused is not None:
                log.info("seat_refused", request_id=str(cmd.request.request_id), reason=answer.refused.value)

    partners = seat_partners()
    # One durable per partner, each held to the partner's rate and backlog (deploy/partners.toml).
    await partner_consumers(context, unit_of_work, EachHandlerCommits, partners, partner_limits())
    log.info("seat_partners", partners=sorted(partners))
    # Partners' requests (core NATS request/reply): their last answers, the reservations that
    # wait for theirs.
    for requests in (feedback_replay(unit_of_work), pending_reservations(unit_of_work, partners)):
        await requests.subscribe(connection(context.broker))
        context.background.append(requests.run_until_cancelled)

    async def timers() -> None:
        expired, changed = await run_timers(unit_of_work, policy, settings.timer_batch, datetime.now(UTC))
        if expired or changed:
            log.info("clocks_applied", reservations_expired=expired, offers_changed=changed)

    context.every(settings.timer_seconds, timers, name="timers")

    async def feedback_pruning() -> None:
        command = PruneFeedback(settings.feedback_kept, settings.timer_batch)
        pruned = await handlers.prune_feedback(command, unit_of_work())
        if pruned:
            log.info("partner_feedback_pruned", answers=pruned)

    context.every(settings.timer_seconds, feedback_pruning, name="feedback_pruning")
    answer_privacy(context, privacy.RECORDS)
    context.app.include_router(foquale_router(unit_of_work, context.engine, settings.token_key))


spec = ServiceSpec(
    name="foquale",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    retention=retention_rules,
    settings=FoqualeSettings,
    main_job=demo_main_job,
    main_job_order=30,  # after PSAD's: the cases it opened ask for seats
)
