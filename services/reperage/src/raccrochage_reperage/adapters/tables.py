"""Repérage's own tables: campaigns, the identity vault, cross-check results, partner bases, handovers."""

from __future__ import annotations

from raccrochage_platform.tables import platform_metadata
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

campaign = Table(
    "campaign",
    metadata,
    Column("campaign_id", Text, primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("file_sha256", Text, nullable=False),
    Column("status", Text, nullable=False),  # ingesting | done
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("summary", JSONB),
    # The last chunk an ingest committed: a campaign still ingesting long after it has stalled
    # (its ingest died) and is reported so (REPERAGE_INGEST_STALL_SECONDS).
    Column("progressed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Why a line was rejected: line, field and reason, never the value.
rejection = Table(
    "rejection",
    metadata,
    Column("campaign_id", Text, ForeignKey("campaign.campaign_id", ondelete="CASCADE"), nullable=False),
    Column("line", Integer, nullable=False),
    Column("field", Text, nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("campaign_id", "line"),
)

# The identity vault: the only place where clear identities live. No index on `ine`: youth_id is
# the keyed hash of the INE (domain/identity.py), so the primary key already finds a youth by INE
# and keeps each INE once (migration 0007).
youth = Table(
    "youth",
    metadata,
    Column("youth_id", Text, primary_key=True),
    Column("ine", Text, nullable=False),
    Column(
        "identity_key", Text, nullable=False
    ),  # normalised nom|prenom|birth date, for partners without INE
    Column("nom", Text, nullable=False),
    Column("prenom", Text, nullable=False),
    Column("date_naissance", Date, nullable=False),
    Column("sexe", Text),
    Column("code_postal", Text, nullable=False),
    Column("commune", Text),
    Column("adresse", Text),
    Column("telephone", Text),
    Column("courriel", Text),
    Column("uai_origine", Text),
    Column("formation_origine", Text),
    Column("date_sortie", Date, nullable=False),
    Column("diplome", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("youth_identity_key", "identity_key"),
)

# Outcome of each youth in each campaign. No foreign key to campaign (migration 0002): checking
# it for each of a million rows cost a third of the ingest's writes.
campaign_youth = Table(
    "campaign_youth",
    metadata,
    Column("campaign_id", Text, nullable=False),
    Column("youth_id", Text, nullable=False),
    Column("line", Integer, nullable=False),
    Column("outcome", Text, nullable=False),  # identified | reported_again | excluded
    Column("reason", Text),  # exclusion reason
    Column("psad_id", Text),
    PrimaryKeyConstraint("campaign_id", "youth_id"),
)

# A youth handed to a PSAD: open until found in a partner base or closed by the PSAD.
handover = Table(
    "handover",
    metadata,
    Column("youth_id", Text, primary_key=True),
    Column("psad_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("handed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("open", Boolean, nullable=False, server_default="true"),
    Column("found_at", DateTime(timezone=True)),
    Column("found_base", Text),
    Column("closed_at", DateTime(timezone=True)),  # closed by the PSAD (psad.case.closed.v1)
    Column("close_reason", Text),
)

partner_enrolment = Table(
    "partner_enrolment",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("base", Text, nullable=False),  # cfa | agri | ml | mlds | en
    Column("partner_id", Text),  # the live partner, None for files
    Column("ine", Text),
    Column("identity_key", Text, nullable=False),
    Column("date_debut", Date, nullable=False),
    Column("date_fin", Date),
    Column("event_id", Uuid, unique=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("partner_enrolment_ine", "ine"),
    Index("partner_enrolment_identity", "identity_key"),
    Index("partner_enrolment_unique", "base", "identity_key", "date_debut", unique=True),
)

# Every read of an identity (a contact card, asked or refused; a DPO export): who, when, what,
# why. Append-only and hash-chained (adapters/audit.py, docs/privacy.md "Audit"): `seq` counts
# the rows without a gap, `prev_hash` is the previous row's `hash`, and `hash` is the sha256 of
# the row's canonical content with `prev_hash`. The youth read is not in it: see below.
identity_audit = Table(
    "identity_audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("caller", Text, nullable=False),  # the service that asked (psad, clause_sociale, dpo)
    Column("role", Text),  # the person it asked for: role, sub and territory of their token
    Column("sub", Text),
    Column("territory", Text),
    Column("what", Text, nullable=False),  # contact_card | export
    Column("purpose", Text, nullable=False),  # why: the case, the convention, the export
    Column("granted", Boolean, nullable=False),
    Column("prev_hash", Text, nullable=False, unique=True),  # one successor per row: no fork
    Column("hash", Text, nullable=False, unique=True),
)

# Which youth each audit row read: apart from the chain so that an erasure deletes the link and
# leaves the chain whole.
identity_audit_youth = Table(
    "identity_audit_youth",
    metadata,
    Column("seq", BigInteger, primary_key=True),  # identity_audit.seq, whose rows are never deleted
    Column("youth_id", Text, nullable=False, index=True),
)

# The DPO's erasure requests (service_layer/privacy.py): who asked and when, never which youth,
# and which services have answered. A request is complete when every service has, then swept
# once its youth's messages are deleted from the streams (`swept`: how many, per stream).
erasure_request = Table(
    "erasure_request",
    metadata,
    Column("request_id", Uuid, primary_key=True),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("identity_found", Boolean, nullable=False),  # the vault held the INE's identity
    Column("erased", JSONB, nullable=False),  # the vault's own counts, per kind of record
    Column("completed_at", DateTime(timezone=True)),
    Column("swept_at", DateTime(timezone=True)),
    Column("swept", JSONB),
)

# The youth_id a request's streams are still to be swept of: the vault's one row naming the
# erased youth, deleted by the sweep that uses it.
erasure_sweep = Table(
    "erasure_sweep",
    metadata,
    Column(
        "request_id", Uuid, ForeignKey("erasure_request.request_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("youth_id", Text, nullable=False),
)

erasure_answer = Table(
    "erasure_answer",
    metadata,
    Column("request_id", Uuid, ForeignKey("erasure_request.request_id", ondelete="CASCADE"), nullable=False),
    Column("service", Text, nullable=False),
    Column("answered_at", DateTime(timezone=True)),  # None: not yet
    Column("erased", JSONB),
    Column("anonymised", JSONB),
    PrimaryKeyConstraint("request_id", "service"),
)

ALL_METADATA = [metadata, platform_metadata]
