"""Events produced by repérage, version 1. A youth is a pseudonymous `youth_id`, nothing more."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field

from ..naming import PARTNER_ID_PATTERN
from ..payload import Payload
from ..psads import PsadId
from ..registry import event_type

YouthId = str  # 64 hex chars: HMAC-SHA256 of the normalised INE, keyed by a secret of repérage
YOUTH_ID = Field(
    pattern=r"^[0-9a-f]{64}$",
    max_length=64,
    description="pseudonymous id of the youth (keyed hash of the INE)",
)
Departement = Field(pattern=r"^([0-9]{2}|2A|2B|9[78][0-9])$", max_length=3)
ZAP_PATTERN = r"^[a-z0-9][a-z0-9-]{0,79}$"  # a slug of repérage's reference/zap.csv
Zap = Annotated[str, Field(pattern=ZAP_PATTERN, max_length=80)]
PARTNER_ID = Field(
    None,
    pattern=PARTNER_ID_PATTERN.pattern,
    max_length=63,
    description="the partner that reported it, for live feeds",
)
PartnerBase = Literal["cfa", "agri", "ml", "mlds", "en"]
LastDiploma = Literal["AUCUN", "DNB"]  # identified youths hold at most a non-qualifying diploma


@event_type("reperage.youth.identified.v1")
class YouthIdentified(Payload):
    """A youth who left school without a diploma and is found nowhere: handed to a PSAD."""

    youth_id: str = YOUTH_ID
    campaign_id: str = Field(min_length=1, max_length=80)
    psad_id: PsadId = Field(description="the PSAD the youth is handed to")
    departement: str = Departement
    zap: Zap | None = Field(None, description="ZAP slug; None when the postcode is not in the ZAP table")
    age: int = Field(ge=0, le=120, description="age in whole years at the campaign's reference date")
    last_diploma: LastDiploma = "AUCUN"
    last_training: str | None = Field(
        None, max_length=120, description="formation d'origine (label, not personal)"
    )
    uai_origine: str | None = Field(None, pattern=r"^[0-9]{7}[A-Z]$", max_length=8)
    months_since_leaving: int = Field(ge=0)
    as_of: date


@event_type("reperage.youth.reported_again.v1")
class YouthReportedAgain(Payload):
    """A youth already handed over, with a case still open, is in a later campaign again.

    Not a second `identified`: that would open a second case. The PSAD learns that the youth is
    still found nowhere, with fresh facts (a move shows as another psad_id).
    """

    youth_id: str = YOUTH_ID
    campaign_id: str = Field(min_length=1, max_length=80)
    psad_id: PsadId
    departement: str = Departement
    zap: Zap | None = None
    age: int = Field(ge=0, le=120)
    months_since_leaving: int = Field(ge=0)
    as_of: date


@event_type("reperage.youth.found.v1")
class YouthFound(Payload):
    """A youth handed to a PSAD is now enrolled in a partner base: the PSAD closes or updates the case."""

    youth_id: str = YOUTH_ID
    psad_id: PsadId
    base: PartnerBase = Field(description="the kind of partner base: cfa, agri, ml, mlds, en")
    partner_id: str | None = PARTNER_ID
    enrolled_since: date
    cause_event_id: uuid.UUID | None = Field(None, description="the partner event that revealed it")


@event_type("reperage.campaign.ingested.v1")
class CampaignIngested(Payload):
    """A SIEI campaign file has been cross-checked: the counts, never a person."""

    campaign_id: str = Field(min_length=1, max_length=80)
    as_of: date
    rows: int = Field(ge=0)
    rejected: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    excluded: int = Field(ge=0)
    identified: int = Field(ge=0)
    reported_again: int = Field(0, ge=0)


@event_type("reperage.audit.anchored.v1")
class AuditAnchored(Payload):
    """The identity audit chain's last row as the vault saw it: its number and its hash, on a
    subject of its own, out of reach of whoever can rewrite the vault's database. `raccrochage
    privacy audit verify` checks that the chain still holds every row anchored, so deleting its
    last rows shows. No personal data: a row number and a hash."""

    seq: int = Field(ge=1, description="the chain's last row (identity_audit.seq)")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", max_length=64, description="that row's hash")
    anchored_at: datetime
