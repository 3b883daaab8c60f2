"""The MLDS service: the catalogue stored at start-up, PSAD's requests decided as they come, the
coordinators' HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from raccrochage_contracts.events.clause_v1 import MissionCompleted
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_platform.broker import jetstream
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger
from raccrochage_platform.privacy import answer_privacy
from raccrochage_platform.service import ServiceContext, ServiceSpec

from ..adapters import privacy, stream_replay
from ..adapters.retention import rules as retention_rules
from ..config import MldsSettings
from ..domain.catalogue import catalogue, read_directory
from ..domain.dates import SchoolYear
from ..domain.survey import Survey
from ..reference import directory_text
from ..service_layer import candidacies, dispositifs
from ..service_layer.survey import survey_from_events
from ..service_layer.unit_of_work import MldsUnitOfWork, SqlMldsUnitOfWork
from .api import mlds_router
from .demo import demo_main_job

log = get_logger(__name__)

# The durable consumers declared in deploy/topology.toml; also the inbox names they claim in.
FROM_PSAD = candidacies.FROM_PSAD
FROM_CLAUSE = "mlds_clause"


async def build(context: ServiceContext) -> None:
    settings: MldsSettings = context.settings  # type: ignore[assignment]
    unit_of_work = context.unit_of_work(SqlMldsUnitOfWork)
    # The directory's sites not stored yet (all of them on a first start); a stored site keeps
    # the capacity a coordinator set and its places. Replicas starting together add each once.
    now = datetime.now(UTC)
    sites = catalogue(read_directory(directory_text()), settings.default_capacities(), now)
    added = await dispositifs.load_catalogue(unit_of_work(), sites)
    log.info("catalogue_loaded", sites=len(sites), added=len(added))

    psad = context.consumer(
        FROM_PSAD,
        unit_of_work,
        batch_size=settings.consumer_batch,
        concurrency=settings.consumer_concurrency,
    )

    # Runs inside the consumer's unit of work, which claimed the event in the inbox as `mlds_psad`
    # and commits the batch; FOQUALE's requests on the same subject are skipped.
    @psad.on_batch("psad.solution.requested.v1")
    async def solutions_requested(uow: MldsUnitOfWork, events: list[Event[SolutionRequested]]) -> None:
        requests = [(event.envelope, event.data) for event in events]
        await candidacies.solutions_requested(uow, requests, datetime.now(UTC))

    clause = context.consumer(FROM_CLAUSE, unit_of_work)

    # A mission ended in a job or an apprenticeship: the youth's enrolment exits there.
    @clause.on("clause.mission.completed.v1")
    async def mission_completed(uow: MldsUnitOfWork, event: Event[MissionCompleted]) -> None:
        await candidacies.mission_completed(uow, event.envelope, event.data, datetime.now(UTC))

    js = jetstream(context.broker)

    async def survey(year: SchoolYear) -> Survey:
        return survey_from_events(await stream_replay.replay(js), year, settings.survey_threshold)

    answer_privacy(context, privacy.RECORDS)
    context.app.include_router(mlds_router(unit_of_work, settings.token_key, survey))


spec = ServiceSpec(
    name="mlds",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    retention=retention_rules,
    settings=MldsSettings,
    main_job=demo_main_job,
    main_job_order=30,  # after PSAD's (20): its cases are open
)
