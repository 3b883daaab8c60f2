"""/health, /ready and Prometheus /metrics for every service process."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from . import metrics
from .broker import connection, jetstream
from .db import again_if_disconnected

if TYPE_CHECKING:
    from .outbox import OutboxRelay
    from .service import ServiceContext


async def nats_answers(client: Client, timeout: float = 1.0) -> bool:
    """Connected, and JetStream answers a request within `timeout` (a request, not a flush: a
    PONG arriving after nats-py gave up on a flush would meet a cancelled future)."""
    if not client.is_connected:
        return False
    try:
        await client.jetstream(timeout=timeout).account_info()
    except Exception:
        return False
    return True


def health_router(context: ServiceContext, relay: OutboxRelay | None) -> APIRouter:
    router = APIRouter(tags=["operations"])
    name = context.settings.service_name

    @router.get("/health")
    async def health() -> dict:
        """The process is alive."""
        return {"service": name, "status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        """Ready when NATS and the service's database answer and no consumer is paused waiting
        out an outage. NATS answers when its JetStream answers an account request within a
        second: a server paused or hung keeps its TCP connection open, so `is_connected` alone
        stays true for minutes (until the client's pings time out)."""
        checks = {"nats": await nats_answers(connection(context.broker))}
        paused = [consumer.name for consumer in context.consumers if consumer.paused]
        try:
            await again_if_disconnected(lambda: _select_one(context.engine))
            checks["database"] = True
        except Exception:
            checks["database"] = False
        checks["consumers"] = not paused
        ok = all(checks.values())
        body = {"service": name, "ready": ok, **checks, "paused_consumers": paused}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        """Prometheus text format; lag and backlog are read at scrape time."""
        js = jetstream(context.broker)
        for consumer in context.consumers:
            try:
                info = await js.consumer_info(consumer.definition.stream, consumer.name)
                metrics.CONSUMER_PENDING.labels(consumer.name).set(info.num_pending or 0)
                metrics.CONSUMER_ACK_PENDING.labels(consumer.name).set(info.num_ack_pending or 0)
            except Exception:
                pass
        if relay is not None:
            with contextlib.suppress(Exception):  # a scrape shows what it can read
                metrics.OUTBOX_BACKLOG.labels(name).set(await relay.backlog())
                metrics.OUTBOX_OLDEST_AGE.labels(name).set(await relay.oldest_pending_age())
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _select_one(engine: AsyncEngine) -> None:
    # A connection PostgreSQL closed (a restart) while it sat in the pool for less than the ping
    # delay fails this once; `again_if_disconnected` asks on a new one instead of answering 503.
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
