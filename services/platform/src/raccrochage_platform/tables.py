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
    Index("outbox_pending_by_aggregate", "aggregate_key", "id", postgresql_where=text("published_at IS NULL")),
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

# One NOTIFY per inserting statement (not per row): the relay only needs a wake-up.
OUTBOX_NOTIFY_DDL = (
    f"""
    CREATE OR REPLACE FUNCTION raccrochage_outbox_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    """
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION raccrochage_outbox_notify()
    """,
)


async def create_platform_tables(conn) -> None:  # noqa: ANN001 (AsyncConnection)
    """For tests and tools: what the services' first migration does with Alembic."""
    await conn.run_sync(platform_metadata.create_all)
    for statement in OUTBOX_NOTIFY_DDL:
        await conn.exec_driver_sql(statement)
