"""Transactional outbox: the writer used inside a service's transaction, and the relay to JetStream.

The writer inserts the outgoing event in the same transaction as the state change, so an event
exists if and only if the change committed. The relay publishes pending rows with
`Nats-Msg-Id` = envelope id, waits for each PubAck, then marks the rows published. A relay that
dies between PubAck and marking publishes the row again: JetStream drops it within its duplicate
window, and consumers' inboxes drop it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from nats.js import JetStreamContext
from raccrochage_contracts import CloudEvent, Payload, nats_subject, new_event
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from .db import array_literal, libpq_dsn, server_settings
from .logging import get_logger
from .publisher import JetStreamPublisher
from .tables import OUTBOX_CHANNEL, outbox

log = get_logger(__name__)


@dataclass(frozen=True)
class OutboxWriter:
    """Adds events to the outbox of the current transaction. One per service."""

    source: str  # raccrochage/<service>
    stream: str  # the service's JetStream stream

    def envelope(
        self,
        payload: Payload,
        *,
        subject: str,
        cause: CloudEvent | None = None,
        correlationid: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> CloudEvent:
        """`event_id` derived from the cause makes a re-run produce the same event, not a new one."""
        return new_event(
            payload,
            source=self.source,
            subject=subject,
            correlationid=cause.correlationid if cause else correlationid,
            causationid=cause.id if cause else None,
            event_id=event_id,
        )

    def row(self, event: CloudEvent) -> dict:
        return {
            "event_id": event.id,
            "event_type": event.type,
            "nats_subject": nats_subject(event.type),
            "stream": self.stream,
            "aggregate_key": event.subject,
            "envelope": event.to_json(),
        }

    async def add(
        self,
        session: AsyncSession | AsyncConnection,
        payload: Payload,
        *,
        subject: str,
        cause: CloudEvent | None = None,
        correlationid: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> CloudEvent:
        """Record one event to publish when (and only if) the caller's transaction commits."""
        event = self.envelope(
            payload, subject=subject, cause=cause, correlationid=correlationid, event_id=event_id
        )
        await session.execute(insert(outbox), [self.row(event)])
        return event

    async def add_event_raw(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        """An envelope already built (`envelope`), on a plain asyncpg connection (hot request
        paths: a prepared statement, no SQLAlchemy per call). The table's statement trigger still
        NOTIFYs the relay."""
        row = self.row(event)
        await conn.execute(ADD_RAW_SQL, *(row[c] for c in RAW_COLUMNS))

    async def add_many(self, session: AsyncSession | AsyncConnection, events: Sequence[CloudEvent]) -> None:
        """Events already in the outbox (same id: a re-run) are skipped. One fixed statement with
        arrays, whatever the number of events: compiled and prepared once."""
        if events:
            rows = [self.row(e) for e in events]
            await session.execute(
                _ADD_MANY, {column: [row[column] for row in rows] for column in RAW_COLUMNS}
            )

    async def add_many_raw(
        self,
        conn: asyncpg.Connection,
        events: Sequence[CloudEvent],
        leases: Leases | None = None,
        *,
        along: tuple[str, Sequence] | None = None,
        guard: str | None = None,
    ) -> None:
        """`add_many` on a plain asyncpg connection, inside the caller's transaction. With
        `leases`, the rows are inserted leased to the caller, who publishes them once committed
        (`Leases`), except those whose aggregate still has an older pending row. `along` is a
        data-modifying statement and its arguments ($1...) that the same round trip runs first
        (the aggregates' own update, say): one statement, not two.

        `along` may instead be several such statements written as named CTEs (`a AS (...), b AS
        (...)`), with `guard` a condition over them (that `a` claimed every event, say): when it
        does not hold, the outbox rows fail their NOT NULL event type and nothing of the
        statement is written (`asyncpg.NotNullViolationError`); an event already in the outbox
        fails it too (`asyncpg.UniqueViolationError`, not skipped). One statement outside any
        transaction then does all or nothing, as a transaction would."""
        if guard is not None and along is None:
            raise ValueError("add_many_raw: a guard is a condition over the CTEs `along` names")
        if events:
            rows = [self.row(e) for e in events]
            await self._insert_raw(
                conn, [[row[column] for row in rows] for column in RAW_COLUMNS], leases, along, guard
            )
        elif along is not None:
            if guard is not None:
                raise ValueError("add_many_raw: a guard needs events to guard")
            await conn.execute(along[0], *along[1])

    async def add_json_raw(
        self,
        conn: asyncpg.Connection,
        event_type: str,
        events: Sequence[tuple[str, str, bytes]],
        leases: Leases | None = None,
        *,
        new_aggregates: bool = False,
    ) -> None:
        """`add_many_raw` for envelopes of one type already written as JSON (a batch handler
        that builds thousands from a template): (event id, aggregate key, envelope JSON). The
        ids and keys must be uuids or plain ids (`db.array_literal`); the type, subject and
        stream go once, not once per row.

        `new_aggregates`: the caller's transaction created these aggregates (the cases a batch
        just opened), so none of their events can be in the outbox yet. The rows then go in
        with a plain INSERT, leased without looking for an older pending row of their
        aggregate: no skip of a known id (one would be an error, not a re-run) and no probe of
        the pending rows, 13 -> 10 µs a row in PostgreSQL."""
        if not events:
            return
        ids, keys, bodies = [e[0] for e in events], [e[1] for e in events], [e[2] for e in events]
        subject = nats_subject(event_type)
        arguments = [array_literal(ids), event_type, subject, self.stream, array_literal(keys), bodies]
        if leases is None:
            await conn.execute(_insert_sql(False, one_type=True, new_aggregates=new_aggregates), *arguments)
            return
        leases.add_returned(
            await conn.fetch(
                _insert_sql(True, one_type=True, new_aggregates=new_aggregates), *arguments, leases.seconds
            ),
            ids,
            lambda n: (subject, self.stream, keys[n], bodies[n]),
        )

    @staticmethod
    async def _insert_raw(
        conn: asyncpg.Connection,
        arrays: list[list],
        leases: Leases | None,
        along: tuple[str, Sequence] | None = None,
        guard: str | None = None,
    ) -> None:
        """One statement for rows given as arrays in RAW_COLUMNS order. Leased rows come back as
        (outbox id, event id) only: the rest of what the writer publishes is already here."""
        before: Sequence = along[1] if along else ()
        ctes = None if along is None else along[0] if guard is not None else f"along AS ({along[0]})"
        sql = _insert_sql(leases is not None, ctes, len(before), guard=guard)
        if leases is None:
            await conn.execute(sql, *before, *arrays)
            return
        ids, _, subjects, streams, keys, bodies = arrays
        leases.add_returned(
            await conn.fetch(sql, *before, *arrays, leases.seconds),
            ids,
            lambda n: (subjects[n], streams[n], keys[n], bodies[n]),
        )


@dataclass
class Leases:
    """One transaction's outbox rows inserted leased to their writer, for it to publish as soon
    as the transaction commits (`OutboxRelay.publish_leased`): no NOTIFY wake-up and claim in
    between. A row whose aggregate has an older pending row is left to the relay, which keeps
    the aggregate's order; a writer that dies before publishing leaves its rows to the relay
    once the lease runs out. `EventConsumer` puts one in its sessions' `info[LEASES]`."""

    seconds: float
    rows: list[tuple] = field(default_factory=list)  # CLAIM_COLUMNS order

    def add(self, row_id: int, row: dict) -> None:
        """A row written leased by the caller's own statement: its outbox id and `OutboxWriter.row`."""
        self.rows.append(
            (
                row_id,
                str(row["event_id"]),
                row["nats_subject"],
                row["stream"],
                row["aggregate_key"],
                row["envelope"],
            )
        )

    def add_returned(self, returned: Sequence[Sequence], ids: Sequence, row: Callable[[int], tuple]) -> None:
        """The (outbox id, event id, leased) rows a leased insert returned, for events `ids` in
        insert order: each one leased is added, with `row(n)` = (subject, stream, aggregate key,
        envelope) of the n-th event."""
        index = {str(event_id): n for n, event_id in enumerate(ids)}
        for row_id, event_id, leased in returned:
            if leased:
                self.rows.append((row_id, event_id, *row(index[event_id])))

    def take(self) -> list[tuple]:
        """The rows to publish, oldest first (an aggregate's rows in the order they were written)."""
        rows, self.rows = sorted(self.rows, key=lambda row: row[_ID]), []
        return rows


LEASES = "raccrochage.outbox.leases"  # key of a session's Leases in `Session.info`


RAW_COLUMNS = ("event_id", "event_type", "nats_subject", "stream", "aggregate_key", "envelope")
ADD_RAW_SQL = f"INSERT INTO outbox ({', '.join(RAW_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6)"


def lease_unless_pending(aggregate_key: str, seconds: str) -> str:
    """SQL for the `leased_until` of a row its writer will publish itself (`Leases`): `seconds`
    from now, or NULL (the relay's) when `seconds` is NULL or an older row of the aggregate is
    still pending. Rows of one statement cannot see each other: an aggregate's new rows are
    leased together and published in id order. `OFFSET 0` keeps the look a probe of the
    aggregate's index per row: without it PostgreSQL hashed every pending row once per
    statement of many rows, a seq scan that grows with a backlog (50,000 pending: 14 ms for a
    500-row insert, against 2 ms probing)."""
    return (
        f"CASE WHEN {seconds} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.aggregate_key = "
        f"{aggregate_key} AND p.published_at IS NULL OFFSET 0) THEN now() + make_interval(secs => {seconds}) END"
    )


_KINDS = ("uuid", "text", "text", "text", "text", "bytea")  # of RAW_COLUMNS
# `add_json_raw`'s rows share one event type: type, subject and stream go once, as scalars.
_ONE_TYPE_SCALARS = ("event_type", "nats_subject", "stream")
# Ids and aggregate keys that `db.array_literal` wrote as one text literal.
_AS_LITERAL = ("event_id", "aggregate_key")


@functools.cache
def _insert_sql(
    leased: bool,
    ctes: str | None = None,
    cte_arguments: int = 0,
    one_type: bool = False,
    new_aggregates: bool = False,
    guard: str | None = None,
) -> str:
    """The outbox insert of `add_many_raw` and `add_json_raw`. Its six arguments are the
    RAW_COLUMNS in order, each an array with a value per row; with `one_type`, the type, subject
    and stream are one value each, and the ids and keys array literals. Leased (the lease in
    seconds after them): rows leased to their writer (`lease_unless_pending`), returning
    (outbox id, event id, leased). `ctes`: data-modifying statements run first, in the same
    statement (named CTEs), their arguments before the outbox's; `guard`: a condition over them
    without which the event type is NULL (the statement fails). `new_aggregates`: aggregates
    created by the caller's transaction (`add_json_raw`), a plain INSERT leased unconditionally."""
    first = cte_arguments + 1
    arrays, values = [], []
    for n, (column, kind) in enumerate(zip(RAW_COLUMNS, _KINDS, strict=True)):
        if one_type and column in _ONE_TYPE_SCALARS:
            values.append(f"${first + n}::{kind}")
            continue
        arrays.append(
            (
                column,
                f"${first + n}::text::{kind}[]"
                if one_type and column in _AS_LITERAL
                else f"${first + n}::{kind}[]",
            )
        )
        values.append(
            f"CASE WHEN {guard} THEN e.{column} END" if guard and column == "event_type" else f"e.{column}"
        )
    if guard and one_type:
        raise ValueError("_insert_sql: a guard is for rows of several types (add_many_raw)")
    if leased:
        seconds = f"${first + 6}::float8"
        values.append(
            f"now() + make_interval(secs => {seconds})"
            if new_aggregates
            else lease_unless_pending("e.aggregate_key", seconds)
        )
    sql = (
        f"INSERT INTO outbox ({', '.join(RAW_COLUMNS)}{', leased_until' if leased else ''}) "
        f"SELECT {', '.join(values)} FROM unnest({', '.join(a for _, a in arrays)}) "
        f"AS e({', '.join(c for c, _ in arrays)})"
        # A guarded insert does all or nothing: a known id fails it too, instead of being
        # skipped while the rest of the statement goes through.
        + ("" if new_aggregates or guard else " ON CONFLICT (event_id) DO NOTHING")
        + (" RETURNING id, event_id::text, leased_until IS NOT NULL" if leased else "")
    )
    return f"WITH {ctes} {sql}" if ctes else sql


_ADD_MANY = text(
    f"INSERT INTO outbox ({', '.join(RAW_COLUMNS)}) "
    "SELECT * FROM unnest(CAST(:event_id AS uuid[]), CAST(:event_type AS text[]), CAST(:nats_subject AS text[]), "
    "CAST(:stream AS text[]), CAST(:aggregate_key AS text[]), CAST(:envelope AS bytea[])) "
    "ON CONFLICT (event_id) DO NOTHING"
)


# Take the oldest pending rows no relay holds (not leased, or their lease ran out), minus any row
# whose aggregate still has an older pending row outside this batch (held by another relay):
# publishing it now would overtake that row; and lease them. One statement that commits on its
# own: the rows are held by their lease, not by an open transaction, so a batch costs two round
# trips (claim, mark) instead of four with BEGIN and COMMIT. The relay runs it on its own asyncpg
# connections, prepared once per connection ($1 = batch size, $2 = lease in seconds); columns
# come back in CLAIM_COLUMNS order, rows in no order (the relay sorts them by id).
CLAIM_COLUMNS = ("id", "event_id", "nats_subject", "stream", "aggregate_key", "envelope")
CLAIM_SQL = """
    WITH batch AS (
        SELECT id, aggregate_key FROM outbox
        WHERE published_at IS NULL AND (leased_until IS NULL OR leased_until < now())
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ), ready AS (
        SELECT b.id FROM batch b
        WHERE NOT EXISTS (
            SELECT 1 FROM outbox p
            WHERE p.aggregate_key = b.aggregate_key AND p.published_at IS NULL
              AND p.id < b.id AND p.id NOT IN (SELECT id FROM batch)
            OFFSET 0  -- a plan fence: without it PostgreSQL scans the whole pending index per claim
        )
    )
    UPDATE outbox o SET leased_until = now() + make_interval(secs => $2)
    FROM ready r WHERE o.id = r.id
    RETURNING o.id, o.event_id::text, o.nats_subject, o.stream, o.aggregate_key, o.envelope
"""
# $1: the ids as an array literal (db.array_literal).
MARK_PUBLISHED_SQL = (
    "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::text::bigint[])"
)
# With no retention: the row is gone once JetStream holds the event. The mark above is not a HOT
# update (`published_at` is in the pending indexes' predicates): 10 µs per row in PostgreSQL,
# where this costs 2 (PSAD's bulk hand-over: 116 -> 89 µs of PostgreSQL CPU per opened case).
DELETE_PUBLISHED_SQL = "DELETE FROM outbox WHERE id = ANY($1::text::bigint[])"
MARK_FAILED_SQL = "UPDATE outbox SET attempts = attempts + 1, last_error = $2, leased_until = NULL WHERE id = ANY($1::bigint[])"
_PRUNE = text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => :age) LIMIT 10000)"
)
BACKLOG = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
CONTENT_TYPE = "application/cloudevents+json"
# A claimed row (asyncpg Record) by position, in CLAIM_COLUMNS order.
_ID, _EVENT_ID, _SUBJECT, _STREAM, _KEY, _ENVELOPE = range(len(CLAIM_COLUMNS))


