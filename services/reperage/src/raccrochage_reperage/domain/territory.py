"""Where a youth is handed over: postcode -> département, ZAP and PSAD.

The ZAP table (`reference/zap.csv`: code_postal, commune, departement, zap slug) is an
approximation built from public postcodes and the bassins of the académie de Bordeaux; it is to be
replaced by the rectorat's official list of communes per ZAP. A postcode it does not hold goes to
its département's PSAD, and a youth living outside the académie goes to the PSAD of that
département (`psad-31`, ...), which the académie passes on.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

ACADEMIE_DEPARTEMENTS = ("24", "33", "40", "47", "64")


@dataclass(frozen=True)
class Territory:
    departement: str
    zap: str | None
    psad_id: str


def normalise_code_postal(raw: str) -> str | None:
    """Five digits with a known département, or None.

    Spaces are dropped, and a four-digit code gets back the leading zero that spreadsheets strip
    ("1000" was "01000").
    """
    code = "".join(raw.split()) if not raw.isdigit() else raw
    if len(code) == 4:
        code = "0" + code
    if len(code) != 5 or not (code.isascii() and code.isdigit()) or departement_of(code) is None:
        return None
    return code


def departement_of(code_postal: str) -> str | None:
    """The département of a five-digit French postcode ("33000" -> "33", "20000" -> "2A",
    "97400" -> "974"), or None when it is not one."""
    if len(code_postal) != 5 or not (code_postal.isascii() and code_postal.isdigit()):
        return None
    head = code_postal[:2]
    if head == "00":
        return None
    if head == "20":
        # Corse-du-Sud holds 200xx-201xx, Haute-Corse 202xx and above.
        return "2A" if code_postal < "20200" else "2B"
    if head in ("97", "98"):
        return code_postal[:3]
    return head


@cache
def load_zap_table() -> dict[str, tuple[str, str]]:
    """code_postal -> (departement, zap slug), from the reference table shipped with the package."""
    table: dict[str, tuple[str, str]] = {}
    for row in zap_communes():
        code, _commune, departement, zap = row
        known = table.setdefault(code, (departement, zap))
        if known != (departement, zap):
            raise ValueError(f"zap.csv: postcode {code} is in two ZAPs: {known[1]} and {zap}")
    return table


@cache
def zap_communes() -> tuple[tuple[str, str, str, str], ...]:
    """Every row of the ZAP table: (code_postal, commune, departement, zap slug)."""
    text = resources.files("raccrochage_reperage.reference").joinpath("zap.csv").read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return tuple((r["code_postal"], r["commune"], r["departement"], r["zap"]) for r in reader)


def route(code_postal: str) -> Territory:
    """The PSAD a youth living at this postcode is handed to.

    Raises ValueError for a postcode that is not one (the SIEI parser rejects those rows first).
    """
    code = normalise_code_postal(code_postal)
    if code is None:
        raise ValueError("not a French postcode")
    departement = departement_of(code)
    assert departement is not None  # normalise_code_postal checked it
    known = load_zap_table().get(code)
    if known is None:
        return Territory(departement, None, f"psad-{departement.lower()}")
    zap = known[1]
    return Territory(departement, zap, f"psad-{departement}-{zap}")
