"""The MLDS coordinators' HTTP API (OpenAPI at /docs): sites and capacities, candidacies with
their decisions and reasons, admission steps, enrolment, exit; the yearly survey.

An `mlds_coordinator` token is bound to a territory (département): another territory's site or
candidacy answers 403. An `ops` token reads aggregates only: the sites' places and the survey.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from raccrochage_platform.auth import Principal, Role, bearer

from ..adapters.repository import ConcurrentUpdate, facts_json, history_json
from ..adapters.survey_files import survey_csv
from ..domain.admission import Role as StepRole
from ..domain.admission import StepOutcome
from ..domain.candidacy import Candidacy
from ..domain.catalogue import CapacityError, Dispositif, DispositifKind
from ..domain.dates import Dated, SchoolYear
from ..domain.facts import Facts, FrenchLevel, SchoolLevel
from ..domain.states import (
    CandidacyError,
    CandidacyStatus,
    DiplomaObtained,
    ExitDestination,
    InvalidCommand,
    TransitionRefused,
    WithdrawalReason,
)
from ..domain.survey import Survey
from ..service_layer import candidacies, dispositifs, views
from ..service_layer.unit_of_work import CandidacyNotFound, DispositifNotFound, MldsUnitOfWork
from ..service_layer.views import NotYourTerritory

DEPARTEMENT = r"^([0-9]{2}|2A|2B|9[78][0-9])$"


# --- bodies ---------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default


class CapacityIn(_Body):
    capacity: int = Field(ge=0, le=10_000, description="places; not below the places already taken")


class FactsIn(_Body):
    """Coarse facts only: no name, birth date, nationality or country. Counts are true on `as_of`
    (default: today)."""

    as_of: date | None = Field(None, description="the day age and month counts are true on")
    age: int | None = Field(None, ge=0, le=120)
    age_on_1_september: int | None = Field(
        None, ge=0, le=120, description="whole years on 1 September of the entry year (micro-lycée)"
    )
    months_out_of_school: int | None = Field(None, ge=0, le=1200)
    still_enrolled: bool | None = None
    holds_dnb: bool | None = None
    qualifying_diploma: bool | None = None
    level_reached: SchoolLevel | None = None
    months_in_france: int | None = Field(None, ge=0, le=1200)
    french_level: FrenchLevel | None = None
    schooled_in_country_of_origin: bool | None = None
    had_upe2a: bool | None = None
    referred_by_psad: bool | None = None
    has_solution: bool | None = None
    failed_bac: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The facts given (unset ones stay as they are), counts dated."""
        given = self.model_dump(exclude_unset=True, exclude={"as_of"})
        day = self.as_of or datetime.now(UTC).date()
        for name in ("age", "months_out_of_school", "months_in_france"):
            if given.get(name) is not None:
                given[name] = Dated(given[name], day)
        return given


class CandidacyIn(_Body):
    youth_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="the pseudonymous youth_id (repérage)")
    kind: DispositifKind
    departement: str = Field(pattern=DEPARTEMENT, description="the youth's; the token's territory")
    facts: FactsIn
    dispositif_id: str | None = Field(None, max_length=40, description="the site, if already chosen")
    entry_year: str | None = Field(
        None, pattern=r"^[0-9]{4}-[0-9]{4}$", description="school year of entry, e.g. 2027-2028"
    )


class SiteChoiceIn(_Body):
    dispositif_id: str = Field(max_length=40)


class StepIn(_Body):
    step: str = Field(max_length=40, description="the step's code (see `next_step` of the candidacy)")
    outcome: StepOutcome
    held_on: date
    decided_by: StepRole = Field(description="the role that decided (never a person's name)")


class AdmitIn(_Body):
    dispositif_id: str | None = Field(None, max_length=40, description="default: the candidacy's site")
    starts_on: date | None = Field(None, description="default: the site's next entry")


class EnrolIn(_Body):
    started_on: date


class ExitIn(_Body):
    destination: ExitDestination
    exited_on: date
    school_level: SchoolLevel | None = Field(None, description="back to school: the level returned to")
    droit_au_maintien: bool = False
    diploma_obtained: DiplomaObtained | None = None


class WithdrawIn(_Body):
    reason: WithdrawalReason


class PafiIn(_Body):
    validated_on: date


