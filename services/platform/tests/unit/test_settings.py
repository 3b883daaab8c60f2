"""A wrong or missing environment variable stops start-up with its name."""

import pytest
from raccrochage_platform.settings import ConfigError, ServiceSettings, load_settings


def test_missing_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RACCROCHAGE_SERVICE", "NATS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as raised:
        load_settings(ServiceSettings)
    message = str(raised.value)
    assert "RACCROCHAGE_SERVICE" in message and "NATS_URL" in message and "DATABASE_URL" in message


def test_wrong_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "psad")
    monkeypatch.setenv("NATS_URL", "http://localhost:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("HTTP_PORT", "not-a-port")
    with pytest.raises(ConfigError) as raised:
        load_settings(ServiceSettings)
    message = str(raised.value)
    assert "NATS_URL" in message and "HTTP_PORT" in message and "DATABASE_URL" not in message


def test_valid_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "psad")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.delenv("HTTP_PORT", raising=False)
    settings = load_settings(ServiceSettings)
    assert settings.service_name == "psad" and settings.http_port == 0


def test_outbox_retention_is_a_week_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "reperage")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.delenv("RACCROCHAGE_OUTBOX_RETENTION_SECONDS", raising=False)
    assert load_settings(ServiceSettings).outbox_retention_seconds == 7 * 24 * 3600
    monkeypatch.setenv("RACCROCHAGE_OUTBOX_RETENTION_SECONDS", "-1")
    with pytest.raises(ConfigError, match="RACCROCHAGE_OUTBOX_RETENTION_SECONDS"):
        load_settings(ServiceSettings)
