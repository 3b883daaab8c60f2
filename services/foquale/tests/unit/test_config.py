"""FOQUALE's settings: the clocks an académie configures."""

import pytest
from raccrochage_foquale.config import FoqualeSettings
from raccrochage_foquale.domain.policy import Policy
from raccrochage_platform.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "foquale")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("RACCROCHAGE_TOKEN_KEY", "k" * 64)
    for name in ("FOQUALE_STALE_AFTER_DAYS", "FOQUALE_UNPUBLISH_AFTER_DAYS", "FOQUALE_RESERVATION_DAYS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_issues() -> None:
    assert load_settings(FoqualeSettings).policy() == Policy(60, 90, 15)


def test_the_clocks_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOQUALE_STALE_AFTER_DAYS", "30")
    monkeypatch.setenv("FOQUALE_UNPUBLISH_AFTER_DAYS", "45")
    monkeypatch.setenv("FOQUALE_RESERVATION_DAYS", "7")
    assert load_settings(FoqualeSettings).policy() == Policy(30, 45, 7)


def test_unpublishing_before_the_warning_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOQUALE_UNPUBLISH_AFTER_DAYS", "60")
    with pytest.raises(ConfigError, match="must be more than FOQUALE_STALE_AFTER_DAYS"):
        load_settings(FoqualeSettings)
