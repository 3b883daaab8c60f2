"""From the domain events clauses and missions record to the integration events of the contract.

Only contract events go out; the others (a convention signed by one party, a bilan written) stay in
the service. A mission's events are keyed by the mission, a clause's by the clause, so that the
relay keeps each one's events in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from raccrochage_contracts import Payload
from raccrochage_contracts.events import clause_v1 as contract

from ..domain import events
from ..domain.bilan import BilanSignatoryRole, SkillLevel
from ..domain.clause import Clause
from ..domain.mission import Mission
from ..domain.proposal import ProposalState
from .unit_of_work import ClauseUnitOfWork


def clause_payloads(clause: Clause) -> Iterator[Payload]:
    for event in clause.events:
        match event:
            case events.ClausePublished():
                yield contract.ClausePublished(
                    clause_id=uuid.UUID(clause.clause_id),
                    buyer_id=clause.buyer.buyer_id,
                    buyer_type=clause.buyer.buyer_type.value,
                    buyer_contact_role=clause.buyer.contact_role,
                    company_id=clause.company_id,
                    contract_object=clause.contract_object,
                    departement=clause.buyer.departement,
                    notification_date=clause.notification_date,
                    firm_period_ends_on=clause.firm_period_ends_on,
                    firm_amount_eur=clause.firm_amount_eur,
                    ends_on=clause.ends_on,
                    hours_required=clause.hours_required,
                    published_at=event.at,
                )


def mission_payloads(mission: Mission) -> Iterator[Payload]:
    ids = {
        "mission_id": uuid.UUID(mission.mission_id),
        "clause_id": uuid.UUID(mission.clause_id),
        "company_id": mission.company_id,
    }
    for event in mission.events:
        match event:
            case events.MissionDeclared():
                yield contract.MissionDeclared(
                    **ids,
                    activity_domain=mission.activity_domain.value,
                    activity_comment=mission.activity_comment,
                    tasks=list(mission.tasks),
                    departement=mission.departement,
                    referent_id=mission.referent_id,
                    second_referent_id=mission.second_referent_id,
                    hours=mission.hours,
                    declared_at=event.at,
                )
            case events.StatusChanged():
                yield contract.MissionStatusChanged(
                    **ids,
                    departement=mission.departement,
                    from_status=event.from_status.value,
                    to_status=event.to_status.value,
                    action=event.action.value,
                    by_role=event.by_role.value,
                    tutor_id=event.tutor_id,
                    at=event.at,
                )
            case events.ProposalMade(proposal=proposal):
                yield contract.ProposalMade(
                    **ids,
                    proposal_id=uuid.UUID(proposal.proposal_id),
                    youth_id=proposal.youth_id,
                    tutor_id=proposal.tutor_id,
                    age=proposal.profile.age,
                    level=proposal.profile.level.value,
                    wishes=list(proposal.profile.wishes),
                    available_from=proposal.profile.available_from,
                    hours_per_week=proposal.profile.hours_per_week,
                    answer_due_at=proposal.answer_due_at,
                    made_at=proposal.made_at,
                )
            case events.AnswerReminded(proposal=proposal):
                yield contract.AnswerReminder(
                    **ids,
                    proposal_id=uuid.UUID(proposal.proposal_id),
                    buyer_id=mission.buyer_id,
                    tutor_id=proposal.tutor_id,
                    recipients=["buyer", "mlds_tutor"],
                    made_at=proposal.made_at,
                    answer_due_at=proposal.answer_due_at,
                    reminded_at=event.at,
                )
            case events.ProposalAnswered(proposal=proposal):
                yield contract.ProposalAnswered(
                    **ids,
                    proposal_id=uuid.UUID(proposal.proposal_id),
                    youth_id=proposal.youth_id,
                    tutor_id=proposal.tutor_id,
                    answer="accepted" if proposal.state is ProposalState.ACCEPTED else "declined",
                    decline_reason=proposal.decline_reason.value if proposal.decline_reason else None,
                    answered_at=event.at,
                )
            case events.ProposalLapsed(proposal=proposal):
                yield contract.ProposalLapsed(
                    **ids,
                    proposal_id=uuid.UUID(proposal.proposal_id),
                    youth_id=proposal.youth_id,
                    tutor_id=proposal.tutor_id,
                    made_at=proposal.made_at,
                    answer_due_at=proposal.answer_due_at,
                    lapsed_at=event.at,
                )
            case events.ConventionCompleted(convention=convention):
                yield contract.ConventionSigned(
                    **ids,
                    convention_id=uuid.UUID(convention.convention_id),
                    youth_id=convention.youth_id,
                    tutor_id=mission.tutor_id,
                    mlds_structure_uai=convention.mlds_structure_uai,
                    starts_on=convention.starts_on,
                    ends_on=convention.ends_on,
                    youth_minor=convention.youth_minor,
                    signatures=[
                        contract.Signature(role=s.role.value, signed_at=s.signed_at)
                        for s in convention.signatures
                    ],
                    completed_at=event.at,
                )
            case events.HoursRecorded():
                yield contract.HoursRecorded(
                    **ids,
                    youth_id=event.youth_id,
                    week_of=event.week_of,
                    hours=event.hours,
                    previous_hours=event.previous_hours,
                    mission_hours_done=event.mission_hours_done,
                    recorded_at=event.at,
                )
            case events.MissionCompleted():
                yield contract.MissionCompleted(
                    **ids,
                    youth_id=event.youth_id,
                    tutor_id=event.tutor_id,
                    departement=mission.departement,
                    outcome=event.outcome,
                    hours_done=event.hours_done,
                    completed_at=event.at,
                )
            case events.BilanDelivered(bilan=bilan):
                yield contract.BilanDelivered(
                    **ids,
                    buyer_id=mission.buyer_id,
                    youth_id=event.youth_id,
                    skills_acquired=bilan.count(SkillLevel.ACQUIRED),
                    skills_in_progress=bilan.count(SkillLevel.IN_PROGRESS),
                    skills_not_acquired=bilan.count(SkillLevel.NOT_ACQUIRED),
                    hours_done=event.hours_done,
                    signed_by=[role.value for role in BilanSignatoryRole if role in bilan.signed_roles],
                    document_sha256=bilan.document_sha256,
                    delivered_at=event.at,
                )


def add_clause_events(uow: ClauseUnitOfWork, clause: Clause) -> None:
    for payload in clause_payloads(clause):
        uow.add_event(payload, subject=clause.clause_id)
    clause.events.clear()


def add_mission_events(uow: ClauseUnitOfWork, mission: Mission, cause=None) -> None:
    for payload in mission_payloads(mission):
        uow.add_event(payload, subject=mission.mission_id, cause=cause)
    mission.events.clear()
