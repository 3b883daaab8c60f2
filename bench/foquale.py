"""FOQUALE: reservations under contention against the raw limit, and a request's latency.

In one run, on fresh embedded servers:

- raw: N transactions on OFFERS rows of a plain table, CONCURRENCY at a time, each one
  PostgreSQL transaction that locks the row (`SELECT ... FOR UPDATE`), takes a seat and inserts a
  reservation row: the floor of "one transaction with a row lock" on this machine now.
- FOQUALE: N `psad.solution.requested.v1` events for OFFERS offers of one département (many
  requests on few offers) are published first (not timed); then `raccrochage serve foquale` runs
  as its own process and is timed from the moment it listens to the moment N reservations exist.
  ratio = reservations/s ÷ raw/s (target >= 0.5).
- latency: with the process running, RATE requests/s for SECONDS seconds; each request's time
  from publish to its `foquale.reservation.made.v1` arriving on NATS. p99 (target < 50 ms).

Each phase also reports the CPU its processes spent per request (service, PostgreSQL, NATS, the
bench) and the share of the cores the rest of the machine used meanwhile ("others"): on a shared
machine the rates move with that load, the CPU per request much less.

Sizes are reduced by default for a shared machine (--requests, --rate, --seconds to change).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import psutil
from _common import (
    REPO_ROOT,
    CpuMeter,
    bench_servers,
    emit,
    migrated_database,
    nats_client,
    own_cpu_seconds,
    percentile,
    say,
)

FOQUALE_MIGRATIONS = REPO_ROOT / "services" / "foquale" / "migrations"
OFFERS = 5
CONCURRENCY = 8  # FOQUALE_CONSUMER_CONCURRENCY's default: the raw side gets as many connections
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0


def others(cpu: dict[str, float]) -> float:
    """CPU seconds nobody in the bench used: the rest of the machine's load."""
    ours = sum(cpu.get(k, 0.0) for k in ("postgres", "nats", "bench", "service"))
    return max(0.0, cpu["machine_busy"] - ours)


