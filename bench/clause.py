"""Reservations of missions under contention: two MLDS tutors race for every mission, many
missions at once. Exactly one wins each; the service's reservation (handler, domain, conditional
UPDATE, outbox event, commit) beside raw row-locked transactions doing only the UPDATE."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import raccrochage_clause_sociale
from _common import Stopwatch, bench_servers, emit, per_second, say
from raccrochage_clause_sociale.domain.clause import Buyer, BuyerType
from raccrochage_clause_sociale.domain.errors import TransitionRefused
from raccrochage_clause_sociale.domain.mission import ActivityDomain, Site
from raccrochage_clause_sociale.service_layer import commands, handlers
from raccrochage_clause_sociale.service_layer.unit_of_work import SqlClauseUnitOfWork
from raccrochage_platform.db import make_engine
from raccrochage_platform.migrations import upgrade
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TARGET = 0.5
MIGRATIONS = Path(raccrochage_clause_sociale.__file__).resolve().parents[2] / "migrations"
RAW_RESERVE = text(
    "UPDATE mission SET status = 'reservee', reserved_by = :tutor, version = version + 1 "
    "WHERE mission_id = :mission AND status = 'disponible' RETURNING version"
)


def unit_of_work(engine: AsyncEngine) -> SqlClauseUnitOfWork:
    # No relay: the events stay in the outbox, as they would until the relay's next claim.
    return SqlClauseUnitOfWork(engine, source="raccrochage/clause_sociale", stream="CLAUSE")


async def declare_missions(engine: AsyncEngine, count: int, now: datetime) -> list[str]:
    clause_id = str(uuid.uuid4())
    buyer = Buyer("bench-buyer", "Acheteur", BuyerType.ETAT, "acheteur", "33")
    today = now.date()
    await handlers.publish_clause(
        commands.PublishClause(
            clause_id,
            buyer,
            "bench-co",
            "Marché",
            today,
            today + timedelta(days=800),
            500_000,
            date(today.year + 4, 1, 1),
            now,
        ),
        unit_of_work(engine),
    )
    site = Site("1 rue du Banc", "33000", "Bordeaux", "33")
    ids = []
    for _ in range(count):
        mission_id = str(uuid.uuid4())
        await handlers.declare_mission(
            commands.DeclareMission(
                mission_id,
                clause_id,
                "bench-co",
                ActivityDomain.LOGISTIQUE,
                ("Tâche",),
                site,
                "ref-1",
                10,
                now,
            ),
            unit_of_work(engine),
        )
        ids.append(mission_id)
    return ids


async def race(missions: list[str], concurrency: int, reserve) -> tuple[float, dict[str, int]]:
    """Two tutors per mission at once, `concurrency` missions in flight; seconds and winners."""
    wins: dict[str, int] = dict.fromkeys(missions, 0)
    queue = list(missions)
    gate = asyncio.Semaphore(concurrency)

    async def contest(mission_id: str) -> None:
        async with gate:
            results = await asyncio.gather(reserve(mission_id, "tuteur-a"), reserve(mission_id, "tuteur-b"))
            wins[mission_id] = sum(results)

    watch = Stopwatch()
    with watch:
        await asyncio.gather(*(contest(m) for m in queue))
    return watch.seconds, wins


async def main(missions: int, concurrency: int) -> None:
    with bench_servers() as bench:
        url = await bench.servers.create_database("clause_bench")
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        engine = make_engine(url, pool_size=2 * concurrency + 2, application_name="bench-clause")
        try:
            now = datetime.now(UTC)
            service_set = await declare_missions(engine, missions, now)
            raw_set = await declare_missions(engine, missions, now)
            # Missions of their own for a first, untimed race on each side: the pool's
            # connections are opened and each side's statements prepared on them before the clock
            # starts, so the figures compare reservations, not connection set-up.
            warm_up = await declare_missions(engine, 4 * concurrency, now)
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM ANALYZE mission"))

            async def raw(mission_id: str, tutor: str) -> int:
                async with engine.begin() as conn:
                    won = (await conn.execute(RAW_RESERVE, {"tutor": tutor, "mission": mission_id})).scalar()
                return int(won is not None)

            async def service(mission_id: str, tutor: str) -> int:
                command = commands.ReserveMission(mission_id, tutor, datetime.now(UTC))
                try:
                    await handlers.reserve_mission(command, unit_of_work(engine))
                except (handlers.MissionTaken, TransitionRefused):
                    # beaten in the same instant, or read after the winner's commit
                    return 0
                return 1

            half = len(warm_up) // 2
            await race(warm_up[:half], concurrency, raw)
            await race(warm_up[half:], concurrency, service)
            raw_seconds, raw_wins = await race(raw_set, concurrency, raw)
            service_seconds, service_wins = await race(service_set, concurrency, service)
            async with engine.connect() as conn:
                reserved = (
                    await conn.execute(text("SELECT count(*) FROM mission WHERE status = 'reservee'"))
                ).scalar() - len(warm_up)
        finally:
            await engine.dispose()

    exactly_one = all(n == 1 for n in service_wins.values()) and all(n == 1 for n in raw_wins.values())
    raw_rate = per_second(missions, raw_seconds)
    service_rate = per_second(missions, service_seconds)
    ratio = service_rate / raw_rate
    say(f"missions {missions} per run, two tutors each, {concurrency} missions in flight")
    say(f"raw row-locked UPDATE: {raw_rate:8.0f} missions decided/s ({raw_seconds:.2f} s)")
    say(f"service reservation:   {service_rate:8.0f} missions decided/s ({service_seconds:.2f} s)")
    say(f"exactly one winner per mission: {exactly_one}; reserved rows {reserved} of {2 * missions}")
    say(f"ratio {ratio:.2f} (target >= {TARGET})")
    emit(
        {
            "bench": "clause",
            "missions": missions,
            "concurrency": concurrency,
            "raw_per_s": round(raw_rate, 1),
            "service_per_s": round(service_rate, 1),
            "exactly_one_winner": exactly_one,
            "nats": bench.nats,
            "postgres": bench.postgres,
            "target": TARGET,
            "ratio": round(ratio, 3),
        }
    )
    if not exactly_one or reserved != 2 * missions:
        raise SystemExit("a mission had no winner or two")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--missions", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from raccrochage_platform import loop  # both sides on the services' own loop (uvloop)

    loop.run(main(args.missions, args.concurrency))
