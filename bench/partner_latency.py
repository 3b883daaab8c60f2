"""Partner enrolment.started -> reperage.youth.found published: latency at a fixed rate.

The repérage service runs as its own process (as the rig and the tests run it) on a database
holding an ingested demo campaign, so that thousands of handovers are open. Enrolments for
distinct open youths are sent by NATS request on a fixed clock (each reply awaited in its own
task, so a slow reply never delays the next send); the time from each send to the arrival of
its `reperage.youth.found.v1` is measured through a JetStream ordered consumer (DeliverPolicy
NEW: the event is seen once stored in the stream, i.e. published), and through a core NATS
subscription on the same subject for comparison.

Where the time goes is read afterwards, without touching the service: the outbox row of each
found event holds the start of the handler's transaction (created_at = now()) and the mark
once PubAcked (published_at: by the unit of work itself, which publishes the rows leased to it
right after its commit, or by the relay), and the service log stamps
`partner_enrolment_started` once the handler's unit of work is done: committed, and its leased
events published (so "unit of work done -> found received" is negative: the event was there
first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from _common import (
    REPERAGE_MIGRATIONS,
    CpuMeter,
    bench_servers,
    declare_service_stream,
    emit,
    load_partner_files,
    migrated_database,
    nats_client,
    own_cpu_seconds,
    percentile,
    say,
)

TARGET_P99_MS = 20.0
AS_OF = date(2026, 11, 2)
KEY = "k" * 64  # RACCROCHAGE_YOUTH_ID_KEY: the same for the ingest and the service
PARTNER = "cfa-gironde"
SUBJECT = f"partner.{PARTNER}.enrolment.started.v1"
FOUND = "reperage.youth.found.v1"
REQUEST_TIMEOUT = 10.0


# --- set-up (not timed) --------------------------------------------------------------------------
async def ingest_demo(url: str, nats_url: str, youths: int, seed: int, folder: Path) -> dict:
    """A demo campaign and its partner files, ingested as `raccrochage ingest` does; its summary."""
    import nats
    from raccrochage_platform.db import make_engine
    from raccrochage_platform.outbox import OutboxRelay
    from raccrochage_reperage.domain.demo import generate
    from raccrochage_reperage.domain.rules import Policy
    from raccrochage_reperage.entrypoints.cli import unit_of_work_factory, wait_published
    from raccrochage_reperage.service_layer.ingest import ingest_campaign

    files = generate(youths, seed, folder, campaign="latency", as_of=AS_OF)
    engine = make_engine(url, application_name="bench-setup")
    nc = await nats.connect(nats_url)
    relay = OutboxRelay(engine, nc.jetstream(), sweep_seconds=0.2)
    await relay.start()
    try:
        await load_partner_files(url, files)
        summary = await ingest_campaign(
            files.siei,
            campaign_id="latency-2026-11",
            as_of=AS_OF,
            unit_of_work=unit_of_work_factory(engine, relay),
            key=KEY.encode(),
            policy=Policy(),
        )
        await wait_published(relay)
    finally:
        await relay.stop()
        await nc.drain()
        await engine.dispose()
    return summary.as_dict()


async def open_youths(url: str) -> list[dict]:
    import asyncpg
    from raccrochage_platform.db import libpq_dsn

    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT h.youth_id, y.ine, y.nom, y.prenom, y.date_naissance FROM handover h "
            "JOIN youth y USING (youth_id) WHERE h.open ORDER BY h.youth_id"
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


def enrolments(people: list[dict], start: int) -> list[tuple[str, str, bytes]]:
    """(youth_id, event id, request body) for each person, built before the clock starts."""
    from raccrochage_contracts import new_event
    from raccrochage_contracts.events.partner_v1 import EnrolmentStarted

    out = []
    for n, person in enumerate(people, start):
        payload = EnrolmentStarted(
            ine=person["ine"],
            nom=person["nom"],
            prenom=person["prenom"],
            date_naissance=person["date_naissance"],
            date_debut=date.today(),
        )
        event = new_event(payload, source=f"partner/{PARTNER}", subject=f"{PARTNER}-bench-{n}")
        out.append((person["youth_id"], str(event.id), event.to_json()))
    return out


async def demo_enrolments(
    url: str, nats_url: str, args: argparse.Namespace, count: int, folder: Path
) -> tuple[dict, list, list]:
    """The demo campaign ingested (not timed) and enrolments of its open hand-overs, shuffled:
    (ingest summary with its `open_handovers`, `args.warmup` warm-up enrolments, `count`
    measured ones)."""
    started = time.perf_counter()
    summary = await ingest_demo(url, nats_url, args.youths, args.seed, folder)
    people = await open_youths(url)
    say(
        f"ingested: {summary['rows']} rows, {summary['identified']} identified, {len(people)} open "
        f"handovers ({time.perf_counter() - started:.1f} s, not timed)"
    )
    if len(people) < count + args.warmup:
        raise SystemExit(
            f"{len(people)} open handovers for {count + args.warmup} enrolments: "
            f"raise --youths (about {int((count + args.warmup) / 0.36) + 1})"
        )
    random.Random(args.seed).shuffle(people)
    summary["open_handovers"] = len(people)
    return (
        summary,
        enrolments(people[: args.warmup], 0),
        enrolments(people[args.warmup : args.warmup + count], args.warmup),
    )


@contextlib.contextmanager
def reperage_service(servers, url: str, folder: Path):
    """The service as its own process, as tests/integration/conftest.py's `reperage_service`."""
    env = {k: v for k, v in os.environ.items() if k not in ("RACCROCHAGE_RIG_DIR",)}
    port_file = folder / "reperage.port"
    env.update(
        RACCROCHAGE_SERVICE="reperage",
        NATS_URL=servers.nats_url,
        DATABASE_URL=url,
        RACCROCHAGE_YOUTH_ID_KEY=KEY,
        RACCROCHAGE_TOKEN_KEY="t" * 64,  # the HTTP API is not called here
        HTTP_PORT="0",
        RACCROCHAGE_RIG_DIR=str(folder / "rig"),
        RACCROCHAGE_PORT_FILE=str(port_file),
    )
    log_path = folder / "reperage.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "raccrochage_platform.cli", "serve", "reperage"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.1)
            yield process, log_path
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the measured run ----------------------------------------------------------------------------
@dataclass
class Sent:
    youth_id: str
    event_id: str
    scheduled: float
    sent: float = 0.0
    replied: float = 0.0
    reply: dict | None = None
    found_js: float = 0.0
    found_core: float = 0.0


