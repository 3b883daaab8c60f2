"""Cases in PostgreSQL: load a case (locked for the transaction), save it, find them.

The aggregate is one row: the columns that lists filter on, and the history (attempts,
interviews, solutions) as JSON. Saving bumps `version`; a case is loaded `FOR UPDATE`, so two
commands on the same case queue instead of overwriting each other.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from raccrochage_contracts import CloudEvent
from raccrochage_platform.db import array_literal, driver_connection
from raccrochage_platform.outbox import LEASES, Leases, OutboxWriter
from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

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
    "transferred_to",
    "escalation_raised_on",
)


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
    row = {name: getattr(case, name) for name in _SCALARS}
    row.update(
        case_id=uuid.UUID(case.case_id),
        status=case.status.value,
        close_reason=case.close_reason.value if case.close_reason else None,
        history=history_of(case),
        first_attempt_at=case.first_attempt_at,
        failed_attempts=case.failed_attempts,
        interview_deadline=case._interview_still_owed(policy),
        escalation_due_on=case.escalation_due_on(policy),
    )
    return row


def case_of(row: Any) -> Case:
    """Rebuild a stored case; it records no event (only new commands do)."""
    values = row._mapping if hasattr(row, "_mapping") else row
    history = values["history"] or {}
    if isinstance(history, str):  # read as text by the asyncpg statements below
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


# Fixed statements (compiled once, prepared once per connection) for the hot paths.
_WRITTEN = [column for column in case_table.columns if column.name not in ("version", "last_reported_on")]
_PG = postgresql.dialect()


def _cast(column: Any, array: bool) -> str:
    if column.name == "history":  # JSON text in, jsonb stored
        return (
            "CAST(CAST(:history AS text[]) AS jsonb[])" if array else "CAST(CAST(:history AS text) AS jsonb)"
        )
    kind = column.type.compile(dialect=_PG)
    return f"CAST(:{column.name} AS {kind}[])" if array else f"CAST(:{column.name} AS {kind})"


_INSERT_CASES = text(
    f"INSERT INTO case_file ({', '.join(c.name for c in _WRITTEN)}) "
    f"SELECT * FROM unnest({', '.join(_cast(c, True) for c in _WRITTEN)}) "
    "ON CONFLICT (youth_id) WHERE status <> 'closed' DO NOTHING RETURNING case_id"
)
# Loading and saving batches of cases (partners' enrolments close cases all day long) on the
# session's asyncpg connection: prepared once per connection, no SQLAlchemy compile or result
# proxy per batch. The load probes the youth index once per youth (see _OPEN_NEW_SQL) and reads
# the history as text (the codec SQLAlchemy installs on its connections is not relied upon).
_OPEN_CASES_SELECT = f"""
    SELECT {", ".join("c." + c.name for c in case_table.columns if c.name != "history")}, c.history::text AS history
    FROM unnest($1::text[]) AS y(youth_id) JOIN case_file c ON c.youth_id = y.youth_id
    WHERE c.status <> 'closed'
"""
_OPEN_CASES_OF_SQL = _OPEN_CASES_SELECT + "FOR UPDATE OF c"
_SAVED = [c for c in _WRITTEN if c.name != "case_id"]


def _save_many_sql(first: int = 1, checked: bool = False) -> str:
    """One UPDATE from arrays ($first: case ids, then the _SAVED columns). `checked`: one more
    array, the version each case was read at; a case saved since is not updated."""
    arrays = [f"${first}::uuid[]"] + [
        f"${n}::{'text' if c.name == 'history' else c.type.compile(dialect=_PG)}[]"
        for n, c in enumerate(_SAVED, start=first + 1)
    ]
    names = ["case_id"] + [c.name for c in _SAVED]
    if checked:
        arrays.append(f"${first + len(_SAVED) + 1}::int[]")
        names.append("version")
    return (
        "UPDATE case_file c SET "
        + ", ".join(f"{c.name} = u.{c.name}" + ("::jsonb" if c.name == "history" else "") for c in _SAVED)
        + f", version = c.version + 1 FROM unnest({', '.join(arrays)}) AS u({', '.join(names)}) "
        + "WHERE c.case_id = u.case_id"
        + (" AND c.version = u.version" if checked else "")
    )


_SAVE_MANY_SQL = _save_many_sql()


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows to one array per column, for the unnest insert."""
    return {
        c.name: [json.dumps(row[c.name]) if c.name == "history" else row[c.name] for row in rows]
        for c in _WRITTEN
    }


