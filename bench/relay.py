"""Outbox relay throughput (row committed -> PubAck -> marked) beside raw JetStream publish."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from _common import Stopwatch, bench_servers, emit, nats_client, per_second, platform_database, say
from raccrochage_platform.db import asyncpg_url, libpq_dsn
from raccrochage_platform.outbox import _MARK_FAILED, _MARK_PUBLISHED, OutboxRelay, OutboxWriter
from raccrochage_platform.testing.sample import CounterIncremented

TARGET = 0.6
RELAY_STREAM = "BENCH_SAMPLE"  # OutboxWriter routes by event type: the relay publishes on sample.>
RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw."
CONTENT_TYPE = "application/cloudevents+json"
COLUMNS = ("event_id", "event_type", "nats_subject", "stream", "aggregate_key", "envelope")
CHUNK = 5000
# publish_async futures never time out on their own, and an error PubAck leaves them pending
# (nats-py issue #985): the bench must fail rather than hang.
ACK_TIMEOUT = 60.0
PUBLISH_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


# --- data ----------------------------------------------------------------------------------------
def build_records(rows: int, aggregates: int) -> list[tuple]:
    """The outbox rows as the writer makes them, as COPY records in COLUMNS order."""
    writer = OutboxWriter("raccrochage/bench", RELAY_STREAM)
    records = []
    for i in range(rows):
        key = f"youth-{i % aggregates}"
        row = writer.row(writer.envelope(CounterIncremented(counter=key, by=i), subject=key))
        records.append(tuple(row[c] for c in COLUMNS))
    return records


async def fill_outbox(url: str, records: list[tuple]) -> None:
    """COPY in chunks, each its own committed transaction (as many writers would leave them),
    then VACUUM ANALYZE: a live outbox has statistics; a just-filled one would mislead the
    planner."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        await conn.execute("TRUNCATE outbox")
        for start in range(0, len(records), CHUNK):
            await conn.copy_records_to_table("outbox", records=records[start:start + CHUNK],
                                             columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE outbox")
    finally:
        await conn.close()


async def fresh_stream(js: JetStreamContext, name: str, subjects: list[str]) -> None:
    """Deleted and made again: a purge would keep the Nats-Msg-Id duplicate window, and a rerun
    with the same ids would then be dropped rather than stored."""
    try:
        await js.delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    await js.add_stream(StreamConfig(name=name, subjects=subjects, duplicate_window=120))


async def stream_count(js: JetStreamContext, name: str) -> int:
    return (await js.stream_info(name)).state.messages


# --- raw publish ---------------------------------------------------------------------------------
async def raw_publish(nc: Client, records: list[tuple], window: int) -> float:
    """Same payloads and headers as the relay sends, windowed publish_async; returns seconds."""
    js = nc.jetstream(publish_async_max_pending=window)
    await fresh_stream(js, RAW_STREAM, [f"{RAW_PREFIX}>"])
    futures = []
    watch = Stopwatch()
    with watch:
        for event_id, _type, subject, _stream, _key, envelope in records:
            futures.append(await js.publish_async(
                RAW_PREFIX + subject, envelope, stream=RAW_STREAM,
                headers={"Nats-Msg-Id": str(event_id), "Content-Type": CONTENT_TYPE}))
        await asyncio.wait_for(js.publish_async_completed(), ACK_TIMEOUT)
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        raise RuntimeError(f"raw publish: {len(failed)} failed, first {failed[0]!r}")
    stored = await stream_count(js, RAW_STREAM)
    if stored != len(records):
        raise RuntimeError(f"raw publish: stream holds {stored}, expected {len(records)}")
    return watch.seconds


# --- a prototype relay ---------------------------------------------------------------------------
# The stock claim with one change: OFFSET 0 in the NOT EXISTS. It changes no result, but stops
# PostgreSQL from turning the guard into a merge anti-join that reads the whole pending-by-
# aggregate index on every claim (O(backlog): ~32 ms per claim of 500 at a 100k backlog); the
# guard is then one index probe per claimed row (~5 ms).
_FENCED_CLAIM = text(
    """
    WITH batch AS (
        SELECT id, aggregate_key FROM outbox
        WHERE published_at IS NULL
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    SELECT o.id, o.event_id, o.nats_subject, o.stream, o.aggregate_key, o.envelope
    FROM outbox o JOIN batch b ON b.id = o.id
    WHERE NOT EXISTS (
        SELECT 1 FROM outbox p
        WHERE p.aggregate_key = b.aggregate_key AND p.published_at IS NULL
          AND p.id < b.id AND p.id NOT IN (SELECT id FROM batch)
        OFFSET 0
    )
    ORDER BY o.id
    """
)


class FastRelay(OutboxRelay):
    """Prototype of changes to OutboxRelay, same guarantees; each can be switched on alone.

    - publish_async in waves instead of one task and one awaited request per row. Wave k holds
      the k-th row of every aggregate without a failure so far, and wave k+1 starts once wave k
      is acked: a row is never sent before its aggregate's previous row is acked, or a failed
      row could be overtaken. With mostly-distinct aggregates a batch is a single wave.
    - fenced_claim: _FENCED_CLAIM instead of the stock claim.
    - lanes: that many claim-publish-mark loops at once in drain(), so one batch's SQL overlaps
      another's PubAcks. The claim already keeps per-aggregate order across relays, hence across
      lanes.
    """

    def __init__(self, *args, fenced_claim: bool = False, lanes: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fenced_claim = fenced_claim
        self.lanes = lanes
        # publish_async's window is per JetStreamContext (publish_async_max_pending, 4000 by
        # default): all lanes' batches must fit in it, or a send would wait for a slot.
        window = self.js._publish_async_pending_semaphore._value
        if self.batch_size * lanes > window:
            raise ValueError(f"batch_size x lanes = {self.batch_size * lanes} > window {window}")

    async def drain(self) -> int:
        if self.lanes == 1:
            return await super().drain()
        lane = super().drain
        return sum(await asyncio.gather(*(lane() for _ in range(self.lanes))))

    async def publish_batch(self) -> tuple[int, int, int]:
        if not self.fenced_claim:
            return await super().publish_batch()
        # OutboxRelay.publish_batch with the claim statement swapped (and no failure log).
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_FENCED_CLAIM, {"limit": self.batch_size})).all()
            if not rows:
                return 0, 0, 0
            published, failed, error = await self._publish(rows)
            if published:
                await conn.execute(_MARK_PUBLISHED, {"ids": published})
            if failed:
                await conn.execute(_MARK_FAILED, {"ids": failed, "error": error[:500]})
        self.stats.published += len(published)
        self.stats.failed += len(failed)
        self.stats.batches += 1
        return len(published), len(failed), len(rows)

    async def _publish(self, rows: Sequence) -> tuple[list[int], list[int], str]:
        by_aggregate: dict[str, list] = defaultdict(list)
        for row in rows:
            by_aggregate[row.aggregate_key].append(row)
        published: list[int] = []
        failed: list[int] = []
        errors: list[str] = []
        groups = list(by_aggregate.values())
        wave = 0
        while groups:
            sent: list[tuple[list, asyncio.Future]] = []
            for group in groups:
                row = group[wave]
                try:
                    # No wait_stall: on Python 3.11 it wraps each send in wait_for, hence a
                    # Task (measured: 99 ms per 500 rows with it, 39 ms without, stock 75 ms);
                    # __init__ keeps the batches within the window instead.
                    future = await self.js.publish_async(
                        row.nats_subject, row.envelope, stream=row.stream,
                        headers={"Nats-Msg-Id": str(row.event_id), "Content-Type": CONTENT_TYPE})
                except PUBLISH_ERRORS as error:
                    future = asyncio.get_running_loop().create_future()
                    future.set_exception(error)
                sent.append((group, future))
            # The timeout is what bounds a wave: an error PubAck (wrong stream, stream full)
            # never resolves a publish_async future in nats-py (issue #985), so such a row is
            # recorded as "no PubAck" rather than with the server's error.
            _done, late = await asyncio.wait([f for _, f in sent], timeout=self.publish_timeout)
            for future in late:
                future.cancel()  # nats-py then forgets it and frees its slot in the window
            groups = []
            for group, future in sent:
                error = TimeoutError("no PubAck") if future.cancelled() else future.exception()
                if error is not None:
                    failed.extend(r.id for r in group[wave:])
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                published.append(group[wave].id)
                if len(group) > wave + 1:
                    groups.append(group)
            wave += 1
        return published, failed, errors[0] if errors else ""


