"""The composition root every service process runs: settings, logs, db, broker, relay, consumers, HTTP.

A service package declares a `ServiceSpec` under the `raccrochage.services` entry point; the
rig runs `raccrochage serve NAME` for each, and this module builds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from faststream.nats import NatsBroker
from raccrochage_contracts.registry import Registry, load_all
from sqlalchemy.ext.asyncio import AsyncEngine

from . import loop as event_loop
from .broker import jetstream, make_broker
from .consumer import EventConsumer
from .db import make_engine, while_exclusive
from .http import health_router
from .logging import configure_logging, error_fields, get_logger
from .outbox import OutboxRelay
from .retention import RetentionRule, RetentionSettings, schedule_retention
from .settings import ServiceSettings, load_settings
from .topology import Topology, load_topology
from .uow import AbstractUnitOfWork, SqlAlchemyUnitOfWork

log = get_logger(__name__)


U = TypeVar("U", bound=SqlAlchemyUnitOfWork)


@dataclass
class ServiceContext:
    """Everything a service's `build` function may use; built once per process."""

    settings: ServiceSettings
    topology: Topology
    engine: AsyncEngine
    broker: NatsBroker
    registry: Registry
    app: FastAPI
    source: str  # raccrochage/<service>, the producer named in its envelopes
    stream: str | None  # where its events go (None: it publishes nothing)
    relay: OutboxRelay | None = None  # publishes its outbox
    consumers: list[EventConsumer] = field(default_factory=list)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Those of `consumers` one process of the service runs at a time (`in_one_process`).
    in_one_process_only: list[EventConsumer] = field(default_factory=list)

    def unit_of_work(self, kind: type[U] = SqlAlchemyUnitOfWork, **options: Any) -> Callable[[], U]:
        """A factory of this service's units of work: `kind` (a SqlAlchemyUnitOfWork that opens
        the service's repositories) on its engine, outbox stream and relay."""
        return functools.partial(
            kind, self.engine, source=self.source, stream=self.stream, relay=self.relay, **options
        )

    def consumer(
        self, durable: str, unit_of_work: Callable[[], AbstractUnitOfWork], **options: Any
    ) -> EventConsumer:
        """The EventConsumer for a durable consumer declared in topology.toml."""
        definition = self.topology.consumers[durable]
        if definition.service != self.settings.service_name:
            raise ValueError(f"consumer {durable} belongs to {definition.service}")
        consumer = EventConsumer(definition, self.registry, unit_of_work, jetstream(self.broker), **options)
        self.consumers.append(consumer)
        return consumer

    def in_one_process(self, consumer: EventConsumer) -> EventConsumer:
        """Run `consumer` in one process of the service at a time, so that its messages are
        handled in the order they were stored however many replicas run: from a shared durable,
        another process would fetch the next messages while the first still handles its batch.
        Whichever process holds the lock runs it; another takes over within seconds when that
        one stops or dies (`db.while_exclusive`)."""
        self.in_one_process_only.append(consumer)
        return consumer

    def every(
        self,
        seconds: float,
        job: Callable[[], Awaitable[Any]],
        *,
        name: str,
        at_start: bool = False,
        first_after: float | None = None,
    ) -> None:
        """Run `job` every `seconds` for as long as the service runs, the first time after
        `seconds`, or `first_after`, or at start with `at_start`; cancelled at shutdown."""
        self.background.append(
            functools.partial(run_every, seconds, job, name=name, at_start=at_start, first_after=first_after)
        )


async def run_every(
    seconds: float,
    job: Callable[[], Awaitable[Any]],
    *,
    name: str,
    at_start: bool = False,
    first_after: float | None = None,
) -> None:
    """A service's periodic job: a failed pass is logged (its type and place, never its message)
    and the next pass comes all the same, so a database outage delays the job without ending it."""
    if not at_start:
        await asyncio.sleep(seconds if first_after is None else first_after)
    while True:
        try:
            await job()
        except Exception as error:
            log.error("job_failed", job=name, **error_fields(error))
        if (task := asyncio.current_task()) is not None and task.cancelling():
            # Stopped during the pass, which swallowed the cancellation (a library's wait that
            # turns it into a return): stop now, rather than sleep a period the shutdown waits out.
            raise asyncio.CancelledError
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    migrations: Path  # the service's Alembic script folder
    build: Callable[[ServiceContext], Awaitable[None]]
    settings: type[ServiceSettings] = ServiceSettings
    registry: Registry | None = None  # the contracts registry unless the spec brings its own
    # The service's main job for `make run` (after the rig is up), if any.
    main_job: Callable[[], Awaitable[None]] | None = None
    # Main jobs run in this order, then by name (PSAD shows the cases repérage's demo opened).
    main_job_order: int = 100
    # The service's retention rules (raccrochage_platform.retention), applied daily.
    retention: Callable[[RetentionSettings], Sequence[RetentionRule]] | None = None


def installed_services(only: str | None = None) -> dict[str, ServiceSpec]:
    """Services from the `raccrochage.services` entry points, plus any named in
    RACCROCHAGE_EXTRA_SERVICES (`module:attribute,...`, for tests and services in development).
    With `only`, the entry point of that name alone is loaded: a process serving one service
    imports no other (importing all of them doubled a service's start-up)."""
    specs = {}
    for entry in entry_points(group="raccrochage.services"):
        if only is not None and entry.name != only:
            continue
        spec = entry.load()
        specs[spec.name] = spec
    for spec in _extra_services():
        specs[spec.name] = spec
    return dict(sorted(specs.items()))


