"""clause_sociale's settings, built at start-up from the environment."""

from __future__ import annotations

from pydantic import Field
from raccrochage_platform.settings import ServiceSettings


class ClauseSocialeSettings(ServiceSettings):
    token_key: str = Field(
        validation_alias="RACCROCHAGE_TOKEN_KEY",
        min_length=32,
        description="key that signs the API's bearer tokens (raccrochage token)",
    )
    deadlines_timer_seconds: float = Field(
        300,
        validation_alias="CLAUSE_DEADLINES_TIMER_SECONDS",
        gt=0,
        description="how often the day-10 reminders and day-15 lapses of proposals run",
    )
    consumer_batch: int = Field(100, validation_alias="CLAUSE_CONSUMER_BATCH", ge=1, le=5000)