# --- timing the relay without changing it --------------------------------------------------------
class SqlTimer:
    """Wall time of the relay's statements, by kind, through SQLAlchemy's cursor events:
    the relay's code runs unmodified while we see where its time goes."""

    KINDS = (("WITH batch", "claim"), ("UPDATE outbox SET published_at", "mark"))

    def __init__(self, engine: AsyncEngine) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._sync = engine.sync_engine
        event.listen(self._sync, "before_cursor_execute", self._before)
        event.listen(self._sync, "after_cursor_execute", self._after)

    def close(self) -> None:
        event.remove(self._sync, "before_cursor_execute", self._before)
        event.remove(self._sync, "after_cursor_execute", self._after)

    def _before(self, conn, *_args) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn, _cursor, statement: str, *_args) -> None:
        elapsed = time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())
        stripped = statement.lstrip()
        kind = next((k for prefix, k in self.KINDS if stripped.startswith(prefix)), "other")
        self.seconds[kind] += elapsed


def timed(relay_class: type[OutboxRelay]) -> type[OutboxRelay]:
    """The relay class with its publishing step and each batch timed (no logic changed).
    Timings are kept per call, not in one Stopwatch: lanes run batches concurrently."""

    class Timed(relay_class):
        batch_seconds = 0.0
        publish_seconds = 0.0

        async def publish_batch(self) -> tuple[int, int, int]:
            started = time.perf_counter()
            try:
                return await super().publish_batch()
            finally:
                self.batch_seconds += time.perf_counter() - started

        async def _publish(self, rows):
            started = time.perf_counter()
            try:
                return await super()._publish(rows)
            finally:
                self.publish_seconds += time.perf_counter() - started

    Timed.__name__ = f"Timed{relay_class.__name__}"
    return Timed


