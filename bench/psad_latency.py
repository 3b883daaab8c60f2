"""Partner enrolment.started -> repérage -> PSAD case closed: latency at a fixed rate.

Set-up (not timed), as bench/partner_latency.py does, whose functions are imported from it: a
demo campaign and its partner files ingested into a repérage database, so that thousands of
handovers are open, and repérage started as its own process. PSAD runs as its own process on its
own migrated database and opens the cases from the REPERAGE stream before anything is measured
(the bench waits until `case_file` holds one case per identified youth and PSAD's outbox is
published).

Then enrolments for distinct open youths are sent by NATS request on a fixed clock (each reply
awaited in its own task); the time from each send to the arrival of its `psad.case.closed.v1` in
the PSAD stream is the headline (a JetStream ordered consumer, DeliverPolicy NEW, correlated by
youth_id). `reperage.youth.found.v1` is watched the same way on REPERAGE to split the time between
the two services, and PSAD's outbox rows (created_at = the start of the consumer's unit of work
transaction; published_at = the mark after the PubAck, by the unit of work that publishes the
rows leased to it once committed, or by the relay) split PSAD's part further.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    REPERAGE_MIGRATIONS,
    STATEMENTS_OPTIONS,
    CpuMeter,
    bench_servers,
    emit,
    migrated_database,
    nats_client,
    own_cpu_seconds,
    percentile,
    reset_statements,
    say,
    say_statements,
    top_statements,
)
from _psad_common import count_cases, declare_psad_topology, psad_database, psad_process
from partner_latency import demo_enrolments, fire, line, reperage_service, stats_ms

TARGET_P99_MS = 50.0
FOUND = "reperage.youth.found.v1"
CLOSED = "psad.case.closed.v1"


@dataclass
class Sent:
    """One enrolment (the attributes `partner_latency.fire` sets, and the arrivals)."""

    youth_id: str
    event_id: str
    scheduled: float = 0.0
    sent: float = 0.0
    replied: float = 0.0
    reply: dict | None = None
    found: float = 0.0  # reperage.youth.found.v1 stored in REPERAGE
    closed: float = 0.0  # psad.case.closed.v1 stored in PSAD


async def wait_cases_opened(dsn: str, expected: int, timeout: float) -> tuple[int, float, int]:
    """Until PSAD holds `expected` cases and its outbox is published: (cases, seconds, backlog)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        while True:
            cases = await count_cases(conn)
            backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if (cases >= expected and backlog == 0) or time.perf_counter() - started > timeout:
                return cases, time.perf_counter() - started, backlog
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def consumer_metrics(base_url: str, consumer: str = "psad_reperage") -> dict:
    """From the service's /metrics: batches handled by the consumer, their total seconds, events."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    out = {"batches": 0.0, "batch_seconds": 0.0, "events": 0.0, "failed": 0.0}
    label = f'consumer="{consumer}"'
    for raw in text.splitlines():
        if raw.startswith("#") or label not in raw:
            continue
        name, _, value = raw.rpartition(" ")
        if name.startswith("raccrochage_batch_seconds_count"):
            out["batches"] += float(value)
        elif name.startswith("raccrochage_batch_seconds_sum"):
            out["batch_seconds"] += float(value)
        elif name.startswith("raccrochage_events_handled_total"):
            out["events"] += float(value)
        elif name.startswith("raccrochage_events_failed_total"):
            out["failed"] += float(value)
    return out


async def psad_stages(dsn: str, sent: list[Sent], wall_offset: float) -> dict:
    """PSAD's part per event, from the outbox row of its case.closed (wall clock)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.youth_id, extract(epoch FROM o.created_at) AS created, "
            "extract(epoch FROM o.published_at) AS published FROM outbox o "
            "JOIN case_file c ON c.case_id::text = o.aggregate_key WHERE o.event_type = $1",
            CLOSED,
        )
    finally:
        await conn.close()
    outbox = {r["youth_id"]: (float(r["created"]), float(r["published"] or 0)) for r in rows}
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "found received -> PSAD transaction starts",
            "PSAD transaction start -> closed received (js)",
            "closed received -> outbox row marked published",
        )
    }
    batches: dict[float, int] = {}
    for item in sent:
        if item.youth_id not in outbox or not item.found or not item.closed:
            continue
        created, published = outbox[item.youth_id]
        batches[published] = batches.get(published, 0) + 1
        found, closed = item.found + wall_offset, item.closed + wall_offset
        parts["found received -> PSAD transaction starts"].append(created - found)
        parts["PSAD transaction start -> closed received (js)"].append(closed - created)
        parts["closed received -> outbox row marked published"].append(published - closed)
    sizes = sorted(batches.values())
    return {
        "stages": {k: stats_ms(v) for k, v in parts.items()},
        "relay_batches": len(sizes),
        "rows_per_relay_batch": {"p50": percentile(sizes, 50), "max": sizes[-1]} if sizes else {},
    }


