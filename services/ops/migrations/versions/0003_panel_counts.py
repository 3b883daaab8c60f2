"""Seats, MLDS and clauses counts kept by the projection (seat_total, candidacy_total,
dispositif_total, clause_total), with the counts an offer keeps of its reservations and a clause
of its missions; filled from the rows already projected with the projection's own rules."""

from alembic import op
from raccrochage_ops.adapters.tables import COUNT_TABLES as ALL_COUNT_TABLES
from raccrochage_ops.adapters.tables import READ_MODELS, insert_counts
from raccrochage_ops.domain.projection import (
    Candidacy,
    Clause,
    Dispositif,
    Mission,
    Offer,
    Reservation,
    Store,
    add_counts,
    derive,
)
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COUNT_TABLES = {
    name: ALL_COUNT_TABLES[name]
    for name in ("seat_total", "candidacy_total", "dispositif_total", "clause_total")
}
# Columns a row keeps of other rows (domain/projection.py, `derive`).
DERIVED = {Offer: ("reserved",), Clause: ("hours_planned", "hours_done")}


def upgrade() -> None:
    bind = op.get_bind()
    # 0001 creates the tables and columns of today's metadata: on a database made by it they are there.
    for kind, columns in DERIVED.items():
        for column in columns:
            bind.execute(
                text(f"ALTER TABLE {kind.TABLE} ADD COLUMN IF NOT EXISTS {column} integer NOT NULL DEFAULT 0")
            )
            bind.execute(text(f"ALTER TABLE {kind.TABLE} ALTER COLUMN {column} DROP DEFAULT"))
    for table in COUNT_TABLES.values():
        table.create(bind, checkfirst=True)
    if any(bind.execute(table.select().limit(1)).first() is not None for table in COUNT_TABLES.values()):
        return

    # The derived columns from zero: every reservation and mission as if the batch that made it
    # came now (nothing loaded before it), moved into its offer or clause by `derive`.
    store = Store()
    for kind, columns in DERIVED.items():
        for row in bind.execute(READ_MODELS[kind].select()).mappings():
            store.put(kind(**{**row, **dict.fromkeys(columns, 0)}))
    for kind in (Reservation, Mission):
        for row in bind.execute(READ_MODELS[kind].select()).mappings():
            made = kind(**row)
            key = getattr(made, kind.KEY)
            store.rows[kind][key] = made
            store.changed[kind].add(key)
    derive(store)
    for kind in DERIVED:
        rows = [store.rows[kind][key].values() for key in sorted(store.changed[kind])]
        if rows:
            table = READ_MODELS[kind]
            statement = pg_insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=[kind.KEY],
                set_={column: statement.excluded[column] for column in DERIVED[kind]},
            )
            bind.execute(statement, rows)

    sums: dict[str, dict[tuple, list[int]]] = {name: {} for name in COUNT_TABLES}
    counted = [*store.rows[Offer].values(), *store.rows[Clause].values()]
    for kind in (Candidacy, Dispositif):
        counted += [kind(**row) for row in bind.execute(READ_MODELS[kind].select()).mappings()]
    for row in counted:
        add_counts(sums, row)
    insert_counts(bind, sums)


def downgrade() -> None:
    bind = op.get_bind()
    for table in COUNT_TABLES.values():
        table.drop(bind)
    for kind, columns in DERIVED.items():
        for column in columns:
            op.drop_column(kind.TABLE, column)
