"""The PSADs a youth can be handed or transferred to, known to every service.

The académie de Bordeaux has one PSAD per ZAP (`psad-<département>-<zap>`, repérage's
`reference/zap.csv`); a youth living where no ZAP is known, or outside the académie, goes to the
PSAD of their département (`psad-33`, `psad-31`, `psad-2a`, `psad-974`), which passes them on.
Any other id names a territory nobody serves.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

ACADEMIE_PSADS = frozenset(
    {
        "psad-24-bergerac",
        "psad-24-nontron",
        "psad-24-perigueux",
        "psad-24-sarlat",
        "psad-33-arcachon",
        "psad-33-blaye",
        "psad-33-bordeaux-centre",
        "psad-33-bordeaux-nord",
        "psad-33-bordeaux-sud",
        "psad-33-langon",
        "psad-33-libourne",
        "psad-33-medoc",
        "psad-40-dax",
        "psad-40-grands-lacs",
        "psad-40-landes-cote-sud",
        "psad-40-mont-de-marsan",
        "psad-47-agen",
        "psad-47-marmande",
        "psad-47-villeneuve-sur-lot",
        "psad-64-bayonne",
        "psad-64-oloron",
        "psad-64-orthez",
        "psad-64-pau",
    }
)
_DEPARTEMENT_PSAD = re.compile(r"^psad-(?P<departement>0[1-9]|[1-8][0-9]|9[0-5]|2a|2b|97[1-6]|98[6-8])$")


def is_known_psad(psad_id: str) -> bool:
    return psad_id in ACADEMIE_PSADS or _DEPARTEMENT_PSAD.match(psad_id) is not None


def departement_of_psad(psad_id: str) -> str:
    """The département a known PSAD serves ("psad-33-medoc" -> "33", "psad-2a" -> "2A")."""
    if not is_known_psad(psad_id):
        raise ValueError(f"unknown PSAD {psad_id}: {KNOWN_PSADS_HINT}")
    return psad_id.split("-")[1].upper()


KNOWN_PSADS_HINT = (
    "the known PSADs are the académie's "
    + ", ".join(sorted(ACADEMIE_PSADS))
    + ", and psad-<département> (e.g. psad-33, psad-31, psad-2a, psad-974) for any other place"
)


def _known(psad_id: str) -> str:
    if not is_known_psad(psad_id):
        # the value is not repeated: a dead letter's reason names the field and the rule only
        raise ValueError(f"not a known PSAD; {KNOWN_PSADS_HINT}")
    return psad_id


PSAD_ID_PATTERN = r"^psad-[0-9a-z-]+$"
# A PSAD's id in an event: its shape in the schema, the known PSADs checked on reading and writing.
PsadId = Annotated[str, Field(pattern=PSAD_ID_PATTERN, max_length=40), AfterValidator(_known)]
