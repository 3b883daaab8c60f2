"""Outbox relay throughput (row committed -> PubAck -> marked) beside raw JetStream publish."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import asyncpg
from _common import (
    Stopwatch,
    TimedRelay,
    bench_servers,
    emit,
    fresh_stream,
    nats_client,
    per_second,
    platform_database,
    publish_lean,
    publish_windowed,
    say,
)
from nats.aio.client import Client
from nats.js import JetStreamContext
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.outbox import OutboxWriter
from raccrochage_platform.tables import OUTBOX_FILLFACTOR
from raccrochage_platform.testing.sample import CounterIncremented
from sqlalchemy import text

TARGET = 0.6
RELAY_STREAM = "BENCH_SAMPLE"  # OutboxWriter routes by event type: the relay publishes on sample.>
RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw."
COLUMNS = ("event_id", "event_type", "nats_subject", "stream", "aggregate_key", "envelope")
CHUNK = 5000


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
        # As repérage's migration 0006 sets it, for the outbox its relay claims from.
        await conn.execute(f"ALTER TABLE outbox SET (fillfactor = {OUTBOX_FILLFACTOR})")
        for start in range(0, len(records), CHUNK):
            await conn.copy_records_to_table(
                "outbox", records=records[start : start + CHUNK], columns=COLUMNS
            )
        await conn.execute("VACUUM ANALYZE outbox")
    finally:
        await conn.close()


async def stream_count(js: JetStreamContext, name: str) -> int:
    return (await js.stream_info(name)).state.messages


# --- raw publish ---------------------------------------------------------------------------------
async def raw_publish(nc: Client, records: list[tuple], window: int) -> float:
    """Same payloads and headers as the relay sends, windowed publish_async; returns seconds."""
    js = nc.jetstream(publish_async_max_pending=window)
    await fresh_stream(js, RAW_STREAM, [f"{RAW_PREFIX}>"])
    seconds = await publish_windowed(
        js,
        RAW_STREAM,
        (
            (RAW_PREFIX + subject, envelope, str(event_id))
            for event_id, _type, subject, _stream, _key, envelope in records
        ),
    )
    stored = await stream_count(js, RAW_STREAM)
    if stored != len(records):
        raise RuntimeError(f"raw publish: stream holds {stored}, expected {len(records)}")
    return seconds


async def raw_lean_publish(nc: Client, records: list[tuple], window: int) -> float:
    """The same through the relay's own publisher (`publish_lean`); returns seconds."""
    js = nc.jetstream()
    await fresh_stream(js, RAW_STREAM, [f"{RAW_PREFIX}>"])
    seconds = await publish_lean(
        nc,
        RAW_STREAM,
        (
            (RAW_PREFIX + subject, envelope, str(event_id))
            for event_id, _type, subject, _stream, _key, envelope in records
        ),
        window,
    )
    stored = await stream_count(js, RAW_STREAM)
    if stored != len(records):
        raise RuntimeError(f"raw lean publish: stream holds {stored}, expected {len(records)}")
    return seconds


# --- timing the relay without changing it --------------------------------------------------------
class StepTimedRelay(TimedRelay):
    """TimedRelay with the claim and mark statements timed too (the relay runs them on its own
    asyncpg connections, so the wrappers time its methods); no logic changed."""

    claim_seconds = 0.0
    mark_seconds = 0.0

    async def _claim(self, connection):
        started = time.perf_counter()
        try:
            return await super()._claim(connection)
        finally:
            self.claim_seconds += time.perf_counter() - started

    async def _mark(self, *args):
        started = time.perf_counter()
        try:
            return await super()._mark(*args)
        finally:
            self.mark_seconds += time.perf_counter() - started


@dataclass
class Outcome:
    seconds: float
    rate: float
    batches: int
    parts: dict[str, float]  # seconds by step, summed over all batches


async def run_relay(relay: StepTimedRelay, nc: Client, url: str, records: list[tuple]) -> Outcome:
    """Fresh outbox and stream, then drain until the backlog is 0 (the last check inside the
    timing); checks that the stream holds every row and every row is marked."""
    rows = len(records)
    engine = relay.engine
    await fill_outbox(url, records)
    await fresh_stream(nc.jetstream(), RELAY_STREAM, ["sample.>"])
    watch = Stopwatch()
    with watch:
        while True:
            await relay.drain()
            if await relay.backlog() == 0:
                break
    stored = await stream_count(nc.jetstream(), RELAY_STREAM)
    async with engine.connect() as conn:
        marked = int(
            (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"))
            ).scalar_one()
        )
    if stored != rows or marked != rows or relay.stats.failed:
        raise RuntimeError(
            f"relay: stream holds {stored}, {marked} rows marked, "
            f"{relay.stats.failed} failures, expected {rows} and 0"
        )
    claim, mark = relay.claim_seconds, relay.mark_seconds
    parts = {  # summed over concurrent lanes: then they overlap, and exceed the wall time
        "claim": claim,
        "publish": relay.publish_seconds,  # first send to last PubAck of the batch
        "mark": mark,
        "begin_commit_conn": relay.batch_seconds - claim - relay.publish_seconds - mark,
        "between_batches": max(0.0, watch.seconds * relay.lanes - relay.batch_seconds),
    }
    return Outcome(watch.seconds, per_second(rows, watch.seconds), relay.stats.batches, parts)


