"""Pipeline health read from where it lives, never from another service's database:
JetStream's consumer info (lag, redeliveries, oldest unacked message), each service's own
/metrics (outbox backlog and its oldest row's age, which only the service can read), and the
DEADLETTER stream."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Gauge
from prometheus_client.parser import text_string_to_metric_families
from raccrochage_platform.deadletter import DEADLETTER_STREAM, list_dead_letters
from raccrochage_platform.topology import Topology

from ..domain.deadletters import reason_group, reason_kind

CONSUMER_PENDING = Gauge(
    "raccrochage_ops_consumer_pending", "messages not yet delivered (lag)", ["stream", "consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "raccrochage_ops_consumer_ack_pending", "delivered, not yet acked", ["stream", "consumer"]
)
CONSUMER_REDELIVERED = Gauge(
    "raccrochage_ops_consumer_redelivered",
    "messages delivered more than once, unacked",
    ["stream", "consumer"],
)
CONSUMER_OLDEST_UNACKED = Gauge(
    "raccrochage_ops_consumer_oldest_unacked_seconds",
    "age of the oldest message of the consumer's filter not yet acked (0: none)",
    ["stream", "consumer"],
)
OUTBOX_BACKLOG = Gauge("raccrochage_ops_outbox_backlog", "unpublished outbox rows, per service", ["service"])
OUTBOX_OLDEST = Gauge(
    "raccrochage_ops_outbox_oldest_age_seconds", "age of the oldest unpublished outbox row", ["service"]
)
RELAY_UP = Gauge("raccrochage_ops_relay_up", "1 when the service answered its /metrics", ["service"])
DEAD_LETTERS = Gauge(
    "raccrochage_ops_dead_letters",
    "dead letters waiting, per service and kind of reason",
    ["service", "reason"],
)


@dataclass
class ConsumerHealth:
    stream: str
    consumer: str
    service: str
    pending: int | None
    ack_pending: int | None
    redelivered: int | None
    oldest_unacked_seconds: float | None
    error: str | None = None


@dataclass
class OutboxHealth:
    service: str
    up: bool
    backlog: float | None
    oldest_seconds: float | None
    url: str | None
    error: str | None = None


async def _oldest_unacked(
    js: JetStreamContext, stream: str, filters: tuple[str, ...], after: int
) -> datetime | None:
    """The time of the first message past the ack floor that the consumer's filter matches."""
    times = []
    for subject in filters:
        with contextlib.suppress(NotFoundError):
            raw = await js.get_msg(stream, seq=after + 1, next=True, subject=subject)
            if raw.time is not None:
                times.append(raw.time)
    return min(times) if times else None


async def consumers(
    js: JetStreamContext, topology: Topology, now: datetime | None = None
) -> list[ConsumerHealth]:
    now = now or datetime.now(UTC)
    out = []
    for definition in sorted(topology.consumers.values(), key=lambda c: (c.stream, c.durable)):
        try:
            info = await js.consumer_info(definition.stream, definition.durable)
        except Exception as error:  # not declared yet, or NATS away: shown as such
            out.append(
                ConsumerHealth(
                    definition.stream,
                    definition.durable,
                    definition.service,
                    None,
                    None,
                    None,
                    None,
                    error=type(error).__name__,
                )
            )
            continue
        pending, ack_pending = info.num_pending or 0, info.num_ack_pending or 0
        oldest = None
        if pending or ack_pending:
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            at = await _oldest_unacked(js, definition.stream, definition.filter_subjects, floor)
            oldest = max(0.0, (now - at).total_seconds()) if at else None
        out.append(
            ConsumerHealth(
                definition.stream,
                definition.durable,
                definition.service,
                pending,
                ack_pending,
                info.num_redelivered or 0,
                oldest if oldest is not None else 0.0,
            )
        )
    return out


def _read_metrics(text: str, service: str) -> tuple[float | None, float | None]:
    backlog = oldest = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("service") != service:
                continue
            if sample.name == "raccrochage_outbox_backlog":
                backlog = sample.value
            elif sample.name == "raccrochage_outbox_oldest_age_seconds":
                oldest = sample.value
    return backlog, oldest


