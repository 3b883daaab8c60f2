"""Candidacies from a PSAD request (or a coordinator) to an exit: one function per command, each
one transaction of the unit of work it is given.

A refused command raises the domain's error (CandidacyError, CapacityError, ...NotFound) and
commits nothing. The PSAD that asked gets exactly one answer: mlds.enrolment.refused.v1 as soon
as a rule fails (with every failing rule's code), an admission step says no, the site is full or
the youth withdraws; mlds.enrolment.accepted.v1 when a place is held (admitted), as FOQUALE
confirms a reserved seat. While facts are missing (decision incomplete) the PSAD waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.clause_v1 import MissionCompleted
from raccrochage_contracts.events.psad_v1 import SolutionRequested
from raccrochage_platform.logging import get_logger

from ..domain import events
from ..domain.admission import Role, StepOutcome, StepRecord
from ..domain.candidacy import Candidacy, Channel, Exit, PsadRequest
from ..domain.catalogue import Dispositif, DispositifKind
from ..domain.dates import SchoolYear
from ..domain.eligibility import Decision
from ..domain.facts import Facts
from ..domain.states import CandidacyStatus, DiplomaObtained, ExitDestination, WithdrawalReason
from .messages import REQUESTED_KINDS, facts_from_request, publish_candidacy, publish_site, wished_site
from .unit_of_work import DispositifNotFound, MldsUnitOfWork

log = get_logger(__name__)

# The inbox name of the consumer of psad.solution.requested.v1 (its durable, when declared).
FROM_PSAD = "mlds_psad"
# Candidacy ids from request ids: a request asked again through another event names the same one.
CANDIDACY_NAMESPACE = uuid.UUID("6d6c6473-0000-4000-8000-63616e646964")


async def handle_solution_requested(
    uow: MldsUnitOfWork, envelope: CloudEvent, request: SolutionRequested, now: datetime
) -> uuid.UUID | None:
    """A PSAD asks the MLDS for a dispositif: record the candidacy, decide its eligibility, and
    answer refused at once when a rule fails. Returns the candidacy id; None when the request is
    not for the MLDS or this event was handled before."""
    if not is_for_mlds(request):
        return None
    async with uow:
        if not await uow.claim(FROM_PSAD, [(envelope.id, envelope.type)]):
            return None
        candidacy_id = await solution_requested(uow, envelope, request, now)
        await uow.commit()  # the claim is kept even when the request had its candidacy already
        return candidacy_id


def is_for_mlds(request: SolutionRequested) -> bool:
    return request.provider == "mlds" and request.kind in REQUESTED_KINDS


async def solution_requested(
    uow: MldsUnitOfWork, envelope: CloudEvent, request: SolutionRequested, now: datetime
) -> uuid.UUID | None:
    """`handle_solution_requested` inside a unit of work opened (and the event claimed, and the
    work committed) by its caller: the `mlds_psad` consumer's batch. None when the request is
    not for the MLDS."""
    kind = REQUESTED_KINDS.get(request.kind)
    if request.provider != "mlds" or kind is None:
        return None
    existing = await uow.candidacies.for_request(request.request_id)
    if existing is not None:
        return existing.candidacy_id
    site = await _proposed_site(uow, kind, request)
    candidacy = Candidacy.receive(
        uuid.uuid5(CANDIDACY_NAMESPACE, str(request.request_id)),
        request.youth_id,
        kind,
        request.departement,
        facts_from_request(request),
        now,
        channel=Channel.PSAD_REQUEST,
        request=PsadRequest(request.request_id, request.case_id, request.psad_id, envelope.correlationid),
        dispositif=site,
    )
    candidacy.decide(now)
    if await uow.candidacies.add(candidacy):
        publish_candidacy(uow, candidacy, site, cause=envelope)
    return candidacy.candidacy_id


async def solutions_requested(
    uow: MldsUnitOfWork, requests: list[tuple[CloudEvent, SolutionRequested]], now: datetime
) -> list[uuid.UUID]:
    """`solution_requested` for a batch, inside the caller's unit of work: the batch's existing
    candidacies read at once, the sites once, the new candidacies added at once. Requests not
    for the MLDS are skipped; returns the ids of the candidacies added."""
    wanted = [(envelope, request) for envelope, request in requests if is_for_mlds(request)]
    if not wanted:
        return []
    existing = await uow.candidacies.for_requests([request.request_id for _, request in wanted])
    sites = {site.dispositif_id: site for site in await uow.dispositifs.find()}
    new: dict[uuid.UUID, tuple[Candidacy, Dispositif | None, CloudEvent]] = {}
    for envelope, request in wanted:
        if request.request_id in existing:
            continue
        kind = REQUESTED_KINDS[request.kind]
        site = _site_among(sites, kind, request)
        candidacy = Candidacy.receive(
            uuid.uuid5(CANDIDACY_NAMESPACE, str(request.request_id)),
            request.youth_id,
            kind,
            request.departement,
            facts_from_request(request),
            now,
            channel=Channel.PSAD_REQUEST,
            request=PsadRequest(request.request_id, request.case_id, request.psad_id, envelope.correlationid),
            dispositif=site,
        )
        candidacy.decide(now)
        # The same request twice in a batch (asked again through another event): once.
        new.setdefault(candidacy.candidacy_id, (candidacy, site, envelope))
    added = await uow.candidacies.add_many([candidacy for candidacy, _, _ in new.values()])
    for candidacy_id, (candidacy, site, envelope) in new.items():  # in the batch's order
        if candidacy_id in added:
            publish_candidacy(uow, candidacy, site, cause=envelope)
    return [candidacy_id for candidacy_id in new if candidacy_id in added]


def _site_among(
    sites: dict[str, Dispositif], kind: DispositifKind, request: SolutionRequested
) -> Dispositif | None:
    """`_proposed_site` among sites already read."""
    wished = sites.get(wished_site(request) or "")
    if wished is not None and wished.kind is kind:
        return wished
    here = [s for s in sites.values() if s.kind is kind and s.departement == request.departement]
    return here[0] if len(here) == 1 else None


async def _proposed_site(
    uow: MldsUnitOfWork, kind: DispositifKind, request: SolutionRequested
) -> Dispositif | None:
    """The site the PSAD named in its wishes ("mlds:paps-33-04"), else the only site of the kind
    in the youth's département; None leaves the choice to the coordinator."""
    wished = wished_site(request)
    if wished is not None:
        try:
            site = await uow.dispositifs.get(wished)
        except DispositifNotFound:
            site = None
        if site is not None and site.kind is kind:
            return site
    sites = await uow.dispositifs.find(kind=kind, departement=request.departement)
    return sites[0] if len(sites) == 1 else None