# --- views ----------------------------------------------------------------------------------------
def site_view(site: Dispositif) -> dict[str, Any]:
    return {
        "dispositif_id": site.dispositif_id,
        "kind": site.kind.value,
        "departement": site.departement,
        "host_establishment": site.host_establishment,
        "host_uai": site.host_uai,
        "city": site.city,
        "capacity": site.capacity,
        "places_taken": site.places_taken,
        "places_left": site.places_left,
        "entries": site.sessions.entries.value,
        "revision": site.revision,
    }


def summary(candidacy: Candidacy) -> dict[str, Any]:
    decision = candidacy.decision
    return {
        "candidacy_id": candidacy.candidacy_id,
        "youth_id": candidacy.youth_id,
        "kind": candidacy.kind.value,
        "departement": candidacy.departement,
        "dispositif_id": candidacy.dispositif_id,
        "channel": candidacy.channel.value,
        "status": candidacy.status.value,
        "received_at": candidacy.received_at.isoformat(),
        "updated_at": candidacy.updated_at.isoformat() if candidacy.updated_at else None,
        "entry_year": str(candidacy.entry_year),
        "eligibility": decision.outcome.value if decision else None,
        "failed_rules": list(decision.failed_rules) if decision else [],
        "missing_facts": [f.value for f in decision.missing_facts] if decision else [],
        "psad_request_id": candidacy.request.request_id if candidacy.request else None,
        "psad_case_id": candidacy.request.case_id if candidacy.request else None,
    }


def detail(candidacy: Candidacy) -> dict[str, Any]:
    step = candidacy.next_step
    return {
        **summary(candidacy),
        "facts": facts_json(candidacy.facts),
        "next_step": step
        and {
            "code": step.code,
            "wording": step.wording,
            "decided_by": sorted(r.value for r in step.deciders),
        },
        "pending_steps": [s.code for s in candidacy.pending_steps],
        "answered_psad": candidacy.answered,
        **history_json(candidacy),
    }


# What the service layer raises, as HTTP answers that say what and where.
_HTTP_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CandidacyNotFound, 404),
    (DispositifNotFound, 404),
    (NotYourTerritory, 403),
    (InvalidCommand, 422),
    (TransitionRefused, 409),
    (CapacityError, 409),
    (ConcurrentUpdate, 409),
    (CandidacyError, 409),
)
_NOT_FOUND = {CandidacyNotFound: "candidacy {} not found", DispositifNotFound: "site {} not found"}


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except tuple(kind for kind, _ in _HTTP_STATUS) as error:
        status = next(code for kind, code in _HTTP_STATUS if isinstance(error, kind))
        template = _NOT_FOUND.get(type(error))
        raise HTTPException(status, template.format(error) if template else str(error)) from None


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        401: "missing, invalid or expired token",
        403: "the token's role or territory does not allow it",
        404: "no such candidacy or site",
        409: "the candidacy's status (or the site's places) does not allow it now",
        422: "invalid body or parameters: the message says which field",
    }
    return {code: {"description": words[code]} for code in (401, 403, *codes)}


