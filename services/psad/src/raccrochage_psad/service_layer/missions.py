"""What PSAD does with the clause sociale's events: a mission that ends in a job or an
apprenticeship is the youth's solution (`Case.record_solution_found`).

Runs inside the unit of work of the consumer that received the event (it claims it in its inbox
and commits). A mission that ends otherwise (training, a new MLDS action, nothing) leaves the
case to its counsellor; a youth with no open case here changes nothing: both are acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from raccrochage_contracts.events.clause_v1 import MissionCompleted
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger

from ..domain.solution import SolutionKind
from ..domain.states import CaseError
from .messages import add_case_events
from .unit_of_work import PsadUnitOfWork

log = get_logger(__name__)

# The outcomes of a mission that are a solution for the PSAD, and which.
SOLUTION_OF_OUTCOME: Mapping[str, SolutionKind] = {
    "job": SolutionKind.JOB,
    "apprenticeship": SolutionKind.APPRENTICESHIP,
}


async def mission_completed(uow: PsadUnitOfWork, event: Event[MissionCompleted]) -> bool:
    """The youth's open case takes the mission's outcome as its solution (in solution with that
    kind, or closed as reached_solution before the solution stage). False when nothing changed.
    Logs name the mission, never the youth."""
    data = event.data
    kind = SOLUTION_OF_OUTCOME.get(data.outcome)
    if kind is None:
        log.debug("mission_outcome_not_a_solution", mission_id=str(data.mission_id), outcome=data.outcome)
        return False
    case = await uow.cases.open_case_of(data.youth_id)
    if case is None:
        log.info("mission_completed_without_open_case", mission_id=str(data.mission_id), outcome=data.outcome)
        return False
    try:
        case.record_solution_found(kind, max(datetime.now(UTC), case.updated_at), uow.policy)
    except CaseError as error:
        log.warning("mission_outcome_refused_by_case", case_id=case.case_id, reason=str(error))
        return False
    await uow.cases.save(case)
    add_case_events(uow, case, event.envelope)
    log.info(
        "solution_found_in_mission", case_id=case.case_id, mission_id=str(data.mission_id), kind=kind.value
    )
    return True
