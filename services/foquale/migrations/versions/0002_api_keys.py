"""Establishments' API keys: hashed, bound to UAIs, revocable, last use recorded."""

from alembic import op
from raccrochage_foquale.adapters.tables import api_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    api_key.create(op.get_bind())


def downgrade() -> None:
    api_key.drop(op.get_bind())
