"""`case_file.last_found_at`: when repérage last found the youth at a partner (its event's
time). A hand-over emitted before it, handled after it (replicas share PSAD's durable), does not
reopen the case.

0001 builds the tables from the current metadata, so a database created after this change has
the column already: hence IF NOT EXISTS.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE case_file ADD COLUMN IF NOT EXISTS last_found_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE case_file DROP COLUMN IF EXISTS last_found_at")
