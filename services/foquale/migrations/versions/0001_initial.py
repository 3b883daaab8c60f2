"""Offers with their seat counters, reservations, outbox and inbox."""

from alembic import op
from raccrochage_foquale.adapters.tables import FIRST_TABLES, metadata
from raccrochage_platform.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables(op)
    # Its own tables only: later tables of the metadata come with their own migrations.
    metadata.create_all(op.get_bind(), tables=FIRST_TABLES)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=FIRST_TABLES)
    drop_platform_tables(op)
