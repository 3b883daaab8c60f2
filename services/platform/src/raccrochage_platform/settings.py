"""Settings read from the environment at start-up, with errors that name the variable."""

from __future__ import annotations

import os
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


def nats_servers(nats_url: str) -> list[str]:
    """The servers a NATS_URL names: one URL, or several separated by commas (a cluster's nodes).
    A client connects to the first that answers and moves to another when its server goes."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]


class ConfigError(SystemExit):
    """Raised at start-up when the environment is wrong; its text names each variable."""


class ServiceSettings(BaseSettings):
    """What every service process needs. Services subclass it for their own settings."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    service_name: str = Field(validation_alias="RACCROCHAGE_SERVICE", pattern=r"^[a-z][a-z_]*$")
    nats_url: str = Field(
        validation_alias="NATS_URL",
        description="nats:// or tls:// URL of the server, or of each node of a cluster separated by commas",
    )
    database_url: str = Field(validation_alias="DATABASE_URL", pattern=r"^postgresql(\+asyncpg)?://")
    http_host: str = Field("127.0.0.1", validation_alias="HTTP_HOST")
    http_port: int = Field(0, validation_alias="HTTP_PORT", ge=0, le=65535)
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    relay_batch_size: int = Field(500, validation_alias="RACCROCHAGE_RELAY_BATCH", ge=1, le=10_000)
    relay_sweep_seconds: float = Field(1.0, validation_alias="RACCROCHAGE_RELAY_SWEEP_SECONDS", gt=0)
    relay_lease_seconds: float = Field(
        10.0,
        validation_alias="RACCROCHAGE_RELAY_LEASE_SECONDS",
        gt=0,
        description="how long rows a relay or a writer took stay theirs: a crashed one's wait that long",
    )
    outbox_retention_seconds: float = Field(
        7 * 24 * 3600,
        validation_alias="RACCROCHAGE_OUTBOX_RETENTION_SECONDS",
        ge=0,
        description="how long published outbox rows are kept; 0 deletes each once published",
    )
    # The service image says production (deploy/docker/Dockerfile.service); the rig, the tests and
    # docker-compose's local containers run in development.
    environment: Literal["development", "production"] = Field(
        "development", validation_alias="RACCROCHAGE_ENVIRONMENT"
    )

    @field_validator("nats_url")
    @classmethod
    def _nats_servers(cls, value: str) -> str:
        servers = nats_servers(value)
        if not servers:
            raise ValueError("names no server: give nats://host:port, or several separated by commas")
        for number, url in enumerate(servers, 1):
            if not url.startswith(("nats://", "tls://")) or " " in url:
                raise ValueError(f"server {number} of {len(servers)} is not a nats:// or tls:// URL")
        return value

    @model_validator(mode="after")
    def _own_secrets_in_production(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        problems = [
            f"{variable} {why}: production needs a secret of its own"
            for variable, value in self.secrets()
            if (why := development_secret(value))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secrets(self) -> list[tuple[str, str]]:
        """(variable, value) of each secret: every `*_key` setting and the URLs' passwords."""
        found = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            variable = str(info.validation_alias or name.upper())
            if name.endswith("_key") and isinstance(value, str):
                found.append((variable, value))
            elif name == "nats_url":
                found += [
                    (variable, password)
                    for url in nats_servers(value)
                    if (password := urlsplit(url).password)
                ]
            elif name.endswith("_url") and isinstance(value, str) and urlsplit(value).password:
                found.append((variable, urlsplit(value).password))
        return found


def development_secret(value: str) -> str | None:
    """Why `value` is a development or test value rather than a secret (None when it is not):
    the placeholders written in this repository (dev-only-..., dev_<service>) and the tests'
    one-letter keys."""
    if value.lower().startswith(("dev", "changeme", "replace")):
        return "is a development placeholder"
    if len(set(value)) < 8:
        return "has fewer than 8 distinct characters (a test's key)"
    return None


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment; a missing or wrong variable stops with its name."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        lines = []
        for problem in error.errors(include_input=False, include_url=False):
            if not problem["loc"]:  # a rule over several settings: its message names them
                lines.append(f"  {problem['msg']}")
                continue
            field = problem["loc"][0]
            info = cls.model_fields.get(str(field))
            variable = (
                info.validation_alias if info is not None and info.validation_alias else str(field).upper()
            )
            lines.append(f"  {variable}: {problem['msg']}")
        raise ConfigError(f"{cls.__name__}: invalid environment\n" + "\n".join(lines)) from None


def apply_local_environment(service: str | None = None) -> None:
    """Fill what the environment leaves unset from the `raccrochage.environment` entry points:
    beside a developer's local rig, its servers and keys. Service images install no such entry
    point and are configured by their environment alone."""
    for name, value in local_environment(service).items():
        os.environ.setdefault(name, value)


def local_environment(service: str | None = None) -> dict[str, str]:
    """What the `raccrochage.environment` entry points give (a local rig's servers and keys;
    for a service, its whole environment); nothing in a service image."""
    from importlib.metadata import entry_points

    found: dict[str, str] = {}
    for entry in entry_points(group="raccrochage.environment"):
        found.update(entry.load()(service))
    return found
