"""SIEI campaign ingest end to end (file read -> every event PubAcked) beside raw JetStream publish.

The ingest runs in a child process of its own, as `raccrochage ingest siei` would: its peak
memory (ru_maxrss) is then the ingest's, not this script's, whose servers, generated file and
raw-publish measurement live here. The child times itself, from the first read of the file to
the PubAck of the last event, and answers one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import resource
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from _common import (
    REPERAGE_MIGRATIONS,
    CpuMeter,
    Stopwatch,
    TimedRelay,
    bench_servers,
    declare_service_stream,
    emit,
    fresh_stream,
    load_partner_files,
    migrated_database,
    nats_client,
    per_second,
    publish_windowed,
    say,
    stream_messages,
)

TARGET_RATIO = 0.5
RSS_TARGET_MB = 300
AS_OF = date(2026, 11, 2)
KEY = "k" * 64  # RACCROCHAGE_YOUTH_ID_KEY of the bench
RAW_STREAM = "BENCH_RAW_INGEST"
RAW_PREFIX = "bench.raw."


def max_rss_mb() -> float:
    """This process's peak RSS. VmHWM where there is /proc: ru_maxrss survives exec, so a child
    would report its parent's peak at the time of the spawn if that was higher."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the child: the ingest, as `raccrochage ingest siei --json` runs it --------------------------
async def child(spec: dict) -> dict:
    """ingest_campaign with repérage's units of work and an OutboxRelay (the settings of
    `reperage_runtime`: each committed chunk's events are published by their writer, the rest by
    the relay), then wait until the outbox backlog is 0 (`wait_published`). Timed through public
    methods only: the relay's (`TimedRelay`), the unit of work's `commit` and its repositories'
    calls (a subclass of `ReperageUnitOfWork` wrapping them); no logic is changed."""
    import functools

    import nats
    from raccrochage_platform.db import make_engine
    from raccrochage_platform.topology import load_topology
    from raccrochage_reperage.adapters.unit_of_work import ReperageUnitOfWork
    from raccrochage_reperage.domain.rules import Policy
    from raccrochage_reperage.entrypoints.cli import wait_published
    from raccrochage_reperage.service_layer.ingest import ingest_campaign

    seconds: dict[str, float] = {}  # "repository.method" or "commit" -> wall seconds, summed

    def add(kind: str, started: float) -> None:
        seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - started

    class TimedRepository:
        """A repository whose coroutine methods are timed; anything else passes through."""

        def __init__(self, name: str, repository) -> None:
            self.name = name
            self.repository = repository

        def __getattr__(self, attribute: str):
            value = getattr(self.repository, attribute)
            if not inspect.iscoroutinefunction(value):
                return value

            async def timed(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return await value(*args, **kwargs)
                finally:
                    add(f"{self.name}.{attribute}", started)

            return timed

    class TimedUnitOfWork(ReperageUnitOfWork):
        units = 0

        def open_repositories(self, connection) -> None:
            super().open_repositories(connection)
            TimedUnitOfWork.units += 1
            for name in ("campaigns", "handovers", "enrolments", "vault"):
                setattr(self, name, TimedRepository(name, getattr(self, name)))

        async def commit(self) -> None:  # the outbox statement, COMMIT, then the leased rows published
            started = time.perf_counter()
            try:
                await super().commit()
            finally:
                add("commit", started)

    service = load_topology().services["reperage"]
    engine = make_engine(spec["database_url"], application_name="bench-ingest")
    nc = await nats.connect(spec["nats_url"], connect_timeout=5)
    relay = TimedRelay(engine, nc.jetstream(), sweep_seconds=0.2)
    await relay.start()
    unit_of_work = functools.partial(
        TimedUnitOfWork, engine, source=service.source, stream=service.stream, relay=relay
    )
    rss_before = max_rss_mb()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        started = time.perf_counter()
        summary = await ingest_campaign(
            Path(spec["file"]),
            campaign_id=spec["campaign"],
            as_of=date.fromisoformat(spec["as_of"]),
            unit_of_work=unit_of_work,
            key=spec["key"].encode(),
            policy=Policy(),
        )
        ingested = time.perf_counter()
        published_during_ingest = relay.stats.published
        await wait_published(relay)
        marked = time.perf_counter()
    finally:
        await relay.stop()
        await nc.drain()
        await engine.dispose()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "summary": summary.as_dict(),
        "seconds_to_last_puback": relay.last_ack - started,
        "seconds_ingest_call": ingested - started,  # file read -> campaign marked done
        "seconds_to_backlog_zero": marked - started,  # + the relay's marks, seen by polling
        "published": relay.stats.published,
        "published_during_ingest": published_during_ingest,
        "relay_failed": relay.stats.failed,
        "relay_batches": relay.stats.batches,
        "relay_publish_seconds": relay.publish_seconds,
        "relay_batch_seconds": relay.batch_seconds,
        "units_of_work": TimedUnitOfWork.units,
        "uow_seconds": dict(sorted(seconds.items(), key=lambda kv: -kv[1])),
        "cpu_seconds": (cpu_after.ru_utime - cpu_before.ru_utime)
        + (cpu_after.ru_stime - cpu_before.ru_stime),
        "rss_before_ingest_mb": rss_before,
        "peak_rss_mb": max_rss_mb(),
    }


