"""PSAD's service: cases opened from repérage's events, closed or moved on by counsellors and
providers' answers, timers for the clocks, the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger
from raccrochage_platform.privacy import answer_privacy
from raccrochage_platform.service import ServiceContext, ServiceSpec

from ..adapters import privacy
from ..adapters.retention import rules as retention_rules
from ..config import PsadSettings
from ..service_layer import answers, handover, missions
from ..service_layer.timers import apply_timers
from ..service_layer.unit_of_work import PsadUnitOfWork, SqlPsadUnitOfWork
from .api import psad_router
from .demo import demo_main_job

log = get_logger(__name__)

# Durable consumers, declared in deploy/topology.toml.
FROM_REPERAGE = "psad_reperage"
FROM_PSAD = "psad_transfers"
FROM_FOQUALE = "psad_foquale"
FROM_MLDS = "psad_mlds"
FROM_CLAUSE = "psad_clause"


async def build(context: ServiceContext) -> None:
    settings: PsadSettings = context.settings  # type: ignore[assignment]
    policy = settings.policy()
    unit_of_work = context.unit_of_work(SqlPsadUnitOfWork, policy=policy)
    # Handlers run inside the unit of work the consumer opens, claims and commits.
    reperage = context.consumer(
        FROM_REPERAGE,
        unit_of_work,
        batch_size=settings.consumer_batch,
        concurrency=settings.consumer_concurrency,
    )

    @reperage.on_batch("reperage.youth.identified.v1")
    async def identified(uow: PsadUnitOfWork, events: list[Event]) -> None:
        opened = await handover.open_cases(uow, events)
        log.info("cases_opened", received=len(events), opened=opened)

    @reperage.on("reperage.youth.reported_again.v1")
    async def reported_again(uow: PsadUnitOfWork, event: Event) -> None:
        await handover.reported_again(uow, event)

    @reperage.on_batch("reperage.youth.found.v1")
    async def found(uow: PsadUnitOfWork, events: list[Event]) -> None:
        closed = await handover.found(uow, events)
        # Partners' enrolments close cases one at a time all day long, and the metrics count
        # them already: a line per batch only when some youth had no open case (`found`
        # logged each one).
        (log.debug if closed == len(events) else log.info)("cases_found", received=len(events), closed=closed)

    context.consumer(FROM_PSAD, unit_of_work).on("psad.case.transferred.v1")(handover.transferred_in)
    foquale = context.consumer(FROM_FOQUALE, unit_of_work)
    for kind in ("foquale.placement.confirmed.v1", "foquale.placement.refused.v1"):
        foquale.on(kind)(answers.apply_answer)
    mlds = context.consumer(FROM_MLDS, unit_of_work)
    for kind in ("mlds.enrolment.accepted.v1", "mlds.enrolment.refused.v1"):
        mlds.on(kind)(answers.apply_answer)
    context.consumer(FROM_CLAUSE, unit_of_work).on("clause.mission.completed.v1")(missions.mission_completed)

    async def timers() -> None:
        await apply_timers(unit_of_work(), datetime.now(UTC))

    context.every(settings.timer_seconds, timers, name="timers")
    answer_privacy(context, privacy.RECORDS)
    context.app.include_router(psad_router(unit_of_work, policy, settings.token_key, context.broker))


spec = ServiceSpec(
    name="psad",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    retention=retention_rules,
    settings=PsadSettings,
    main_job=demo_main_job,
    main_job_order=20,  # after repérage's demo campaign
)
