"""The MLDS's retention (adapters/retention.py) on real PostgreSQL with a frozen clock: an
exited enrolment is anonymised the day after its period, not the day before, also in its
history; it still loads, holds its site's place count and keeps its exit for the lists."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from raccrochage_mlds.adapters.repository import SqlCandidacyRepository
from raccrochage_mlds.adapters.retention import rules
from raccrochage_platform.retention import RetentionSettings, apply_retention
from sqlalchemy import text

from .test_repositories import full_candidacy, site, state, store

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Earlier than any other test's candidacies: only this test's is ever due.
EXITED = datetime(2019, 6, 28, 16, tzinfo=UTC)


async def test_an_exited_enrolment_is_anonymised_after_its_period_and_still_counts(engine) -> None:
    settings = RetentionSettings()
    dispositif = site(91)
    await store(engine, dispositif)
    candidacy = full_candidacy(dispositif)
    candidacy.youth_id = uuid.uuid4().hex * 2
    async with engine.begin() as conn:
        await SqlCandidacyRepository(conn).add(candidacy)
        await conn.execute(
            text("UPDATE candidacy SET updated_at = :at WHERE candidacy_id = :c"),
            {"at": EXITED, "c": candidacy.candidacy_id},
        )

    async def held() -> tuple:
        async with engine.connect() as conn:
            row = await conn.execute(
                text(
                    "SELECT c.youth_id, c.status, c.history::text LIKE '%' || :y || '%', d.places_taken "
                    "FROM candidacy c JOIN dispositif d USING (dispositif_id) WHERE candidacy_id = :c"
                ),
                {"c": candidacy.candidacy_id, "y": candidacy.youth_id},
            )
            return tuple(row.one())

    before = await held()
    assert before[:2] == (candidacy.youth_id, "exited")
    period = timedelta(days=settings.mlds_candidacy_days)
    counts = await apply_retention(engine, "mlds", rules(settings), EXITED + period - timedelta(days=1))
    assert counts == {"candidacy": 0} and await held() == before

    counts = await apply_retention(engine, "mlds", rules(settings), EXITED + period + timedelta(days=1))
    assert counts == {"candidacy": 1}
    assert await held() == ("erased", "exited", False, before[3])
    async with engine.connect() as conn:
        kept = await SqlCandidacyRepository(conn).get(candidacy.candidacy_id)
    assert kept.youth_id == "erased"
    changed = ("youth_id", "updated_at")
    assert {k: v for k, v in state(kept).items() if k not in changed} == {
        k: v for k, v in state(candidacy).items() if k not in changed
    }
