"""The answers given to partners, for them to read again (request/reply)."""

from alembic import op
from raccrochage_foquale.adapters.tables import partner_feedback

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    partner_feedback.create(op.get_bind())


def downgrade() -> None:
    partner_feedback.drop(op.get_bind())
