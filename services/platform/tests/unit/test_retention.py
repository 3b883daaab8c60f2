"""Retention settings and scheduling (raccrochage_platform.retention), without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from raccrochage_platform import retention
from raccrochage_platform.retention import RetentionSettings, schedule_retention, years_before
from raccrochage_platform.settings import ConfigError, load_settings


def test_the_documented_defaults_and_an_override_from_the_environment(monkeypatch) -> None:
    defaults = RetentionSettings()
    assert (defaults.vault_identity_days, defaults.vault_age_limit_years) == (730, 27)
    assert (defaults.siei_rejection_days, defaults.psad_closed_case_days) == (90, 730)
    assert defaults.batch_size == 500 and defaults.interval_seconds == 24 * 3600
    monkeypatch.setenv("RETENTION_PSAD_CLOSED_CASE_DAYS", "365")
    assert load_settings(RetentionSettings).psad_closed_case_days == 365
    monkeypatch.setenv("RETENTION_SIEI_REJECTION_DAYS", "0")
    with pytest.raises(ConfigError, match="RETENTION_SIEI_REJECTION_DAYS"):
        load_settings(RetentionSettings)


def test_the_age_limit_counts_in_calendar_years() -> None:
    assert years_before(datetime(2035, 6, 1, tzinfo=UTC), 27) == date(2008, 6, 1)
    assert years_before(datetime(2036, 2, 29, tzinfo=UTC), 27) == date(2009, 2, 28)


async def test_the_job_runs_daily_on_the_service_clock(monkeypatch) -> None:
    scheduled, calls = [], []
    frozen = datetime(2031, 4, 2, 3, tzinfo=UTC)
    context = SimpleNamespace(
        engine="the service's engine",
        settings=SimpleNamespace(service_name="psad"),
        every=lambda seconds, job, *, name, first_after: scheduled.append((seconds, job, name, first_after)),
    )

    async def applied(engine, service, rules, now, *, batch_size, dry_run=False):
        calls.append((engine, service, rules, now, batch_size, dry_run))
        return {}

    monkeypatch.setattr(retention, "apply_retention", applied)
    settings = RetentionSettings(RACCROCHAGE_RETENTION_BATCH=50)
    schedule_retention(context, ["rule"], settings, clock=lambda: frozen)
    [(seconds, job, name, first_after)] = scheduled
    assert (seconds, name, first_after) == (24 * 3600, "retention", 600)
    await job()
    assert calls == [("the service's engine", "psad", ["rule"], frozen, 50, False)]
