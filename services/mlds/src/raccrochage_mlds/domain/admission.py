"""Admission steps per dispositif, in order, and who may decide each.

The micro-lycée and DIPA steps are the issue's reading of the académie's practice (the guide only
says "recrutement académique des jeunes, sur proposition des PSAD" for the micro-lycée, and "en
collaboration avec le CASNAV" for the DIPA); the PAPS step is the guide's: the MLDS takes part,
"en relation avec les CIO [...], à l'accueil, à l'évaluation des besoins de formation".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from .catalogue import DispositifKind


class Role(StrEnum):
    """Who decides an admission step (a role, never a person's name)."""

    COORDONNATEUR_MLDS = "coordonnateur_mlds"
    CIO = "cio"  # the CIO's director or a Psy-EN of the CIO
    PSY_EN = "psy_en"
    EQUIPE_MICRO_LYCEE = "equipe_micro_lycee"  # the micro-lycée's teachers
    COMMISSION = "commission_mlds_rectorat_region"
    CASNAV = "casnav"
    DASEN = "dasen"


class StepOutcome(StrEnum):
    FAVOURABLE = "favourable"
    UNFAVOURABLE = "unfavourable"  # ends the candidacy: refused
    ABSENT = "absent"  # the youth did not come: the step is to be held again


@dataclass(frozen=True)
class Step:
    code: str
    wording: str
    deciders: frozenset[Role]
    # The last step decides the admission; the place is taken at `admit`, "dans la limite des places".


@dataclass(frozen=True)
class StepRecord:
    code: str
    outcome: StepOutcome
    held_on: date
    decided_by: Role
    recorded_at: datetime


ADMISSION_STEPS: Mapping[DispositifKind, tuple[Step, ...]] = {
    DispositifKind.MICRO_LYCEE: (
        Step("cio_file_review", "examen du dossier par le CIO", frozenset({Role.CIO, Role.PSY_EN})),
        Step(
            "interview_and_tests",
            "entretien et tests",
            frozenset({Role.EQUIPE_MICRO_LYCEE, Role.COORDONNATEUR_MLDS}),
        ),
        Step("admission_commission", "commission MLDS, rectorat et région", frozenset({Role.COMMISSION})),
    ),
    DispositifKind.DIPA: (
        Step("cio_interview", "entretien au CIO", frozenset({Role.CIO, Role.PSY_EN})),
        Step("mother_tongue_tests", "tests en langue maternelle", frozenset({Role.CASNAV, Role.CIO})),
        Step("dasen_admission", "admission par le DASEN dans la limite des places", frozenset({Role.DASEN})),
    ),
    DispositifKind.PAPS: (
        Step(
            "reception_interview",
            "accueil et évaluation des besoins de formation, en relation avec les CIO",
            frozenset({Role.COORDONNATEUR_MLDS, Role.CIO, Role.PSY_EN}),
        ),
    ),
}


def steps_of(kind: DispositifKind) -> tuple[Step, ...]:
    return ADMISSION_STEPS[kind]