async def outboxes(urls: dict[str, str], timeout: float = 3.0) -> list[OutboxHealth]:
    """Scrape each producing service's /metrics; a service that does not answer is down."""

    async def one(client: httpx.AsyncClient, service: str, url: str) -> OutboxHealth:
        if not url:
            return OutboxHealth(service, False, None, None, None, error="no address: not running")
        try:
            response = await client.get(f"{url.rstrip('/')}/metrics")
            response.raise_for_status()
        except Exception as error:
            return OutboxHealth(service, False, None, None, url, error=type(error).__name__)
        backlog, oldest = _read_metrics(response.text, service)
        return OutboxHealth(service, True, backlog, oldest, url)

    async with httpx.AsyncClient(timeout=timeout) as client:
        return list(await asyncio.gather(*(one(client, s, u) for s, u in sorted(urls.items()))))


# Reasons are read in the most recent dead letters only; the others are counted per service.
READ_AT_MOST = 10_000
NOT_READ = "older, reason not read"


async def dead_letter_counts(js: JetStreamContext, topology: Topology) -> list[dict[str, Any]]:
    """Dead letters waiting, per service, kind of reason and reason (without delivery counts).

    The stream's count per subject (one per consumer) gives each service's total; the reasons
    come from the READ_AT_MOST most recent dead letters, and a service's older ones are one row
    of kind NOT_READ, so that the totals stay exact without reading the whole stream."""

    def service_of(consumer: str) -> str:
        definition = topology.consumers.get(consumer)
        return definition.service if definition else "?"

    counts: dict[tuple[str, str, str], int] = {}
    with contextlib.suppress(NotFoundError):
        state = (await js.stream_info(DEADLETTER_STREAM, subjects_filter="deadletter.>")).state
        unread: dict[str, int] = {}
        for subject, n in (state.subjects or {}).items():
            service = service_of(subject.removeprefix("deadletter."))
            unread[service] = unread.get(service, 0) + n
        recent = await list_dead_letters(js, first=state.last_seq - READ_AT_MOST + 1, limit=READ_AT_MOST)
        for letter in recent:
            service = service_of(letter.consumer)
            key = (service, reason_kind(letter.reason), reason_group(letter.reason))
            counts[key] = counts.get(key, 0) + 1
            unread[service] = unread.get(service, 0) - 1
        for service, n in unread.items():
            if n > 0:
                counts[(service, NOT_READ, NOT_READ)] = n
    return [{"service": s, "kind": k, "reason": r, "count": n} for (s, k, r), n in sorted(counts.items())]


def export(
    consumer_rows: list[ConsumerHealth], outbox_rows: list[OutboxHealth], letters: list[dict[str, Any]]
) -> None:
    """Set the Prometheus gauges from one reading."""
    for row in consumer_rows:
        labels = (row.stream, row.consumer)
        if row.error is None:
            CONSUMER_PENDING.labels(*labels).set(row.pending or 0)
            CONSUMER_ACK_PENDING.labels(*labels).set(row.ack_pending or 0)
            CONSUMER_REDELIVERED.labels(*labels).set(row.redelivered or 0)
            CONSUMER_OLDEST_UNACKED.labels(*labels).set(row.oldest_unacked_seconds or 0)
    for row in outbox_rows:
        RELAY_UP.labels(row.service).set(1 if row.up else 0)
        if row.backlog is not None:
            OUTBOX_BACKLOG.labels(row.service).set(row.backlog)
        if row.oldest_seconds is not None:
            OUTBOX_OLDEST.labels(row.service).set(row.oldest_seconds)
    DEAD_LETTERS.clear()
    per_kind: dict[tuple[str, str], int] = {}
    for row in letters:
        per_kind[(row["service"], row["kind"])] = (
            per_kind.get((row["service"], row["kind"]), 0) + row["count"]
        )
    for (service, kind), n in per_kind.items():
        DEAD_LETTERS.labels(service, kind).set(n)


async def snapshot(js: JetStreamContext, topology: Topology, urls: dict[str, str]) -> dict[str, Any]:
    consumer_rows = await consumers(js, topology)
    outbox_rows = await outboxes(urls)
    letters = await dead_letter_counts(js, topology)
    export(consumer_rows, outbox_rows, letters)
    return {
        "consumers": [asdict(row) for row in consumer_rows],
        "outboxes": [asdict(row) for row in outbox_rows],
        "dead_letters": letters,
    }
