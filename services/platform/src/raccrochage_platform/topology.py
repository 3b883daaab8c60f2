"""The system's topology (streams, durable consumers, databases) read from deploy/topology.toml."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from raccrochage_contracts.naming import PARTNER_ID_PATTERN

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_PATH = REPO_ROOT / "deploy" / "topology.toml"
PARTNERS_TOML = REPO_ROOT / "deploy" / "partners.toml"
PARTNER_ID = PARTNER_ID_PATTERN  # one subject token: the contracts' naming rule
DAY = 24 * 3600
GIGABYTE = 1024**3


@dataclass(frozen=True)
class StreamDef:
    name: str
    subjects: tuple[str, ...]
    storage: str = "file"
    max_age_days: float = 400
    duplicate_window_seconds: float = 120
    replicas: int = 1
    description: str = ""
    max_bytes: int = -1  # -1: no limit of its own
    # "new": once full, a publish is refused (the outbox keeps the event and retries);
    # "old": the oldest messages make room (dead letters).
    discard: str = "new"
    # A bound per subject (-1: none): a subject over it loses its oldest message. On PARTNER it
    # bounds what one partner can store, whatever the others do.
    max_msgs_per_subject: int = -1
    max_msg_size: int = -1  # bytes; -1: the server's max_payload

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            description=self.description or None,
            storage=StorageType(self.storage),
            retention=RetentionPolicy.LIMITS,
            max_age=self.max_age_days * DAY,
            duplicate_window=self.duplicate_window_seconds,
            num_replicas=self.replicas,
            max_bytes=self.max_bytes,
            discard=DiscardPolicy(self.discard),
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_msg_size=self.max_msg_size,
        )


@dataclass(frozen=True)
class ConsumerDef:
    """A durable pull consumer: explicit ack, bounded redelivery with backoff."""

    durable: str
    service: str
    stream: str
    filter_subjects: tuple[str, ...]
    ack_wait_seconds: float = 30
    max_deliver: int = 6
    backoff_seconds: tuple[float, ...] = (1, 5, 15, 60, 300)
    max_ack_pending: int = 2000
    # Set on the durables a `per_partner` consumer of topology.toml is expanded into: one per
    # partner of deploy/partners.toml, reading that partner's subjects only.
    partner: str | None = None

    def backoff_for(self, delivered: int) -> float:
        """Delay before the next delivery after the `delivered`-th failed."""
        if not self.backoff_seconds:
            return self.ack_wait_seconds
        return self.backoff_seconds[min(delivered, len(self.backoff_seconds)) - 1]

    def config(self) -> ConsumerConfig:
        subjects = list(self.filter_subjects)
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            # One more delivery than our own retries so that the last failure reaches our
            # dead-letter code instead of being dropped silently by the server.
            max_deliver=self.max_deliver + 1,
            max_ack_pending=self.max_ack_pending,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )


@dataclass(frozen=True)
class ServiceDef:
    name: str
    database: str
    stream: str | None = None

    @property
    def source(self) -> str:
        return f"raccrochage/{self.name}"


@dataclass(frozen=True)
class Topology:
    services: dict[str, ServiceDef]
    streams: dict[str, StreamDef]
    consumers: dict[str, ConsumerDef] = field(default_factory=dict)

    def consumers_of(self, service: str) -> list[ConsumerDef]:
        return [c for c in self.consumers.values() if c.service == service]

    def stream_of(self, service: str) -> str:
        stream = self.services[service].stream
        if stream is None:
            raise LookupError(f"service {service} produces no events (no stream in topology.toml)")
        return stream


def declared_partners(path: Path | None = None) -> list[str]:
    """The partner ids of deploy/partners.toml (`RACCROCHAGE_PARTNERS` names another file)."""
    source = path or Path(os.environ.get("RACCROCHAGE_PARTNERS", PARTNERS_TOML))
    ids = sorted(tomllib.loads(source.read_text(encoding="utf-8")).get("partners", {}))
    for partner_id in ids:
        if not PARTNER_ID.match(partner_id):
            # A '.', '*' or '>' in an id would widen its permissions to other partners' subjects.
            raise ValueError(f"{source}: partner id {partner_id!r} is not one subject token ([a-z0-9_-])")
    return ids


def _partner_subject(pattern: str, partner_id: str) -> str:
    """`partner.*.seats.published.v1` for one partner: `partner.<id>.seats.published.v1`."""
    tokens = pattern.split(".")
    if tokens[:2] != ["partner", "*"]:
        raise ValueError(f"a per_partner consumer reads partner.*.… subjects only, not {pattern}")
    return ".".join(["partner", partner_id, *tokens[2:]])


def load_topology(path: Path | None = None, partners: Path | None = None) -> Topology:
    """The topology of `path` (`RACCROCHAGE_TOPOLOGY`, else deploy/topology.toml); a consumer with
    `per_partner = true` becomes one durable `<name>_<partner id>` per partner of `partners`
    (`RACCROCHAGE_PARTNERS`, else deploy/partners.toml), so that no partner's records wait
    behind another's."""
    path = path or Path(os.environ.get("RACCROCHAGE_TOPOLOGY", DEFAULT_PATH))
    raw = _read(path)
    stream_defaults = raw.get("defaults", {}).get("stream", {})
    consumer_defaults = raw.get("defaults", {}).get("consumer", {})

    def stream(name: str, body: dict) -> StreamDef:
        merged = {**stream_defaults, **body}
        return StreamDef(
            name=name,
            subjects=tuple(merged["subjects"]),
            storage=merged.get("storage", "file"),
            max_age_days=merged.get("max_age_days", 400),
            duplicate_window_seconds=merged.get("duplicate_window_seconds", 120),
            replicas=merged.get("replicas", 1),
            description=merged.get("description", ""),
            max_bytes=int(merged["max_gigabytes"] * GIGABYTE) if "max_gigabytes" in merged else -1,
            discard=merged.get("discard", "new"),
            max_msgs_per_subject=merged.get("max_messages_per_subject", -1),
            max_msg_size=merged["max_message_kilobytes"] * 1024 if "max_message_kilobytes" in merged else -1,
        )

    services: dict[str, ServiceDef] = {}
    streams: dict[str, StreamDef] = {}
    for name, body in raw.get("services", {}).items():
        services[name] = ServiceDef(name=name, database=body["database"], stream=body.get("stream"))
        if body.get("stream"):
            streams[body["stream"]] = stream(
                body["stream"], {"subjects": body["subjects"], "description": f"events produced by {name}"}
            )
    for name, body in raw.get("streams", {}).items():
        streams[name] = stream(name, body)
    consumers: dict[str, ConsumerDef] = {}
    for name, body in raw.get("consumers", {}).items():
        merged = {**consumer_defaults, **body}
        each = (
            [(f"{name}_{p}", p) for p in declared_partners(partners)]
            if merged.get("per_partner")
            else [(name, None)]
        )
        for durable, partner_id in each:
            subjects = merged["filter_subjects"]
            if partner_id is not None:
                subjects = [_partner_subject(subject, partner_id) for subject in subjects]
            consumers[durable] = ConsumerDef(
                durable=durable,
                service=merged["service"],
                stream=merged["stream"],
                filter_subjects=tuple(subjects),
                ack_wait_seconds=merged.get("ack_wait_seconds", 30),
                max_deliver=merged.get("max_deliver", 6),
                backoff_seconds=tuple(merged.get("backoff_seconds", ())),
                max_ack_pending=merged.get("max_ack_pending", 2000),
                partner=partner_id,
            )
    return Topology(services=services, streams=streams, consumers=consumers)


def _read(path: Path) -> dict:
    """A topology file; `extends = "other.toml"` (relative path) merges it under this one."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    base = _read((path.parent / parent).resolve())
    for section, body in raw.items():
        if isinstance(body, dict):
            base.setdefault(section, {}).update(body)
        else:
            base[section] = body
    return base


async def declare_stream(js: JetStreamContext, definition: StreamDef) -> None:
    config = definition.config()
    try:
        await js.stream_info(definition.name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def declare_consumer(js: JetStreamContext, definition: ConsumerDef) -> None:
    config = definition.config()
    try:
        await js.consumer_info(definition.stream, definition.durable)
    except NotFoundError:
        await js.add_consumer(definition.stream, config)
    else:
        # Same call updates the mutable settings of an existing durable consumer.
        await js.add_consumer(definition.stream, config)


async def declare(js: JetStreamContext, topology: Topology, *, services: set[str] | None = None) -> None:
    """Create or update every stream, and the consumers of the given services (all by default)."""
    for definition in topology.streams.values():
        await declare_stream(js, definition)
    for definition in topology.consumers.values():
        if services is None or definition.service in services:
            await declare_consumer(js, definition)
