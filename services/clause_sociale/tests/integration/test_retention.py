"""The clause sociale's retention (adapters/retention.py) on real PostgreSQL with a frozen clock:
the day before their period nothing changes; the day after, an old MLDS enrolment is deleted and
a completed mission names no youth (its bilan's PDF gone, the birth date's year kept) while it
still loads with its hours and status for the clause's counts."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_clause_sociale.adapters.repository import SqlBilanDocumentRepository, SqlEnrolmentRepository
from raccrochage_clause_sociale.adapters.retention import rules
from raccrochage_clause_sociale.domain.convention import SignatoryRole
from raccrochage_clause_sociale.service_layer.unit_of_work import Enrolment
from raccrochage_platform.retention import RetentionSettings, apply_retention
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..unit.builders import accepted, completed, drafted, new_mission, signed, with_signed_bilan, youth
from .test_repositories import fresh_clause, load, store

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Earlier than any other test's rows: only this test's are ever due.
ENDED = datetime(2019, 7, 5, 17, tzinfo=UTC)


async def test_old_enrolments_go_and_completed_missions_name_nobody_after_their_period(
    engine: AsyncEngine,
) -> None:
    settings = RetentionSettings()
    youth_id, recent = youth(uuid.uuid4()), youth(uuid.uuid4())
    clause = fresh_clause()
    mission = accepted(new_mission(clause, name=f"m-{uuid.uuid4()}"))
    mission.proposals[-1] = dataclasses.replace(mission.proposals[-1], youth_id=youth_id)
    mission = with_signed_bilan(completed(signed(drafted(mission))))
    await store(engine, clause, mission)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE mission SET status_since = :at, history = jsonb_set(history, "
                "'{convention,parties,youth}', to_jsonb(CAST(:party AS text))) WHERE mission_id = :m"
            ),
            {"at": ENDED, "m": mission.mission_id, "party": f"youth/{youth_id[:16]}"},
        )
        await SqlBilanDocumentRepository(conn).add(mission.mission_id, "b" * 64, b"%PDF", ENDED)
        for who, at in ((youth_id, ENDED), (recent, datetime.now(UTC))):
            await SqlEnrolmentRepository(conn).record(
                Enrolment(who, "paps", date(2019, 1, 7), str(uuid.uuid4()), str(uuid.uuid4()), at)
            )

    async def held() -> tuple:
        async with engine.connect() as conn:
            history = await conn.scalar(
                text("SELECT history::text FROM mission WHERE mission_id = :m"), {"m": mission.mission_id}
            )
            pdfs = await conn.scalar(
                text("SELECT count(*) FROM bilan_document WHERE mission_id = :m"), {"m": mission.mission_id}
            )
            enrolled = await conn.scalars(
                text("SELECT youth_id FROM enrolment WHERE youth_id IN (:a, :b) ORDER BY enrolled_at"),
                {"a": youth_id, "b": recent},
            )
            return youth_id[:16] in history, pdfs, list(enrolled)

    assert await held() == (True, 1, [youth_id, recent])
    period = timedelta(days=settings.clause_mission_days)
    counts = await apply_retention(
        engine, "clause_sociale", rules(settings), ENDED + period - timedelta(days=1)
    )
    assert counts == {"enrolment": 0, "mission": 0} and await held() == (True, 1, [youth_id, recent])

    counts = await apply_retention(
        engine, "clause_sociale", rules(settings), ENDED + period + timedelta(days=1)
    )
    assert counts == {"enrolment": 1, "mission": 1}
    assert await held() == (False, 0, [recent])
    kept = await load(engine, mission.mission_id)  # the aggregate still loads
    assert kept.convention.youth_id == "erased"
    assert kept.convention.youth_birth_date == date(mission.convention.youth_birth_date.year, 1, 1)
    assert kept.convention.parties[SignatoryRole.YOUTH] == "erased"
    assert all(p.youth_id == "erased" for p in kept.proposals)
    assert (kept.hours_done, kept.status) == (mission.hours_done, mission.status)
