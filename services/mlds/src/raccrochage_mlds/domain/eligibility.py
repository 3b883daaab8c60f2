"""Eligibility, explained: one rule set per dispositif, from the guide's own words.

Every rule answers pass, fail or unknown, names the facts it read and, when unknown, the facts to
collect. A rule fails only when the facts it has settle it: a missing fact, or an age or a count
that a coarse fact leaves on both sides of a bound, gives unknown, never fail.

Rules carry the date from which they apply (`applies_from`, and `applies_until` for a retired
one). A decision uses the versions in force on its day and is stored with its results, so a rule
changed later rewrites no past decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from .catalogue import DispositifKind
from .dates import SchoolYear, Span
from .facts import LYCEE_LEVELS, Fact, Facts, FrenchLevel, under_obligation_de_formation

# The guide this rule book quotes: "La persévérance scolaire dans l'académie de Bordeaux",
# 14 janvier 2020.
GUIDE_2020 = date(2020, 1, 14)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


class DecisionOutcome(StrEnum):
    ELIGIBLE = "eligible"  # every rule passed
    NOT_ELIGIBLE = "not_eligible"  # at least one rule failed
    INCOMPLETE = "incomplete"  # none failed, some unknown: facts to collect


class Right(StrEnum):
    """Rights the facts show to apply, recorded beside the decision."""

    DROIT_AU_MAINTIEN = "droit_au_maintien"  # failed the bac: may stay in the school of origin
    PAFI = "pafi"  # a pupil of at least 15 at risk: a parcours aménagé, validated by the DASEN


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides the facts: the day of the decision, and 1 September of
    the school year the youth would enter."""

    decided_on: date
    entry_year: SchoolYear

    @property
    def rentree(self) -> date:
        return self.entry_year.starts_on


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    evidence: str  # what the rule saw, for the coordinator (stays in the MLDS database)
    missing: tuple[Fact, ...] = ()


@dataclass(frozen=True)
class Rule:
    code: str
    kind: DispositifKind
    wording: str  # the guide's words this rule checks
    facts: tuple[Fact, ...]
    test: Callable[[Facts, Context], Check]
    applies_from: date = GUIDE_2020
    applies_until: date | None = None  # first day it no longer applies

    def in_force(self, day: date) -> bool:
        return self.applies_from <= day and (self.applies_until is None or day < self.applies_until)


@dataclass(frozen=True)
class RuleResult:
    code: str
    verdict: Verdict
    facts: tuple[Fact, ...]
    missing: tuple[Fact, ...]
    applies_from: date
    evidence: str


@dataclass(frozen=True)
class Decision:
    """Every rule of the dispositif in force on the day, with its verdict."""

    number: int
    kind: DispositifKind
    decided_at: datetime
    entry_year: SchoolYear
    results: tuple[RuleResult, ...]
    rights: tuple[Right, ...] = ()
    under_obligation_de_formation: bool | None = None

    @property
    def outcome(self) -> DecisionOutcome:
        verdicts = {r.verdict for r in self.results}
        if Verdict.FAIL in verdicts:
            return DecisionOutcome.NOT_ELIGIBLE
        if Verdict.UNKNOWN in verdicts:
            return DecisionOutcome.INCOMPLETE
        return DecisionOutcome.ELIGIBLE

    @property
    def failed_rules(self) -> tuple[str, ...]:
        """The reasons of a refusal: the codes of every rule that failed."""
        return tuple(r.code for r in self.results if r.verdict is Verdict.FAIL)

    @property
    def missing_facts(self) -> tuple[Fact, ...]:
        """The facts to collect, each once, in the rules' order."""
        return tuple(dict.fromkeys(f for r in self.results for f in r.missing))


# --- building blocks: a verdict from a range of values ---------------------------------------


def _within(span: Span, low: int | None, high: int | None) -> Verdict:
    """PASS when every value the span allows is within [low, high], FAIL when none is."""
    low_ok = low is None or span.low >= low
    high_ok = high is None or span.high <= high
    if low_ok and high_ok:
        return Verdict.PASS
    if (low is not None and span.high < low) or (high is not None and span.low > high):
        return Verdict.FAIL
    return Verdict.UNKNOWN


def _age_between(low: int, high: int, *, on_rentree: bool) -> Callable[[Facts, Context], Check]:
    missing_age = Fact.AGE_ON_1_SEPTEMBER if on_rentree else Fact.AGE

    def test(facts: Facts, context: Context) -> Check:
        if on_rentree and facts.age_on_1_september is not None:
            value = facts.age_on_1_september
            span = Span(value, value)
            seen = f"{value} on {context.rentree} (age_on_1_september)"
        else:
            day = context.rentree if on_rentree else context.decided_on
            span = facts.age_on(day)
            if span is None:
                return Check(Verdict.UNKNOWN, "age unknown", (missing_age,))
            assert facts.age is not None
            seen = f"{span} on {day} (from {facts.age.value} on {facts.age.on})"
        verdict = _within(span, low, high)
        # Unknown: the age is known, but not on the day that matters; ask for it on that day.
        return Check(verdict, seen, (missing_age,) if verdict is Verdict.UNKNOWN else ())

    return test


