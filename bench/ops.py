"""ops projecting a replay of every service stream, against the raw limit, and its dashboard's latency.

A synthetic campaign (raccrochage_ops.synthetic: each youth handed over, its case, contacts,
interview, solution or closing; seats, MLDS candidacies, clauses beside) is published to the five
service streams first (not timed). Then, in the same run:

- raw: five durable pull consumers of their own (one per stream, running at once as ops' do)
  fetch a batch, insert the batch's events into a plain table in one PostgreSQL transaction (one
  `unnest` insert of id, type and body), and ack each message; timed from the first fetch to
  the last ack.
- ops: ops' five consumers (the platform's EventConsumer with ops' unit of work, inbox and
  projection, batch 500) on a migrated ops database in this process; timed from their start to
  the moment every one has acked its whole stream.

ratio = projected events/s ÷ raw events/s; target ≥ 0.5. Then the dashboard's figures
(service_layer/figures.dashboard: every panel's queries) are computed --queries times, p95 in ms
(target < 200 ms; the issue's figure is for 500,000 youths, this bench loads --youths).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime

from _common import bench_servers, emit, migrated_database, nats_client, percentile, say

TARGET_RATIO = 0.5
TARGET_P95_MS = 200
STREAMS = ("REPERAGE", "PSAD", "FOQUALE", "MLDS", "CLAUSE")
RAW_TABLE = (
    "CREATE TABLE raw_event (event_id uuid PRIMARY KEY, event_type text NOT NULL, body jsonb NOT NULL)"
)
RAW_INSERT = (
    "INSERT INTO raw_event (event_id, event_type, body) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) ON CONFLICT DO NOTHING"
)


async def publish(nc, events) -> int:
    from raccrochage_contracts import nats_subject, new_event
    from raccrochage_ops.synthetic import stream_of

    js = nc.jetstream()
    window: list = []
    for event_type, data in events:
        envelope = new_event(data, source=f"raccrochage/{event_type.split('.')[0]}", subject="bench")
        window.append(
            await js.publish_async(
                nats_subject(envelope.type),
                envelope.to_json(),
                stream=stream_of(event_type),
                headers={"Nats-Msg-Id": str(envelope.id)},
            )
        )
        if len(window) >= 2000:
            await asyncio.gather(*window)
            window = []
    await asyncio.gather(*window)
    return len(events)


async def raw_run(nc, dsn: str, batch: int, counts: dict[str, int]) -> dict:
    import asyncpg
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    js = nc.jetstream()
    for stream in STREAMS:
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=f"raw_{stream.lower()}",
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=10000,
            ),
        )
    setup = await asyncpg.connect(dsn)
    await setup.execute(RAW_TABLE)
    await setup.close()

    async def one(stream: str) -> int:
        sub = await js.pull_subscribe_bind(durable=f"raw_{stream.lower()}", stream=stream)
        conn = await asyncpg.connect(dsn)
        done = 0
        try:
            while done < counts[stream]:
                try:
                    messages = await sub.fetch(batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                ids, types, bodies = [], [], []
                for msg in messages:
                    envelope = json.loads(msg.data)
                    ids.append(uuid.UUID(envelope["id"]))
                    types.append(envelope["type"])
                    bodies.append(msg.data.decode())
                async with conn.transaction():
                    await conn.execute(RAW_INSERT, ids, types, bodies)
                for msg in messages:
                    await msg.ack()
                done += len(messages)
        finally:
            await conn.close()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return done

    started = time.perf_counter()
    done = sum(await asyncio.gather(*(one(s) for s in STREAMS if counts[s])))
    await nc.flush()
    seconds = time.perf_counter() - started
    return {"events": done, "seconds": round(seconds, 2), "per_s": round(done / seconds, 1)}


async def ops_run(nc, url: str, batch: int, total: int) -> dict:
    from raccrochage_contracts.registry import load_all
    from raccrochage_ops.service_layer import projecting
    from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
    from raccrochage_platform.consumer import EventConsumer
    from raccrochage_platform.db import make_engine
    from raccrochage_platform.topology import declare_consumer, load_topology

    topology = load_topology()
    registry = load_all()
    js = nc.jetstream()
    engine = make_engine(url, application_name="bench-ops")
    unit_of_work = lambda: SqlOpsUnitOfWork(engine, source="raccrochage/ops")  # noqa: E731
    consumers = []
    for durable, prefix in projecting.CONSUMERS.items():
        definition = topology.consumers[durable]
        await declare_consumer(js, definition)
        consumer = EventConsumer(definition, registry, unit_of_work, js, batch_size=batch)
        projecting.register(consumer, registry, prefix)
        consumers.append(consumer)

    async def caught_up() -> bool:
        for consumer in consumers:
            info = await js.consumer_info(consumer.definition.stream, consumer.name)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    started = time.perf_counter()
    for consumer in consumers:
        await consumer.start()
    try:
        while not await caught_up():
            if time.perf_counter() - started > 1800:
                raise RuntimeError("ops stalled")
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        for consumer in consumers:
            await consumer.stop()
    async with engine.connect() as conn:
        from sqlalchemy import text

        handled = (await conn.execute(text("SELECT count(*) FROM inbox"))).scalar_one()
        youths = (await conn.execute(text("SELECT count(*) FROM youth"))).scalar_one()
    return {
        "engine": engine,
        "events": handled,
        "youths": youths,
        "seconds": round(seconds, 2),
        "per_s": round(total / seconds, 1),
    }


async def dashboard_latency(engine, queries: int) -> dict:
    from raccrochage_ops.adapters.repository import Filters
    from raccrochage_ops.service_layer.figures import dashboard
    from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork

    timings = []
    for n in range(queries):
        filters = Filters(departement=None if n % 2 else "33")
        started = time.perf_counter()
        await dashboard(SqlOpsUnitOfWork(engine, source="raccrochage/ops"), filters, datetime.now(UTC))
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(percentile(timings, 50), 1), "p95_ms": round(percentile(timings, 95), 1)}


async def main(args: argparse.Namespace) -> None:
    from _common import REPO_ROOT
    from raccrochage_ops.synthetic import campaign, stream_of
    from raccrochage_platform.db import libpq_dsn
    from raccrochage_platform.topology import declare_stream, load_topology

    events = []
    for c in range(args.campaigns):
        events += campaign(args.youths // args.campaigns, seed=c, campaign_id=f"bench-{c}")
    counts = {s: 0 for s in STREAMS}
    for event_type, _ in events:
        counts[stream_of(event_type)] += 1
    say(f"{len(events)} events for {args.youths} youths: {counts}")
    with bench_servers() as bench:
        async with nats_client(bench.servers.nats_url) as nc:
            js = nc.jetstream()
            topology = load_topology()
            for stream in STREAMS:
                await declare_stream(js, topology.streams[stream])
                await js.purge_stream(stream)
            started = time.perf_counter()
            await publish(nc, events)
            say(f"published in {time.perf_counter() - started:.1f} s (not timed)")
            raw_db = await bench.servers.create_database("raw")
            raw = await raw_run(nc, libpq_dsn(raw_db), args.batch, counts)
            say(f"raw: {raw['events']} events in {raw['seconds']} s = {raw['per_s']:.0f}/s")
            url = await migrated_database(bench.servers, REPO_ROOT / "services" / "ops" / "migrations", "ops")
            ops = await ops_run(nc, url, args.batch, len(events))
            engine = ops.pop("engine")
            say(
                f"ops: {ops['events']} events ({ops['youths']} youths) in {ops['seconds']} s = {ops['per_s']:.0f}/s"
            )
            try:
                latency = await dashboard_latency(engine, args.queries)
            finally:
                await engine.dispose()
            say(
                f"dashboard figures: p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms over {args.queries}"
            )
    ratio = ops["per_s"] / raw["per_s"]
    ok = ratio >= TARGET_RATIO and ops["events"] == len(events) and latency["p95_ms"] < TARGET_P95_MS
    say(
        f"ratio {ratio:.3f} = {ops['per_s']:.0f} projected/s / {raw['per_s']:.0f} raw/s (target >= {TARGET_RATIO})"
    )
    emit(
        {
            "bench": "ops",
            "youths": args.youths,
            "events": len(events),
            "raw_per_s": raw["per_s"],
            "ops_per_s": ops["per_s"],
            "dashboard_p95_ms": latency["p95_ms"],
            "target_p95_ms": TARGET_P95_MS,
            "ok": ok,
            "nats": bench.nats,
            "postgres": bench.postgres,
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--youths", type=int, default=20_000, help="youths in the synthetic campaigns")
    parser.add_argument("--campaigns", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=40, help="dashboard computations timed")
    asyncio.run(main(parser.parse_args()))