# --- variants ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    label: str
    relay_class: type[OutboxRelay] = OutboxRelay
    batch_size: int = 500
    options: dict = field(default_factory=dict)  # extra keyword arguments of relay_class
    relays: int = 1  # relay objects at once on one database, as replicas of a service would run
    # The relay's own engine: synchronous_commit=off and no pre-ping. Safe for the relay: a mark
    # lost in a crash means the row is published again, which the design already absorbs.
    lean_engine: bool = False

    @property
    def concurrency(self) -> int:
        return self.relays * self.options.get("lanes", 1)


@dataclass
class Outcome:
    variant: Variant
    seconds: float
    rate: float
    batches: int
    parts: dict[str, float]


async def run_variant(variant: Variant, nc: Client, url: str, records: list[tuple],
                      base_engine: AsyncEngine) -> Outcome:
    """Fresh outbox and stream, then drain until the backlog is 0 (the last check inside the
    timing); checks that the stream holds every row and every row is marked."""
    rows = len(records)
    await fill_outbox(url, records)
    await fresh_stream(nc.jetstream(), RELAY_STREAM, ["sample.>"])
    engine = base_engine
    if variant.lean_engine:
        engine = create_async_engine(
            asyncpg_url(url), pool_size=10, max_overflow=10, pool_pre_ping=False,
            connect_args={"server_settings": {"application_name": "bench-relay",
                                              "synchronous_commit": "off"}})
    try:
        relays = [timed(variant.relay_class)(engine, nc.jetstream(), batch_size=variant.batch_size,
                                             **variant.options)
                  for _ in range(variant.relays)]
        sql = SqlTimer(engine)
        watch = Stopwatch()
        try:
            with watch:
                while True:
                    await asyncio.gather(*(relay.drain() for relay in relays))
                    if await relays[0].backlog() == 0:
                        break
        finally:
            sql.close()
    finally:
        if engine is not base_engine:
            await engine.dispose()
    stored = await stream_count(nc.jetstream(), RELAY_STREAM)
    async with base_engine.connect() as conn:
        marked = int((await conn.execute(
            text("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"))).scalar_one())
    if stored != rows or marked != rows:
        raise RuntimeError(f"{variant.label}: stream holds {stored}, {marked} rows marked, "
                           f"expected {rows}")
    batch_seconds = sum(r.batch_seconds for r in relays)
    publish = sum(r.publish_seconds for r in relays)
    claim, mark = sql.seconds["claim"], sql.seconds["mark"]
    parts = {  # summed over concurrent batches: then they overlap, and exceed the wall time
        "claim": claim,
        "publish": publish,  # first send to last PubAck of the batch
        "mark": mark,
        "begin_commit_pool": batch_seconds - claim - publish - mark,
        "between_batches": max(0.0, watch.seconds * variant.concurrency - batch_seconds),
    }
    return Outcome(variant, watch.seconds, per_second(rows, watch.seconds),
                   sum(r.stats.batches for r in relays), parts)


