"""The vault's erasure on real PostgreSQL: what it deletes, what it keeps, the request it tracks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from raccrochage_contracts.events.privacy_v1 import ErasureDone
from raccrochage_reperage.adapters import audit
from raccrochage_reperage.domain.partners import identity_key
from raccrochage_reperage.entrypoints.cli import unit_of_work_factory
from raccrochage_reperage.service_layer import privacy
from raccrochage_reperage.service_layer.unit_of_work import IdentityRead

from .test_live_enrolments import BIRTH, KEY, hand_over

pytestmark = pytest.mark.asyncio(loop_scope="session")
NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
INE, OTHER = "1234567890A", "1234567890B"


async def test_an_erasure_leaves_nothing_of_the_youth_and_completes_with_the_last_answer(
    conn, engine
) -> None:
    erased, kept = await hand_over(conn, INE), await hand_over(conn, OTHER, nom="Durand")
    for who in (erased, kept):
        await conn.execute(
            "INSERT INTO campaign_youth (campaign_id, youth_id, line, outcome) VALUES ('c1', $1, 2, 'identified')",
            who,
        )
        async with engine.begin() as connection:
            await audit.append(connection, IdentityRead("psad", who, "contact_card", "case", True))
    await conn.execute(
        "INSERT INTO partner_enrolment (base, ine, identity_key, date_debut) VALUES "
        "('cfa', $1, 'x', '2026-09-01'), ('ml', NULL, $2, '2026-09-01'), ('ml', NULL, $3, '2026-09-01')",
        INE,
        identity_key("Martin", "Léa", BIRTH),
        identity_key("Durand", "Léa", BIRTH),
    )
    unit_of_work = unit_of_work_factory(engine)

    record = await privacy.request_erasure(
        unit_of_work(), ine=INE, key=KEY, requested_by="dpo-1", services=("psad", "ops"), now=NOW
    )

    assert record.erased == {
        "youth": 1,
        "campaign_youth": 1,
        "handover": 1,
        "partner_enrolment": 2,
        "identity_audit": 1,
    }
    for table in ("youth", "campaign_youth", "handover", "identity_audit_youth"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE youth_id = $1", erased) == 0, table
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE youth_id = $1", kept) == 1, table
    assert await conn.fetchval("SELECT count(*) FROM partner_enrolment") == 1
    # Who read the card, when and why stays, in a chain that still verifies.
    assert await conn.fetchval("SELECT count(*) FROM identity_audit") == 2
    async with engine.connect() as connection:
        assert (await audit.verify(connection)).ok
    [event] = await conn.fetch(
        "SELECT envelope FROM outbox WHERE event_type = 'privacy.erasure.requested.v1'"
    )
    assert erased.encode() in event["envelope"]

    for service in ("psad", "ops", "psad"):
        async with unit_of_work() as uow:
            await privacy.record_answer(
                uow, ErasureDone(request_id=record.request_id, service=service, erased={"case_file": 1}), NOW
            )
            await uow.commit()
    status = await privacy.erasure_status(unit_of_work(), record.request_id)
    assert status.silent == [] and status.completed_at == NOW
    assert [(a.service, a.erased) for a in status.answers] == [
        ("ops", {"case_file": 1}),
        ("psad", {"case_file": 1}),
    ]
    # The request's event named the youth: gone once every service has answered.
    assert (
        await conn.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'privacy.erasure.requested.v1'")
        == 0
    )


async def test_the_last_two_answers_recorded_side_by_side_complete_the_request(conn, engine) -> None:
    # Two replicas record the last two answers at once: the second waits for the first's commit,
    # then reads both, and completes the request.
    await hand_over(conn, INE)
    unit_of_work = unit_of_work_factory(engine)
    record = await privacy.request_erasure(
        unit_of_work(), ine=INE, key=KEY, requested_by="dpo-1", services=("psad", "ops"), now=NOW
    )

    async def answer(uow, service: str) -> None:
        await privacy.record_answer(uow, ErasureDone(request_id=record.request_id, service=service), NOW)

    async with unit_of_work() as first:
        await answer(first, "psad")

        async def second_replica() -> None:
            async with unit_of_work() as uow:
                await answer(uow, "ops")
                await uow.commit()

        second = asyncio.create_task(second_replica())
        await asyncio.sleep(0.2)  # the second records its answer meanwhile, if nothing stops it
        await first.commit()
    await second

    status = await privacy.erasure_status(unit_of_work(), record.request_id)
    assert status.silent == [] and status.completed_at == NOW