# Opening a batch of brand-new cases (the hand-over of a campaign: thousands at once), on the
# session's asyncpg connection inside its transaction. One statement looks up the youths' cases
# and inserts the ones to open: a youth with an open case, or with a closed case of the same PSAD
# (to reopen, see handover), gets no new row; the partial unique index still stops a youth whose
# case another process opened meanwhile. Only the columns a new case fills are sent (nine
# arrays); the derived ones are what `row_of` gives a case without history.
_NEW_COLUMNS = (
    "case_id",
    "youth_id",
    "psad_id",
    "departement",
    "zap",
    "age_at_opening",
    "level",
    "last_diploma",
    "months_since_leaving",
)
_OPEN_NEW_SQL = f"""
WITH input AS (
    -- case ids, youth ids, PSADs, départements and ages as array literals (db.array_literal);
    -- ZAP, level and last diploma are free text, months may be unknown: arrays
    SELECT * FROM unnest($1::text::uuid[], $2::text::text[], $3::text::text[], $4::text::text[], $5::text[],
                         $6::text::int[], $7::text[], $8::text[], $9::int[]) AS i({", ".join(_NEW_COLUMNS)})
), known AS (
    -- one index probe per youth (a generic plan of `youth_id = ANY($2)` scanned the table)
    SELECT c.case_id, c.youth_id, c.psad_id, c.status, c.transferred_to
    FROM input i CROSS JOIN LATERAL (
        SELECT * FROM case_file c WHERE c.youth_id = i.youth_id
        ORDER BY (c.status <> 'closed') DESC, c.updated_at DESC LIMIT 1
    ) c
), inserted AS (
    INSERT INTO case_file ({", ".join(_NEW_COLUMNS)}, opened_at, status, status_since, updated_at, episode, history,
                           failed_attempts)
    SELECT {", ".join("i." + c for c in _NEW_COLUMNS)}, $10::timestamptz, $11::text, $10::timestamptz,
           $10::timestamptz, 1, CAST($12::text AS jsonb), 0
    FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.youth_id = i.youth_id
                      AND (k.status <> 'closed' OR (k.psad_id = i.psad_id AND k.transferred_to IS NULL)))
    ON CONFLICT (youth_id) WHERE status <> 'closed' DO NOTHING
    RETURNING case_id
)
SELECT true AS inserted, case_id::text, NULL::text AS youth_id, NULL::text AS psad_id, NULL::text AS status,
       NULL::text AS transferred_to FROM inserted
UNION ALL
SELECT false, case_id::text, youth_id, psad_id, status, transferred_to FROM known
"""


# The one-statement path for partners' enrolments (`handover.found_in_one_statement`): the open
# cases read without a lock, with their versions; then, in one statement outside any
# transaction, the inbox rows, the cases saved if still at the version read, and their events,
# guarded: unless every event was new to the inbox and every case saved, the outbox rows fail
# their NOT NULL type and nothing of it is written.
_CLAIM_AND_SAVE = f"""
    claimed AS (
        INSERT INTO inbox (consumer, event_id, event_type)
        SELECT $1::text, e.id, e.kind FROM unnest($2::uuid[], $3::text[]) AS e(id, kind)
        ON CONFLICT (consumer, event_id) DO NOTHING RETURNING 1
    ), saved AS (
        {_save_many_sql(4, checked=True)} RETURNING 1
    )
"""
_ALL_CLAIMED_AND_SAVED = (
    "((SELECT count(*) FROM claimed) = cardinality($2::uuid[]) "
    "AND (SELECT count(*) FROM saved) = cardinality($4::uuid[]))"
)


async def open_cases_unlocked(conn: asyncpg.Connection, youth_ids: list[str]) -> list[tuple[Case, int]]:
    """The open cases of these youths and the version each was read at, outside any transaction."""
    return [(case_of(row), row["version"]) for row in await conn.fetch(_OPEN_CASES_SELECT, youth_ids)]