async def receive_candidacy(
    uow: MldsUnitOfWork,
    youth_id: str,
    kind: DispositifKind,
    departement: str,
    facts: Facts,
    now: datetime,
    *,
    dispositif_id: str | None = None,
    entry_year: SchoolYear | None = None,
) -> uuid.UUID:
    """A coordinator records a candidacy (a pupil at risk sent by a GPDS, a youth met at the CIO)."""
    async with uow:
        site = await uow.dispositifs.get(dispositif_id) if dispositif_id else None
        candidacy = Candidacy.receive(
            uuid.uuid4(), youth_id, kind, departement, facts, now, dispositif=site, entry_year=entry_year
        )
        candidacy.decide(now)
        await uow.candidacies.add(candidacy)
        publish_candidacy(uow, candidacy, site)
        await uow.commit()
        return candidacy.candidacy_id


async def record_facts(uow: MldsUnitOfWork, candidacy_id: uuid.UUID, now: datetime, **facts) -> Decision:
    """A coordinator collects the facts a decision named (or corrects one): decided again."""
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        decision = candidacy.record_facts(now, **facts)
        await _save(uow, candidacy)
        await uow.commit()
        return decision


async def choose_dispositif(
    uow: MldsUnitOfWork, candidacy_id: uuid.UUID, dispositif_id: str, now: datetime
) -> None:
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        candidacy.choose_dispositif(await uow.dispositifs.get(dispositif_id), now)
        await _save(uow, candidacy)
        await uow.commit()


async def record_admission_step(
    uow: MldsUnitOfWork,
    candidacy_id: uuid.UUID,
    step: str,
    outcome: StepOutcome,
    held_on: date,
    decided_by: Role,
    now: datetime,
) -> StepRecord:
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        record = candidacy.record_step(step, outcome, held_on, decided_by, now)
        await _save(uow, candidacy)
        await uow.commit()
        return record


async def admit(
    uow: MldsUnitOfWork,
    candidacy_id: uuid.UUID,
    now: datetime,
    *,
    dispositif_id: str | None = None,
    starts_on: date | None = None,
) -> bool:
    """Every step favourable: take a place and admit, from `starts_on` (default: the site's next
    entry). A full site refuses the candidacy (no_place) instead. True when admitted."""
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        site_id = candidacy.check_admissible(dispositif_id)
        site = await uow.dispositifs.take_place(site_id, now)
        if site is None:
            candidacy.refuse_for_lack_of_place(now)
        else:
            candidacy.admit(site, starts_on or site.sessions.next_entry(now.date()), now)
            publish_site(uow, site, "place_taken")
        await _save(uow, candidacy, site)
        await uow.commit()
        return site is not None