def _months(fact: Fact, read: Callable[[Facts, date], Span | None], low: int | None, high: int | None):
    def test(facts: Facts, context: Context) -> Check:
        span = read(facts, context.decided_on)
        if span is None:
            return Check(Verdict.UNKNOWN, f"{fact.value} unknown", (fact,))
        verdict = _within(span, low, high)
        seen = f"{span} months on {context.decided_on}"
        return Check(verdict, seen, (fact,) if verdict is Verdict.UNKNOWN else ())

    return test


def _yes(fact: Fact, wanted: bool) -> Callable[[Facts, Context], Check]:
    def test(facts: Facts, context: Context) -> Check:
        value = getattr(facts, fact.value)
        if value is None:
            return Check(Verdict.UNKNOWN, f"{fact.value} unknown", (fact,))
        return Check(Verdict.PASS if value is wanted else Verdict.FAIL, f"{fact.value} = {value}")

    return test


def _dnb_or_lycee_level(facts: Facts, context: Context) -> Check:
    seen = f"holds_dnb = {facts.holds_dnb}, level_reached = {facts.level_reached}"
    if facts.holds_dnb is True or facts.level_reached in LYCEE_LEVELS:
        return Check(Verdict.PASS, seen)
    if facts.holds_dnb is False and facts.level_reached is not None:
        return Check(Verdict.FAIL, seen)
    missing = tuple(f for f in (Fact.HOLDS_DNB, Fact.LEVEL_REACHED) if getattr(facts, f.value) is None)
    return Check(Verdict.UNKNOWN, seen, missing)


def _non_french_speaking(facts: Facts, context: Context) -> Check:
    if facts.french_level is None:
        return Check(Verdict.UNKNOWN, "french_level unknown", (Fact.FRENCH_LEVEL,))
    passes = facts.french_level in (FrenchLevel.NONE, FrenchLevel.BEGINNER)
    return Check(Verdict.PASS if passes else Verdict.FAIL, f"french_level = {facts.french_level}")


def _at_risk_or_left_less_than_a_year(facts: Facts, context: Context) -> Check:
    if facts.still_enrolled is True:
        return Check(Verdict.PASS, "still_enrolled = True")
    months = facts.months_out_of_school_on(context.decided_on)
    seen = f"still_enrolled = {facts.still_enrolled}, months_out_of_school = {months}"
    verdict = _within(months, None, 11) if months is not None else Verdict.UNKNOWN
    if verdict is Verdict.PASS:
        return Check(verdict, seen)
    if verdict is Verdict.FAIL and facts.still_enrolled is False:
        return Check(verdict, seen)
    missing = []
    if facts.still_enrolled is None:
        missing.append(Fact.STILL_ENROLLED)
    if verdict is Verdict.UNKNOWN:
        missing.append(Fact.MONTHS_OUT_OF_SCHOOL)
    return Check(Verdict.UNKNOWN, seen, tuple(missing))


def _without_solution(facts: Facts, context: Context) -> Check:
    seen = f"still_enrolled = {facts.still_enrolled}, has_solution = {facts.has_solution}"
    # A pupil still enrolled is at risk in the school they attend: the PAPS is their support.
    if facts.still_enrolled is True or facts.has_solution is False:
        return Check(Verdict.PASS, seen)
    if facts.still_enrolled is False and facts.has_solution is True:
        return Check(Verdict.FAIL, seen)
    missing = tuple(f for f in (Fact.STILL_ENROLLED, Fact.HAS_SOLUTION) if getattr(facts, f.value) is None)
    return Check(Verdict.UNKNOWN, seen, missing)


K = DispositifKind

