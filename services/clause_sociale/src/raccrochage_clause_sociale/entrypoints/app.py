"""clause_sociale's service: the MLDS's enrolments in, the proposals' deadlines on a timer, the
HTTP API of buyers, companies and MLDS tutors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger
from raccrochage_platform.privacy import answer_privacy
from raccrochage_platform.service import ServiceContext, ServiceSpec

from ..adapters import privacy
from ..adapters.retention import rules as retention_rules
from ..config import ClauseSocialeSettings
from ..service_layer import handlers
from ..service_layer.commands import RunProposalDeadlines
from ..service_layer.unit_of_work import ClauseUnitOfWork, SqlClauseUnitOfWork
from .api import clause_router
from .demo import demo_main_job

log = get_logger(__name__)

# Durable consumer, declared in deploy/topology.toml.
FROM_MLDS = "clause_sociale_mlds"


async def build(context: ServiceContext) -> None:
    settings: ClauseSocialeSettings = context.settings  # type: ignore[assignment]
    unit_of_work = context.unit_of_work(SqlClauseUnitOfWork)
    mlds = context.consumer(FROM_MLDS, unit_of_work, batch_size=settings.consumer_batch)

    # Runs inside the unit of work the consumer opens, claims (inbox) and commits.
    @mlds.on("mlds.enrolment.accepted.v1")
    async def enrolment_accepted(uow: ClauseUnitOfWork, event: Event) -> None:
        await handlers.record_enrolment(uow, event.data)

    async def proposal_deadlines() -> None:
        # Each pass decides from the time it runs at; the reminder and the lapse are each
        # recorded once (a mission saved at its version), so replicas may run it side by side.
        report = await handlers.run_proposal_deadlines(
            RunProposalDeadlines(datetime.now(UTC)), unit_of_work()
        )
        if report.reminded or report.lapsed:
            log.info("proposal_deadlines", reminded=len(report.reminded), lapsed=len(report.lapsed))

    context.every(settings.deadlines_timer_seconds, proposal_deadlines, name="proposal_deadlines")
    answer_privacy(context, privacy.RECORDS)
    context.app.include_router(clause_router(unit_of_work, settings.token_key, context.broker))


spec = ServiceSpec(
    name="clause_sociale",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    retention=retention_rules,
    settings=ClauseSocialeSettings,
    main_job=demo_main_job,
    main_job_order=40,  # after repérage's campaign (10) and PSAD's cases (20), whose youths it places
)
