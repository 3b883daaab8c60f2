"""The MLDS service's settings, built at start-up from the environment."""

from __future__ import annotations

from pydantic import Field
from raccrochage_platform.settings import ServiceSettings

from .domain.catalogue import DispositifKind

# The guide gives no capacities. A site starts with its kind's default until a coordinator sets
# its own: a PAPS and a DIPA group of 15 (the DIPA's 24 h a week are one group), a micro-lycée
# of 30 over its two years.
DEFAULT_CAPACITIES = {DispositifKind.PAPS: 15, DispositifKind.DIPA: 15, DispositifKind.MICRO_LYCEE: 30}


class MldsSettings(ServiceSettings):
    token_key: str = Field(
        validation_alias="RACCROCHAGE_TOKEN_KEY",
        min_length=32,
        description="key that signs the API's bearer tokens (raccrochage token)",
    )
    consumer_batch: int = Field(
        200,
        validation_alias="MLDS_CONSUMER_BATCH",
        ge=1,
        le=5000,
        description="PSAD requests decided in one transaction at most",
    )
    consumer_concurrency: int = Field(
        3,
        validation_alias="MLDS_CONSUMER_CONCURRENCY",
        ge=1,
        le=8,
        description="batches of PSAD requests decided at once, each in its own transaction",
    )
    capacity_paps: int = Field(
        DEFAULT_CAPACITIES[DispositifKind.PAPS], validation_alias="MLDS_CAPACITY_PAPS", ge=0, le=10_000
    )
    capacity_dipa: int = Field(
        DEFAULT_CAPACITIES[DispositifKind.DIPA], validation_alias="MLDS_CAPACITY_DIPA", ge=0, le=10_000
    )
    capacity_micro_lycee: int = Field(
        DEFAULT_CAPACITIES[DispositifKind.MICRO_LYCEE],
        validation_alias="MLDS_CAPACITY_MICRO_LYCEE",
        ge=0,
        le=10_000,
    )
    survey_threshold: int = Field(
        5,
        validation_alias="MLDS_SURVEY_THRESHOLD",
        ge=5,
        le=100,
        description="survey cells counting fewer youths are suppressed (never below 5)",
    )

    def default_capacities(self) -> dict[DispositifKind, int]:
        """What a site of each kind starts with when the catalogue is first loaded."""
        return {
            DispositifKind.PAPS: self.capacity_paps,
            DispositifKind.DIPA: self.capacity_dipa,
            DispositifKind.MICRO_LYCEE: self.capacity_micro_lycee,
        }