async def fire(nc, batch: list[Sent], bodies: list[bytes], rate: float) -> None:
    """Send on a fixed clock: request i at start + i / rate, whatever the earlier replies do."""

    async def one(item: Sent, body: bytes) -> None:
        item.sent = time.perf_counter()
        try:
            reply = await nc.request(SUBJECT, body, timeout=REQUEST_TIMEOUT)
            item.replied = time.perf_counter()
            item.reply = json.loads(reply.data)
        except Exception as error:
            item.reply = {"status": "no reply", "error": repr(error)}

    tasks = []
    start = time.perf_counter() + 0.05
    for i, (item, body) in enumerate(zip(batch, bodies, strict=True)):
        item.scheduled = start + i / rate
        delay = item.scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(item, body)))
    await asyncio.gather(*tasks)


def stats_ms(values: list[float]) -> dict:
    """Percentiles in ms; an event that never came counts as infinitely late (None in the JSON):
    leaving it out would flatter the tail."""
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]

    def shown(v: float) -> float | None:
        return None if v == float("inf") else round(v, 2)

    return {
        "n": len(ms),
        "missing": sum(v == float("inf") for v in ms),
        "p50": shown(percentile(ms, 50)),
        "p90": shown(percentile(ms, 90)),
        "p99": shown(percentile(ms, 99)),
        "max": shown(max(ms)),
    }


def line(label: str, s: dict) -> str:
    if not s.get("n"):
        return f"  {label:50s} (none)"

    def ms(v: float | None) -> str:
        return "   never" if v is None else f"{v:8.2f}"

    missing = f", {s['missing']} never came" if s.get("missing") else ""
    return (
        f"  {label:50s} p50 {ms(s['p50'])}  p90 {ms(s['p90'])}  p99 {ms(s['p99'])}  "
        f"max {ms(s['max'])} ms  (n={s['n']}{missing})"
    )


