"""clause_sociale's HTTP API (OpenAPI at /docs): buyers, companies and MLDS tutors, each on its own.

Every route takes a bearer token (raccrochage_platform.auth). A buyer's token names its
organisation: it publishes clauses and reads its own (hours required, planned, done; "bientôt
échues"; the bilans). A company's token names the company: it declares missions under the clauses
it holds and answers proposals. An MLDS tutor's token names a département: the tutor reserves
the free missions there, proposes a youth, drafts the convention and records the placement.
Anything of another organisation or département answers 403.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.nats import NatsBroker
from pydantic import BaseModel, Field
from raccrochage_platform.auth import InvalidToken, Principal, Role, verify

from ..adapters.bilan_pdf import render_bilan_pdf
from ..domain.bilan import BilanSignatoryRole, SkillAssessment, SkillLevel
from ..domain.clause import Buyer, BuyerType, Clause, ExecutionProof
from ..domain.convention import SignatoryRole
from ..domain.errors import Refused, TransitionRefused
from ..domain.mission import ActivityDomain, Mission, MissionOutcome, Site
from ..domain.proposal import CompanyBusy, DeclineReason, Proposal, SchoolLevel, YouthProfile
from ..domain.states import ActorRole, MissionStatus
from ..service_layer import commands, handlers, views
from ..service_layer.unit_of_work import ClauseNotFound, ClauseUnitOfWork, ConcurrentChange, MissionNotFound
from .contact_card import ContactCardError, fetch_identity

# --- bodies ---------------------------------------------------------------------------------------


class ClauseIn(BaseModel):
    organisation: str = Field(min_length=1, max_length=200, description="the buyer's name")
    buyer_type: BuyerType
    contact_role: str = Field(max_length=40, description="the buyer's contact, by role: acheteur, ...")
    departement: str = Field(max_length=3, description="the buyer's département")
    company_id: str = Field(max_length=63, description="the company that won the contract")
    contract_object: str = Field(max_length=300)
    notification_date: date
    firm_period_ends_on: date
    firm_amount_eur: int = Field(ge=0, le=10**12, description="estimated amount of the firm period")
    ends_on: date = Field(description="the contract's end, renewals included")


class SiteIn(BaseModel):
    address: str = Field(min_length=1, max_length=200)
    postcode: str = Field(min_length=1, max_length=10)
    city: str = Field(min_length=1, max_length=80)
    departement: str = Field(max_length=3)


class MissionIn(BaseModel):
    activity_domain: ActivityDomain
    activity_comment: str | None = Field(None, max_length=200, description="required for autre")
    tasks: list[str] = Field(min_length=1, max_length=20)
    site: SiteIn
    referent_id: str = Field(max_length=63, description="the company referent who hosts the youth")
    second_referent_id: str | None = Field(None, max_length=63)
    hours: int = Field(ge=1, le=900)


class ProfileIn(BaseModel):
    """What the company sees of the youth: no identity."""

    age: int = Field(ge=0, le=120)
    level: SchoolLevel
    wishes: list[str] = Field(default_factory=list, max_length=15, description="activity domains")
    available_from: date
    hours_per_week: int = Field(ge=0, le=60)


class ProposalIn(BaseModel):
    youth_id: str = Field(min_length=1, max_length=64, description="the pseudonymous youth the MLDS enrolled")
    profile: ProfileIn


class AnswerIn(BaseModel):
    accepted: bool
    decline_reason: DeclineReason | None = None


class ConventionIn(BaseModel):
    starts_on: date
    ends_on: date
    mlds_structure_uai: str = Field(
        max_length=8, description="the MLDS structure (UAI with its check letter)"
    )
    company_tutor_id: str = Field(max_length=63, description="one of the mission's referents")
    legal_guardian_ref: str | None = Field(
        None,
        max_length=63,
        description="the legal guardian's reference in the MLDS structure's file, for a minor (no name)",
    )


class SignatureIn(BaseModel):
    role: SignatoryRole


class HoursIn(BaseModel):
    week_of: date = Field(description="any day of the week")
    hours: int = Field(ge=0, le=168)


class CompletionIn(BaseModel):
    outcome: MissionOutcome


class SkillIn(BaseModel):
    skill: str = Field(min_length=1, max_length=120)
    level: SkillLevel


class BilanIn(BaseModel):
    skills: list[SkillIn] = Field(min_length=1, max_length=30)
    savoir_etre: str = Field(max_length=2000)
    savoir_faire: str = Field(max_length=2000)
    next_steps: str = Field(max_length=2000)


class BilanSignatureIn(BaseModel):
    role: BilanSignatoryRole


class Problem(BaseModel):
    detail: Any = Field(description="what is wrong, and where")


# --- views ----------------------------------------------------------------------------------------


def _iso(moment: date | datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def proof_view(proof: ExecutionProof) -> dict[str, Any]:
    return {
        "hours_required": proof.hours_required,
        "hours_declared": proof.hours_declared,
        "hours_planned": proof.hours_planned,
        "hours_done": proof.hours_done,
        "hours_by_youth": proof.hours_by_youth,
        "executed": proof.executed,
    }


def clause_view(clause: Clause, proof: ExecutionProof, today: date) -> dict[str, Any]:
    return {
        "clause_id": clause.clause_id,
        "buyer": {
            "buyer_id": clause.buyer.buyer_id,
            "organisation": clause.buyer.organisation,
            "buyer_type": clause.buyer.buyer_type.value,
            "contact_role": clause.buyer.contact_role,
            "departement": clause.buyer.departement,
        },
        "company_id": clause.company_id,
        "contract_object": clause.contract_object,
        "notification_date": clause.notification_date.isoformat(),
        "firm_period_ends_on": clause.firm_period_ends_on.isoformat(),
        "firm_amount_eur": clause.firm_amount_eur,
        "ends_on": clause.ends_on.isoformat(),
        "published_at": clause.published_at.isoformat(),
        **proof_view(proof),
        "bientot_echue": proof.hours_planned < proof.hours_required
        and today <= clause.ends_on <= _six_months(today),
    }


def _six_months(today: date) -> date:
    from ..domain.clause import MONTHS_BEFORE_END
    from ..domain.dates import add_months

    return add_months(today, MONTHS_BEFORE_END)


def proposal_view(proposal: Proposal, *, with_youth: bool) -> dict[str, Any]:
    view = {
        "proposal_id": proposal.proposal_id,
        "state": proposal.state.value,
        "profile": {
            "age": proposal.profile.age,
            "level": proposal.profile.level.value,
            "wishes": list(proposal.profile.wishes),
            "available_from": proposal.profile.available_from.isoformat(),
            "hours_per_week": proposal.profile.hours_per_week,
        },
        "tutor_id": proposal.tutor_id,
        "made_at": proposal.made_at.isoformat(),
        "answer_due_at": proposal.answer_due_at.isoformat(),
        "reminded_at": _iso(proposal.reminded_at),
        "answered_at": _iso(proposal.answered_at),
        "decline_reason": proposal.decline_reason.value if proposal.decline_reason else None,
    }
    if with_youth:
        view["youth_id"] = proposal.youth_id
    return view


def mission_view(mission: Mission, principal: Principal) -> dict[str, Any]:
    # The pseudonymous youth_id is the MLDS's handle on the youth: the tutor sees it, the company
    # and the buyer see the profile and the hours.
    tutor = principal.role is Role.MLDS_TUTOR
    convention, bilan = mission.convention, mission.bilan
    return {
        "mission_id": mission.mission_id,
        "clause_id": mission.clause_id,
        "company_id": mission.company_id,
        "activity_domain": mission.activity_domain.value,
        "activity_comment": mission.activity_comment,
        "tasks": list(mission.tasks),
        "site": {
            "address": mission.site.address,
            "postcode": mission.site.postcode,
            "city": mission.site.city,
            "departement": mission.site.departement,
        },
        "referent_id": mission.referent_id,
        "second_referent_id": mission.second_referent_id,
        "hours": mission.hours,
        "status": mission.status.value,
        "status_since": _iso(mission.status_since),
        "reserved_by": mission.reserved_by,
        "youth_id": mission.youth_id if tutor else None,
        "pending_proposal": (
            proposal_view(mission.pending_proposal, with_youth=tutor) if mission.pending_proposal else None
        ),
        "proposals_made": len(mission.proposals),
        "convention": (
            {
                "convention_id": convention.convention_id,
                "starts_on": convention.starts_on.isoformat(),
                "ends_on": convention.ends_on.isoformat(),
                "youth_minor": convention.youth_minor,
                "required_roles": [r.value for r in convention.required_roles],
                "signed_roles": [r.value for r in convention.signed_roles],
                "complete": convention.complete,
            }
            if convention
            else None
        ),
        "hours_done": mission.hours_done,
        "hours_planned": mission.hours_planned,
        "hours_by_week": {week.isoformat(): hours for week, hours in sorted(mission.attendance.items())},
        "outcome": mission.outcome.value if mission.outcome else None,
        "bilan": (
            {
                "signed_roles": [r.value for r in bilan.signed_roles],
                "fully_signed": bilan.fully_signed,
                "delivered_at": _iso(bilan.delivered_at),
                "document_sha256": bilan.document_sha256,
            }
            if bilan
            else None
        ),
    }


# --- errors ---------------------------------------------------------------------------------------


class NotYours(Exception):
    """The resource belongs to another organisation or département, or the role may not act."""


# What the service layer raises, as HTTP answers that say what and where.
_HTTP_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ClauseNotFound, 404),
    (MissionNotFound, 404),
    (NotYours, 403),
    (handlers.MissionTaken, 409),
    (handlers.AlreadyExists, 409),
    (CompanyBusy, 409),
    (ConcurrentChange, 409),
    (TransitionRefused, 409),
    (Refused, 422),
)

_MEANING = {
    401: "missing, malformed, forged or expired token",
    403: "the token's role, organisation or département may not do this",
    404: "no such clause or mission",
    409: "the mission's status does not allow it, or another user changed it first",
    422: "a rule of the clause sociale refuses it, or the body is invalid (the detail says which)",
    502: "the repérage vault gave an unusable answer",
    503: "the repérage vault did not answer",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route: each status it may return, with what it means."""
    return {code: {"model": Problem, "description": _MEANING[code]} for code in (401, *codes)}


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except tuple(kind for kind, _ in _HTTP_STATUS) as error:
        status = next(code for kind, code in _HTTP_STATUS if isinstance(error, kind))
        message = str(error)
        if isinstance(error, ClauseNotFound | MissionNotFound):
            message = f"no {'clause' if isinstance(error, ClauseNotFound) else 'mission'} {error}"
        raise HTTPException(status, message) from None


