"""The MLDS's own tables: its sites with their places, and candidacies (one row each, their
history as JSON beside the columns that lists and checks need)."""

from __future__ import annotations

from raccrochage_platform.tables import platform_metadata
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

dispositif = Table(
    "dispositif",
    metadata,
    Column("dispositif_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("departement", Text, nullable=False),
    Column("host_establishment", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("postcode", Text, nullable=False),
    Column("city", Text, nullable=False),
    Column("phone", Text, nullable=False),
    Column("host_uai", Text),
    Column("capacity", Integer, nullable=False),
    Column("places_taken", Integer, nullable=False, server_default=text("0")),
    Column("revision", Integer, nullable=False, server_default=text("1")),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Never more youths admitted than places, whatever the number of replicas: the conditional
    # UPDATEs of the repository never break it, this says so to anything else that writes.
    CheckConstraint("places_taken >= 0 AND places_taken <= capacity", name="places_within_capacity"),
    CheckConstraint("kind IN ('paps', 'dipa', 'micro_lycee')", name="dispositif_kind"),
    Index("dispositif_by_kind", "kind", "departement"),
)

candidacy = Table(
    "candidacy",
    metadata,
    Column("candidacy_id", Uuid, primary_key=True),
    Column("youth_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("departement", Text, nullable=False),  # the youth's
    Column("channel", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("entry_year", Integer, nullable=False),  # the rentrée's calendar year
    Column("dispositif_id", Text, ForeignKey("dispositif.dispositif_id")),
    Column("request_id", Uuid),  # the PSAD request it answers
    Column("case_id", Uuid),
    Column("psad_id", Text),
    Column("correlation_id", Uuid),
    Column("status", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("answered", Boolean, nullable=False, server_default=false()),
    Column("facts", JSONB, nullable=False),
    # decisions, admission steps, admission, enrolment, exit, refusal, withdrawal, PAFI
    Column("history", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("kind IN ('paps', 'dipa', 'micro_lycee')", name="candidacy_kind"),
    # One candidacy per PSAD request, whatever the number of consumers (INSERT ... ON CONFLICT).
    Index("candidacy_by_request", "request_id", unique=True, postgresql_where=text("request_id IS NOT NULL")),
    Index("candidacy_by_youth", "youth_id"),
    Index("candidacy_by_site", "dispositif_id", "status"),
)

ALL_METADATA = [platform_metadata, metadata]
