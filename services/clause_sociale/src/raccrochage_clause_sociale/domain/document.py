"""What the bilan croisé handed to the buyer says: built from the clause and the mission, rendered
by an adapter (adapters/bilan_pdf.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from .bilan import BILAN_SIGNATORY_LABELS, SKILL_LEVEL_LABELS
from .clause import Clause, ExecutionProof
from .errors import Refused
from .mission import ACTIVITY_LABELS, Mission


@dataclass(frozen=True)
class BilanDocument:
    title: str
    buyer: str
    contract_object: str
    company: str
    youth: str
    activity: str
    tasks: tuple[str, ...]
    place: str
    starts_on: date
    ends_on: date
    mission_hours: int
    hours_done: int
    hours_by_week: tuple[tuple[date, int], ...]
    skills: tuple[tuple[str, str], ...]  # (skill, level label)
    savoir_etre: str
    savoir_faire: str
    next_steps: str
    outcome: str
    signatures: tuple[tuple[str, datetime], ...]  # (role label, signed at)
    clause_hours_required: int
    clause_hours_planned: int
    clause_hours_done: int


OUTCOME_LABELS = {
    "job": "Emploi",
    "apprenticeship": "Contrat d'apprentissage",
    "training": "Retour en formation",
    "mlds_action": "Autre action de la MLDS",
    "none": "Sans solution à ce jour",
    "interrupted": "Parcours interrompu",
}


def bilan_document(
    clause: Clause, mission: Mission, proof: ExecutionProof, names: dict[str, str] | None = None
) -> BilanDocument:
    """The document of a mission's signed bilan. `names` may name the company and the youth
    (keys "company", "youth"): the service's own identities; by reference otherwise."""
    names = names or {}
    bilan, convention = mission.bilan, mission.convention
    if bilan is None or convention is None or mission.outcome is None:
        raise Refused(f"mission {mission.mission_id}: no completed placement with a bilan to render")
    activity = ACTIVITY_LABELS[mission.activity_domain]
    if mission.activity_comment:
        activity = f"{activity} ({mission.activity_comment})"
    return BilanDocument(
        title="Bilan croisé - clause sociale de formation",
        buyer=clause.buyer.organisation,
        contract_object=clause.contract_object,
        company=names.get("company", mission.company_id),
        youth=names.get("youth", convention.parties.get("youth", convention.youth_id)),
        activity=activity,
        tasks=mission.tasks,
        place=f"{mission.site.city} ({mission.site.departement})",
        starts_on=convention.starts_on,
        ends_on=convention.ends_on,
        mission_hours=mission.hours,
        hours_done=mission.hours_done,
        hours_by_week=tuple(sorted(mission.attendance.items())),
        skills=tuple((s.skill, SKILL_LEVEL_LABELS[s.level]) for s in bilan.skills),
        savoir_etre=bilan.savoir_etre,
        savoir_faire=bilan.savoir_faire,
        next_steps=bilan.next_steps,
        outcome=OUTCOME_LABELS[mission.outcome.value],
        signatures=tuple((BILAN_SIGNATORY_LABELS[s.role], s.signed_at) for s in bilan.signatures),
        clause_hours_required=proof.hours_required,
        clause_hours_planned=proof.hours_planned,
        clause_hours_done=proof.hours_done,
    )
