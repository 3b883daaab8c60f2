"""PSAD opening cases from a backlog of `reperage.youth.identified.v1`, against the raw limit.

N identified events (distinct youths, départements 24/33/40/47/64) are published to the
REPERAGE stream first (not timed). Then, in the same run:

- raw: a durable pull consumer of its own on the same stream fetches a batch, inserts the
  batch's rows into a plain table in one PostgreSQL transaction (one `unnest` insert), and acks
  each message; timed from the first fetch to the last ack. It runs before and after the service
  (two durables), and the faster of the two is the reference (the conservative ratio).
- PSAD: the service as its own process (`raccrochage serve psad`, as the rig runs it) on a
  migrated database, consuming its `psad_reperage` durable with PSAD_CONSUMER_BATCH; timed from
  the moment it listens (its port file; consumers start just before, so the cases already there
  are subtracted) to the moment `SELECT count(*) FROM case_file` reaches N.

ratio = cases/s ÷ raw/s; target ≥ 0.5.

--runs N runs the whole bench N times, each in a process of its own with fresh servers, and
reports the median ratio beside every run's: on this shared VM the raw rate alone moves by a
third from one run to the next (8,600-12,800/s within an hour), so one run's ratio says little.

--force-custom-plans: sets plan_cache_mode = force_custom_plan on PSAD's database, to tell a plan
problem from a code one. It was needed while the case insert bound 'closed' in its ON CONFLICT
predicate (a generic plan lost the partial unique index and the service stalled); the predicate is
now written into the SQL and the regression is tested, so the flag should change nothing. A stall
is still reported if one happens. The service's CPU seconds, PostgreSQL's and NATS's, and
what the rest of the (shared) machine used are reported beside, since figures taken under load
from others are not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from _common import (
    STATEMENTS_OPTIONS,
    CpuMeter,
    bench_servers,
    emit,
    nats_client,
    own_cpu_seconds,
    percentile,
    say,
    say_statements,
    top_statements,
)
from _psad_common import count_cases, declare_psad_topology, psad_database, psad_process

TARGET_RATIO = 0.5
SUBJECT = "reperage.youth.identified.v1"
STREAM = "REPERAGE"
DEPARTEMENTS = ("24", "33", "40", "47", "64")
RAW_TABLE = """
CREATE TABLE raw_case (
    event_id uuid PRIMARY KEY,
    youth_id text NOT NULL,
    psad_id text NOT NULL,
    departement text NOT NULL,
    age integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)"""
RAW_INSERT = (
    "INSERT INTO raw_case (event_id, youth_id, psad_id, departement, age) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[])"
)


# --- set-up (not timed) --------------------------------------------------------------------------
def build_events(count: int, seed: int) -> list[tuple[str, bytes]]:
    """(event id, JSON) of `count` identified youths, as repérage would publish them."""
    from raccrochage_contracts import new_event
    from raccrochage_contracts.events.reperage_v1 import YouthIdentified

    out = []
    as_of = date(2026, 11, 2)
    for n in range(count):
        departement = DEPARTEMENTS[n % len(DEPARTEMENTS)]
        payload = YouthIdentified(
            youth_id=hashlib.sha256(f"bench-psad-{seed}-{n}".encode()).hexdigest(),
            campaign_id="bench-2026-11",
            psad_id=f"psad-{departement}",
            departement=departement,
            age=16 + n % 10,
            last_diploma="AUCUN" if n % 3 else "DNB",
            last_training="2nde GT",
            months_since_leaving=1 + n % 24,
            as_of=as_of,
        )
        event = new_event(payload, source="raccrochage/reperage", subject=f"bench-{n}")
        out.append((str(event.id), event.to_json()))
    return out


async def publish_all(nc, events: list[tuple[str, bytes]]) -> None:
    from raccrochage_contracts import nats_subject

    js = nc.jetstream()
    subject = nats_subject(SUBJECT)
    window = 2000
    for start in range(0, len(events), window):
        futures = [
            await js.publish_async(subject, body, stream=STREAM, headers={"Nats-Msg-Id": event_id})
            for event_id, body in events[start : start + window]
        ]
        await asyncio.gather(*futures)


async def add_raw_consumer(nc, durable: str) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from raccrochage_platform.topology import load_topology

    psad = load_topology().consumers["psad_reperage"]  # same limits as the service's consumer
    await nc.jetstream().add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=psad.ack_wait_seconds,
            max_ack_pending=psad.max_ack_pending,
            filter_subject=SUBJECT,
        ),
    )


# --- raw: fetch + one transaction per batch + ack --------------------------------------------------
async def raw_run(nc, dsn: str, durable: str, count: int, batch: int, folder: Path | None = None) -> dict:
    import asyncpg
    import nats.errors

    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable=durable, stream=STREAM)
    conn = await asyncpg.connect(dsn)
    await conn.execute("TRUNCATE raw_case")
    done = batches = 0
    meter = CpuMeter(folder)
    meter.start()
    meter_cpu = own_cpu_seconds()
    started = time.perf_counter()
    try:
        while done < count:
            try:
                messages = await sub.fetch(batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                if time.perf_counter() - started > 600:
                    raise RuntimeError(f"raw consumer stalled at {done}/{count}") from None
                continue
            ids, youths, psads, deps, ages = [], [], [], [], []
            for msg in messages:
                envelope = json.loads(msg.data)
                data = envelope["data"]
                ids.append(uuid.UUID(envelope["id"]))
                youths.append(data["youth_id"])
                psads.append(data["psad_id"])
                deps.append(data["departement"])
                ages.append(data["age"])
            async with conn.transaction():
                await conn.execute(RAW_INSERT, ids, youths, psads, deps, ages)
            for msg in messages:
                await msg.ack()
            done += len(messages)
            batches += 1
        await nc.flush()
        seconds = time.perf_counter() - started
        cpu = own_cpu_seconds() - meter_cpu
        servers_cpu = meter.stop()
        rows = await conn.fetchval("SELECT count(*) FROM raw_case")
    finally:
        await conn.close()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return {
        "durable": durable,
        "messages": done,
        "rows": rows,
        "batches": batches,
        "seconds": round(seconds, 2),
        "per_s": round(done / seconds, 1),
        "client_cpu_s": round(cpu, 2),
        "postgres_cpu_s": round(servers_cpu["postgres"], 2),
        "nats_cpu_s": round(servers_cpu["nats"], 2),
        "others_cpu_s": round(
            servers_cpu["machine_busy"] - cpu - servers_cpu["postgres"] - servers_cpu["nats"], 2
        ),
    }


# --- PSAD as its own process ---------------------------------------------------------------------
def batch_sizes(*log_paths: Path) -> dict:
    """`cases_opened` log lines: how many events each batch transaction received."""
    sizes = []
    for raw in (line for path in log_paths for line in path.read_text(errors="replace").splitlines()):
        if '"cases_opened"' not in raw:
            continue
        with contextlib.suppress(ValueError, KeyError):
            sizes.append(int(json.loads(raw)["received"]))
    if not sizes:
        return {"batches": 0}
    return {
        "batches": len(sizes),
        "p50": percentile(sizes, 50),
        "min": min(sizes),
        "max": max(sizes),
        "full": sum(1 for s in sizes if s == max(sizes)),
    }


def start_profiler(py_spy: str, pid: int, output: Path):
    """py-spy sampling the service until SIGINT (speedscope JSON)."""
    import subprocess

    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "speedscope",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


async def acked(nc, count: int) -> int:
    """Of the `count` events waiting for PSAD's durable consumer, how many it has acked."""
    info = await nc.jetstream().consumer_info(STREAM, "psad_reperage")
    return count - info.num_pending - info.num_ack_pending


