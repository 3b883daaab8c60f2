"""Eligibility from the guide's own words: a table per dispositif, and properties over any youth.

Each case's id quotes the guide ("La persévérance scolaire dans l'académie de Bordeaux",
janvier 2020), PUBLIC VISÉ of the dispositif's fiche.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from raccrochage_mlds.domain.candidacy import Candidacy, Channel, PsadRequest
from raccrochage_mlds.domain.catalogue import DispositifKind
from raccrochage_mlds.domain.dates import Dated, SchoolYear, whole_months, whole_years
from raccrochage_mlds.domain.eligibility import (
    RULEBOOK,
    DecisionOutcome,
    Right,
    Rule,
    Verdict,
    decide,
)
from raccrochage_mlds.domain.events import RequestAnswered
from raccrochage_mlds.domain.facts import Fact, Facts, FrenchLevel, SchoolLevel, level_from_label
from raccrochage_mlds.domain.states import CandidacyStatus

NOW = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)
TODAY = NOW.date()
RENTREE = date(2026, 9, 1)  # entry year 2026-2027
K = DispositifKind


def on_today(value: int) -> Dated:
    return Dated(value, TODAY)


def verdict(kind: DispositifKind, code: str, facts: Facts, now: datetime = NOW) -> tuple[Verdict, tuple]:
    decision = decide(kind, facts, now)
    result = next(r for r in decision.results if r.code == code)
    return result.verdict, tuple(f.value for f in result.missing)


PASS, FAIL, UNKNOWN = Verdict.PASS, Verdict.FAIL, Verdict.UNKNOWN

CASES = [
    # -- micro-lycée: "Jeunes de 17 à 25 ans en rupture scolaire depuis au moins six mois, repérés
    # par les PSAD"; "titulaires du DNB ou d'un niveau 2nde ou 1re ou terminale".
    (
        "micro_lycee.age_17_to_25_on_1_september",
        Facts(age_on_1_september=17),
        PASS,
        (),
        "17 ans au 1er septembre",
    ),
    (
        "micro_lycee.age_17_to_25_on_1_september",
        Facts(age_on_1_september=16),
        FAIL,
        (),
        "16 ans: pas encore 17",
    ),
    ("micro_lycee.age_17_to_25_on_1_september", Facts(age_on_1_september=25), PASS, (), "jusqu'à 25 ans"),
    (
        "micro_lycee.age_17_to_25_on_1_september",
        Facts(age_on_1_september=26),
        FAIL,
        (),
        "26 ans: au-delà de 25",
    ),
    (
        "micro_lycee.age_17_to_25_on_1_september",
        Facts(age=Dated(17, RENTREE)),
        PASS,
        (),
        "17 ans le jour même",
    ),
    (
        "micro_lycee.age_17_to_25_on_1_september",
        Facts(age=on_today(17)),
        UNKNOWN,
        ("age_on_1_september",),
        "17 ans en novembre: 16 ou 17 au 1er septembre",
    ),
    ("micro_lycee.age_17_to_25_on_1_september", Facts(age=on_today(18)), PASS, (), "18 ans en novembre"),
    ("micro_lycee.age_17_to_25_on_1_september", Facts(age=on_today(27)), FAIL, (), "27 ans en novembre"),
    ("micro_lycee.age_17_to_25_on_1_september", Facts(), UNKNOWN, ("age_on_1_september",), "âge inconnu"),
    (
        "micro_lycee.out_of_school_6_months",
        Facts(months_out_of_school=on_today(6)),
        PASS,
        (),
        "depuis au moins six mois",
    ),
    (
        "micro_lycee.out_of_school_6_months",
        Facts(months_out_of_school=on_today(5)),
        FAIL,
        (),
        "cinq mois: pas encore six",
    ),
    (
        "micro_lycee.out_of_school_6_months",
        Facts(months_out_of_school=Dated(5, date(2026, 10, 20))),
        UNKNOWN,
        ("months_out_of_school",),
        "cinq mois au 20 octobre: cinq ou six le 12 novembre",
    ),
    ("micro_lycee.dnb_or_lycee_level", Facts(holds_dnb=True), PASS, (), "titulaires du DNB"),
    ("micro_lycee.dnb_or_lycee_level", Facts(level_reached=SchoolLevel.SECONDE), PASS, (), "niveau 2nde"),
    (
        "micro_lycee.dnb_or_lycee_level",
        Facts(level_reached=SchoolLevel.TERMINALE),
        PASS,
        (),
        "niveau terminale",
    ),
    (
        "micro_lycee.dnb_or_lycee_level",
        Facts(holds_dnb=False, level_reached=SchoolLevel.TROISIEME),
        FAIL,
        (),
        "sans DNB, niveau 3e",
    ),
    (
        "micro_lycee.dnb_or_lycee_level",
        Facts(holds_dnb=False),
        UNKNOWN,
        ("level_reached",),
        "sans DNB, niveau inconnu",
    ),
    ("micro_lycee.referred_by_psad", Facts(referred_by_psad=True), PASS, (), "sur proposition des PSAD"),
    ("micro_lycee.referred_by_psad", Facts(referred_by_psad=False), FAIL, (), "hors PSAD"),
    # -- DIPA: "Jeunes de 16 à 18 ans nouvellement arrivés (moins d'un an) non francophones ou
    # francophones débutants; scolarisés dans leur pays d'origine; n'ayant pas bénéficié d'un
    # enseignement en UPE2A en France".
    ("dipa.age_16_to_18", Facts(age=on_today(15)), FAIL, (), "15 ans: moins de 16"),
    ("dipa.age_16_to_18", Facts(age=on_today(16)), PASS, (), "16 ans"),
    ("dipa.age_16_to_18", Facts(age=on_today(18)), PASS, (), "18 ans"),
    ("dipa.age_16_to_18", Facts(age=on_today(19)), FAIL, (), "19 ans: plus de 18"),
    (
        "dipa.age_16_to_18",
        Facts(age=Dated(18, TODAY - timedelta(days=200))),
        UNKNOWN,
        ("age",),
        "18 il y a 200 jours",
    ),
    ("dipa.arrived_less_than_1_year", Facts(months_in_france=on_today(11)), PASS, (), "moins d'un an"),
    ("dipa.arrived_less_than_1_year", Facts(months_in_france=on_today(12)), FAIL, (), "un an et plus"),
    ("dipa.non_french_speaking", Facts(french_level=FrenchLevel.NONE), PASS, (), "non francophones"),
    (
        "dipa.non_french_speaking",
        Facts(french_level=FrenchLevel.BEGINNER),
        PASS,
        (),
        "francophones débutants",
    ),
    (
        "dipa.non_french_speaking",
        Facts(french_level=FrenchLevel.INTERMEDIATE),
        FAIL,
        (),
        "francophones confirmés",
    ),
    ("dipa.non_french_speaking", Facts(), UNKNOWN, ("french_level",), "niveau de français inconnu"),
    (
        "dipa.schooled_in_country_of_origin",
        Facts(schooled_in_country_of_origin=True),
        PASS,
        (),
        "scolarisés dans leur pays d'origine",
    ),
    (
        "dipa.schooled_in_country_of_origin",
        Facts(schooled_in_country_of_origin=False),
        FAIL,
        (),
        "non scolarisés dans leur pays d'origine",
    ),
    ("dipa.never_in_upe2a", Facts(had_upe2a=False), PASS, (), "n'ayant pas bénéficié de l'UPE2A"),
    ("dipa.never_in_upe2a", Facts(had_upe2a=True), FAIL, (), "déjà en UPE2A en France"),
    # -- PAPS: "Les jeunes scolarisés en risque de décrochage scolaire"; "Les jeunes âgés de 16 à
    # 18 ans, sortis depuis moins d'un an d'un établissement scolaire, sans solution"; "sans avoir
    # obtenu de diplôme ni un niveau de qualification suffisant".
    ("paps.age_16_to_18", Facts(age=on_today(17)), PASS, (), "âgés de 16 à 18 ans"),
    ("paps.age_16_to_18", Facts(age=on_today(20)), FAIL, (), "20 ans"),
    (
        "paps.at_risk_or_left_less_than_1_year",
        Facts(still_enrolled=False, months_out_of_school=on_today(11)),
        PASS,
        (),
        "sortis depuis moins d'un an",
    ),
    (
        "paps.at_risk_or_left_less_than_1_year",
        Facts(still_enrolled=False, months_out_of_school=on_today(12)),
        FAIL,
        (),
        "sortis depuis un an",
    ),
    (
        "paps.at_risk_or_left_less_than_1_year",
        Facts(still_enrolled=True),
        PASS,
        (),
        "scolarisés en risque de décrochage",
    ),
    (
        "paps.at_risk_or_left_less_than_1_year",
        Facts(months_out_of_school=on_today(14)),
        UNKNOWN,
        ("still_enrolled",),
        "sorti depuis 14 mois, scolarité actuelle inconnue",
    ),
    ("paps.without_solution", Facts(still_enrolled=False, has_solution=False), PASS, (), "sans solution"),
    ("paps.without_solution", Facts(still_enrolled=False, has_solution=True), FAIL, (), "avec une solution"),
    (
        "paps.without_solution",
        Facts(has_solution=True),
        UNKNOWN,
        ("still_enrolled",),
        "solution, scolarité inconnue",
    ),
    ("paps.without_qualification", Facts(qualifying_diploma=False), PASS, (), "sans diplôme qualifiant"),
    ("paps.without_qualification", Facts(qualifying_diploma=True), FAIL, (), "titulaire d'un CAP"),
]


@pytest.mark.parametrize(
    ("code", "facts", "expected", "missing", "wording"), CASES, ids=[c[-1] for c in CASES]
)
def test_each_rule_as_the_guide_words_it(code, facts, expected, missing, wording) -> None:
    kind = DispositifKind(code.split(".")[0])
    assert verdict(kind, code, facts) == (expected, missing)


def test_a_decision_lists_every_rule_of_its_dispositif_with_its_facts_and_date() -> None:
    decision = decide(K.DIPA, Facts(age=on_today(17), months_in_france=on_today(14)), NOW)
    assert [(r.code, r.verdict.value) for r in decision.results] == [
        ("dipa.age_16_to_18", "pass"),
        ("dipa.arrived_less_than_1_year", "fail"),
        ("dipa.non_french_speaking", "unknown"),
        ("dipa.schooled_in_country_of_origin", "unknown"),
        ("dipa.never_in_upe2a", "unknown"),
    ]
    assert decision.outcome is DecisionOutcome.NOT_ELIGIBLE
    assert decision.failed_rules == ("dipa.arrived_less_than_1_year",)
    assert decision.missing_facts == (Fact.FRENCH_LEVEL, Fact.SCHOOLED_IN_COUNTRY_OF_ORIGIN, Fact.HAD_UPE2A)
    assert {r.applies_from for r in decision.results} == {date(2020, 1, 14)}
    assert decision.results[1].evidence == "14 months on 2026-11-12"
    assert decision.under_obligation_de_formation is True


def test_rights_droit_au_maintien_after_a_failed_bac_and_pafi_for_a_pupil_of_15() -> None:
    """ "la possibilité pour les candidats qui ont échoué à l'examen du baccalauréat [...] le droit au
    maintien"; PAFI: "proposé aux jeunes d'au moins 15 ans en risque de décrochage et scolarisés"."""
    assert decide(K.MICRO_LYCEE, Facts(failed_bac=True), NOW).rights == (Right.DROIT_AU_MAINTIEN,)
    pupil = Facts(age=on_today(15), still_enrolled=True)
    assert decide(K.PAPS, pupil, NOW).rights == (Right.PAFI,)
    assert decide(K.PAPS, pupil.with_changes(age=on_today(14)), NOW).rights == ()


