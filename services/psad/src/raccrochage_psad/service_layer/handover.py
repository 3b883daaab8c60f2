"""What PSAD does with repérage's events: open cases, note a youth reported again, close on found.

`youth.identified` comes in batches (a campaign hands over thousands of youths at once), so it is
handled a batch at a time: one lookup-and-insert, one outbox insert. The database guarantees one
open case per youth; a youth whose case another process opened meanwhile is simply skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.psad_v1 import CaseOpened, CaseTransferred
from raccrochage_contracts.events.reperage_v1 import YouthFound, YouthIdentified, YouthReportedAgain
from raccrochage_platform.consumer import Event
from raccrochage_platform.logging import get_logger
from raccrochage_platform.outbox import Leases, OutboxWriter

from ..adapters.repository import CaseRepository, open_cases_unlocked, save_in_one_statement
from ..domain.case import Case
from ..domain.deadlines import Policy
from ..domain.states import TransitionRefused
from .messages import envelopes, opened_envelopes, uuid5_str

log = get_logger(__name__)
_OPENED_TYPE = CaseOpened.event_type


class CaseNotYetOpened(Exception):
    """`found` for a youth with no case at all: its `identified` may still be on its way (retry)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _case_id(cause: CloudEvent, youth_id: str, psad_id: str) -> str:
    """Derived from the event that opens the case: handling it again names the same case."""
    return uuid5_str(cause.id, f"{youth_id}/{psad_id}")


async def open_cases(
    repo: CaseRepository, outbox: OutboxWriter, batch: Sequence[Event[YouthIdentified]]
) -> int:
    """Open a case per handed-over youth; returns how many were opened (new or reopened).

    One statement looks up the youths' cases and inserts the new ones (`open_new`), one inserts
    their `psad.case.opened` events. A youth with an open case is skipped; one whose case was
    closed in the same PSAD gets it reopened (rare: one at a time)."""
    now = _now()
    new_cases: dict[str, tuple[Case, Event[YouthIdentified]]] = {}
    for event in batch:
        data = event.data
        if data.youth_id in new_cases:
            log.info("youth_already_has_open_case", youth_id=data.youth_id)
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
    inserted, known = await repo.open_new([case for case, _ in new_cases.values()])
    opened, reopen = [], []
    for youth_id, (case, event) in new_cases.items():
        if case.case_id in inserted:
            opened.append((case, event.envelope))
            continue
        latest = known.get(youth_id)
        if latest is None:
            continue  # another process opened this youth's case meanwhile
        if latest["status"] != "closed":
            log.info("youth_already_has_open_case", youth_id=youth_id)
        elif latest["psad_id"] == event.data.psad_id and latest["transferred_to"] is None:
            reopen.append(event)
    if opened:
        await repo.add_json(outbox, _OPENED_TYPE, opened_envelopes(outbox, opened, now), new_cases=True)
    count = len(opened)
    for event in reopen:
        count += await _reopen(repo, outbox, event, now)
    return count


async def _reopen(
    repo: CaseRepository, outbox: OutboxWriter, event: Event[YouthIdentified], now: datetime
) -> int:
    """Handed over again after its case was closed: a new episode of the same case."""
    if await repo.open_case_of(event.data.youth_id, lock=False) is not None:
        return 0
    latest = await repo.latest_cases([event.data.youth_id])
    case = await repo.get(latest[event.data.youth_id].case_id)
    try:
        case.reopen(max(now, case.updated_at))
    except TransitionRefused as refused:
        log.info("case_not_reopened", case_id=case.case_id, reason=str(refused))
        return 0
    await repo.save(case)
    await outbox.add_many(repo.session, envelopes(outbox, case, event.envelope, repo.policy))
    return 1


async def reported_again(repo: CaseRepository, event: Event[YouthReportedAgain]) -> None:
    """Still found nowhere in a later campaign: the open case notes it; nothing else changes."""
    case = await repo.open_case_of(event.data.youth_id, lock=False)
    if case is None:
        log.info("reported_again_without_open_case", youth_id=event.data.youth_id)
        return
    await repo.touch_reported(case.case_id, event.data.as_of)
    if case.psad_id != event.data.psad_id:
        log.info("reported_again_elsewhere", case_id=case.case_id, psad_id=event.data.psad_id)


async def found(repo: CaseRepository, outbox: OutboxWriter, batch: Sequence[Event[YouthFound]]) -> int:
    """Enrolled in a partner base: each open case closes as found there. A batch at a time (one
    locked read, one update, one outbox insert): partners report enrolments all day long.
    Returns how many cases closed."""
    cases = {case.youth_id: case for case in await repo.open_cases_of(list({e.data.youth_id for e in batch}))}
    now, closed, out = _now(), [], []
    for event in batch:
        case = cases.get(event.data.youth_id)
        if case is None or not case.is_open:
            await _found_without_open_case(repo, event)
            continue
        out.extend(_mark_found(outbox, repo.policy, case, event, now))
        closed.append(case)
    await repo.save_many_with_events(outbox, closed, out)
    return len(closed)


def _mark_found(
    outbox: OutboxWriter, policy: Policy, case: Case, event: Event[YouthFound], now: datetime
) -> list[CloudEvent]:
    """The open case closes as found in the partner's base; its events, caused by `event`."""
    case.mark_found(event.data.base, max(now, case.updated_at))
    return envelopes(outbox, case, event.envelope, policy)


async def found_in_one_statement(
    conn: asyncpg.Connection,
    outbox: OutboxWriter,
    policy: Policy,
    consumer: str,
    batch: Sequence[Event[YouthFound]],
    leases: Leases | None,
) -> bool:
    """`found` without a transaction (`EventConsumer.on_batch_in_one_statement`): the open cases
    read without a lock and closed in memory, then saved with their events and the batch's inbox
    rows in one statement that checks their versions. Two round trips instead of five. Anything
    unusual (a youth twice in the batch, one without an open case) and a case saved meanwhile
    are left to `found` (False, nothing written)."""
    youth_ids = [event.data.youth_id for event in batch]
    if len(set(youth_ids)) != len(youth_ids) or leases is None:
        return False
    read = {case.youth_id: (case, version) for case, version in await open_cases_unlocked(conn, youth_ids)}
    if len(read) != len(youth_ids):
        return False
    now, out = _now(), []
    for event in batch:
        out.extend(_mark_found(outbox, policy, read[event.data.youth_id][0], event, now))
    return await save_in_one_statement(
        conn,
        outbox,
        consumer,
        [(e.envelope.id, e.envelope.type) for e in batch],
        [read[youth_id] for youth_id in youth_ids],
        out,
        leases,
        policy,
    )


async def _found_without_open_case(repo: CaseRepository, event: Event[YouthFound]) -> None:
    if await repo.latest_cases([event.data.youth_id]):
        log.info("found_case_already_closed", youth_id=event.data.youth_id)
        return
    raise CaseNotYetOpened(f"no case for youth {event.data.youth_id} yet")


async def transferred_in(repo: CaseRepository, outbox: OutboxWriter, event: Event[CaseTransferred]) -> None:
    """The destination PSAD of a transfer opens its own case for the youth."""
    data = event.data
    if await repo.open_case_of(data.youth_id, lock=False) is not None:
        log.info("transfer_target_has_open_case", youth_id=data.youth_id)
        return
    case = Case.open(
        _case_id(event.envelope, data.youth_id, data.to_psad_id),
        data.youth_id,
        data.to_psad_id,
        data.departement,
        data.age,
        _now(),
    )
    if await repo.insert_new([case]):
        await outbox.add_many(repo.session, envelopes(outbox, case, event.envelope, repo.policy))
