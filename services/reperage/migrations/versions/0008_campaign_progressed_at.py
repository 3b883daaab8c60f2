"""campaign.progressed_at: when an ingest last committed a chunk, so that a campaign whose ingest
died (an HTTP upload whose process was killed) is reported as stalled instead of ingesting forever.

0001 builds its tables from the live metadata, which declares the column: hence IF NOT EXISTS.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE campaign ADD COLUMN IF NOT EXISTS progressed_at timestamptz NOT NULL DEFAULT now()"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE campaign DROP COLUMN IF EXISTS progressed_at")
