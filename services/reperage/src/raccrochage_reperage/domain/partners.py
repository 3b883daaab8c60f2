"""Partner bases (CFA, agriculture, missions locales, MLDS, Education nationale): their files,
and the index a campaign is matched against."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import BinaryIO

from .rules import digest, is_valid_ine, normalise_ine, normalise_name
from .siei import (
    INVALID_DATE,
    INVALID_INE,
    MISSING,
    Rejection,
    date_reader,
    open_table,
)

PARTNER_COLUMNS = ("ine", "nom", "prenom", "date_naissance", "date_debut", "date_fin")
PARTNER_REQUIRED_FIELDS = ("nom", "prenom", "date_naissance", "date_debut")
# `ine` and `date_fin` may be empty, but a file without those columns would match nobody by INE
# and make every enrolment look endless: the header must have all six.
PARTNER_REQUIRED_COLUMNS = PARTNER_COLUMNS
FIN_BEFORE_DEBUT = "date_fin before date_debut"


class PartnerSource(StrEnum):
    CFA = "cfa"
    AGRI = "agri"
    ML = "ml"
    MLDS = "mlds"
    EN = "en"


@dataclass(frozen=True, slots=True)
class PartnerEnrolment:
    """A youth enrolled at a partner from date_debut to date_fin (None: still enrolled)."""

    line: int
    ine: str | None
    nom: str
    prenom: str
    date_naissance: date
    date_debut: date
    date_fin: date | None


@dataclass
class PartnerFile:
    """A partner file opened for streaming (see `siei.CsvTable`)."""

    encoding: str
    delimiter: str
    columns: list[str]
    extra_columns: list[str]
    records: Iterator[PartnerEnrolment | Rejection]


def identity_key(nom: str, prenom: str, date_naissance: date) -> str:
    """How a youth is recognised when a partner gives no INE: "NOM|PRENOM|YYYY-MM-DD", names normalised."""
    return f"{normalise_name(nom)}|{normalise_name(prenom)}|{date_naissance.isoformat()}"


def is_active(date_debut: date, date_fin: date | None, as_of: date) -> bool:
    """Enrolled on that day: started on or before it, not ended before it."""
    return date_debut <= as_of and (date_fin is None or date_fin >= as_of)


def open_partner_file(source: BinaryIO) -> PartnerFile:
    """Open a partner base file, detected and streamed as a SIEI file is."""
    table = open_table(source, PARTNER_COLUMNS, PARTNER_REQUIRED_COLUMNS, _partner_record_builder())
    return PartnerFile(table.encoding, table.delimiter, table.columns, table.extra_columns, table.records)


def _partner_record_builder() -> Callable[[int, tuple[str, ...]], PartnerEnrolment | Rejection]:
    read_date = date_reader()

    def build(line: int, values: tuple[str, ...]) -> PartnerEnrolment | Rejection:
        ine, nom, prenom, naissance, debut, fin = (value.strip() for value in values)
        if not (nom and prenom and naissance and debut):
            missing = (nom, prenom, naissance, debut)
            return Rejection(
                line, next(n for v, n in zip(missing, PARTNER_REQUIRED_FIELDS, strict=True) if not v), MISSING
            )
        if ine:
            ine = normalise_ine(ine)
            if not is_valid_ine(ine):
                return Rejection(line, "ine", INVALID_INE)
        date_naissance = read_date(naissance)
        if date_naissance is None:
            return Rejection(line, "date_naissance", INVALID_DATE)
        date_debut = read_date(debut)
        if date_debut is None:
            return Rejection(line, "date_debut", INVALID_DATE)
        date_fin = None
        if fin:
            date_fin = read_date(fin)
            if date_fin is None:
                return Rejection(line, "date_fin", INVALID_DATE)
            if date_fin < date_debut:
                return Rejection(line, "date_fin", FIN_BEFORE_DEBUT)
        return PartnerEnrolment(line, ine or None, nom, prenom, date_naissance, date_debut, date_fin)

    return build


class PartnerIndex:
    """Who is enrolled somewhere: INEs, and identity keys of enrolments that came without an INE.

    Only 64-bit hashes are kept (`digest`: about 70 bytes an entry, valid in this process only).
    Built for a reference date, it keeps the enrolments active that day; built without one, it
    keeps whatever it is given. The INE of a youth to match is expected normalised.
    """

    __slots__ = ("_as_of", "_identities", "_ines")

    def __init__(self, as_of: date | None = None) -> None:
        self._as_of = as_of
        self._ines: set[int] = set()
        self._identities: set[int] = set()

    @classmethod
    def build(
        cls, enrolments: Iterable[tuple[str | None, str, date, date | None]], as_of: date
    ) -> PartnerIndex:
        """From (ine or None, identity_key, date_debut, date_fin or None), keeping those active on as_of."""
        index = cls(as_of)
        for ine, identity, date_debut, date_fin in enrolments:
            index.add(ine, identity, date_debut, date_fin)
        return index

    @classmethod
    def from_enrolments(cls, enrolments: Iterable[PartnerEnrolment], as_of: date) -> PartnerIndex:
        """From parsed partner files (leave their rejections out)."""
        return cls.build(
            (
                (e.ine, identity_key(e.nom, e.prenom, e.date_naissance), e.date_debut, e.date_fin)
                for e in enrolments
            ),
            as_of,
        )

    def add(self, ine: str | None, identity: str, date_debut: date, date_fin: date | None) -> None:
        """Record an enrolment; with a reference date, one not active that day is left out."""
        if self._as_of is not None and not is_active(date_debut, date_fin, self._as_of):
            return
        if ine:
            self._ines.add(digest(normalise_ine(ine)))
        else:
            self._identities.add(digest(identity))

    def matches(self, ine: str, identity: str) -> bool:
        """The INE is enrolled, or the identity is, at a partner that gave no INE."""
        if digest(normalise_ine(ine)) in self._ines:
            return True
        return bool(self._identities) and digest(identity) in self._identities

    def matches_youth(self, ine: str, nom: str, prenom: str, date_naissance: date) -> bool:
        """`matches`, building the identity key only when it can make a difference."""
        if hash(ine) in self._ines:  # digest(), inlined: once per youth of a campaign
            return True
        return (
            bool(self._identities) and digest(identity_key(nom, prenom, date_naissance)) in self._identities
        )

    def __len__(self) -> int:
        return len(self._ines) + len(self._identities)
