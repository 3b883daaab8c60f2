"""What PSAD does with repérage's events: open cases, note a youth reported again, close on found.

These run inside the unit of work of the consumer that received the events (it claims them in
its inbox and commits): they change cases and add events, and never commit.

`youth.identified` comes in batches (a campaign hands over thousands of youths at once), so it is
handled a batch at a time: one lookup-and-insert, one outbox insert at commit. The database
guarantees one open case per youth; a youth whose case another process opened meanwhile is
simply skipped. `youth.found` too (partners report enrolments all day long): one locked read, one
update.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.psad_v1 import CaseTransferred
from raccrochage_contracts.events.reperage_v1 import YouthFound, YouthIdentified, YouthReportedAgain
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger

from ..domain.case import Case
from ..domain.states import TransitionRefused
from .messages import add_case_events, opened_envelopes, uuid5_str
from .unit_of_work import PsadUnitOfWork

log = get_logger(__name__)


class CaseNotYetOpened(Exception):
    """`found` for a youth with no case at all: its `identified` may still be on its way (retry)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _case_id(cause: CloudEvent, youth_id: str, psad_id: str) -> str:
    """Derived from the event that opens the case: handling it again names the same case."""
    return uuid5_str(cause.id, f"{youth_id}/{psad_id}")


async def open_cases(uow: PsadUnitOfWork, batch: Sequence[Event[YouthIdentified]]) -> int:
    """Open a case per handed-over youth; returns how many were opened (new or reopened).

    One statement looks up the youths' cases and inserts the new ones (`open_new`). A youth with
    an open case is skipped; one whose case was closed in the same PSAD gets it reopened (rare:
    one at a time)."""
    now = _now()
    new_cases: dict[str, tuple[Case, Event[YouthIdentified]]] = {}
    for event in batch:
        data = event.data
        if data.youth_id in new_cases:
            opening = new_cases[data.youth_id][0]
            log.info("youth_already_has_open_case", case_id=opening.case_id, event_id=str(event.envelope.id))
            continue
        case = Case.open(
            _case_id(event.envelope, data.youth_id, data.psad_id),
            data.youth_id,
            data.psad_id,
            data.departement,
            data.age,
            now,
            zap=data.zap,
            level=data.last_training,
            last_diploma=data.last_diploma,
            months_since_leaving=data.months_since_leaving,
        )
        new_cases[data.youth_id] = (case, event)
    if not new_cases:
        return 0
    inserted, known = await uow.cases.open_new([case for case, _ in new_cases.values()])
    opened: list[tuple[Case, CloudEvent]] = []
    reopen: list[tuple[str, Event[YouthIdentified]]] = []
    for youth_id, (case, event) in new_cases.items():
        if case.case_id in inserted:
            opened.append((case, event.envelope))
            continue
        latest = known.get(youth_id)
        if latest is None:
            continue  # another process opened this youth's case meanwhile
        if latest.is_open:
            log.info("youth_already_has_open_case", case_id=latest.case_id, event_id=str(event.envelope.id))
        elif latest.psad_id == event.data.psad_id and latest.transferred_to is None:
            reopen.append((latest.case_id, event))
    uow.add_events(opened_envelopes(uow, opened))
    count = len(opened)
    for case_id, event in reopen:
        count += await _reopen(uow, case_id, event, now)
    return count


async def _reopen(uow: PsadUnitOfWork, case_id: str, event: Event[YouthIdentified], now: datetime) -> int:
    """Handed over again after its case was closed: a new episode of the same case."""
    if await uow.cases.open_case_of(event.data.youth_id, lock=False) is not None:
        return 0
    case = await uow.cases.get(case_id)
    try:
        case.reopen(max(now, case.updated_at), handed_over_at=event.envelope.time)
    except TransitionRefused as refused:
        log.info("case_not_reopened", case_id=case.case_id, reason=str(refused))
        return 0
    await uow.cases.save(case)
    add_case_events(uow, case, event.envelope)
    return 1


async def reported_again(uow: PsadUnitOfWork, event: Event[YouthReportedAgain]) -> None:
    """Still found nowhere in a later campaign: the open case notes it; nothing else changes."""
    case = await uow.cases.open_case_of(event.data.youth_id, lock=False)
    if case is None:
        log.info("reported_again_without_open_case", event_id=str(event.envelope.id))
        return
    await uow.cases.touch_reported(case.case_id, event.data.as_of)
    if case.psad_id != event.data.psad_id:
        log.info("reported_again_elsewhere", case_id=case.case_id, psad_id=event.data.psad_id)


async def found(uow: PsadUnitOfWork, batch: Sequence[Event[YouthFound]]) -> int:
    """Enrolled in a partner base: each open case closes as found there. A batch at a time (one
    locked read, one update). Returns how many cases closed; raises CaseNotYetOpened for a youth
    PSAD has no case for yet. A closed case keeps the event's time (`Case.note_found`)."""
    youth_ids = list(dict.fromkeys(event.data.youth_id for event in batch))
    cases = {case.youth_id: case for case in await uow.cases.open_cases_of(youth_ids)}
    now, closed = _now(), []
    for event in batch:
        case = cases.get(event.data.youth_id)
        if case is None:
            if (found_open := await _found_without_open_case(uow, event)) is not None:
                cases[event.data.youth_id] = found_open
                closed.append(found_open)
            continue
        if not case.is_open:  # closed by an earlier event of the batch
            case.note_found(event.envelope.time)
            continue
        case.mark_found(event.data.base, max(now, case.updated_at), event.envelope.time)
        add_case_events(uow, case, event.envelope)
        closed.append(case)
    await uow.cases.save_many(closed)
    return len(closed)


async def _found_without_open_case(uow: PsadUnitOfWork, event: Event[YouthFound]) -> Case | None:
    """The youth's latest case is closed: it keeps the event's time, so that a hand-over emitted
    before this event, still on its way (another process of PSAD holds it), does not reopen it.
    Returned if a hand-over reopened it meanwhile (its lock waited for): then it closes as found."""
    latest = await uow.cases.latest_cases([event.data.youth_id])
    if not latest:
        raise CaseNotYetOpened(f"no case yet for the youth of event {event.envelope.id}")
    (stored,) = latest.values()
    case = await uow.cases.get(stored.case_id)
    if case.is_open:
        case.mark_found(event.data.base, max(_now(), case.updated_at), event.envelope.time)
        add_case_events(uow, case, event.envelope)
        return case
    log.info("found_case_already_closed", case_id=case.case_id, event_id=str(event.envelope.id))
    case.note_found(event.envelope.time)
    await uow.cases.save(case)
    return None


async def transferred_in(uow: PsadUnitOfWork, event: Event[CaseTransferred]) -> None:
    """The destination PSAD of a transfer opens its own case for the youth."""
    data = event.data
    if (open_case := await uow.cases.open_case_of(data.youth_id, lock=False)) is not None:
        log.info("transfer_target_has_open_case", case_id=open_case.case_id, event_id=str(event.envelope.id))
        return
    case = Case.open(
        _case_id(event.envelope, data.youth_id, data.to_psad_id),
        data.youth_id,
        data.to_psad_id,
        data.departement,
        data.age,
        _now(),
    )
    if await uow.cases.insert_new([case]):
        add_case_events(uow, case, event.envelope)
