"""Youth counts kept by the projection (youth_count, youth_week), filled from the youth rows
already projected with the projection's own rule; an index on the day a case opened."""

from alembic import op
from raccrochage_ops.adapters.tables import READ_MODELS, youth_count, youth_week
from raccrochage_ops.domain.projection import COUNT_KEY, COUNT_SUMS, WEEK_KEY, Youth, youth_counts

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    youth = READ_MODELS[Youth]
    # 0001 creates the tables of today's metadata: on a database made by it they are there.
    youth_count.create(bind, checkfirst=True)
    youth_week.create(bind, checkfirst=True)
    op.create_index("youth_by_case_opened_at", "youth", ["case_opened_at"], if_not_exists=True)
    if bind.execute(youth_count.select().limit(1)).first() is not None:
        return
    counts: dict[tuple, list[int]] = {}
    weeks: dict[tuple, int] = {}
    for row in bind.execute(youth.select()).mappings():
        row_counts, row_weeks = youth_counts(Youth(**row))
        for key, sums in row_counts.items():
            total = counts.setdefault(key, [0] * len(COUNT_SUMS))
            for i, n in enumerate(sums):
                total[i] += n
        for key, n in row_weeks.items():
            weeks[key] = weeks.get(key, 0) + n
    if counts:
        bind.execute(
            youth_count.insert(),
            [dict(zip(COUNT_KEY + COUNT_SUMS, (*key, *sums), strict=True)) for key, sums in counts.items()],
        )
    if weeks:
        bind.execute(
            youth_week.insert(),
            [dict(zip((*WEEK_KEY, "youths"), (*key, n), strict=True)) for key, n in weeks.items()],
        )


def downgrade() -> None:
    op.drop_index("youth_by_case_opened_at", "youth")
    youth_week.drop(op.get_bind())
    youth_count.drop(op.get_bind())
