"""Cases still open per day they opened (youth_open), kept by the projection, filled from the
youth rows already projected with the projection's own rule."""

from alembic import op
from raccrochage_ops.adapters.tables import READ_MODELS, insert_counts, youth_open
from raccrochage_ops.domain.projection import Youth, add_counts

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    # 0001 creates the tables of today's metadata: on a database made by it the table is there.
    youth_open.create(bind, checkfirst=True)
    if bind.execute(youth_open.select().limit(1)).first() is not None:
        return
    counts: dict[str, dict[tuple, list[int]]] = {}
    youth = READ_MODELS[Youth]
    for row in bind.execute(youth.select().where(youth.c.case_opened_at.is_not(None))).mappings():
        add_counts(counts, Youth(**row))
    insert_counts(bind, {youth_open.name: counts.get(youth_open.name, {})})


def downgrade() -> None:
    youth_open.drop(op.get_bind())