async def stages(url: str, sent: list[Sent], log_path: Path, wall_offset: float) -> dict:
    """Per event, from the outbox row of its `found` and the service log: where the time went.
    perf_counter times become wall-clock ones with one offset (same host, same clock)."""
    import asyncpg
    from raccrochage_platform.db import libpq_dsn

    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT aggregate_key, extract(epoch FROM created_at) AS created, "
            "extract(epoch FROM published_at) AS published FROM outbox WHERE event_type = $1",
            FOUND,
        )
    finally:
        await conn.close()
    outbox = {r["aggregate_key"]: (float(r["created"]), float(r["published"] or 0)) for r in rows}
    logged: dict[str, float] = {}
    for raw in log_path.read_text(errors="replace").splitlines():
        if "partner_enrolment_started" not in raw:
            continue
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(raw)
            stamp = datetime.fromisoformat(entry["timestamp"]).timestamp()
            logged[entry["event_id"]] = stamp

    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "send -> handler transaction starts",
            "handler transaction start -> unit of work done",
            "unit of work done -> reply received",
            "unit of work done -> found received (js)",
            "found received -> outbox row marked published",
        )
    }
    batches: dict[float, int] = {}
    for item in sent:
        if item.youth_id not in outbox or not item.found_js or not item.replied:
            continue
        created, published = outbox[item.youth_id]
        batches[published] = batches.get(published, 0) + 1
        send, reply, found = (t + wall_offset for t in (item.sent, item.replied, item.found_js))
        done = logged.get(item.event_id)
        parts["send -> handler transaction starts"].append(created - send)
        parts["found received -> outbox row marked published"].append(published - found)
        if done is not None:
            parts["handler transaction start -> unit of work done"].append(done - created)
            parts["unit of work done -> reply received"].append(reply - done)
            parts["unit of work done -> found received (js)"].append(found - done)
    sizes = sorted(batches.values())
    return {
        "stages": {k: stats_ms(v) for k, v in parts.items()},
        "relay_batches": len(sizes),
        "rows_per_relay_batch": {"p50": percentile(sizes, 50), "max": sizes[-1]} if sizes else {},
    }


def write_timeline(path: Path, sent: list[Sent], origin: float) -> None:
    """Per event, in send order: when it was sent (s from the first send), its found latency and
    its reply round trip (ms, empty when missing): to see whether the tail is spread or bunched."""
    with path.open("w") as out:
        out.write("sent_s,found_ms,reply_ms\n")
        for s in sorted(sent, key=lambda s: s.sent):
            found = f"{(s.found_js - s.sent) * 1000:.2f}" if s.found_js else ""
            reply = f"{(s.replied - s.sent) * 1000:.2f}" if s.replied else ""
            out.write(f"{s.sent - origin:.4f},{found},{reply}\n")


