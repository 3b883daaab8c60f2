"""Repérage's settings, built at start-up from the environment."""

from __future__ import annotations

from pydantic import Field, field_validator
from raccrochage_platform.settings import ServiceSettings


class ReperageSettings(ServiceSettings):
    youth_id_key: str = Field(
        validation_alias="RACCROCHAGE_YOUTH_ID_KEY",
        min_length=32,
        description="secret key of the youth_id hash (hex or any long string)",
    )
    token_key: str = Field(
        validation_alias="RACCROCHAGE_TOKEN_KEY",
        min_length=32,
        description="key that signs the API's bearer tokens (raccrochage token)",
    )
    min_age: int = Field(16, validation_alias="REPERAGE_MIN_AGE", ge=0, le=30)
    max_age: int = Field(25, validation_alias="REPERAGE_MAX_AGE", ge=0, le=40)
    qualifying_diplomas: str = Field(
        "CAP,BEP,BP,BAC_PRO,BAC_GENERAL,BAC_TECHNO,BTS,DUT,BUT,LICENCE,MASTER,DOCTORAT",
        validation_alias="REPERAGE_QUALIFYING_DIPLOMAS",
    )
    ingest_stall_seconds: float = Field(
        600,
        validation_alias="REPERAGE_INGEST_STALL_SECONDS",
        gt=0,
        description="a campaign still ingesting with no chunk committed for this long has stalled",
    )
    stall_check_seconds: float = Field(
        60, validation_alias="REPERAGE_STALL_CHECK_SECONDS", gt=0, description="how often stalls are counted"
    )
    erasure_sweep_seconds: float = Field(
        300,
        validation_alias="REPERAGE_ERASURE_SWEEP_SECONDS",
        gt=0,
        description="how often the streams are swept of the youths of complete erasure requests, "
        "besides the sweep each request's last answer starts",
    )
    erasure_sweep_batch: int = Field(
        1000,
        validation_alias="REPERAGE_ERASURE_SWEEP_BATCH",
        ge=1,
        le=10000,
        description="messages a sweep fetches from a stream at a time",
    )
    audit_anchor_seconds: float = Field(
        60,
        validation_alias="REPERAGE_AUDIT_ANCHOR_SECONDS",
        gt=0,
        description="how often the identity audit's head is anchored in the REPERAGE stream, when it moved",
    )
    contact_card_callers: str = Field(
        "psad,mlds,clause_sociale", validation_alias="REPERAGE_CONTACT_CARD_CALLERS"
    )

    @field_validator("qualifying_diplomas")
    @classmethod
    def _known_codes(cls, value: str) -> str:
        from .domain.rules import Diploma

        unknown = [
            code for code in value.split(",") if code.strip() and code.strip() not in Diploma.__members__
        ]
        if unknown:
            raise ValueError(f"unknown diploma codes: {', '.join(unknown)}")
        return value

    @property
    def key(self) -> bytes:
        return self.youth_id_key.encode()

    def policy(self):
        from .domain.rules import Diploma, Policy

        qualifying = frozenset(
            Diploma(code.strip()) for code in self.qualifying_diplomas.split(",") if code.strip()
        )
        return Policy(min_age=self.min_age, max_age=self.max_age, qualifying=qualifying)
