"""The youth counts the projection keeps (youth_count, youth_week) against a full recount of the
youth table, after the events of several campaigns reach real PostgreSQL in random orders, in
random batches committed by concurrent units of work, as ops' five consumers do."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from raccrochage_ops.adapters.repository import Filters, ProjectionRepository
from raccrochage_ops.adapters.tables import COUNT_TABLES, READ_MODELS
from raccrochage_ops.domain.projection import COUNT_SUMS, TOTAL_KEY, WEEK_SERIES, Youth
from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
from raccrochage_ops.synthetic import DEPARTEMENTS, PSADS, campaign, payload, youth_id
from raccrochage_platform.db import libpq_dsn, make_engine

# Written apart from the projection's rule (domain/projection.py, youth_counts): what the
# aggregate tables must hold, counted over every youth row. A row at its defaults counts nothing.
BLANK = " AND ".join(
    ["NOT identified"]
    + [f"{name} IS NULL" for name in Youth.columns() if name not in ("youth_id", "identified")]
)
UTC_DAY = "(({0}) AT TIME ZONE 'UTC')::date"
SUMS = f"""count(*), count(*) FILTER (WHERE identified), count(first_contact_at), count(interviewed_at),
       count(*) FILTER (WHERE {UTC_DAY.format("interviewed_at")} > interview_deadline),
       count(escalated_on), count(placed_at)"""
RECOUNTS = {
    "youth_count": f"""
        SELECT campaign_id, departement, psad_id, {UTC_DAY.format("case_opened_at")},
               status, solution_kind, closed_reason, {SUMS}
        FROM youth WHERE NOT ({BLANK}) GROUP BY 1, 2, 3, 4, 5, 6, 7""",
    "youth_total": f"""
        SELECT campaign_id, departement, psad_id, case_opened_at IS NOT NULL,
               status, solution_kind, closed_reason, {SUMS}
        FROM youth WHERE NOT ({BLANK}) GROUP BY 1, 2, 3, 4, 5, 6, 7""",
    "youth_week": "SELECT *, count(*) FROM ("
    + " UNION ALL ".join(
        f"SELECT campaign_id, departement, psad_id, '{series}', "
        f"date_trunc('week', {column} AT TIME ZONE 'UTC')::date FROM youth WHERE {column} IS NOT NULL"
        for series, column in WEEK_SERIES.items()
    )
    + ") AS facts GROUP BY 1, 2, 3, 4, 5",
}


async def counted(dsn: str) -> dict[str, tuple[set[tuple], set[tuple]]]:
    """Per count table: its rows that count something, and the recount."""
    conn = await asyncpg.connect(dsn)
    out = {}
    try:
        for name, table in COUNT_TABLES.items():
            sums = [column.name for column in table.columns if column.name in COUNT_SUMS]
            kept = await conn.fetch(f"SELECT * FROM {name} WHERE {' OR '.join(f'{n} <> 0' for n in sums)}")
            recount = await conn.fetch(RECOUNTS[name])
            out[name] = ({tuple(r) for r in kept}, {tuple(r) for r in recount})
    finally:
        await conn.close()
    return out


def moves(rng: random.Random, youths: int, seed: int) -> list[tuple[str, object]]:
    """Events that move youths between keys, at times before and after their funnel's: handed
    over again to another campaign and PSAD, statuses changed, cases closed or reopened."""
    out: list[tuple[str, object]] = []
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    for _ in range(youths):
        n = rng.randrange(youths)
        yid = youth_id(n, seed)
        dep = rng.choice(DEPARTEMENTS)
        at = start + timedelta(days=rng.randint(-20, 60), hours=rng.randint(0, 23))
        case = {"case_id": "00000000-0000-0000-0000-00000000000%d" % rng.randint(1, 9), "youth_id": yid}
        kind = rng.random()
        if kind < 0.3:
            out.append(
                (
                    "reperage.youth.reported_again.v1",
                    payload(
                        "reperage.youth.reported_again.v1",
                        youth_id=yid,
                        campaign_id=f"moved-{rng.randint(1, 3)}",
                        psad_id=rng.choice(PSADS[dep]),
                        departement=dep,
                        as_of=(date(2026, 10, 1) + timedelta(days=rng.randint(0, 120))).isoformat(),
                    ),
                )
            )
        elif kind < 0.7:
            out.append(
                (
                    "psad.case.status_changed.v1",
                    payload(
                        "psad.case.status_changed.v1",
                        **case,
                        psad_id=PSADS[dep][0],
                        to_status=rng.choice(("reached", "in_solution", "to_contact", "closed")),
                        at=at.isoformat(),
                    ),
                )
            )
        else:
            out.append(
                (
                    "psad.case.closed.v1",
                    payload(
                        "psad.case.closed.v1",
                        **case,
                        psad_id=PSADS[dep][0],
                        reason=rng.choice(("moved", "refuses_support")),
                        found_base=None,
                        closed_at=at.isoformat(),
                    ),
                )
            )
    return out


def recounted_funnel(youths: list[Youth], now: datetime) -> dict:
    def number(condition) -> int:
        return sum(1 for y in youths if condition(y))

    def still_open(y: Youth, days: int) -> bool:
        return (
            y.case_opened_at is not None
            and y.status not in (None, "closed")
            and y.case_opened_at <= now - timedelta(days=days)
        )

    def grouped(condition, key) -> dict[str, int]:
        out: dict[str, int] = {}
        for y in youths:
            if condition(y):
                name = key(y) if key(y) is not None else "unknown"
                out[name] = out.get(name, 0) + 1
        return out

    figures = {
        "handed_over": number(lambda y: y.campaign_id is not None),
        "identified": number(lambda y: y.identified),
        "case_opened": number(lambda y: y.case_opened_at is not None),
        "contacted": number(lambda y: y.first_contact_at is not None),
        "interviewed": number(lambda y: y.interviewed_at is not None),
        "interviewed_late": number(
            lambda y: (
                y.interviewed_at is not None
                and y.interview_deadline is not None
                and y.interviewed_at.astimezone(UTC).date() > y.interview_deadline
            )
        ),
        **{f"open_{n}": number(lambda y, n=n: still_open(y, n)) for n in (30, 60, 90)},
        "escalated": number(lambda y: y.escalated_on is not None),
        "placed": number(lambda y: y.placed_at is not None),
        "in_solution": number(lambda y: y.status == "in_solution"),
        "closed": number(lambda y: y.status == "closed"),
        "in_solution_by_kind": grouped(lambda y: y.status == "in_solution", lambda y: y.solution_kind),
        "closed_by_reason": grouped(lambda y: y.status == "closed", lambda y: y.closed_reason),
        "by_status": grouped(lambda y: y.status is not None, lambda y: y.status),
    }
    figures["by_departement"] = {
        "33": {
            "handed_over": figures["handed_over"],
            "case_opened": figures["case_opened"],
            "contacted": figures["contacted"],
            "in_solution": figures["in_solution"],
            "closed": figures["closed"],
            "open_30": figures["open_30"],
            "placed": figures["placed"],
        }
    }
    return figures


async def project_concurrently(engine, events: list[tuple[str, object]], rng: random.Random) -> None:
    """Random batches (1 to 60 events) committed by four units of work at once."""
    batches = []
    while events:
        size = rng.randint(1, 60)
        batches.append(events[:size])
        events = events[size:]
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            async with SqlOpsUnitOfWork(engine, source="raccrochage/ops") as uow:
                for event_type, data in batch:
                    uow.project(event_type, data)
                await uow.commit()

    await asyncio.gather(*(worker() for _ in range(4)))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_counts_equal_a_recount_after_random_interleavings(ops_db, seed):
    rng = random.Random(seed)
    events = campaign(120, seed=seed, campaign_id=f"c-{seed}") + campaign(
        80, seed=seed + 100, campaign_id=f"d-{seed}"
    )
    events += moves(rng, 120, seed)
    rng.shuffle(events)
    engine = make_engine(ops_db, application_name="test-counts")
    dsn = libpq_dsn(ops_db)
    try:
        half = len(events) // 2
        for part in (events[:half], events[half:]):
            await project_concurrently(engine, part, rng)
            for name, (kept, recount) in (await counted(dsn)).items():
                assert kept == recount, name
        assert sum(row[len(TOTAL_KEY)] for row in (await counted(dsn))["youth_total"][0]) == 200
        # The dashboard's figures from the counts equal those counted over the youths, at
        # instants whose day N days before holds cases opened before and after it.
        async with engine.connect() as conn:
            youths = [Youth(**r) for r in (await conn.execute(READ_MODELS[Youth].select())).mappings()]
            # Cases open from 2026-11-02 09:00 to 11-07 08:00: the day 30, 60 or 90 days before.
            for now in (
                datetime(2026, 12, 4, 15, 30, tzinfo=UTC),
                datetime(2027, 1, 3, 13, tzinfo=UTC),
                datetime(2027, 2, 2, 12, 10, tzinfo=UTC),
            ):
                mine = [y for y in youths if y.departement == "33"]
                figures = await ProjectionRepository(conn).funnel(Filters(departement="33"), now)
                assert figures == recounted_funnel(mine, now)
                # With a date filter, from the counts per day: the cases opened on 11-03 and 11-04.
                days = Filters(departement="33", opened_from=date(2026, 11, 3), opened_to=date(2026, 11, 4))
                figures = await ProjectionRepository(conn).funnel(days, now)
                assert figures == recounted_funnel(
                    [
                        y
                        for y in mine
                        if y.case_opened_at is not None
                        and date(2026, 11, 3) <= y.case_opened_at.astimezone(UTC).date() <= date(2026, 11, 4)
                    ],
                    now,
                )
    finally:
        await engine.dispose()


async def test_the_migration_counts_the_youths_already_projected(ops_db):
    """A database projected before the counts existed gets them from its youth rows (0002)."""
    from alembic import command
    from raccrochage_platform.migrations import alembic_config, upgrade

    from .conftest import MIGRATIONS

    engine = make_engine(ops_db, application_name="test-counts")
    try:
        await project_concurrently(engine, campaign(60, seed=7, campaign_id="m-7"), random.Random(7))
    finally:
        await engine.dispose()
    dsn = libpq_dsn(ops_db)
    before = await counted(dsn)
    assert all(kept == recount and kept for kept, recount in before.values())
    await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, ops_db), "0001")
    await asyncio.to_thread(upgrade, MIGRATIONS, ops_db)
    assert await counted(dsn) == before
