"""Handovers closed by the PSAD: when and why (psad.case.closed.v1).

0001 builds its tables from the live metadata: on a new database the columns exist already.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE handover ADD COLUMN IF NOT EXISTS closed_at timestamptz")
    op.execute("ALTER TABLE handover ADD COLUMN IF NOT EXISTS close_reason text")


def downgrade() -> None:
    op.execute("ALTER TABLE handover DROP COLUMN IF EXISTS close_reason")
    op.execute("ALTER TABLE handover DROP COLUMN IF EXISTS closed_at")
