"""The outbox trigger wakes relays only for rows no writer holds: a row inserted leased is
published by its writer right after its commit (outbox.write_events), and waking a relay for it only cost a claim that found
nothing (raccrochage_platform.tables.OUTBOX_NOTIFY_DDL).
"""

from alembic import op
from raccrochage_platform.migrations import notify_every_insert, notify_only_unleased_rows

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_only_unleased_rows(op)


def downgrade() -> None:
    notify_every_insert(op)
