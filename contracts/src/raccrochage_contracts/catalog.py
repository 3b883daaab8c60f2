"""The event catalog: for every event type, who produces it and who consumes it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .registry import Registry

CONTRACTS_DIR = Path(__file__).resolve().parents[2]
CATALOG_PATH = CONTRACTS_DIR / "catalog.toml"
SCHEMAS_DIR = CONTRACTS_DIR / "schemas"
EXAMPLES_DIR = CONTRACTS_DIR / "examples"
ASYNCAPI_DIR = CONTRACTS_DIR / "asyncapi"

SERVICES = ("reperage", "psad", "foquale", "mlds", "clause_sociale", "ops")


@dataclass(frozen=True)
class CatalogEntry:
    event_type: str
    # One service, or several for an answer every service gives (privacy.erasure.done.v1).
    producer: str | tuple[str, ...]
    consumers: tuple[str, ...]
    description: str = ""
    stream: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def producers(self) -> tuple[str, ...]:
        return (self.producer,) if isinstance(self.producer, str) else self.producer


def load_catalog(path: Path = CATALOG_PATH) -> dict[str, CatalogEntry]:
    if not path.exists():
        return {}
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    entries: dict[str, CatalogEntry] = {}
    for name, body in raw.get("events", {}).items():
        entries[name] = CatalogEntry(
            event_type=name,
            producer=body["producer"] if isinstance(body["producer"], str) else tuple(body["producer"]),
            consumers=tuple(body.get("consumers", ())),
            description=body.get("description", ""),
            stream=body.get("stream", ""),
        )
    return entries


def catalog_problems(registry: Registry, catalog: dict[str, CatalogEntry]) -> list[str]:
    """Types without an entry, entries without a model, and unknown services."""
    problems = []
    for name in registry:
        if name not in catalog:
            problems.append(f"{name}: no catalog entry in contracts/catalog.toml (producer, consumers)")
    for name, entry in catalog.items():
        if name not in registry:
            problems.append(f"{name}: catalog entry has no model in the registry")
        known = set(SERVICES) | {"partner"}
        for who in (*entry.producers, *entry.consumers):
            if who not in known:
                problems.append(f"{name}: unknown service {who!r} in catalog")
    return problems