def mlds_router(
    unit_of_work: Callable[[], MldsUnitOfWork],
    token_key: str,
    survey: Callable[[SchoolYear], Awaitable[Survey]],
) -> APIRouter:
    """The routes, each running the service layer in a new unit of work from `unit_of_work`.
    `survey(year)` builds the yearly survey from the MLDS stream (GET /survey)."""
    router = APIRouter(tags=["mlds"])  # the bearer scheme comes with raccrochage_platform.auth.bearer
    caller = Depends(bearer(token_key))

    def coordinator(principal: Principal) -> str:
        if principal.role is not Role.MLDS_COORDINATOR:
            raise HTTPException(
                403,
                "candidacies and capacities need an mlds_coordinator token; ops reads /dispositifs and /survey",
            )
        assert principal.territory is not None  # verify() requires one for this role
        return principal.territory

    async def readable(principal: Principal, candidacy_id: uuid.UUID) -> Candidacy:
        territory = coordinator(principal)
        with http_errors():
            return await views.candidacy_for(unit_of_work(), candidacy_id, territory)

    async def command(principal: Principal, candidacy_id: uuid.UUID, do) -> dict[str, Any]:
        """Check the territory, run `do(uow, now)` (a service-layer command), answer the candidacy.
        The check reads in its own transaction: a youth's département never changes, and only a
        coordinator who may see the candidacy changes its site."""
        await readable(principal, candidacy_id)
        with http_errors():
            await do(unit_of_work(), datetime.now(UTC))
            return detail(await views.candidacy_for(unit_of_work(), candidacy_id, principal.territory or ""))

    # --- sites ------------------------------------------------------------------------------------
    @router.get(
        "/dispositifs",
        summary="The sites and their places (a coordinator: their territory; ops: every territory)",
        responses=_responses(422),
    )
    async def list_sites(
        principal: Principal = caller,
        kind: DispositifKind | None = None,
        departement: Annotated[
            str | None, Query(pattern=DEPARTEMENT, description="a coordinator's must be the token's")
        ] = None,
    ) -> dict:
        if principal.role is Role.MLDS_COORDINATOR:
            if departement and departement != principal.territory:
                raise HTTPException(
                    403, f"département {departement} is not the token's ({principal.territory})"
                )
            departement = principal.territory
        elif principal.role is not Role.OPS:
            raise HTTPException(403, "the sites need an mlds_coordinator or ops token")
        found = await views.sites(unit_of_work(), kind=kind, departement=departement)
        return {"dispositifs": [site_view(site) for site in found]}

    @router.put(
        "/dispositifs/{dispositif_id}/capacity",
        summary="Set a site's capacity (publishes mlds.dispositif.updated.v1)",
        responses=_responses(404, 409, 422),
    )
    async def set_capacity(dispositif_id: str, body: CapacityIn, principal: Principal = caller) -> dict:
        territory = coordinator(principal)
        with http_errors():
            await views.site_for(unit_of_work(), dispositif_id, territory)
            site = await dispositifs.set_capacity(
                unit_of_work(), dispositif_id, body.capacity, datetime.now(UTC)
            )
        return site_view(site)

    # --- candidacies ------------------------------------------------------------------------------
    @router.get(
        "/candidacies",
        summary="The territory's candidacies (the youth's département or the site's), newest first",
        responses=_responses(404, 422),
    )
    async def list_candidacies(
        principal: Principal = caller,
        dispositif_id: Annotated[str | None, Query(max_length=40, description="one site's")] = None,
        status: CandidacyStatus | None = None,
        kind: DispositifKind | None = None,
        territory: Annotated[
            str | None, Query(description="must be the token's territory when given")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict:
        mine = coordinator(principal)
        if territory and territory != mine:
            raise HTTPException(403, f"territory {territory} is not the token's ({mine})")
        if dispositif_id is not None:
            with http_errors():
                await views.site_for(unit_of_work(), dispositif_id, mine)
        total, page = await views.candidacies_of(
            unit_of_work(),
            mine,
            dispositif_id=dispositif_id,
            status=status,
            kind=kind,
            limit=limit,
            offset=offset,
        )
        return {"total": total, "limit": limit, "offset": offset, "candidacies": [summary(c) for c in page]}

    @router.post(
        "/candidacies",
        status_code=201,
        summary="Record a candidacy (a pupil at risk, a youth met at the CIO); decided at once",
        responses=_responses(404, 422),
    )
    async def receive(body: CandidacyIn, principal: Principal = caller) -> dict:
        territory = coordinator(principal)
        if body.departement != territory:
            raise HTTPException(403, f"département {body.departement} is not the token's ({territory})")
        changes = body.facts.changes()
        if changes.get("age") is None:
            raise HTTPException(422, "facts.age: the age is needed to decide")
        try:
            entry_year = SchoolYear.parse(body.entry_year) if body.entry_year else None
            facts = Facts().with_changes(**changes)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        with http_errors():
            if body.dispositif_id:
                await views.site_for(unit_of_work(), body.dispositif_id, None)
            candidacy_id = await candidacies.receive_candidacy(
                unit_of_work(),
                body.youth_id,
                body.kind,
                body.departement,
                facts,
                datetime.now(UTC),
                dispositif_id=body.dispositif_id,
                entry_year=entry_year,
            )
        return detail(await readable(principal, candidacy_id))

    @router.get(
        "/candidacies/{candidacy_id}",
        summary="A candidacy: every eligibility decision with each rule's verdict and fact, the steps",
        responses=_responses(404, 422),
    )
    async def get_candidacy(candidacy_id: uuid.UUID, principal: Principal = caller) -> dict:
        return detail(await readable(principal, candidacy_id))

    @router.post(
        "/candidacies/{candidacy_id}/facts",
        summary="Record facts a decision named (or correct one): decided again, with its reasons",
        responses=_responses(404, 409, 422),
    )
    async def record_facts(candidacy_id: uuid.UUID, body: FactsIn, principal: Principal = caller) -> dict:
        changes = body.changes()
        if not changes:
            raise HTTPException(422, "no fact given")
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.record_facts(uow, candidacy_id, now, **changes),
        )

    @router.post(
        "/candidacies/{candidacy_id}/dispositif",
        summary="Choose the site (admission needs one)",
        responses=_responses(404, 409, 422),
    )
    async def choose(candidacy_id: uuid.UUID, body: SiteChoiceIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.choose_dispositif(uow, candidacy_id, body.dispositif_id, now),
        )

    @router.post(
        "/candidacies/{candidacy_id}/steps",
        summary="Record an admission step: date, outcome, the role that decided (unfavourable: refused)",
        responses=_responses(404, 409, 422),
    )
    async def step(candidacy_id: uuid.UUID, body: StepIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.record_admission_step(
                uow, candidacy_id, body.step, body.outcome, body.held_on, body.decided_by, now
            ),
        )

    @router.post(
        "/candidacies/{candidacy_id}/admit",
        summary="Admit after every step: takes a place (a full site refuses the candidacy, no_place)",
        responses=_responses(404, 409, 422),
    )
    async def admit(candidacy_id: uuid.UUID, body: AdmitIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.admit(
                uow, candidacy_id, now, dispositif_id=body.dispositif_id, starts_on=body.starts_on
            ),
        )

    @router.post(
        "/candidacies/{candidacy_id}/enrol",
        summary="The youth started (enrolled, under school status)",
        responses=_responses(404, 409, 422),
    )
    async def enrol(candidacy_id: uuid.UUID, body: EnrolIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.enrol(uow, candidacy_id, body.started_on, now),
        )

    @router.post(
        "/candidacies/{candidacy_id}/exit",
        summary="The youth left for a coded destination; the place is freed",
        responses=_responses(404, 409, 422),
    )
    async def exit_(candidacy_id: uuid.UUID, body: ExitIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.exit_enrolment(
                uow,
                candidacy_id,
                body.destination,
                body.exited_on,
                now,
                school_level=body.school_level.value if body.school_level else None,
                droit_au_maintien=body.droit_au_maintien,
                diploma_obtained=body.diploma_obtained,
            ),
        )

    @router.post(
        "/candidacies/{candidacy_id}/withdraw",
        summary="The youth withdraws before starting; a place held is freed",
        responses=_responses(404, 409, 422),
    )
    async def withdraw(candidacy_id: uuid.UUID, body: WithdrawIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.withdraw(uow, candidacy_id, body.reason, now),
        )

    @router.post(
        "/candidacies/{candidacy_id}/pafi",
        summary="Record a PAFI validated by the DASEN (15 or more, still enrolled)",
        responses=_responses(404, 409, 422),
    )
    async def pafi(candidacy_id: uuid.UUID, body: PafiIn, principal: Principal = caller) -> dict:
        return await command(
            principal,
            candidacy_id,
            lambda uow, now: candidacies.record_pafi(uow, candidacy_id, body.validated_on, now),
        )

    # --- the yearly survey ------------------------------------------------------------------------
    @router.get(
        "/survey",
        summary="The ministry's yearly survey from the MLDS's events; cells under 5 youths withheld (s)",
        responses={
            200: {"content": {"text/csv": {}}, "description": "JSON rows, or the CSV file with format=csv"},
            **_responses(422),
        },
    )
    async def get_survey(
        principal: Principal = caller,
        year: Annotated[
            str | None,
            Query(pattern=r"^[0-9]{4}-[0-9]{4}$", description="e.g. 2025-2026; default: the current one"),
        ] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        if principal.role not in (Role.MLDS_COORDINATOR, Role.OPS):
            raise HTTPException(403, "the survey needs an mlds_coordinator or ops token")
        try:
            school_year = SchoolYear.parse(year) if year else SchoolYear.containing(datetime.now(UTC).date())
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        result = await survey(school_year)
        if format == "csv":
            return Response(
                survey_csv(result),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="enquete_mlds_{school_year}.csv"'},
            )
        return {
            "year": str(result.year),
            "threshold": result.threshold,
            "columns": list(Survey.COLUMNS),
            "rows": [dict(zip(Survey.COLUMNS, row.as_tuple(), strict=True)) for row in result.rows],
        }

    return router
