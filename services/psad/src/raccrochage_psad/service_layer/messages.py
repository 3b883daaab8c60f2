"""From the domain events a case records to the integration events other services read.

Only the events of the contract go out; the others (owner assigned, solution confirmed, ...)
show in `psad.case.status_changed.v1` or stay inside PSAD. Every event is keyed by its case, so
the relay keeps a case's events in order.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

import pydantic_core
from raccrochage_contracts import CloudEvent, Payload
from raccrochage_contracts.envelope import schema_uri
from raccrochage_contracts.events import psad_v1 as contract
from raccrochage_platform.outbox import OutboxWriter

from ..domain import events
from ..domain.case import Case
from ..domain.deadlines import DEFAULT_POLICY, Policy

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
                    departement=_departement_of(event.to_psad_id, case.departement),
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


def _departement_of(psad_id: str, fallback: str) -> str:
    """psad-<département>-<name>: the destination's département, from its id."""
    parts = psad_id.split("-")
    return parts[1].upper() if len(parts) > 1 and parts[1] else fallback


def envelopes(
    outbox: OutboxWriter, case: Case, cause: CloudEvent | None = None, policy: Policy = DEFAULT_POLICY
) -> list[CloudEvent]:
    """Envelopes for the case's new events, and the case's event list emptied. With a cause, the
    ids derive from it: handling the same event again produces the same events, not new ones."""
    out = []
    for index, payload in enumerate(payloads(case, policy)):
        event_id = uuid.uuid5(cause.id, f"{payload.event_type}/{case.case_id}/{index}") if cause else None
        out.append(outbox.envelope(payload, subject=case.case_id, cause=cause, event_id=event_id))
    case.events.clear()
    return out


def uuid5_str(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))`, without building the UUID objects (hot paths)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_OPENED_TYPE = contract.CaseOpened.event_type
_NOTHING_TO_ESCAPE = re.compile(r"[0-9A-Za-z-]*").fullmatch


def opened_envelopes(
    outbox: OutboxWriter, opened: Sequence[tuple[Case, CloudEvent]], at: datetime
) -> list[tuple[str, str, bytes]]:
    """`envelopes` for a batch of cases just opened at `at`, each by its cause, as (event id,
    case id, envelope JSON): the same ids and fields `envelopes` gives, written from one JSON
    template instead of two models per case (a third of PSAD's CPU per opened case went there).
    The payload's fields are those of the `youth.identified` just validated against the same
    constraints (its ids and département match patterns that need no JSON escaping), and the first envelope of the batch is read back by the contract models
    (strictly: no unknown field), so a template that went wrong fails the batch instead of
    publishing. Tested equal to `envelopes` (test_messages.py)."""
    template = "".join(
        (
            '{"specversion":"1.0","id":"%s","source":',
            json.dumps(outbox.source),
            ',"type":"',
            _OPENED_TYPE,
            '","time":',
            pydantic_core.to_json(at).decode(),
            ',"subject":"%s","dataschema":',
            json.dumps(schema_uri(_OPENED_TYPE)),
            ',"datacontenttype":"application/json","data":{"case_id":"%s","youth_id":"%s","psad_id":"%s",',
            '"departement":"%s",%s"age":%d,"episode":1,"opened_at":',
            pydantic_core.to_json(at).decode(),
            '},"correlationid":"%s","causationid":"%s"}',
        )
    )
    dumps = json.dumps
    out = []
    for case, cause in opened:
        (opening,) = case.events
        if not isinstance(opening, events.CaseOpened) or opening.at != at:
            raise ValueError(f"case {case.case_id} was not just opened at {at}")
        event_id = uuid5_str(cause.id, f"{_OPENED_TYPE}/{case.case_id}/0")
        cause_id = str(cause.id)
        zap = "" if case.zap is None else f'"zap":{dumps(case.zap)},'
        # youth_id, psad_id and departement match the contract's patterns (letters, digits, "-"):
        # nothing to escape (json.dumps cost 1.2 µs each), checked at once; the ZAP is free text.
        if not _NOTHING_TO_ESCAPE(case.youth_id + case.psad_id + case.departement):
            raise ValueError(f"case {case.case_id}: an id or département outside the contract's patterns")
        body = template % (
            event_id,
            case.case_id,
            case.case_id,
            case.youth_id,
            case.psad_id,
            case.departement,
            zap,
            opening.age,
            cause_id if cause.correlationid == cause.id else str(cause.correlationid),
            cause_id,
        )
        out.append((event_id, case.case_id, body.encode()))
        case.events.clear()
    if out:
        contract.CaseOpened.model_validate(CloudEvent.from_json(out[0][2]).data)
    return out
