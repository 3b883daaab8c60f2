"""Reference data shipped with the service: the académie's directory of MLDS sites.

`annuaire_mlds.csv` is the guide's "Annuaire des actions de la mission de lutte contre le
décrochage scolaire" as data (47 PAPS, 1 DIPA, 3 micro-lycées), copied from shared/domain.
"""

from __future__ import annotations

from importlib.resources import files

DIRECTORY = "annuaire_mlds.csv"


def directory_text() -> str:
    return files(__name__).joinpath(DIRECTORY).read_text(encoding="utf-8")
