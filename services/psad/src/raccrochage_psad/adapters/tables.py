"""PSAD's own tables: one row per case, its history as JSON, and the columns work lists filter on."""

from __future__ import annotations

from raccrochage_platform.tables import platform_metadata
from sqlalchemy import Column, Date, DateTime, Index, Integer, MetaData, Table, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

case = Table(
    "case_file",
    metadata,
    Column("case_id", Uuid, primary_key=True),
    Column("youth_id", Text, nullable=False),
    Column("psad_id", Text, nullable=False),
    Column("departement", Text, nullable=False),
    Column("zap", Text),
    Column("age_at_opening", Integer, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("level", Text),
    Column("last_diploma", Text),
    Column("months_since_leaving", Integer),
    Column("status", Text, nullable=False),
    Column("status_since", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("owner", Text),
    Column("episode", Integer, nullable=False, server_default="1"),
    Column("review_date", Date),
    Column("close_reason", Text),
    Column("found_base", Text),
    Column("last_found_at", DateTime(timezone=True)),
    Column("transferred_to", Text),
    Column("escalation_raised_on", Date),
    Column("last_reported_on", Date),  # the last campaign that still listed the youth
    # attempts, interviews and solutions: the aggregate's history, loaded and saved with the row
    Column("history", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Derived from the aggregate at each save, for the timers and the work-list filters:
    Column("first_attempt_at", DateTime(timezone=True)),
    Column("failed_attempts", Integer, nullable=False, server_default="0"),
    Column("interview_deadline", Date),  # set while an interview is still owed
    Column("escalation_due_on", Date),
    Column("version", Integer, nullable=False, server_default="1"),
    # Exactly one open case per youth, whatever the number of consumer processes: the database
    # says so, and `INSERT ... ON CONFLICT DO NOTHING` relies on it.
    Index("one_open_case_per_youth", "youth_id", unique=True, postgresql_where=text("status <> 'closed'")),
    # Every case of a youth, closed ones included (reopen, found after close): without it the
    # batch lookup of handed-over youths scanned the whole table.
    Index("case_by_youth", "youth_id"),
    # Every list is bound to a territory (a PSAD's filter too: a territory holds a handful).
    Index("case_by_territory", "departement", "status"),
)

ALL_METADATA = [platform_metadata, metadata]
