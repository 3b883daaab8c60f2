"""FOQUALE's own tables: offers with their seat counters, and reservations.

The seat invariant lives here, not in Python: `reserved + placed <= capacity` is a CHECK, and the
repository moves the counters only by conditional updates that cannot break it (a reservation
takes a seat with one `UPDATE ... WHERE capacity - reserved - placed > 0`). The CHECK is a last
guard, never a way to learn that an offer is full.
"""

from __future__ import annotations

from raccrochage_platform.tables import platform_metadata
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

RESERVABLE = "state IN ('published', 'stale')"

offer = Table(
    "offer",
    metadata,
    Column("offer_id", Uuid, primary_key=True),
    Column("uai", Text, nullable=False),
    Column("formation_code_kind", Text, nullable=False),
    Column("formation_code", Text, nullable=False),
    Column("formation_label", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("statut", Text, nullable=False),
    Column("departement", Text, nullable=False),
    Column("zap", Text),
    Column("capacity", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, server_default="0"),  # active reservations
    Column("placed", Integer, nullable=False, server_default="0"),  # confirmed placements
    Column("opens_on", Date, nullable=False),
    Column("closes_on", Date),
    Column("contact_role", Text, nullable=False),
    Column("keywords", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # What a youth's wish may name about the offer (domain.matching.wish_codes), derived at each
    # save so that the database can count matching offers (`wish_codes && wishes`).
    Column("wish_codes", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("source", Text, nullable=False),
    Column("owner_kind", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("last_confirmed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("stale_since", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("close_reason", Text),
    CheckConstraint("capacity >= 0 AND reserved >= 0 AND placed >= 0", name="offer_counts_not_negative"),
    CheckConstraint("reserved + placed <= capacity", name="offer_not_overbooked"),
    CheckConstraint("state IN ('published', 'stale', 'unpublished', 'closed')", name="offer_state_known"),
    # The seat search: a département's reservable offers.
    Index("offer_reservable_by_departement", "departement", "level", postgresql_where=text(RESERVABLE)),
    # The freshness timer: the reservable offers confirmed longest ago.
    Index("offer_reservable_by_confirmation", "last_confirmed_at", postgresql_where=text(RESERVABLE)),
)

reservation = Table(
    "reservation",
    metadata,
    Column("reservation_id", Uuid, primary_key=True),
    # One reservation per PSAD request; the handler looks it up before reserving, this guards it.
    Column("request_id", Uuid, nullable=False, unique=True),
    Column("case_id", Uuid, nullable=False),
    Column("youth_id", Text, nullable=False),
    Column("offer_id", Uuid, ForeignKey("offer.offer_id"), nullable=False),
    Column("uai", Text, nullable=False),
    Column("training", Text, nullable=False),
    Column("opens_on", Date, nullable=False),
    Column("made_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("starts_on", Date),
    Column("refusal_reason", Text),
    Column("refusal_comment", Text),  # never published: free text may name a person
    CheckConstraint("state IN ('made', 'confirmed', 'refused', 'expired')", name="reservation_state_known"),
    CheckConstraint(
        "refusal_reason IS DISTINCT FROM 'other' OR refusal_comment IS NOT NULL",
        name="reservation_other_refusal_has_a_comment",
    ),
    Index("reservation_by_offer", "offer_id"),
    # The expiry timer: unanswered reservations by expiry.
    Index("reservation_pending_by_expiry", "expires_at", postgresql_where=text("state = 'made'")),
)

# Establishments' API keys (migration 0002): the secret is stored as its SHA-256 only. A key is
# 32 random bytes, so a fast hash is enough (no password to guess); the key id finds the row.
api_key = Table(
    "api_key",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("secret_sha256", Text, nullable=False),
    Column("uais", ARRAY(Text), nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    CheckConstraint("cardinality(uais) > 0", name="api_key_has_uais"),
)
# Every answer FOQUALE gave a partner (migration 0003), as the envelope it published on
# partner.<id>.seats.feedback.v1: a partner reads no stream, so it asks FOQUALE for its last N
# (`entrypoints/feedback_replay.py`). No personal data: a key, a field, a reason.
partner_feedback = Table(
    "partner_feedback",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("partner_id", Text, nullable=False),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("envelope", JSONB, nullable=False),
    Index("partner_feedback_latest", "partner_id", "id"),
)
# Each partner's record rate (migration 0004): the bucket's tokens when its last turn was taken,
# and when. One row per partner, locked by the FOQUALE process taking a turn.
partner_rate = Table(
    "partner_rate",
    metadata,
    Column("partner_id", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
FIRST_TABLES = [offer, reservation]  # migration 0001

ALL_METADATA = [platform_metadata, metadata]
