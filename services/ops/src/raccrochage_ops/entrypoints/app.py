"""Ops' service: one durable consumer per service stream projecting into the read models, a
timer that exports pipeline health to Prometheus, and the dashboard (pages and JSON)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from raccrochage_platform.broker import jetstream
from raccrochage_platform.consumer import EventConsumer
from raccrochage_platform.logging import get_logger
from raccrochage_platform.privacy import answer_privacy
from raccrochage_platform.service import ServiceContext, ServiceSpec

from ..adapters import privacy
from ..adapters.retention import rules as retention_rules
from ..config import OpsSettings
from ..service_layer import projecting
from ..service_layer.rebuild import rebuild
from ..service_layer.unit_of_work import SqlOpsUnitOfWork
from .api import OpsWeb, install
from .demo import demo_main_job

log = get_logger(__name__)


async def build(context: ServiceContext) -> None:
    settings: OpsSettings = context.settings  # type: ignore[assignment]
    unit_of_work = context.unit_of_work(SqlOpsUnitOfWork)
    js = jetstream(context.broker)

    def projection_consumers() -> list[EventConsumer]:
        made = []
        for durable, prefix in projecting.CONSUMERS.items():
            consumer = context.consumer(durable, unit_of_work, batch_size=settings.consumer_batch)
            projecting.register(consumer, context.registry, prefix)
            made.append(consumer)
        return made

    consumers = projection_consumers()  # started by the platform with the service
    rebuilding = asyncio.Lock()

    async def rebuild_projections(who: str) -> list[str]:
        """Stop the projection, rebuild it from the streams, start new consumers (an
        EventConsumer does not start twice). Figures fill up again while the replay runs."""
        async with rebuilding:
            for consumer in consumers:
                await consumer.stop()
                context.consumers.remove(consumer)
            log.warning("projections_rebuilding", by=who)
            await rebuild(unit_of_work(), js, [consumer.definition for consumer in consumers])
            consumers[:] = projection_consumers()
            for consumer in consumers:
                await consumer.start()
            return [consumer.name for consumer in consumers]

    producing = sorted(name for name, s in context.topology.services.items() if s.stream)
    web = OpsWeb(
        unit_of_work=unit_of_work,
        js=js,
        topology=context.topology,
        registry=context.registry,
        token_key=settings.token_key,
        service_urls=settings.urls,
        producing=producing,
        rebuild=rebuild_projections,
    )
    install(context.app, web)

    # Prometheus scrapes ops' /metrics: the gauges hold the last reading.
    context.every(settings.health_seconds, web.health, name="health_reading", at_start=True)
    answer_privacy(context, privacy.RECORDS)


spec = ServiceSpec(
    name="ops",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    retention=retention_rules,
    settings=OpsSettings,
    main_job=demo_main_job,
    main_job_order=90,  # after the services' demos: it shows what they produced
)
