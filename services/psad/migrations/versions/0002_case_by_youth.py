"""An index on every case of a youth: the batch lookup of handed-over youths scanned the table.

0001 builds the tables from the current metadata, so a database created after this change has
the index already: hence IF NOT EXISTS.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("case_by_youth", "case_file", ["youth_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("case_by_youth", table_name="case_file")