class _RelayConnection:
    """One of the relay's own asyncpg connections with its statements prepared: claim and mark
    cost one prepared execution each, no SQLAlchemy (compile cache, result proxy, pool checkout,
    reset) per batch."""

    __slots__ = ("claim", "conn", "mark_failed", "mark_published")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, dsn: str, mark_published_sql: str = MARK_PUBLISHED_SQL) -> _RelayConnection:
        # synchronous_commit off: a mark lost to a PostgreSQL crash (the last few hundred ms of
        # commits) only republishes its rows, which JetStream's duplicate window and the
        # consumers' inboxes drop, as after a relay killed before marking; a lost claim only
        # frees its rows early. Waiting for the WAL flush would only slow every batch.
        conn = await asyncpg.connect(
            dsn, server_settings=server_settings("outbox-relay", synchronous_commit="off")
        )
        try:
            self = cls(conn)
            self.claim = await conn.prepare(CLAIM_SQL)
            self.mark_published = await conn.prepare(mark_published_sql)
            self.mark_failed = await conn.prepare(MARK_FAILED_SQL)
        except BaseException:
            conn.terminate()
            raise
        return self


@dataclass
class RelayStats:
    published: int = 0
    failed: int = 0
    batches: int = 0
    empty_claims: int = 0  # claims that found nothing (a sweep, a NOTIFY already served)