def test_a_later_rule_applies_from_its_date_and_rewrites_no_past_decision() -> None:
    stricter = Rule(
        "micro_lycee.age_17_to_25_on_1_september",
        K.MICRO_LYCEE,
        "(a later circular) 18 à 25 ans",
        (Fact.AGE, Fact.AGE_ON_1_SEPTEMBER),
        next(r for r in RULEBOOK.rules if r.code == "dipa.age_16_to_18").test,  # any other test
        applies_from=date(2027, 9, 1),
    )
    rulebook = RULEBOOK.with_rules([stricter])
    facts = Facts(age_on_1_september=17, age=on_today(17))
    before = decide(K.MICRO_LYCEE, facts, NOW, rulebook=rulebook)
    assert before.results[0].applies_from == date(2020, 1, 14) and before.results[0].verdict is PASS
    after = decide(K.MICRO_LYCEE, facts, datetime(2027, 10, 1, tzinfo=UTC), rulebook=rulebook)
    assert after.results[0].applies_from == date(2027, 9, 1)
    assert len(after.results) == len(before.results)  # one version per code
    assert before.results[0].verdict is PASS  # the stored decision is what it was


def test_a_retired_rule_is_not_applied_after_its_end() -> None:
    retired = [
        Rule(r.code, r.kind, r.wording, r.facts, r.test, r.applies_from, applies_until=date(2027, 1, 1))
        if r.code == "dipa.never_in_upe2a"
        else r
        for r in RULEBOOK.rules
    ]
    rulebook = type(RULEBOOK)(tuple(retired))
    codes = [
        r.code for r in decide(K.DIPA, Facts(), datetime(2027, 2, 1, tzinfo=UTC), rulebook=rulebook).results
    ]
    assert "dipa.never_in_upe2a" not in codes
    assert "dipa.never_in_upe2a" in [r.code for r in decide(K.DIPA, Facts(), NOW, rulebook=rulebook).results]


