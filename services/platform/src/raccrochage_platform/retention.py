"""Retention: each service anonymises or deletes the records about youths that are past their
period, once a day, in batches (docs/privacy.md, "Retention").

A service gives its `ServiceSpec.retention` a function of `RetentionSettings` that returns its
rules; `run_service` schedules them daily through `ServiceContext.every`, and `raccrochage
retention run SERVICE [--dry-run]` runs them once for an operator. A rule says which rows are
due ("past their period and not yet anonymised": what a crash leaves undone is still due, so
no cursor is kept) and what to do with a batch of their keys; each batch commits on its own.
Only counts leave the job: `raccrochage_retention_applied_total{service,kind,action}` and the
`retention_applied` log line, never a key or an identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .logging import get_logger

if TYPE_CHECKING:
    from .service import ServiceContext

log = get_logger(__name__)

APPLIED = Counter(
    "raccrochage_retention_applied_total",
    "records anonymised or deleted because their retention period was over",
    ["service", "kind", "action"],
)

DAY = 24 * 3600


def _days(default: int, variable: str, description: str) -> Any:
    return Field(default, validation_alias=variable, ge=1, description=description)


class RetentionSettings(BaseSettings):
    """Retention periods, in days, per service and kind of record (defaults in docs/privacy.md)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    interval_seconds: float = Field(DAY, validation_alias="RACCROCHAGE_RETENTION_INTERVAL_SECONDS", gt=0)
    batch_size: int = Field(500, validation_alias="RACCROCHAGE_RETENTION_BATCH", ge=1, le=10_000)
    # The first pass comes this long after the service starts (a start stays light), so that a
    # service restarted more often than daily still applies its retention.
    first_pass_seconds: float = Field(600, validation_alias="RACCROCHAGE_RETENTION_FIRST_PASS_SECONDS", ge=0)
    vault_identity_days: int = _days(
        730,
        "RETENTION_VAULT_IDENTITY_DAYS",
        "repérage: an identity is kept this long after its handover ended (case closed, youth "
        "found) or, never handed over, after the last campaign that listed it",
    )
    vault_age_limit_years: int = Field(
        27,
        validation_alias="RETENTION_VAULT_AGE_LIMIT_YEARS",
        ge=18,
        description="repérage: no identity is kept past this age (the 25th birthday + 2 years)",
    )
    siei_rejection_days: int = _days(
        90, "RETENTION_SIEI_REJECTION_DAYS", "repérage: rejected SIEI lines after their campaign started"
    )
    psad_closed_case_days: int = _days(
        730, "RETENTION_PSAD_CLOSED_CASE_DAYS", "psad: a closed case is anonymised this long after closing"
    )
    foquale_reservation_days: int = _days(
        730,
        "RETENTION_FOQUALE_RESERVATION_DAYS",
        "foquale: a reservation or placement is anonymised this long after its decision or expiry",
    )
    mlds_candidacy_days: int = _days(
        730,
        "RETENTION_MLDS_CANDIDACY_DAYS",
        "mlds: an ended candidacy or enrolment (exited, refused, withdrawn) is anonymised this long after",
    )
    clause_enrolment_days: int = _days(
        730,
        "RETENTION_CLAUSE_ENROLMENT_DAYS",
        "clause_sociale: an MLDS enrolment it was told of is deleted this long after it started",
    )
    clause_mission_days: int = _days(
        730,
        "RETENTION_CLAUSE_MISSION_DAYS",
        "clause_sociale: a completed mission is anonymised (and its bilan PDF deleted) this long after",
    )
    ops_youth_days: int = _days(
        730,
        "RETENTION_OPS_YOUTH_DAYS",
        "ops: a youth's funnel row is anonymised this long after its last change, its case closed",
    )


def before(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def years_before(now: datetime, years: int) -> date:
    """The day `years` years before `now` (28 February for a 29th)."""
    day = now.date()
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


@dataclass(frozen=True)
class RetentionRule:
    """One kind of record of a service: `due(now)` selects the rows past their period and not
    yet anonymised (`key` names them), `apply` anonymises or deletes a batch of their keys."""

    kind: str
    action: Literal["anonymised", "deleted"]
    table: Table
    key: tuple[str, ...]  # its primary key: `apply` gets each row's value, or tuple of values
    due: Callable[[datetime], ColumnElement[bool]]
    apply: Callable[[AsyncConnection, Sequence[Any]], Awaitable[Any]]


async def apply_rule(
    engine: AsyncEngine, rule: RetentionRule, now: datetime, *, batch_size: int = 500, dry_run: bool = False
) -> int:
    """Apply `rule` at `now`, a batch per transaction, until nothing is due; the rows done (or,
    with `dry_run`, due: nothing changes)."""
    key = [rule.table.c[name] for name in rule.key]
    if dry_run:
        async with engine.connect() as connection:
            return (await connection.execute(select(func.count()).where(rule.due(now)))).scalar_one()
    done = 0
    while True:
        async with engine.begin() as connection:
            result = await connection.execute(
                select(*key).where(rule.due(now)).limit(batch_size).with_for_update(skip_locked=True)
            )
            batch = result.scalars().all() if len(key) == 1 else [tuple(row) for row in result]
            if batch:
                await rule.apply(connection, batch)
        done += len(batch)
        if len(batch) < batch_size:
            return done


async def apply_retention(
    engine: AsyncEngine,
    service: str,
    rules: Sequence[RetentionRule],
    now: datetime,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
) -> dict[str, int]:
    """Every rule of the service at `now`: rows done (or due) per kind. Counts only are published."""
    counts = {}
    for rule in rules:
        counts[rule.kind] = await apply_rule(engine, rule, now, batch_size=batch_size, dry_run=dry_run)
        if not dry_run and counts[rule.kind]:
            APPLIED.labels(service, rule.kind, rule.action).inc(counts[rule.kind])
    log.info("retention_applied", service=service, dry_run=dry_run, counts=counts)
    return counts


def schedule_retention(
    context: ServiceContext,
    rules: Sequence[RetentionRule],
    settings: RetentionSettings,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Apply the service's rules every `settings.interval_seconds` (a day) while it runs, the
    first time `settings.first_pass_seconds` (10 minutes) after it starts."""

    async def job() -> None:
        await apply_retention(
            context.engine, context.settings.service_name, rules, clock(), batch_size=settings.batch_size
        )

    context.every(settings.interval_seconds, job, name="retention", first_after=settings.first_pass_seconds)
