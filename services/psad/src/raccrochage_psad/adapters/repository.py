"""Cases in PostgreSQL, on a unit of work's connection: load a case (locked for the
transaction), save it, find them.

The aggregate is one row: the columns that lists filter on, and the history (attempts,
interviews, solutions) as JSON. Saving bumps `version`; a case is loaded `FOR UPDATE`, so two
commands on the same case queue instead of overwriting each other. Batches (a campaign's
hand-over, a day of partners' enrolments) are read and written by one statement over arrays,
the same statement whatever their size, so that it is prepared once per connection.

`AbstractCaseRepository` is what the service layer uses; `CaseRepository` runs it on the
SQLAlchemy `AsyncConnection` of a `SqlPsadUnitOfWork`, the unit tests on an in-memory fake.
"""

from __future__ import annotations

import abc
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

from ..domain.case import Case
from ..domain.contact import Channel, ContactAttempt, ContactOutcome
from ..domain.deadlines import DEFAULT_POLICY, Policy
from ..domain.interview import Interview, InterviewerRole, InterviewOutcome
from ..domain.solution import Solution, SolutionKind, SolutionState
from ..domain.states import CaseStatus, CloseReason
from .tables import case as case_table

_SCALARS = (
    "youth_id",
    "psad_id",
    "departement",
    "zap",
    "age_at_opening",
    "opened_at",
    "level",
    "last_diploma",
    "months_since_leaving",
    "status_since",
    "updated_at",
    "owner",
    "episode",
    "review_date",
    "found_base",
    "last_found_at",
    "transferred_to",
    "escalation_raised_on",
)


class CaseNotFound(LookupError):
    pass


@dataclass(frozen=True)
class LatestCase:
    """A youth's open case if they have one, else their latest closed one: what a hand-over
    decides on (open nothing, reopen it, or open a new one)."""

    case_id: str
    youth_id: str
    psad_id: str
    status: CaseStatus
    transferred_to: str | None

    @property
    def is_open(self) -> bool:
        return self.status is not CaseStatus.CLOSED


@dataclass(frozen=True)
class CaseFilter:
    """The filters of a territory's case list that the database applies (the work-list rules
    are applied to the loaded cases by the service layer)."""

    departement: str
    today: date
    status: str | None = None
    psad_id: str | None = None
    owner: str | None = None
    deadline: Literal["overdue", "due"] | None = None