async def save_in_one_statement(
    conn: asyncpg.Connection,
    outbox: OutboxWriter,
    consumer: str,
    claims: list[tuple[uuid.UUID, str]],
    read: list[tuple[Case, int]],
    events: list[CloudEvent],
    leases: Leases,
    policy: Policy = DEFAULT_POLICY,
) -> bool:
    """Claim `claims` (event id, type) in `consumer`'s inbox, save the cases `read` (each at the
    version it was read at) and add `events` leased, in one statement that commits on its own;
    False, with nothing written, if an event was not new or a case was saved meanwhile."""
    if not events or leases is None:
        raise ValueError("save_in_one_statement: events to guard and leases to hold them are needed")
    cases = [case for case, _ in read]
    arguments = [
        consumer,
        [c[0] for c in claims],
        [c[1] for c in claims],
        *_save_arguments(cases, policy),
        [version for _, version in read],
    ]
    try:
        await outbox.add_many_raw(
            conn, events, leases, along=(_CLAIM_AND_SAVE, arguments), guard=_ALL_CLAIMED_AND_SAVED
        )
    except (asyncpg.NotNullViolationError, asyncpg.UniqueViolationError):  # the statement wrote nothing
        return False
    return True


def _save_arguments(cases: list[Case], policy: Policy) -> list[list[Any]]:
    rows = [row_of(case, policy) for case in cases]
    return [
        [row["case_id"] for row in rows],
        *(
            [json.dumps(row["history"]) for row in rows]
            if c.name == "history"
            else [row[c.name] for row in rows]
            for c in _SAVED
        ),
    ]


def _is_fresh(case: Case) -> bool:
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
        and case.transferred_to is None
        and case.escalation_raised_on is None
        and case.status_since == case.opened_at
        and case.updated_at == case.opened_at
    )


_EMPTY_HISTORY = json.dumps({"attempts": [], "interviews": [], "solutions": []})


class CaseNotFound(LookupError):
    pass


