"""An erasure request's stream sweep (docs/privacy.md "The streams"): when it was swept, how many
messages per stream, and the youth_id it is still to be swept of.

0001 builds its tables from the live metadata, which declares these: hence the checks. A request
recorded before this revision has no youth_id left to sweep with: it stays unswept.
"""

from alembic import op
from raccrochage_reperage.adapters.tables import erasure_sweep

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE erasure_request ADD COLUMN IF NOT EXISTS swept_at timestamptz")
    op.execute("ALTER TABLE erasure_request ADD COLUMN IF NOT EXISTS swept jsonb")
    erasure_sweep.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    erasure_sweep.drop(op.get_bind(), checkfirst=True)
    op.execute("ALTER TABLE erasure_request DROP COLUMN IF EXISTS swept")
    op.execute("ALTER TABLE erasure_request DROP COLUMN IF EXISTS swept_at")
