"""Territory: postcode -> département, ZAP and PSAD, and the ZAP reference table."""

from __future__ import annotations

import re

import pytest
from raccrochage_reperage.domain.territory import (
    ACADEMIE_DEPARTEMENTS,
    Territory,
    departement_of,
    load_zap_table,
    normalise_code_postal,
    route,
    zap_communes,
)

PSAD_ID = re.compile(r"^psad-[0-9a-z-]+$")  # the contract's pattern (reperage.youth.identified.v1)


@pytest.mark.parametrize(
    ("code", "departement"),
    [
        ("33000", "33"),
        ("24100", "24"),
        ("40000", "40"),
        ("47000", "47"),
        ("64100", "64"),
        ("31000", "31"),
        ("01000", "01"),
        ("20000", "2A"),
        ("20200", "2B"),
        ("97400", "974"),
        ("00100", None),
        ("3300", None),
        ("330000", None),
        ("3300A", None),
        ("", None),
        ("٣٣٠٠٠", None),
    ],
)
def test_departement_of(code: str, departement: str | None) -> None:
    assert departement_of(code) == departement


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("33000", "33000"),
        (" 33 000 ", "33000"),
        ("1000", "01000"),
        ("33\u00a0000", "33000"),
        ("", None),
        ("ABCDE", None),
        ("00100", None),
        ("123", None),
    ],
)
def test_normalise_code_postal(raw: str, code: str | None) -> None:
    assert normalise_code_postal(raw) == code


@pytest.mark.parametrize(
    ("code", "territory"),
    [
        ("33000", Territory("33", "bordeaux-centre", "psad-33-bordeaux-centre")),
        ("33700", Territory("33", "bordeaux-nord", "psad-33-bordeaux-nord")),
        ("33600", Territory("33", "bordeaux-sud", "psad-33-bordeaux-sud")),
        ("33500", Territory("33", "libourne", "psad-33-libourne")),
        ("24100", Territory("24", "bergerac", "psad-24-bergerac")),
        ("40100", Territory("40", "dax", "psad-40-dax")),
        ("47300", Territory("47", "villeneuve-sur-lot", "psad-47-villeneuve-sur-lot")),
        ("64400", Territory("64", "oloron", "psad-64-oloron")),
        ("33830", Territory("33", None, "psad-33")),  # in the académie, not in the table
        ("40630", Territory("40", None, "psad-40")),
        ("31000", Territory("31", None, "psad-31")),  # outside the académie: that département's PSAD
        ("20000", Territory("2A", None, "psad-2a")),
    ],
)
def test_route(code: str, territory: Territory) -> None:
    assert route(code) == territory
    assert PSAD_ID.match(territory.psad_id)


def test_route_refuses_what_is_not_a_postcode() -> None:
    with pytest.raises(ValueError):
        route("ABCDE")


def test_the_zap_table() -> None:
    rows = zap_communes()
    table = load_zap_table()
    assert len({commune for _, commune, _, _ in rows}) >= 80
    assert {departement for _, _, departement, _ in rows} == set(ACADEMIE_DEPARTEMENTS)
    for code, commune, departement, zap in rows:
        assert departement_of(code) == departement, commune
        assert table[code] == (departement, zap)
        assert PSAD_ID.match(route(code).psad_id), zap
    zaps = {(departement, zap) for departement, zap in table.values()}
    for departement in ACADEMIE_DEPARTEMENTS:
        assert sum(1 for d, _ in zaps if d == departement) >= 3
