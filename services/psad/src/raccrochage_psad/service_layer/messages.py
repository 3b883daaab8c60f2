"""From the domain events a case records to the integration events other services read.

Only the events of the contract go out; the others (owner assigned, solution confirmed, ...)
show in `psad.case.status_changed.v1` or stay inside PSAD. Every event is keyed by its case, so
the relay keeps a case's events in order.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

import pydantic_core
from raccrochage_contracts import CloudEvent, Payload
from raccrochage_contracts.envelope import schema_uri
from raccrochage_contracts.events import psad_v1 as contract
from raccrochage_contracts.psads import departement_of_psad
from raccrochage_platform.uow import AbstractUnitOfWork

from ..domain import events
from ..domain.case import Case
from ..domain.deadlines import DEFAULT_POLICY, Policy
from .unit_of_work import PsadUnitOfWork

REQUEST_NAMESPACE = uuid.UUID("5b8f0f1e-8d7c-4c55-9a37-7b3c1f6c2d10")


def request_id(case_id: str, solution_number: int) -> uuid.UUID:
    """The id a provider quotes when it answers a solution request: derived, so nothing to store."""
    return uuid.uuid5(REQUEST_NAMESPACE, f"{case_id}/{solution_number}")


def payloads(case: Case, policy: Policy = DEFAULT_POLICY) -> Iterator[Payload]:
    """The contract payloads for the events the case recorded since it was loaded."""
    ids = {"case_id": uuid.UUID(case.case_id), "youth_id": case.youth_id, "psad_id": case.psad_id}
    for event in case.events:
        match event:
            case events.CaseOpened():
                yield contract.CaseOpened(
                    **ids,
                    departement=case.departement,
                    zap=case.zap,
                    age=event.age,
                    episode=1,
                    opened_at=event.at,
                )
            case events.CaseReopened():
                yield contract.CaseOpened(
                    **ids,
                    departement=case.departement,
                    zap=case.zap,
                    age=case.age_on(event.at.date()),
                    episode=event.episode,
                    opened_at=event.at,
                )
            case events.StatusChanged():
                yield contract.CaseStatusChanged(
                    **ids,
                    from_status=event.from_status.value,
                    to_status=event.to_status.value,
                    action=event.action.value,
                    at=event.at,
                )
            case events.CaseClosed():
                yield contract.CaseClosed(
                    **ids, reason=event.reason.value, found_base=event.found_base, closed_at=event.at
                )
            case events.CaseTransferred():
                yield contract.CaseTransferred(
                    **ids,
                    to_psad_id=event.to_psad_id,
                    departement=departement_of_psad(event.to_psad_id),
                    age=case.age_on(event.at.date()),
                    transferred_at=event.at,
                )
            case events.ContactRecorded():
                yield contract.ContactRecorded(
                    **ids,
                    attempt_number=event.attempt_number,
                    channel=event.channel.value,
                    outcome=event.outcome.value,
                    at=event.at,
                )
            case events.InterviewScheduled():
                yield contract.InterviewScheduled(
                    **ids,
                    interview_number=event.interview_number,
                    scheduled_for=event.scheduled_for,
                    with_role=event.with_role.value,
                    deadline=case.interview_deadline(policy),
                    at=event.at,
                )
            case events.InterviewRecorded():
                yield contract.InterviewRecorded(
                    **ids, interview_number=event.interview_number, outcome=event.outcome.value, at=event.at
                )
            case events.SolutionRequested():
                yield contract.SolutionRequested(
                    **ids,
                    request_id=request_id(case.case_id, event.solution_number),
                    solution_number=event.solution_number,
                    kind=event.kind.value,
                    provider=event.provider.value,
                    age=event.age,
                    last_training=event.level,
                    last_diploma=event.last_diploma,
                    months_since_leaving=event.months_since_leaving,
                    departement=event.departement,
                    zap=event.zap,
                    wishes=list(event.wishes),
                    requested_at=event.at,
                )
            case events.EscalationRaised():
                yield contract.EscalationRaised(
                    **ids,
                    departement=event.departement,
                    age=event.age,
                    first_contact_on=event.first_contact_on,
                    raised_on=event.raised_on,
                )
            case _:
                continue  # internal to PSAD


def envelopes(
    uow: AbstractUnitOfWork, case: Case, cause: CloudEvent | None = None, policy: Policy = DEFAULT_POLICY
) -> list[CloudEvent]:
    """Envelopes for the case's new events, and the case's event list emptied. With a cause, the
    ids derive from it: handling the same event again produces the same events, not new ones."""
    out = []
    for index, payload in enumerate(payloads(case, policy)):
        event_id = uuid5(cause.id, f"{payload.event_type}/{case.case_id}/{index}") if cause else None
        out.append(uow.event(payload, subject=case.case_id, cause=cause, event_id=event_id))
    case.events.clear()
    return out


def add_case_events(uow: PsadUnitOfWork, case: Case, cause: CloudEvent | None = None) -> None:
    """The case's new events (`envelopes`), published if, and only if, `uow` commits."""
    uow.add_events(envelopes(uow, case, cause, uow.policy))


_OPENED_TYPE = contract.CaseOpened.event_type
_OPENED_SCHEMA = schema_uri(_OPENED_TYPE)


def opened_envelopes(uow: AbstractUnitOfWork, opened: Sequence[tuple[Case, CloudEvent]]) -> list[CloudEvent]:
    """`envelopes` for a batch of cases just opened (`Case.open`), each by its cause: the same
    ids and fields, the payload written as the dict the contract model would dump instead of
    through the model (a campaign hands thousands of youths over at once, and building then
    dumping a model per case was most of PSAD's work per case). Its fields are those of the
    `youth.identified` each cause carried, validated on receipt against the same constraints;
    the first payload of the batch is compared with what the contract model makes of it, so
    that a builder gone wrong fails the batch instead of publishing. Tested equal to
    `envelopes`."""
    out = []
    for case, cause in opened:
        (opening,) = case.events
        if not isinstance(opening, events.CaseOpened):
            raise ValueError(f"case {case.case_id} was not just opened")
        data = {
            "case_id": case.case_id,
            "youth_id": case.youth_id,
            "psad_id": case.psad_id,
            "departement": case.departement,
            "age": opening.age,
            "episode": 1,
            "opened_at": _json_time(opening.at),
        }
        if case.zap is not None:
            data["zap"] = case.zap
        out.append(
            CloudEvent(
                id=uuid5_str(cause.id, f"{_OPENED_TYPE}/{case.case_id}/0"),  # read into a UUID
                source=uow.source,
                type=_OPENED_TYPE,
                time=opening.at,
                subject=case.case_id,
                dataschema=_OPENED_SCHEMA,
                data=data,
                correlationid=cause.correlationid,
                causationid=cause.id,
            )
        )
        case.events.clear()
    if out:
        first = out[0].data
        if contract.CaseOpened.model_validate(first).model_dump(mode="json", exclude_none=True) != first:
            raise ValueError(f"case.opened of case {out[0].subject} differs from its contract's")
    return out


def _json_time(moment: datetime) -> str:
    """A time as the contract models write it in JSON."""
    return pydantic_core.to_jsonable_python(moment)


def uuid5(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """`uuid.uuid5(namespace, name)`, with less work (hot paths)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(digest))


def uuid5_str(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))`, without building the UUID objects (hot paths)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
