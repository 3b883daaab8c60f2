"""PSAD's HTTP API (OpenAPI at /docs): work lists, case detail, the counsellor's commands, stats.

A counsellor's token is bound to a territory (département): another territory's case answers
403. An ops token reads `/stats` for every territory, and nothing else; any other role, nothing.
Each route documents every status it gives (`error_responses`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field
from raccrochage_platform.auth import Principal, Role, caller, error_responses
from raccrochage_platform.broker import connection
from raccrochage_platform.logging import get_logger
from raccrochage_platform.vault import ContactCardError, fetch_contact_card

from ..adapters.repository import CaseNotFound
from ..domain.case import Case
from ..domain.contact import Channel, ContactOutcome
from ..domain.deadlines import Policy
from ..domain.interview import InterviewerRole, InterviewOutcome
from ..domain.solution import SolutionKind
from ..domain.states import (
    Action,
    CaseStatus,
    CloseReason,
    InvalidCommand,
    ReviewOutcome,
    TransitionRefused,
)
from ..domain.worklist import WorkList, next_action, priority_reasons, worklist
from ..service_layer import cases
from ..service_layer.cases import NotYourTerritory
from ..service_layer.unit_of_work import PsadUnitOfWork

log = get_logger(__name__)


# --- bodies ---------------------------------------------------------------------------------------
class AttemptIn(BaseModel):
    channel: Channel
    outcome: ContactOutcome


class InterviewIn(BaseModel):
    scheduled_for: AwareDatetime
    with_role: InterviewerRole = InterviewerRole.COUNSELLOR
    interviewer_id: str | None = Field(None, max_length=80)


class InterviewOutcomeIn(BaseModel):
    outcome: InterviewOutcome


class SolutionIn(BaseModel):
    kind: SolutionKind
    wishes: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        default_factory=list,
        max_length=10,
        description="coded wishes (trades, fields, places); no free text about the youth",
    )


class RefusalIn(BaseModel):
    reason: Literal["no_seat", "not_eligible", "youth_declined", "other"]


class ReviewIn(BaseModel):
    outcome: ReviewOutcome


# The reasons a counsellor closes with: found_in_partner_base is repérage's to give (it records
# the base), so it is not offered here.
ClosingReason = StrEnum(
    "ClosingReason", {r.name: r.value for r in CloseReason if r is not CloseReason.FOUND_IN_PARTNER_BASE}
)


class CloseIn(BaseModel):
    reason: ClosingReason  # type: ignore[valid-type]


class TransferIn(BaseModel):
    to_psad_id: str = Field(
        pattern=r"^psad-[0-9a-z-]+$",
        max_length=64,
        description="a known PSAD: the académie's psad-<département>-<zap>, or psad-<département>",
    )


class AssignIn(BaseModel):
    owner: str | None = Field(
        None, max_length=80, description="counsellor id; null puts the case back in the queue"
    )


# --- views ----------------------------------------------------------------------------------------
def summary(case: Case, today: date, policy: Policy) -> dict[str, Any]:
    action = next_action(case, today, policy)
    return {
        "case_id": case.case_id,
        "youth_id": case.youth_id,
        "psad_id": case.psad_id,
        "departement": case.departement,
        "zap": case.zap,
        "age": case.age_on(today),
        "status": case.status.value,
        "status_since": case.status_since.isoformat(),
        "work_list": worklist(case, today, policy).value,
        "priority_reasons": [r.value for r in priority_reasons(case, today, policy)],
        "next_action": {
            "what": action.what.value,
            "actor": action.actor.value,
            "owner": action.owner,
            "since": action.since.isoformat(),
            "due": action.due.isoformat() if action.due else None,
        },
        "owner": case.owner,
        "interview_deadline": _iso(case.interview_deadline(policy)),
        "interview_overdue": case.is_overdue(today, policy),
        "review_date": _iso(case.review_date),
        "close_reason": case.close_reason.value if case.close_reason else None,
    }


def detail(case: Case, today: date, policy: Policy) -> dict[str, Any]:
    from ..adapters.repository import history_of

    return {
        **summary(case, today, policy),
        "episode": case.episode,
        "opened_at": case.opened_at.isoformat(),
        "last_training": case.level,
        "last_diploma": case.last_diploma,
        "months_since_leaving": case.months_since_leaving,
        "found_base": case.found_base,
        "transferred_to": case.transferred_to,
        "transfer_needed": case.transfer_needed,
        "escalation_due_on": _iso(case.escalation_due_on(policy)),
        "escalation_raised_on": _iso(case.escalation_raised_on),
        **history_of(case),
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# What the service layer raises, as HTTP answers that say what and where.
_HTTP_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CaseNotFound, 404),
    (NotYourTerritory, 403),
    (TransitionRefused, 409),
    (InvalidCommand, 422),
)


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except tuple(kind for kind, _ in _HTTP_STATUS) as error:
        status = next(code for kind, code in _HTTP_STATUS if isinstance(error, kind))
        raise HTTPException(status, str(error)) from None


def psad_router(
    unit_of_work: Callable[[], PsadUnitOfWork], policy: Policy, token_key: str, broker: Any
) -> APIRouter:
    """The routes, each running the service layer in a new unit of work from `unit_of_work`."""
    router = APIRouter(tags=["psad"])
    # case data is a counsellor's; counts are also ops'
    counsellor = Depends(caller(token_key, Role.COUNSELLOR))
    counts_reader = Depends(caller(token_key, Role.COUNSELLOR, Role.OPS))
    read_answers = error_responses(401, 403, 404, 422)
    command_answers = error_responses(401, 403, 404, 409, 422)

    async def command(principal: Principal, case_id: uuid.UUID, do) -> dict:
        with http_errors():
            case = await cases.command(unit_of_work(), principal, str(case_id), do)
        return detail(case, datetime.now(UTC).date(), policy)

    async def readable(principal: Principal, case_id: uuid.UUID) -> Case:
        with http_errors():
            return await cases.get(unit_of_work(), principal, str(case_id))

    @router.get(
        "/cases",
        summary="List and filter the cases of the caller's territory",
        responses=error_responses(401, 403, 422),
    )
    async def list_cases(
        principal: Principal = counsellor,
        status: Annotated[CaseStatus | None, Query(description="a case status, e.g. to_contact")] = None,
        work_list: Annotated[
            WorkList | None, Query(description="to_handle, priority, unreachable, in_solution, closed")
        ] = None,
        deadline: Annotated[
            Literal["overdue", "due"] | None,
            Query(description="interview deadline overdue, or due soon/overdue"),
        ] = None,
        psad_id: Annotated[str | None, Query(max_length=64)] = None,
        owner: Annotated[str | None, Query(max_length=80)] = None,
        territory: Annotated[
            str | None, Query(max_length=3, description="must be the token's territory when given")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict:
        if territory and territory != principal.territory:
            raise HTTPException(403, f"territory {territory} is not the token's ({principal.territory})")
        today = datetime.now(UTC).date()
        total, page = await cases.search(
            unit_of_work(),
            departement=principal.territory,
            status=status,
            psad_id=psad_id,
            work_list=work_list,
            deadline=deadline,
            owner=owner,
            today=today,
            limit=limit,
            offset=offset,
        )
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "cases": [summary(case, today, policy) for case in page],
        }

    @router.get("/cases/{case_id}", summary="A case, its next action and its history", responses=read_answers)
    async def get_case(case_id: uuid.UUID, principal: Principal = counsellor) -> dict:
        return detail(await readable(principal, case_id), datetime.now(UTC).date(), policy)

    @router.get(
        "/cases/{case_id}/contact",
        summary="The youth's contact card, from the repérage vault (audited there)",
        responses=error_responses(401, 403, 404, 422, 502, 503),
    )
    async def contact(case_id: uuid.UUID, principal: Principal = counsellor) -> dict:
        case = await readable(principal, case_id)
        try:
            card = await fetch_contact_card(
                connection(broker),
                "psad",
                case.youth_id,
                purpose=f"case {case.case_id} opened by {principal.sub}",
                on_behalf=principal,
            )
        except ContactCardError as error:
            raise HTTPException(error.http_status, str(error)) from None
        return {"case_id": case.case_id, "card": card}

    @router.post("/cases/{case_id}/attempts", summary="Record a contact attempt", responses=command_answers)
    async def attempt(case_id: uuid.UUID, body: AttemptIn, principal: Principal = counsellor) -> dict:
        return await command(
            principal,
            case_id,
            lambda case, now: case.record_contact_attempt(body.channel, body.outcome, now, principal.sub),
        )

    @router.post(
        "/cases/{case_id}/interviews",
        summary="Schedule the entretien de situation",
        responses=command_answers,
    )
    async def schedule(case_id: uuid.UUID, body: InterviewIn, principal: Principal = counsellor) -> dict:
        return await command(
            principal,
            case_id,
            lambda case, now: case.schedule_interview(
                body.scheduled_for, body.with_role, now, body.interviewer_id
            ),
        )

    @router.post(
        "/cases/{case_id}/interviews/outcome",
        summary="Record whether the interview took place",
        responses=command_answers,
    )
    async def interview_outcome(
        case_id: uuid.UUID, body: InterviewOutcomeIn, principal: Principal = counsellor
    ) -> dict:
        return await command(principal, case_id, lambda case, now: case.record_interview(body.outcome, now))

    @router.post(
        "/cases/{case_id}/solutions",
        summary="Propose a solution (FOQUALE and MLDS ones are requested from them)",
        responses=command_answers,
    )
    async def propose(case_id: uuid.UUID, body: SolutionIn, principal: Principal = counsellor) -> dict:
        return await command(
            principal, case_id, lambda case, now: case.propose_solution(body.kind, now, tuple(body.wishes))
        )

    @router.post(
        "/cases/{case_id}/solutions/confirm",
        summary="Confirm a solution arranged outside the system",
        responses=command_answers,
    )
    async def confirm(case_id: uuid.UUID, principal: Principal = counsellor) -> dict:
        def do(case: Case, now: datetime) -> None:
            solution = case.current_solution
            if solution is not None and solution.provider is not None:
                raise TransitionRefused(
                    case.case_id,
                    case.status,
                    Action.CONFIRM_SOLUTION,
                    f"{solution.provider.value} confirms {solution.kind.value} itself",
                )
            case.confirm_solution(now, policy)

        return await command(principal, case_id, do)

    @router.post(
        "/cases/{case_id}/solutions/refuse",
        summary="The youth declines the proposed solution",
        responses=command_answers,
    )
    async def refuse(case_id: uuid.UUID, body: RefusalIn, principal: Principal = counsellor) -> dict:
        return await command(principal, case_id, lambda case, now: case.refuse_solution(body.reason, now))

    @router.post(
        "/cases/{case_id}/review", summary="Review a solution at its review date", responses=command_answers
    )
    async def review(case_id: uuid.UUID, body: ReviewIn, principal: Principal = counsellor) -> dict:
        return await command(
            principal, case_id, lambda case, now: case.review_solution(body.outcome, now, policy)
        )

    @router.post("/cases/{case_id}/close", summary="Close with a coded reason", responses=command_answers)
    async def close(case_id: uuid.UUID, body: CloseIn, principal: Principal = counsellor) -> dict:
        return await command(principal, case_id, lambda case, now: case.close(body.reason, now))

    @router.post(
        "/cases/{case_id}/reopen", summary="Reopen a closed case (a new episode)", responses=command_answers
    )
    async def reopen(case_id: uuid.UUID, principal: Principal = counsellor) -> dict:
        return await command(principal, case_id, lambda case, now: case.reopen(now))

    @router.post(
        "/cases/{case_id}/transfer",
        summary="The youth moved: close here, the other PSAD opens a case",
        responses=command_answers,
    )
    async def transfer(case_id: uuid.UUID, body: TransferIn, principal: Principal = counsellor) -> dict:
        return await command(principal, case_id, lambda case, now: case.transfer(body.to_psad_id, now))

    @router.post(
        "/cases/{case_id}/assign",
        summary="Take a case, give it to a colleague, or put it back in the queue",
        responses=command_answers,
    )
    async def assign(case_id: uuid.UUID, body: AssignIn, principal: Principal = counsellor) -> dict:
        return await command(principal, case_id, lambda case, now: case.assign(body.owner, now))

    @router.get(
        "/stats",
        summary="Counts by status and territory (ops: every territory; counsellor: theirs)",
        responses=error_responses(401, 403),
    )
    async def stats(principal: Principal = counts_reader) -> dict:
        departement = None if principal.role is Role.OPS else principal.territory
        return await cases.stats(unit_of_work(), departement, datetime.now(UTC).date())

    return router
