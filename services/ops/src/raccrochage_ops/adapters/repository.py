"""Ops' read models in PostgreSQL: load the rows a batch touches, upsert the changed ones, count.

Counting happens here, in SQL (one aggregate query per panel over indexed columns), because a
national campaign holds hundreds of thousands of youths; the domain suppresses what is shown.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.projection import (
    ROW_KINDS,
    Candidacy,
    Clause,
    Dispositif,
    Mission,
    Offer,
    Reservation,
    Row,
    Store,
    Youth,
)
from .tables import READ_MODELS, replay_audit

# Clauses whose contract ends within this many days and whose hours are not all done.
ENDING_SOON_DAYS = 90


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

    async def erase(self) -> None:
        """Empty every read model (a rebuild replays the streams into them)."""
        names = ", ".join(READ_MODELS[kind].name for kind in ROW_KINDS)
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
    def _youths(self, filters: Filters) -> list[Any]:
        y = READ_MODELS[Youth].c
        where = []
        if filters.campaign_id:
            where.append(y.campaign_id == filters.campaign_id)
        if filters.departement:
            where.append(y.departement == filters.departement)
        if filters.psad_id:
            where.append(y.psad_id == filters.psad_id)
        if filters.opened_from:
            where.append(func.date(y.case_opened_at) >= filters.opened_from)
        if filters.opened_to:
            where.append(func.date(y.case_opened_at) <= filters.opened_to)
        return where

    async def funnel(self, filters: Filters, now: datetime) -> dict[str, Any]:
        y = READ_MODELS[Youth].c
        where = self._youths(filters)
        still_open = and_(y.case_opened_at.is_not(None), y.status != "closed")

        def count(condition: Any) -> Any:
            return func.count().filter(condition)

        counts = select(
            count(y.campaign_id.is_not(None)).label("handed_over"),
            count(y.identified).label("identified"),
            count(y.case_opened_at.is_not(None)).label("case_opened"),
            count(y.first_contact_at.is_not(None)).label("contacted"),
            count(y.interviewed_at.is_not(None)).label("interviewed"),
            count(
                and_(
                    y.interviewed_at.is_not(None),
                    y.interview_deadline.is_not(None),
                    func.date(y.interviewed_at) > y.interview_deadline,
                )
            ).label("interviewed_late"),
            count(y.status == "in_solution").label("in_solution"),
            count(y.status == "closed").label("closed"),
            count(and_(still_open, y.case_opened_at <= now - timedelta(days=30))).label("open_30"),
            count(and_(still_open, y.case_opened_at <= now - timedelta(days=60))).label("open_60"),
            count(and_(still_open, y.case_opened_at <= now - timedelta(days=90))).label("open_90"),
            count(y.escalated_on.is_not(None)).label("escalated"),
        ).where(*where)
        figures = dict((await self.connection.execute(counts)).mappings().one())
        figures["in_solution_by_kind"] = await self._grouped(
            y.solution_kind, [*where, y.status == "in_solution"]
        )
        figures["closed_by_reason"] = await self._grouped(y.closed_reason, [*where, y.status == "closed"])
        figures["by_status"] = await self._grouped(y.status, [*where, y.status.is_not(None)])
        return figures

    async def by_departement(self, filters: Filters, now: datetime) -> dict[str, dict[str, int]]:
        """The main funnel steps per département (PSAD: the PSAD filter), one scan."""
        y = READ_MODELS[Youth].c
        still_open = and_(y.case_opened_at.is_not(None), y.status != "closed")
        statement = (
            select(
                y.departement,
                func.count().filter(y.campaign_id.is_not(None)),
                func.count().filter(y.case_opened_at.is_not(None)),
                func.count().filter(y.first_contact_at.is_not(None)),
                func.count().filter(y.status == "in_solution"),
                func.count().filter(y.status == "closed"),
                func.count().filter(and_(still_open, y.case_opened_at <= now - timedelta(days=30))),
            )
            .where(*self._youths(filters), y.departement.is_not(None))
            .group_by(y.departement)
            .order_by(y.departement)
        )
        names = ("handed_over", "case_opened", "contacted", "in_solution", "closed", "open_30")
        return {
            dep: dict(zip(names, counts, strict=True))
            for dep, *counts in await self.connection.execute(statement)
        }

    async def _grouped(self, column: Any, where: list[Any]) -> dict[str, int]:
        statement = select(column, func.count()).where(*where).group_by(column)
        return {
            str(key) if key is not None else "unknown": n
            for key, n in await self.connection.execute(statement)
        }

    async def weekly(self, filters: Filters) -> dict[str, dict[str, int]]:
        """Per ISO week (its Monday): cases opened, first contacts, solutions proposed."""
        y = READ_MODELS[Youth].c
        where = self._youths(filters)
        weeks: dict[str, dict[str, int]] = {}
        for name, column in (
            ("opened", y.case_opened_at),
            ("contacted", y.first_contact_at),
            ("solution", y.solution_at),
        ):
            week = func.date(func.date_trunc("week", column))
            statement = select(week, func.count()).where(*where, column.is_not(None)).group_by(week)
            for monday, n in await self.connection.execute(statement):
                weeks.setdefault(monday.isoformat(), {"opened": 0, "contacted": 0, "solution": 0})[name] = n
        return dict(sorted(weeks.items()))

    async def campaigns(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        table = READ_MODELS[ROW_KINDS[1]]
        statement: Select = select(table).order_by(table.c.as_of.desc(), table.c.campaign_id)
        if campaign_id:
            statement = statement.where(table.c.campaign_id == campaign_id)
        return [dict(row) for row in (await self.connection.execute(statement)).mappings()]

    async def territories(self) -> dict[str, list[str]]:
        """The choices of the filters: campaigns, départements and PSADs seen."""
        y = READ_MODELS[Youth].c
        out = {}
        for name, column in (
            ("campaigns", y.campaign_id),
            ("departements", y.departement),
            ("psads", y.psad_id),
        ):
            result = await self.connection.execute(
                select(column).where(column.is_not(None)).distinct().order_by(column)
            )
            out[name] = [value for (value,) in result]
        return out

    async def seats(self, departement: str | None, filters: Filters) -> dict[str, dict[str, int]]:
        o = READ_MODELS[Offer].c
        r = READ_MODELS[Reservation].c
        y = READ_MODELS[Youth].c
        open_offer = o.closed_at.is_(None)
        stale = and_(
            open_offer,
            o.stale_confirmed_at.is_not(None),
            func.coalesce(o.confirmed_at <= o.stale_confirmed_at, True),
        )
        offers = select(
            o.departement,
            func.coalesce(func.sum(o.capacity).filter(open_offer), 0),
            func.coalesce(func.sum(o.seats_left).filter(open_offer), 0),
            func.count().filter(stale),
        ).group_by(o.departement)
        reserved = (
            select(o.departement, func.count())
            .select_from(READ_MODELS[Reservation].join(READ_MODELS[Offer], r.offer_id == o.offer_id))
            .where(r.made, ~r.expired, ~r.placed)
            .group_by(o.departement)
        )
        placed = (
            select(y.departement, func.count())
            .where(*self._youths(filters), y.placed_at.is_not(None))
            .group_by(y.departement)
        )
        if departement:
            offers = offers.where(o.departement == departement)
            reserved = reserved.where(o.departement == departement)
            placed = placed.where(y.departement == departement)
        out: dict[str, dict[str, int]] = {}

        def entry(dep: str | None) -> dict[str, int]:
            return out.setdefault(
                dep or "?", {"offered": 0, "left": 0, "stale": 0, "reserved": 0, "placed": 0}
            )

        for dep, offered, left, n_stale in await self.connection.execute(offers):
            entry(dep).update(offered=int(offered), left=int(left), stale=n_stale)
        for dep, n in await self.connection.execute(reserved):
            entry(dep)["reserved"] = n
        for dep, n in await self.connection.execute(placed):
            entry(dep)["placed"] = n
        return dict(sorted(out.items()))

    async def mlds(self, departement: str | None) -> dict[str, Any]:
        c = READ_MODELS[Candidacy].c
        d = READ_MODELS[Dispositif].c
        where = [c.departement == departement] if departement else []
        totals = select(
            func.count().label("candidacies"),
            func.count().filter(c.decision.is_not(None)).label("decided"),
            func.count().filter(c.enrolled_on.is_not(None)).label("enrolled"),
            func.count().filter(c.exited_on.is_not(None)).label("exited"),
        ).where(*where)
        figures = dict((await self.connection.execute(totals)).mappings().one())
        figures["decisions"] = await self._grouped(c.decision, [*where, c.decision.is_not(None)])
        figures["exits_by_destination"] = await self._grouped(
            c.destination, [*where, c.exited_on.is_not(None)]
        )
        places = select(func.coalesce(func.sum(d.capacity), 0), func.coalesce(func.sum(d.places_left), 0))
        if departement:
            places = places.where(d.departement == departement)
        capacity, left = (await self.connection.execute(places)).one()
        figures["places"] = {"capacity": int(capacity), "left": int(left)}
        return figures

    async def clauses(self, departement: str | None, today: date) -> dict[str, dict[str, int]]:
        cl = READ_MODELS[Clause].c
        m = READ_MODELS[Mission].c
        done = (
            select(
                m.clause_id, func.sum(m.hours_planned).label("planned"), func.sum(m.hours_done).label("done")
            )
            .group_by(m.clause_id)
            .subquery()
        )
        planned, hours_done = func.coalesce(done.c.planned, 0), func.coalesce(done.c.done, 0)
        ending = and_(
            cl.ends_on >= today,
            cl.ends_on <= today + timedelta(days=ENDING_SOON_DAYS),
            hours_done < cl.hours_required,
        )
        statement = (
            select(
                cl.departement,
                func.count(),
                func.sum(cl.hours_required),
                func.sum(planned),
                func.sum(hours_done),
                func.count().filter(ending),
            )
            .select_from(READ_MODELS[Clause].outerjoin(done, done.c.clause_id == cl.clause_id))
            .group_by(cl.departement)
        )
        if departement:
            statement = statement.where(cl.departement == departement)
        out = {}
        for dep, n, required, n_planned, n_done, n_ending in await self.connection.execute(statement):
            out[dep or "?"] = {
                "clauses": n,
                "hours_required": int(required or 0),
                "hours_planned": int(n_planned or 0),
                "hours_done": int(n_done or 0),
                "ending_soon": n_ending,
            }
        return dict(sorted(out.items()))
