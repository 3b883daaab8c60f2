"""Outbox rows leased by the relay that publishes them (outbox.py CLAIM_SQL): a claim is one
statement that commits on its own instead of a transaction held while publishing.

0001 builds its tables from the live metadata: on a new database the column exists already.
"""

from alembic import op
from raccrochage_platform.tables import OUTBOX_LEASE_DOWNGRADE, OUTBOX_LEASE_UPGRADE

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(OUTBOX_LEASE_UPGRADE)


def downgrade() -> None:
    op.execute(OUTBOX_LEASE_DOWNGRADE)
