"""Synthetic event streams for ops' tests and benchmark: a campaign's youths through the funnel.

Payloads start from the contracts' own examples (contracts/examples) with the fields that vary
replaced, so they are valid by construction and follow the contracts as they change. Every
youth_id is a made-up hash: no person behind it.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from raccrochage_contracts import Payload
from raccrochage_contracts.psads import ACADEMIE_PSADS
from raccrochage_contracts.registry import load_all

EXAMPLES = Path(__file__).resolve().parents[4] / "contracts" / "examples"
DEPARTEMENTS = ("33", "40", "47", "64", "24")
# Every département of metropolitan France, for a national campaign (the benchmark's).
NATIONAL = tuple(f"{n:02d}" for n in range(1, 96) if n != 20) + ("2A", "2B")
# Each département's known PSADs (events name known PSADs only: raccrochage_contracts.psads):
# the académie's, one per ZAP; elsewhere the département's own PSAD.
PSADS = {dep: sorted(p for p in ACADEMIE_PSADS if p.startswith(f"psad-{dep}-")) for dep in DEPARTEMENTS}
CLOSE_REASONS = (
    "reached_solution",
    "found_in_partner_base",
    "refuses_support",
    "moved",
    "unreachable_after_reminders",
)
KINDS = ("foquale_seat", "mlds_paps", "apprenticeship", "job", "service_civique")


@cache
def template(event_type: str) -> dict[str, Any]:
    path = sorted((EXAMPLES / event_type).glob("*.json"))[0]
    return json.loads(path.read_text(encoding="utf-8"))["data"]


def payload(event_type: str, **fields: Any) -> Payload:
    return load_all().model(event_type).model_validate({**template(event_type), **fields})


def youth_id(n: int, seed: int = 0) -> str:
    return hashlib.sha256(f"synthetic-youth-{seed}-{n}".encode()).hexdigest()


def _uuid(*parts: Any) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(":".join(map(str, parts)).encode()).hexdigest())


def campaign(
    youths: int,
    *,
    seed: int = 0,
    campaign_id: str = "2026-11",
    start: datetime | None = None,
    departements: tuple[str, ...] = DEPARTEMENTS,
) -> list[tuple[str, Payload]]:
    """(event type, payload) in the order each producer would publish them: a campaign file,
    then per youth its hand-over, case, contacts, interview, solution or closing; seats, MLDS
    candidacies and clauses beside; two PSADs per département. Deterministic for a seed."""
    rng = random.Random(seed)
    start = start or datetime(2026, 11, 2, 9, tzinfo=UTC)
    as_of = start.date()
    events: list[tuple[str, Payload]] = [
        (
            "reperage.campaign.ingested.v1",
            payload(
                "reperage.campaign.ingested.v1",
                campaign_id=campaign_id,
                as_of=as_of.isoformat(),
                rows=youths + youths // 4,
                rejected=youths // 50,
                duplicates=youths // 40,
                excluded=youths // 5,
                identified=youths,
                reported_again=0,
            ),
        )
    ]
    offers = []
    for o in range(max(1, youths // 20)):
        dep = departements[o % len(departements)]
        offer_id = _uuid("offer", seed, o)
        offers.append((offer_id, dep))
        events.append(
            (
                "foquale.seat.published.v1",
                payload(
                    "foquale.seat.published.v1",
                    offer_id=str(offer_id),
                    departement=dep,
                    capacity=10,
                    seats_left=10,
                    published_at=start.isoformat(),
                    last_confirmed_at=start.isoformat(),
                ),
            )
        )
    for n in range(youths):
        yid = youth_id(n, seed)
        dep = departements[n % len(departements)]
        psads = PSADS.get(dep) or [f"psad-{dep.lower()}"]
        psad = psads[n % len(psads)]
        age = 16 + n % 9
        case_id = _uuid("case", seed, n)
        at = start + timedelta(hours=n % 500)
        events.append(
            (
                "reperage.youth.identified.v1",
                payload(
                    "reperage.youth.identified.v1",
                    youth_id=yid,
                    campaign_id=campaign_id,
                    psad_id=psad,
                    departement=dep,
                    age=age,
                    as_of=as_of.isoformat(),
                ),
            )
        )
        case = {"case_id": str(case_id), "youth_id": yid, "psad_id": psad}
        events.append(
            (
                "psad.case.opened.v1",
                payload("psad.case.opened.v1", **case, departement=dep, age=age, opened_at=at.isoformat()),
            )
        )
        step = rng.random()
        if step < 0.15:
            continue
        contact = at + timedelta(days=rng.randint(1, 10))
        events.append(
            (
                "psad.contact.recorded.v1",
                payload("psad.contact.recorded.v1", **case, attempt_number=1, at=contact.isoformat()),
            )
        )
        events.append(
            (
                "psad.case.status_changed.v1",
                payload(
                    "psad.case.status_changed.v1",
                    **case,
                    from_status="to_contact",
                    to_status="reached",
                    action="record_contact_attempt",
                    at=contact.isoformat(),
                ),
            )
        )
        if age < 18 and rng.random() < 0.2:
            events.append(
                (
                    "psad.escalation.raised.v1",
                    payload(
                        "psad.escalation.raised.v1",
                        **case,
                        departement=dep,
                        age=min(max(age, 16), 17),
                        first_contact_on=contact.date().isoformat(),
                        raised_on=(contact + timedelta(days=61)).date().isoformat(),
                    ),
                )
            )
        if step < 0.3:
            continue
        interview = contact + timedelta(days=rng.randint(2, 25))
        deadline = (contact + timedelta(days=15)).date()
        events.append(
            (
                "psad.interview.scheduled.v1",
                payload(
                    "psad.interview.scheduled.v1",
                    **case,
                    interview_number=1,
                    scheduled_for=interview.isoformat(),
                    deadline=deadline.isoformat(),
                    at=contact.isoformat(),
                ),
            )
        )
        events.append(
            (
                "psad.interview.recorded.v1",
                payload(
                    "psad.interview.recorded.v1",
                    **case,
                    interview_number=1,
                    outcome="seen",
                    at=interview.isoformat(),
                ),
            )
        )
        if step < 0.55:
            reason = CLOSE_REASONS[n % len(CLOSE_REASONS)]
            closed = interview + timedelta(days=3)
            events.append(
                (
                    "psad.case.status_changed.v1",
                    payload(
                        "psad.case.status_changed.v1",
                        **case,
                        from_status="interview_held",
                        to_status="closed",
                        action="close",
                        at=closed.isoformat(),
                    ),
                )
            )
            events.append(
                (
                    "psad.case.closed.v1",
                    payload(
                        "psad.case.closed.v1",
                        **case,
                        reason=reason,
                        found_base=None,
                        closed_at=closed.isoformat(),
                    ),
                )
            )
            continue
        kind = KINDS[n % len(KINDS)]
        requested = interview + timedelta(days=1)
        request_id = _uuid("request", seed, n)
        events.append(
            (
                "psad.solution.requested.v1",
                payload(
                    "psad.solution.requested.v1",
                    **case,
                    request_id=str(request_id),
                    solution_number=1,
                    kind=kind,
                    provider="mlds" if kind.startswith("mlds") else "foquale",
                    age=age,
                    departement=dep,
                    requested_at=requested.isoformat(),
                ),
            )
        )
        events.append(
            (
                "psad.case.status_changed.v1",
                payload(
                    "psad.case.status_changed.v1",
                    **case,
                    from_status="solution_proposed",
                    to_status="in_solution",
                    action="record_solution",
                    at=(requested + timedelta(days=2)).isoformat(),
                ),
            )
        )
        if kind == "foquale_seat":
            offer_id, _ = offers[n % len(offers)]
            reservation_id = _uuid("reservation", seed, n)
            events.append(
                (
                    "foquale.reservation.made.v1",
                    payload(
                        "foquale.reservation.made.v1",
                        reservation_id=str(reservation_id),
                        request_id=str(request_id),
                        case_id=str(case_id),
                        youth_id=yid,
                        offer_id=str(offer_id),
                        seats_left=5,
                        made_at=requested.isoformat(),
                        expires_at=(requested + timedelta(days=7)).isoformat(),
                    ),
                )
            )
            if rng.random() < 0.5:
                events.append(
                    (
                        "foquale.placement.confirmed.v1",
                        payload(
                            "foquale.placement.confirmed.v1",
                            request_id=str(request_id),
                            case_id=str(case_id),
                            youth_id=yid,
                            reservation_id=str(reservation_id),
                            seat_id=str(offer_id),
                            decided_at=(requested + timedelta(days=2)).isoformat(),
                        ),
                    )
                )
        if kind == "mlds_paps":
            candidacy_id = _uuid("candidacy", seed, n)
            events.append(
                (
                    "mlds.candidacy.received.v1",
                    payload(
                        "mlds.candidacy.received.v1",
                        candidacy_id=str(candidacy_id),
                        youth_id=yid,
                        departement=dep,
                        received_at=requested.isoformat(),
                        request_id=str(request_id),
                        case_id=str(case_id),
                    ),
                )
            )
    for c in range(max(1, youths // 100)):
        dep = departements[c % len(departements)]
        clause_id = _uuid("clause", seed, c)
        events.append(
            (
                "clause.clause.published.v1",
                payload(
                    "clause.clause.published.v1",
                    clause_id=str(clause_id),
                    departement=dep,
                    hours_required=200,
                    published_at=start.isoformat(),
                ),
            )
        )
        mission_id = _uuid("mission", seed, c)
        events.append(
            (
                "clause.mission.declared.v1",
                payload(
                    "clause.mission.declared.v1",
                    mission_id=str(mission_id),
                    clause_id=str(clause_id),
                    departement=dep,
                    hours=120,
                    declared_at=start.isoformat(),
                ),
            )
        )
    return events


def stream_of(event_type: str) -> str:
    return {"reperage": "REPERAGE", "psad": "PSAD", "foquale": "FOQUALE", "mlds": "MLDS", "clause": "CLAUSE"}[
        event_type.split(".")[0]
    ]
