"""The clause sociale's part in a youth's erasure, on real PostgreSQL: the mission stays for the
clause's hours, naming no youth; the enrolment and the signed bilan's PDF go."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, date, datetime

import pytest
from raccrochage_clause_sociale.adapters import privacy
from raccrochage_clause_sociale.adapters.repository import (
    SqlBilanDocumentRepository,
    SqlEnrolmentRepository,
)
from raccrochage_clause_sociale.domain.convention import SignatoryRole
from raccrochage_clause_sociale.service_layer.unit_of_work import Enrolment
from raccrochage_platform.privacy import Erasure
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..unit.builders import STARTS, T0, UAI, accepted, days, new_mission, youth
from .test_repositories import fresh_clause, load, store

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def convention_of_a_youth(engine: AsyncEngine, youth_id: str):
    """A mission of a new clause whose convention names `youth_id` (and this test's youth alone),
    stored."""
    clause = fresh_clause()
    mission = accepted(new_mission(clause, name=f"m-{uuid.uuid4()}"))
    # Accepted under a youth of this test alone: the erasure touches every mission naming it.
    mission.proposals[-1] = dataclasses.replace(mission.proposals[-1], youth_id=youth_id)
    parties = {
        SignatoryRole.COMPANY: "p-company",
        SignatoryRole.MLDS_STRUCTURE: "p-mlds",
        SignatoryRole.YOUTH: f"youth/{youth_id[:16]}",
    }
    mission.draft_convention(
        str(uuid.uuid4()), STARTS, date(2026, 12, 18), UAI, "ref-204", date(2008, 5, 17), parties, days(10)
    )
    await store(engine, clause, mission)
    return mission


async def test_an_erased_youth_leaves_missions_that_name_nobody(engine: AsyncEngine) -> None:
    youth_id, other = youth(uuid.uuid4()), youth(uuid.uuid4())
    mission = await convention_of_a_youth(engine, youth_id)
    async with engine.begin() as conn:
        await SqlBilanDocumentRepository(conn).add(mission.mission_id, "a" * 64, b"%PDF", datetime.now(UTC))
        for who in (youth_id, other):
            await SqlEnrolmentRepository(conn).record(
                Enrolment(who, "paps", date(2026, 9, 7), str(uuid.uuid4()), str(uuid.uuid4()), T0)
            )
        exported = await privacy.export(conn, youth_id)
    assert [e["youth_id"] for e in exported["enrolment"]] == [youth_id]
    assert [m["mission_id"] for m in exported["mission"]] == [mission.mission_id]
    assert [b["document_sha256"] for b in exported["bilan_document"]] == ["a" * 64]
    assert "pdf" not in exported["bilan_document"][0]

    erasure = Erasure()
    async with engine.begin() as conn:
        await privacy.erase(conn, youth_id, erasure)
        history = await conn.scalar(
            text("SELECT history::text FROM mission WHERE mission_id = :m"), {"m": mission.mission_id}
        )
        left = await conn.scalar(text("SELECT count(*) FROM enrolment"))

    assert erasure.erased == {"bilan_document": 1, "enrolment": 1}
    assert erasure.anonymised == {"mission": 1}
    assert youth_id[:16] not in history and left == 1
    kept = await load(engine, mission.mission_id)  # the aggregate still loads
    assert kept.convention.youth_id == "erased" and kept.convention.youth_birth_date == date(2008, 1, 1)
    assert kept.convention.parties[SignatoryRole.YOUTH] == "erased"
    assert kept.hours_done == mission.hours_done and kept.status is mission.status


async def test_a_bilan_delivered_while_the_youth_is_erased_does_not_outlive_the_erasure(
    engine: AsyncEngine,
) -> None:
    youth_id = youth(uuid.uuid4())
    mission = await convention_of_a_youth(engine, youth_id)
    erasure = Erasure()

    async def erase() -> None:
        async with engine.begin() as conn:
            await privacy.erase(conn, youth_id, erasure)

    # The delivery holds its mission (as deliver_bilan does) and has written the PDF, not
    # committed yet, when the erasure starts: the erasure waits for it, then deletes the PDF.
    async with engine.begin() as delivering:
        await delivering.execute(
            text("SELECT 1 FROM mission WHERE mission_id = :m FOR UPDATE"), {"m": mission.mission_id}
        )
        await SqlBilanDocumentRepository(delivering).add(
            mission.mission_id, "b" * 64, b"%PDF", datetime.now(UTC)
        )
        erasing = asyncio.create_task(erase())
        await asyncio.sleep(0.2)  # the erasure's first statements run meanwhile, if nothing stops them
    await erasing

    assert erasure.erased.get("bilan_document") == 1
    async with engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM bilan_document WHERE mission_id = :m"), {"m": mission.mission_id}
        )
    assert left == 0
