"""The coordinators' API on the running service: tokens and territories, sites and capacities,
a candidacy from its decision with reasons to its exit, and the errors that say what and where."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nats.aio.client import Client

from .helpers import api, eventually, publish, solution_requested, stream_events, token


async def _candidacy_of(client, request_id: uuid.UUID) -> dict:
    async def found() -> dict | None:
        page = (await client.get("/candidacies")).json()
        return next((c for c in page["candidacies"] if c["psad_request_id"] == str(request_id)), None)

    return await eventually(found, what="the candidacy")


async def test_tokens_roles_and_territories(mlds_service) -> None:
    async with api(mlds_service.url, headers={}) as anonymous:
        assert (await anonymous.get("/dispositifs")).status_code == 401
    async with api(mlds_service.url, token("counsellor")) as counsellor:
        assert (await counsellor.get("/dispositifs")).status_code == 403
    async with api(mlds_service.url, token("ops", None)) as ops:
        sites = (await ops.get("/dispositifs")).json()["dispositifs"]
        assert len(sites) == 51 and {s["departement"] for s in sites} == {"24", "33", "40", "47", "64"}
        assert (await ops.get("/candidacies")).status_code == 403
    async with api(mlds_service.url) as coordinator:
        mine = (await coordinator.get("/dispositifs")).json()["dispositifs"]
        assert mine and {s["departement"] for s in mine} == {"33"}
        answer = await coordinator.get("/dispositifs", params={"departement": "24"})
        assert answer.status_code == 403 and "24" in answer.json()["detail"]
        answer = await coordinator.put("/dispositifs/paps-24-01/capacity", json={"capacity": 3})
        assert answer.status_code == 403 and "paps-24-01" in answer.json()["detail"]
        answer = await coordinator.get(f"/candidacies/{uuid.uuid4()}")
        assert answer.status_code == 404 and "not found" in answer.json()["detail"]
        openapi = (await coordinator.get("/openapi.json")).json()
    assert "bearer" in openapi["components"]["securitySchemes"]
    operation = openapi["paths"]["/candidacies/{candidacy_id}/admit"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert {"401", "403", "404", "409", "422"} <= set(operation["responses"])


async def test_capacity_updates_are_published_and_never_below_the_places_taken(
    nc: Client, mlds_service
) -> None:
    async with api(mlds_service.url) as client:
        site = (await client.put("/dispositifs/paps-33-01/capacity", json={"capacity": 2})).json()
        assert (site["capacity"], site["places_left"]) == (2, 2)
        bad = await client.put("/dispositifs/paps-33-01/capacity", json={"capacity": -1})
        assert bad.status_code == 422 and "capacity" in str(bad.json()["detail"])
        assert (await client.put("/dispositifs/paps-33-99/capacity", json={"capacity": 2})).status_code == 404

    async def capacity_set() -> list[dict]:
        events = await stream_events(nc, "mlds.dispositif.updated.v1")
        return [e for e in events if e["data"]["change"] == "capacity_set"]

    [event] = await eventually(capacity_set, what="the capacity event")
    assert (event["data"]["dispositif_id"], event["data"]["capacity"]) == ("paps-33-01", 2)


async def test_from_a_psad_request_to_an_exit_through_the_api(nc: Client, mlds_service) -> None:
    request = solution_requested("mlds_paps", age=17, wishes=["mlds:paps-33-03"])
    await publish(nc, request)
    async with api(mlds_service.url) as client:
        found = await _candidacy_of(client, request.request_id)
        assert (found["status"], found["eligibility"], found["dispositif_id"]) == (
            "admissible",
            "eligible",
            "paps-33-03",
        )
        cid = found["candidacy_id"]
        detail = (await client.get(f"/candidacies/{cid}")).json()
        assert {r["verdict"] for r in detail["decisions"][0]["results"]} == {"pass"}
        assert detail["next_step"]["code"] == "reception_interview"

        # Out of order: a 409 that says why; an unknown step or role: 422.
        early = await client.post(f"/candidacies/{cid}/enrol", json={"started_on": "2026-12-01"})
        assert early.status_code == 409 and "admissible" in early.json()["detail"]
        wrong = await client.post(
            f"/candidacies/{cid}/steps",
            json={
                "step": "commission",
                "outcome": "favourable",
                "held_on": "2026-11-20",
                "decided_by": "cio",
            },
        )
        assert wrong.status_code == 422 and "commission" in wrong.json()["detail"]
        assert (
            await client.post(
                f"/candidacies/{cid}/steps",
                json={
                    "step": "reception_interview",
                    "outcome": "favourable",
                    "held_on": "2026-11-20",
                    "decided_by": "pope",
                },
            )
        ).status_code == 422

        step = {
            "step": "reception_interview",
            "outcome": "favourable",
            "held_on": "2026-11-20",
            "decided_by": "cio",
        }
        after = (await client.post(f"/candidacies/{cid}/steps", json=step)).json()
        assert after["steps"][0]["decided_by"] == "cio" and after["next_step"] is None
        admitted = (await client.post(f"/candidacies/{cid}/admit", json={})).json()
        assert admitted["status"] == "admitted"
        today = datetime.now(UTC).date().isoformat()
        enrolled = (await client.post(f"/candidacies/{cid}/enrol", json={"started_on": today})).json()
        assert enrolled["status"] == "enrolled"
        left = (
            await client.post(
                f"/candidacies/{cid}/exit",
                json={"destination": "apprenticeship", "exited_on": today},
            )
        ).json()
        assert (left["status"], left["exit"]["destination"]) == ("exited", "apprenticeship")
        page = (
            await client.get("/candidacies", params={"dispositif_id": "paps-33-03", "status": "exited"})
        ).json()
        assert [c["candidacy_id"] for c in page["candidacies"]] == [cid]
        assert (await client.get("/candidacies", params={"dispositif_id": "paps-24-01"})).status_code == 403

    async def accepted() -> list[dict]:
        events = await stream_events(nc, "mlds.enrolment.accepted.v1")
        return [e for e in events if e["data"]["request_id"] == str(request.request_id)]

    [answer] = await eventually(accepted, what="the acceptance")
    assert answer["data"]["dispositif_id"] == "paps-33-03"
    kinds = {e["type"] for e in await stream_events(nc, "mlds.enrolment.>")}
    assert {"mlds.enrolment.started.v1", "mlds.enrolment.exited.v1"} <= kinds


async def test_a_coordinators_candidacy_incomplete_then_decided_with_the_fact_collected(mlds_service) -> None:
    youth = uuid.uuid4().hex * 2
    async with api(mlds_service.url) as client:
        body = {"youth_id": youth, "kind": "dipa", "departement": "33", "facts": {"age": 16}}
        created = await client.post("/candidacies", json=body)
        assert created.status_code == 201, created.text
        candidacy = created.json()
        assert candidacy["eligibility"] == "incomplete"
        assert "months_in_france" in candidacy["missing_facts"]
        facts = {
            "months_in_france": 30,
            "french_level": "none",
            "schooled_in_country_of_origin": True,
            "had_upe2a": False,
        }
        decided = (await client.post(f"/candidacies/{candidacy['candidacy_id']}/facts", json=facts)).json()
        assert decided["eligibility"] == "not_eligible"
        assert decided["failed_rules"] == ["dipa.arrived_less_than_1_year"]
        assert decided["status"] == "refused"
        other = {**body, "departement": "24"}
        assert (await client.post("/candidacies", json=other)).status_code == 403
        typo = await client.post("/candidacies", json={**body, "facts": {"age": 16, "agee": 3}})
        assert typo.status_code == 422 and "agee" in typo.text