@pytest.mark.parametrize(
    ("label", "level"),
    [
        ("2nde GT", SchoolLevel.SECONDE),
        ("1ère bac pro commerce", SchoolLevel.PREMIERE),
        ("Tle STMG", SchoolLevel.TERMINALE),
        ("CAP cuisine", SchoolLevel.CAP),
        ("3e prépa-métiers", SchoolLevel.TROISIEME),
        ("BTS SIO", None),  # not a level this label tells: unknown, not a guess
        ("", None),
        (None, None),
    ],
)
def test_a_training_label_gives_a_level_only_when_it_says_so(label, level) -> None:
    assert level_from_label(label) is level


# --- properties over any youth -----------------------------------------------------------------


@st.composite
def truths(draw) -> dict:
    """A youth's true situation (what the vault and the youth know), from which facts are read."""
    now = draw(
        st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))
    )
    today = now.date()
    born = today - timedelta(days=draw(st.integers(12 * 365, 30 * 365)))
    left = today - timedelta(days=draw(st.integers(0, 4 * 365)))
    arrived = today - timedelta(days=draw(st.integers(0, 5 * 365)))
    as_of = today - timedelta(days=draw(st.integers(0, 400)))
    as_of = max(as_of, born, left, arrived)
    still_enrolled = draw(st.booleans())
    if still_enrolled:
        left = today
    return {
        "now": now,
        "facts": Facts(
            age=Dated(whole_years(born, as_of), as_of),
            age_on_1_september=max(whole_years(born, SchoolYear.containing(today).starts_on), 0),
            months_out_of_school=Dated(0 if still_enrolled else whole_months(left, as_of), as_of),
            still_enrolled=still_enrolled,
            holds_dnb=draw(st.booleans()),
            qualifying_diploma=draw(st.booleans()),
            level_reached=draw(st.sampled_from(SchoolLevel)),
            months_in_france=Dated(whole_months(arrived, as_of), as_of),
            french_level=draw(st.sampled_from(FrenchLevel)),
            schooled_in_country_of_origin=draw(st.booleans()),
            had_upe2a=draw(st.booleans()),
            referred_by_psad=draw(st.booleans()),
            has_solution=draw(st.booleans()),
            failed_bac=draw(st.booleans()),
        ),
    }


