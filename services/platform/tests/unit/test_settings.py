"""A wrong or missing environment variable stops start-up with its name."""

import pytest
from pydantic import Field
from raccrochage_platform.settings import ConfigError, ServiceSettings, load_settings, nats_servers


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


def test_nats_url_names_every_node_of_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "psad")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("NATS_URL", "nats://n1:4222, nats://n2:4222,tls://n3:4222")
    settings = load_settings(ServiceSettings)
    assert nats_servers(settings.nats_url) == ["nats://n1:4222", "nats://n2:4222", "tls://n3:4222"]
    for wrong, why in [
        ("nats://n1:4222,http://s3cret@n2:4222", "server 2 of 2 is not a nats:// or tls:// URL"),
        (" , ", "names no server"),
    ]:
        monkeypatch.setenv("NATS_URL", wrong)
        with pytest.raises(ConfigError) as raised:
            load_settings(ServiceSettings)
        assert f"NATS_URL: Value error, {why}" in str(raised.value)
        assert "s3cret" not in str(raised.value)


def test_outbox_retention_is_a_week_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "reperage")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.delenv("RACCROCHAGE_OUTBOX_RETENTION_SECONDS", raising=False)
    assert load_settings(ServiceSettings).outbox_retention_seconds == 7 * 24 * 3600
    monkeypatch.setenv("RACCROCHAGE_OUTBOX_RETENTION_SECONDS", "-1")
    with pytest.raises(ConfigError, match="RACCROCHAGE_OUTBOX_RETENTION_SECONDS"):
        load_settings(ServiceSettings)


class KeyedSettings(ServiceSettings):
    token_key: str = Field(validation_alias="RACCROCHAGE_TOKEN_KEY", min_length=32)


def production(monkeypatch: pytest.MonkeyPatch, token_key: str, database_url: str) -> None:
    monkeypatch.setenv("RACCROCHAGE_ENVIRONMENT", "production")
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "psad")
    monkeypatch.setenv("NATS_URL", "nats://psad:n4ts-Secret-9f2c@nats:4222")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RACCROCHAGE_TOKEN_KEY", token_key)


@pytest.mark.parametrize(
    ("token_key", "password", "refused"),
    [
        ("t" * 64, "Zq8-v41Lm0pRx7", "RACCROCHAGE_TOKEN_KEY"),  # the test rigs' keys
        ("dev-only-token-key-replace-in-production-00000000", "Zq8-v41Lm0pRx7", "RACCROCHAGE_TOKEN_KEY"),
        ("3f9a0c17d2b84e65a1c0ff3e9b27d4c8a6e1f05b7c3d92e8", "dev_psad", "DATABASE_URL"),  # init.sql's old
    ],
)
def test_production_refuses_the_development_secrets(
    monkeypatch: pytest.MonkeyPatch, token_key: str, password: str, refused: str
) -> None:
    production(monkeypatch, token_key, f"postgresql://psad:{password}@db:5432/psad")
    with pytest.raises(ConfigError, match=refused) as raised:
        load_settings(KeyedSettings)
    assert token_key not in str(raised.value) and password not in str(raised.value)  # never echoed


def test_production_starts_with_secrets_of_its_own_and_development_with_any(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "3f9a0c17d2b84e65a1c0ff3e9b27d4c8a6e1f05b7c3d92e8"
    production(monkeypatch, key, "postgresql://psad:Zq8-v41Lm0pRx7@db:5432/psad")
    assert load_settings(KeyedSettings).token_key == key
    production(monkeypatch, "t" * 64, "postgresql://psad:dev_psad@db:5432/psad")
    monkeypatch.setenv("RACCROCHAGE_ENVIRONMENT", "development")
    assert load_settings(KeyedSettings).environment == "development"


def test_production_checks_the_password_of_every_nats_node(monkeypatch: pytest.MonkeyPatch) -> None:
    production(
        monkeypatch,
        "3f9a0c17d2b84e65a1c0ff3e9b27d4c8a6e1f05b7c3d92e8",
        "postgresql://psad:Zq8-v41Lm0pRx7@db/psad",
    )
    monkeypatch.setenv("NATS_URL", "nats://psad:n4ts-Secret-9f2c@n1:4222,nats://psad:dev_psad@n2:4222")
    with pytest.raises(ConfigError, match="NATS_URL is a development placeholder") as raised:
        load_settings(KeyedSettings)
    assert "dev_psad" not in str(raised.value)