def cpu_per_request(cpu: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU per reservation, by process kind: comparable across a loaded and a
    quiet machine, where rates are not."""
    return {
        k: round(cpu[k] * 1000 / requests, 2) for k in ("service", "postgres", "nats", "bench") if k in cpu
    }


def cpu_story(cpu: dict[str, float], seconds: float) -> str:
    spent = ", ".join(
        f"{k} {cpu[k] / seconds:.2f}" for k in ("service", "postgres", "nats", "bench") if k in cpu
    )
    return f"cores busy: {spent}, others {others(cpu) / seconds:.2f} (of {cpu['cores']})"


def _dsn(url: str) -> str:
    from raccrochage_platform.db import libpq_dsn

    return libpq_dsn(url)


async def raw_rate(url: str, requests: int) -> float:
    """Reservations/s as plain transactions with a row lock, CONCURRENCY at a time."""
    pool = await asyncpg.create_pool(_dsn(url), min_size=CONCURRENCY, max_size=CONCURRENCY)
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE raw_offer (id int PRIMARY KEY, seats_left int NOT NULL);"
            "CREATE TABLE raw_reservation (id uuid PRIMARY KEY, offer_id int NOT NULL, made_at timestamptz NOT NULL)"
        )
        await conn.executemany(
            "INSERT INTO raw_offer VALUES ($1, $2)", [(i, requests) for i in range(OFFERS)]
        )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n % OFFERS)

    async def worker() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                offer = queue.get_nowait()
                async with conn.transaction():
                    await conn.fetchval("SELECT seats_left FROM raw_offer WHERE id = $1 FOR UPDATE", offer)
                    await conn.execute(
                        "UPDATE raw_offer SET seats_left = seats_left - 1 WHERE id = $1", offer
                    )
                    await conn.execute(
                        "INSERT INTO raw_reservation VALUES ($1, $2, now())", uuid.uuid4(), offer
                    )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    seconds = time.perf_counter() - started
    await pool.close()
    return requests / seconds


async def seed_offers(url: str, capacity: int) -> None:
    """OFFERS offers of Lot-et-Garonne, each with room for every request, as a school publishes."""
    from raccrochage_foquale.domain.offer_types import (
        ContactRole,
        Formation,
        FormationCodeKind,
        Level,
        OfferDescription,
        Statut,
    )
    from raccrochage_foquale.domain.owners import Actor
    from raccrochage_foquale.domain.uai import Uai
    from raccrochage_foquale.service_layer.commands import PublishOffer
    from raccrochage_foquale.service_layer.handlers import publish_offer
    from raccrochage_foquale.service_layer.unit_of_work import SqlFoqualeUnitOfWork
    from raccrochage_platform.db import make_engine

    engine = make_engine(url, application_name="bench-seed")
    uai = Uai("0470012H")
    try:
        for n in range(OFFERS):
            description = OfferDescription(
                uai=uai,
                formation=Formation(FormationCodeKind.CFD, f"5003121{n}", f"CAP {n}", Level.NIVEAU_3),
                statut=Statut.SCOLAIRE,
                departement="47",
                zap=None,
                capacity=capacity,
                opens_on=date(2027, 1, 4),
                closes_on=None,
                contact_role=ContactRole.DIRECTEUR_DELEGUE_FORMATIONS,
                keywords=(),
            )
            uow = SqlFoqualeUnitOfWork(engine, source="raccrochage/foquale", stream="FOQUALE")
            actor = Actor.establishment("bench", {uai})
            await publish_offer(PublishOffer(actor, f"bench-{n}", description, datetime.now(UTC)), uow)
    finally:
        await engine.dispose()


def request_event(tag: str, n: int):
    from raccrochage_contracts import new_event
    from raccrochage_contracts.events.psad_v1 import SolutionRequested

    case_id = uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{tag}/case/{n}")
    payload = SolutionRequested(
        case_id=case_id,
        youth_id=uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{tag}/{n}").hex * 2,
        psad_id="psad-47",
        request_id=uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{tag}/request/{n}"),
        solution_number=1,
        kind="foquale_seat",
        provider="foquale",
        age=17,
        last_diploma="DNB",
        months_since_leaving=4,
        departement="47",
        zap=None,
        wishes=[],
        requested_at=datetime.now(UTC),
    )
    return payload.request_id, new_event(payload, source="raccrochage/psad", subject=str(case_id))


async def publish(js, event) -> None:
    await js.publish(event.type, event.to_json(), headers={"Nats-Msg-Id": str(event.id)})


@contextlib.contextmanager
def foquale_process(servers, url: str, folder: Path):
    from raccrochage_rig.testing.processes import service_process

    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="foquale",
        NATS_URL=servers.nats_url,
        DATABASE_URL=url,
        RACCROCHAGE_TOKEN_KEY="b" * 64,
        RACCROCHAGE_RIG_DIR=str(folder / "rig-foquale"),
        LOG_LEVEL="WARNING",
    )
    with service_process("foquale", env, folder) as running:
        yield running


async def run(requests: int, rate: int, seconds: int) -> dict:
    from raccrochage_platform.topology import declare, load_topology

    with bench_servers() as bench:
        servers = bench.servers
        url = await migrated_database(servers, FOQUALE_MIGRATIONS, "bench_foquale")
        raw_url = await servers.create_database("bench_foquale_raw")
        say(f"raw: {requests} row-locked transactions on {OFFERS} rows, {CONCURRENCY} at a time")
        meter, bench_cpu = CpuMeter(bench.folder), own_cpu_seconds()
        meter.start()
        raw = await raw_rate(raw_url, requests)
        raw_cpu = meter.stop()
        raw_cpu["bench"] = own_cpu_seconds() - bench_cpu
        raw_seconds = requests / raw
        say(f"raw: {raw:,.0f} reservations/s; {cpu_story(raw_cpu, raw_seconds)}")
        await seed_offers(url, capacity=requests + rate * seconds)
        async with nats_client(servers.nats_url) as nc:
            js = nc.jetstream()
            await declare(js, load_topology(), services={"foquale"})
            await asyncio.gather(*(publish(js, request_event("burst", n)[1]) for n in range(requests)))
            say(f"foquale: {requests} requests waiting on the PSAD stream; starting the service")
            conn = await asyncpg.connect(_dsn(url))
            try:
                with foquale_process(servers, url, bench.folder) as running:
                    process = psutil.Process(running.process.pid)
                    meter, bench_cpu = CpuMeter(bench.folder), own_cpu_seconds()
                    meter.start()
                    service_cpu = sum(process.cpu_times()[:2])
                    started = time.perf_counter()
                    while await conn.fetchval("SELECT count(*) FROM reservation") < requests:
                        await asyncio.sleep(0.02)
                    burst_seconds = time.perf_counter() - started
                    burst_cpu = meter.stop()
                    burst_cpu["service"] = sum(process.cpu_times()[:2]) - service_cpu
                    burst_cpu["bench"] = own_cpu_seconds() - bench_cpu
                    service = requests / burst_seconds
                    say(
                        f"foquale: {service:,.0f} reservations/s (ratio {service / raw:.2f}); "
                        f"{cpu_story(burst_cpu, burst_seconds)}"
                    )

                    sent: dict[str, float] = {}
                    latencies: list[float] = []
                    done = asyncio.Event()
                    total = rate * seconds

                    async def on_made(msg) -> None:
                        request_id = json.loads(msg.data)["data"]["request_id"]
                        at = sent.pop(request_id, None)
                        if at is not None:
                            latencies.append((time.perf_counter() - at) * 1000)
                            if len(latencies) == total:
                                done.set()

                    sub = await nc.subscribe("foquale.reservation.made.v1", cb=on_made)
                    meter, bench_cpu = CpuMeter(bench.folder), own_cpu_seconds()
                    meter.start()
                    service_cpu = sum(process.cpu_times()[:2])
                    say(f"latency: {rate} requests/s for {seconds}s")
                    t0 = time.perf_counter()
                    for n in range(total):
                        request_id, event = request_event("steady", n)
                        sent[str(request_id)] = time.perf_counter()
                        await publish(js, event)
                        await asyncio.sleep(max(0.0, t0 + (n + 1) / rate - time.perf_counter()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 60)
                    await sub.unsubscribe()
                    steady_cpu = meter.stop()
                    steady_cpu["service"] = sum(process.cpu_times()[:2]) - service_cpu
                    steady_cpu["bench"] = own_cpu_seconds() - bench_cpu
            finally:
                await conn.close()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    say(
        f"latency: {len(latencies)}/{total} answered, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"{cpu_story(steady_cpu, seconds)}"
    )
    return {
        "bench": "foquale",
        "requests": requests,
        "offers": OFFERS,
        "raw_per_s": round(raw, 1),
        "foquale_per_s": round(service, 1),
        "ratio": round(service / raw, 3),
        "target_ratio": TARGET_RATIO,
        "latency_rate": rate,
        "latency_seconds": seconds,
        "answered": len(latencies),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "target_p99_ms": TARGET_P99_MS,
        "raw_cpu_ms_per_request": cpu_per_request(raw_cpu, requests),
        "foquale_cpu_ms_per_request": cpu_per_request(burst_cpu, requests),
        "raw_others_cpu_share": round(others(raw_cpu) / raw_seconds, 2),
        "foquale_others_cpu_share": round(others(burst_cpu) / (requests / service), 2),
        "foquale_service_cpu_share": round(burst_cpu["service"] / (requests / service), 2),
        "latency_cpu_ms_per_request": cpu_per_request(steady_cpu, total),
        "latency_others_cpu_share": round(others(steady_cpu) / seconds, 2),
        "cores": raw_cpu["cores"],
        "nats": bench.nats,
        "postgres": bench.postgres,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    emit(asyncio.run(run(args.requests, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
