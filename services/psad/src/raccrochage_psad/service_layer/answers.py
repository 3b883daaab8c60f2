"""Answers from the services that provide solutions: FOQUALE seats, MLDS dispositifs.

An answer quotes the request it answers. One that no longer matches the case (the counsellor
proposed something else since, or closed the case) changes nothing: it is logged and counted,
so that the provider's reservation can be released by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime

from raccrochage_contracts.events.foquale_v1 import PlacementConfirmed, PlacementRefused
from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted, EnrolmentRefused
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger

from ..adapters.repository import CaseNotFound
from ..domain.states import CaseError
from .messages import add_case_events, request_id
from .unit_of_work import PsadUnitOfWork

log = get_logger(__name__)

Answer = PlacementConfirmed | PlacementRefused | EnrolmentAccepted | EnrolmentRefused


async def apply_answer(uow: PsadUnitOfWork, event: Event[Answer]) -> bool:
    """Move the case to in solution (confirmed) or back to the solution stage (refused), inside
    the consumer's unit of work. False when the answer is stale and changed nothing."""
    data = event.data
    try:
        case = await uow.cases.get(data.case_id)
    except CaseNotFound:
        log.warning("answer_for_unknown_case", case_id=str(data.case_id), event_type=event.envelope.type)
        return False
    solution = case.current_solution
    if solution is None or request_id(case.case_id, solution.number) != data.request_id:
        log.warning(
            "stale_answer", case_id=case.case_id, status=case.status.value, event_type=event.envelope.type
        )
        return False
    now = max(datetime.now(UTC), case.updated_at)
    try:
        if isinstance(data, PlacementConfirmed | EnrolmentAccepted):
            case.confirm_solution(now, uow.policy, kind=solution.kind)
        else:
            case.refuse_solution(data.reason, now, kind=solution.kind)
    except CaseError as error:
        log.warning("answer_refused_by_case", case_id=case.case_id, reason=str(error))
        return False
    await uow.cases.save(case)
    add_case_events(uow, case, event.envelope)
    return True
