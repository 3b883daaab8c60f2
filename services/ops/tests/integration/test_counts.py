"""The counts the projection keeps (youth_total, youth_count, youth_week, youth_open, seat_total,
candidacy_total, dispositif_total, clause_total) against a full recount of the read models,
after the events of several campaigns, seats, MLDS and clauses reach real PostgreSQL in random
orders, in random batches committed by concurrent units of work, as ops' five consumers do."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from raccrochage_ops.adapters.repository import Filters, ProjectionRepository
from raccrochage_ops.adapters.tables import COUNT_TABLES, READ_MODELS
from raccrochage_ops.domain.projection import (
    AGGREGATES,
    TOTAL_KEY,
    WEEK_SERIES,
    Candidacy,
    Clause,
    Dispositif,
    Youth,
)
from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
from raccrochage_ops.synthetic import DEPARTEMENTS, PSADS, campaign, payload, youth_id
from raccrochage_platform.db import libpq_dsn, make_engine

# Written apart from the projection's rule (domain/projection.py, youth_counts): what the
# aggregate tables must hold, counted over every youth row. A row at its defaults counts nothing.
BLANK = " AND ".join(
    ["NOT identified"]
    + [f"{name} IS NULL" for name in Youth.columns() if name not in ("youth_id", "identified")]
)


def blank(kind) -> str:
    """SQL: a row of `kind` at its defaults (inserted empty, touched by no rule)."""
    out = []
    for name, default in kind(None).values().items():
        if name == kind.KEY:
            continue
        out.append(
            f"{name} IS NULL" if default is None else f"{name} = {default!r}".replace("False", "false")
        )
    return " AND ".join(out)


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
    "youth_open": f"""
        SELECT campaign_id, departement, psad_id, {UTC_DAY.format("case_opened_at")}, count(*)
        FROM youth WHERE case_opened_at IS NOT NULL AND status <> 'closed' GROUP BY 1, 2, 3, 4""",
    # Reservations holding a seat counted from the reservation rows, not the offer's own count.
    "seat_total": """
        SELECT departement, sum(offered), sum(seats), sum(stale), sum(reserved) FROM (
            SELECT departement,
                   CASE WHEN closed_at IS NULL THEN capacity ELSE 0 END AS offered,
                   CASE WHEN closed_at IS NULL THEN seats_left ELSE 0 END AS seats,
                   CASE WHEN closed_at IS NULL AND stale_confirmed_at IS NOT NULL
                             AND (confirmed_at IS NULL OR confirmed_at <= stale_confirmed_at)
                        THEN 1 ELSE 0 END AS stale,
                   0 AS reserved
            FROM offer
            UNION ALL
            SELECT o.departement, 0, 0, 0, 1 FROM reservation r LEFT JOIN offer o USING (offer_id)
            WHERE r.made AND NOT r.expired AND NOT r.placed
        ) AS facts GROUP BY 1""",
    "candidacy_total": f"""
        SELECT departement, decision, CASE WHEN exited_on IS NOT NULL THEN destination END,
               count(*), count(enrolled_on), count(exited_on)
        FROM candidacy WHERE NOT ({blank(Candidacy)}) GROUP BY 1, 2, 3""",
    "dispositif_total": f"""
        SELECT departement, sum(capacity), sum(places_left)
        FROM dispositif WHERE NOT ({blank(Dispositif)}) GROUP BY 1""",
    # Hours planned and done counted from the mission rows, not the clause's own sums.
    "clause_total": f"""
        SELECT c.departement, c.ends_on, coalesce(m.done, 0) < c.hours_required,
               count(*) FILTER (WHERE c.published_at IS NOT NULL), sum(c.hours_required),
               sum(coalesce(m.planned, 0)), sum(coalesce(m.done, 0))
        FROM clause c LEFT JOIN (
            SELECT clause_id, sum(hours_planned) AS planned, sum(hours_done) AS done
            FROM mission GROUP BY clause_id
        ) AS m USING (clause_id)
        WHERE NOT ({blank(Clause)}) GROUP BY 1, 2, 3""",
}


async def counted(dsn: str) -> dict[str, tuple[set[tuple], set[tuple]]]:
    """Per count table: its rows that count something, and the recount's."""
    conn = await asyncpg.connect(dsn)
    out = {}

    def counting(rows, keys: int) -> set[tuple]:
        return {tuple(r) for r in rows if any(r[keys:])}

    try:
        for name in COUNT_TABLES:
            keys = len(AGGREGATES[name][0])
            kept = counting(await conn.fetch(f"SELECT * FROM {name}"), keys)
            out[name] = (kept, counting(await conn.fetch(RECOUNTS[name]), keys))
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