def report(outcome: Outcome, raw_rate: float) -> None:
    v = outcome.variant
    say(f"  {v.label:<52} {outcome.seconds:6.2f} s {outcome.rate:8.0f} rows/s  "
        f"ratio {outcome.rate / raw_rate:.2f}")
    batches = max(outcome.batches, 1)
    note = f" (summed over {v.concurrency} concurrent)" if v.concurrency > 1 else ""
    say(f"      {outcome.batches} batches; per batch{note}: " + ", ".join(
        f"{name} {1000 * seconds / batches:.1f} ms" for name, seconds in outcome.parts.items()))


# Each step adds one change to the previous one, so each gain can be read off on its own.
COMPARISON = (
    Variant("stock OutboxRelay x 2 relays (no code change)", relays=2),
    Variant("FastRelay: publish_async waves", FastRelay),
    Variant("FastRelay: waves + fenced claim", FastRelay, options={"fenced_claim": True}),
    Variant("FastRelay: waves + fenced claim + 2 lanes", FastRelay,
            options={"fenced_claim": True, "lanes": 2}),
    Variant("FastRelay: the three + lean engine", FastRelay,
            options={"fenced_claim": True, "lanes": 2}, lean_engine=True),
)


async def main(args: argparse.Namespace) -> None:
    say(f"relay bench: {args.rows} rows, batch {args.batch_size}, raw window {args.window}")
    with bench_servers() as running:
        say(f"servers: nats {running.nats}, postgres {running.postgres}")
        async with platform_database(running.servers, "bench_relay") as (engine, url), \
                nats_client(running.servers.nats_url) as nc:
            watch = Stopwatch()
            with watch:
                records = build_records(args.rows, args.aggregates)
            say(f"built {len(records)} envelopes ({len(records[0][-1])} bytes each, "
                f"{args.aggregates} aggregates) in {watch.seconds:.1f} s (not timed)")

            # Raw publish before and after the relay, the rate over both: the ratio then
            # resists a machine that speeds up or slows down during the run (shared CPUs).
            raw_runs = [await raw_publish(nc, records, args.window)]
            say(f"raw JetStream publish_async, window {args.window}, Nats-Msg-Id: "
                f"{raw_runs[0]:6.2f} s {per_second(args.rows, raw_runs[0]):8.0f} msg/s")
            stock = await run_variant(Variant(f"OutboxRelay.drain, batch {args.batch_size}",
                                              batch_size=args.batch_size),
                                      nc, url, records, engine)
            raw_runs.append(await raw_publish(nc, records, args.window))
            say(f"raw again after the relay:                          "
                f"{raw_runs[1]:6.2f} s {per_second(args.rows, raw_runs[1]):8.0f} msg/s")
            raw_seconds = sum(raw_runs) / len(raw_runs)
            raw_rate = per_second(args.rows, raw_seconds)
            say(f"raw over both: {raw_rate:.0f} msg/s")
            say("relay (outbox filled by COPY and committed beforehand, not timed):")
            report(stock, raw_rate)
            ratio = stock.rate / raw_rate
            say(f"ratio relay/raw: {ratio:.2f} (target >= {TARGET}) -> "
                f"{'OK' if ratio >= TARGET else 'BELOW TARGET'}")

            compared = []
            if args.compare:
                say("prototypes and settings (same rows, fresh outbox and stream each):")
                for variant in COMPARISON:
                    variant = dataclasses.replace(variant, batch_size=args.batch_size)
                    outcome = await run_variant(variant, nc, url, records, engine)
                    report(outcome, raw_rate)
                    compared.append(outcome)

    emit({
        "bench": "relay",
        "rows": args.rows,
        "raw_publish_per_s": round(raw_rate, 1),
        "relay_per_s": round(stock.rate, 1),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "ok": ratio >= TARGET,
        "batch_size": args.batch_size,
        "window": args.window,
        "aggregates": args.aggregates,
        "raw_seconds": [round(r, 3) for r in raw_runs],
        "relay_seconds": round(stock.seconds, 3),
        "relay_per_batch_ms": {k: round(1000 * v / max(stock.batches, 1), 2)
                               for k, v in stock.parts.items()},
        "compare": {o.variant.label: {"per_s": round(o.rate, 1),
                                      "ratio": round(o.rate / raw_rate, 3)} for o in compared},
        "nats": running.nats,
        "postgres": running.postgres,
    })


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500, help="OutboxRelay batch_size")
    parser.add_argument("--window", type=int, default=2000,
                        help="raw publish: PubAcks awaited at most in flight")
    parser.add_argument("--aggregates", type=int, default=20_000,
                        help="distinct aggregate keys (rows of one key are published in order)")
    parser.add_argument("--compare", action="store_true",
                        help="also run prototype relays and settings (about a minute more)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