def _extra_services() -> list[ServiceSpec]:
    """The specs RACCROCHAGE_EXTRA_SERVICES names (`module:attribute,...`)."""
    specs = []
    for target in filter(None, os.environ.get("RACCROCHAGE_EXTRA_SERVICES", "").split(",")):
        module, _, attribute = target.strip().partition(":")
        specs.append(getattr(importlib.import_module(module), attribute or "spec"))
    return specs


def installed_service_names() -> set[str]:
    """The names `installed_services` gives, without importing the services (a command that only
    checks a name stays quick): the entry points' names, and RACCROCHAGE_EXTRA_SERVICES' specs."""
    return {entry.name for entry in entry_points(group="raccrochage.services")} | {
        spec.name for spec in _extra_services()
    }


async def run_service(spec: ServiceSpec) -> None:
    settings = load_settings(spec.settings)
    configure_logging(spec.name, settings.log_level)
    topology = load_topology()
    registry = spec.registry or load_all()
    engine = make_engine(settings.database_url, application_name=spec.name)
    broker = make_broker(settings.nats_url, name=spec.name)
    await broker.connect()
    app = FastAPI(title=f"raccrochage {spec.name}")
    service_def = topology.services[spec.name]
    # Every service has a relay, a service without a stream of its own too: each answers the
    # vault's erasure requests through its outbox (PRIVACY stream).
    relay = OutboxRelay(
        engine,
        jetstream(broker),
        batch_size=settings.relay_batch_size,
        sweep_seconds=settings.relay_sweep_seconds,
        lease_seconds=settings.relay_lease_seconds,
        retention_seconds=settings.outbox_retention_seconds,
    )
    context = ServiceContext(
        settings, topology, engine, broker, registry, app, service_def.source, service_def.stream, relay
    )
    app.include_router(health_router(context, relay))
    await spec.build(context)
    if spec.retention is not None:
        retention = load_settings(RetentionSettings)
        schedule_retention(context, spec.retention(retention), retention)
    await broker.start()
    await relay.start()
    for consumer in context.consumers:
        if consumer not in context.in_one_process_only:
            await consumer.start()
    if context.in_one_process_only:
        context.background.append(
            functools.partial(
                while_exclusive,
                engine,
                f"{spec.name}.consumers_in_one_process",
                functools.partial(_run_consumers, context.in_one_process_only),
            )
        )
    tasks = [asyncio.create_task(job()) for job in context.background]

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            lifespan="on",
            access_log=False,
        )
    )
    server.install_signal_handlers = lambda: None  # we handle signals below
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else settings.http_port
    log.info(
        "service_started",
        http=f"http://{settings.http_host}:{port}",
        consumers=[c.name for c in context.consumers],
        event_loop=event_loop.running(),
    )
    await _announce_port(port)
    # Everything built so far lives as long as the process: move it out of the collector's
    # generations, so that full collections under load do not walk it (p99 latency).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    await stop.wait()
    log.info("service_stopping")
    watchdog = asyncio.create_task(_report_slow_stop(STOP_REPORTED_AFTER_SECONDS))
    server.should_exit = True
    for consumer in context.consumers:
        await consumer.stop()
    await relay.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await serving
    await broker.stop()
    await engine.dispose()
    watchdog.cancel()


async def _run_consumers(consumers: Sequence[EventConsumer]) -> None:
    """Run `consumers` until cancelled (the job of the process holding their lock)."""
    try:
        for consumer in consumers:
            await consumer.start()
        log.info("consumers_in_one_process_started", consumers=[c.name for c in consumers])
        await asyncio.Event().wait()
    finally:
        for consumer in consumers:
            await consumer.stop()


# A stop that takes longer says what it still waits for: a process stopped by SIGKILL after
# its grace period would otherwise leave no word of where its shutdown hung.
STOP_REPORTED_AFTER_SECONDS = 10.0


async def _report_slow_stop(after: float) -> None:
    await asyncio.sleep(after)
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            log.warning("service_stop_slow", task=task.get_name(), awaiting=_awaiting(task.get_coro()))


def _awaiting(coroutine: Any) -> list[str]:
    """Where a task waits: each coroutine of the chain it awaits, outermost first (file:line)."""
    chain = []
    while coroutine is not None and getattr(coroutine, "cr_frame", None) is not None:
        code = coroutine.cr_code
        chain.append(
            f"{code.co_filename.rsplit('/site-packages/', 1)[-1]}:{coroutine.cr_frame.f_lineno} {code.co_name}"
        )
        coroutine = coroutine.cr_await
    return chain


# The cyclic collector's first threshold, from 700 allocations to 50,000: a batch of 500
# events allocates tens of thousands of objects that reference counting frees anyway, and the
# default collected the young generation every few events. Cyclic garbage still goes.
GC_THRESHOLDS = (50_000, 20, 10)


async def _announce_port(port: int) -> None:
    """Tell the rig's supervisor which port we got (HTTP_PORT=0 picks a free one)."""
    path = os.environ.get("RACCROCHAGE_PORT_FILE")
    if path:
        Path(path).write_text(str(port), encoding="utf-8")


def main(name: str) -> None:
    specs = installed_services(only=name)
    if name not in specs:
        specs = installed_services()
    if name not in specs:
        raise SystemExit(f"unknown service {name!r}; installed: {', '.join(specs) or 'none'}")
    event_loop.run(run_service(specs[name]))