async def enrol(uow: MldsUnitOfWork, candidacy_id: uuid.UUID, started_on: date, now: datetime) -> None:
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        candidacy.enrol(started_on, now)
        await _save(uow, candidacy)
        await uow.commit()


async def exit_enrolment(
    uow: MldsUnitOfWork,
    candidacy_id: uuid.UUID,
    destination: ExitDestination,
    exited_on: date,
    now: datetime,
    *,
    school_level: str | None = None,
    droit_au_maintien: bool = False,
    diploma_obtained: DiplomaObtained | None = None,
) -> Exit:
    """The youth leaves for a coded destination; the place is freed for the next one."""
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        exit_ = candidacy.exit_to(
            destination,
            exited_on,
            now,
            school_level=school_level,
            droit_au_maintien=droit_au_maintien,
            diploma_obtained=diploma_obtained,
        )
        await _release(uow, candidacy, now)
        await uow.commit()
        return exit_


# The outcomes of a clause sociale mission that end the youth's MLDS action, and where to.
DESTINATION_OF_MISSION_OUTCOME: Mapping[str, ExitDestination] = {
    "job": ExitDestination.EMPLOYMENT,
    "apprenticeship": ExitDestination.APPRENTICESHIP,
}


async def mission_completed(
    uow: MldsUnitOfWork, envelope: CloudEvent, mission: MissionCompleted, now: datetime
) -> list[uuid.UUID]:
    """A clause sociale mission ended in a job or an apprenticeship, inside the consumer's unit
    of work: the youth's enrolment exits there on the mission's last day (an admission not
    started yet is withdrawn, other_solution), and the place is freed. Returns the candidacies
    moved; none when the outcome is another one or the youth holds no place here."""
    destination = DESTINATION_OF_MISSION_OUTCOME.get(mission.outcome)
    if destination is None:
        return []
    holding = await uow.candidacies.holding_place_of(mission.youth_id)
    if not holding:
        # Acknowledged: nothing here to move. The log names the mission, not the youth.
        log.info("mission_completed_without_enrolment", mission_id=str(mission.mission_id))
    moved = []
    for candidacy in holding:
        at = max(now, candidacy.updated_at or now)
        if candidacy.status is CandidacyStatus.ENROLLED:
            assert candidacy.enrolment is not None
            last_day = min(max(mission.completed_at.date(), candidacy.enrolment.started_on), at.date())
            candidacy.exit_to(destination, last_day, at)
        else:
            candidacy.withdraw(WithdrawalReason.OTHER_SOLUTION, at)
        await _release(uow, candidacy, at, cause=envelope)
        moved.append(candidacy.candidacy_id)
    return moved


async def withdraw(
    uow: MldsUnitOfWork, candidacy_id: uuid.UUID, reason: WithdrawalReason, now: datetime
) -> None:
    """The youth leaves before starting; a place held is freed."""
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        if candidacy.withdraw(reason, now):
            await _release(uow, candidacy, now)
        else:
            await _save(uow, candidacy)
        await uow.commit()


async def record_pafi(
    uow: MldsUnitOfWork, candidacy_id: uuid.UUID, validated_on: date, now: datetime
) -> None:
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        candidacy.record_pafi(validated_on, now)
        await _save(uow, candidacy)
        await uow.commit()


async def _release(
    uow: MldsUnitOfWork, candidacy: Candidacy, now: datetime, cause: CloudEvent | None = None
) -> None:
    assert candidacy.dispositif_id is not None
    site = await uow.dispositifs.release_place(candidacy.dispositif_id, now)
    publish_site(uow, site, "place_released", cause=cause)
    await _save(uow, candidacy, site, cause=cause)


# The integration events that carry the site (its département, its UAI).
_WITH_SITE = (events.EnrolmentStarted, events.EnrolmentExited, events.RequestAnswered)


async def _save(
    uow: MldsUnitOfWork,
    candidacy: Candidacy,
    site: Dispositif | None = None,
    cause: CloudEvent | None = None,
) -> None:
    if site is None and candidacy.dispositif_id and any(isinstance(e, _WITH_SITE) for e in candidacy.events):
        site = await uow.dispositifs.get(candidacy.dispositif_id)
    await uow.candidacies.save(candidacy)
    publish_candidacy(uow, candidacy, site, cause=cause)
