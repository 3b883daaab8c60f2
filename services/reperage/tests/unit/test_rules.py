"""Repérage rules: ages, diplomas, identifiers, names, exclusion order, and the campaign tally."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raccrochage_reperage.domain.partners import PartnerIndex, identity_key
from raccrochage_reperage.domain.rules import (
    DEFAULT_QUALIFYING,
    CampaignTally,
    Diploma,
    ExclusionReason,
    Policy,
    age_on,
    classify,
    exclusion_reason,
    is_valid_ine,
    normalise_ine,
    normalise_name,
)
from raccrochage_reperage.domain.siei import Rejection, SieiRow

AS_OF = date(2026, 11, 2)


def youth(
    line: int = 2,
    ine: str = "1234567890A",
    born: date = date(2009, 5, 1),
    diplome: Diploma | None = None,
    nom: str = "Dupont",
    prenom: str = "Léa",
) -> SieiRow:
    return SieiRow(
        line,
        ine,
        nom,
        prenom,
        born,
        "F",
        "33000",
        "Bordeaux",
        None,
        None,
        None,
        None,
        None,
        date(2026, 6, 30),
        diplome,
    )


NOBODY = PartnerIndex(AS_OF)


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(2010, 11, 2), date(2026, 11, 2), 16),  # 16th birthday on the reference date
        (date(2010, 11, 3), date(2026, 11, 2), 15),  # one day short of 16
        (date(2000, 11, 2), date(2026, 11, 2), 26),  # 26th birthday
        (date(2000, 11, 3), date(2026, 11, 2), 25),  # the day before turning 26
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # 29 Feb, non-leap year: not yet on 28 Feb
        (date(2008, 2, 29), date(2026, 3, 1), 18),  # ... one year older on 1 March
        (date(2008, 2, 29), date(2028, 2, 28), 19),  # leap year: not yet on 28 Feb
        (date(2008, 2, 29), date(2028, 2, 29), 20),  # ... one year older on 29 Feb
        (date(2008, 12, 31), date(2009, 1, 1), 0),
        (date(2027, 1, 1), date(2026, 11, 2), -1),  # born after the reference date
    ],
)
def test_age_on(birth: date, on: date, age: int) -> None:
    assert age_on(birth, on) == age


@pytest.mark.parametrize(
    ("birth", "as_of", "policy", "excluded"),
    [
        (date(2010, 11, 2), AS_OF, Policy(), False),  # 16 today: in
        (date(2010, 11, 3), AS_OF, Policy(), True),  # 16 tomorrow: out
        (date(2000, 11, 2), AS_OF, Policy(), True),  # 26 today: out
        (date(2000, 11, 3), AS_OF, Policy(), False),  # 26 tomorrow: in
        (date(2012, 2, 29), date(2028, 2, 28), Policy(), True),  # leap reference date, day before 16
        (date(2012, 2, 29), date(2028, 2, 29), Policy(), False),  # 16 on 29 Feb
        (date(2008, 2, 29), date(2025, 2, 28), Policy(min_age=17), True),  # non-leap: not 17 on 28 Feb
        (date(2008, 2, 29), date(2025, 3, 1), Policy(min_age=17), False),  # 17 on 1 March
        (date(2004, 1, 1), AS_OF, Policy(max_age=21), True),  # configurable band: 22 is out
        (date(2005, 1, 1), AS_OF, Policy(max_age=21), False),
        (date(2027, 1, 1), AS_OF, Policy(), True),  # a birth date after the reference date
    ],
)
def test_age_band_ends_are_in(birth: date, as_of: date, policy: Policy, excluded: bool) -> None:
    reason = exclusion_reason(youth(born=birth), as_of, policy, PartnerIndex(as_of))
    assert (reason is ExclusionReason.OUT_OF_AGE_BAND) is excluded
    assert reason in (None, ExclusionReason.OUT_OF_AGE_BAND)


def test_policy_rejects_an_empty_band() -> None:
    with pytest.raises(ValueError, match="age band"):
        Policy(min_age=20, max_age=18)


@pytest.mark.parametrize(
    ("diploma", "qualifying"),
    [
        (None, False),
        (Diploma.AUCUN, False),
        (Diploma.DNB, False),
        (Diploma.CAP, True),
        (Diploma.BEP, True),
        (Diploma.BP, True),
        (Diploma.BAC_PRO, True),
        (Diploma.BAC_GENERAL, True),
        (Diploma.BAC_TECHNO, True),
        (Diploma.BTS, True),
        (Diploma.DUT, True),
        (Diploma.BUT, True),
        (Diploma.LICENCE, True),
        (Diploma.MASTER, True),
        (Diploma.DOCTORAT, True),
    ],
)
def test_default_qualifying_diplomas(diploma: Diploma | None, qualifying: bool) -> None:
    assert (diploma in DEFAULT_QUALIFYING) is qualifying
    reason = exclusion_reason(youth(diplome=diploma), AS_OF, Policy(), NOBODY)
    assert (reason is ExclusionReason.QUALIFIED) is qualifying


def test_qualifying_set_is_configurable() -> None:
    only_bac = Policy(qualifying=frozenset({Diploma.BAC_GENERAL}))
    assert exclusion_reason(youth(diplome=Diploma.CAP), AS_OF, only_bac, NOBODY) is None
    assert (
        exclusion_reason(youth(diplome=Diploma.BAC_GENERAL), AS_OF, only_bac, NOBODY)
        is ExclusionReason.QUALIFIED
    )


def test_diploma_values_are_their_names() -> None:
    assert [d.value for d in Diploma] == [d.name for d in Diploma]
    assert len(Diploma) == 14


def test_rule_order_age_before_diploma_before_partner() -> None:
    old = youth(born=date(1990, 1, 1), diplome=Diploma.BAC_PRO)
    qualified = youth(diplome=Diploma.BAC_PRO)
    both = PartnerIndex.build([(old.ine, "x", date(2026, 1, 1), None)], AS_OF)
    assert exclusion_reason(old, AS_OF, Policy(), both) is ExclusionReason.OUT_OF_AGE_BAND
    assert exclusion_reason(qualified, AS_OF, Policy(), both) is ExclusionReason.QUALIFIED
    assert exclusion_reason(youth(), AS_OF, Policy(), both) is ExclusionReason.FOUND_IN_PARTNER_BASE
    assert exclusion_reason(youth(), AS_OF, Policy(), NOBODY) is None


@pytest.mark.parametrize(
    ("raw", "normalised", "valid"),
    [
        ("1234567890A", "1234567890A", True),
        ("1234567890a", "1234567890A", True),
        (" 12345 67890 a ", "1234567890A", True),
        ("1234\t567890A", "1234567890A", True),
        ("1234\u00a0567890A", "1234567890A", True),  # no-break space, as spreadsheets paste it
        ("ABCDEFGHIJK", "ABCDEFGHIJK", True),
        ("1234567890", "1234567890", False),  # 10 characters
        ("1234567890AB", "1234567890AB", False),  # 12
        ("1234567890-", "1234567890-", False),
        ("123456789É0", "123456789É0", False),  # not ASCII
        ("١٢٣٤٥٦٧٨٩٠A", "١٢٣٤٥٦٧٨٩٠A", False),  # digits, but not ASCII ones
        ("", "", False),
    ],
)
def test_ine(raw: str, normalised: str, valid: bool) -> None:
    assert normalise_ine(raw) == normalised
    assert is_valid_ine(normalise_ine(raw)) is valid


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("D'Arcy", "D ARCY"),
        ("D’Arcy", "D'ARCY"),
        ("d'arcy", "DARCY"),
        ("Jean-Pierre", "JEAN PIERRE"),
        ("Jean–Pierre", "jeanpierre"),  # en dash
        ("Éloïse", "ELOISE"),
        ("Maëlys", "maelys"),
        ("Lœtitia", "LOETITIA"),
        ("  Le  Goff ", "LEGOFF"),
        ("Iñaki", "INAKI"),
        ("N'Diaye", "N DIAYE"),
    ],
)
def test_names_that_compare_equal(left: str, right: str) -> None:
    assert normalise_name(left) == normalise_name(right)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("D'Arcy", "DARCY"),
        ("Jean-Pierre", "JEANPIERRE"),
        ("Éloïse", "ELOISE"),
        ("Ç", "C"),
        ("", ""),
    ],
)
def test_normalise_name(raw: str, normalised: str) -> None:
    assert normalise_name(raw) == normalised


@pytest.mark.parametrize(("left", "right"), [("Martin", "Martine"), ("Léa", "Léo"), ("D'Arcy", "Darcie")])
def test_names_that_differ(left: str, right: str) -> None:
    assert normalise_name(left) != normalise_name(right)


_LATIN = st.text(
    st.characters(whitelist_categories=("Lu", "Ll", "Zs", "Pd", "Mn"), max_codepoint=0x24F)
    | st.sampled_from("'’"),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(_LATIN)
def test_normalise_name_is_idempotent_and_bare(name: str) -> None:
    once = normalise_name(name)
    assert normalise_name(once) == once
    assert not any(c in once for c in " -'’")


def test_tally_always_lists_every_exclusion_reason_and_is_json_ready() -> None:
    tally = CampaignTally()
    assert tally.as_dict() == {
        "rows": 0,
        "rejected": 0,
        "rejected_by_reason": {},
        "duplicates": 0,
        "excluded": 0,
        "excluded_by_reason": {"out_of_age_band": 0, "qualified": 0, "found_in_partner_base": 0},
        "identified": 0,
    }
    assert json.loads(json.dumps(tally.as_dict())) == tally.as_dict()


def test_classify_counts_every_record_and_yields_each_youth_once() -> None:
    records = [
        youth(2, "1234567890A"),
        Rejection(3, "date_naissance", "invalid date"),
        youth(4, "1234567890A"),  # same youth again
        youth(5, "2234567890A", born=date(1980, 1, 1)),
        youth(6, "3234567890A", diplome=Diploma.CAP),
        youth(7, "4234567890A", nom="D'Arcy"),
        Rejection(8, "*", "wrong number of fields"),
        youth(9, "5234567890A"),
    ]
    partners = PartnerIndex.build(
        [(None, identity_key("D ARCY", "LEA", date(2009, 5, 1)), date(2026, 9, 1), None)], AS_OF
    )
    tally = CampaignTally()
    out = list(classify(records, AS_OF, Policy(), partners, tally))
    assert [(r.line, reason) for r, reason in out] == [
        (2, None),
        (5, ExclusionReason.OUT_OF_AGE_BAND),
        (6, ExclusionReason.QUALIFIED),
        (7, ExclusionReason.FOUND_IN_PARTNER_BASE),
        (9, None),
    ]
    assert tally.as_dict() == {
        "rows": 8,
        "rejected": 2,
        "rejected_by_reason": {"invalid date": 1, "wrong number of fields": 1},
        "duplicates": 1,
        "excluded": 3,
        "excluded_by_reason": {"out_of_age_band": 1, "qualified": 1, "found_in_partner_base": 1},
        "identified": 2,
    }
    assert tally.balanced


def test_a_rejected_row_does_not_claim_its_ine() -> None:
    records = [Rejection(2, "date_sortie", "invalid date"), youth(3, "1234567890A")]
    tally = CampaignTally()
    assert [r.line for r, _ in classify(records, AS_OF, Policy(), NOBODY, tally)] == [3]
    assert (tally.rejected, tally.duplicates, tally.identified) == (1, 0, 1)


def test_rows_are_frozen() -> None:
    row = youth()
    with pytest.raises(FrozenInstanceError):
        row.ine = "X"  # type: ignore[misc]
    assert replace(row, line=9).line == 9


def test_seen_filter_never_forgets_and_rarely_imagines() -> None:
    from raccrochage_reperage.domain.rules import SeenFilter

    seen = SeenFilter()
    keys = [hash(f"{n:011d}") for n in range(20_000)]
    assert not any(seen.add(k) for k in keys[:10_000:2])
    assert all(seen.add(k) for k in keys[:10_000:2])  # no false "not seen", ever
    imagined = sum(seen.add(k) for k in keys[10_000:])
    assert imagined < 10  # about 0.0003 % expected at this fill
