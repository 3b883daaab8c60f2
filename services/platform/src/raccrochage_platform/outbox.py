"""Transactional outbox: the events a transaction writes, and the relay that publishes them.

A unit of work writes its outgoing events into `outbox` in the same transaction as its state
change (`write_events`), so an event exists if and only if the change committed. The relay
publishes pending rows with `Nats-Msg-Id` = envelope id, waits for each PubAck, then marks the
rows published (or deletes them, for a service that keeps none). A relay that dies between
PubAck and mark publishes the row again: JetStream drops it within its duplicate window, and the
consumers' inboxes drop it after.

Rows a writer will publish itself right after its commit are inserted *leased* to it
(`leased_until` in the future): no relay takes them meanwhile, and a writer that dies leaves
them to the relay once the lease runs out. A row whose aggregate still has an older pending row
is never leased: the relay publishes an aggregate's rows in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg
from nats.js import JetStreamContext
from raccrochage_contracts import CloudEvent, nats_subject
from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import BigInteger, Text

from .db import again_if_disconnected, libpq_dsn
from .faults import crash_point
from .logging import get_logger
from .publisher import publish_all
from .tables import OUTBOX_CHANNEL

log = get_logger(__name__)

CONTENT_TYPE = "application/cloudevents+json"


class OutboxRow(NamedTuple):
    """A row to publish, as the relay claims it or a writer's leased insert returns it."""

    id: int
    event_id: str
    nats_subject: str
    stream: str
    aggregate_key: str
    envelope: bytes


