"""Drop `case_by_psad (psad_id, status)`: every list is bound to a territory, which
`case_by_territory (departement, status)` serves, and a territory holds a handful of PSADs; the
index only cost every case insert and status change an entry to maintain.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("case_by_psad", table_name="case_file", if_exists=True)


def downgrade() -> None:
    op.create_index("case_by_psad", "case_file", ["psad_id", "status"], if_not_exists=True)