class Stalled(RuntimeError):
    def __init__(self, cases: int, seconds: float, failures: int) -> None:
        super().__init__(
            f"no new case for a while: {cases} cases after {seconds:.0f} s, "
            f"{failures} handler_failed_will_retry lines in the service log"
        )
        self.cases, self.seconds, self.failures = cases, seconds, failures


async def psad_run(
    running_servers,
    nc,
    url: str,
    dsn: str,
    folder: Path,
    count: int,
    batch: int,
    profile: str | None,
    statements: bool = False,
    stall_seconds: float = 45,
    processes: int = 1,
) -> dict:
    import asyncpg
    import psutil

    conn = await asyncpg.connect(dsn)
    meter = CpuMeter(running_servers.folder)
    meter.start()
    bench_cpu = own_cpu_seconds()
    spawned = time.perf_counter()
    result: dict = {}
    profiler = None
    try:
        with contextlib.ExitStack() as stack:
            # Replicas as a deployment scales PSAD: the same durable consumer, one process each.
            replicas = [
                stack.enter_context(
                    psad_process(
                        running_servers.servers,
                        url,
                        folder,
                        tag=f"r{n}" if n else "",
                        PSAD_CONSUMER_BATCH=str(batch),
                    )
                )
                for n in range(processes)
            ]
            running = replicas[0]
            ready = time.perf_counter()
            watched = [psutil.Process(replica.process.pid) for replica in replicas]

            def service_cpu() -> float:
                return sum(sum(process.cpu_times()[:2]) for process in watched)

            cpu_ready = service_cpu()
            at_ready = await count_cases(conn)
            if profile:
                profiler = start_profiler(profile, running.process.pid, folder / "psad.speedscope.json")
            say(
                f"psad listening after {ready - spawned:.2f} s (pids {', '.join(str(r.process.pid) for r in replicas)}); "
                f"{at_ready} cases already"
            )
            cases = at_ready
            last_progress, last_count = ready, cases
            next_report = ready + 5
            while cases < count:
                await asyncio.sleep(0.2)
                # Events acked by PSAD's consumer: it acks a batch once its transaction committed.
                # (A count(*) of the growing table every 0.2 s cost PostgreSQL 1.4 s of 40.)
                cases = await acked(nc, count)
                now = time.perf_counter()
                if cases != last_count:
                    last_progress, last_count = now, cases
                elif now - last_progress > stall_seconds:
                    failures = sum(r.log_text().count('"handler_failed_will_retry"') for r in replicas)
                    raise Stalled(cases, now - ready, failures)
                if now >= next_report:
                    say(f"  {cases} cases after {now - ready:.1f} s")
                    next_report = now + 5
            last = time.perf_counter()
            cpu_last = service_cpu()
            cpu = meter.stop()
            cases = await count_cases(conn)  # what was committed, not what was acked
            cpu["service"] = cpu_last - cpu_ready
            cpu["service_startup"] = cpu_ready
            cpu["bench"] = own_cpu_seconds() - bench_cpu
            cpu["others"] = (
                cpu["machine_busy"]
                - cpu["service"]
                - cpu_ready
                - cpu["bench"]
                - cpu["postgres"]
                - cpu["nats"]
            )
            if profiler is not None:
                profiler.send_signal(2)
                with contextlib.suppress(Exception):
                    profiler.wait(30)
            # The relay publishes psad.case.opened behind the consumer: how far behind, for the record.
            backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            drain_started = time.perf_counter()
            while (
                await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                and time.perf_counter() - drain_started < 120
            ):
                await asyncio.sleep(0.2)
            drained = time.perf_counter() - drain_started
            by_status = dict(await conn.fetch("SELECT status, count(*) FROM case_file GROUP BY status"))
            if statements:
                result["statements"] = await top_statements(conn)
            inbox = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'psad_reperage'")
            sizes = batch_sizes(*(r.log for r in replicas))
            log_path = running.log
        result.update(
            {
                "cases": cases,
                "already_at_ready": at_ready,
                "seconds": round(last - ready, 2),
                "per_s": round((cases - at_ready) / (last - ready), 1),
                "per_s_from_spawn": round(cases / (last - spawned), 1),
                "startup_s": round(ready - spawned, 2),
                "outbox_backlog_at_last_case": backlog,
                "outbox_drained_after_s": round(drained, 1),
                "by_status": by_status,
                "inbox_rows": inbox,
                "batches": sizes,
                "cpu": cpu,
                "log": str(log_path),
            }
        )
    finally:
        await conn.close()
    return result