# The one statement that writes events into an outbox. Arrays, one value per event, so that the
# statement is the same whatever the number of events. `lease` (seconds, or NULL for none) leases
# each row to its writer unless an older row of its aggregate is still pending. An event already
# there (the same id: a re-run of the same cause) is skipped. Only the leased rows come back, and
# without their envelope: the writer has it already.
_INSERT = text(
    """
    INSERT INTO outbox (event_id, event_type, nats_subject, stream, aggregate_key, envelope, leased_until)
    SELECT e.event_id, e.event_type, e.nats_subject, e.stream, e.aggregate_key, e.envelope,
           CASE WHEN CAST(:lease AS float8) IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM outbox p WHERE p.aggregate_key = e.aggregate_key AND p.published_at IS NULL)
                THEN now() + make_interval(secs => CAST(:lease AS float8)) END
    FROM unnest(:event_ids, :event_types, :subjects, :streams, :aggregate_keys, :envelopes)
         AS e(event_id, event_type, nats_subject, stream, aggregate_key, envelope)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id, event_id, leased_until IS NOT NULL
    """
).bindparams(
    bindparam("event_ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("event_types", type_=ARRAY(Text)),
    bindparam("subjects", type_=ARRAY(Text)),
    bindparam("streams", type_=ARRAY(Text)),
    bindparam("aggregate_keys", type_=ARRAY(Text)),
    bindparam("envelopes", type_=ARRAY(BYTEA)),
)


# Where a service's answer to a partner goes (a `partner.*` type, such as FOQUALE's feedback on
# a partner's records): deploy/topology.toml's stream of partner subjects.
PARTNER_STREAM = "PARTNER"
# Where erasure requests and every service's answers go (`privacy.*` types, docs/privacy.md).
PRIVACY_STREAM = "PRIVACY"


def needs_own_stream(event: CloudEvent) -> bool:
    """False for the types every service may write without a stream of its own (`privacy.*`)
    or that go back to a partner (`partner.*`)."""
    return not event.type.startswith(("partner.", "privacy."))


@functools.lru_cache(maxsize=1024)
def _subject_of(event_type: str) -> str:
    """The subject of a type that is not a partner's: parsed once per type, not per event."""
    return nats_subject(event_type)


def route(event: CloudEvent, stream: str) -> tuple[str, str]:
    """The NATS subject and stream of an event a service writes. Its own types go on its stream;
    an erasure request or answer (a `privacy.*` type) on the PRIVACY stream; an answer to a
    partner (a `partner.*` type) goes back on that partner's subjects (`partner.<partner_id>.…`,
    PARTNER stream), the partner named by the envelope's subject, `partner/<partner_id>[/…]`."""
    if event.type.startswith("privacy."):
        return _subject_of(event.type), PRIVACY_STREAM
    if not event.type.startswith("partner."):
        return _subject_of(event.type), stream
    prefix, _, rest = event.subject.partition("/")
    partner_id = rest.partition("/")[0]
    if prefix != "partner" or not partner_id:
        raise ValueError(
            f"{event.type}: the envelope subject must be partner/<partner_id>, not {event.subject!r}"
        )
    return nats_subject(event.type, partner_id), PARTNER_STREAM


async def write_events(
    conn: AsyncConnection,
    stream: str | None,
    events: Sequence[CloudEvent],
    lease_seconds: float | None = None,
) -> list[OutboxRow]:
    """Write `events` into the outbox of `conn`'s transaction. With `lease_seconds`, returns the
    rows leased to the caller, oldest first, to publish once committed (`OutboxRelay.publish_leased`)."""
    if not events:
        return []
    routes = [route(event, stream) for event in events]
    envelopes = [event.to_json() for event in events]
    result = await conn.execute(
        _INSERT,
        {
            "lease": lease_seconds,
            "event_ids": [event.id for event in events],
            "event_types": [event.type for event in events],
            "subjects": [subject for subject, _ in routes],
            "streams": [to for _, to in routes],
            "aggregate_keys": [event.subject for event in events],
            "envelopes": envelopes,
        },
    )
    leased = {event_id: row_id for row_id, event_id, is_leased in result if is_leased}
    if not leased:
        return []
    rows = []
    for event, (subject, to), envelope in zip(events, routes, envelopes, strict=True):
        row_id = leased.pop(event.id, None)  # an event given twice is written, and leased, once
        if row_id is not None:
            rows.append(OutboxRow(row_id, str(event.id), subject, to, event.subject, envelope))
    return sorted(rows, key=lambda row: row.id)


# Take the oldest pending rows no relay holds (not leased, or their lease ran out), minus any row
# whose aggregate still has an older pending row outside this batch (held by another relay:
# publishing it now would overtake that row), and lease them. It commits on its own: the rows are
# held by their lease, not by an open transaction.
_CLAIM = text(
    """
    WITH batch AS (
        SELECT id, aggregate_key FROM outbox
        WHERE published_at IS NULL AND (leased_until IS NULL OR leased_until < now())
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), ready AS (
        SELECT b.id FROM batch b
        WHERE NOT EXISTS (
            SELECT 1 FROM outbox p
            WHERE p.aggregate_key = b.aggregate_key AND p.published_at IS NULL
              AND p.id < b.id AND p.id NOT IN (SELECT id FROM batch)
            OFFSET 0  -- a plan fence: one probe of the aggregate's index per row, never a scan
        )
    )
    UPDATE outbox o SET leased_until = now() + make_interval(secs => :lease)
    FROM ready r WHERE o.id = r.id
    RETURNING o.id, o.event_id::text, o.nats_subject, o.stream, o.aggregate_key, o.envelope
    """
)
_IDS = bindparam("ids", type_=ARRAY(BigInteger))
_MARK_PUBLISHED = text(
    "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY(:ids)"
).bindparams(_IDS)
# A service that keeps no published row (`retention_seconds=0`): gone once JetStream holds it.
_DELETE_PUBLISHED = text("DELETE FROM outbox WHERE id = ANY(:ids)").bindparams(_IDS)
# A relay still publishing its rows keeps them: the lease is short so that a dead relay's rows
# are taken over within seconds, and a batch may take longer than that.
_RENEW_LEASE = text(
    "UPDATE outbox SET leased_until = now() + make_interval(secs => :lease) "
    "WHERE id = ANY(:ids) AND published_at IS NULL"
).bindparams(_IDS)
_MARK_FAILED = text(
    "UPDATE outbox SET attempts = attempts + 1, last_error = :error, leased_until = NULL WHERE id = ANY(:ids)"
).bindparams(_IDS)
_PRUNE = text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
    "WHERE published_at < now() - make_interval(secs => :age) LIMIT 10000)"
)
BACKLOG = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
OLDEST_PENDING_AGE = text(
    "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) FROM outbox WHERE published_at IS NULL"
)


