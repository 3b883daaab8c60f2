"""Partner base files and the partner index: who counts as enrolled on the reference date."""

from __future__ import annotations

import io
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raccrochage_reperage.domain.partners import (
    PartnerEnrolment,
    PartnerIndex,
    PartnerSource,
    identity_key,
    open_partner_file,
)
from raccrochage_reperage.domain.rules import ExclusionReason, Policy, exclusion_reason
from raccrochage_reperage.domain.siei import FileFormatError, Rejection, SieiRow

AS_OF = date(2026, 11, 2)
HEADER = "ine;nom;prenom;date_naissance;date_debut;date_fin"


def enrolments(
    *lines: str, header: str = HEADER, encoding: str = "utf-8"
) -> list[PartnerEnrolment | Rejection]:
    data = "\r\n".join([header, *lines]).encode(encoding)
    return list(open_partner_file(io.BytesIO(data)).records)


def youth(
    ine: str = "1234567890A", nom: str = "D'Arcy", prenom: str = "Jean-Pierre", born: date = date(2009, 5, 1)
) -> SieiRow:
    return SieiRow(
        2, ine, nom, prenom, born, None, "33000", None, None, None, None, None, None, date(2026, 6, 30), None
    )


def test_sources() -> None:
    assert [s.value for s in PartnerSource] == ["cfa", "agri", "ml", "mlds", "en"]


def test_a_partner_file() -> None:
    got = enrolments(
        "1234 567890a;Dupont;Léa;01/05/2009;2026-09-01;",
        ";D ARCY;JEAN PIERRE;2009-05-01;01/09/2025;30/06/2026",
    )
    assert got == [
        PartnerEnrolment(2, "1234567890A", "Dupont", "Léa", date(2009, 5, 1), date(2026, 9, 1), None),
        PartnerEnrolment(
            3, None, "D ARCY", "JEAN PIERRE", date(2009, 5, 1), date(2025, 9, 1), date(2026, 6, 30)
        ),
    ]


def test_cp1252_and_commas() -> None:
    data = "INE,Nom,Prénom,Date_Naissance,Date_Debut,Date_Fin,Contrat\r\n,Lefèvre,Maëlys,01/05/2009,2026-09-01,,CAP\r\n"
    parsed = open_partner_file(io.BytesIO(data.encode("cp1252")))
    assert (parsed.encoding, parsed.delimiter, parsed.extra_columns) == ("cp1252", ",", ["Contrat"])
    [record] = list(parsed.records)
    assert isinstance(record, PartnerEnrolment) and (record.nom, record.prenom) == ("Lefèvre", "Maëlys")


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ("1234567890A;;Léa;01/05/2009;2026-09-01;", "nom", "missing"),
        ("1234567890A;Dupont;;01/05/2009;2026-09-01;", "prenom", "missing"),
        ("1234567890A;Dupont;Léa;;2026-09-01;", "date_naissance", "missing"),
        ("1234567890A;Dupont;Léa;01/05/2009;;", "date_debut", "missing"),
        ("12345;Dupont;Léa;01/05/2009;2026-09-01;", "ine", "invalid INE"),
        ("1234567890A;Dupont;Léa;31/02/2009;2026-09-01;", "date_naissance", "invalid date"),
        ("1234567890A;Dupont;Léa;01/05/2009;2026-13-01;", "date_debut", "invalid date"),
        ("1234567890A;Dupont;Léa;01/05/2009;2026-09-01;demain", "date_fin", "invalid date"),
        ("1234567890A;Dupont;Léa;01/05/2009;2026-09-01;2026-08-31", "date_fin", "date_fin before date_debut"),
        ("1234567890A;Dupont;Léa;01/05/2009;2026-09-01", "*", "wrong number of fields"),
    ],
)
def test_partner_rejections(line: str, field: str, reason: str) -> None:
    assert enrolments(line) == [Rejection(2, field, reason)]


def test_partner_header_needs_all_six_columns() -> None:
    with pytest.raises(FileFormatError, match="required columns missing from the header: date_fin"):
        enrolments(header="ine;nom;prenom;date_naissance;date_debut")


