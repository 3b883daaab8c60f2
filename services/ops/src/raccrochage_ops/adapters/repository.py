"""Ops' read models in PostgreSQL: load the rows a batch touches, upsert the changed ones, count.

Every count the dashboard shows is kept by the projection itself, in the aggregate tables
(youth_total, youth_count, youth_week, youth_open, seat_total, candidacy_total, dispositif_total,
clause_total), moved in the batch's transaction by (after - before) of every row it changes: a
national campaign holds hundreds of thousands of youths, and the dashboard adds up a few
aggregate rows instead.
Counting happens here, in SQL; the domain suppresses what is shown.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, insert, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.projection import (
    AGGREGATES,
    ROW_KINDS,
    WEEK_SERIES,
    Row,
    Store,
    Youth,
    count_changes,
    key_order,
    utc_day,
)
from .tables import (
    COUNT_TABLES,
    READ_MODELS,
    candidacy_total,
    clause_total,
    dispositif_total,
    replay_audit,
    seat_total,
    youth_count,
    youth_open,
    youth_total,
    youth_week,
)

# Clauses whose contract ends within this many days and whose hours are not all done.
ENDING_SOON_DAYS = 90


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    campaign_id: str | None = None
    departement: str | None = None
    psad_id: str | None = None
    opened_from: date | None = None
    opened_to: date | None = None


class AbstractProjectionRepository(abc.ABC):
    @abc.abstractmethod
    async def load(self, keys: dict[type[Row], set[str]]) -> Store: ...

    @abc.abstractmethod
    async def save(self, store: Store) -> None: ...

    @abc.abstractmethod
    async def erase(self) -> None:
        """Empty every read model (a rebuild replays the streams into them)."""

    @abc.abstractmethod
    async def forget_handled(self, consumers: list[str]) -> None:
        """Drop these consumers' inbox rows, so that a replay is handled again."""