@dataclass
class RelayStats:
    published: int = 0
    failed: int = 0
    batches: int = 0
    empty_claims: int = 0  # claims that found nothing (a sweep, a NOTIFY already served)


class OutboxRelay:
    """Publishes committed outbox rows to JetStream; several may run against one database.

    Woken by the outbox's NOTIFY (a LISTEN connection of its own) and by a sweep timer. Published
    rows are kept `retention_seconds` (pruned every 10 minutes), so that a writer deriving its
    event ids from their cause finds the events it already published; with 0 they are deleted
    once JetStream holds them.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        *,
        batch_size: int = 500,
        sweep_seconds: float = 1.0,
        publish_timeout: float = 5.0,
        lease_seconds: float = 10.0,
        retention_seconds: float = 7 * 24 * 3600,
        lanes: int = 2,
    ) -> None:
        self.engine = engine
        # The claim and the marks are single statements: run without BEGIN and COMMIT (one round
        # trip each instead of three), on the same pool.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.js = js
        self.batch_size = batch_size
        self.sweep_seconds = sweep_seconds
        self.publish_timeout = publish_timeout
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.lanes = lanes
        self.stats = RelayStats()
        self._mark = _MARK_PUBLISHED if retention_seconds else _DELETE_PUBLISHED
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None
        self._stopping = False
        self._failures = 0

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    def wake(self) -> None:
        """Drain now rather than at the next sweep (rows written without a NOTIFY, a retry)."""
        self._wake.set()

    @property
    def failing(self) -> bool:
        """Its last attempt failed (NATS or the database unreachable): it is backing off."""
        return self._failures > 0

    async def _listen(self) -> None:
        # LISTEN needs a connection of its own that stays open: a plain asyncpg one, outside
        # the engine's pool.
        try:
            dsn = libpq_dsn(self.engine.url.render_as_string(hide_password=False))
            self._listener = await asyncpg.connect(dsn)
            await self._listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as error:
            # The sweep still publishes everything, only later: say so and go on.
            log.warning("outbox_listen_failed", error=type(error).__name__)
            self._listener = None

    async def _run(self) -> None:
        last_prune = 0.0
        while not self._stopping:
            # Cleared before draining: a NOTIFY that arrives during the drain wakes the next one.
            self._wake.clear()
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self.drain()
                if time.monotonic() - last_prune > 600:
                    await self.prune()
                    last_prune = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the relay must outlive any one failure
                self._failures += 1
                log.error("outbox_relay_error", error=f"{type(error).__name__}: {error}"[:300])
            delay = self.sweep_seconds if self._failures == 0 else self._backoff()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _backoff(self) -> float:
        return min(30.0, 0.2 * 2 ** min(self._failures, 8)) * random.uniform(0.8, 1.2)

    # --- work --------------------------------------------------------------------------------
    async def drain(self) -> int:
        """Publish until nothing is pending (or a batch fails). Returns the rows published.

        One batch first; only if it came back full (a backlog) do `lanes` batches run at once,
        so that one batch's SQL overlaps another's PubAcks. Per-aggregate order holds between
        lanes as between relays (the claim)."""
        published, failed, claimed = await self.publish_batch()
        if failed:
            self._failures += 1
            return published
        self._failures = 0
        if claimed < self.batch_size:
            return published
        lanes = await asyncio.gather(*(self._drain_lane() for _ in range(self.lanes)))
        return published + sum(lanes)

    async def _drain_lane(self) -> int:
        total = 0
        while True:
            published, failed, claimed = await self.publish_batch()
            total += published
            if failed:
                self._failures += 1
                return total
            self._failures = 0
            if claimed < self.batch_size:
                return total

    async def publish_batch(self) -> tuple[int, int, int]:
        """Claim (lease) rows, publish them, mark them: (published, failed, claimed).

        A relay that dies or fails after its claim leaves its rows leased: another relay (or
        this one) publishes them once the lease runs out."""
        rows = await again_if_disconnected(self._claim)
        if not rows:
            self.stats.empty_claims += 1
            return 0, 0, 0
        published, failed = await self._publish_and_mark(rows)
        self.stats.batches += 1
        return published, failed, len(rows)

    async def _claim(self) -> list[OutboxRow]:
        async with self._autocommit.connect() as conn:
            claimed = await conn.execute(_CLAIM, {"limit": self.batch_size, "lease": self.lease_seconds})
            return sorted((OutboxRow(*row) for row in claimed), key=lambda row: row.id)

    async def publish_leased(self, rows: Sequence[OutboxRow]) -> int:
        """Publish rows a writer inserted leased (`write_events`) once its transaction committed:
        no wake-up and no claim in between. A row that fails is freed for the relay, woken now.
        Returns the rows published."""
        if not rows:
            return 0
        published, failed = await self._publish_and_mark(rows)
        if failed:
            self._wake.set()
        return published

    async def _publish_and_mark(self, rows: Sequence[OutboxRow]) -> tuple[int, int]:
        renewing = asyncio.create_task(self._renew_lease([row.id for row in rows]))
        try:
            published, failed, error = await self._publish(rows)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        crash_point("relay.after_publish")  # PubAcked, not marked: published again after the lease

        async def mark() -> None:
            async with self._autocommit.connect() as conn:  # each statement stands alone
                if published:
                    await conn.execute(self._mark, {"ids": published})
                if failed:
                    await conn.execute(_MARK_FAILED, {"ids": failed, "error": error[:500]})

        await again_if_disconnected(mark)
        self.stats.published += len(published)
        self.stats.failed += len(failed)
        if failed:
            log.warning("outbox_publish_failed", rows=len(failed), error=error[:300])
        return len(published), len(failed)

    async def _renew_lease(self, ids: list[int]) -> None:
        """Every third of the lease, while `ids` are being published: lease them again."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)

            async def renew() -> None:
                async with self._autocommit.connect() as conn:
                    await conn.execute(_RENEW_LEASE, {"ids": ids, "lease": self.lease_seconds})

            try:
                await again_if_disconnected(renew)
            except Exception as error:  # the database is down: the marks will wait for it too
                log.warning("outbox_lease_not_renewed", rows=len(ids), error=type(error).__name__)

    async def _publish(self, rows: Sequence[OutboxRow]) -> tuple[list[int], list[int], str]:
        """Publish in waves: wave k holds the k-th row of every aggregate that has not failed.

        Wave k+1 starts once wave k is acked, so a row never overtakes its aggregate's previous
        row, and a failure stops its aggregate. With distinct aggregates a batch is one wave.
        """
        by_aggregate: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_aggregate[row.aggregate_key].append(row)
        published: list[int] = []
        failed: list[int] = []
        errors: list[str] = []
        groups = list(by_aggregate.values())
        wave = 0
        while groups:
            outcomes = await publish_all(
                self.js,
                [
                    (
                        group[wave].nats_subject,
                        group[wave].envelope,
                        group[wave].stream,
                        {"Nats-Msg-Id": group[wave].event_id, "Content-Type": CONTENT_TYPE},
                    )
                    for group in groups
                ],
                self.publish_timeout,
            )
            next_groups = []
            for group, outcome in zip(groups, outcomes, strict=True):
                if outcome:
                    failed.extend(row.id for row in group[wave:])
                    errors.append(outcome)
                    continue
                published.append(group[wave].id)
                if len(group) > wave + 1:
                    next_groups.append(group)
            groups = next_groups
            wave += 1
        return published, failed, errors[0] if errors else ""

    async def prune(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_PRUNE, {"age": self.retention_seconds})

    async def backlog(self) -> int:
        return int(await again_if_disconnected(lambda: self._scalar(BACKLOG)))

    async def oldest_pending_age(self) -> float:
        """Seconds since the oldest unpublished row was committed (0 when none waits)."""
        return float(await again_if_disconnected(lambda: self._scalar(OLDEST_PENDING_AGE)))

    async def _scalar(self, statement: TextClause) -> Any:
        # Asked by scrapes and waits, on a pooled connection that may have been closed under it.
        async with self.engine.connect() as conn:
            return (await conn.execute(statement)).scalar_one()