# --- the router -----------------------------------------------------------------------------------

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="`raccrochage token --role buyer|company|mlds_tutor ...`: a buyer or a company token "
    "names its organisation, an MLDS tutor's its département",
)


def clause_router(
    unit_of_work: Callable[[], ClauseUnitOfWork], token_key: str, broker: NatsBroker
) -> APIRouter:
    """The routes, each running the service layer in a new unit of work from `unit_of_work`."""
    router = APIRouter(tags=["clause_sociale"])

    def principal(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        if credentials is None:
            raise HTTPException(
                401,
                "missing bearer token (raccrochage token --role ...)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return verify(token_key, credentials.credentials)
        except InvalidToken as error:
            raise HTTPException(
                401, f"invalid token: {error}", headers={"WWW-Authenticate": "Bearer"}
            ) from None

    auth = Depends(principal)

    def now() -> datetime:
        return datetime.now(UTC)

    def only(caller: Principal, *roles: Role) -> None:
        if caller.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise HTTPException(
                403, f"a {caller.role.value} token may not do this; it takes a {allowed} token"
            )

    def check_clause(caller: Principal, clause: Clause) -> None:
        if caller.role is Role.BUYER and caller.organisation != clause.buyer.buyer_id:
            raise NotYours(
                f"clause {clause.clause_id} is buyer {clause.buyer.buyer_id}'s, not {caller.organisation}'s"
            )
        if caller.role is Role.COMPANY and caller.organisation != clause.company_id:
            raise NotYours(
                f"clause {clause.clause_id} is held by {clause.company_id}, not {caller.organisation}"
            )
        if caller.role is Role.MLDS_TUTOR and caller.territory != clause.buyer.departement:
            raise NotYours(
                f"clause {clause.clause_id} is in département {clause.buyer.departement}, "
                f"not the token's ({caller.territory})"
            )
        if caller.role not in (Role.BUYER, Role.COMPANY, Role.MLDS_TUTOR):
            raise NotYours(f"a {caller.role.value} token reads no clause")

    def check_mission(caller: Principal, mission: Mission, *roles: Role) -> None:
        only(caller, *roles)
        if caller.role is Role.BUYER and caller.organisation != mission.buyer_id:
            raise NotYours(f"mission {mission.mission_id} is under buyer {mission.buyer_id}'s clause")
        if caller.role is Role.COMPANY and caller.organisation != mission.company_id:
            raise NotYours(
                f"mission {mission.mission_id} is {mission.company_id}'s, not {caller.organisation}'s"
            )
        if caller.role is Role.MLDS_TUTOR and caller.territory != mission.departement:
            raise NotYours(
                f"mission {mission.mission_id} is in département {mission.departement}, "
                f"not the token's ({caller.territory})"
            )

    async def load_mission(caller: Principal, mission_id: uuid.UUID, *roles: Role) -> Mission:
        """The mission, if the caller may act on it. Ownership never changes (company,
        département, buyer), so checking it before the command's own transaction is safe."""
        only(caller, *roles)
        with http_errors():
            uow = unit_of_work()
            async with uow:
                mission = await uow.missions.get(str(mission_id), lock=False)
            check_mission(caller, mission, *roles)
        return mission

    async def run(caller: Principal, mission_id: uuid.UUID, roles: tuple[Role, ...], command) -> dict:
        await load_mission(caller, mission_id, *roles)
        with http_errors():
            mission = await command(unit_of_work())
        return mission_view(mission, caller)

    async def clause_with_proof(clause: Clause) -> dict:
        proof = await views.proof_of_execution(clause.clause_id, unit_of_work())
        return clause_view(clause, proof, now().date())

    # --- buyers -------------------------------------------------------------------------------

    @router.post(
        "/clauses",
        status_code=201,
        summary="A buyer publishes a clause (refused for a contract of one firm year or less, or "
        "declared less than 6 months before its end)",
        responses=errors(403, 409, 422),
    )
    async def publish_clause(body: ClauseIn, caller: Principal = auth) -> dict:
        only(caller, Role.BUYER)
        buyer = Buyer(
            caller.organisation, body.organisation, body.buyer_type, body.contact_role, body.departement
        )
        cmd = commands.PublishClause(
            str(uuid.uuid4()),
            buyer,
            body.company_id,
            body.contract_object,
            body.notification_date,
            body.firm_period_ends_on,
            body.firm_amount_eur,
            body.ends_on,
            now(),
        )
        with http_errors():
            clause = await handlers.publish_clause(cmd, unit_of_work())
        return await clause_with_proof(clause)

    @router.get(
        "/clauses",
        summary="The caller's clauses with their hours: a buyer's, a company's, or those of a "
        "tutor's département",
        responses=errors(403),
    )
    async def list_clauses(
        caller: Principal = auth,
        bientot_echues: Annotated[
            bool, Query(description="only the clauses ending within 6 months with hours not all planned")
        ] = False,
    ) -> dict:
        only(caller, Role.BUYER, Role.COMPANY, Role.MLDS_TUTOR)
        today = now().date()
        if bientot_echues:
            due = await views.bientot_echues(today, unit_of_work())
            found = [d.clause for d in due]
        else:
            uow = unit_of_work()
            async with uow:
                found = await uow.clauses.listed(
                    buyer_id=caller.organisation if caller.role is Role.BUYER else None,
                    company_id=caller.organisation if caller.role is Role.COMPANY else None,
                    departement=caller.territory if caller.role is Role.MLDS_TUTOR else None,
                )
        listed = []
        for clause in found:
            try:
                check_clause(caller, clause)
            except NotYours:
                continue
            listed.append(await clause_with_proof(clause))
        return {"clauses": listed}

    @router.get(
        "/clauses/{clause_id}",
        summary="A clause's proof of execution: hours required, declared, planned, done, by youth",
        responses=errors(403, 404),
    )
    async def get_clause(clause_id: uuid.UUID, caller: Principal = auth) -> dict:
        with http_errors():
            uow = unit_of_work()
            async with uow:
                clause = await uow.clauses.get(str(clause_id))
                missions = await uow.missions.of_clause(clause.clause_id)
            check_clause(caller, clause)
        return {
            **clause_view(clause, clause.proof(missions), now().date()),
            "missions": [mission_view(m, caller) for m in missions],
        }

    # --- companies ------------------------------------------------------------------------------

    @router.post(
        "/clauses/{clause_id}/missions",
        status_code=201,
        summary="The company that holds the clause declares a mission",
        responses=errors(403, 404, 409, 422),
    )
    async def declare_mission(clause_id: uuid.UUID, body: MissionIn, caller: Principal = auth) -> dict:
        only(caller, Role.COMPANY)
        with http_errors():
            uow = unit_of_work()
            async with uow:
                clause = await uow.clauses.get(str(clause_id))
            check_clause(caller, clause)
            mission = await handlers.declare_mission(
                commands.DeclareMission(
                    str(uuid.uuid4()),
                    clause.clause_id,
                    caller.organisation,
                    body.activity_domain,
                    tuple(body.tasks),
                    Site(**body.site.model_dump()),
                    body.referent_id,
                    body.hours,
                    now(),
                    activity_comment=body.activity_comment,
                    second_referent_id=body.second_referent_id,
                ),
                unit_of_work(),
            )
        return mission_view(mission, caller)

    @router.get(
        "/missions",
        summary="Missions: a company's own; a tutor's département (the free ones by default); a "
        "buyer's clauses'",
        responses=errors(403),
    )
    async def list_missions(
        caller: Principal = auth,
        status: Annotated[
            MissionStatus | None,
            Query(
                description="disponible, reservee, ...; a tutor gets the free missions unless mine or status"
            ),
        ] = None,
        mine: Annotated[bool, Query(description="a tutor: the missions the tutor reserved")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict:
        only(caller, Role.BUYER, Role.COMPANY, Role.MLDS_TUTOR)
        uow = unit_of_work()
        async with uow:
            if caller.role is Role.COMPANY:
                found = await uow.missions.listed(company_id=caller.organisation, status=status, limit=limit)
            elif caller.role is Role.MLDS_TUTOR:
                found = await uow.missions.listed(
                    departement=caller.territory,
                    status=status or (None if mine else MissionStatus.DISPONIBLE),
                    reserved_by=caller.sub if mine else None,
                    limit=limit,
                )
            else:
                found = []
                for clause in await uow.clauses.listed(buyer_id=caller.organisation):
                    found += [
                        m
                        for m in await uow.missions.of_clause(clause.clause_id)
                        if status in (None, m.status)
                    ]
                found = found[:limit]
        return {"missions": [mission_view(m, caller) for m in found]}

    @router.get(
        "/missions/{mission_id}",
        summary="A mission, its proposal, convention, hours and bilan",
        responses=errors(403, 404),
    )
    async def get_mission(mission_id: uuid.UUID, caller: Principal = auth) -> dict:
        mission = await load_mission(caller, mission_id, Role.BUYER, Role.COMPANY, Role.MLDS_TUTOR)
        return mission_view(mission, caller)

    @router.post(
        "/missions/{mission_id}/proposals/{proposal_id}/answer",
        summary="The company accepts the proposed youth (presentation meeting, then convention) or "
        "declines (the mission is free again); within 15 days",
        responses=errors(403, 404, 409, 422),
    )
    async def answer(
        mission_id: uuid.UUID, proposal_id: uuid.UUID, body: AnswerIn, caller: Principal = auth
    ) -> dict:
        cmd = commands.AnswerProposal(
            str(mission_id), str(proposal_id), body.accepted, now(), body.decline_reason
        )

        async def do(uow: ClauseUnitOfWork) -> Mission:
            await handlers.answer_proposal(cmd, uow)
            return await _reload(str(mission_id))

        return await run(caller, mission_id, (Role.COMPANY,), do)

    async def _reload(mission_id: str) -> Mission:
        uow = unit_of_work()
        async with uow:
            return await uow.missions.get(mission_id, lock=False)

    # --- MLDS tutors ----------------------------------------------------------------------------

    @router.post(
        "/missions/{mission_id}/reservation",
        summary="An MLDS tutor reserves a free mission of the département (one tutor wins a race)",
        responses=errors(403, 404, 409, 422),
    )
    async def reserve(mission_id: uuid.UUID, caller: Principal = auth) -> dict:
        cmd = commands.ReserveMission(str(mission_id), caller.sub, now())
        return await run(
            caller, mission_id, (Role.MLDS_TUTOR,), lambda uow: handlers.reserve_mission(cmd, uow)
        )

    @router.delete(
        "/missions/{mission_id}/reservation",
        summary="The tutor gives the mission back (not while a proposal waits)",
        responses=errors(403, 404, 409, 422),
    )
    async def release(mission_id: uuid.UUID, caller: Principal = auth) -> dict:
        cmd = commands.ReleaseMission(str(mission_id), caller.sub, now())
        return await run(
            caller, mission_id, (Role.MLDS_TUTOR,), lambda uow: handlers.release_mission(cmd, uow)
        )

    @router.post(
        "/missions/{mission_id}/proposals",
        status_code=201,
        summary="The tutor who reserved the mission proposes a youth the MLDS enrolled "
        "(pseudonymous profile; one youth per company at a time)",
        responses=errors(403, 404, 409, 422),
    )
    async def propose(mission_id: uuid.UUID, body: ProposalIn, caller: Principal = auth) -> dict:
        profile = YouthProfile(
            body.profile.age,
            body.profile.level,
            tuple(body.profile.wishes),
            body.profile.available_from,
            body.profile.hours_per_week,
        )
        cmd = commands.ProposeYouth(
            str(mission_id), str(uuid.uuid4()), body.youth_id, profile, caller.sub, now()
        )

        async def do(uow: ClauseUnitOfWork) -> Mission:
            await handlers.propose_youth(cmd, uow)
            return await _reload(str(mission_id))

        return await run(caller, mission_id, (Role.MLDS_TUTOR,), do)

    @router.post(
        "/missions/{mission_id}/convention",
        status_code=201,
        summary="After the presentation meeting, the tutor drafts the tripartite convention (the "
        "youth's birth date from the repérage vault, audited there; a minor needs a legal guardian)",
        responses=errors(403, 404, 409, 422, 502, 503),
    )
    async def draft_convention(mission_id: uuid.UUID, body: ConventionIn, caller: Principal = auth) -> dict:
        mission = await load_mission(caller, mission_id, Role.MLDS_TUTOR)
        if mission.youth_id is None:
            raise HTTPException(
                409, f"mission {mission_id} is {mission.status.value}: no youth accepted for it"
            )
        try:
            identity = await fetch_identity(
                broker,
                mission.youth_id,
                purpose=f"convention of mission {mission_id} by {caller.sub}",
                on_behalf=caller,
            )
        except ContactCardError as error:
            raise HTTPException(error.http_status, str(error)) from None
        parties = {
            SignatoryRole.COMPANY: f"{mission.company_id}/{body.company_tutor_id}",
            SignatoryRole.MLDS_STRUCTURE: body.mlds_structure_uai,
            SignatoryRole.YOUTH: f"youth/{mission.youth_id[:16]}",
        }
        if body.legal_guardian_ref:
            parties[SignatoryRole.LEGAL_GUARDIAN] = body.legal_guardian_ref
        cmd = commands.DraftConvention(
            str(mission_id),
            str(uuid.uuid4()),
            body.starts_on,
            body.ends_on,
            body.mlds_structure_uai,
            body.company_tutor_id,
            identity.birth_date,
            parties,
            now(),
        )
        with http_errors():
            mission = await handlers.draft_convention(cmd, unit_of_work())
        return mission_view(mission, caller)

    @router.post(
        "/missions/{mission_id}/convention/signatures",
        summary="A party signs: the company for itself; the tutor records the MLDS structure's, the "
        "youth's and the legal guardian's. The last signature starts the placement",
        responses=errors(403, 404, 409, 422),
    )
    async def sign_convention(mission_id: uuid.UUID, body: SignatureIn, caller: Principal = auth) -> dict:
        if (caller.role is Role.COMPANY) != (body.role is SignatoryRole.COMPANY):
            raise HTTPException(
                403, f"a {caller.role.value} token may not sign for the {body.role.value} in the convention"
            )
        cmd = commands.SignConvention(str(mission_id), body.role, now())
        return await run(
            caller,
            mission_id,
            (Role.COMPANY, Role.MLDS_TUTOR),
            lambda uow: handlers.sign_convention(cmd, uow),
        )

    @router.post(
        "/missions/{mission_id}/abandon",
        summary="Before the convention is complete, the company or the tutor gives up: free again",
        responses=errors(403, 404, 409, 422),
    )
    async def abandon(mission_id: uuid.UUID, caller: Principal = auth) -> dict:
        role = ActorRole.COMPANY if caller.role is Role.COMPANY else ActorRole.MLDS_TUTOR
        cmd = commands.AbandonPlacement(str(mission_id), role, now())
        return await run(
            caller,
            mission_id,
            (Role.COMPANY, Role.MLDS_TUTOR),
            lambda uow: handlers.abandon_placement(cmd, uow),
        )

    @router.put(
        "/missions/{mission_id}/hours",
        summary="The youth's hours of a week (any week started counts; recording it again corrects it)",
        responses=errors(403, 404, 409, 422),
    )
    async def record_hours(mission_id: uuid.UUID, body: HoursIn, caller: Principal = auth) -> dict:
        cmd = commands.RecordHours(str(mission_id), body.week_of, body.hours, now())
        return await run(
            caller, mission_id, (Role.MLDS_TUTOR, Role.COMPANY), lambda uow: handlers.record_hours(cmd, uow)
        )

    @router.post(
        "/missions/{mission_id}/completion",
        summary="The tutor ends the placement with where the youth goes next",
        responses=errors(403, 404, 409, 422),
    )
    async def complete(mission_id: uuid.UUID, body: CompletionIn, caller: Principal = auth) -> dict:
        cmd = commands.CompleteMission(str(mission_id), body.outcome, now())
        return await run(
            caller, mission_id, (Role.MLDS_TUTOR,), lambda uow: handlers.complete_mission(cmd, uow)
        )

    # --- the bilan croisé -------------------------------------------------------------------------

    @router.put(
        "/missions/{mission_id}/bilan",
        summary="The tutors write the bilan croisé (until someone signs it)",
        responses=errors(403, 404, 409, 422),
    )
    async def write_bilan(mission_id: uuid.UUID, body: BilanIn, caller: Principal = auth) -> dict:
        cmd = commands.WriteBilan(
            str(mission_id),
            tuple(SkillAssessment(s.skill, s.level) for s in body.skills),
            body.savoir_etre,
            body.savoir_faire,
            body.next_steps,
            now(),
        )
        return await run(
            caller, mission_id, (Role.MLDS_TUTOR, Role.COMPANY), lambda uow: handlers.write_bilan(cmd, uow)
        )

    @router.post(
        "/missions/{mission_id}/bilan/signatures",
        summary="The company referent signs; the tutor signs and records the youth's signature",
        responses=errors(403, 404, 409, 422),
    )
    async def sign_bilan(mission_id: uuid.UUID, body: BilanSignatureIn, caller: Principal = auth) -> dict:
        if (caller.role is Role.COMPANY) != (body.role is BilanSignatoryRole.COMPANY_REFERENT):
            raise HTTPException(
                403, f"a {caller.role.value} token may not sign the bilan as {body.role.value}"
            )
        cmd = commands.SignBilan(str(mission_id), body.role, now())
        return await run(
            caller, mission_id, (Role.MLDS_TUTOR, Role.COMPANY), lambda uow: handlers.sign_bilan(cmd, uow)
        )

    @router.post(
        "/missions/{mission_id}/bilan/delivery",
        summary="The tutor delivers the signed bilan to the buyer: rendered as a PDF (naming the "
        "youth from the repérage vault), kept, announced by clause.bilan.delivered.v1",
        responses=errors(403, 404, 409, 422, 502, 503),
    )
    async def deliver_bilan(mission_id: uuid.UUID, caller: Principal = auth) -> dict:
        mission = await load_mission(caller, mission_id, Role.MLDS_TUTOR)
        with http_errors():
            mission.check_bilan_deliverable()  # before asking the vault for a name
        try:
            identity = await fetch_identity(
                broker,
                mission.convention.youth_id,
                purpose=f"bilan croisé of mission {mission_id} by {caller.sub}",
                on_behalf=caller,
            )
        except ContactCardError as error:
            raise HTTPException(error.http_status, str(error)) from None
        cmd = commands.DeliverBilan(
            str(mission_id),
            now(),
            names={"youth": identity.full_name},
            named_youth_id=mission.convention.youth_id,
        )
        with http_errors():
            await handlers.deliver_bilan(cmd, unit_of_work(), render_bilan_pdf)
        return mission_view(await _reload(str(mission_id)), caller)

    @router.get(
        "/missions/{mission_id}/bilan.pdf",
        summary="The bilan croisé delivered to the buyer, as the very PDF kept",
        response_class=Response,
        responses={200: {"content": {"application/pdf": {}}, "description": "the PDF"}, **errors(403, 404)},
    )
    async def bilan_pdf(mission_id: uuid.UUID, caller: Principal = auth) -> Response:
        await load_mission(caller, mission_id, Role.BUYER, Role.COMPANY, Role.MLDS_TUTOR)
        uow = unit_of_work()
        async with uow:
            pdf = await uow.bilans.get(str(mission_id))
        if pdf is None:
            raise HTTPException(404, f"mission {mission_id} has no bilan croisé delivered yet")
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="bilan-{mission_id}.pdf"'},
        )

    return router