RULES: tuple[Rule, ...] = (
    # -- micro-lycée ("Les micro-lycées", PUBLIC VISÉ and MODALITÉS) --
    Rule(
        "micro_lycee.age_17_to_25_on_1_september",
        K.MICRO_LYCEE,
        "Jeunes de 17 à 25 ans (au moins 17 ans au 1er septembre de l'année scolaire d'entrée)",
        (Fact.AGE, Fact.AGE_ON_1_SEPTEMBER),
        _age_between(17, 25, on_rentree=True),
    ),
    Rule(
        "micro_lycee.out_of_school_6_months",
        K.MICRO_LYCEE,
        "en rupture scolaire depuis au moins six mois",
        (Fact.MONTHS_OUT_OF_SCHOOL,),
        _months(Fact.MONTHS_OUT_OF_SCHOOL, Facts.months_out_of_school_on, 6, None),
    ),
    Rule(
        "micro_lycee.dnb_or_lycee_level",
        K.MICRO_LYCEE,
        "titulaires du DNB ou d'un niveau 2nde ou 1re ou terminale",
        (Fact.HOLDS_DNB, Fact.LEVEL_REACHED),
        _dnb_or_lycee_level,
    ),
    Rule(
        "micro_lycee.referred_by_psad",
        K.MICRO_LYCEE,
        "repérés par les PSAD ; recrutement académique sur proposition des PSAD",
        (Fact.REFERRED_BY_PSAD,),
        _yes(Fact.REFERRED_BY_PSAD, True),
    ),
    # -- DIPA ("Le dispositif d'insertion des primo-arrivants", PUBLIC VISÉ) --
    Rule(
        "dipa.age_16_to_18",
        K.DIPA,
        "Jeunes de 16 à 18 ans",
        (Fact.AGE,),
        _age_between(16, 18, on_rentree=False),
    ),
    Rule(
        "dipa.arrived_less_than_1_year",
        K.DIPA,
        "nouvellement arrivés (moins d'un an)",
        (Fact.MONTHS_IN_FRANCE,),
        _months(Fact.MONTHS_IN_FRANCE, Facts.months_in_france_on, None, 11),
    ),
    Rule(
        "dipa.non_french_speaking",
        K.DIPA,
        "non francophones ou francophones débutants",
        (Fact.FRENCH_LEVEL,),
        _non_french_speaking,
    ),
    Rule(
        "dipa.schooled_in_country_of_origin",
        K.DIPA,
        "Scolarisés dans leur pays d'origine",
        (Fact.SCHOOLED_IN_COUNTRY_OF_ORIGIN,),
        _yes(Fact.SCHOOLED_IN_COUNTRY_OF_ORIGIN, True),
    ),
    Rule(
        "dipa.never_in_upe2a",
        K.DIPA,
        "N'ayant pas bénéficié d'un enseignement en UPE2A en France",
        (Fact.HAD_UPE2A,),
        _yes(Fact.HAD_UPE2A, False),
    ),
    # -- PAPS ("La MLDS - les pôles d'accompagnement à la persévérance scolaire", PUBLIC VISÉ) --
    Rule(
        "paps.age_16_to_18",
        K.PAPS,
        "Les jeunes âgés de 16 à 18 ans",
        (Fact.AGE,),
        _age_between(16, 18, on_rentree=False),
    ),
    Rule(
        "paps.at_risk_or_left_less_than_1_year",
        K.PAPS,
        "Les jeunes scolarisés en risque de décrochage scolaire ; sortis depuis moins d'un an d'un établissement scolaire",
        (Fact.STILL_ENROLLED, Fact.MONTHS_OUT_OF_SCHOOL),
        _at_risk_or_left_less_than_a_year,
    ),
    Rule(
        "paps.without_solution",
        K.PAPS,
        "sans solution",
        (Fact.STILL_ENROLLED, Fact.HAS_SOLUTION),
        _without_solution,
    ),
    Rule(
        "paps.without_qualification",
        K.PAPS,
        "sans avoir obtenu de diplôme ni un niveau de qualification suffisant",
        (Fact.QUALIFYING_DIPLOMA,),
        _yes(Fact.QUALIFYING_DIPLOMA, False),
    ),
)


@dataclass(frozen=True)
class Rulebook:
    """Every version of every rule; a decision takes the versions in force on its day."""

    rules: tuple[Rule, ...] = RULES

    def in_force(self, kind: DispositifKind, day: date) -> list[Rule]:
        chosen: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.kind is not kind or not rule.in_force(day):
                continue
            current = chosen.get(rule.code)
            if current is None or rule.applies_from > current.applies_from:
                chosen[rule.code] = rule
        return list(chosen.values())

    def with_rules(self, rules: Iterable[Rule]) -> Rulebook:
        return Rulebook((*self.rules, *rules))


RULEBOOK = Rulebook()


def rights(facts: Facts, day: date) -> tuple[Right, ...]:
    found = []
    if facts.failed_bac is True:
        found.append(Right.DROIT_AU_MAINTIEN)
    age = facts.age_on(day)
    if facts.still_enrolled is True and age is not None and age.low >= 15:
        found.append(Right.PAFI)
    return tuple(found)


def decide(
    kind: DispositifKind,
    facts: Facts,
    now: datetime,
    *,
    entry_year: SchoolYear | None = None,
    number: int = 1,
    rulebook: Rulebook = RULEBOOK,
) -> Decision:
    """Apply every rule of `kind` in force on `now`'s day. The entry year defaults to the school
    year of the decision (a coordinator names the next one for a candidacy for the rentrée)."""
    day = now.date()
    context = Context(day, entry_year or SchoolYear.containing(day))
    rules: Sequence[Rule] = rulebook.in_force(kind, day)
    if not rules:
        raise ValueError(f"no eligibility rule for {kind.value} is in force on {day}")
    results = []
    for rule in rules:
        check = rule.test(facts, context)
        results.append(
            RuleResult(rule.code, check.verdict, rule.facts, check.missing, rule.applies_from, check.evidence)
        )
    return Decision(
        number,
        kind,
        now,
        context.entry_year,
        tuple(results),
        rights(facts, day),
        under_obligation_de_formation(facts, day),
    )
