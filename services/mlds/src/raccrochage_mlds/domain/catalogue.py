"""The MLDS sites of the académie (47 PAPS, 1 DIPA, 3 micro-lycées) and their places.

Read from the directory the guide prints (`reference/annuaire_mlds.csv`). The guide gives no
capacities: each site starts with its kind's default (`MldsSettings`) until a coordinator sets it.
The guide gives no UAI either: `host_uai` stays None until someone who knows it records it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from .dates import SchoolYear

DEPARTEMENTS = ("24", "33", "40", "47", "64")  # the académie de Bordeaux


class DispositifKind(StrEnum):
    PAPS = "paps"  # pôle d'accompagnement à la persévérance scolaire
    DIPA = "dipa"  # dispositif d'insertion des primo-arrivants
    MICRO_LYCEE = "micro_lycee"  # structure de retour à l'école


class Entries(StrEnum):
    ALL_YEAR = "all_year"
    START_OF_SCHOOL_YEAR = "start_of_school_year"


@dataclass(frozen=True)
class Sessions:
    """When youths may enter and leave a site."""

    entries: Entries
    exits: Entries
    length_months: int | None = None  # a set course length; None: as long as the youth needs

    def next_entry(self, on: date) -> date:
        """The first day on or after `on` a youth may start."""
        if self.entries is Entries.ALL_YEAR:
            return on
        rentree = SchoolYear.containing(on).starts_on
        return on if on == rentree else SchoolYear(rentree.year + 1).starts_on


# PAPS: "entries and exits all year" (the issue; the guide's PAPS takes youths as they leave
# school). DIPA: the guide says nothing of sessions; newcomers arrive all year, so all year.
# Micro-lycée: "Formation sur 2 ans pour préparer un baccalauréat": one entry at the rentrée.
SESSIONS: Mapping[DispositifKind, Sessions] = {
    DispositifKind.PAPS: Sessions(Entries.ALL_YEAR, Entries.ALL_YEAR),
    DispositifKind.DIPA: Sessions(Entries.ALL_YEAR, Entries.ALL_YEAR),
    DispositifKind.MICRO_LYCEE: Sessions(Entries.START_OF_SCHOOL_YEAR, Entries.ALL_YEAR, length_months=24),
}

_CSV_KINDS = {
    "PAPS": DispositifKind.PAPS,
    "DIPA": DispositifKind.DIPA,
    "MICRO_LYCEE": DispositifKind.MICRO_LYCEE,
}
_CSV_COLUMNS = ("dispositif", "departement", "etablissement", "adresse", "code_postal", "ville", "telephone")


class CatalogueError(ValueError):
    """A directory row that cannot be read; the message names the line and the field."""


class CapacityError(ValueError):
    """A place that cannot be taken or released, or a capacity that cannot be set; nothing changed."""


class NoPlaceLeft(CapacityError):
    pass


@dataclass(eq=False)
class Dispositif:
    """One MLDS site and its places. `places_taken` counts youths admitted or enrolled; it never
    exceeds `capacity` (the database holds the same rule: a CHECK and a conditional UPDATE).
    Every change bumps `revision`, which readers of mlds.dispositif.updated.v1 order by."""

    dispositif_id: str
    kind: DispositifKind
    departement: str
    host_establishment: str
    address: str
    postcode: str
    city: str
    phone: str  # the establishment's switchboard, as the guide prints it
    capacity: int
    places_taken: int = 0
    host_uai: str | None = None
    revision: int = 1
    updated_at: datetime | None = None
    changes: list[str] = field(default_factory=list, repr=False)  # recorded, for the service layer

    def __post_init__(self) -> None:
        if not 0 <= self.places_taken <= self.capacity:
            raise CapacityError(f"{self.dispositif_id}: {self.places_taken} places taken of {self.capacity}")

    @property
    def sessions(self) -> Sessions:
        return SESSIONS[self.kind]

    @property
    def places_left(self) -> int:
        return self.capacity - self.places_taken

    def take_place(self, now: datetime) -> None:
        if self.places_taken >= self.capacity:
            raise NoPlaceLeft(f"{self.dispositif_id}: no place left ({self.capacity} taken)")
        self.places_taken += 1
        self._changed("place_taken", now)

    def release_place(self, now: datetime) -> None:
        if self.places_taken == 0:
            raise CapacityError(f"{self.dispositif_id}: no place is taken")
        self.places_taken -= 1
        self._changed("place_released", now)

    def set_capacity(self, capacity: int, now: datetime) -> None:
        """Fewer places than youths already admitted is refused: they keep theirs."""
        if capacity < 0:
            raise CapacityError(f"{self.dispositif_id}: capacity {capacity} is negative")
        if capacity < self.places_taken:
            raise CapacityError(
                f"{self.dispositif_id}: capacity {capacity} is below the {self.places_taken} places taken"
            )
        self.capacity = capacity
        self._changed("capacity_set", now)

    def _changed(self, change: str, now: datetime) -> None:
        self.revision += 1
        self.updated_at = now if self.updated_at is None else max(now, self.updated_at)
        self.changes.append(change)


@dataclass(frozen=True)
class DirectoryRow:
    """One line of the académie's directory of MLDS sites."""

    line: int
    kind: DispositifKind
    departement: str
    establishment: str
    address: str
    postcode: str
    city: str
    phone: str


def read_directory(text: str, source: str = "annuaire_mlds.csv") -> list[DirectoryRow]:
    """Every row, or a CatalogueError that names each bad line and field."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise CatalogueError(f"{source}: line 1: missing columns {', '.join(missing)}")
    rows, problems = [], []
    for number, raw in enumerate(reader, start=2):
        values = {k: (raw.get(k) or "").strip() for k in _CSV_COLUMNS}
        kind = _CSV_KINDS.get(values["dispositif"])
        if kind is None:
            problems.append(
                f"{source}: line {number}: dispositif {values['dispositif']!r} is not one of {', '.join(_CSV_KINDS)}"
            )
        if values["departement"] not in DEPARTEMENTS:
            problems.append(
                f"{source}: line {number}: departement {values['departement']!r} is not in the académie"
            )
        for name in ("etablissement", "ville"):
            if not values[name]:
                problems.append(f"{source}: line {number}: {name} is empty")
        if kind is not None and values["departement"] in DEPARTEMENTS and values["etablissement"]:
            rows.append(
                DirectoryRow(
                    number,
                    kind,
                    values["departement"],
                    values["etablissement"],
                    values["adresse"],
                    values["code_postal"],
                    values["ville"],
                    values["telephone"],
                )
            )
    if problems:
        raise CatalogueError("\n".join(problems))
    return rows


def dispositif_id(kind: DispositifKind, departement: str, rank: int) -> str:
    return f"{kind.value}-{departement}-{rank:02d}"


def catalogue(
    rows: Iterable[DirectoryRow], capacities: Mapping[DispositifKind, int], now: datetime
) -> list[Dispositif]:
    """The sites, numbered by kind and département in the directory's order (paps-33-01, ...)."""
    ranks: dict[tuple[DispositifKind, str], int] = {}
    sites = []
    for row in rows:
        key = (row.kind, row.departement)
        ranks[key] = ranks.get(key, 0) + 1
        sites.append(
            Dispositif(
                dispositif_id(row.kind, row.departement, ranks[key]),
                row.kind,
                row.departement,
                row.establishment,
                row.address,
                row.postcode,
                row.city,
                row.phone,
                capacity=capacities[row.kind],
                updated_at=now,
            )
        )
    return sites
