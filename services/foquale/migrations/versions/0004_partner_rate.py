"""Each partner's record rate, shared by every FOQUALE process."""

from alembic import op
from raccrochage_foquale.adapters.tables import partner_rate

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    partner_rate.create(op.get_bind())


def downgrade() -> None:
    partner_rate.drop(op.get_bind())