def panel_moves(rng: random.Random, n: int, seed: int) -> list[tuple[str, object]]:
    """Seats, MLDS and clauses events on small pools of ids, so that they meet: offers changed,
    flagged stale, closed; reservations made, expired, placed (each always on its one offer);
    MLDS sites revised; candidacies received, decided again, enrolled, exited; clauses published
    again; missions (each of its one clause) declared, their hours recorded, completed."""
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def ident(kind: str, i: int) -> str:
        return str(
            uuid.UUID(
                int=(seed << 64)
                + (("offer", "reservation", "candidacy", "clause", "mission").index(kind) << 32)
                + i
            )
        )

    def at() -> str:
        return (start + timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23))).isoformat()

    def day() -> str:
        return (date(2026, 12, 1) + timedelta(days=rng.randint(0, 150))).isoformat()

    def candidacy(**more: object) -> dict:
        """One of 20 candidacies; `departement` (the youth's, or the site's) where the event has one."""
        return {"candidacy_id": ident("candidacy", rng.randrange(20)), **more}

    dep3 = lambda: rng.choice(DEPARTEMENTS[:3])  # noqa: E731
    offer = lambda i: ident("offer", i % 6)  # noqa: E731
    clause = lambda i: ident("clause", i % 4)  # noqa: E731
    choices = {
        "foquale.seat.updated.v1": lambda: {
            "offer_id": offer(rng.randrange(6)),
            "departement": rng.choice(DEPARTEMENTS[:3]),
            "capacity": (capacity := rng.randint(0, 12)),
            "seats_left": rng.randint(0, capacity),
            "updated_at": at(),
            "last_confirmed_at": at(),
        },
        "foquale.seat.stale.v1": lambda: {
            "offer_id": offer(rng.randrange(6)),
            "last_confirmed_at": at(),
            "flagged_at": at(),
        },
        "foquale.seat.closed.v1": lambda: {"offer_id": offer(rng.randrange(6)), "closed_at": at()},
        "foquale.reservation.made.v1": lambda: {
            "reservation_id": ident("reservation", (r := rng.randrange(30))),
            "offer_id": offer(r),
            "made_at": at(),
            "expires_at": at(),
        },
        "foquale.reservation.expired.v1": lambda: {
            "reservation_id": ident("reservation", (r := rng.randrange(30))),
            "offer_id": offer(r),
            "expired_at": at(),
        },
        "foquale.placement.confirmed.v1": lambda: {
            "reservation_id": ident("reservation", (r := rng.randrange(30))),
            "seat_id": offer(r),
            "youth_id": youth_id(r, seed),
            "decided_at": at(),
        },
        "mlds.dispositif.updated.v1": lambda: {
            "dispositif_id": f"micro_lycee-{(dep := rng.choice(DEPARTEMENTS[:3]))}-0{rng.randint(1, 3)}",
            "departement": dep,
            "capacity": (capacity := rng.randint(0, 30)),
            "places_taken": (taken := rng.randint(0, capacity)),
            "places_left": capacity - taken,
            "revision": rng.randint(1, 9),
        },
        "mlds.candidacy.received.v1": lambda: candidacy(received_at=at(), departement=dep3()),
        "mlds.candidacy.decided.v1": lambda: candidacy(
            decision_number=rng.randint(1, 4), outcome=rng.choice(("eligible", "not_eligible", "incomplete"))
        ),
        "mlds.enrolment.started.v1": lambda: candidacy(started_on=day(), departement=dep3()),
        "mlds.enrolment.exited.v1": lambda: candidacy(
            departement=dep3(),
            started_on="2026-11-20",
            exited_on=day(),
            destination=rng.choice(("back_to_school", "apprenticeship", "employment")),
        ),
        "clause.clause.published.v1": lambda: {
            "clause_id": clause(rng.randrange(4)),
            "departement": rng.choice(DEPARTEMENTS[:3]),
            "hours_required": rng.randint(0, 300),
            "ends_on": day(),
            "published_at": at(),
        },
        "clause.mission.declared.v1": lambda: {
            "mission_id": ident("mission", (m := rng.randrange(10))),
            "clause_id": clause(m),
            "hours": rng.randint(1, 150),
            "declared_at": at(),
        },
        "clause.hours.recorded.v1": lambda: {
            "mission_id": ident("mission", (m := rng.randrange(10))),
            "clause_id": clause(m),
            "mission_hours_done": rng.randint(0, 150),
            "recorded_at": at(),
        },
        "clause.mission.completed.v1": lambda: {
            "mission_id": ident("mission", (m := rng.randrange(10))),
            "clause_id": clause(m),
            "hours_done": rng.randint(0, 150),
            "completed_at": at(),
        },
    }
    types = sorted(choices)
    return [(t, payload(t, **choices[t]())) for t in (rng.choice(types) for _ in range(n))]


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


