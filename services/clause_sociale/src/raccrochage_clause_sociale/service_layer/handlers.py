"""One function per command and per event: each runs in one unit of work, and writes the state
change and its events together (or nothing, when the domain refuses)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted

from ..domain.clause import Clause
from ..domain.document import BilanDocument, bilan_document
from ..domain.errors import ClauseSocialeError, Refused
from ..domain.mission import Mission
from ..domain.proposal import REMIND_AFTER, CompanyBusy, Proposal
from . import commands
from .messages import add_clause_events, add_mission_events
from .unit_of_work import ClauseUnitOfWork, ConcurrentChange, Enrolment

CONSUMER = "clause_sociale"

BilanRenderer = Callable[[BilanDocument, datetime], bytes]


class AlreadyExists(ClauseSocialeError):
    """A clause or a mission with this id is there already."""


class MissionTaken(ClauseSocialeError):
    """Another MLDS tutor reserved the mission first."""


# --- buyers and companies ----------------------------------------------------------------------


async def publish_clause(cmd: commands.PublishClause, uow: ClauseUnitOfWork) -> Clause:
    async with uow:
        clause = Clause.publish(
            cmd.clause_id,
            cmd.buyer,
            cmd.company_id,
            cmd.contract_object,
            cmd.notification_date,
            cmd.firm_period_ends_on,
            cmd.firm_amount_eur,
            cmd.ends_on,
            cmd.now,
        )
        await uow.companies.ensure(clause.company_id)
        if not await uow.clauses.add(clause):
            raise AlreadyExists(f"clause {cmd.clause_id} exists already")
        add_clause_events(uow, clause)
        await uow.commit()
    return clause


async def declare_mission(cmd: commands.DeclareMission, uow: ClauseUnitOfWork) -> Mission:
    async with uow:
        clause = await uow.clauses.get(cmd.clause_id)
        mission = Mission.declare(
            cmd.mission_id,
            clause,
            cmd.company_id,
            cmd.activity_domain,
            cmd.tasks,
            cmd.site,
            cmd.referent_id,
            cmd.hours,
            cmd.now,
            activity_comment=cmd.activity_comment,
            second_referent_id=cmd.second_referent_id,
        )
        if not await uow.missions.add(mission):
            raise AlreadyExists(f"mission {cmd.mission_id} exists already")
        add_mission_events(uow, mission)
        await uow.commit()
    return mission


# --- MLDS tutors: reservation and proposal -----------------------------------------------------


async def reserve_mission(cmd: commands.ReserveMission, uow: ClauseUnitOfWork) -> Mission:
    """Of tutors racing for one mission, exactly one wins. The mission is read under its row
    lock: a tutor who comes second waits for the first's commit, then reads the mission reserved
    and the domain refuses (TransitionRefused), with no update to try. The reservation is still
    saved by one update that requires the mission to be still free (MissionTaken otherwise)."""
    async with uow:
        mission = await uow.missions.get(cmd.mission_id)
        mission.reserve(cmd.tutor_id, cmd.now)
        if not await uow.missions.save_reservation(mission):
            raise MissionTaken(f"mission {cmd.mission_id} was reserved by another tutor first")
        add_mission_events(uow, mission)
        await uow.commit()
    return mission


async def release_mission(cmd: commands.ReleaseMission, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(uow, cmd.mission_id, lambda m: m.release(cmd.tutor_id, cmd.now))


async def propose_youth(cmd: commands.ProposeYouth, uow: ClauseUnitOfWork) -> Proposal:
    """The tutor who reserved the mission proposes a youth the MLDS enrolled; one youth per
    company at a time (the company's slot is taken by the database in one step)."""
    async with uow:
        if await uow.enrolments.get(cmd.youth_id) is None:
            raise Refused(
                f"youth {cmd.youth_id} is not enrolled on an MLDS action: the clause sociale de "
                "formation is for youths the PSAD identified and the MLDS enrolled"
            )
        mission = await uow.missions.get(cmd.mission_id)
        proposal = mission.propose(cmd.proposal_id, cmd.youth_id, cmd.profile, cmd.tutor_id, cmd.now)
        if not await uow.companies.take_proposal_slot(mission.company_id, proposal.proposal_id):
            raise CompanyBusy(
                f"company {mission.company_id} has a proposal waiting for its answer: "
                "one youth per company at a time"
            )
        await uow.missions.save(mission)
        add_mission_events(uow, mission)
        await uow.commit()
    return proposal


# --- companies: the answer, and the timers --------------------------------------------------------


async def answer_proposal(cmd: commands.AnswerProposal, uow: ClauseUnitOfWork) -> Proposal:
    async with uow:
        mission = await uow.missions.get(cmd.mission_id)
        proposal = mission.answer(cmd.proposal_id, cmd.accepted, cmd.now, cmd.decline_reason)
        await uow.companies.free_proposal_slot(mission.company_id, proposal.proposal_id)
        await uow.missions.save(mission)
        add_mission_events(uow, mission)
        await uow.commit()
    return proposal


@dataclass
class DeadlineReport:
    reminded: list[str] = field(default_factory=list)  # mission ids
    lapsed: list[str] = field(default_factory=list)


async def run_proposal_deadlines(cmd: commands.RunProposalDeadlines, uow: ClauseUnitOfWork) -> DeadlineReport:
    """Day 10: remind the buyer and the tutor; past day 15: the proposal lapses and the mission
    is free again. One transaction per mission; running twice at the same `now` does nothing more."""
    async with uow:
        mission_ids = await uow.missions.awaiting_answer(made_before=cmd.now - REMIND_AFTER)
    report = DeadlineReport()
    for mission_id in mission_ids:
        async with uow:
            mission = await uow.missions.get(mission_id)
            proposal = mission.pending_proposal
            if mission.lapse_if_due(cmd.now):
                await uow.companies.free_proposal_slot(mission.company_id, proposal.proposal_id)
                report.lapsed.append(mission_id)
            elif mission.remind_if_due(cmd.now):
                report.reminded.append(mission_id)
            else:
                continue
            await uow.missions.save(mission)
            add_mission_events(uow, mission)
            await uow.commit()
    return report


# --- the convention and the placement ------------------------------------------------------------


async def draft_convention(cmd: commands.DraftConvention, uow: ClauseUnitOfWork) -> Mission:
    """The company is held while its tutors' placements are compared, so that two conventions
    drafted at once cannot both take the same tutor at the same place and time."""
    async with uow:
        mission = await uow.missions.get(cmd.mission_id)
        await uow.companies.hold(mission.company_id)
        others = await uow.missions.hosted_by(mission.company_id, cmd.company_tutor_id, mission.site.key)
        mission.draft_convention(
            cmd.convention_id,
            cmd.starts_on,
            cmd.ends_on,
            cmd.mlds_structure_uai,
            cmd.company_tutor_id,
            cmd.youth_birth_date,
            cmd.parties,
            cmd.now,
            hosted_elsewhere=others,
        )
        await uow.missions.save(mission)
        add_mission_events(uow, mission)
        await uow.commit()
    return mission


async def sign_convention(cmd: commands.SignConvention, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(uow, cmd.mission_id, lambda m: m.sign_convention(cmd.role, cmd.now))


async def abandon_placement(cmd: commands.AbandonPlacement, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(uow, cmd.mission_id, lambda m: m.abandon(cmd.by_role, cmd.now))


async def record_hours(cmd: commands.RecordHours, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(uow, cmd.mission_id, lambda m: m.record_hours(cmd.week_of, cmd.hours, cmd.now))


async def complete_mission(cmd: commands.CompleteMission, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(uow, cmd.mission_id, lambda m: m.complete(cmd.outcome, cmd.now))


async def write_bilan(cmd: commands.WriteBilan, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(
        uow,
        cmd.mission_id,
        lambda m: m.write_bilan(cmd.skills, cmd.savoir_etre, cmd.savoir_faire, cmd.next_steps, cmd.now),
    )


async def sign_bilan(cmd: commands.SignBilan, uow: ClauseUnitOfWork) -> Mission:
    return await _on_mission(uow, cmd.mission_id, lambda m: m.sign_bilan(cmd.role, cmd.now))


async def deliver_bilan(cmd: commands.DeliverBilan, uow: ClauseUnitOfWork, render: BilanRenderer) -> bytes:
    """Render the signed bilan, keep the very document, and tell the buyer it is there (its hash
    in clause.bilan.delivered.v1). Returns the PDF."""
    async with uow:
        mission = await uow.missions.get(cmd.mission_id)
        mission.check_bilan_deliverable()
        if cmd.named_youth_id is not None and (
            mission.convention is None or mission.convention.youth_id != cmd.named_youth_id
        ):
            raise ConcurrentChange(
                f"mission {cmd.mission_id}: its youth was erased since the name was read; nothing delivered"
            )
        clause = await uow.clauses.get(mission.clause_id)
        missions = [
            m if m.mission_id != mission.mission_id else mission
            for m in await uow.missions.of_clause(clause.clause_id)
        ]
        pdf = render(bilan_document(clause, mission, clause.proof(missions), cmd.names), cmd.now)
        digest = hashlib.sha256(pdf).hexdigest()
        mission.deliver_bilan(digest, cmd.now)
        await uow.bilans.add(mission.mission_id, digest, pdf, cmd.now)
        await uow.missions.save(mission)
        add_mission_events(uow, mission)
        await uow.commit()
    return pdf


async def _on_mission(
    uow: ClauseUnitOfWork, mission_id: str, command: Callable[[Mission], object]
) -> Mission:
    async with uow:
        mission = await uow.missions.get(mission_id)
        command(mission)
        await uow.missions.save(mission)
        add_mission_events(uow, mission)
        await uow.commit()
    return mission


# --- events of other services --------------------------------------------------------------------


async def on_enrolment_accepted(event: CloudEvent, uow: ClauseUnitOfWork) -> bool:
    """mlds.enrolment.accepted.v1 in a unit of work of its own: the youth may now be proposed
    for missions. False for a redelivered event (already handled)."""
    async with uow:
        if not await uow.claim(CONSUMER, [(event.id, event.type)]):
            return False
        await record_enrolment(uow, EnrolmentAccepted.read(event.data))
        await uow.commit()
    return True


async def record_enrolment(uow: ClauseUnitOfWork, accepted: EnrolmentAccepted) -> None:
    """Remember the enrolment, inside a unit of work already open (the consumer's, which claimed
    the event in its inbox and commits the batch)."""
    await uow.enrolments.record(
        Enrolment(
            accepted.youth_id,
            accepted.dispositif,
            accepted.starts_on,
            str(accepted.case_id),
            str(accepted.request_id),
            accepted.decided_at,
        )
    )