# --- rows and aggregates --------------------------------------------------------------------------
def _iso(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def history_of(case: Case) -> dict[str, list[dict[str, Any]]]:
    return {
        "attempts": [
            {
                "number": a.number,
                "episode": a.episode,
                "channel": a.channel.value,
                "outcome": a.outcome.value,
                "at": _iso(a.at),
                "by": a.by,
            }
            for a in case.attempts
        ],
        "interviews": [
            {
                "number": i.number,
                "episode": i.episode,
                "scheduled_for": _iso(i.scheduled_for),
                "with_role": i.with_role.value,
                "interviewer_id": i.interviewer_id,
                "scheduled_at": _iso(i.scheduled_at),
                "outcome": i.outcome.value if i.outcome else None,
                "recorded_at": _iso(i.recorded_at),
            }
            for i in case.interviews
        ],
        "solutions": [
            {
                "number": s.number,
                "episode": s.episode,
                "kind": s.kind.value,
                "proposed_at": _iso(s.proposed_at),
                "wishes": list(s.wishes),
                "state": s.state.value,
                "decided_at": _iso(s.decided_at),
                "refusal_reason": s.refusal_reason,
            }
            for s in case.solutions
        ],
    }


def row_of(case: Case, policy: Policy = DEFAULT_POLICY) -> dict[str, Any]:
    """The row of a case: its fields, its history, and the columns derived for lists and timers."""
    row = {name: getattr(case, name) for name in _SCALARS}
    row.update(
        case_id=case.case_id,
        status=case.status.value,
        close_reason=case.close_reason.value if case.close_reason else None,
        history=history_of(case),
        first_attempt_at=case.first_attempt_at,
        failed_attempts=case.failed_attempts,
        interview_deadline=case.interview_still_owed(policy),
        escalation_due_on=case.escalation_due_on(policy),
    )
    return row


def case_of(values: Mapping[str, Any]) -> Case:
    """Rebuild a stored case from its row; it records no event (only new commands do)."""
    history = values["history"] or {}
    if isinstance(history, str):
        history = json.loads(history)
    case = Case(
        case_id=str(values["case_id"]),
        **{name: values[name] for name in _SCALARS},
        status=CaseStatus(values["status"]),
        close_reason=CloseReason(values["close_reason"]) if values["close_reason"] else None,
    )
    case.attempts = [
        ContactAttempt(
            a["number"],
            a["episode"],
            Channel(a["channel"]),
            ContactOutcome(a["outcome"]),
            _dt(a["at"]),
            a.get("by"),
        )
        for a in history.get("attempts", [])
    ]
    case.interviews = [
        Interview(
            i["number"],
            i["episode"],
            _dt(i["scheduled_for"]),
            InterviewerRole(i["with_role"]),
            i.get("interviewer_id"),
            _dt(i["scheduled_at"]),
            InterviewOutcome(i["outcome"]) if i.get("outcome") else None,
            _dt(i.get("recorded_at")),
        )
        for i in history.get("interviews", [])
    ]
    case.solutions = [
        Solution(
            s["number"],
            s["episode"],
            SolutionKind(s["kind"]),
            _dt(s["proposed_at"]),
            tuple(s.get("wishes") or ()),
            SolutionState(s["state"]),
            _dt(s.get("decided_at")),
            s.get("refusal_reason"),
        )
        for s in history.get("solutions", [])
    ]
    return case


def is_fresh(case: Case) -> bool:
    """A case as `Case.open` makes it: nothing derived from a history to store."""
    return (
        case.status is CaseStatus.TO_CONTACT
        and case.episode == 1
        and not case.attempts
        and not case.interviews
        and not case.solutions
        and case.owner is None
        and case.review_date is None
        and case.close_reason is None
        and case.found_base is None
        and case.last_found_at is None
        and case.transferred_to is None
        and case.escalation_raised_on is None
        and case.status_since == case.opened_at
        and case.updated_at == case.opened_at
    )


# --- the port ------------------------------------------------------------------------------------
class AbstractCaseRepository(abc.ABC):
    """The cases of one unit of work. `policy` derives the stored deadline columns."""

    policy: Policy

    @abc.abstractmethod
    async def get(self, case_id: str | uuid.UUID, *, lock: bool = True) -> Case:
        """The case, locked for the transaction unless `lock` is False; CaseNotFound if none."""

    @abc.abstractmethod
    async def open_case_of(self, youth_id: str, *, lock: bool = True) -> Case | None:
        """The youth's open case, if any."""

    @abc.abstractmethod
    async def open_cases_of(self, youth_ids: Sequence[str]) -> list[Case]:
        """The open cases of these youths, locked for the transaction."""

    @abc.abstractmethod
    async def latest_cases(self, youth_ids: Sequence[str]) -> dict[str, LatestCase]:
        """Per youth who has a case: the open one if any, else the latest closed one."""

    @abc.abstractmethod
    async def insert_new(self, cases: Sequence[Case]) -> set[str]:
        """Insert new open cases; a youth who already has an open case (another process won) is
        skipped. Returns the case ids inserted."""

    @abc.abstractmethod
    async def open_new(self, cases: Sequence[Case]) -> tuple[set[str], dict[str, LatestCase]]:
        """Insert cases just opened (`Case.open`, one per youth, all at the same time), except
        for a youth with an open case, or with a closed case of the same PSAD not transferred
        (reopened instead). Returns (case ids inserted, `latest_cases` of the youths who had
        one)."""

    @abc.abstractmethod
    async def save_many(self, cases: Sequence[Case]) -> None:
        """Write loaded cases back (their version bumped)."""

    async def save(self, case: Case) -> None:
        await self.save_many([case])

    @abc.abstractmethod
    async def touch_reported(self, case_id: str, on: date) -> None:
        """A later campaign listed the youth again on `on`."""

    @abc.abstractmethod
    async def due_for_timers(self, today: date, now: datetime, limit: int = 500) -> list[Case]:
        """Cases a timer may change (possibly unreachable, or a minor's escalation due), oldest
        update first, locked; the ones another transaction holds are skipped."""

    @abc.abstractmethod
    async def read_in_one_snapshot(self) -> None:
        """Every later read of this unit of work sees the same snapshot, and nothing is written.
        First thing in the unit of work."""

    @abc.abstractmethod
    async def open_cases_in(self, filters: CaseFilter) -> list[Case]:
        """The open cases that match `filters`, in no order."""

    @abc.abstractmethod
    async def count_closed_in(self, filters: CaseFilter) -> int:
        """How many closed cases match `filters`."""

    @abc.abstractmethod
    async def closed_cases_in(self, filters: CaseFilter, offset: int, limit: int) -> list[Case]:
        """A page of the closed cases that match `filters`, longest closed first."""

    @abc.abstractmethod
    async def counts_by_status(self, departement: str | None) -> list[tuple[str, str, int]]:
        """(département, status, cases), for one territory or every one."""

    @abc.abstractmethod
    async def interview_overdue_counts(self, departement: str | None, today: date) -> dict[str, int]:
        """Per département, the open cases whose interview deadline has passed."""


# --- PostgreSQL -----------------------------------------------------------------------------------
_PG = postgresql.dialect()
# What a save writes: every column but the ones the database keeps (version, last campaign).
_WRITTEN = [column for column in case_table.columns if column.name not in ("version", "last_reported_on")]
_SELECTED = ", ".join("c." + column.name for column in case_table.columns)


def _array_of(column: Any) -> str:
    """`column`'s array parameter, cast to its type (the history goes as JSON text)."""
    kind = "text" if column.name == "history" else column.type.compile(dialect=_PG)
    return f"CAST(:{column.name} AS {kind}[])"


def _arrays(cases: Sequence[Case], policy: Policy) -> dict[str, list[Any]]:
    """The `_WRITTEN` columns of `cases`, one array per column."""
    rows = [row_of(case, policy) for case in cases]
    return {
        column.name: [json.dumps(row["history"]) for row in rows]
        if column.name == "history"
        else [row[column.name] for row in rows]
        for column in _WRITTEN
    }


_UNNEST_WRITTEN = (
    f"unnest({', '.join(_array_of(c) for c in _WRITTEN)}) AS u({', '.join(c.name for c in _WRITTEN)})"
)
_INSERT_CASES = text(
    f"INSERT INTO case_file ({', '.join(c.name for c in _WRITTEN)}) "
    f"SELECT {', '.join('CAST(u.history AS jsonb)' if c.name == 'history' else 'u.' + c.name for c in _WRITTEN)} "
    f"FROM {_UNNEST_WRITTEN} "
    # the partial unique index's predicate, written out: a bound value would not match it in a
    # generic plan
    "ON CONFLICT (youth_id) WHERE status <> 'closed' DO NOTHING RETURNING case_id"
)
_SAVE_CASES = text(
    "UPDATE case_file c SET "
    + ", ".join(
        f"{c.name} = CAST(u.history AS jsonb)" if c.name == "history" else f"{c.name} = u.{c.name}"
        for c in _WRITTEN
        if c.name != "case_id"
    )
    + f", version = c.version + 1 FROM {_UNNEST_WRITTEN} WHERE c.case_id = u.case_id"
)
# The youths' open cases, locked: one index probe per youth (a generic plan of
# `youth_id = ANY(...)` scanned the table).
_OPEN_CASES_OF = (
    text(
        f"SELECT {_SELECTED} FROM unnest(:youth_ids) AS y(youth_id) "
        "JOIN case_file c ON c.youth_id = y.youth_id WHERE c.status <> 'closed' FOR UPDATE OF c"
    )
    .bindparams(bindparam("youth_ids", type_=ARRAY(Text)))
    .columns(*case_table.columns)
)
# Per youth, the open case if any, else the latest closed one: one index probe per youth.
_LATEST = """
    SELECT c.case_id, c.youth_id, c.psad_id, c.status, c.transferred_to FROM case_file c
    WHERE c.youth_id = {youth} ORDER BY (c.status <> 'closed') DESC, c.updated_at DESC LIMIT 1
"""
_LATEST_CASES = text(
    f"SELECT c.* FROM unnest(:youth_ids) AS y(youth_id) CROSS JOIN LATERAL ({_LATEST.format(youth='y.youth_id')}) c"
).bindparams(bindparam("youth_ids", type_=ARRAY(Text)))
# Opening a batch of brand-new cases (a campaign's hand-over: thousands at once) in one
# statement: it looks the youths' cases up and inserts the ones to open. A youth with an open
# case, or with a closed case of the same PSAD not transferred (reopened, see handover), gets no
# new row; the partial unique index still stops a youth whose case another process opened
# meanwhile. Only the columns a new case fills are sent; the others are what `row_of` gives a
# case without history.
_NEW_COLUMNS = (
    ("case_id", "uuid"),
    ("youth_id", "text"),
    ("psad_id", "text"),
    ("departement", "text"),
    ("zap", "text"),
    ("age_at_opening", "int"),
    ("level", "text"),
    ("last_diploma", "text"),
    ("months_since_leaving", "int"),
)
_NEW = ", ".join(name for name, _ in _NEW_COLUMNS)
_OPEN_NEW = text(
    f"""
    WITH input AS (
        SELECT * FROM unnest({", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _NEW_COLUMNS)})
                 AS i({_NEW})
    ), known AS (
        SELECT c.* FROM input i CROSS JOIN LATERAL ({_LATEST.format(youth="i.youth_id")}) c
    ), inserted AS (
        INSERT INTO case_file ({_NEW}, opened_at, status, status_since, updated_at, episode, history,
                               failed_attempts)
        SELECT {", ".join("i." + name for name, _ in _NEW_COLUMNS)}, :opened_at, :status, :opened_at,
               :opened_at, 1, CAST(:history AS jsonb), 0
        FROM input i
        WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.youth_id = i.youth_id
                          AND (k.status <> 'closed' OR (k.psad_id = i.psad_id AND k.transferred_to IS NULL)))
        ON CONFLICT (youth_id) WHERE status <> 'closed' DO NOTHING
        RETURNING case_id
    )
    SELECT true AS inserted, case_id::text, NULL::text AS youth_id, NULL::text AS psad_id,
           NULL::text AS status, NULL::text AS transferred_to FROM inserted
    UNION ALL
    SELECT false, case_id::text, youth_id, psad_id, status, transferred_to FROM known
    """
).bindparams(
    bindparam("opened_at", type_=case_table.c.opened_at.type),
    bindparam("status", type_=Text),
    bindparam("history", type_=Text),
)
_EMPTY_HISTORY = json.dumps({"attempts": [], "interviews": [], "solutions": []})
_SNAPSHOT = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def _latest(row: Mapping[str, Any]) -> LatestCase:
    return LatestCase(
        str(row["case_id"]), row["youth_id"], row["psad_id"], CaseStatus(row["status"]), row["transferred_to"]
    )


class CaseRepository(AbstractCaseRepository):
    """On the connection of one unit of work, inside its transaction."""

    def __init__(self, connection: AsyncConnection, policy: Policy = DEFAULT_POLICY) -> None:
        self.connection = connection
        self.policy = policy

    async def _cases(self, statement: Any, parameters: dict[str, Any] | None = None) -> list[Case]:
        result = await self.connection.execute(statement, parameters)
        return [case_of(row) for row in result.mappings()]

    async def get(self, case_id: str | uuid.UUID, *, lock: bool = True) -> Case:
        statement = select(case_table).where(case_table.c.case_id == uuid.UUID(str(case_id)))
        found = await self._cases(statement.with_for_update() if lock else statement)
        if not found:
            raise CaseNotFound(f"no case {case_id}")
        return found[0]

    async def open_case_of(self, youth_id: str, *, lock: bool = True) -> Case | None:
        statement = select(case_table).where(
            case_table.c.youth_id == youth_id, case_table.c.status != CaseStatus.CLOSED.value
        )
        found = await self._cases(statement.with_for_update() if lock else statement)
        return found[0] if found else None

    async def open_cases_of(self, youth_ids: Sequence[str]) -> list[Case]:
        if not youth_ids:
            return []
        return await self._cases(_OPEN_CASES_OF, {"youth_ids": list(youth_ids)})

    async def latest_cases(self, youth_ids: Sequence[str]) -> dict[str, LatestCase]:
        if not youth_ids:
            return {}
        result = await self.connection.execute(_LATEST_CASES, {"youth_ids": list(youth_ids)})
        return {row["youth_id"]: _latest(row) for row in result.mappings()}

    async def insert_new(self, cases: Sequence[Case]) -> set[str]:
        if not cases:
            return set()
        inserted = await self.connection.execute(_INSERT_CASES, _arrays(cases, self.policy))
        return {str(case_id) for case_id in inserted.scalars()}

    async def open_new(self, cases: Sequence[Case]) -> tuple[set[str], dict[str, LatestCase]]:
        if not cases:
            return set(), {}
        opened_at = cases[0].opened_at
        if not all(is_fresh(c) and c.opened_at == opened_at for c in cases):
            raise ValueError("open_new takes cases just opened, all at the same time")
        parameters: dict[str, Any] = {
            name: [getattr(case, name) for case in cases] for name, _ in _NEW_COLUMNS
        }
        parameters.update(opened_at=opened_at, status=CaseStatus.TO_CONTACT.value, history=_EMPTY_HISTORY)
        inserted: set[str] = set()
        known: dict[str, LatestCase] = {}
        for row in (await self.connection.execute(_OPEN_NEW, parameters)).mappings():
            if row["inserted"]:
                inserted.add(row["case_id"])
            else:
                known[row["youth_id"]] = _latest(row)
        return inserted, known

    async def save_many(self, cases: Sequence[Case]) -> None:
        if cases:
            await self.connection.execute(_SAVE_CASES, _arrays(cases, self.policy))

    async def touch_reported(self, case_id: str, on: date) -> None:
        c = case_table.c
        await self.connection.execute(
            update(case_table)
            .where(c.case_id == uuid.UUID(case_id))
            .values(last_reported_on=func.greatest(func.coalesce(c.last_reported_on, on), on))
        )

    async def due_for_timers(self, today: date, now: datetime, limit: int = 500) -> list[Case]:
        c = case_table.c
        statement = (
            select(case_table)
            .where(
                and_(
                    c.status == CaseStatus.CONTACT_IN_PROGRESS.value,
                    c.failed_attempts >= self.policy.max_attempts,
                    c.first_attempt_at <= now - timedelta(days=self.policy.unreachable_after_days),
                    # not waiting for a transfer (`Case.transfer_needed`: the last attempt learnt
                    # that the youth moved), which the timer leaves alone: never updated, such
                    # cases would stay the oldest and fill every batch before the due ones
                    c.history["attempts"][-1]["outcome"].astext.is_distinct_from(ContactOutcome.MOVED.value),
                )
                | and_(
                    c.escalation_due_on <= today,
                    c.escalation_raised_on.is_(None),
                    c.status.not_in([CaseStatus.IN_SOLUTION.value, CaseStatus.CLOSED.value]),
                    c.age_at_opening < 18,
                    # still a minor (the age the case can tell: at opening plus whole years)
                    c.opened_at + func.make_interval(18 - c.age_at_opening) > now,
                )
            )
            .order_by(c.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self._cases(statement)

    async def read_in_one_snapshot(self) -> None:
        # Allowed as the transaction's first statement: the unit of work's BEGIN has run no query.
        await self.connection.execute(_SNAPSHOT)

    def _in_territory(self, filters: CaseFilter) -> Select:
        c = case_table.c
        statement = select(case_table).where(c.departement == filters.departement)
        if filters.status:
            statement = statement.where(c.status == filters.status)
        if filters.psad_id:
            statement = statement.where(c.psad_id == filters.psad_id)
        if filters.owner:
            statement = statement.where(c.owner == filters.owner)
        if filters.deadline == "overdue":
            statement = statement.where(c.interview_deadline < filters.today)
        elif filters.deadline == "due":  # due soon or overdue: every case whose interview clock runs
            statement = statement.where(c.interview_deadline.is_not(None))
        return statement

    async def open_cases_in(self, filters: CaseFilter) -> list[Case]:
        return await self._cases(
            self._in_territory(filters).where(case_table.c.status != CaseStatus.CLOSED.value)
        )

    def _closed_in(self, filters: CaseFilter) -> Select:
        return self._in_territory(filters).where(case_table.c.status == CaseStatus.CLOSED.value)

    async def count_closed_in(self, filters: CaseFilter) -> int:
        counted = select(func.count()).select_from(self._closed_in(filters).subquery())
        return (await self.connection.execute(counted)).scalar_one()

    async def closed_cases_in(self, filters: CaseFilter, offset: int, limit: int) -> list[Case]:
        c = case_table.c
        return await self._cases(
            self._closed_in(filters).order_by(c.status_since, c.case_id).offset(offset).limit(limit)
        )

    async def counts_by_status(self, departement: str | None) -> list[tuple[str, str, int]]:
        c = case_table.c
        statement = select(c.departement, c.status, func.count()).group_by(c.departement, c.status)
        if departement:
            statement = statement.where(c.departement == departement)
        return [(dep, status, count) for dep, status, count in await self.connection.execute(statement)]

    async def interview_overdue_counts(self, departement: str | None, today: date) -> dict[str, int]:
        c = case_table.c
        statement = (
            select(c.departement, func.count())
            .where(c.status != CaseStatus.CLOSED.value, c.interview_deadline < today)
            .group_by(c.departement)
        )
        if departement:
            statement = statement.where(c.departement == departement)
        return {dep: count for dep, count in await self.connection.execute(statement)}
