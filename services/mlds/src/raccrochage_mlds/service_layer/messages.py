"""The boundary with contracts/: a PSAD request read as facts, domain events written as mlds_v1
integration events (no fact value, no identity beyond youth_id)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events import mlds_v1
from raccrochage_contracts.events.psad_v1 import SolutionRequested

from ..domain import events
from ..domain.candidacy import Candidacy
from ..domain.catalogue import Dispositif, DispositifKind
from ..domain.dates import Dated
from ..domain.eligibility import Decision
from ..domain.facts import Facts, level_from_label
from .unit_of_work import MldsUnitOfWork

# What a PSAD may ask the MLDS for. A clause sociale de formation needs the youth "inscrit sur une
# action MLDS": in the académie that action is a PAPS.
REQUESTED_KINDS: Mapping[str, DispositifKind] = {
    "mlds_paps": DispositifKind.PAPS,
    "mlds_dipa": DispositifKind.DIPA,
    "mlds_micro_lycee": DispositifKind.MICRO_LYCEE,
    "clause_sociale_via_mlds": DispositifKind.PAPS,
}
SITE_WISH_PREFIX = "mlds:"  # a wish "mlds:paps-33-04" names the site the PSAD proposes


def facts_from_request(request: SolutionRequested) -> Facts:
    """What a PSAD request tells: the youth left school (repérage finds youths who left), has no
    solution (that is why the PSAD asks), was proposed by a PSAD; age, months since leaving,
    diploma and the level the training label shows, each on the day of the request."""
    day = request.requested_at.date()
    diploma = request.last_diploma
    return Facts(
        age=Dated(request.age, day),
        months_out_of_school=(
            Dated(request.months_since_leaving, day) if request.months_since_leaving is not None else None
        ),
        still_enrolled=False,
        holds_dnb=None if diploma is None else diploma == "DNB",
        # "AUCUN" or "DNB": repérage hands over youths without a qualifying diploma.
        qualifying_diploma=None if diploma is None else False,
        level_reached=level_from_label(request.last_training),
        referred_by_psad=True,
        has_solution=False,
    )


def wished_site(request: SolutionRequested) -> str | None:
    for wish in request.wishes:
        if wish.startswith(SITE_WISH_PREFIX):
            return wish.removeprefix(SITE_WISH_PREFIX)
    return None


def decision_payload(candidacy: Candidacy, decision: Decision) -> mlds_v1.CandidacyDecided:
    return mlds_v1.CandidacyDecided(
        candidacy_id=candidacy.candidacy_id,
        youth_id=candidacy.youth_id,
        dispositif=decision.kind.value,
        decision_number=decision.number,
        outcome=decision.outcome.value,
        # As mappings: CandidacyDecided validates them as RuleResult in its own pass (the same
        # rules, extra fields refused), at half the cost of a model built per rule.
        rules=[
            {
                "code": r.code,
                "outcome": r.verdict.value,
                "facts": [f.value for f in r.facts],
                "missing_facts": [f.value for f in r.missing],
                "applies_from": r.applies_from,
            }
            for r in decision.results
        ],
        rights=[r.value for r in decision.rights],
        under_obligation_de_formation=decision.under_obligation_de_formation,
        decided_at=decision.decided_at,
    )


def answer_payload(candidacy: Candidacy, answer: events.RequestAnswered, site: Dispositif | None):
    request = candidacy.request
    assert request is not None
    common = {
        "request_id": request.request_id,
        "case_id": request.case_id,
        "youth_id": candidacy.youth_id,
        "decided_at": answer.at,
        "dispositif": candidacy.kind.value,
        "candidacy_id": candidacy.candidacy_id,
    }
    if answer.accepted:
        assert candidacy.admission is not None
        return mlds_v1.EnrolmentAccepted(
            **common,
            structure_uai=site.host_uai if site else None,
            starts_on=candidacy.admission.starts_on,
            dispositif_id=candidacy.admission.dispositif_id,
        )
    refusal = candidacy.refusal
    return mlds_v1.EnrolmentRefused(
        **common,
        reason=answer.refusal,
        failed_rules=list(refusal.failed_rules) if refusal and refusal.failed_rules else None,
        failed_step=refusal.failed_step if refusal else None,
    )


def dispositif_updated(site: Dispositif, change: str) -> mlds_v1.DispositifUpdated:
    assert site.updated_at is not None
    return mlds_v1.DispositifUpdated(
        dispositif_id=site.dispositif_id,
        dispositif=site.kind.value,
        departement=site.departement,
        host_establishment=site.host_establishment,
        host_uai=site.host_uai,
        city=site.city,
        capacity=site.capacity,
        places_taken=site.places_taken,
        places_left=site.places_left,
        entries=site.sessions.entries.value,
        change=change,
        revision=site.revision,
        updated_at=site.updated_at,
    )


def publish_site(uow: MldsUnitOfWork, site: Dispositif, change: str, cause: CloudEvent | None = None) -> None:
    uow.add_event(dispositif_updated(site, change), subject=site.dispositif_id, cause=cause)


def publish_candidacy(
    uow: MldsUnitOfWork,
    candidacy: Candidacy,
    site: Dispositif | None = None,
    cause: CloudEvent | None = None,
) -> None:
    """The candidacy's recorded events as integration events, added to the unit of work (they
    are published if it commits); the aggregate's list is emptied. `site` is the candidacy's site
    when it has one (enrolments carry its département)."""
    subject = str(candidacy.candidacy_id)
    request = candidacy.request
    correlation = (
        {"cause": cause} if cause else {"correlationid": request.correlation_id if request else None}
    )
    for event in candidacy.events:
        payload = _payload(candidacy, event, site)
        if payload is None:
            continue
        if isinstance(event, events.RequestAnswered):
            assert request is not None
            target = str(request.request_id)
        else:
            target = subject
        event_id = uuid.uuid5(cause.id, f"{payload.event_type}/{target}") if cause else None
        uow.add_event(payload, subject=target, event_id=event_id, **correlation)
    candidacy.events.clear()


def _payload(candidacy: Candidacy, event: events.DomainEvent, site: Dispositif | None):
    match event:
        case events.CandidacyReceived():
            age = candidacy.facts.age
            assert age is not None
            return mlds_v1.CandidacyReceived(
                candidacy_id=candidacy.candidacy_id,
                youth_id=candidacy.youth_id,
                dispositif=candidacy.kind.value,
                dispositif_id=candidacy.dispositif_id,
                departement=candidacy.departement,
                age=age.value,
                channel=candidacy.channel.value,
                request_id=candidacy.request.request_id if candidacy.request else None,
                case_id=candidacy.request.case_id if candidacy.request else None,
                received_at=candidacy.received_at,
            )
        case events.CandidacyDecided(decision=decision):
            return decision_payload(candidacy, decision)
        case events.RequestAnswered():
            return answer_payload(candidacy, event, site)
        case events.EnrolmentStarted():
            enrolment = candidacy.enrolment
            assert enrolment is not None and site is not None
            return mlds_v1.EnrolmentStarted(
                candidacy_id=candidacy.candidacy_id,
                youth_id=candidacy.youth_id,
                dispositif=candidacy.kind.value,
                dispositif_id=site.dispositif_id,
                departement=site.departement,
                age=enrolment.age,
                under_obligation_de_formation=enrolment.under_obligation_de_formation,
                pafi=candidacy.pafi is not None,
                started_on=enrolment.started_on,
                recorded_at=enrolment.at,
            )
        case events.EnrolmentExited():
            exit_, enrolment = candidacy.exit, candidacy.enrolment
            assert exit_ is not None and enrolment is not None and site is not None
            return mlds_v1.EnrolmentExited(
                candidacy_id=candidacy.candidacy_id,
                youth_id=candidacy.youth_id,
                dispositif=candidacy.kind.value,
                dispositif_id=site.dispositif_id,
                departement=site.departement,
                started_on=enrolment.started_on,
                exited_on=exit_.exited_on,
                destination=exit_.destination.value,
                school_level=exit_.school_level.value if exit_.school_level else None,
                droit_au_maintien=exit_.droit_au_maintien,
                diploma_obtained=exit_.diploma_obtained.value if exit_.diploma_obtained else None,
                recorded_at=exit_.at,
            )
    return None  # admission steps, admissions, refusals, withdrawals: the MLDS's own record
