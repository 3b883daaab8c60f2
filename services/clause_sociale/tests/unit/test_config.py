"""clause_sociale's settings: read from the environment, wrong values named by their variable."""

import pytest
from raccrochage_clause_sociale.config import ClauseSocialeSettings
from raccrochage_platform.settings import ConfigError, load_settings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "clause_sociale")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("RACCROCHAGE_TOKEN_KEY", "k" * 32)
    monkeypatch.delenv("CLAUSE_DEADLINES_TIMER_SECONDS", raising=False)
    return monkeypatch


def test_defaults(environment: pytest.MonkeyPatch) -> None:
    settings = load_settings(ClauseSocialeSettings)
    assert settings.service_name == "clause_sociale" and settings.deadlines_timer_seconds == 300


def test_a_wrong_value_names_its_variable(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("CLAUSE_DEADLINES_TIMER_SECONDS", "0")
    with pytest.raises(ConfigError, match="CLAUSE_DEADLINES_TIMER_SECONDS"):
        load_settings(ClauseSocialeSettings)
