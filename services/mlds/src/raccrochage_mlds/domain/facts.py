"""What the MLDS knows about a candidate: coarse facts only, each of which may be unknown (None).

No birth date, name, INE, nationality or country: an age in years on a known day, months out of
school, a level, months in France, a French level, yes/no facts. A rule that needs a fact that is
None answers "unknown" and names it; a coordinator collects it (`Facts.with_changes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from .dates import Dated, Span, months_on, years_on


class SchoolLevel(StrEnum):
    """The last class reached (or the class returned to)."""

    COLLEGE = "college"  # before 3e
    TROISIEME = "3e"
    CAP = "cap"
    SECONDE = "2nde"
    PREMIERE = "1re"
    TERMINALE = "terminale"
    POST_BAC = "post_bac"


LYCEE_LEVELS = frozenset({SchoolLevel.SECONDE, SchoolLevel.PREMIERE, SchoolLevel.TERMINALE})


class FrenchLevel(StrEnum):
    NONE = "none"  # non francophone
    BEGINNER = "beginner"  # francophone débutant
    INTERMEDIATE = "intermediate"
    FLUENT = "fluent"


class Fact(StrEnum):
    """The names of the facts, as decisions and events quote them."""

    AGE = "age"
    AGE_ON_1_SEPTEMBER = "age_on_1_september"
    MONTHS_OUT_OF_SCHOOL = "months_out_of_school"
    STILL_ENROLLED = "still_enrolled"
    HOLDS_DNB = "holds_dnb"
    QUALIFYING_DIPLOMA = "qualifying_diploma"
    LEVEL_REACHED = "level_reached"
    MONTHS_IN_FRANCE = "months_in_france"
    FRENCH_LEVEL = "french_level"
    SCHOOLED_IN_COUNTRY_OF_ORIGIN = "schooled_in_country_of_origin"
    HAD_UPE2A = "had_upe2a"
    REFERRED_BY_PSAD = "referred_by_psad"
    HAS_SOLUTION = "has_solution"
    FAILED_BAC = "failed_bac"


@dataclass(frozen=True)
class Facts:
    """A candidate's facts. Counts that grow with time carry the day they were true on."""

    age: Dated | None = None  # whole years on a day
    # Whole years on 1 September of the candidacy's entry school year, when a coordinator has
    # read it in the vault: settles the micro-lycée's age rule when `age` leaves it open.
    age_on_1_september: int | None = None
    months_out_of_school: Dated | None = None  # 0 while still enrolled
    still_enrolled: bool | None = None  # still a pupil of a school (a pupil at risk)
    holds_dnb: bool | None = None  # diplôme national du brevet
    # A CAP, BEP, bac pro or bac: a diploma at RNCP level 3 or 4, the end of décrochage.
    qualifying_diploma: bool | None = None
    level_reached: SchoolLevel | None = None
    months_in_france: Dated | None = None
    french_level: FrenchLevel | None = None
    schooled_in_country_of_origin: bool | None = None
    had_upe2a: bool | None = None  # taught in a UPE2A class in France
    referred_by_psad: bool | None = None
    has_solution: bool | None = None  # a school, training, contract or job already
    failed_bac: bool | None = None  # ajourné au baccalauréat: the droit au maintien applies

    def __post_init__(self) -> None:
        if self.age_on_1_september is not None and not 0 <= self.age_on_1_september <= 120:
            raise ValueError(f"age_on_1_september {self.age_on_1_september} out of 0..120")
        if self.age is not None and self.age.value > 120:
            raise ValueError(f"age {self.age.value} out of 0..120")

    def with_changes(self, **changes: Any) -> Facts:
        """These facts with some replaced (a coordinator completed or corrected them)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown facts: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def known(self) -> frozenset[Fact]:
        return frozenset(Fact(f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def age_on(self, day: date) -> Span | None:
        return years_on(self.age, day) if self.age is not None else None

    def months_out_of_school_on(self, day: date) -> Span | None:
        if self.months_out_of_school is None:
            return None
        return months_on(self.months_out_of_school, day)

    def months_in_france_on(self, day: date) -> Span | None:
        return months_on(self.months_in_france, day) if self.months_in_france is not None else None


OBLIGATION_DE_FORMATION_AGES = (16, 17)  # from 16 to 18: ages 16 and 17 in whole years


def under_obligation_de_formation(facts: Facts, day: date) -> bool | None:
    """16 or 17 on `day`; None when the age is unknown or may be either side of the window."""
    span = facts.age_on(day)
    if span is None:
        return None
    low, high = OBLIGATION_DE_FORMATION_AGES
    if low <= span.low and span.high <= high:
        return True
    if span.high < low or span.low > high:
        return False
    return None


def level_from_label(label: str | None) -> SchoolLevel | None:
    """The level a training label shows ("2nde GT", "1re bac pro", "CAP cuisine"), or None when
    the label does not say: a guess would turn an unknown into a pass or a fail."""
    if not label:
        return None
    word = label.strip().lower().replace("è", "e").replace("é", "e").split()
    if not word:
        return None
    first = word[0]
    if first in {"2nde", "2de", "seconde", "2nd"}:
        return SchoolLevel.SECONDE
    if first in {"1re", "1ere", "premiere"}:
        return SchoolLevel.PREMIERE
    if first in {"tle", "terminale", "term"}:
        return SchoolLevel.TERMINALE
    if first in {"cap", "1cap", "2cap"}:
        return SchoolLevel.CAP
    if first in {"3e", "3eme", "troisieme"}:
        return SchoolLevel.TROISIEME
    return None
