"""The rules of repérage: diplomas, ages, identifiers, exclusions, and the tally of a campaign."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .partners import PartnerIndex
    from .siei import Rejection, SieiRow


class Diploma(StrEnum):
    """Highest diploma obtained, as SIEI codes it."""

    AUCUN = "AUCUN"
    DNB = "DNB"
    CAP = "CAP"
    BEP = "BEP"
    BP = "BP"
    BAC_PRO = "BAC_PRO"
    BAC_GENERAL = "BAC_GENERAL"
    BAC_TECHNO = "BAC_TECHNO"
    BTS = "BTS"
    DUT = "DUT"
    BUT = "BUT"
    LICENCE = "LICENCE"
    MASTER = "MASTER"
    DOCTORAT = "DOCTORAT"


# The guide's scope is "left without the bac général or a professional diploma registered at RNCP
# level 3 or 4": CAP and above are qualifying; the DNB is not (it is no qualification).
DEFAULT_QUALIFYING: frozenset[Diploma] = frozenset(Diploma) - {Diploma.AUCUN, Diploma.DNB}


class ExclusionReason(StrEnum):
    """Why a youth of the campaign is not handed to a PSAD; checked in this order."""

    OUT_OF_AGE_BAND = "out_of_age_band"
    QUALIFIED = "qualified"
    FOUND_IN_PARTNER_BASE = "found_in_partner_base"


@dataclass(frozen=True)
class Policy:
    """What the académie configures: the age band (both ends in) and the qualifying diplomas."""

    min_age: int = 16
    max_age: int = 25
    qualifying: frozenset[Diploma] = DEFAULT_QUALIFYING

    def __post_init__(self) -> None:
        if not 0 <= self.min_age <= self.max_age:
            raise ValueError(f"age band {self.min_age}-{self.max_age} is empty or negative")


def age_on(birth: date, on: date) -> int:
    """Age in whole years on a date; negative when `on` is before the birth.

    Someone born on 29 February turns a year older on 1 March in a non-leap year (and on
    29 February in a leap year): on 28 February of a non-leap year the birthday has not come.
    """
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def normalise_ine(raw: str) -> str:
    """The INE as bases should compare it: no whitespace anywhere, upper case."""
    if raw.isalnum():
        return raw.upper()
    return "".join(raw.split()).upper()


def is_valid_ine(ine: str) -> bool:
    """An INE is 11 ASCII letters or digits (check it after `normalise_ine`)."""
    return len(ine) == 11 and ine.isascii() and ine.isalnum()


# Apostrophes and hyphens as people type them; any of them may stand in for another, or for a space.
_NAME_SEPARATORS = str.maketrans("", "", "'’‘ʼ`´-‐‑‒–—")
# NFKD leaves these letters whole; bases spell them out.
_LIGATURES = str.maketrans({"Œ": "OE", "Æ": "AE", "Ø": "O", "Ð": "D", "Þ": "TH", "Ł": "L"})


# A campaign has a million names but far fewer distinct ones; each is normalised once.
_NORMALISED_NAMES: dict[str, str] = {}
_NAMES_REMEMBERED = 100_000


def normalise_name(raw: str) -> str:
    """A name as partner matching compares it: upper case, no accents, no space, hyphen or apostrophe.

    So "D'Arcy", "D’ARCY" and "d arcy" are equal, and "Jean-Pierre" equals "JEAN PIERRE".
    """
    known = _NORMALISED_NAMES.get(raw)
    if known is not None:
        return known
    name = raw.upper()
    if not name.isascii():
        name = unicodedata.normalize("NFKD", name)
        # Upper again: compatibility forms may decompose to lower case (superscripts, ligatures).
        name = "".join(c for c in name if not unicodedata.combining(c)).upper().translate(_LIGATURES)
    name = "".join(name.translate(_NAME_SEPARATORS).split())
    if len(_NORMALISED_NAMES) >= _NAMES_REMEMBERED:
        _NORMALISED_NAMES.clear()
    _NORMALISED_NAMES[raw] = name
    return name


def digest(key: str) -> int:
    """A 64-bit hash of an INE or identity key, for sets of a million entries.

    An int of a set takes 36 bytes where an INE string takes 60; with 64 bits the chance that
    two of a million youths collide is about 3 in 100 million. It is Python's own
    string hash (SipHash, cached on the string, so the INE is hashed once for dedup and partner
    match alike): salted per process, so such a set is never stored or shared between processes.
    """
    return hash(key)


class SeenFilter:
    """Which digests (`digest`) a campaign file has shown so far, in a fixed 16 MB whatever the
    size of the file: a Bloom filter setting two of 2**27 bits per digest.

    "Not seen" is certain; "maybe seen" is wrong for about one INE in 4,500 among a million (one
    in 50 among ten million): the caller checks those against what it has written. A set of a
    million digests took 76 MB, and grew with the file.
    """

    BITS = 27
    _MASK = (1 << BITS) - 1

    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits = bytearray(1 << (self.BITS - 3))

    def add(self, key: int) -> bool:
        """Record a digest; True when it may have been recorded before."""
        bits, mask = self._bits, self._MASK
        first, second = key & mask, (key >> self.BITS) & mask
        seen = (bits[first >> 3] >> (first & 7)) & (bits[second >> 3] >> (second & 7)) & 1
        bits[first >> 3] |= 1 << (first & 7)
        bits[second >> 3] |= 1 << (second & 7)
        return bool(seen)


def exclusion_reason(
    youth: SieiRow, as_of: date, policy: Policy, partners: PartnerIndex
) -> ExclusionReason | None:
    """The first reason that keeps this youth from a PSAD, or None when the youth is found nowhere."""
    age = age_on(youth.date_naissance, as_of)
    if age < policy.min_age or age > policy.max_age:
        return ExclusionReason.OUT_OF_AGE_BAND
    if youth.diplome is not None and youth.diplome in policy.qualifying:
        return ExclusionReason.QUALIFIED
    if partners.matches_youth(youth.ine, youth.nom, youth.prenom, youth.date_naissance):
        return ExclusionReason.FOUND_IN_PARTNER_BASE
    return None


def _every_reason() -> Counter[str]:
    return Counter({reason.value: 0 for reason in ExclusionReason})


@dataclass
class CampaignTally:
    """The counts of a campaign, never a person: rows = rejected + duplicates + excluded + identified."""

    rows: int = 0
    rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    excluded_by_reason: Counter[str] = field(default_factory=_every_reason)
    identified: int = 0

    @property
    def excluded(self) -> int:
        return sum(self.excluded_by_reason.values())

    @property
    def balanced(self) -> bool:
        """Every row is accounted for exactly once."""
        return self.rows == self.rejected + self.duplicates + self.excluded + self.identified

    def count_as_duplicate(self, reason: ExclusionReason | None) -> None:
        """A youth `classify` counted (with this reason) turns out to repeat an INE it did not
        see (an earlier chunk of the file, checked elsewhere): count the row as a duplicate."""
        if reason is None:
            self.identified -= 1
        else:
            self.excluded_by_reason[reason] -= 1
        self.duplicates += 1

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "duplicates": self.duplicates,
            "excluded": self.excluded,
            "excluded_by_reason": {
                reason.value: self.excluded_by_reason[reason.value] for reason in ExclusionReason
            },
            "identified": self.identified,
        }


def classify(
    records: Iterable[SieiRow | Rejection],
    as_of: date,
    policy: Policy,
    partners: PartnerIndex,
    tally: CampaignTally,
    seen: set[int] | None = None,
) -> Iterator[tuple[SieiRow, ExclusionReason | None]]:
    """Stream a campaign's records: count every one, yield each youth once with its exclusion reason.

    Rejected rows and later rows of an INE already seen are only counted. The tally is complete
    once the iterator is exhausted. A rejected row does not claim its INE: a later valid row of
    the same youth is that youth's first occurrence.

    `seen` holds the digests of the INEs seen so far (a new set by default). A caller that
    clears it as it goes (to bound memory) checks the INEs forgotten by other means, and uses
    `CampaignTally.count_as_duplicate` for those it finds again.
    """
    from .siei import Rejection  # siei imports this module for Diploma

    if seen is None:
        seen = set()
    rejected_by_reason = tally.rejected_by_reason
    excluded_by_reason = tally.excluded_by_reason
    for record in records:
        tally.rows += 1
        if record.__class__ is Rejection:
            tally.rejected += 1
            rejected_by_reason[record.reason] += 1
            continue
        key = hash(record.ine)  # digest(), inlined: this loop runs a million times
        if key in seen:
            tally.duplicates += 1
            continue
        seen.add(key)
        reason = exclusion_reason(record, as_of, policy, partners)  # type: ignore[arg-type]
        if reason is None:
            tally.identified += 1
        else:
            excluded_by_reason[reason] += 1
        yield record, reason  # type: ignore[misc]
