"""Ops' retention (adapters/retention.py) on real PostgreSQL with a frozen clock: the day before
their period nothing changes; the day after, closed youths' funnel rows move to keys of their own
and exited candidacies lose their youth_id, and every figure (the funnel's, the MLDS panel's, the
count tables against a recount of the rows) stays what it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from raccrochage_ops.adapters.repository import Filters, ProjectionRepository
from raccrochage_ops.adapters.retention import rules
from raccrochage_ops.adapters.tables import READ_MODELS
from raccrochage_ops.domain.projection import Candidacy
from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
from raccrochage_ops.synthetic import DEPARTEMENTS, campaign, payload
from raccrochage_platform.db import libpq_dsn, make_engine
from raccrochage_platform.retention import RetentionSettings, apply_retention
from sqlalchemy import func, select, text

from .test_counts import counted

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Earlier than any other test's campaigns: only this test's rows are ever due.
START = datetime(2019, 3, 4, 9, tzinfo=UTC)
CAMPAIGN = "2019-03-retention"


async def test_closed_youths_are_anonymised_after_their_period_and_every_figure_still_counts(ops_db) -> None:
    settings = RetentionSettings()
    engine = make_engine(ops_db, application_name="test-retention")
    try:
        async with SqlOpsUnitOfWork(engine, source="raccrochage/ops") as uow:
            for event_type, data in campaign(60, seed=2019, campaign_id=CAMPAIGN, start=START):
                uow.project(event_type, data)
                if event_type == "mlds.candidacy.received.v1":  # enrolled ten days, then left
                    for then, days in (("started", 10), ("exited", 20)):
                        on = (START + timedelta(days=days)).date().isoformat()
                        fields = dict(candidacy_id=str(data.candidacy_id), youth_id=data.youth_id)
                        fields.update(
                            departement=data.departement,
                            started_on=(START + timedelta(days=10)).date().isoformat(),
                        )
                        if then == "exited":
                            fields["exited_on"] = on
                        uow.project(
                            f"mlds.enrolment.{then}.v1", payload(f"mlds.enrolment.{then}.v1", **fields)
                        )
            await uow.commit()

        async def figures() -> tuple:
            async with engine.connect() as conn:
                repo = ProjectionRepository(conn)
                funnel = await repo.funnel(Filters(campaign_id=CAMPAIGN), START + timedelta(days=90))
                panels = [await repo.mlds(dep) for dep in DEPARTEMENTS]
            return funnel, panels

        async def named() -> tuple[int, int]:
            async with engine.connect() as conn:
                youths = await conn.scalar(
                    text(
                        "SELECT count(*) FROM youth WHERE campaign_id = :c AND youth_id NOT LIKE 'erased-%'"
                    ),
                    {"c": CAMPAIGN},
                )
                candidacy = READ_MODELS[Candidacy]
                candidacies = await conn.scalar(
                    select(func.count()).where(
                        candidacy.c.youth_id.is_not(None), candidacy.c.exited_on.is_not(None)
                    )
                )
            return youths, candidacies

        async with engine.connect() as conn:
            last_closed = await conn.scalar(
                text("SELECT max(closed_at) FROM youth WHERE campaign_id = :c"), {"c": CAMPAIGN}
            )
            first_closed = await conn.scalar(
                text("SELECT min(closed_at) FROM youth WHERE campaign_id = :c"), {"c": CAMPAIGN}
            )
        assert first_closed is not None and last_closed < START + timedelta(days=200)
        before, held = await figures(), await named()
        period = timedelta(days=settings.ops_youth_days)

        counts = await apply_retention(
            engine, "ops", rules(settings), first_closed + period - timedelta(days=1)
        )
        assert counts == {"youth": 0, "candidacy": 0} and await named() == held

        counts = await apply_retention(
            engine, "ops", rules(settings), last_closed + period + timedelta(days=1)
        )
        assert counts["youth"] > 0 and counts["candidacy"] > 0
        youths, candidacies = await named()
        assert youths == held[0] - counts["youth"] and candidacies == held[1] - counts["candidacy"]
        assert await figures() == before
        for name, (kept, recount) in (await counted(libpq_dsn(ops_db))).items():
            assert kept == recount, name
    finally:
        await engine.dispose()