class CaseRepository:
    """Within one transaction (the session's)."""

    def __init__(self, session: AsyncSession, policy: Policy = DEFAULT_POLICY):
        self.session = session
        self.policy = policy

    async def get(self, case_id: str | uuid.UUID, *, lock: bool = True) -> Case:
        statement = select(case_table).where(case_table.c.case_id == uuid.UUID(str(case_id)))
        row = (await self.session.execute(statement.with_for_update() if lock else statement)).first()
        if row is None:
            raise CaseNotFound(f"no case {case_id}")
        return case_of(row)

    async def open_case_of(self, youth_id: str, *, lock: bool = True) -> Case | None:
        statement = select(case_table).where(
            case_table.c.youth_id == youth_id, case_table.c.status != "closed"
        )
        row = (await self.session.execute(statement.with_for_update() if lock else statement)).first()
        return case_of(row) if row else None

    async def latest_cases(self, youth_ids: list[str]) -> dict[str, Any]:
        """Per youth, its open case if any, else its latest closed one (rows, not aggregates)."""
        if not youth_ids:
            return {}
        statement = (
            select(
                case_table.c.case_id,
                case_table.c.youth_id,
                case_table.c.psad_id,
                case_table.c.status,
                case_table.c.transferred_to,
            )
            .where(case_table.c.youth_id.in_(youth_ids))
            .order_by(
                case_table.c.youth_id,
                (case_table.c.status != "closed").desc(),
                case_table.c.updated_at.desc(),
            )
            .distinct(case_table.c.youth_id)
        )
        return {row.youth_id: row for row in await self.session.execute(statement)}

    async def insert_new(self, cases: list[Case]) -> set[str]:
        """Insert new open cases; a youth who already has an open case (another process won) is
        skipped. Returns the case ids inserted."""
        if not cases:
            return set()
        inserted = await self.session.execute(
            _INSERT_CASES, _columns([row_of(c, self.policy) for c in cases])
        )
        return {str(case_id) for case_id in inserted.scalars()}

    async def open_new(self, cases: list[Case]) -> tuple[set[str], dict[str, Any]]:
        """Insert cases just opened (`Case.open`, one per youth, all opened at the same time),
        except for youths who already have a case; returns (case ids inserted, the latest case of
        each youth who had one: open if any, else the latest closed one, as `latest_cases`)."""
        if not cases:
            return set(), {}
        opened_at = cases[0].opened_at
        if not all(_is_fresh(c) and c.opened_at == opened_at for c in cases):
            raise ValueError("open_new takes cases just opened, all at the same time")
        conn = await driver_connection(self.session)
        rows = await conn.fetch(
            _OPEN_NEW_SQL,
            array_literal([c.case_id for c in cases]),
            array_literal([c.youth_id for c in cases]),
            array_literal([c.psad_id for c in cases]),
            array_literal([c.departement for c in cases]),
            [c.zap for c in cases],
            array_literal([c.age_at_opening for c in cases]),
            [c.level for c in cases],
            [c.last_diploma for c in cases],
            [c.months_since_leaving for c in cases],
            opened_at,
            CaseStatus.TO_CONTACT.value,
            _EMPTY_HISTORY,
        )
        inserted = {row[1] for row in rows if row[0]}
        known = {row[2]: row for row in rows if not row[0]}
        return inserted, known

    async def add_json(
        self,
        outbox: OutboxWriter,
        event_type: str,
        events: list[tuple[str, str, bytes]],
        *,
        new_cases: bool = False,
    ) -> None:
        """Envelopes of one type already written as JSON: (event id, case id, JSON), into the
        outbox of this transaction, leased as in `add_envelopes`. An event already there (same
        id: a re-run) is skipped, unless `new_cases` says that this transaction inserted every
        case named (`open_new`): none of their events can be there yet, and the insert need not
        look (`OutboxWriter.add_json_raw`)."""
        await outbox.add_json_raw(
            await driver_connection(self.session),
            event_type,
            events,
            self.session.info.get(LEASES),
            new_aggregates=new_cases,
        )

    async def add_envelopes(self, outbox: OutboxWriter, events: list[CloudEvent]) -> None:
        """Events built by `outbox`, into the outbox of this transaction (one statement); leased
        to the consumer that runs this transaction, when it publishes its own (`Leases`)."""
        await outbox.add_many_raw(
            await driver_connection(self.session), events, self.session.info.get(LEASES)
        )

    async def open_cases_of(self, youth_ids: list[str]) -> list[Case]:
        """The open cases of these youths, locked for the transaction."""
        if not youth_ids:
            return []
        conn = await driver_connection(self.session)
        return [case_of(row) for row in await conn.fetch(_OPEN_CASES_OF_SQL, youth_ids)]

    async def save(self, case: Case) -> None:
        await self.save_many([case])

    async def save_many(self, cases: list[Case]) -> None:
        """Write loaded cases back: one UPDATE from arrays, whatever their number."""
        if cases:
            conn = await driver_connection(self.session)
            await conn.execute(_SAVE_MANY_SQL, *_save_arguments(cases, self.policy))

    async def save_many_with_events(
        self, outbox: OutboxWriter, cases: list[Case], events: list[CloudEvent]
    ) -> None:
        """`save_many` and `add_envelopes` in one statement (one round trip to PostgreSQL)."""
        if not cases:
            await self.add_envelopes(outbox, events)
            return
        await outbox.add_many_raw(
            await driver_connection(self.session),
            events,
            self.session.info.get(LEASES),
            along=(_SAVE_MANY_SQL, _save_arguments(cases, self.policy)),
        )

    async def touch_reported(self, case_id: str, on: date) -> None:
        await self.session.execute(
            update(case_table)
            .where(case_table.c.case_id == uuid.UUID(case_id))
            .values(last_reported_on=func.greatest(func.coalesce(case_table.c.last_reported_on, on), on))
        )

    async def due_for_timers(self, today: date, now: datetime, limit: int = 500) -> list[Case]:
        """Cases a timer may change: possibly unreachable, or a minor's escalation due. Locked with
        SKIP LOCKED so that two processes share the work."""
        c = case_table.c
        statement = (
            select(case_table)
            .where(
                and_(
                    c.status == "contact_in_progress",
                    c.failed_attempts >= self.policy.max_attempts,
                    c.first_attempt_at <= now - timedelta(days=self.policy.unreachable_after_days),
                    # not waiting for a transfer (`Case.transfer_needed`: the last attempt learnt
                    # that the youth moved), which the timer leaves alone: never updated, such
                    # cases would stay the oldest and fill every batch before the due ones
                    c.history["attempts"][-1]["outcome"].astext.is_distinct_from("moved"),
                )
                | and_(
                    c.escalation_due_on <= today,
                    c.escalation_raised_on.is_(None),
                    c.status.not_in(["in_solution", "closed"]),
                    c.age_at_opening < 18,
                    # still a minor (the age the case can tell: at opening plus whole years)
                    c.opened_at + func.make_interval(18 - c.age_at_opening) > now,
                )
            )
            .order_by(c.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [case_of(row) for row in await self.session.execute(statement)]
