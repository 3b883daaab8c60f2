"""The outbox and inbox tables every service database holds beside its own tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy import Table as _Table

platform_metadata = MetaData()
# For a service whose relay claims most rows (repérage's campaign ingest): half of each outbox
# page left free, so that a claim, which sets only `leased_until` (in no index), updates the row
# in place (HOT) instead of adding an entry to every index: bench/relay.py claim 31 -> 18 ms per
# two batches of 500. Not for an outbox whose writers lease their rows (PSAD's consumers): no
# claim to spare, and twice the pages (bench/psad.py could not tell the difference from the
# machine's noise either way). Set by a service's migration (migrations.outbox_pages_half_free).
OUTBOX_FILLFACTOR = 50

outbox = _Table(
    "outbox",
    platform_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("event_type", Text, nullable=False),
    Column("nats_subject", Text, nullable=False),
    Column("stream", Text, nullable=False),
    # The envelope's subject (aggregate id): rows of one aggregate are published in id order.
    Column("aggregate_key", Text, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    # Held by a relay publishing it until then (outbox.py CLAIM_SQL); free again after.
    Column("leased_until", DateTime(timezone=True)),
    Index("outbox_pending", "id", postgresql_where=text("published_at IS NULL")),
    Index(
        "outbox_pending_by_aggregate", "aggregate_key", "id", postgresql_where=text("published_at IS NULL")
    ),
)

inbox = _Table(
    "inbox",
    platform_metadata,
    Column("consumer", Text, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)

# For the services' migrations that add the lease to an outbox created before it existed.
OUTBOX_LEASE_UPGRADE = "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS leased_until timestamptz"
OUTBOX_LEASE_DOWNGRADE = "ALTER TABLE outbox DROP COLUMN IF EXISTS leased_until"

OUTBOX_CHANNEL = "raccrochage_outbox"


def _notify_ddl(condition: str, referencing: str) -> tuple[str, ...]:
    return (
        f"""
        CREATE OR REPLACE FUNCTION raccrochage_outbox_notify() RETURNS trigger AS $$
        BEGIN
            IF {condition} THEN
                PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
            END IF;
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """,
        "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
        f"""
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox {referencing}
        FOR EACH STATEMENT EXECUTE FUNCTION raccrochage_outbox_notify()
        """,
    )


# One NOTIFY per inserting statement (not per row), and only if it inserted a row that no writer
# holds (`leased_until` NULL): the relay only needs a wake-up for rows it must claim, and a writer
# that leased its rows publishes them itself (outbox.write_events). Without the condition, every
# partner enrolment woke repérage's relay for a claim that found nothing.
OUTBOX_NOTIFY_DDL = _notify_ddl(
    "EXISTS (SELECT 1 FROM added WHERE added.leased_until IS NULL)", "REFERENCING NEW TABLE AS added"
)
# What services' migrations before the condition installed (their downgrades go back to it).
OUTBOX_NOTIFY_EVERY_INSERT_DDL = _notify_ddl("true", "")


async def create_platform_tables(conn) -> None:
    """For tests and tools: what the services' first migration does with Alembic."""
    await conn.run_sync(platform_metadata.create_all)
    for statement in OUTBOX_NOTIFY_DDL:
        await conn.exec_driver_sql(statement)
