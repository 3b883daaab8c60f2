"""The bilan croisé: what the youth learnt, signed by both tutors with the youth; handed to the
buyer, it is the legal proof that the clause was executed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .errors import Refused

MAX_SKILLS = 30
MAX_SKILL_LENGTH = 120
MAX_TEXT_LENGTH = 2000


class SkillLevel(StrEnum):
    ACQUIRED = "acquired"
    IN_PROGRESS = "in_progress"
    NOT_ACQUIRED = "not_acquired"


SKILL_LEVEL_LABELS = {
    SkillLevel.ACQUIRED: "Acquis",
    SkillLevel.IN_PROGRESS: "En cours d'acquisition",
    SkillLevel.NOT_ACQUIRED: "Non acquis",
}


class BilanSignatoryRole(StrEnum):
    MLDS_TUTOR = "mlds_tutor"
    COMPANY_REFERENT = "company_referent"
    YOUTH = "youth"


BILAN_SIGNATORY_LABELS = {
    BilanSignatoryRole.MLDS_TUTOR: "Tuteur pédagogique (MLDS)",
    BilanSignatoryRole.COMPANY_REFERENT: "Référent de l'entreprise",
    BilanSignatoryRole.YOUTH: "Le jeune",
}


@dataclass(frozen=True)
class SkillAssessment:
    skill: str
    level: SkillLevel


@dataclass(frozen=True)
class BilanSignature:
    role: BilanSignatoryRole
    signed_at: datetime


@dataclass(frozen=True)
class Bilan:
    skills: tuple[SkillAssessment, ...]
    savoir_etre: str
    savoir_faire: str
    next_steps: str
    written_at: datetime
    signatures: tuple[BilanSignature, ...] = ()
    delivered_at: datetime | None = None
    document_sha256: str | None = None

    @classmethod
    def write(
        cls,
        skills: tuple[SkillAssessment, ...],
        savoir_etre: str,
        savoir_faire: str,
        next_steps: str,
        now: datetime,
        where: str,
    ) -> Bilan:
        if not 1 <= len(skills) <= MAX_SKILLS:
            raise Refused(f"{where}: a bilan assesses 1 to {MAX_SKILLS} skills, not {len(skills)}")
        checked = []
        for number, assessment in enumerate(skills, 1):
            name = assessment.skill.strip()
            if not 1 <= len(name) <= MAX_SKILL_LENGTH:
                raise Refused(f"{where}: skill {number} must be named in 1 to {MAX_SKILL_LENGTH} characters")
            try:
                level = SkillLevel(assessment.level)
            except ValueError:
                known = ", ".join(SkillLevel)
                raise Refused(
                    f"{where}: skill {number} ({name}): level {assessment.level!r} is not one of {known}"
                ) from None
            checked.append(SkillAssessment(name, level))
        texts = {"savoir-être": savoir_etre, "savoir-faire": savoir_faire, "next steps": next_steps}
        for label, text in texts.items():
            if not 1 <= len(text.strip()) <= MAX_TEXT_LENGTH:
                raise Refused(f"{where}: {label} must have 1 to {MAX_TEXT_LENGTH} characters")
        return cls(tuple(checked), savoir_etre.strip(), savoir_faire.strip(), next_steps.strip(), now)

    def count(self, level: SkillLevel) -> int:
        return sum(s.level is level for s in self.skills)

    @property
    def signed_roles(self) -> tuple[BilanSignatoryRole, ...]:
        return tuple(s.role for s in self.signatures)

    @property
    def fully_signed(self) -> bool:
        return set(self.signed_roles) == set(BilanSignatoryRole)

    def signed(self, role: BilanSignatoryRole, now: datetime, where: str) -> Bilan:
        try:
            role = BilanSignatoryRole(role)
        except ValueError:
            raise Refused(f"{where}: {role!r} does not sign a bilan croisé") from None
        if role in self.signed_roles:
            raise Refused(f"{where}: the bilan is signed by {role.value} already")
        if now < self.written_at:
            raise Refused(f"{where}: a signature at {now.isoformat()} is before the bilan was written")
        return dataclasses.replace(self, signatures=(*self.signatures, BilanSignature(role, now)))

    def delivered(self, document_sha256: str, now: datetime) -> Bilan:
        return dataclasses.replace(self, delivered_at=now, document_sha256=document_sha256)
