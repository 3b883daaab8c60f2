"""The vault's side of erasure and subject access, on fakes: what it erases, asks and tracks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from raccrochage_contracts.events.privacy_v1 import ErasureDone
from raccrochage_reperage.service_layer import privacy

from .fakes import FakeReperageUnitOfWork
from .test_service_layer import KEY, hand_over

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
INE = "1234567890A"
SERVICES = ("psad", "ops")


async def erased(uow: FakeReperageUnitOfWork, ine: str = INE):
    return await privacy.request_erasure(
        uow, ine=ine, key=KEY, requested_by="dpo-1", services=SERVICES, now=NOW
    )


async def answer(uow: FakeReperageUnitOfWork, request_id: uuid.UUID, service: str) -> bool:
    async with uow:
        done = await privacy.record_answer(
            uow, ErasureDone(request_id=request_id, service=service, erased={"case_file": 1}), NOW
        )
        await uow.commit()
    return done


async def test_an_erasure_deletes_the_identity_and_asks_every_service_by_youth_id_only() -> None:
    uow = FakeReperageUnitOfWork()
    youth_id = hand_over(uow, INE)
    uow.db.audit.append(("psad", youth_id, "case", True))

    record = await erased(uow)

    assert youth_id not in uow.db.vault and youth_id not in uow.db.handovers
    assert uow.db.audit == [("psad", "erased", "case", True)]
    assert record.identity_found and record.erased == {"youth": 1, "handover": 1, "identity_audit": 1}
    assert record.silent == ["ops", "psad"] and record.completed_at is None
    [event] = uow.committed_events
    assert event.type == "privacy.erasure.requested.v1"
    assert event.model_dump(mode="json")["data"] == {
        "request_id": str(record.request_id),
        "youth_id": youth_id,
    }


async def test_the_request_is_complete_once_every_service_has_answered_once() -> None:
    uow = FakeReperageUnitOfWork()
    hand_over(uow, INE)
    record = await erased(uow)

    assert await answer(uow, record.request_id, "psad")
    assert not await answer(uow, record.request_id, "psad")  # a repeat changes nothing
    assert not await answer(uow, record.request_id, "foquale")  # not asked
    assert not await answer(uow, uuid.uuid4(), "ops")  # no such request
    assert (await privacy.erasure_status(uow, record.request_id)).silent == ["ops"]
    assert await answer(uow, record.request_id, "ops")
    status = await privacy.erasure_status(uow, record.request_id)
    assert status.silent == [] and status.completed_at == NOW
    assert [a.erased for a in status.answers] == [{"case_file": 1}, {"case_file": 1}]


async def test_an_ine_the_vault_does_not_know_is_asked_all_the_same() -> None:
    record = await erased(FakeReperageUnitOfWork(), "99999999999")
    assert not record.identity_found and record.silent == ["ops", "psad"]


async def test_a_malformed_ine_is_refused_and_writes_nothing() -> None:
    uow = FakeReperageUnitOfWork()
    with pytest.raises(privacy.InvalidIne, match="11 letters or digits"):
        await erased(uow, "12-34")
    assert uow.db.erasures == {} and uow.committed_events == []


async def test_an_export_adds_the_vaults_records_to_each_services_and_names_the_silent_ones() -> None:
    uow = FakeReperageUnitOfWork()
    youth_id = hand_over(uow, INE)
    asked = []

    async def ask(service: str, asked_youth: str):
        asked.append((service, asked_youth))
        return (
            {"status": "ok", "records": {"case_file": [{"youth_id": asked_youth}]}}
            if service == "psad"
            else None
        )

    document = await privacy.export_youth(
        uow, ask, ine=INE, key=KEY, services=SERVICES, requested_by="dpo-1", now=NOW
    )

    assert asked == [("psad", youth_id), ("ops", youth_id)]
    assert document["services"]["reperage"]["youth"][0]["nom"] == "Martin"
    assert document["services"]["psad"] == {"case_file": [{"youth_id": youth_id}]}
    assert document["unanswered"] == ["ops"]
    assert uow.db.audit[-1] == ("dpo:dpo-1", youth_id, "subject access export", True)