async def main(args: argparse.Namespace) -> None:
    import asyncpg
    import psutil
    from nats.js.api import DeliverPolicy
    from raccrochage_platform.db import libpq_dsn

    count = round(args.rate * args.seconds)
    say(
        f"psad latency bench: {args.rate:g} enrolments/s for {args.seconds:g} s = {count} (+{args.warmup} warm-up, "
        f"not counted), {args.youths}-youth demo campaign; enrolment.started -> {FOUND} -> {CLOSED}"
    )
    if args.statements:
        os.environ["RACCROCHAGE_PG_OPTIONS"] = STATEMENTS_OPTIONS
    statements: list[dict] = []
    with bench_servers() as running, tempfile.TemporaryDirectory(prefix="raccrochage-psad-latency-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        servers = running.servers
        say(f"servers: nats {running.nats}, postgres {running.postgres}")
        reperage_url = await migrated_database(servers, REPERAGE_MIGRATIONS, "bench_latency")
        psad_url = await psad_database(servers, "bench_psad_latency")
        psad_dsn = libpq_dsn(psad_url)
        if args.force_custom_plans:
            conn = await asyncpg.connect(psad_dsn)
            name = await conn.fetchval("SELECT current_database()")
            await conn.execute(f'ALTER DATABASE "{name}" SET plan_cache_mode = force_custom_plan')
            await conn.close()
            say("psad database: plan_cache_mode = force_custom_plan (--force-custom-plans)")
        async with nats_client(servers.nats_url) as nc:
            await declare_psad_topology(nc)  # every stream (REPERAGE, PSAD, ...) and PSAD's durables
            summary, warm, measured = await demo_enrolments(
                reperage_url, servers.nats_url, args, count, folder / "demo"
            )

            # PSAD deletes its published outbox rows by default; the breakdown below reads their
            # published_at, so they are kept here (an UPDATE instead of a DELETE per event).
            with (
                psad_process(servers, psad_url, folder, RACCROCHAGE_OUTBOX_RETENTION_SECONDS="3600") as psad,
                reperage_service(servers, reperage_url, folder) as (reperage, _log),
            ):
                say(f"psad started (pid {psad.process.pid}), repérage started (pid {reperage.pid})")
                cases, waited, backlog = await wait_cases_opened(
                    psad_dsn, summary["identified"], args.open_timeout
                )
                say(
                    f"psad: {cases} cases opened for {summary['identified']} identified "
                    f"({waited:.1f} s after start; outbox backlog {backlog}; not timed)"
                )
                if cases < summary["identified"]:
                    failures = psad.log_text().count('"handler_failed_will_retry"')
                    say(
                        f"PSAD DID NOT OPEN EVERY CASE ({failures} handler_failed_will_retry lines in its log; "
                        f"see --force-custom-plans)"
                    )
                    emit(
                        {
                            "bench": "psad_latency",
                            "ok": False,
                            "error": "cases not opened",
                            "cases": cases,
                            "identified": summary["identified"],
                            "sent": 0,
                            "closed": 0,
                            "p50_ms": None,
                            "p99_ms": None,
                            "target": TARGET_P99_MS,
                            "force_custom_plans": args.force_custom_plans,
                        }
                    )
                    return

                by_youth: dict[str, Sent] = {}

                def stamp(attribute: str):
                    async def on(msg) -> None:
                        now = time.perf_counter()
                        item = by_youth.get(json.loads(msg.data)["data"]["youth_id"])
                        if item is not None and not getattr(item, attribute):
                            setattr(item, attribute, now)

                    return on

                js = nc.jetstream()
                closed_sub = await js.subscribe(
                    CLOSED,
                    stream="PSAD",
                    cb=stamp("closed"),
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                )
                found_sub = await js.subscribe(
                    FOUND,
                    stream="REPERAGE",
                    cb=stamp("found"),
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                )
                await nc.flush()

                warm_items = [Sent(y, e) for y, e, _ in warm]
                by_youth.update({s.youth_id: s for s in warm_items})
                if warm:
                    await fire(nc, warm_items, [b for *_, b in warm], args.rate)
                    await asyncio.sleep(2.0)
                sent = [Sent(y, e) for y, e, _ in measured]
                by_youth.update({s.youth_id: s for s in sent})

                metrics_before = await consumer_metrics(psad.url)
                meter = CpuMeter(running.folder)
                processes = {
                    "psad": psutil.Process(psad.process.pid),
                    "reperage": psutil.Process(reperage.pid),
                }
                before = {k: sum(p.cpu_times()[:2]) for k, p in processes.items()}
                bench_cpu = own_cpu_seconds()
                if args.statements:
                    stats_conn = await asyncpg.connect(psad_dsn)
                    await reset_statements(stats_conn)
                meter.start()
                clock = time.perf_counter()
                wall_offset = time.time() - time.perf_counter()
                await fire(nc, sent, [b for *_, b in measured], args.rate)
                sending = time.perf_counter() - clock
                deadline = time.perf_counter() + args.grace
                while time.perf_counter() < deadline and not all(s.closed for s in sent):
                    await asyncio.sleep(0.05)
                cpu = meter.stop()
                for k, p in processes.items():
                    cpu[k] = sum(p.cpu_times()[:2]) - before[k]
                cpu["bench"] = own_cpu_seconds() - bench_cpu
                cpu["others"] = (
                    cpu["machine_busy"]
                    - cpu["psad"]
                    - cpu["reperage"]
                    - cpu["bench"]
                    - cpu["postgres"]
                    - cpu["nats"]
                )
                window = time.perf_counter() - clock
                if args.statements:  # both services' databases: one server
                    statements = await top_statements(stats_conn, 16)
                    await stats_conn.close()
                metrics_after = await consumer_metrics(psad.url)
                handled = {k: metrics_after[k] - metrics_before[k] for k in metrics_after}
                await closed_sub.unsubscribe()
                await found_sub.unsubscribe()
            breakdown = await psad_stages(psad_dsn, sent, wall_offset)
            log_tail = psad.log_text()
    failures = log_tail.count('"handler_failed_will_retry"')

    accepted = [
        s for s in sent if s.reply and s.reply.get("status") == "accepted" and not s.reply.get("duplicate")
    ]
    never = float("inf")
    closed = [s for s in sent if s.closed]
    latency = stats_ms([s.closed - s.sent if s.closed else never for s in sent])
    to_found = stats_ms([s.found - s.sent if s.found else never for s in sent])
    found_to_closed = stats_ms([s.closed - s.found for s in sent if s.found and s.closed])
    rtt = stats_ms([s.replied - s.sent if s.replied else never for s in sent])
    lag = stats_ms([s.sent - s.scheduled for s in sent])
    first, last = min(s.sent for s in sent), max(s.sent for s in sent)
    achieved = (count - 1) / (last - first) if last > first else float("inf")

    say(
        f"sent {count} in {last - first:.2f} s ({achieved:.1f}/s; {sending:.1f} s until the last reply); "
        f"{len(accepted)} accepted; {sum(1 for s in sent if s.found)} found, {len(closed)} closed received "
        f"(grace {args.grace:g} s); {failures} PSAD handler retries in its log"
    )
    say("latency (from the send of each request):")
    say(line(f"{CLOSED}, JetStream ordered consumer [headline]", latency))
    say(line(f"{FOUND} (repérage's part)", to_found))
    say(line("found -> closed (PSAD's part)", found_to_closed))
    say(line("request -> reply (round trip)", rtt))
    say(line("send lag behind the fixed clock", lag))
    say("PSAD's part (its outbox created_at/published_at; wall clock):")
    for label, s in breakdown["stages"].items():
        say(line(label, s))
    say(
        f"  outbox marks: {breakdown['relay_batches']} distinct published_at (mark statements) for {len(closed)} events, rows per batch "
        f"{breakdown['rows_per_relay_batch']}"
    )
    per_batch = handled["events"] / handled["batches"] if handled["batches"] else 0.0
    batch_ms = 1000 * handled["batch_seconds"] / handled["batches"] if handled["batches"] else 0.0
    say(
        f"  PSAD consumer psad_reperage over the window (/metrics): {handled['batches']:.0f} batch transactions, "
        f"{per_batch:.1f} events per batch, {batch_ms:.1f} ms per batch on average "
        f"({1000 * handled['batch_seconds'] / max(1.0, handled['events']):.2f} ms per event), "
        f"{handled['failed']:.0f} handler failures"
    )
    say(
        f"CPU over the {window:.1f} s window (core-seconds of {cpu['cores']} cores x {window:.1f} s = "
        f"{cpu['cores'] * window:.0f}): psad {cpu['psad']:.1f}, repérage {cpu['reperage']:.1f}, "
        f"postgres {cpu['postgres']:.1f}, nats {cpu['nats']:.1f}, this bench {cpu['bench']:.1f}, "
        f"everything else on the machine {cpu['others']:.1f}"
    )
    say_statements(statements)
    ok = latency["p99"] is not None and latency["p99"] < TARGET_P99_MS and len(closed) == count
    say(
        f"p99 {'never (events missing)' if latency['p99'] is None else latency['p99']} ms "
        f"(target < {TARGET_P99_MS:g} ms) -> {'OK' if ok else 'ABOVE TARGET'}"
    )

    emit(
        {
            "bench": "psad_latency",
            "rate_per_s": args.rate,
            "duration_s": args.seconds,
            "sent": count,
            "accepted": len(accepted),
            "closed": len(closed),
            "p50_ms": latency.get("p50"),
            "p90_ms": latency.get("p90"),
            "p99_ms": latency.get("p99"),
            "max_ms": latency.get("max"),
            "target": TARGET_P99_MS,
            "ok": ok,
            "measured_with": f"JetStream ordered push consumer, DeliverPolicy.NEW, on {CLOSED}",
            "to_found_ms": to_found,
            "found_to_closed_ms": found_to_closed,
            "reply_rtt_ms": rtt,
            "send_lag_ms": lag,
            "achieved_rate_per_s": round(achieved, 1),
            "psad_stages_ms": breakdown["stages"],
            "psad_relay_batches": breakdown["relay_batches"],
            "psad_handler_retries": failures,
            "psad_consumer": {
                "batches": handled["batches"],
                "events_per_batch": round(per_batch, 1),
                "ms_per_batch": round(batch_ms, 1),
                "ms_per_event": round(1000 * handled["batch_seconds"] / max(1.0, handled["events"]), 2),
            },
            "cpu_seconds": {k: round(v, 1) if isinstance(v, float) else v for k, v in cpu.items()},
            "youths": args.youths,
            "identified": summary["identified"],
            "open_handovers": summary["open_handovers"],
            "warmup": args.warmup,
            "force_custom_plans": args.force_custom_plans,
            "nats": running.nats,
            "postgres": running.postgres,
        }
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="enrolments per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send")
    parser.add_argument("--youths", type=int, default=20_000, help="rows of the demo campaign ingested first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=200, help="enrolments sent first, not counted")
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds to wait for the last closed events"
    )
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for PSAD to open the campaign's cases before measuring",
    )
    parser.add_argument(
        "--force-custom-plans",
        action="store_true",
        help="plan_cache_mode = force_custom_plan on PSAD's database (see bench/psad.py)",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="embedded PostgreSQL with pg_stat_statements: print where its time went in the window",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the services' logs in DIR")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