async def run_child(spec: dict) -> dict:
    """The child process; its stdout's last line is its JSON answer, its stderr passes through."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps(spec),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"ingest child failed (exit {process.returncode}): {out.decode()[-2000:]}")
    for line in lines[:-1]:
        say(f"  child: {line}")
    return json.loads(lines[-1])


# --- raw publish ---------------------------------------------------------------------------------
def sample_envelope() -> tuple[str, bytes]:
    """A youth.identified envelope as the ingest writes it: its subject and bytes."""
    from raccrochage_contracts import nats_subject, new_event
    from raccrochage_contracts.events.reperage_v1 import YouthIdentified
    from raccrochage_platform.topology import load_topology

    service = load_topology().services["reperage"]
    yid = "f" * 64
    payload = YouthIdentified(
        youth_id=yid,
        campaign_id="bench-2026-11",
        psad_id="psad-33-bordeaux-centre",
        departement="33",
        zap="bordeaux-centre",
        age=18,
        last_diploma="DNB",
        last_training="2nde pro Commerce",
        uai_origine="0330001A",
        months_since_leaving=7,
        as_of=AS_OF,
    )
    event = new_event(payload, source=service.source, subject=yid, event_id=uuid.uuid4())
    return nats_subject(event.type), event.to_json()


async def raw_publish(nc, count: int, window: int, subject: str, envelope: bytes) -> float:
    """Windowed publish_async of `count` messages with Nats-Msg-Id to a fresh stream; returns
    seconds (first send to last PubAck). The stream's count afterwards is the success check."""
    js = nc.jetstream(publish_async_max_pending=window)
    await fresh_stream(js, RAW_STREAM, [f"{RAW_PREFIX}>"])
    prefix = uuid.uuid4().hex[:24]  # Msg-Id of 36 characters, like a UUID's text
    target = RAW_PREFIX + subject
    seconds = await publish_windowed(
        js, RAW_STREAM, ((target, envelope, f"{prefix}{i:012d}") for i in range(count))
    )
    stored = await stream_messages(nc, RAW_STREAM)
    await js.delete_stream(RAW_STREAM)  # a million envelopes on disk otherwise
    if stored != count:
        raise RuntimeError(f"raw publish: stream held {stored}, expected {count}")
    return seconds