async def main(args: argparse.Namespace) -> None:
    import psutil
    from nats.js.api import DeliverPolicy

    count = round(args.rate * args.seconds)
    say(
        f"partner latency bench: {args.rate:g} enrolments/s for {args.seconds:g} s = {count} "
        f"(+{args.warmup} warm-up, not counted), {args.youths}-youth demo campaign"
    )
    with bench_servers() as running, tempfile.TemporaryDirectory(prefix="raccrochage-latency-") as tmp:
        folder = Path(tmp)
        servers = running.servers
        say(f"servers: nats {running.nats}, postgres {running.postgres}")
        url = await migrated_database(servers, REPERAGE_MIGRATIONS, "bench_latency")
        async with nats_client(servers.nats_url) as nc:
            await declare_service_stream(nc, "REPERAGE")
            summary, warm, measured = await demo_enrolments(
                url, servers.nats_url, args, count, folder / "demo"
            )

            with reperage_service(servers, url, folder) as (process, log_path):
                say(f"service started (pid {process.pid})")
                by_youth: dict[str, Sent] = {}

                async def on_js(msg) -> None:
                    now = time.perf_counter()
                    item = by_youth.get(json.loads(msg.data)["data"]["youth_id"])
                    if item is not None and not item.found_js:
                        item.found_js = now

                async def on_core(msg) -> None:
                    now = time.perf_counter()
                    item = by_youth.get(json.loads(msg.data)["data"]["youth_id"])
                    if item is not None and not item.found_core:
                        item.found_core = now

                js_sub = await nc.jetstream().subscribe(
                    FOUND,
                    stream="REPERAGE",
                    cb=on_js,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                )
                core_sub = await nc.subscribe(FOUND, cb=on_core)
                await nc.flush()

                warm_items = [Sent(y, e, 0.0) for y, e, _ in warm]
                by_youth.update({s.youth_id: s for s in warm_items})
                if warm:
                    await fire(nc, warm_items, [b for *_, b in warm], args.rate)
                    await asyncio.sleep(1.5)
                sent = [Sent(y, e, 0.0) for y, e, _ in measured]
                by_youth.update({s.youth_id: s for s in sent})

                meter = CpuMeter(running.folder)
                service_process = psutil.Process(process.pid)
                service_cpu = sum(service_process.cpu_times()[:2])
                bench_cpu = own_cpu_seconds()
                meter.start()
                clock = time.perf_counter()
                wall_offset = time.time() - time.perf_counter()
                await fire(nc, sent, [b for *_, b in measured], args.rate)
                sending = time.perf_counter() - clock
                deadline = time.perf_counter() + args.grace
                while time.perf_counter() < deadline and not all(s.found_js and s.found_core for s in sent):
                    await asyncio.sleep(0.05)
                cpu = meter.stop()
                cpu["service"] = sum(service_process.cpu_times()[:2]) - service_cpu
                cpu["bench"] = own_cpu_seconds() - bench_cpu
                cpu["others"] = (
                    cpu["machine_busy"] - cpu["service"] - cpu["bench"] - cpu["postgres"] - cpu["nats"]
                )
                window = time.perf_counter() - clock
                await js_sub.unsubscribe()
                await core_sub.unsubscribe()
            breakdown = await stages(url, sent, log_path, wall_offset)

    accepted = [
        s for s in sent if s.reply and s.reply.get("status") == "accepted" and not s.reply.get("duplicate")
    ]
    refused = [s.reply for s in sent if s not in accepted]
    no_reply = sum(1 for r in refused if r and r.get("status") == "no reply")
    found = [s for s in sent if s.found_js]
    never = float("inf")
    latency = stats_ms([s.found_js - s.sent if s.found_js else never for s in sent])
    core = stats_ms([s.found_core - s.sent if s.found_core else never for s in sent])
    rtt = stats_ms([s.replied - s.sent if s.replied else never for s in sent])
    after_reply = stats_ms([s.found_js - s.replied for s in found if s.replied])
    lag = stats_ms([s.sent - s.scheduled for s in sent])
    first, last = min(s.sent for s in sent), max(s.sent for s in sent)
    if args.timeline:
        write_timeline(args.timeline, sent, first)
    achieved = (count - 1) / (last - first) if last > first else float("inf")

    say(
        f"sent {count} in {last - first:.2f} s ({achieved:.1f}/s; {sending:.1f} s until the last reply or "
        f"timeout); {len(accepted)} accepted, {len(refused)} not ({no_reply} without a reply within "
        f"{REQUEST_TIMEOUT:g} s)"
        + (f", first: {refused[0]}" if refused else "")
        + f"; {len(found)} found events received (grace {args.grace:g} s)"
    )
    say("latency (from the send of each request):")
    say(line("found, JetStream ordered consumer [headline]", latency))
    say(line("found, core NATS subscription", core))
    say(line("request -> reply (round trip)", rtt))
    say(line("reply -> found (js)", after_reply))
    say(line("send lag behind the fixed clock", lag))
    say("where the time goes (outbox created_at/published_at, service log; wall clock):")
    for label, s in breakdown["stages"].items():
        say(line(label, s))
    say(
        f"  outbox marks: {breakdown['relay_batches']} distinct published_at (mark statements) for {len(found)} events, rows per batch "
        f"{breakdown['rows_per_relay_batch']}"
    )
    say(
        f"CPU over the {window:.1f} s window (core-seconds of {cpu['cores']} cores x {window:.1f} s = "
        f"{cpu['cores'] * window:.0f}): service {cpu['service']:.1f}, postgres {cpu['postgres']:.1f}, "
        f"nats {cpu['nats']:.1f}, this bench {cpu['bench']:.1f}, everything else on the machine {cpu['others']:.1f}"
    )
    ok = latency["p99"] is not None and latency["p99"] < TARGET_P99_MS and len(accepted) == count
    say(
        f"p99 {'never (events missing)' if latency['p99'] is None else latency['p99']} ms (target < {TARGET_P99_MS:g} ms) -> {'OK' if ok else 'ABOVE TARGET'}"
    )

    emit(
        {
            "bench": "partner_latency",
            "rate_per_s": args.rate,
            "duration_s": args.seconds,
            "events": count,
            "accepted": len(accepted),
            "no_reply": no_reply,
            "found": len(found),
            "p50_ms": latency.get("p50"),
            "p90_ms": latency.get("p90"),
            "p99_ms": latency.get("p99"),
            "max_ms": latency.get("max"),
            "target_p99_ms": TARGET_P99_MS,
            "ok": ok,
            "measured_with": "JetStream ordered push consumer, DeliverPolicy.NEW, on reperage.youth.found.v1",
            "core_sub_ms": core,
            "reply_rtt_ms": rtt,
            "reply_to_found_ms": after_reply,
            "send_lag_ms": lag,
            "achieved_rate_per_s": round(achieved, 1),
            "stages_ms": breakdown["stages"],
            "relay_batches": breakdown["relay_batches"],
            "cpu_seconds": {k: round(v, 1) if isinstance(v, float) else v for k, v in cpu.items()},
            "youths": args.youths,
            "open_handovers": summary["open_handovers"],
            "warmup": args.warmup,
            "nats": running.nats,
            "postgres": running.postgres,
        }
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="enrolments per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send")
    parser.add_argument("--youths", type=int, default=20_000, help="rows of the demo campaign ingested first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=200, help="enrolments sent first, not counted")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to wait for the last found events")
    parser.add_argument(
        "--timeline", type=Path, help="write one CSV line per event (send time, latencies) here"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