def erase(facts: Facts, names) -> Facts:
    return facts.with_changes(**dict.fromkeys(names))


FACT_NAMES = [f.value for f in Fact]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(truth=truths(), kind=st.sampled_from(DispositifKind), erased=st.sets(st.sampled_from(FACT_NAMES)))
def test_unknown_facts_give_unknown_never_fail(truth, kind, erased) -> None:
    """Knowing less never makes a rule fail: each verdict stays what it was, or becomes unknown."""
    full = decide(kind, truth["facts"], truth["now"])
    partial = decide(kind, erase(truth["facts"], erased), truth["now"])
    for known, less in zip(full.results, partial.results, strict=True):
        assert less.verdict in (known.verdict, Verdict.UNKNOWN), (known, less)
        if less.verdict is Verdict.FAIL:
            assert not ({f.value for f in less.facts} <= erased)


@given(
    kind=st.sampled_from(DispositifKind),
    now=st.datetimes(timezones=st.just(UTC), min_value=datetime(2021, 1, 1)),
)
def test_with_no_fact_at_all_every_rule_is_unknown_and_names_what_to_collect(kind, now) -> None:
    decision = decide(kind, Facts(), now)
    assert decision.outcome is DecisionOutcome.INCOMPLETE
    for result in decision.results:
        assert result.verdict is Verdict.UNKNOWN
        assert result.missing and set(result.missing) <= set(result.facts)