# --- the run -------------------------------------------------------------------------------------
async def database_counts(url: str, campaign: str) -> dict:
    import asyncpg
    from raccrochage_platform.db import libpq_dsn

    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        summary = await conn.fetchval("SELECT summary FROM campaign WHERE campaign_id = $1", campaign)
        return {
            "summary": json.loads(summary) if summary else {},
            "outbox": await conn.fetchval("SELECT count(*) FROM outbox"),
            "unpublished": await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
        }
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    from raccrochage_reperage.domain.demo import generate

    say(f"ingest bench: {args.rows} rows, seed {args.seed}, raw window {args.window}")
    with bench_servers() as running, tempfile.TemporaryDirectory(prefix="raccrochage-ingest-") as folder:
        servers = running.servers
        say(f"servers: nats {running.nats}, postgres {running.postgres}")
        url = await migrated_database(servers, REPERAGE_MIGRATIONS, "bench_ingest")
        async with nats_client(servers.nats_url) as nc:
            await declare_service_stream(nc, "REPERAGE")
            campaign = f"bench-{uuid.uuid4().hex[:8]}"

            watch = Stopwatch()
            with watch:
                files = generate(args.rows, args.seed, Path(folder), campaign=campaign, as_of=AS_OF)
            size_mb = files.siei.stat().st_size / 1e6
            say(
                f"generated {files.siei.name}: {size_mb:.0f} MB, {files} in {watch.seconds:.1f} s (not timed)"
            )
            watch = Stopwatch()
            with watch:
                partners = await load_partner_files(url, files)
            say(f"partner files: {partners['enrolments']} enrolments in {watch.seconds:.1f} s (not timed)")

            subject, envelope = sample_envelope()
            # The raw limit: nats-py's publish_async, windowed, with Nats-Msg-Id (as the relay
            # publishes); before and after the ingest, the rate over both runs.
            raw_runs = [await raw_publish(nc, args.rows, args.window, subject, envelope)]
            say(
                f"raw JetStream publish_async, window {args.window}, Nats-Msg-Id, {len(envelope)}-byte envelopes: "
                f"{raw_runs[0]:6.2f} s {per_second(args.rows, raw_runs[0]):8.0f} msg/s"
            )

            before = await stream_messages(nc, "REPERAGE")
            say("ingest (child process: units of work + OutboxRelay, as `raccrochage ingest siei`) ...")
            meter = CpuMeter(running.folder)
            meter.start()
            result = await run_child(
                {
                    "database_url": url,
                    "nats_url": servers.nats_url,
                    "file": str(files.siei),
                    "campaign": campaign,
                    "as_of": AS_OF.isoformat(),
                    "key": KEY,
                }
            )
            cpu = meter.stop()
            stored = await stream_messages(nc, "REPERAGE") - before

            raw_runs.append(await raw_publish(nc, args.rows, args.window, subject, envelope))
            say(f"raw again after the ingest: publish_async {per_second(args.rows, raw_runs[1]):8.0f} msg/s")
        counts = await database_counts(url, campaign)

    summary = result["summary"]
    identified = summary["identified"]
    expected_events = identified + 1  # one event per youth found nowhere, and campaign.ingested
    problems = []
    if summary["rows"] != args.rows or counts["summary"].get("rows") != args.rows:
        problems.append(
            f"summary rows {summary['rows']} (stored {counts['summary'].get('rows')}), expected {args.rows}"
        )
    if identified != files.planned.identified:
        problems.append(f"identified {identified}, the generator planned {files.planned.identified}")
    if counts["unpublished"] or result["relay_failed"]:
        problems.append(
            f"{counts['unpublished']} outbox rows unpublished, {result['relay_failed']} relay failures"
        )
    if (
        counts["outbox"] != expected_events + partners["found"]
        or stored != expected_events + partners["found"]
    ):
        problems.append(
            f"outbox {counts['outbox']} rows, stream got {stored}, "
            f"expected {expected_events} (+{partners['found']} found by partner files)"
        )
    if problems:
        raise RuntimeError("ingest bench: " + "; ".join(problems))

    elapsed = result["seconds_to_last_puback"]
    rows_per_s = per_second(args.rows, elapsed)
    raw_rate = per_second(args.rows, sum(raw_runs) / len(raw_runs))
    ratio = rows_per_s / raw_rate
    rss = result["peak_rss_mb"]
    say(f"raw publish_async over both runs: {raw_rate:.0f} msg/s")
    say(
        f"ingest: {args.rows} rows, {identified} identified -> {result['published']} events published; "
        f"file read -> last PubAck {elapsed:.2f} s = {rows_per_s:.0f} rows/s "
        f"({per_second(result['published'], elapsed):.0f} events/s)"
    )
    say(
        f"  ingest_campaign returned after {result['seconds_ingest_call']:.2f} s "
        f"({result['published_during_ingest']} events already published); backlog 0 seen after "
        f"{result['seconds_to_backlog_zero']:.2f} s"
    )
    say(
        f"  child CPU {result['cpu_seconds']:.1f} s over {elapsed:.1f} s; {result['units_of_work']} units "
        f"of work; relay publish "
        f"{result['relay_publish_seconds']:.1f} s, batches {result['relay_batch_seconds']:.1f} s "
        f"({result['relay_batches']} batches, summed over lanes)"
    )
    uow_seconds = result["uow_seconds"]  # summed over the units of work, which overlap (WRITERS)
    say("  unit of work calls (s): " + ", ".join(f"{k} {v:.1f}" for k, v in uow_seconds.items() if v >= 0.05))
    # The child's CPU is its own from the start of reading; the servers' and the machine's run
    # over the whole child (start-up included), a second or two longer.
    others = cpu["machine_busy"] - cpu["postgres"] - cpu["nats"] - result["cpu_seconds"]
    say(
        f"  CPU during the ingest (core-seconds, {cpu['cores']} cores x {elapsed:.0f} s = "
        f"{cpu['cores'] * elapsed:.0f}): ingest process {result['cpu_seconds']:.0f}, postgres {cpu['postgres']:.0f}, "
        f"nats {cpu['nats']:.0f}, everything else on the machine {others:.0f}"
    )
    say(f"  peak RSS {rss:.0f} MB (after imports and connections: {result['rss_before_ingest_mb']:.0f} MB)")
    say(
        f"ratio ingest rows/s / raw msg/s: {ratio:.2f} (target >= {TARGET_RATIO}) -> "
        f"{'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}; peak RSS {rss:.0f} MB (target < {RSS_TARGET_MB}) -> "
        f"{'OK' if rss < RSS_TARGET_MB else 'ABOVE TARGET'}"
    )

    emit(
        {
            "bench": "ingest",
            "rows": args.rows,
            "file_mb": round(size_mb, 1),
            "identified": identified,
            "events_published": result["published"],
            "seconds": round(elapsed, 3),
            "rows_per_s": round(rows_per_s, 1),
            "raw_publish_per_s": round(raw_rate, 1),
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "peak_rss_mb": round(rss, 1),
            "rss_target_mb": RSS_TARGET_MB,
            "ok": ratio >= TARGET_RATIO and rss < RSS_TARGET_MB,
            "raw_seconds": [round(r, 3) for r in raw_runs],
            "raw_window": args.window,
            "envelope_bytes": len(envelope),
            "ingest_call_seconds": round(result["seconds_ingest_call"], 3),
            "backlog_zero_seconds": round(result["seconds_to_backlog_zero"], 3),
            "child_cpu_seconds": round(result["cpu_seconds"], 2),
            "units_of_work": result["units_of_work"],
            "relay_publish_seconds": round(result["relay_publish_seconds"], 2),
            "rss_before_ingest_mb": round(result["rss_before_ingest_mb"], 1),
            "uow_seconds": {k: round(v, 2) for k, v in uow_seconds.items()},
            "cpu_seconds": {
                "ingest": round(result["cpu_seconds"], 1),
                "postgres": round(cpu["postgres"], 1),
                "nats": round(cpu["nats"], 1),
                "others": round(others, 1),
                "cores": cpu["cores"],
            },
            "seed": args.seed,
            "nats": running.nats,
            "postgres": running.postgres,
        }
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated SIEI file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--window", type=int, default=2000, help="raw publish: PubAcks awaited at most in flight"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON spec: run the ingest, answer JSON
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        from raccrochage_platform import loop  # as `raccrochage ingest` runs it: uvloop unless told otherwise

        print(json.dumps(loop.run(child(json.loads(arguments.child)))), flush=True)
    else:
        from raccrochage_platform import loop  # the raw reference on the services' own loop (uvloop)

        loop.run(main(arguments))
