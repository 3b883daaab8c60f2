"""Outbox pages half free: repérage's relay claims most of its rows (a campaign's hundreds of
thousands of identified events), and a claim sets only `leased_until`, which no index holds, so
the row is updated in place (HOT) instead of gaining an entry in every index
(raccrochage_platform.tables.OUTBOX_FILLFACTOR). Applies to the pages written from now on.
"""

from alembic import op
from raccrochage_platform.migrations import outbox_pages_full, outbox_pages_half_free

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox_pages_half_free(op)


def downgrade() -> None:
    outbox_pages_full(op)
