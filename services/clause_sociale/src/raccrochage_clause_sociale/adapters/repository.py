"""Companies, clauses, missions, enrolments and bilans in PostgreSQL: SQLAlchemy Core on the unit
of work's AsyncConnection.

What several replicas could race for is decided by the database in one statement each: a mission
is reserved by an UPDATE that requires it to be still free (of tutors racing for it, exactly one
gets a row back), a company's proposal slot is taken by an UPDATE that requires it empty. Other
commands load their mission FOR UPDATE and save it at the version they read.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import RowMapping, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.bilan import Bilan, BilanSignatoryRole, BilanSignature, SkillAssessment, SkillLevel
from ..domain.clause import Buyer, BuyerType, Clause
from ..domain.convention import Convention, SignatoryRole, Signature
from ..domain.mission import ActivityDomain, Mission, MissionOutcome, Site
from ..domain.proposal import DeclineReason, Proposal, ProposalState, SchoolLevel, YouthProfile
from ..domain.states import MissionStatus
from ..service_layer.unit_of_work import (
    BilanDocumentRepository,
    ClauseNotFound,
    ClauseRepository,
    CompanyRepository,
    ConcurrentChange,
    Enrolment,
    EnrolmentRepository,
    MissionNotFound,
    MissionRepository,
)
from .tables import bilan_document as bilan_table
from .tables import clause as clause_table
from .tables import company as company_table
from .tables import enrolment as enrolment_table
from .tables import mission as mission_table

C = clause_table.c
M = mission_table.c
CO = company_table.c
PLACED = (
    MissionStatus.EN_PREPARATION.value,
    MissionStatus.EN_REALISATION.value,
    MissionStatus.REALISEE.value,
)


# --- companies ---------------------------------------------------------------------------------


class SqlCompanyRepository(CompanyRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def ensure(self, company_id: str) -> None:
        statement = insert(company_table).values(company_id=company_id).on_conflict_do_nothing()
        await self.connection.execute(statement)

    async def hold(self, company_id: str) -> None:
        await self.connection.execute(
            select(CO.company_id).where(CO.company_id == company_id).with_for_update()
        )

    async def take_proposal_slot(self, company_id: str, proposal_id: str) -> bool:
        statement = (
            update(company_table)
            .where(CO.company_id == company_id, CO.pending_proposal_id.is_(None))
            .values(pending_proposal_id=proposal_id)
            .returning(CO.company_id)
        )
        return (await self.connection.execute(statement)).first() is not None

    async def free_proposal_slot(self, company_id: str, proposal_id: str) -> None:
        statement = (
            update(company_table)
            .where(CO.company_id == company_id, CO.pending_proposal_id == proposal_id)
            .values(pending_proposal_id=None)
        )
        await self.connection.execute(statement)


# --- clauses -----------------------------------------------------------------------------------


def clause_row(clause: Clause) -> dict[str, Any]:
    return {
        "clause_id": clause.clause_id,
        "buyer_id": clause.buyer.buyer_id,
        "buyer_organisation": clause.buyer.organisation,
        "buyer_type": clause.buyer.buyer_type,
        "buyer_contact_role": clause.buyer.contact_role,
        "departement": clause.buyer.departement,
        "company_id": clause.company_id,
        "contract_object": clause.contract_object,
        "notification_date": clause.notification_date,
        "firm_period_ends_on": clause.firm_period_ends_on,
        "firm_amount_eur": clause.firm_amount_eur,
        "ends_on": clause.ends_on,
        "hours_required": clause.hours_required,
        "published_at": clause.published_at,
    }


def clause_of(row: RowMapping) -> Clause:
    buyer = Buyer(
        row["buyer_id"],
        row["buyer_organisation"],
        BuyerType(row["buyer_type"]),
        row["buyer_contact_role"],
        row["departement"],
    )
    return Clause(
        str(row["clause_id"]),
        buyer,
        row["company_id"],
        row["contract_object"],
        row["notification_date"],
        row["firm_period_ends_on"],
        row["firm_amount_eur"],
        row["ends_on"],
        row["hours_required"],
        row["published_at"],
    )


class SqlClauseRepository(ClauseRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, clause: Clause) -> bool:
        statement = (
            insert(clause_table).values(clause_row(clause)).on_conflict_do_nothing().returning(C.clause_id)
        )
        return (await self.connection.execute(statement)).first() is not None

    async def get(self, clause_id: str) -> Clause:
        row = (
            (await self.connection.execute(select(clause_table).where(C.clause_id == clause_id)))
            .mappings()
            .first()
        )
        if row is None:
            raise ClauseNotFound(clause_id)
        return clause_of(row)

    async def ending_between(self, first: date, last: date) -> list[Clause]:
        query = select(clause_table).where(C.ends_on.between(first, last)).order_by(C.ends_on, C.clause_id)
        return [clause_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def listed(
        self, *, buyer_id: str | None = None, company_id: str | None = None, departement: str | None = None
    ) -> list[Clause]:
        query = select(clause_table).order_by(C.ends_on, C.clause_id)
        for column, value in (
            (C.buyer_id, buyer_id),
            (C.company_id, company_id),
            (C.departement, departement),
        ):
            if value is not None:
                query = query.where(column == value)
        return [clause_of(row) for row in (await self.connection.execute(query)).mappings()]


# --- missions ----------------------------------------------------------------------------------


def _iso(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def history_of(mission: Mission) -> dict[str, Any]:
    convention, bilan = mission.convention, mission.bilan
    return {
        "proposals": [
            {
                "proposal_id": p.proposal_id,
                "youth_id": p.youth_id,
                "tutor_id": p.tutor_id,
                "profile": {
                    "age": p.profile.age,
                    "level": p.profile.level.value,
                    "wishes": list(p.profile.wishes),
                    "available_from": _iso(p.profile.available_from),
                    "hours_per_week": p.profile.hours_per_week,
                },
                "made_at": _iso(p.made_at),
                "state": p.state.value,
                "reminded_at": _iso(p.reminded_at),
                "answered_at": _iso(p.answered_at),
                "decline_reason": p.decline_reason.value if p.decline_reason else None,
            }
            for p in mission.proposals
        ],
        "convention": None
        if convention is None
        else {
            "convention_id": convention.convention_id,
            "youth_id": convention.youth_id,
            "starts_on": _iso(convention.starts_on),
            "ends_on": _iso(convention.ends_on),
            "mlds_structure_uai": convention.mlds_structure_uai,
            "company_tutor_id": convention.company_tutor_id,
            "youth_birth_date": _iso(convention.youth_birth_date),
            "parties": {role.value: ref for role, ref in convention.parties.items()},
            "drafted_at": _iso(convention.drafted_at),
            "signatures": [
                {"role": s.role.value, "signed_at": _iso(s.signed_at), "signed_by": s.signed_by}
                for s in convention.signatures
            ],
        },
        "attendance": [[_iso(week), hours] for week, hours in sorted(mission.attendance.items())],
        "outcome": mission.outcome.value if mission.outcome else None,
        "completed_at": _iso(mission.completed_at),
        "bilan": None
        if bilan is None
        else {
            "skills": [{"skill": s.skill, "level": s.level.value} for s in bilan.skills],
            "savoir_etre": bilan.savoir_etre,
            "savoir_faire": bilan.savoir_faire,
            "next_steps": bilan.next_steps,
            "written_at": _iso(bilan.written_at),
            "signatures": [{"role": s.role.value, "signed_at": _iso(s.signed_at)} for s in bilan.signatures],
            "delivered_at": _iso(bilan.delivered_at),
            "document_sha256": bilan.document_sha256,
        },
    }


def mission_row(mission: Mission) -> dict[str, Any]:
    pending = mission.pending_proposal
    return {
        "mission_id": mission.mission_id,
        "clause_id": mission.clause_id,
        "buyer_id": mission.buyer_id,
        "company_id": mission.company_id,
        "activity_domain": mission.activity_domain.value,
        "activity_comment": mission.activity_comment,
        "tasks": list(mission.tasks),
        "site_address": mission.site.address,
        "site_postcode": mission.site.postcode,
        "site_city": mission.site.city,
        "departement": mission.site.departement,
        "site_key": mission.site.key,
        "referent_id": mission.referent_id,
        "second_referent_id": mission.second_referent_id,
        "hours": mission.hours,
        "declared_at": mission.declared_at,
        "status": mission.status.value,
        "status_since": mission.status_since,
        "updated_at": mission.updated_at,
        "reserved_by": mission.reserved_by,
        "history": history_of(mission),
        "pending_proposal_made_at": pending.made_at if pending else None,
        "company_tutor_id": mission.convention.company_tutor_id if mission.convention else None,
        "hours_done": mission.hours_done,
    }


def mission_of(row: RowMapping) -> Mission:
    """Rebuild a stored mission; it records no event (only new commands do)."""
    history = row["history"] or {}
    proposals = [
        Proposal(
            p["proposal_id"],
            p["youth_id"],
            p["tutor_id"],
            YouthProfile(
                p["profile"]["age"],
                SchoolLevel(p["profile"]["level"]),
                tuple(p["profile"]["wishes"]),
                date.fromisoformat(p["profile"]["available_from"]),
                p["profile"]["hours_per_week"],
            ),
            _dt(p["made_at"]),
            ProposalState(p["state"]),
            _dt(p["reminded_at"]),
            _dt(p["answered_at"]),
            DeclineReason(p["decline_reason"]) if p["decline_reason"] else None,
        )
        for p in history.get("proposals", [])
    ]
    c = history.get("convention")
    convention = None
    if c is not None:
        convention = Convention(
            c["convention_id"],
            c["youth_id"],
            date.fromisoformat(c["starts_on"]),
            date.fromisoformat(c["ends_on"]),
            c["mlds_structure_uai"],
            c["company_tutor_id"],
            date.fromisoformat(c["youth_birth_date"]),
            {SignatoryRole(role): ref for role, ref in c["parties"].items()},
            _dt(c["drafted_at"]),
            tuple(
                Signature(SignatoryRole(s["role"]), _dt(s["signed_at"]), s["signed_by"])
                for s in c["signatures"]
            ),
        )
    b = history.get("bilan")
    bilan = None
    if b is not None:
        bilan = Bilan(
            tuple(SkillAssessment(s["skill"], SkillLevel(s["level"])) for s in b["skills"]),
            b["savoir_etre"],
            b["savoir_faire"],
            b["next_steps"],
            _dt(b["written_at"]),
            tuple(
                BilanSignature(BilanSignatoryRole(s["role"]), _dt(s["signed_at"])) for s in b["signatures"]
            ),
            _dt(b["delivered_at"]),
            b["document_sha256"],
        )
    return Mission(
        str(row["mission_id"]),
        str(row["clause_id"]),
        row["buyer_id"],
        row["company_id"],
        ActivityDomain(row["activity_domain"]),
        tuple(row["tasks"]),
        Site(row["site_address"], row["site_postcode"], row["site_city"], row["departement"]),
        row["referent_id"],
        row["hours"],
        row["declared_at"],
        activity_comment=row["activity_comment"],
        second_referent_id=row["second_referent_id"],
        status=MissionStatus(row["status"]),
        status_since=row["status_since"],
        updated_at=row["updated_at"],
        reserved_by=row["reserved_by"],
        proposals=proposals,
        convention=convention,
        attendance={date.fromisoformat(week): hours for week, hours in history.get("attendance", [])},
        outcome=MissionOutcome(history["outcome"]) if history.get("outcome") else None,
        completed_at=_dt(history.get("completed_at")),
        bilan=bilan,
        version=row["version"],
    )


# Built once: a reservation runs these two under contention, and building a statement costs
# more than running it from the compiled cache.
_MISSION = select(mission_table).where(M.mission_id == bindparam("mission_id"))
_MISSION_FOR_UPDATE = _MISSION.with_for_update()
_RESERVE = (
    update(mission_table)
    .where(M.mission_id == bindparam("mission"), M.status == MissionStatus.DISPONIBLE.value)
    .values(
        status=bindparam("new_status"),
        reserved_by=bindparam("tutor"),
        status_since=bindparam("since"),
        updated_at=bindparam("at"),
        version=M.version + 1,
    )
    .returning(M.version)
)


class SqlMissionRepository(MissionRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, mission: Mission) -> bool:
        statement = (
            insert(mission_table)
            .values(**mission_row(mission), version=1)
            .on_conflict_do_nothing()
            .returning(M.version)
        )
        version = (await self.connection.execute(statement)).scalar()
        if version is None:
            return False
        mission.version = version
        return True

    async def get(self, mission_id: str, *, lock: bool = True) -> Mission:
        query = _MISSION_FOR_UPDATE if lock else _MISSION
        row = (await self.connection.execute(query, {"mission_id": mission_id})).mappings().first()
        if row is None:
            raise MissionNotFound(mission_id)
        return mission_of(row)

    async def save(self, mission: Mission) -> None:
        statement = (
            update(mission_table)
            .where(M.mission_id == mission.mission_id, M.version == mission.version)
            .values(**mission_row(mission), version=M.version + 1)
            .returning(M.version)
        )
        version = (await self.connection.execute(statement)).scalar()
        if version is None:
            raise ConcurrentChange(
                f"mission {mission.mission_id} changed since it was read at version {mission.version}"
            )
        mission.version = version

    async def save_reservation(self, mission: Mission) -> bool:
        # The one statement that decides between tutors racing for the mission: under READ
        # COMMITTED a second UPDATE waits for the first's row lock, then re-checks the WHERE on
        # the row the first committed, finds it no longer 'disponible', and updates nothing.
        values = {
            "mission": mission.mission_id,
            "new_status": mission.status.value,
            "tutor": mission.reserved_by,
            "since": mission.status_since,
            "at": mission.updated_at,
        }
        version = (await self.connection.execute(_RESERVE, values)).scalar()
        if version is None:
            return False
        mission.version = version
        return True

    async def of_clause(self, clause_id: str) -> list[Mission]:
        query = select(mission_table).where(M.clause_id == clause_id).order_by(M.declared_at, M.mission_id)
        return [mission_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def hosted_by(self, company_id: str, company_tutor_id: str, site_key: str) -> list[Mission]:
        query = select(mission_table).where(
            M.company_id == company_id,
            M.company_tutor_id == company_tutor_id,
            M.site_key == site_key,
            M.status.in_(PLACED),
        )
        return [mission_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def listed(
        self,
        *,
        company_id: str | None = None,
        departement: str | None = None,
        status: MissionStatus | None = None,
        reserved_by: str | None = None,
        limit: int = 200,
    ) -> list[Mission]:
        query = select(mission_table).order_by(M.declared_at, M.mission_id).limit(limit)
        filters = (
            (M.company_id, company_id),
            (M.departement, departement),
            (M.status, status.value if status is not None else None),
            (M.reserved_by, reserved_by),
        )
        for column, value in filters:
            if value is not None:
                query = query.where(column == value)
        return [mission_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def awaiting_answer(self, made_before: datetime) -> list[str]:
        query = (
            select(M.mission_id)
            .where(M.pending_proposal_made_at <= made_before)
            .order_by(M.pending_proposal_made_at, M.mission_id)
        )
        return [str(mission_id) for mission_id in (await self.connection.execute(query)).scalars()]


# --- enrolments and bilans -----------------------------------------------------------------------


class SqlEnrolmentRepository(EnrolmentRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def record(self, enrolment: Enrolment) -> None:
        values = {
            "youth_id": enrolment.youth_id,
            "dispositif": enrolment.dispositif,
            "starts_on": enrolment.starts_on,
            "case_id": enrolment.case_id,
            "request_id": enrolment.request_id,
            "enrolled_at": enrolment.enrolled_at,
        }
        statement = insert(enrolment_table).values(values)
        refreshed = {name: statement.excluded[name] for name in values if name != "youth_id"}
        await self.connection.execute(
            statement.on_conflict_do_update(index_elements=["youth_id"], set_=refreshed)
        )

    async def get(self, youth_id: str) -> Enrolment | None:
        query = select(enrolment_table).where(enrolment_table.c.youth_id == youth_id)
        row = (await self.connection.execute(query)).mappings().first()
        if row is None:
            return None
        return Enrolment(
            row["youth_id"],
            row["dispositif"],
            row["starts_on"],
            str(row["case_id"]),
            str(row["request_id"]),
            row["enrolled_at"],
        )


class SqlBilanDocumentRepository(BilanDocumentRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, mission_id: str, document_sha256: str, pdf: bytes, delivered_at: datetime) -> None:
        await self.connection.execute(
            insert(bilan_table).values(
                mission_id=mission_id, document_sha256=document_sha256, pdf=pdf, delivered_at=delivered_at
            )
        )

    async def get(self, mission_id: str) -> bytes | None:
        query = select(bilan_table.c.pdf).where(bilan_table.c.mission_id == mission_id)
        return (await self.connection.execute(query)).scalar()