async def main(args: argparse.Namespace) -> None:
    say(
        f"relay bench: {args.rows} rows, batch {args.batch_size}, {args.lanes} lanes, "
        f"raw window {args.window}"
    )
    with bench_servers() as running:
        say(f"servers: nats {running.nats}, postgres {running.postgres}")
        async with (
            platform_database(running.servers, "bench_relay") as (engine, url),
            nats_client(running.servers.nats_url) as nc,
        ):
            relay = StepTimedRelay(engine, nc.jetstream(), batch_size=args.batch_size, lanes=args.lanes)
            watch = Stopwatch()
            with watch:
                records = build_records(args.rows, args.aggregates)
            say(
                f"built {len(records)} envelopes ({len(records[0][-1])} bytes each, "
                f"{args.aggregates} aggregates) in {watch.seconds:.1f} s (not timed)"
            )

            # Raw publish before and after the relay, the rate over both: the ratio then
            # resists a machine that speeds up or slows down during the run (shared CPUs).
            # Two raw limits: nats-py's publish_async, and the relay's own publisher (plain
            # publish, one PubAck subscription), which costs half the CPU; the faster is the
            # reference (the conservative ratio).
            raw_runs = [await raw_publish(nc, records, args.window)]
            lean_runs = [await raw_lean_publish(nc, records, args.window)]
            say(
                f"raw JetStream publish_async, window {args.window}, Nats-Msg-Id: "
                f"{raw_runs[0]:6.2f} s {per_second(args.rows, raw_runs[0]):8.0f} msg/s"
            )
            say(
                f"raw JetStreamPublisher (the relay's), window {args.window}: "
                f"{lean_runs[0]:6.2f} s {per_second(args.rows, lean_runs[0]):8.0f} msg/s"
            )
            outcome = await run_relay(relay, nc, url, records)
            raw_runs.append(await raw_publish(nc, records, args.window))
            lean_runs.append(await raw_lean_publish(nc, records, args.window))
            say(
                f"raw again after the relay: publish_async {per_second(args.rows, raw_runs[1]):8.0f} msg/s, "
                f"JetStreamPublisher {per_second(args.rows, lean_runs[1]):8.0f} msg/s"
            )
            async_rate = per_second(args.rows, sum(raw_runs) / len(raw_runs))
            raw_rate = max(async_rate, per_second(args.rows, sum(lean_runs) / len(lean_runs)))
            say(
                f"raw over both runs, the faster of the two ways: {raw_rate:.0f} msg/s "
                f"(publish_async alone: {async_rate:.0f} msg/s)"
            )

            ratio = outcome.rate / raw_rate
            batches = max(outcome.batches, 1)
            per_batch_ms = {k: 1000 * v / batches for k, v in outcome.parts.items()}
            say("relay (outbox filled by COPY and committed beforehand, not timed):")
            say(
                f"  OutboxRelay.drain, batch {args.batch_size}, {args.lanes} lanes: "
                f"{outcome.seconds:6.2f} s {outcome.rate:8.0f} rows/s"
            )
            note = f" (summed over {args.lanes} lanes)" if args.lanes > 1 else ""
            say(
                f"  {outcome.batches} batches; per batch{note}: "
                + ", ".join(f"{k} {ms:.1f} ms" for k, ms in per_batch_ms.items())
            )
            say(
                f"ratio relay/raw: {ratio:.2f} (target >= {TARGET}) -> "
                f"{'OK' if ratio >= TARGET else 'BELOW TARGET'}"
            )

    emit(
        {
            "bench": "relay",
            "rows": args.rows,
            "raw_publish_per_s": round(raw_rate, 1),
            "raw_publish_async_per_s": round(async_rate, 1),
            "ratio_to_publish_async": round(outcome.rate / async_rate, 3),
            "relay_per_s": round(outcome.rate, 1),
            "ratio": round(ratio, 3),
            "target": TARGET,
            "ok": ratio >= TARGET,
            "batch_size": args.batch_size,
            "lanes": args.lanes,
            "window": args.window,
            "aggregates": args.aggregates,
            "raw_seconds": [round(r, 3) for r in raw_runs],
            "raw_lean_seconds": [round(r, 3) for r in lean_runs],
            "relay_seconds": round(outcome.seconds, 3),
            "relay_batches": outcome.batches,
            "relay_per_batch_ms": {k: round(ms, 2) for k, ms in per_batch_ms.items()},
            "nats": running.nats,
            "postgres": running.postgres,
        }
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500, help="OutboxRelay batch_size")
    parser.add_argument("--lanes", type=int, default=2, help="OutboxRelay lanes")
    parser.add_argument(
        "--window", type=int, default=2000, help="raw publish: PubAcks awaited at most in flight"
    )
    parser.add_argument(
        "--aggregates",
        type=int,
        default=20_000,
        help="distinct aggregate keys (rows of one key are published in order)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    from raccrochage_platform import loop  # as the services run their relays: uvloop unless told otherwise

    loop.run(main(parse_args()))