@settings(max_examples=300)
@given(truth=truths(), kind=st.sampled_from(DispositifKind), erased=st.sets(st.sampled_from(FACT_NAMES)))
def test_a_failing_rule_always_appears_in_the_reasons_and_only_unknowns_name_facts(
    truth, kind, erased
) -> None:
    facts = erase(truth["facts"], erased).with_changes(age=truth["facts"].age)
    candidacy = _candidacy(kind, facts, truth["now"])
    decision = candidacy.decide(truth["now"])
    failing = tuple(r.code for r in decision.results if r.verdict is Verdict.FAIL)
    assert decision.failed_rules == failing
    for result in decision.results:
        assert bool(result.missing) == (result.verdict is Verdict.UNKNOWN)
    if failing:
        assert candidacy.status is CandidacyStatus.REFUSED
        assert candidacy.refusal is not None and candidacy.refusal.failed_rules == failing
        answers = [e for e in candidacy.events if isinstance(e, RequestAnswered)]
        assert [(a.accepted, a.refusal) for a in answers] == [(False, "not_eligible")]
    else:
        assert candidacy.status is not CandidacyStatus.REFUSED


@st.composite
def passing(draw) -> tuple[DispositifKind, Facts, datetime]:
    """A youth who passes every rule of the dispositif, however the facts are known."""
    now = draw(
        st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))
    )
    kind = draw(st.sampled_from(DispositifKind))
    today = now.date()
    if kind is K.MICRO_LYCEE:
        facts = Facts(
            age=Dated(draw(st.integers(18, 24)), today),
            age_on_1_september=draw(st.integers(17, 25)),
            months_out_of_school=Dated(draw(st.integers(6, 60)), today),
            holds_dnb=draw(st.sampled_from([True, None])),
            level_reached=draw(st.sampled_from(sorted(SchoolLevel))),
            referred_by_psad=True,
        )
        assume(
            facts.holds_dnb
            or facts.level_reached in (SchoolLevel.SECONDE, SchoolLevel.PREMIERE, SchoolLevel.TERMINALE)
        )
    elif kind is K.DIPA:
        facts = Facts(
            age=Dated(draw(st.integers(16, 18)), today),
            months_in_france=Dated(draw(st.integers(0, 11)), today),
            french_level=draw(st.sampled_from([FrenchLevel.NONE, FrenchLevel.BEGINNER])),
            schooled_in_country_of_origin=True,
            had_upe2a=False,
        )
    else:
        enrolled = draw(st.booleans())
        facts = Facts(
            age=Dated(draw(st.integers(16, 18)), today),
            still_enrolled=enrolled,
            months_out_of_school=Dated(0 if enrolled else draw(st.integers(0, 11)), today),
            has_solution=None if enrolled else False,
            qualifying_diploma=False,
        )
    return kind, facts, now


@given(case=passing())
def test_a_youth_who_passes_every_rule_is_never_refused(case) -> None:
    kind, facts, now = case
    candidacy = _candidacy(kind, facts, now)
    decision = candidacy.decide(now)
    assert all(r.verdict is Verdict.PASS for r in decision.results)
    assert decision.outcome is DecisionOutcome.ELIGIBLE
    assert candidacy.status is CandidacyStatus.ADMISSIBLE and candidacy.refusal is None
    assert not [e for e in candidacy.events if isinstance(e, RequestAnswered) and not e.accepted]


def _candidacy(kind: DispositifKind, facts: Facts, now: datetime) -> Candidacy:
    request = PsadRequest(uuid.uuid4(), uuid.uuid4(), "psad-33-medoc")
    return Candidacy.receive(
        uuid.uuid4(), "a" * 64, kind, "33", facts, now, channel=Channel.PSAD_REQUEST, request=request
    )
