"""Sites and candidacies in PostgreSQL: SQLAlchemy Core on the unit of work's AsyncConnection.

Places are counted by the database: taking one is a single conditional UPDATE that succeeds only
while `places_taken < capacity` (and a CHECK says the same), so concurrent admissions on any
number of replicas never exceed a site's capacity, and none of them waits on a Python lock or
relies on a constraint error.
"""

from __future__ import annotations

import operator
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic_core import to_json
from sqlalchemy import RowMapping, func, literal, or_, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.admission import Role, StepOutcome, StepRecord
from ..domain.candidacy import (
    Admission,
    Candidacy,
    Channel,
    Enrolment,
    Exit,
    Pafi,
    PsadRequest,
    Refusal,
    Withdrawal,
)
from ..domain.catalogue import CapacityError, Dispositif, DispositifKind
from ..domain.dates import Dated, SchoolYear
from ..domain.eligibility import Decision, Right, RuleResult, Verdict
from ..domain.facts import Fact, Facts, FrenchLevel, SchoolLevel
from ..domain.states import (
    CandidacyStatus,
    DiplomaObtained,
    ExitDestination,
    RefusalReason,
    WithdrawalReason,
)
from ..service_layer.unit_of_work import (
    CandidacyNotFound,
    CandidacyRepository,
    DispositifNotFound,
    DispositifRepository,
)
from .tables import candidacy as candidacy_table
from .tables import dispositif as dispositif_table

D = dispositif_table.c


def site_of(values: RowMapping) -> Dispositif:
    return Dispositif(
        values["dispositif_id"],
        DispositifKind(values["kind"]),
        values["departement"],
        values["host_establishment"],
        values["address"],
        values["postcode"],
        values["city"],
        values["phone"],
        capacity=values["capacity"],
        places_taken=values["places_taken"],
        host_uai=values["host_uai"],
        revision=values["revision"],
        updated_at=values["updated_at"],
    )