async def main(args: argparse.Namespace) -> None:
    import asyncpg
    from raccrochage_platform.db import libpq_dsn

    batch = int(os.environ.get("PSAD_CONSUMER_BATCH", "500"))
    say(f"psad bench: {args.events} reperage.youth.identified.v1 waiting, batch {batch}")
    if args.statements:
        os.environ["RACCROCHAGE_PG_OPTIONS"] = STATEMENTS_OPTIONS
    with bench_servers() as running, tempfile.TemporaryDirectory(prefix="raccrochage-psad-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        servers = running.servers
        say(f"servers: nats {running.nats}, postgres {running.postgres}")
        psad_url = await psad_database(servers)
        if args.force_custom_plans:
            conn = await asyncpg.connect(libpq_dsn(psad_url))
            name = await conn.fetchval("SELECT current_database()")
            await conn.execute(f'ALTER DATABASE "{name}" SET plan_cache_mode = force_custom_plan')
            await conn.close()
            say("psad database: plan_cache_mode = force_custom_plan (--force-custom-plans)")
        raw_url = await servers.create_database("bench_psad_raw")
        raw_dsn = libpq_dsn(raw_url)
        conn = await asyncpg.connect(raw_dsn)
        await conn.execute(RAW_TABLE)
        await conn.close()
        async with nats_client(servers.nats_url) as nc:
            await declare_psad_topology(nc)
            await nc.jetstream().purge_stream(STREAM)
            for durable in ("bench_raw_before", "bench_raw_after"):
                await add_raw_consumer(nc, durable)
            started = time.perf_counter()
            events = build_events(args.events, args.seed)
            built = time.perf_counter() - started
            await publish_all(nc, events)
            stored = (await nc.jetstream().stream_info(STREAM)).state.messages
            say(
                f"published {stored} events (built in {built:.1f} s, published in "
                f"{time.perf_counter() - started - built:.1f} s; not timed)"
            )
            del events

            raw_before = await raw_run(nc, raw_dsn, "bench_raw_before", args.events, batch, running.folder)
            say(
                f"raw (before): {raw_before['per_s']:.0f} msg/s ({raw_before['messages']} in {raw_before['seconds']} s, "
                f"{raw_before['batches']} batches; CPU s: client {raw_before['client_cpu_s']}, postgres "
                f"{raw_before['postgres_cpu_s']}, nats {raw_before['nats_cpu_s']}, others {raw_before['others_cpu_s']})"
            )
            try:
                psad = await psad_run(
                    running,
                    nc,
                    psad_url,
                    libpq_dsn(psad_url),
                    folder,
                    args.events,
                    batch,
                    args.py_spy,
                    args.statements,
                    processes=args.processes,
                )
            except Stalled as stalled:
                say(f"PSAD STALLED: {stalled}")
                say(
                    "  (compare with --force-custom-plans: a stall that disappears with it is a plan problem)"
                )
                emit(
                    {
                        "bench": "psad",
                        "events": args.events,
                        "rows": stalled.cases,
                        "ok": False,
                        "batch": batch,
                        "error": str(stalled),
                        "raw_before": raw_before,
                        "raw_per_s": raw_before["per_s"],
                        "force_custom_plans": args.force_custom_plans,
                        "nats": running.nats,
                        "postgres": running.postgres,
                    }
                )
                return
            say(
                f"psad: {psad['per_s']:.0f} cases/s ({psad['cases'] - psad['already_at_ready']} in {psad['seconds']} s "
                f"after listening; {psad['already_at_ready']} opened during start-up; {psad['per_s_from_spawn']:.0f}/s "
                f"from spawn)"
            )
            raw_after = await raw_run(nc, raw_dsn, "bench_raw_after", args.events, batch, running.folder)
            say(
                f"raw (after): {raw_after['per_s']:.0f} msg/s ({raw_after['messages']} in {raw_after['seconds']} s; CPU s: "
                f"client {raw_after['client_cpu_s']}, postgres {raw_after['postgres_cpu_s']}, nats "
                f"{raw_after['nats_cpu_s']}, others {raw_after['others_cpu_s']})"
            )

    raw_per_s = max(raw_before["per_s"], raw_after["per_s"])
    ratio = psad["per_s"] / raw_per_s
    cpu = psad["cpu"]
    say(f"batches: {psad['batches']}; cases by status {psad['by_status']}; inbox rows {psad['inbox_rows']}")
    say(
        f"outbox: {psad['outbox_backlog_at_last_case']} psad.case.opened still unpublished at the last case, "
        f"drained {psad['outbox_drained_after_s']} s later"
    )
    say(
        f"CPU while PSAD consumed ({psad['seconds']} s x {cpu['cores']} cores): service {cpu['service']:.1f} "
        f"(+{cpu['service_startup']:.1f} start-up), postgres {cpu['postgres']:.1f}, nats {cpu['nats']:.1f}, "
        f"this bench {cpu['bench']:.1f}, everything else on the machine {cpu['others']:.1f}"
    )
    say_statements(psad.get("statements", []))
    say(
        f"service CPU per case: {cpu['service'] * 1e6 / max(1, psad['cases'] - psad['already_at_ready']):.0f} µs"
    )
    ok = ratio >= TARGET_RATIO and psad["cases"] == args.events
    say(
        f"ratio {ratio:.3f} = {psad['per_s']:.0f} cases/s / {raw_per_s:.0f} raw/s (target >= {TARGET_RATIO}) -> "
        f"{'OK' if ok else 'BELOW TARGET'}"
    )
    emit(
        {
            "bench": "psad",
            "rows": psad["cases"],
            "events": args.events,
            "cases_per_s": psad["per_s"],
            "raw_per_s": raw_per_s,
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "ok": ok,
            "batch": batch,
            "processes": args.processes,
            "force_custom_plans": args.force_custom_plans,
            "psad_seconds": psad["seconds"],
            "cases_per_s_from_spawn": psad["per_s_from_spawn"],
            "opened_during_startup": psad["already_at_ready"],
            "raw_before": raw_before,
            "raw_after": raw_after,
            "psad_batches": psad["batches"],
            "outbox_backlog_at_last_case": psad["outbox_backlog_at_last_case"],
            "cpu_seconds": {k: round(v, 2) if isinstance(v, float) else v for k, v in cpu.items()},
            "service_cpu_us_per_case": round(
                cpu["service"] * 1e6 / max(1, psad["cases"] - psad["already_at_ready"])
            ),
            "nats": running.nats,
            "postgres": running.postgres,
        }
    )


def repeat(args: argparse.Namespace, argv: list[str]) -> None:
    """--runs: this bench N times over, one process each; the median ratio and every run's."""
    import statistics
    import subprocess
    import sys

    once = [
        a
        for n, a in enumerate(argv)
        if not (a == "--runs" or (n and argv[n - 1] == "--runs") or a.startswith("--runs="))
    ]
    runs = []
    for n in range(args.runs):
        done = subprocess.run([sys.executable, __file__, *once], capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            say(done.stdout[-2000:] + done.stderr[-2000:])
            raise SystemExit(f"run {n + 1} gave no result (exit {done.returncode})") from None
        runs.append(result)
        say(
            f"run {n + 1}/{args.runs}: ratio {result.get('ratio')} = {result.get('cases_per_s')} cases/s / "
            f"{result.get('raw_per_s')} raw/s; service {result.get('service_cpu_us_per_case')} µs per case, "
            f"others {result.get('cpu_seconds', {}).get('others')} core-s"
        )
    ratios = [r.get("ratio", 0.0) for r in runs]
    ratio = statistics.median(ratios)
    say(f"median ratio {ratio:.3f} of {ratios} (target >= {TARGET_RATIO})")
    emit(
        {
            "bench": "psad",
            "runs": len(runs),
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "ok": ratio >= TARGET_RATIO and all(r.get("rows") == r.get("events") for r in runs),
            "ratios": ratios,
            "cases_per_s": round(statistics.median(r.get("cases_per_s", 0.0) for r in runs), 1),
            "raw_per_s": round(statistics.median(r.get("raw_per_s", 0.0) for r in runs), 1),
            "processes": args.processes,
            "events": args.events,
            "per_run": [
                {
                    k: r.get(k)
                    for k in (
                        "ratio",
                        "cases_per_s",
                        "raw_per_s",
                        "service_cpu_us_per_case",
                        "cpu_seconds",
                        "ok",
                    )
                }
                for r in runs
            ],
        }
    )


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="identified events waiting in the stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--processes",
        type=_at_least_one,
        default=1,
        help="PSAD replicas sharing the durable consumer (a deployment's way to scale it); "
        "--py-spy records the first one only",
    )
    parser.add_argument(
        "--runs",
        type=_at_least_one,
        default=1,
        help="run the whole bench this many times (a process each) and report the median ratio",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="record the service with this py-spy binary (speedscope JSON in --keep's folder)",
    )
    parser.add_argument(
        "--force-custom-plans",
        action="store_true",
        help="set plan_cache_mode = force_custom_plan on PSAD's database (a diagnostic: "
        "a stall that disappears with it comes from a generic plan)",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="embedded PostgreSQL with pg_stat_statements: print where its time went",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the service log (and profile) in DIR")
    return parser.parse_args()


if __name__ == "__main__":
    import sys

    from raccrochage_platform import loop  # the raw reference on the services' own loop (uvloop)

    arguments = parse_args()
    if arguments.runs > 1:
        repeat(arguments, sys.argv[1:])
    else:
        loop.run(main(arguments))
