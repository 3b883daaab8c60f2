"""PSAD's service: cases opened from repérage's events, closed or moved on by counsellors and
providers' answers, timers for the clocks, the HTTP API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import error_fields, get_logger
from raccrochage_platform.outbox import Leases
from raccrochage_platform.service import ServiceContext, ServiceSpec
from sqlalchemy.ext.asyncio import AsyncSession

from ..adapters.repository import CaseRepository
from ..config import PsadSettings
from ..service_layer import answers, handover
from ..service_layer.cases import Cases
from ..service_layer.timers import apply_timers
from .api import psad_router
from .demo import demo_main_job

log = get_logger(__name__)

# Durable consumers, declared in deploy/topology.toml.
FROM_REPERAGE = "psad_reperage"
FROM_PSAD = "psad_transfers"
FROM_FOQUALE = "psad_foquale"
FROM_MLDS = "psad_mlds"


async def build(context: ServiceContext) -> None:
    settings: PsadSettings = context.settings  # type: ignore[assignment]
    policy = settings.policy()
    outbox = context.outbox
    batch = settings.consumer_batch

    def repo(session: AsyncSession) -> CaseRepository:
        return CaseRepository(session, policy)

    reperage = context.consumer(FROM_REPERAGE, batch_size=batch, concurrency=settings.consumer_concurrency)

    @reperage.on_batch("reperage.youth.identified.v1")
    async def identified(session: AsyncSession, events: list[Event]) -> None:
        opened = await handover.open_cases(repo(session), outbox, events)
        log.info("cases_opened", received=len(events), opened=opened)

    @reperage.on("reperage.youth.reported_again.v1")
    async def reported_again(session: AsyncSession, event: Event) -> None:
        await handover.reported_again(repo(session), event)

    @reperage.on_batch("reperage.youth.found.v1")
    async def found(session: AsyncSession, events: list[Event]) -> None:
        closed = await handover.found(repo(session), outbox, events)
        # Partners' enrolments close cases one at a time all day long: a line per batch was 5 %
        # of PSAD's py-spy samples at 200 enrolments/s, and the metrics count them already. At
        # INFO only when some youth had no open case (`handover.found` logged each one).
        (log.debug if closed == len(events) else log.info)("cases_found", received=len(events), closed=closed)

    @reperage.on_batch_in_one_statement("reperage.youth.found.v1")
    async def found_in_one_statement(
        conn: asyncpg.Connection, consumer: str, events: list[Event], leases: Leases | None
    ) -> bool:
        return await handover.found_in_one_statement(conn, outbox, policy, consumer, events, leases)

    transfers = context.consumer(FROM_PSAD)

    @transfers.on("psad.case.transferred.v1")
    async def transferred(session: AsyncSession, event: Event) -> None:
        await handover.transferred_in(repo(session), outbox, event)

    async def answer(session: AsyncSession, event: Event) -> None:
        await answers.apply_answer(repo(session), outbox, event)

    foquale = context.consumer(FROM_FOQUALE)
    for kind in ("foquale.placement.confirmed.v1", "foquale.placement.refused.v1"):
        foquale.on(kind)(answer)
    mlds = context.consumer(FROM_MLDS)
    for kind in ("mlds.enrolment.accepted.v1", "mlds.enrolment.refused.v1"):
        mlds.on(kind)(answer)

    async def timers() -> None:
        while True:
            await asyncio.sleep(settings.timer_seconds)
            try:
                async with context.sessions() as session, session.begin():
                    await apply_timers(repo(session), outbox, datetime.now(UTC))
            except Exception as error:
                log.error("timers_failed", **error_fields(error))

    context.background.append(timers)
    cases = Cases(context.sessions, outbox, policy)
    context.app.include_router(psad_router(cases, settings.token_key, context.broker))


spec = ServiceSpec(
    name="psad",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    settings=PsadSettings,
    main_job=demo_main_job,
    main_job_order=20,  # after repérage's demo campaign
)