def test_identity_key() -> None:
    assert identity_key("D'Arcy", "Jean-Pierre", date(2009, 5, 1)) == "DARCY|JEANPIERRE|2009-05-01"
    assert identity_key("d’arcy", "JEAN PIERRE", date(2009, 5, 1)) == identity_key(
        "D ARCY", "Jean Pierre", date(2009, 5, 1)
    )


@pytest.mark.parametrize(
    ("date_debut", "date_fin", "counts"),
    [
        (date(2026, 9, 1), None, True),
        (date(2026, 9, 1), date(2027, 6, 30), True),
        (date(2026, 9, 1), AS_OF, True),  # ends on the reference date: still enrolled that day
        (AS_OF, None, True),  # starts on it
        (date(2025, 9, 1), date(2026, 11, 1), False),  # ended the day before
        (date(2025, 9, 1), date(2026, 6, 30), False),
        (date(2026, 11, 3), None, False),  # starts the day after
        (date(2027, 1, 5), date(2027, 6, 30), False),
    ],
)
@pytest.mark.parametrize("by", ["ine", "identity"])
def test_only_enrolments_active_on_the_reference_date_count(
    date_debut: date, date_fin: date | None, counts: bool, by: str
) -> None:
    someone = youth()
    ine = someone.ine if by == "ine" else None
    index = PartnerIndex.build(
        [(ine, identity_key("D ARCY", "JEAN PIERRE", someone.date_naissance), date_debut, date_fin)], AS_OF
    )
    found = exclusion_reason(someone, AS_OF, Policy(), index) is ExclusionReason.FOUND_IN_PARTNER_BASE
    assert found is counts


@pytest.mark.parametrize(
    ("partner_ine", "partner_names", "matches"),
    [
        ("1234567890A", ("Other", "Name"), True),  # INE given: the INE decides
        ("1234 567890a", ("Other", "Name"), True),
        ("9999999999Z", ("D'Arcy", "Jean-Pierre"), False),  # INE given and different: names do not count
        (None, ("D ARCY", "JEAN PIERRE"), True),  # no INE: names and birth date
        (None, ("d’arcy", "jean pierre"), True),
        (None, ("Darcy", "Jean"), False),
    ],
)
def test_match_by_ine_or_by_identity_when_the_partner_has_no_ine(
    partner_ine: str | None, partner_names: tuple[str, str], matches: bool
) -> None:
    someone = youth()
    index = PartnerIndex.build(
        [(partner_ine, identity_key(*partner_names, someone.date_naissance), date(2026, 9, 1), None)], AS_OF
    )
    assert (
        index.matches(someone.ine, identity_key(someone.nom, someone.prenom, someone.date_naissance))
        is matches
    )
    assert index.matches_youth(someone.ine, someone.nom, someone.prenom, someone.date_naissance) is matches


def test_identity_match_needs_the_same_birth_date() -> None:
    someone = youth()
    index = PartnerIndex.build(
        [(None, identity_key("D'Arcy", "Jean-Pierre", date(2009, 5, 2)), date(2026, 9, 1), None)], AS_OF
    )
    assert exclusion_reason(someone, AS_OF, Policy(), index) is None


def test_an_index_without_a_date_keeps_what_it_is_given() -> None:
    index = PartnerIndex()
    index.add("1234567890A", "x", date(2020, 1, 1), date(2020, 6, 30))
    index.add(None, identity_key("A", "B", date(2009, 1, 1)), date(2030, 1, 1), None)
    assert len(index) == 2
    assert index.matches("1234567890A", "")
    assert index.matches("0000000000A", identity_key("a", "b", date(2009, 1, 1)))


def test_from_parsed_enrolments() -> None:
    records = enrolments(
        ";D ARCY;JEAN PIERRE;2009-05-01;2026-09-01;", "5555555555A;X;Y;2009-05-01;2020-09-01;2021-01-01"
    )
    index = PartnerIndex.from_enrolments([r for r in records if isinstance(r, PartnerEnrolment)], AS_OF)
    assert len(index) == 1
    assert index.matches_youth("1234567890A", "D'Arcy", "Jean-Pierre", date(2009, 5, 1))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_partner_bytes_never_crash(data: bytes) -> None:
    parsed = open_partner_file(
        io.BytesIO(HEADER.encode() + b"\n" + data)
    )  # a good header: no FileFormatError
    for record in parsed.records:
        assert isinstance(record, (PartnerEnrolment, Rejection))
