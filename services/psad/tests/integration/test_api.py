"""The counsellor's API against the running service: territory-bound tokens, commands, answers."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from nats.aio.client import Client
from raccrochage_contracts.events.foquale_v1 import PlacementConfirmed, PlacementRefused
from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted
from raccrochage_psad.domain.states import CloseReason

from .helpers import api, eventually, fetch, identified, publish, stream_events, token, youth_id


async def _case_id(db: str, n: int) -> str:
    rows = await eventually(
        lambda: fetch(db, "SELECT case_id FROM case_file WHERE youth_id = $1", youth_id(n)),
        what=f"case of youth {n}",
    )
    return str(rows[0]["case_id"])


async def test_a_counsellor_sees_their_territory_only_and_ops_sees_counts_only(
    nc: Client, psad_db: str, psad_service
) -> None:
    await publish(nc, identified(1, departement="33"))
    await publish(nc, identified(2, departement="40"))
    case_33, case_40 = await _case_id(psad_db, 1), await _case_id(psad_db, 2)
    async with api(psad_service.url) as client:
        listed = (await client.get("/cases")).json()
        assert "cases" in listed, listed
        assert [c["case_id"] for c in listed["cases"]] == [case_33]
        assert listed["cases"][0]["next_action"]["what"] == "contact_youth"
        assert listed["cases"][0]["work_list"] == "priority"  # a minor under the obligation de formation
        assert (await client.get(f"/cases/{case_33}")).status_code == 200
        other = await client.get(f"/cases/{case_40}")
        assert other.status_code == 403
        assert "territory 40" in other.json()["detail"]
        assert (
            await client.post(f"/cases/{case_40}/attempts", json={"channel": "phone", "outcome": "reached"})
        ).status_code == 403
        assert (await client.get("/cases", params={"territory": "40"})).status_code == 403
        assert (await client.get("/stats")).json()["territories"].keys() == {"33"}
    async with api(psad_service.url, token("ops", None, "tableau-de-bord")) as ops:
        stats = (await ops.get("/stats")).json()
        assert stats["territories"]["33"]["by_status"] == {"to_contact": 1}
        assert stats["territories"]["40"]["open"] == 1
        assert stats["by_status"] == {"to_contact": 2}
        assert "youth_id" not in str(stats)
        assert (await ops.get(f"/cases/{case_33}")).status_code == 403
        assert (await ops.get("/cases")).status_code == 403
    async with api(psad_service.url, {}) as anonymous:
        assert (await anonymous.get("/stats")).status_code == 401
    async with api(psad_service.url, {"Authorization": "Bearer forged.token.value"}) as forged:
        assert (await forged.get("/stats")).status_code == 401
    openapi = (await api(psad_service.url).get("/openapi.json")).json()
    assert "/cases/{case_id}/attempts" in openapi["paths"]


async def test_from_first_call_to_a_foquale_seat(nc: Client, psad_db: str, psad_service) -> None:
    await publish(nc, identified(5))
    case_id = await _case_id(psad_db, 5)
    async with api(psad_service.url) as client:
        tried = await client.post(
            f"/cases/{case_id}/attempts", json={"channel": "phone", "outcome": "no_answer"}
        )
        assert tried.json()["status"] == "contact_in_progress"
        reached = (
            await client.post(f"/cases/{case_id}/attempts", json={"channel": "sms", "outcome": "reached"})
        ).json()
        assert reached["status"] == "reached"
        assert reached["interview_deadline"] == (datetime.now(UTC).date() + timedelta(days=15)).isoformat()
        refused = await client.post(f"/cases/{case_id}/solutions", json={"kind": "foquale_seat"})
        assert refused.status_code == 409
        assert refused.json()["detail"] == f"case {case_id} is reached: cannot propose_solution"
        when = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        scheduled = await client.post(
            f"/cases/{case_id}/interviews", json={"scheduled_for": when, "with_role": "psy_en"}
        )
        assert scheduled.json()["next_action"]["actor"] == "psy_en"
        assert (
            await client.post(f"/cases/{case_id}/interviews/outcome", json={"outcome": "seen"})
        ).status_code == 200
        proposed = (
            await client.post(
                f"/cases/{case_id}/solutions", json={"kind": "foquale_seat", "wishes": ["bac-pro-commerce"]}
            )
        ).json()
        assert proposed["next_action"] == {
            **proposed["next_action"],
            "what": "await_provider",
            "owner": "foquale",
        }
        bad = await client.post(
            f"/cases/{case_id}/attempts", json={"channel": "pigeon", "outcome": "reached"}
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "channel"]

    requests = await eventually(
        lambda: stream_events(nc, "PSAD", "psad.solution.requested.v1"), what="request"
    )
    request = requests[0]["data"]
    assert (
        request["kind"] == "foquale_seat"
        and request["age"] == 17
        and request["wishes"] == ["bac-pro-commerce"]
    )
    assert set(request) >= {"request_id", "departement", "last_training", "months_since_leaving"}
    # A stale answer (unknown request) changes nothing; a refusal sends the case back; a confirmation places it.
    await publish(
        nc,
        PlacementRefused(
            request_id=uuid.uuid4(),
            case_id=case_id,
            youth_id=youth_id(5),
            decided_at=datetime.now(UTC),
            reason="no_seat",
        ),
    )
    await publish(
        nc,
        PlacementRefused(
            request_id=request["request_id"],
            case_id=case_id,
            youth_id=youth_id(5),
            decided_at=datetime.now(UTC),
            reason="no_seat",
        ),
    )

    async def status(expected: str):
        rows = await fetch(psad_db, "SELECT status FROM case_file WHERE case_id = $1", uuid.UUID(case_id))
        return rows[0]["status"] == expected

    await eventually(lambda: status("interview_held"), what="refusal applied")
    async with api(psad_service.url) as client:
        await client.post(f"/cases/{case_id}/solutions", json={"kind": "mlds_paps"})
    requests = await eventually(lambda: _n_events(nc, "psad.solution.requested.v1", 2), what="second request")
    second = requests[-1]["data"]
    assert second["provider"] == "mlds"
    await publish(
        nc,
        EnrolmentAccepted(
            request_id=second["request_id"],
            case_id=case_id,
            youth_id=youth_id(5),
            decided_at=datetime.now(UTC),
            dispositif="paps",
            starts_on=date(2026, 12, 14),
        ),
    )
    await eventually(lambda: status("in_solution"), what="in solution")
    async with api(psad_service.url) as client:
        detail = (await client.get(f"/cases/{case_id}")).json()
    assert detail["work_list"] == "in_solution"
    assert detail["review_date"] is not None
    assert [s["state"] for s in detail["solutions"]] == ["refused", "confirmed"]
    # A late FOQUALE confirmation of the first request is stale: nothing moves.
    await publish(
        nc,
        PlacementConfirmed(
            request_id=request["request_id"],
            case_id=case_id,
            youth_id=youth_id(5),
            decided_at=datetime.now(UTC),
            seat_id="s1",
            uai="0331234A",
            starts_on=date(2027, 1, 4),
        ),
    )
    changes = await stream_events(nc, "PSAD", "psad.case.status_changed.v1")
    assert [c["data"]["to_status"] for c in changes][-1] == "in_solution"


async def _n_events(nc: Client, subject: str, n: int) -> list:
    events = await stream_events(nc, "PSAD", subject)
    return events if len(events) >= n else []


async def test_transfer_closes_here_and_opens_at_the_destination(
    nc: Client, psad_db: str, psad_service
) -> None:
    await publish(nc, identified(7))
    case_id = await _case_id(psad_db, 7)
    async with api(psad_service.url) as client:
        await client.post(f"/cases/{case_id}/attempts", json={"channel": "phone", "outcome": "moved"})
        moved = (await client.post(f"/cases/{case_id}/transfer", json={"to_psad_id": "psad-40-dax"})).json()
        assert (moved["status"], moved["close_reason"]) == ("closed", "moved")
        assert (await client.post(f"/cases/{case_id}/reopen")).status_code == 409

    async def destination() -> list:
        return await fetch(
            psad_db,
            "SELECT departement, psad_id, status FROM case_file WHERE youth_id = $1 AND status <> 'closed'",
            youth_id(7),
        )

    rows = await eventually(destination, what="the destination's case")
    assert [(r["departement"], r["psad_id"], r["status"]) for r in rows] == [
        ("40", "psad-40-dax", "to_contact")
    ]


async def test_a_transfer_to_an_unknown_psad_is_a_422_naming_the_known_ones(
    nc: Client, psad_db: str, psad_service
) -> None:
    await publish(nc, identified(31))
    case_id = await _case_id(psad_db, 31)
    async with api(psad_service.url) as client:
        for nowhere in ("psad-75-nowhere", "psad-0"):
            refused = await client.post(f"/cases/{case_id}/transfer", json={"to_psad_id": nowhere})
            assert refused.status_code == 422, refused.text
            assert f"no PSAD {nowhere}" in refused.json()["detail"]
            assert "psad-40-mont-de-marsan" in refused.json()["detail"]
        case = (await client.get(f"/cases/{case_id}")).json()
        assert case["status"] == "to_contact" and case["transferred_to"] is None


async def test_close_documents_the_reasons_it_accepts_and_no_other(psad_service) -> None:
    async with api(psad_service.url) as client:
        document = (await client.get("/openapi.json")).json()
    schema = document["components"]["schemas"]
    reason = schema["CloseIn"]["properties"]["reason"]
    documented = set(schema[reason["$ref"].rsplit("/", 1)[-1]]["enum"])
    assert "found_in_partner_base" not in documented  # repérage's to give, with its base
    assert documented == {r.value for r in CloseReason} - {"found_in_partner_base"}
