"""Read models of every stream, the replay audit, outbox and inbox."""

from alembic import op
from raccrochage_ops.adapters.tables import metadata
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
