"""FOQUALE's settings, built at start-up from the environment."""

from __future__ import annotations

from pydantic import Field, model_validator
from raccrochage_platform.settings import ServiceSettings

from .domain.policy import Policy


class FoqualeSettings(ServiceSettings):
    token_key: str = Field(
        validation_alias="RACCROCHAGE_TOKEN_KEY",
        min_length=32,
        description="key that signs the bearer tokens of the admin routes (raccrochage token --role ops)",
    )
    stale_after_days: int = Field(60, validation_alias="FOQUALE_STALE_AFTER_DAYS", ge=1)
    unpublish_after_days: int = Field(90, validation_alias="FOQUALE_UNPUBLISH_AFTER_DAYS", ge=2)
    reservation_days: int = Field(15, validation_alias="FOQUALE_RESERVATION_DAYS", ge=1)
    timer_seconds: float = Field(
        60,
        validation_alias="FOQUALE_TIMER_SECONDS",
        gt=0,
        description="how often reservations are expired and offers' freshness checked",
    )
    timer_batch: int = Field(500, validation_alias="FOQUALE_TIMER_BATCH", ge=1, le=5000)
    feedback_kept: int = Field(
        500,
        validation_alias="FOQUALE_FEEDBACK_KEPT",
        ge=1,
        le=100_000,
        description="answers kept per partner for its replay (older ones are pruned by the clocks)",
    )
    # Each request is its own transaction (a seat is taken by one conditional UPDATE): several
    # at once keep a burst of PSAD requests from queueing behind one connection.
    consumer_concurrency: int = Field(8, validation_alias="FOQUALE_CONSUMER_CONCURRENCY", ge=1, le=64)
    consumer_batch: int = Field(20, validation_alias="FOQUALE_CONSUMER_BATCH", ge=1, le=500)

    @model_validator(mode="after")
    def _unpublish_after_stale(self) -> FoqualeSettings:
        if self.unpublish_after_days <= self.stale_after_days:
            raise ValueError(
                "FOQUALE_UNPUBLISH_AFTER_DAYS must be more than FOQUALE_STALE_AFTER_DAYS: "
                "the owner is warned before the offer is unpublished"
            )
        return self

    def policy(self) -> Policy:
        return Policy(
            stale_after_days=self.stale_after_days,
            unpublish_after_days=self.unpublish_after_days,
            reservation_days=self.reservation_days,
        )