class OutboxRelay:
    """Publishes committed outbox rows to JetStream; several may run against one database.

    `engine` gives the database (its URL) and serves `prune` and `backlog`; claims and marks run
    on the relay's own asyncpg connections (at most one per lane, opened on first use, kept while
    the relay runs, closed by `stop` or at the end of a `drain` called without `start`).

    Published rows are kept `retention_seconds` (pruned every 10 minutes), so that a writer that
    derives its event ids from their cause (repérage's campaign re-runs) finds the events it
    already published and skips them. With `retention_seconds=0` a published row is deleted at
    once instead: for a service whose inbox already drops a redelivered cause (PSAD), JetStream's
    duplicate window and the consumers' inboxes drop an event published twice all the same.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        *,
        batch_size: int = 500,
        sweep_seconds: float = 1.0,
        publish_timeout: float = 5.0,
        lease_seconds: float = 60.0,
        lanes: int = 2,
        retention_seconds: float = 7 * 24 * 3600,
        mark_delay: float = 0.02,
    ) -> None:
        self.engine = engine
        self.js = js
        self.batch_size = batch_size
        self.sweep_seconds = sweep_seconds
        self.publish_timeout = publish_timeout
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.lanes = lanes
        self.mark_delay = mark_delay
        self.stats = RelayStats()
        self._publisher = JetStreamPublisher(js._nc)  # the client nats-py's JetStream context wraps
        self._dsn = libpq_dsn(engine.url.render_as_string(hide_password=False))
        self._idle: list[_RelayConnection] = []  # connections no batch is using
        self._draining = 0  # drains in progress
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None
        self._stopping = False
        self._failures = 0
        self._to_mark: list[int] = []  # leased rows published by their writers, to mark together
        self._marking: asyncio.Task | None = None

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
        if self._marking is not None:
            self._marking.cancel()
        with contextlib.suppress(Exception):  # unmarked rows are published again after their lease
            await self.flush_marks()
        await self._close_idle()
        await self._publisher.close()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self._dsn)
            await self._listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as error:
            # The sweep still publishes everything, only later: say so and go on.
            log.warning("outbox_listen_failed", error=type(error).__name__)
            self._listener = None

    async def _run(self) -> None:
        last_prune = 0.0
        while not self._stopping:
            # Clear before draining: a NOTIFY that arrives during the drain must wake the next one.
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
            except Exception as error:
                self._failures += 1
                log.error("outbox_relay_error", error=f"{type(error).__name__}: {error}"[:300])
            delay = self.sweep_seconds if self._failures == 0 else self._backoff()
            # The sweep is a timer that sets the wake event: asyncio.wait_for would wrap every
            # wait in a new Task.
            sweep = asyncio.get_running_loop().call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                sweep.cancel()
            # One loop turn before clearing: NOTIFYs already on the listener's socket (commits
            # of the same burst) are read now and served by this drain, not by an empty one.
            await asyncio.sleep(0)

    def _backoff(self) -> float:
        return min(30.0, 0.2 * 2 ** min(self._failures, 8)) * random.uniform(0.8, 1.2)

    async def _acquire(self) -> _RelayConnection:
        if self._idle:
            return self._idle.pop()
        return await _RelayConnection.open(
            self._dsn, MARK_PUBLISHED_SQL if self.retention_seconds else DELETE_PUBLISHED_SQL
        )

    def _release(self, connection: _RelayConnection) -> None:
        if not connection.conn.is_closed():
            self._idle.append(connection)

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                await connection.conn.close(timeout=5)

    # --- work --------------------------------------------------------------------------------
    async def drain(self) -> int:
        """Publish until nothing is pending (or a batch fails). Returns rows published.

        One batch first; only if it came back full (a backlog) do several lanes claim, publish
        and mark at once, so that one batch's SQL overlaps another's PubAcks. At low rates a wake
        then costs one claim, not one per lane (the others would find nothing: SKIP LOCKED). The
        claim keeps per-aggregate order between lanes as between relays.
        """
        self._draining += 1
        try:
            published, failed, claimed = await self.publish_batch()
            if failed:
                self._failures += 1
                return published
            self._failures = 0
            if claimed < self.batch_size:
                return published
            if self.lanes == 1:
                return published + await self._drain_lane()
            return published + sum(await asyncio.gather(*(self._drain_lane() for _ in range(self.lanes))))
        finally:
            self._draining -= 1
            if self._task is None and not self._draining:  # one-off drains: leave no connection behind
                await self._close_idle()

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
        """Claim (lease) rows, publish them, mark them. (published, failed, claimed)

        A relay that dies or fails after its claim leaves its rows leased: another relay (or
        this one) publishes them once the lease runs out."""
        async with self._connection() as connection:
            rows = await self._claim(connection)
            if not rows:
                self.stats.empty_claims += 1
                return 0, 0, 0
            published, failed = await self._publish_and_mark(connection, rows)
        self.stats.batches += 1
        return published, failed, len(rows)

    async def publish_leased(self, rows: Sequence[Sequence]) -> int:
        """Publish rows that a writer inserted already leased, in its committed transaction, to
        publish them itself at once (no wake-up, no claim). Rows in CLAIM_COLUMNS order, none
        with an older pending row of its aggregate (the writer checked). A row that fails is
        freed for the relay's next claim (woken now); one left by a process that dies here is
        claimed once its lease runs out. Returns the rows published.

        The published rows are marked `mark_delay` later, together with those of the other
        writers meanwhile (`flush_marks`): one UPDATE for many requests instead of one each, off
        their path. Until then they stay leased, so no relay takes them; a process that dies
        before marking leaves them to be published again once the lease runs out (JetStream's
        duplicate window and the inboxes drop them)."""
        published, failed, error = await self._publish(rows)
        self.stats.published += len(published)
        if failed:
            self.stats.failed += len(failed)
            log.warning("outbox_publish_failed", rows=len(failed), error=error[:300])
            async with self._connection() as connection:
                await self._mark(connection, [], failed, error)
            self._wake.set()
        if published:
            self._to_mark.extend(published)
            if self._marking is None or self._marking.done():
                self._marking = asyncio.create_task(self._mark_later(), name="outbox-marks")
        return len(published)

    async def _mark_later(self) -> None:
        await asyncio.sleep(self.mark_delay)
        try:
            await self.flush_marks()
        except Exception as error:
            log.warning("outbox_mark_failed", error=f"{type(error).__name__}: {error}"[:300])

    async def flush_marks(self) -> None:
        """Mark now what `publish_leased` published and has not marked yet."""
        while self._to_mark:
            ids, self._to_mark = self._to_mark, []
            async with self._connection() as connection:
                await connection.mark_published.fetch(array_literal(ids))

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_RelayConnection]:
        connection = await self._acquire()
        try:
            yield connection
        except BaseException:
            # Broken, cancelled mid-statement, or in an unknown state: never reuse it.
            connection.conn.terminate()
            raise
        finally:
            self._release(connection)

    async def _publish_and_mark(self, connection: _RelayConnection, rows: Sequence) -> tuple[int, int]:
        published, failed, error = await self._publish(rows)
        await self._mark(connection, published, failed, error)
        self.stats.published += len(published)
        self.stats.failed += len(failed)
        if failed:
            log.warning("outbox_publish_failed", rows=len(failed), error=error[:300])
        return len(published), len(failed)

    async def _claim(self, connection: _RelayConnection) -> list:
        return sorted(
            await connection.claim.fetch(self.batch_size, self.lease_seconds), key=lambda row: row[_ID]
        )

    async def _mark(
        self, connection: _RelayConnection, published: list[int], failed: list[int], error: str
    ) -> None:
        """One UPDATE for the acked rows, one for the failed ones (attempts and last_error)."""
        if published:
            await connection.mark_published.fetch(array_literal(published))
        if failed:
            await connection.mark_failed.fetch(failed, error[:500])

    async def _publish(self, rows: Sequence) -> tuple[list[int], list[int], str]:
        """Publish in waves: wave k holds the k-th row of every aggregate that has not failed.

        Wave k+1 starts once wave k is acked, so a row never overtakes its aggregate's previous
        row, and a failure stops its aggregate. With mostly distinct aggregates a batch is one
        wave, sent at once (`JetStreamPublisher`), then its PubAcks awaited together.
        """
        by_aggregate: dict[str, list] = defaultdict(list)
        for row in rows:
            by_aggregate[row[_KEY]].append(row)
        published: list[int] = []
        failed: list[int] = []
        errors: list[str] = []
        groups = list(by_aggregate.values())
        wave = 0
        while groups:
            outcomes = await self._publisher.publish(
                [
                    (
                        group[wave][_SUBJECT],
                        group[wave][_ENVELOPE],
                        {
                            "Nats-Msg-Id": group[wave][_EVENT_ID],
                            "Nats-Expected-Stream": group[wave][_STREAM],
                            "Content-Type": CONTENT_TYPE,
                        },
                    )
                    for group in groups
                ],
                self.publish_timeout,
            )
            next_groups = []
            for group, outcome in zip(groups, outcomes, strict=True):
                if outcome:
                    failed.extend(r[_ID] for r in group[wave:])
                    errors.append(outcome)
                    continue
                published.append(group[wave][_ID])
                if len(group) > wave + 1:
                    next_groups.append(group)
            groups = next_groups
            wave += 1
        return published, failed, errors[0] if errors else ""

    async def prune(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_PRUNE, {"age": self.retention_seconds})

    async def backlog(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(BACKLOG)).scalar_one())
