"""The DPO's erasure requests and each service's answer (docs/privacy.md).

0001 builds its tables from the live metadata, which declares these: hence checkfirst.
"""

from alembic import op
from raccrochage_reperage.adapters.tables import erasure_answer, erasure_request

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    erasure_request.create(op.get_bind(), checkfirst=True)
    erasure_answer.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    erasure_answer.drop(op.get_bind(), checkfirst=True)
    erasure_request.drop(op.get_bind(), checkfirst=True)
