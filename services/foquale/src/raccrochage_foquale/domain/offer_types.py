"""What describes a seat offer: its formation, status, territory, capacity and dates, and its owner."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields
from datetime import date
from enum import StrEnum

from .errors import InvalidCommand
from .uai import Uai

DEPARTEMENT = re.compile(r"^([0-9]{2}|2A|2B|9[78][0-9])$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")  # a ZAP
KEYWORD = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
FORMATION_CODE = re.compile(r"^[0-9A-Z]+$")
MAX_KEYWORDS = 20
MAX_CAPACITY = 10_000
LABEL_MAX = 200
# Offer ids are derived from the owner and its own key: the same record sent twice names the same
# offer, whoever's process reads it.
OFFER_NAMESPACE = uuid.UUID("1f7b0c52-3a9e-4f0c-8d2a-5e6f7a8b9c0d")


class Statut(StrEnum):
    """The youth's status in the seat."""

    SCOLAIRE = "scolaire"
    APPRENTISSAGE = "apprentissage"
    DISPOSITIF = "dispositif"


class Level(StrEnum):
    """Diploma levels (nomenclature 2019): 3 CAP/BEP, 4 baccalauréat, 5 bac+2."""

    SANS_NIVEAU = "sans_niveau"
    NIVEAU_3 = "niveau_3"
    NIVEAU_4 = "niveau_4"
    NIVEAU_5 = "niveau_5"


class FormationCodeKind(StrEnum):
    MEF = "mef"  # module élémentaire de formation, 11 characters
    CFD = "cfd"  # code formation diplôme, 8 characters


FORMATION_CODE_LENGTH = {FormationCodeKind.MEF: 11, FormationCodeKind.CFD: 8}


class ContactRole(StrEnum):
    """Who answers for the offer at the establishment: a role, never a person."""

    CHEF_ETABLISSEMENT = "chef_etablissement"
    PROVISEUR_ADJOINT = "proviseur_adjoint"
    DIRECTEUR_DELEGUE_FORMATIONS = "directeur_delegue_formations"
    CPE = "cpe"
    REFERENT_DECROCHAGE = "referent_decrochage"
    PSY_EN = "psy_en"
    COORDONNATEUR_MLDS = "coordonnateur_mlds"
    SECRETARIAT = "secretariat"


class Source(StrEnum):
    ESTABLISHMENT_API = "establishment_api"
    PARTNER_FEED = "partner_feed"
    FILE_IMPORT = "file_import"


class OwnerKind(StrEnum):
    ESTABLISHMENT = "establishment"
    PARTNER = "partner"


class OfferState(StrEnum):
    PUBLISHED = "published"  # reservable
    STALE = "stale"  # reservable, its owner asked to confirm it
    UNPUBLISHED = "unpublished"  # not confirmed for too long; confirming publishes it again
    CLOSED = "closed"  # for good


RESERVABLE_STATES = frozenset({OfferState.PUBLISHED, OfferState.STALE})


class CloseReason(StrEnum):
    CLOSED_BY_OWNER = "closed_by_owner"
    UNPUBLISHED_STALE = "unpublished_stale"
    PAST_CLOSE_DATE = "past_close_date"


def _enum(kind: type[StrEnum], value: object, field: str) -> StrEnum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidCommand(field, f"{value!r} is not one of {allowed}") from None


@dataclass(frozen=True)
class Owner:
    """Who publishes an offer and is told about it: a partner system, or the establishment itself
    (then `id` is its UAI)."""

    kind: OwnerKind
    id: str

    @classmethod
    def partner(cls, partner_id: str) -> Owner:
        return cls(OwnerKind.PARTNER, partner_id)

    @classmethod
    def establishment(cls, uai: Uai) -> Owner:
        return cls(OwnerKind.ESTABLISHMENT, str(uai))


def offer_id_for(owner: Owner, key: str) -> uuid.UUID:
    """The offer an owner names by its own key (a partner's `partner_key`, an API caller's key)."""
    return uuid.uuid5(OFFER_NAMESPACE, f"{owner.kind.value}/{owner.id}/{key}")


@dataclass(frozen=True)
class Formation:
    code_kind: FormationCodeKind
    code: str
    label: str
    level: Level

    def __post_init__(self) -> None:
        kind = _enum(FormationCodeKind, self.code_kind, "formation.code_kind")
        object.__setattr__(self, "code_kind", kind)
        object.__setattr__(self, "level", _enum(Level, self.level, "formation.level"))
        length = FORMATION_CODE_LENGTH[kind]
        if len(self.code) != length or not FORMATION_CODE.match(self.code):
            raise InvalidCommand(
                "formation.code",
                f"{self.code!r}: a {kind.value.upper()} code is {length} digits or capital letters",
            )
        label = self.label.strip()
        if not label or len(label) > LABEL_MAX:
            raise InvalidCommand("formation.label", f"1 to {LABEL_MAX} characters, got {len(label)}")
        object.__setattr__(self, "label", label)


@dataclass(frozen=True)
class OfferDescription:
    """What the owner says about an offer; `publish` and `update` take it whole."""

    uai: Uai
    formation: Formation
    statut: Statut
    departement: str
    zap: str | None
    capacity: int
    opens_on: date
    closes_on: date | None
    contact_role: ContactRole
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.uai, Uai):
            raise InvalidCommand("uai", f"{self.uai!r} is not a checked UAI")
        object.__setattr__(self, "statut", _enum(Statut, self.statut, "statut"))
        object.__setattr__(self, "contact_role", _enum(ContactRole, self.contact_role, "contact_role"))
        if not DEPARTEMENT.match(self.departement):
            raise InvalidCommand(
                "departement", f"{self.departement!r} is not a département code (33, 2A, 974)"
            )
        if self.zap is not None and not SLUG.match(self.zap):
            raise InvalidCommand("zap", f"{self.zap!r} is not a ZAP slug (lower-case letters, digits, '-')")
        if not 0 <= self.capacity <= MAX_CAPACITY:
            raise InvalidCommand("capacity", f"{self.capacity} is not between 0 and {MAX_CAPACITY}")
        if self.closes_on is not None and self.closes_on < self.opens_on:
            raise InvalidCommand(
                "closes_on", f"{self.closes_on.isoformat()} is before opens_on {self.opens_on.isoformat()}"
            )
        keywords = tuple(dict.fromkeys(self.keywords))  # order kept, duplicates dropped
        if len(keywords) > MAX_KEYWORDS:
            raise InvalidCommand("keywords", f"{len(keywords)} keywords, at most {MAX_KEYWORDS}")
        for index, keyword in enumerate(keywords):
            if not KEYWORD.match(keyword):
                raise InvalidCommand(
                    f"keywords[{index}]",
                    f"{keyword!r} is not a coded keyword (lower-case letters, digits, '-', '_')",
                )
        object.__setattr__(self, "keywords", keywords)

    def changes_from(self, other: OfferDescription) -> tuple[str, ...]:
        """The names of the fields that differ from `other`."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name))

    def is_open_on(self, day: date) -> bool:
        """Not past its close date (a seat may be reserved before it opens)."""
        return self.closes_on is None or day <= self.closes_on
