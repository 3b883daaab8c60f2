"""MLDS sites (places held by a CHECK and conditional updates), candidacies, outbox and inbox.

Built from the live metadata, as PSAD's 0001: a later change to these tables comes with its own
migration, written so that it also runs on a database this one created after the change.
"""

from alembic import op
from raccrochage_mlds.adapters.tables import metadata
from raccrochage_platform.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables(op)
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
    drop_platform_tables(op)
