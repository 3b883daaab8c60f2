"""Events produced by the MLDS, version 1: its dispositifs' places, candidacies with their
eligibility decisions, enrolments, and the answers to psad.solution.requested.

A youth is `youth_id` only. Coarse facts (age in years, département, level) may travel; the facts
an eligibility rule read travel by name, never by value, and no name, INE or birth date ever does.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from ..payload import Payload
from ..registry import event_type
from .foquale_v1 import _Answer
from .reperage_v1 import YOUTH_ID, Departement

Dispositif = Literal["paps", "dipa", "micro_lycee", "clause_sociale"]
# The MLDS structures that hold places (the clause sociale is a placement, not a structure).
DispositifKind = Literal["paps", "dipa", "micro_lycee"]

UAI_PATTERN = r"^[0-9]{7}[A-Z]$"
DISPOSITIF_ID_PATTERN = r"^(paps|dipa|micro_lycee)-([0-9]{2}|2A|2B|9[78][0-9])-[0-9]{2}$"
RULE_CODE_PATTERN = r"^[a-z][a-z_]{0,19}\.[a-z][a-z0-9_]{0,59}$"
FACT_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
STEP_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
RuleCode = Annotated[str, StringConstraints(pattern=RULE_CODE_PATTERN, max_length=80)]
FactName = Annotated[str, StringConstraints(pattern=FACT_PATTERN, max_length=40)]

DISPOSITIF_ID = Field(
    pattern=DISPOSITIF_ID_PATTERN,
    max_length=20,
    description="one MLDS site: kind, département, rank in the académie's directory (paps-33-04)",
)
CANDIDACY_ID = Field(description="one youth's path through one dispositif, from candidacy to exit")
AGE = Field(ge=0, le=120, description="age in whole years")

RuleOutcomeCode = Literal["pass", "fail", "unknown"]
DecisionOutcome = Literal["eligible", "not_eligible", "incomplete"]
Right = Literal["droit_au_maintien", "pafi"]
SchoolLevel = Literal["college", "3e", "cap", "2nde", "1re", "terminale", "post_bac"]
ExitDestination = Literal[
    "back_to_school",
    "apprenticeship",
    "employment",
    "training",
    "new_mlds_action",
    "health_or_rqth",
    "interruption",
    "unknown",
]
DiplomaObtained = Literal["none", "delf", "cfg", "dnb", "cap", "bac", "other"]


@event_type("mlds.enrolment.accepted.v1")
class EnrolmentAccepted(_Answer):
    """The youth is enrolled in an MLDS dispositif: admitted, a place held from `starts_on`."""

    dispositif: Dispositif
    structure_uai: str | None = Field(
        None, pattern=UAI_PATTERN, max_length=8, description="the host establishment"
    )
    starts_on: date
    candidacy_id: uuid.UUID | None = Field(None, description="the MLDS candidacy that holds the place")
    dispositif_id: str | None = Field(
        None, pattern=DISPOSITIF_ID_PATTERN, max_length=20, description="the MLDS site"
    )


@event_type("mlds.enrolment.refused.v1")
class EnrolmentRefused(_Answer):
    dispositif: Dispositif
    reason: Literal["not_eligible", "no_place", "youth_declined", "other"]
    candidacy_id: uuid.UUID | None = Field(None, description="the MLDS candidacy refused")
    failed_rules: list[RuleCode] | None = Field(
        None, max_length=20, description="for not_eligible: the codes of the eligibility rules that failed"
    )
    failed_step: str | None = Field(
        None,
        pattern=STEP_PATTERN,
        max_length=40,
        description="for other: the admission step whose outcome was unfavourable",
    )


@event_type("mlds.dispositif.updated.v1")
class DispositifUpdated(Payload):
    """Capacity and places left of one MLDS site, for FOQUALE and ops.

    Sent when the catalogue is loaded, when a coordinator sets a capacity, and whenever a place is
    taken or released. A reader keeps, per `dispositif_id`, the one with the highest `revision`.
    """

    dispositif_id: str = DISPOSITIF_ID
    dispositif: DispositifKind
    departement: str = Departement
    host_establishment: str = Field(min_length=1, max_length=120, description="the host school's name")
    host_uai: str | None = Field(None, pattern=UAI_PATTERN, max_length=8)
    city: str = Field(min_length=1, max_length=80)
    capacity: int = Field(ge=0, le=10_000)
    places_taken: int = Field(ge=0, le=10_000, description="youths admitted or enrolled")
    places_left: int = Field(ge=0, le=10_000)
    entries: Literal["all_year", "start_of_school_year"] = Field(
        description="all_year: youths enter and leave all year round (PAPS)"
    )
    change: Literal["catalogued", "capacity_set", "place_taken", "place_released"]
    revision: int = Field(ge=1, le=2**31 - 1, description="grows with every change of this site")
    updated_at: datetime

    @model_validator(mode="after")
    def _places_add_up(self) -> DispositifUpdated:
        if self.places_taken + self.places_left != self.capacity:
            raise ValueError("places_taken + places_left must equal capacity")
        return self


@event_type("mlds.candidacy.received.v1")
class CandidacyReceived(Payload):
    """A youth is a candidate for an MLDS dispositif (asked by a PSAD, or by a coordinator).
    `departement` is the youth's."""

    candidacy_id: uuid.UUID = CANDIDACY_ID
    youth_id: str = YOUTH_ID
    dispositif: DispositifKind
    dispositif_id: str | None = Field(
        None, pattern=DISPOSITIF_ID_PATTERN, max_length=20, description="the site, when chosen"
    )
    departement: str = Departement
    age: int = AGE
    channel: Literal["psad_request", "coordinator"]
    request_id: uuid.UUID | None = Field(None, description="the psad.solution.requested.v1 it answers")
    case_id: uuid.UUID | None = None
    received_at: datetime