class ProjectionRepository(AbstractProjectionRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def load(self, keys: dict[type[Row], set[str]]) -> Store:
        """The rows of `keys`, locked until the transaction ends.

        Consumers of different streams touch the same rows (a youth's case from PSAD, its
        placement from FOQUALE): a row is read and written back whole, so two batches must not
        read it at once. A missing row is first inserted empty (its defaults), so that a second
        batch waits for it too instead of inserting its own; rows are taken kind by kind in key
        order, the same order in every batch, so two batches cannot deadlock."""
        store = Store()
        for kind in ROW_KINDS:
            wanted = sorted(keys.get(kind, ()))
            if not wanted:
                continue
            table = READ_MODELS[kind]
            key = table.c[kind.KEY]
            await self.connection.execute(
                pg_insert(table).on_conflict_do_nothing(index_elements=[kind.KEY]),
                [kind(name).values() for name in wanted],  # type: ignore[call-arg]
            )
            result = await self.connection.execute(
                select(table).where(key.in_(wanted)).order_by(key).with_for_update()
            )
            for row in result.mappings():
                store.put(kind(**row))
        return store

    async def save(self, store: Store) -> None:
        for kind in ROW_KINDS:
            rows = store.changed_rows(kind)
            if not rows:
                continue
            table = READ_MODELS[kind]
            statement = pg_insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=[kind.KEY],
                set_={name: statement.excluded[name] for name in kind.columns() if name != kind.KEY},
            )
            await self.connection.execute(statement, [row.values() for row in rows])
        await self._move_counts(store)

    async def _move_counts(self, store: Store) -> None:
        """Add the batch's changes to the youth counts, last in the transaction: the aggregate
        rows are shared by every consumer's batches, so their locks are held the least time;
        taken table by table in one key order (`key_order`), they cannot deadlock."""
        for name, changes in count_changes(store).items():
            if not changes:
                continue
            table = COUNT_TABLES[name]
            key, sums = AGGREGATES[name]
            columns = [*key, *sums]
            statement = pg_insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=list(key),
                set_={column: table.c[column] + statement.excluded[column] for column in sums},
            )
            await self.connection.execute(
                statement,
                [
                    dict(zip(columns, (*where, *changes[where]), strict=True))
                    for where in sorted(changes, key=key_order)
                ],
            )

    async def erase(self) -> None:
        """Empty every read model (a rebuild replays the streams into them)."""
        names = ", ".join([READ_MODELS[kind].name for kind in ROW_KINDS] + list(COUNT_TABLES))
        await self.connection.execute(text(f"TRUNCATE {names}"))

    async def forget_handled(self, consumers: list[str]) -> None:
        await self.connection.execute(
            text("DELETE FROM inbox WHERE consumer = ANY(:consumers)"), {"consumers": consumers}
        )

    async def audit_replay(self, **row: Any) -> None:
        await self.connection.execute(insert(replay_audit).values(**row))

    async def replays(self, limit: int = 50) -> list[dict[str, Any]]:
        result = await self.connection.execute(
            select(replay_audit).order_by(replay_audit.c.id.desc()).limit(limit)
        )
        return [dict(row) for row in result.mappings()]

    # --- figures ---------------------------------------------------------------------------------
    @staticmethod
    def _where(columns: Any, filters: Filters, *, dated: bool = False) -> list[Any]:
        """The filters on a table with campaign_id, departement, psad_id (and opened_on if
        `dated`: the others have no date)."""
        where = []
        if filters.campaign_id:
            where.append(columns.campaign_id == filters.campaign_id)
        if filters.departement:
            where.append(columns.departement == filters.departement)
        if filters.psad_id:
            where.append(columns.psad_id == filters.psad_id)
        if dated and filters.opened_from:
            where.append(columns.opened_on >= filters.opened_from)
        if dated and filters.opened_to:
            where.append(columns.opened_on <= filters.opened_to)
        return where

    def _youths(self, filters: Filters) -> list[Any]:
        """The same filters on the youth table (the day a case opened is UTC's, as in the counts)."""
        y = READ_MODELS[Youth].c
        where = self._where(y, Filters(filters.campaign_id, filters.departement, filters.psad_id))
        if filters.opened_from:
            where.append(y.case_opened_at >= _midnight(filters.opened_from))
        if filters.opened_to:
            where.append(y.case_opened_at < _midnight(filters.opened_to + timedelta(days=1)))
        return where

    async def funnel(self, filters: Filters, now: datetime) -> dict[str, Any]:
        """Every youth count of the dashboard from the count tables, added up here into the
        funnel, its breakdowns, the per-département steps and the placements: `youth_total`
        (campaigns x PSADs x statuses rows, whatever the number of youths), or with a date filter
        `youth_count` (the same per day).

        "Still open after N days" is exact to the instant: the youths still open, less those
        whose case opened on or after the day N days ago (`youth_open`, the last 90 days), plus
        that one day's cases opened before now - N days (counted in `youth` by its index on
        case_opened_at)."""
        dated = filters.opened_from is not None or filters.opened_to is not None
        c = youth_count.c if dated else youth_total.c
        opened = c.opened_on.is_not(None) if dated else c.opened
        open_days = {n: utc_day(now - timedelta(days=n)) for n in (30, 60, 90)}
        # Plain sums grouped by whether the youth was handed over and its case opened: the
        # steps that count youths under a condition are added up from these groups below.
        sums = ("identified", "contacted", "interviewed", "interviewed_late", "escalated", "placed")
        steps = (
            "handed_over",
            "identified",
            "case_opened",
            "contacted",
            "interviewed",
            "interviewed_late",
            *(f"open_{n}" for n in open_days),
            "escalated",
            "placed",
        )
        groups = (
            c.departement,
            c.status,
            c.solution_kind,
            c.closed_reason,
            c.campaign_id.is_not(None),
            opened,
        )
        statement = (
            select(*groups, func.sum(c.youths), *(func.sum(c[name]) for name in sums))
            .where(*self._where(c, filters, dated=dated))
            .group_by(*groups)
        )
        rows = []
        for (
            departement,
            status,
            kind,
            reason,
            handed_over,
            case_opened,
            youths,
            *values,
        ) in await self.connection.execute(statement):
            youths = int(youths)
            still_open = youths if case_opened and status not in (None, "closed") else 0
            counts = {
                **dict(zip(sums, map(int, values), strict=True)),
                "handed_over": youths if handed_over else 0,
                "case_opened": youths if case_opened else 0,
                **{f"open_{n}": still_open for n in open_days},
            }
            rows.append(((departement, status, kind, reason, youths), {name: counts[name] for name in steps}))
        rows += await self._opened_lately(filters, open_days, list(steps))
        rows += await self._open_on_the_day(filters, now, open_days, list(steps))
        figures: dict[str, Any] = {name: 0 for name in steps}
        figures.update(in_solution=0, closed=0, in_solution_by_kind={}, closed_by_reason={}, by_status={})
        territories: dict[str, dict[str, int]] = {}

        def add(table: dict[str, int], key: str | None, n: int) -> None:
            if n:
                name = key if key is not None else "unknown"
                table[name] = table.get(name, 0) + n

        for (departement, status, kind, reason, youths), counts in rows:
            youths = int(youths)
            for name, n in counts.items():
                figures[name] += n
            in_solution = youths if status == "in_solution" else 0
            closed = youths if status == "closed" else 0
            figures["in_solution"] += in_solution
            figures["closed"] += closed
            add(figures["in_solution_by_kind"], kind, in_solution)
            add(figures["closed_by_reason"], reason, closed)
            if status is not None:
                add(figures["by_status"], status, youths)
            # A key whose youths all moved elsewhere stays, at zero: not a territory to show.
            if departement is not None and (youths or any(counts.values())):
                entry = territories.setdefault(
                    departement,
                    dict.fromkeys(
                        (
                            "handed_over",
                            "case_opened",
                            "contacted",
                            "in_solution",
                            "closed",
                            "open_30",
                            "placed",
                        ),
                        0,
                    ),
                )
                for name in ("handed_over", "case_opened", "contacted", "open_30", "placed"):
                    entry[name] += counts[name]
                entry["in_solution"] += in_solution
                entry["closed"] += closed
        figures["by_departement"] = dict(sorted(territories.items()))
        return figures

    async def _opened_lately(
        self, filters: Filters, open_days: dict[int, date], steps: list[str]
    ) -> list[tuple[tuple, dict[str, int]]]:
        """Youths still open whose case opened on or after the day N days ago, per département,
        as rows taken off `funnel`'s open_N (the last 90 days of `youth_open`)."""
        c = youth_open.c
        lately = {n: c.opened_on >= day for n, day in open_days.items()}
        statement = (
            select(c.departement, *(func.sum(c.youths).filter(condition) for condition in lately.values()))
            .where(*self._where(c, filters, dated=True), c.opened_on >= min(open_days.values()))
            .group_by(c.departement)
        )
        out = []
        for departement, *counts in await self.connection.execute(statement):
            opened = {f"open_{n}": -int(count or 0) for n, count in zip(lately, counts, strict=True)}
            out.append(((departement, None, None, None, 0), {**dict.fromkeys(steps, 0), **opened}))
        return out

    async def _open_on_the_day(
        self, filters: Filters, now: datetime, open_days: dict[int, date], steps: list[str]
    ) -> list[tuple[tuple, dict[str, int]]]:
        """Youths still open whose case opened on the day N days ago, before now - N days, per
        département: extra rows for `funnel`, with no youth and no step of their own but open_N."""
        y = READ_MODELS[Youth].c
        ranges = {
            n: and_(y.case_opened_at >= _midnight(day), y.case_opened_at <= now - timedelta(days=n))
            for n, day in open_days.items()
        }
        statement = (
            select(y.departement, *(func.count().filter(condition) for condition in ranges.values()))
            .where(*self._youths(filters), y.status != "closed", or_(*ranges.values()))
            .group_by(y.departement)
        )
        out = []
        for departement, *counts in await self.connection.execute(statement):
            opened = {f"open_{n}": count for n, count in zip(ranges, counts, strict=True)}
            out.append(((departement, None, None, None, 0), {**dict.fromkeys(steps, 0), **opened}))
        return out

    async def weekly(self, filters: Filters) -> dict[str, dict[str, int]]:
        """Per ISO week (its Monday, UTC): cases opened, first contacts, solutions proposed, from
        `youth_week`; with a date filter (on the day the case opened, which `youth_week` does
        not keep) from the youths of those days, one scan (grouping sets)."""
        if filters.opened_from is not None or filters.opened_to is not None:
            return await self._weekly_of_youths(filters)
        w = youth_week.c
        statement = (
            select(w.series, w.monday, func.sum(w.youths))
            .where(*self._where(w, filters))
            .group_by(w.series, w.monday)
        )
        weeks: dict[str, dict[str, int]] = {}
        for series, monday, n in await self.connection.execute(statement):
            if n:
                weeks.setdefault(monday.isoformat(), {"opened": 0, "contacted": 0, "solution": 0})[series] = (
                    int(n)
                )
        return dict(sorted(weeks.items()))

    async def _weekly_of_youths(self, filters: Filters) -> dict[str, dict[str, int]]:
        y = READ_MODELS[Youth].c
        # 'week' and 'UTC' written into the SQL, not bound: GROUPING() needs the very expressions
        # grouped by.
        week, utc = literal_column("'week'"), literal_column("'UTC'")
        series = {
            name: func.date(func.date_trunc(week, func.timezone(utc, getattr(y, column))))
            for name, column in WEEK_SERIES.items()
        }
        labelled = [column.label(name) for name, column in series.items()]
        statement = (
            select(*labelled, func.count(), *(func.grouping(column) for column in series.values()))
            .where(*self._youths(filters))
            .group_by(func.grouping_sets(*series.values()))
        )
        weeks: dict[str, dict[str, int]] = {}
        for row in await self.connection.execute(statement):
            mondays, n, grouped = row[:3], row[3], row[4:]
            for (name, monday), rolled_up in zip(zip(series, mondays, strict=True), grouped, strict=True):
                if not rolled_up and monday is not None:
                    weeks.setdefault(monday.isoformat(), {"opened": 0, "contacted": 0, "solution": 0})[
                        name
                    ] = n
        return dict(sorted(weeks.items()))

    async def campaigns(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        table = READ_MODELS[ROW_KINDS[1]]
        statement: Select = select(table).order_by(table.c.as_of.desc(), table.c.campaign_id)
        if campaign_id:
            statement = statement.where(table.c.campaign_id == campaign_id)
        return [dict(row) for row in (await self.connection.execute(statement)).mappings()]

    async def territories(self) -> dict[str, list[str]]:
        """The choices of the filters: campaigns, départements and PSADs of the youths counted."""
        c = youth_total.c
        statement = (
            select(c.campaign_id, c.departement, c.psad_id)
            .where(c.youths > 0)
            .group_by(c.campaign_id, c.departement, c.psad_id)
        )
        seen: dict[str, set[str]] = {"campaigns": set(), "departements": set(), "psads": set()}
        for row in await self.connection.execute(statement):
            for name, value in zip(seen, row, strict=True):
                if value is not None:
                    seen[name].add(value)
        return {name: sorted(values) for name, values in seen.items()}

    async def seats(self, departement: str | None, placed: dict[str, int]) -> dict[str, dict[str, int]]:
        """Open offers' seats, stale offers and reservations holding a seat per département
        (`seat_total`); `placed`: youths placed per département, from `funnel` (it counts them
        with the caller's filters)."""
        s = seat_total.c
        statement = select(
            s.departement, *(func.sum(s[name]) for name in AGGREGATES["seat_total"][1])
        ).group_by(s.departement)
        if departement:
            statement = statement.where(s.departement == departement)
        out: dict[str, dict[str, int]] = {}

        def entry(dep: str | None) -> dict[str, int]:
            return out.setdefault(
                dep or "?", {"offered": 0, "left": 0, "stale": 0, "reserved": 0, "placed": 0}
            )

        for dep, *sums in await self.connection.execute(statement):
            if any(sums):
                entry(dep).update(zip(AGGREGATES["seat_total"][1], map(int, sums), strict=True))
        for dep, n in placed.items():
            if n and (not departement or dep == departement):
                entry(dep)["placed"] = n
        return dict(sorted(out.items()))

    async def mlds(self, departement: str | None) -> dict[str, Any]:
        """Candidacies, decisions, enrolments and exits (`candidacy_total`), places
        (`dispositif_total`), in the youth's département or the site's."""
        c = candidacy_total.c
        statement = select(
            c.decision, c.destination, func.sum(c.candidacies), func.sum(c.enrolled), func.sum(c.exited)
        ).group_by(c.decision, c.destination)
        if departement:
            statement = statement.where(c.departement == departement)
        figures: dict[str, Any] = {
            "candidacies": 0,
            "decided": 0,
            "enrolled": 0,
            "exited": 0,
            "decisions": {},
            "exits_by_destination": {},
        }
        for decision, destination, candidacies, enrolled, exited in await self.connection.execute(statement):
            candidacies, enrolled, exited = int(candidacies), int(enrolled), int(exited)
            figures["candidacies"] += candidacies
            figures["enrolled"] += enrolled
            figures["exited"] += exited
            if decision is not None and candidacies:
                figures["decided"] += candidacies
                figures["decisions"][decision] = figures["decisions"].get(decision, 0) + candidacies
            if exited:
                name = destination if destination is not None else "unknown"
                figures["exits_by_destination"][name] = figures["exits_by_destination"].get(name, 0) + exited
        d = dispositif_total.c
        places = select(func.coalesce(func.sum(d.capacity), 0), func.coalesce(func.sum(d.places_left), 0))
        if departement:
            places = places.where(d.departement == departement)
        capacity, left = (await self.connection.execute(places)).one()
        figures["places"] = {"capacity": int(capacity), "left": int(left)}
        return figures

    async def clauses(self, departement: str | None, today: date) -> dict[str, dict[str, int]]:
        """Clauses and their hours per département (`clause_total`); ending soon: those whose
        contract ends within ENDING_SOON_DAYS with hours still to do."""
        c = clause_total.c
        ending = and_(c.ends_on >= today, c.ends_on <= today + timedelta(days=ENDING_SOON_DAYS), c.unfinished)
        statement = select(
            c.departement,
            *(func.sum(c[name]) for name in AGGREGATES["clause_total"][1]),
            func.coalesce(func.sum(c.clauses).filter(ending), 0),
        ).group_by(c.departement)
        if departement:
            statement = statement.where(c.departement == departement)
        out = {}
        for dep, n, required, planned, done, n_ending in await self.connection.execute(statement):
            if n or planned or done:
                out[dep or "?"] = {
                    "clauses": int(n),
                    "hours_required": int(required),
                    "hours_planned": int(planned),
                    "hours_done": int(done),
                    "ending_soon": int(n_ending),
                }
        return dict(sorted(out.items()))