async def panels_match_the_rows(engine, dsn: str) -> None:
    """The seats, MLDS and clauses panels read from the counts equal the same figures counted
    over the read models' rows."""
    today = date(2027, 1, 15)
    conn = await asyncpg.connect(dsn)
    try:
        offers = {r["offer_id"]: r for r in await conn.fetch("SELECT * FROM offer")}
        reservations = await conn.fetch("SELECT * FROM reservation WHERE made AND NOT expired AND NOT placed")
        candidacies = await conn.fetch("SELECT * FROM candidacy")
        sites = await conn.fetch("SELECT * FROM dispositif")
        clauses = await conn.fetch("SELECT * FROM clause WHERE published_at IS NOT NULL")
        missions = await conn.fetch("SELECT * FROM mission")
    finally:
        await conn.close()
    async with engine.connect() as connection:
        repo = ProjectionRepository(connection)
        seats, mlds, panel = (
            await repo.seats("33", {}),
            await repo.mlds("40"),
            await repo.clauses(None, today),
        )
    open_33 = [o for o in offers.values() if o["departement"] == "33" and o["closed_at"] is None]
    assert seats.get("33", {}).get("offered", 0) == sum(o["capacity"] for o in open_33)
    assert seats.get("33", {}).get("left", 0) == sum(o["seats_left"] for o in open_33)
    assert seats.get("33", {}).get("reserved", 0) == sum(
        1 for r in reservations if offers[r["offer_id"]]["departement"] == "33"
    )
    mine = [c for c in candidacies if c["departement"] == "40"]
    assert mlds["candidacies"] == len(mine)
    assert mlds["enrolled"] == sum(c["enrolled_on"] is not None for c in mine)
    decisions: dict[str, int] = {}
    for c in mine:
        if c["decision"] is not None:
            decisions[c["decision"]] = decisions.get(c["decision"], 0) + 1
    assert mlds["decisions"] == decisions
    assert mlds["places"]["capacity"] == sum(d["capacity"] for d in sites if d["departement"] == "40")
    done = {}
    for m in missions:
        done[m["clause_id"]] = done.get(m["clause_id"], 0) + m["hours_done"]
    for dep in {c["departement"] for c in clauses}:
        theirs = [c for c in clauses if c["departement"] == dep]
        assert panel[dep]["clauses"] == len(theirs)
        assert panel[dep]["hours_done"] == sum(done.get(c["clause_id"], 0) for c in theirs)
        assert panel[dep]["ending_soon"] == sum(
            today <= c["ends_on"] <= today + timedelta(days=90)
            and done.get(c["clause_id"], 0) < c["hours_required"]
            for c in theirs
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_counts_equal_a_recount_after_random_interleavings(ops_db, seed):
    rng = random.Random(seed)
    events = campaign(120, seed=seed, campaign_id=f"c-{seed}") + campaign(
        80, seed=seed + 100, campaign_id=f"d-{seed}"
    )
    events += moves(rng, 120, seed) + panel_moves(rng, 300, seed)
    rng.shuffle(events)
    engine = make_engine(ops_db, application_name="test-counts")
    dsn = libpq_dsn(ops_db)
    try:
        half = len(events) // 2
        for part in (events[:half], events[half:]):
            await project_concurrently(engine, part, rng)
            for name, (kept, recount) in (await counted(dsn)).items():
                assert kept == recount, name
        final = await counted(dsn)
        assert all(kept for kept, _ in final.values())
        assert sum(row[len(TOTAL_KEY)] for row in final["youth_total"][0]) == 200
        await panels_match_the_rows(engine, dsn)
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


async def test_the_migrations_count_the_rows_already_projected(ops_db):
    """A database projected before the counts existed gets them from its rows (0002, 0003)."""
    from alembic import command
    from raccrochage_platform.migrations import alembic_config, upgrade

    from .conftest import MIGRATIONS

    engine = make_engine(ops_db, application_name="test-counts")
    try:
        rng = random.Random(7)
        events = campaign(60, seed=7, campaign_id="m-7") + panel_moves(rng, 200, 7)
        await project_concurrently(engine, events, rng)
    finally:
        await engine.dispose()
    dsn = libpq_dsn(ops_db)
    before = await counted(dsn)
    assert all(kept == recount and kept for kept, recount in before.values())
    await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, ops_db), "0001")
    await asyncio.to_thread(upgrade, MIGRATIONS, ops_db)
    assert await counted(dsn) == before