class RuleResult(Payload):
    """One eligibility rule as a decision applied it: its code, its outcome, the facts it read."""

    code: RuleCode = Field(description="e.g. micro_lycee.out_of_school_6_months")
    outcome: RuleOutcomeCode
    facts: list[FactName] = Field(
        max_length=8, description="names of the facts the rule read (their values stay in the MLDS)"
    )
    missing_facts: list[FactName] = Field(
        default_factory=list, max_length=8, description="for unknown: the facts to collect"
    )
    applies_from: date = Field(description="the date from which this version of the rule applies")


@event_type("mlds.candidacy.decided.v1")
class CandidacyDecided(Payload):
    """An eligibility decision: every rule of the dispositif with pass, fail or unknown.

    eligible: every rule passed; not_eligible: at least one failed; incomplete: none failed, some
    are unknown until the facts they name are collected (a later decision has the next number).
    """

    candidacy_id: uuid.UUID = CANDIDACY_ID
    youth_id: str = YOUTH_ID
    dispositif: DispositifKind
    decision_number: int = Field(ge=1, le=100)
    outcome: DecisionOutcome
    rules: list[RuleResult] = Field(min_length=1, max_length=20)
    rights: list[Right] = Field(
        default_factory=list,
        max_length=2,
        description="rights the facts show to apply (droit au maintien, PAFI)",
    )
    under_obligation_de_formation: bool | None = Field(
        None, description="16 or 17 at the decision (obligation de formation); None when unknown"
    )
    decided_at: datetime


@event_type("mlds.enrolment.started.v1")
class EnrolmentStarted(Payload):
    """An admitted youth starts in the dispositif (under school status). `departement` is the site's."""

    candidacy_id: uuid.UUID = CANDIDACY_ID
    youth_id: str = YOUTH_ID
    dispositif: DispositifKind
    dispositif_id: str = DISPOSITIF_ID
    departement: str = Departement
    age: int = AGE
    under_obligation_de_formation: bool | None = Field(
        None, description="16 or 17 at the start; None when unknown"
    )
    pafi: bool = Field(
        False, description="within a parcours aménagé de la formation initiale validated by the DASEN"
    )
    started_on: date
    recorded_at: datetime


@event_type("mlds.enrolment.exited.v1")
class EnrolmentExited(Payload):
    """An enrolled youth left the dispositif, with a coded destination. `departement` is the site's."""

    candidacy_id: uuid.UUID = CANDIDACY_ID
    youth_id: str = YOUTH_ID
    dispositif: DispositifKind
    dispositif_id: str = DISPOSITIF_ID
    departement: str = Departement
    started_on: date
    exited_on: date
    destination: ExitDestination
    school_level: SchoolLevel | None = Field(None, description="for back_to_school: the level returned to")
    droit_au_maintien: bool = Field(
        False, description="back to school in the establishment of origin under the droit au maintien"
    )
    diploma_obtained: DiplomaObtained | None = None
    recorded_at: datetime
