"""Outbox, inbox and the counters table."""

import sqlalchemy as sa
from alembic import op
from raccrochage_platform.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_platform_tables(op)
    op.create_table(
        "counters",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("counters")
    drop_platform_tables(op)
