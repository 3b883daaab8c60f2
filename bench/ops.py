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

ratio = projected events/s ÷ raw events/s; target ≥ 0.5 (`--youths`: 146,000 youths make about
1M events).

Then the read models are filled up to `--dashboard-youths` without NATS: a year of monthly
national campaigns (every metropolitan département, two PSADs each), generated chunk by chunk and
applied by ops' own unit of work (`project`, then `commit`: load, rules, upsert, counts), one
transaction per chunk. The dashboard's main page (`GET /`, ops' FastAPI routes in this process,
an ops token, half of the requests for one département) is then requested `--queries` times: its
p95 in ms (target < 200 ms at 500,000 youths). `--full` runs the issue's sizes: a 1M-event
replay and 500,000 youths.
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


async def load_directly(engine, youths: int, chunk: int) -> dict:
    """Add `youths` youths to ops' read models without NATS: monthly national campaigns over a
    year, `chunk` youths' events per transaction of ops' own unit of work."""
    from datetime import timedelta

    from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
    from raccrochage_ops.synthetic import NATIONAL, campaign

    chunks = max(1, -(-youths // chunk))
    started = time.perf_counter()
    events = generating = 0.0
    for i in range(chunks):
        size = min(chunk, youths - i * chunk)
        month = i * 12 // chunks
        start = datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(days=30 * month)
        began = time.perf_counter()
        generated = campaign(
            size, seed=100_000 + i, campaign_id=f"national-{start:%Y-%m}", start=start, departements=NATIONAL
        )
        generating += time.perf_counter() - began
        async with SqlOpsUnitOfWork(engine, source="raccrochage/ops") as uow:
            for event_type, data in generated:
                uow.project(event_type, data)
            await uow.commit()
        events += len(generated)
        if (i + 1) % 10 == 0 or i + 1 == chunks:
            seconds = time.perf_counter() - started
            say(f"  loaded {min((i + 1) * chunk, youths)} youths, {events:.0f} events in {seconds:.0f} s")
    seconds = time.perf_counter() - started
    return {
        "youths": youths,
        "events": int(events),
        "seconds": round(seconds, 1),
        "generating_seconds": round(generating, 1),
        "applied_per_s": round(events / max(seconds - generating, 1e-9), 1),
    }


async def page_latency(engine, nc, queries: int) -> dict:
    """The dashboard's main page through ops' own routes (HTML rendered), in this process."""
    import httpx
    from fastapi import FastAPI
    from raccrochage_contracts.registry import load_all
    from raccrochage_ops.entrypoints.api import OpsWeb, install
    from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
    from raccrochage_platform.auth import mint
    from raccrochage_platform.topology import load_topology

    key = "b" * 64
    app = FastAPI()
    install(
        app,
        OpsWeb(
            unit_of_work=lambda: SqlOpsUnitOfWork(engine, source="raccrochage/ops"),
            js=nc.jetstream(),
            topology=load_topology(),
            registry=load_all(),
            token_key=key,
            service_urls=dict,
        ),
    )
    headers = {"Authorization": f"Bearer {mint(key, role='ops', territory=None, sub='bench')}"}
    timings = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops", headers=headers
    ) as client:
        for n in range(queries + 2):
            params = {} if n % 2 else {"departement": "33"}
            started = time.perf_counter()
            response = await client.get("/", params=params)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if n >= 2:  # the first two warm the caches (one of each filter)
                timings.append(elapsed)
    return {
        "p50_ms": round(percentile(timings, 50), 1),
        "p95_ms": round(percentile(timings, 95), 1),
        "bytes": len(response.content),
    }


async def publish_campaigns(nc, youths: int, campaigns: int, chunk: int) -> dict[str, int]:
    """The replay's events, generated and published chunk by chunk (a 1M-event list would not
    fit beside the servers); events per stream."""
    from raccrochage_ops.synthetic import campaign, stream_of

    counts = {s: 0 for s in STREAMS}
    for c in range(campaigns):
        mine = youths // campaigns
        for k, first in enumerate(range(0, mine, chunk)):
            events = campaign(min(chunk, mine - first), seed=c * 1000 + k, campaign_id=f"bench-{c}")
            for event_type, _ in events:
                counts[stream_of(event_type)] += 1
            await publish(nc, events)
    return counts


async def main(args: argparse.Namespace) -> None:
    from _common import REPO_ROOT
    from raccrochage_platform.db import libpq_dsn, make_engine
    from raccrochage_platform.topology import declare_stream, load_topology

    if args.full:
        args.youths, args.dashboard_youths = 146_000, 500_000
    replay: dict = {}
    with bench_servers() as bench:
        async with nats_client(bench.servers.nats_url) as nc:
            url = await migrated_database(bench.servers, REPO_ROOT / "services" / "ops" / "migrations", "ops")
            engine = None
            try:
                if args.youths:
                    js = nc.jetstream()
                    topology = load_topology()
                    for stream in STREAMS:
                        await declare_stream(js, topology.streams[stream])
                        await js.purge_stream(stream)
                    started = time.perf_counter()
                    counts = await publish_campaigns(nc, args.youths, args.campaigns, args.chunk)
                    total = sum(counts.values())
                    say(f"{total} events for {args.youths} youths: {counts}")
                    say(f"generated and published in {time.perf_counter() - started:.1f} s (not timed)")
                    raw_db = await bench.servers.create_database("raw")
                    raw = await raw_run(nc, libpq_dsn(raw_db), args.batch, counts)
                    say(f"raw: {raw['events']} events in {raw['seconds']} s = {raw['per_s']:.0f}/s")
                    ops = await ops_run(nc, url, args.batch, total)
                    engine = ops.pop("engine")
                    say(
                        f"ops: {ops['events']} events ({ops['youths']} youths) in {ops['seconds']} s"
                        f" = {ops['per_s']:.0f}/s"
                    )
                    ratio = ops["per_s"] / raw["per_s"]
                    say(
                        f"ratio {ratio:.3f} = {ops['per_s']:.0f} projected/s / {raw['per_s']:.0f} raw/s"
                        f" (target >= {TARGET_RATIO})"
                    )
                    replay = {
                        "events": total,
                        "raw_per_s": raw["per_s"],
                        "ops_per_s": ops["per_s"],
                        "ratio": round(ratio, 3),
                        "target_ratio": TARGET_RATIO,
                        "ok_ratio": ratio >= TARGET_RATIO and ops["events"] == total,
                    }
                engine = engine or make_engine(url, application_name="bench-ops")
                more = args.dashboard_youths - args.youths
                loaded = None
                if more > 0:
                    say(f"loading {more} more youths without NATS, {args.load_chunk} a transaction")
                    loaded = await load_directly(engine, more, args.load_chunk)
                    say(
                        f"loaded {loaded['events']} events in {loaded['seconds']} s"
                        f" ({loaded['generating_seconds']} s generating them)"
                    )
                latency = await page_latency(engine, nc, args.queries)
            finally:
                if engine is not None:
                    await engine.dispose()
            youths = max(args.dashboard_youths, args.youths)
            say(f"dashboard page at {youths} youths: p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms")
    ok = latency["p95_ms"] < TARGET_P95_MS and replay.get("ok_ratio", True)
    emit(
        {
            "bench": "ops",
            "youths": args.youths,
            **replay,
            "dashboard_youths": youths,
            "loaded": loaded,
            "dashboard_p50_ms": latency["p50_ms"],
            "dashboard_p95_ms": latency["p95_ms"],
            "target_p95_ms": TARGET_P95_MS,
            "ok": ok,
            "nats": bench.nats,
            "postgres": bench.postgres,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--youths", type=int, default=20_000, help="youths of the replay through NATS (0: no replay)"
    )
    parser.add_argument("--campaigns", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=10_000, help="youths generated and published at once")
    parser.add_argument(
        "--dashboard-youths",
        type=int,
        default=50_000,
        help="youths in the read models when the page is timed (those past --youths loaded without NATS)",
    )
    parser.add_argument("--load-chunk", type=int, default=5_000, help="youths a transaction when loading")
    parser.add_argument("--queries", type=int, default=40, help="dashboard page requests timed")
    parser.add_argument("--full", action="store_true", help="the issue's sizes: 146,000 and 500,000 youths")
    asyncio.run(main(parser.parse_args()))
