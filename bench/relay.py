"""Outbox relay throughput (row committed -> PubAck -> marked) beside raw JetStream publish."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from _common import (
    Stopwatch,
    TimedRelay,
    bench_servers,
    emit,
    fresh_stream,
    nats_client,
    per_second,
    platform_database,
    publish_windowed,
    say,
)
from nats.aio.client import Client
from nats.js import JetStreamContext
from raccrochage_contracts import CloudEvent, nats_subject, new_event
from raccrochage_platform.outbox import write_events
from raccrochage_platform.tables import OUTBOX_FILLFACTOR
from raccrochage_rig.testing.sample import CounterIncremented
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TARGET = 0.6
RELAY_STREAM = "BENCH_SAMPLE"  # the events are sample.counter.incremented.v1: on sample.>
RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw."
CHUNK = 5000


# --- data ----------------------------------------------------------------------------------------
def build_events(rows: int, aggregates: int) -> list[CloudEvent]:
    """The envelopes as a service's unit of work makes them."""
    events = []
    for i in range(rows):
        key = f"youth-{i % aggregates}"
        events.append(
            new_event(CounterIncremented(counter=key, by=i), source="raccrochage/bench", subject=key)
        )
    return events


async def fill_outbox(engine: AsyncEngine, events: list[CloudEvent]) -> None:
    """The platform's outbox statement in chunks, each its own committed transaction (as many
    writers would leave them), then VACUUM ANALYZE: a live outbox has statistics; a just-filled
    one would mislead the planner."""
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE outbox"))
        # As repérage's migration 0006 sets it, for the outbox its relay claims from.
        await conn.execute(text(f"ALTER TABLE outbox SET (fillfactor = {OUTBOX_FILLFACTOR})"))
    for start in range(0, len(events), CHUNK):
        async with engine.begin() as conn:
            await write_events(conn, RELAY_STREAM, events[start : start + CHUNK])
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE outbox"))


async def stream_count(js: JetStreamContext, name: str) -> int:
    return (await js.stream_info(name)).state.messages


# --- raw publish ---------------------------------------------------------------------------------
async def raw_publish(nc: Client, events: list[CloudEvent], window: int) -> float:
    """Same payloads and headers as the relay sends, windowed publish_async; returns seconds."""
    js = nc.jetstream(publish_async_max_pending=window)
    await fresh_stream(js, RAW_STREAM, [f"{RAW_PREFIX}>"])
    seconds = await publish_windowed(
        js,
        RAW_STREAM,
        ((RAW_PREFIX + nats_subject(event.type), event.to_json(), str(event.id)) for event in events),
    )
    stored = await stream_count(js, RAW_STREAM)
    if stored != len(events):
        raise RuntimeError(f"raw publish: stream holds {stored}, expected {len(events)}")
    return seconds


@dataclass
class Outcome:
    seconds: float
    rate: float
    batches: int
    parts: dict[str, float]  # seconds by step, summed over all batches


async def run_relay(relay: TimedRelay, nc: Client, events: list[CloudEvent]) -> Outcome:
    """Fresh outbox and stream, then drain until the backlog is 0 (the last check inside the
    timing); checks that the stream holds every row and every row is marked."""
    rows = len(events)
    engine = relay.engine
    await fill_outbox(engine, events)
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
    parts = {  # summed over concurrent lanes: then they overlap, and exceed the wall time
        "publish_and_mark": relay.publish_seconds,  # first send to the rows marked
        "claim": relay.batch_seconds - relay.publish_seconds,
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
            relay = TimedRelay(engine, nc.jetstream(), batch_size=args.batch_size, lanes=args.lanes)
            watch = Stopwatch()
            with watch:
                events = build_events(args.rows, args.aggregates)
            say(
                f"built {len(events)} envelopes ({len(events[0].to_json())} bytes each, "
                f"{args.aggregates} aggregates) in {watch.seconds:.1f} s (not timed)"
            )

            # Raw publish before and after the relay, the rate over both: the ratio then
            # resists a machine that speeds up or slows down during the run (shared CPUs).
            raw_runs = [await raw_publish(nc, events, args.window)]
            say(
                f"raw JetStream publish_async, window {args.window}, Nats-Msg-Id: "
                f"{raw_runs[0]:6.2f} s {per_second(args.rows, raw_runs[0]):8.0f} msg/s"
            )
            outcome = await run_relay(relay, nc, events)
            raw_runs.append(await raw_publish(nc, events, args.window))
            say(f"raw again after the relay: {per_second(args.rows, raw_runs[1]):8.0f} msg/s")
            raw_rate = per_second(args.rows, sum(raw_runs) / len(raw_runs))
            say(f"raw over both runs: {raw_rate:.0f} msg/s")

            ratio = outcome.rate / raw_rate
            batches = max(outcome.batches, 1)
            per_batch_ms = {k: 1000 * v / batches for k, v in outcome.parts.items()}
            say("relay (outbox filled and committed beforehand, not timed):")
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
            "raw_publish_async_per_s": round(raw_rate, 1),
            "relay_per_s": round(outcome.rate, 1),
            "ratio": round(ratio, 3),
            "target": TARGET,
            "ok": ratio >= TARGET,
            "batch_size": args.batch_size,
            "lanes": args.lanes,
            "window": args.window,
            "aggregates": args.aggregates,
            "raw_seconds": [round(r, 3) for r in raw_runs],
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
