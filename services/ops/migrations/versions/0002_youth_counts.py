"""Youth counts kept by the projection (youth_total, youth_count, youth_week), filled from the
youth rows already projected with the projection's own rule; an index on the day a case opened."""

from alembic import op
from raccrochage_ops.adapters.tables import COUNT_TABLES as ALL_COUNT_TABLES
from raccrochage_ops.adapters.tables import READ_MODELS, insert_counts
from raccrochage_ops.domain.projection import YOUTH_TABLES, Youth, add_counts

# This migration's tables (0003 and 0004 add the others).
COUNT_TABLES = {name: ALL_COUNT_TABLES[name] for name in YOUTH_TABLES if name != "youth_open"}

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    # 0001 creates the tables of today's metadata: on a database made by it they are there.
    for table in COUNT_TABLES.values():
        table.create(bind, checkfirst=True)
    op.create_index("youth_by_case_opened_at", "youth", ["case_opened_at"], if_not_exists=True)
    if bind.execute(COUNT_TABLES["youth_total"].select().limit(1)).first() is not None:
        return
    changes: dict[str, dict[tuple, list[int]]] = {name: {} for name in COUNT_TABLES}
    for row in bind.execute(READ_MODELS[Youth].select()).mappings():
        add_counts(changes, Youth(**row))
    insert_counts(bind, {name: changes.get(name, {}) for name in COUNT_TABLES})


def downgrade() -> None:
    op.drop_index("youth_by_case_opened_at", "youth")
    for table in COUNT_TABLES.values():
        table.drop(op.get_bind())
