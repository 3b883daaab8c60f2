"""Outbox rows leased by the relay that publishes them (outbox.py CLAIM_SQL): a claim is one
statement that commits on its own instead of a transaction held while publishing.

0001 builds its tables from the live metadata: on a new database the column exists already.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS leased_until timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN IF EXISTS leased_until")