class SqlDispositifRepository(DispositifRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, dispositif: Dispositif) -> bool:
        statement = (
            insert(dispositif_table)
            .values(
                dispositif_id=dispositif.dispositif_id,
                kind=dispositif.kind.value,
                departement=dispositif.departement,
                host_establishment=dispositif.host_establishment,
                address=dispositif.address,
                postcode=dispositif.postcode,
                city=dispositif.city,
                phone=dispositif.phone,
                host_uai=dispositif.host_uai,
                capacity=dispositif.capacity,
                places_taken=dispositif.places_taken,
                revision=dispositif.revision,
                updated_at=dispositif.updated_at,
            )
            .on_conflict_do_nothing(index_elements=[D.dispositif_id])
            .returning(D.dispositif_id)
        )
        return (await self.connection.execute(statement)).first() is not None

    async def get(self, dispositif_id: str) -> Dispositif:
        query = select(dispositif_table).where(D.dispositif_id == dispositif_id)
        row = (await self.connection.execute(query)).mappings().first()
        if row is None:
            raise DispositifNotFound(dispositif_id)
        return site_of(row)

    async def find(
        self, *, kind: DispositifKind | None = None, departement: str | None = None
    ) -> list[Dispositif]:
        query = select(dispositif_table).order_by(D.dispositif_id)
        if kind is not None:
            query = query.where(D.kind == kind.value)
        if departement is not None:
            query = query.where(D.departement == departement)
        return [site_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def take_place(self, dispositif_id: str, now: datetime) -> Dispositif | None:
        site = await self._change(
            dispositif_id, now, D.places_taken < D.capacity, places_taken=D.places_taken + 1
        )
        if site is None:
            await self.get(dispositif_id)  # DispositifNotFound when it does not exist: else full
        return site

    async def release_place(self, dispositif_id: str, now: datetime) -> Dispositif:
        site = await self._change(dispositif_id, now, D.places_taken > 0, places_taken=D.places_taken - 1)
        if site is None:
            await self.get(dispositif_id)
            raise CapacityError(f"{dispositif_id}: no place is taken")
        return site

    async def set_capacity(self, dispositif_id: str, capacity: int, now: datetime) -> Dispositif | None:
        site = await self._change(dispositif_id, now, D.places_taken <= capacity, capacity=capacity)
        if site is None:
            await self.get(dispositif_id)
        return site

    async def _change(self, dispositif_id: str, now: datetime, condition, **values) -> Dispositif | None:
        """One conditional UPDATE: the change is made, with a new revision, if `condition` holds
        on the row as it is when the statement runs (after any concurrent one committed)."""
        statement = (
            update(dispositif_table)
            .where(D.dispositif_id == dispositif_id, condition)
            .values(**values, revision=D.revision + 1, updated_at=func.greatest(D.updated_at, literal(now)))
            .returning(*dispositif_table.c)
        )
        row = (await self.connection.execute(statement)).mappings().first()
        return site_of(row) if row is not None else None


# --- candidacies ---------------------------------------------------------------------------------

C = candidacy_table.c
_PG = postgresql.dialect()


def _array_of(column) -> str:
    """`column`'s array parameter, cast to its type (JSON goes as text)."""
    kind = "text" if column.name in _JSON_COLUMNS else column.type.compile(dialect=_PG)
    return f"CAST(:{column.name} AS {kind}[])"


class ConcurrentUpdate(RuntimeError):
    """A candidacy changed under a save: it was saved without being got in this transaction."""


# New candidacies in one statement, its text the same for any number of rows (one array per
# column), so that it is compiled once: a multi-row VALUES was compiled again for every batch.
# A candidacy answering a request that has one already (the partial unique index) is skipped.
_JSON_COLUMNS = frozenset({"facts", "history"})
_WRITTEN = [column for column in candidacy_table.columns if column.name != "version"]
_WRITTEN_NAMES = [column.name for column in _WRITTEN]
_WRITTEN_VALUES = operator.itemgetter(*_WRITTEN_NAMES)
_INSERT_MANY = text(
    f"INSERT INTO candidacy ({', '.join(c.name for c in _WRITTEN)}, version) "
    f"SELECT {', '.join(f'CAST(u.{c.name} AS jsonb)' if c.name in _JSON_COLUMNS else 'u.' + c.name for c in _WRITTEN)}, 1 "
    f"FROM unnest({', '.join(_array_of(c) for c in _WRITTEN)}) AS u({', '.join(c.name for c in _WRITTEN)}) "
    "ON CONFLICT DO NOTHING RETURNING candidacy_id"
)


class SqlCandidacyRepository(CandidacyRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, candidacy: Candidacy) -> bool:
        return candidacy.candidacy_id in await self.add_many([candidacy])

    async def add_many(self, candidacies: list[Candidacy]) -> set[uuid.UUID]:
        if not candidacies:
            return set()
        # One tuple per row in the columns' order, turned into one array per column.
        columns = zip(*map(_WRITTEN_VALUES, map(row_of, candidacies)), strict=True)
        # pydantic-core's JSON encoder: a quarter of json.dumps's time on a decided candidacy's
        # history, the largest value of a PSAD batch's rows
        arrays = {
            name: [to_json(value).decode() for value in values] if name in _JSON_COLUMNS else list(values)
            for name, values in zip(_WRITTEN_NAMES, columns, strict=True)
        }
        added = set((await self.connection.execute(_INSERT_MANY, arrays)).scalars())
        for candidacy in candidacies:
            if candidacy.candidacy_id in added:
                candidacy.version = 1
        return added

    async def for_requests(self, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        if not request_ids:
            return {}
        query = select(C.request_id, C.candidacy_id).where(C.request_id.in_(request_ids))
        return {row.request_id: row.candidacy_id for row in await self.connection.execute(query)}

    async def get(self, candidacy_id: uuid.UUID) -> Candidacy:
        query = select(candidacy_table).where(C.candidacy_id == candidacy_id).with_for_update()
        row = (await self.connection.execute(query)).mappings().first()
        if row is None:
            raise CandidacyNotFound(candidacy_id)
        return candidacy_of(row)

    async def for_request(self, request_id: uuid.UUID) -> Candidacy | None:
        query = select(candidacy_table).where(C.request_id == request_id).with_for_update()
        row = (await self.connection.execute(query)).mappings().first()
        return candidacy_of(row) if row is not None else None

    async def holding_place_of(self, youth_id: str) -> list[Candidacy]:
        holding = (CandidacyStatus.ADMITTED.value, CandidacyStatus.ENROLLED.value)
        query = (
            select(candidacy_table)
            .where(C.youth_id == youth_id, C.status.in_(holding))
            .order_by(C.received_at, C.candidacy_id)
            .with_for_update()
        )
        return [candidacy_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def save(self, candidacy: Candidacy) -> None:
        row = row_of(candidacy)
        del row["candidacy_id"]
        row["version"] = candidacy.version + 1
        statement = (
            update(candidacy_table)
            .where(C.candidacy_id == candidacy.candidacy_id, C.version == candidacy.version)
            .values(**row)
            .returning(C.version)
        )
        if (await self.connection.execute(statement)).first() is None:
            raise ConcurrentUpdate(
                f"candidacy {candidacy.candidacy_id} changed since version {candidacy.version}"
            )
        candidacy.version += 1

    async def find(
        self,
        *,
        territory: str,
        dispositif_id: str | None = None,
        status: CandidacyStatus | None = None,
        kind: DispositifKind | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[Candidacy]]:
        sites_here = select(D.dispositif_id).where(D.departement == territory)
        conditions = [or_(C.departement == territory, C.dispositif_id.in_(sites_here))]
        if dispositif_id is not None:
            conditions.append(C.dispositif_id == dispositif_id)
        if status is not None:
            conditions.append(C.status == status.value)
        if kind is not None:
            conditions.append(C.kind == kind.value)
        total = (
            await self.connection.execute(
                select(func.count()).select_from(candidacy_table).where(*conditions)
            )
        ).scalar_one()
        query = (
            select(candidacy_table)
            .where(*conditions)
            .order_by(C.received_at.desc(), C.candidacy_id)
            .limit(limit)
            .offset(offset)
        )
        rows = (await self.connection.execute(query)).mappings()
        return total, [candidacy_of(row) for row in rows]


def row_of(candidacy: Candidacy) -> dict[str, Any]:
    request = candidacy.request
    return {
        "candidacy_id": candidacy.candidacy_id,
        "youth_id": candidacy.youth_id,
        "kind": candidacy.kind.value,
        "departement": candidacy.departement,
        "channel": candidacy.channel.value,
        "received_at": candidacy.received_at,
        "entry_year": candidacy.entry_year.first,
        "dispositif_id": candidacy.dispositif_id,
        "request_id": request.request_id if request else None,
        "case_id": request.case_id if request else None,
        "psad_id": request.psad_id if request else None,
        "correlation_id": request.correlation_id if request else None,
        "status": candidacy.status.value,
        "updated_at": candidacy.updated_at,
        "answered": candidacy.answered,
        "facts": facts_json(candidacy.facts),
        "history": history_json(candidacy),
    }


def candidacy_of(values: RowMapping) -> Candidacy:
    """Rebuild a stored candidacy; it records no event (only new commands do)."""
    history = values["history"]
    request = None
    if values["request_id"] is not None:
        request = PsadRequest(
            values["request_id"], values["case_id"], values["psad_id"], values["correlation_id"]
        )
    return Candidacy(
        values["candidacy_id"],
        values["youth_id"],
        DispositifKind(values["kind"]),
        values["departement"],
        Channel(values["channel"]),
        values["received_at"],
        facts_from_json(values["facts"]),
        SchoolYear(values["entry_year"]),
        dispositif_id=values["dispositif_id"],
        request=request,
        status=CandidacyStatus(values["status"]),
        updated_at=values["updated_at"],
        decisions=[_decision(d) for d in history["decisions"]],
        steps=[_step(s) for s in history["steps"]],
        admission=_maybe(history.get("admission"), _admission),
        enrolment=_maybe(history.get("enrolment"), _enrolment),
        exit=_maybe(history.get("exit"), _exit),
        refusal=_maybe(history.get("refusal"), _refusal),
        withdrawal=_maybe(history.get("withdrawal"), _withdrawal),
        pafi=_maybe(history.get("pafi"), _pafi),
        answered=values["answered"],
        version=values["version"],
    )


# --- JSON of the aggregate's parts -----------------------------------------------------------------

_DATED = (Fact.AGE, Fact.MONTHS_OUT_OF_SCHOOL, Fact.MONTHS_IN_FRANCE)
_ENUMS = {Fact.LEVEL_REACHED: SchoolLevel, Fact.FRENCH_LEVEL: FrenchLevel}


# Every fact's name, read once: an enum member's `.value` is a slow property, and each decision
# writes every fact.
_FACT_NAMES = tuple(fact.value for fact in Fact)


def facts_json(facts: Facts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FACT_NAMES:
        value = getattr(facts, name)
        if value is None:
            continue
        if isinstance(value, Dated):
            out[name] = {"value": value.value, "on": value.on.isoformat()}
        elif isinstance(value, StrEnum):
            out[name] = str(value)
        else:
            out[name] = value
    return out


def facts_from_json(data: dict[str, Any]) -> Facts:
    values: dict[str, Any] = {}
    for name, value in data.items():
        fact = Fact(name)
        if fact in _DATED:
            values[name] = Dated(value["value"], date.fromisoformat(value["on"]))
        elif fact in _ENUMS:
            values[name] = _ENUMS[fact](value)
        else:
            values[name] = value
    return Facts(**values)


def _iso(moment: date | datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe(value, read):
    return read(value) if value is not None else None


def history_json(candidacy: Candidacy) -> dict[str, Any]:
    admission, enrolment, exit_ = candidacy.admission, candidacy.enrolment, candidacy.exit
    refusal, withdrawal, pafi = candidacy.refusal, candidacy.withdrawal, candidacy.pafi
    return {
        "decisions": [
            {
                "number": d.number,
                "kind": d.kind.value,
                "decided_at": _iso(d.decided_at),
                "entry_year": d.entry_year.first,
                # str() of a StrEnum is its value, without the enum's slow `.value` property
                "results": [
                    {
                        "code": r.code,
                        "verdict": str(r.verdict),
                        "facts": [str(f) for f in r.facts],
                        "missing": [str(f) for f in r.missing],
                        "applies_from": r.applies_from.isoformat(),
                        "evidence": r.evidence,
                    }
                    for r in d.results
                ],
                "rights": [str(r) for r in d.rights],
                "under_obligation_de_formation": d.under_obligation_de_formation,
            }
            for d in candidacy.decisions
        ],
        "steps": [
            {
                "code": s.code,
                "outcome": s.outcome.value,
                "held_on": _iso(s.held_on),
                "decided_by": s.decided_by.value,
                "recorded_at": _iso(s.recorded_at),
            }
            for s in candidacy.steps
        ],
        "admission": admission
        and {
            "dispositif_id": admission.dispositif_id,
            "starts_on": _iso(admission.starts_on),
            "at": _iso(admission.at),
        },
        "enrolment": enrolment
        and {
            "started_on": _iso(enrolment.started_on),
            "age": enrolment.age,
            "under_obligation_de_formation": enrolment.under_obligation_de_formation,
            "at": _iso(enrolment.at),
        },
        "exit": exit_
        and {
            "destination": exit_.destination.value,
            "exited_on": _iso(exit_.exited_on),
            "at": _iso(exit_.at),
            "school_level": exit_.school_level.value if exit_.school_level else None,
            "droit_au_maintien": exit_.droit_au_maintien,
            "diploma_obtained": exit_.diploma_obtained.value if exit_.diploma_obtained else None,
        },
        "refusal": refusal
        and {
            "reason": refusal.reason.value,
            "at": _iso(refusal.at),
            "failed_rules": list(refusal.failed_rules),
            "failed_step": refusal.failed_step,
        },
        "withdrawal": withdrawal and {"reason": withdrawal.reason.value, "at": _iso(withdrawal.at)},
        "pafi": pafi and {"validated_on": _iso(pafi.validated_on), "at": _iso(pafi.at)},
    }


def _decision(data: dict[str, Any]) -> Decision:
    return Decision(
        data["number"],
        DispositifKind(data["kind"]),
        _moment(data["decided_at"]),
        SchoolYear(data["entry_year"]),
        tuple(
            RuleResult(
                r["code"],
                Verdict(r["verdict"]),
                tuple(Fact(f) for f in r["facts"]),
                tuple(Fact(f) for f in r["missing"]),
                date.fromisoformat(r["applies_from"]),
                r["evidence"],
            )
            for r in data["results"]
        ),
        tuple(Right(r) for r in data["rights"]),
        data["under_obligation_de_formation"],
    )


def _step(data: dict[str, Any]) -> StepRecord:
    return StepRecord(
        data["code"],
        StepOutcome(data["outcome"]),
        date.fromisoformat(data["held_on"]),
        Role(data["decided_by"]),
        _moment(data["recorded_at"]),
    )


def _admission(data: dict[str, Any]) -> Admission:
    return Admission(data["dispositif_id"], date.fromisoformat(data["starts_on"]), _moment(data["at"]))


def _enrolment(data: dict[str, Any]) -> Enrolment:
    return Enrolment(
        date.fromisoformat(data["started_on"]),
        data["age"],
        data["under_obligation_de_formation"],
        _moment(data["at"]),
    )


def _exit(data: dict[str, Any]) -> Exit:
    return Exit(
        ExitDestination(data["destination"]),
        date.fromisoformat(data["exited_on"]),
        _moment(data["at"]),
        SchoolLevel(data["school_level"]) if data["school_level"] else None,
        data["droit_au_maintien"],
        DiplomaObtained(data["diploma_obtained"]) if data["diploma_obtained"] else None,
    )


def _refusal(data: dict[str, Any]) -> Refusal:
    return Refusal(
        RefusalReason(data["reason"]), _moment(data["at"]), tuple(data["failed_rules"]), data["failed_step"]
    )


def _withdrawal(data: dict[str, Any]) -> Withdrawal:
    return Withdrawal(WithdrawalReason(data["reason"]), _moment(data["at"]))


def _pafi(data: dict[str, Any]) -> Pafi:
    return Pafi(date.fromisoformat(data["validated_on"]), _moment(data["at"]))
