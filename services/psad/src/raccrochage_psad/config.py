"""PSAD's settings, built at start-up from the environment."""

from __future__ import annotations

from pydantic import Field
from raccrochage_platform.settings import ServiceSettings

from .domain.deadlines import Policy


class PsadSettings(ServiceSettings):
    token_key: str = Field(
        validation_alias="RACCROCHAGE_TOKEN_KEY",
        min_length=32,
        description="key that signs the API's bearer tokens (raccrochage token)",
    )
    max_attempts: int = Field(3, validation_alias="PSAD_MAX_ATTEMPTS", ge=1)
    unreachable_after_days: int = Field(21, validation_alias="PSAD_UNREACHABLE_AFTER_DAYS", ge=1)
    interview_deadline_days: int = Field(15, validation_alias="PSAD_INTERVIEW_DEADLINE_DAYS", ge=1)
    due_soon_days: int = Field(3, validation_alias="PSAD_DUE_SOON_DAYS", ge=0)
    review_months: int = Field(3, validation_alias="PSAD_REVIEW_MONTHS", ge=1)
    escalation_months: int = Field(2, validation_alias="PSAD_ESCALATION_MONTHS", ge=1)
    timer_seconds: float = Field(
        60,
        validation_alias="PSAD_TIMER_SECONDS",
        gt=0,
        description="how often the unreachable and escalation rules run",
    )
    consumer_batch: int = Field(500, validation_alias="PSAD_CONSUMER_BATCH", ge=1, le=5000)
    # PSAD's inbox drops a redelivered hand-over, so its published events need not be kept to
    # skip a re-run's (repérage keeps its own a week for that): deleting each once published
    # is less work for PostgreSQL than marking it and pruning it later.
    outbox_retention_seconds: float = Field(
        0,
        validation_alias="RACCROCHAGE_OUTBOX_RETENTION_SECONDS",
        ge=0,
        description="how long published outbox rows are kept; 0 deletes each once published",
    )
    consumer_concurrency: int = Field(
        3,
        validation_alias="PSAD_CONSUMER_CONCURRENCY",
        ge=1,
        le=8,
        description="batches of distinct youths handled at once",
    )

    def policy(self) -> Policy:
        return Policy(
            max_attempts=self.max_attempts,
            unreachable_after_days=self.unreachable_after_days,
            interview_deadline_days=self.interview_deadline_days,
            due_soon_days=self.due_soon_days,
            review_months=self.review_months,
            escalation_months=self.escalation_months,
        )
