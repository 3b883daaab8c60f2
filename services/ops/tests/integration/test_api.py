"""Ops' HTTP side on real servers: tokens and territories, no youth_id on any page, pipeline
health, and dead letters replayed from the page (audited, handled once)."""

from __future__ import annotations

import json
import re

import asyncpg
import httpx
from raccrochage_contracts import new_event
from raccrochage_ops.synthetic import campaign, payload
from raccrochage_platform.db import libpq_dsn

from .conftest import caught_up, client, eventually, publish_all, put_dead_letter


async def test_tokens_roles_and_territories(start_ops, nc):
    await publish_all(nc, campaign(60, seed=21))
    service = start_ops()
    await eventually(lambda: caught_up(nc), what="caught up")
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        assert (await anonymous.get("/api/figures")).status_code == 401
        page = await anonymous.get("/")
        assert page.status_code == 401 and 'name="token"' in page.text
        bad = await anonymous.get("/api/figures", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401 and "invalid token" in bad.json()["detail"]
    async with client(service.url, "academy", "33") as academy:
        mine = (await academy.get("/api/figures")).json()
        assert mine["filters"]["departement"] == "33"
        assert (await academy.get("/api/figures", params={"departement": "40"})).status_code == 403
        assert (await academy.get("/api/pipeline")).status_code == 403
        refused = await academy.get("/deadletters")
        assert refused.status_code == 403 and "need an ops token" in refused.text
        assert refused.headers["content-type"].startswith("text/html")
        other = await academy.get("/", params={"departement": "40"})
        assert other.status_code == 403 and "is not the token&#x27;s territory" in other.text
    async with client(service.url, "counsellor", "40") as counsellor:
        assert (await counsellor.get("/api/figures")).json()["filters"]["departement"] == "40"
    async with client(service.url) as ops:
        everything = (await ops.get("/api/figures")).json()
        assert everything["filters"]["departement"] is None
        assert (
            await ops.get("/api/figures", params={"opened_from": "2026-12-01", "opened_to": "2026-11-01"})
        ).status_code == 422
        spec = (await ops.get("/openapi.json")).json()
        assert {"HTTPBearer", "APIKeyCookie"} <= set(spec["components"]["securitySchemes"])
        assert {"401", "403"} <= set(spec["paths"]["/api/figures"]["get"]["responses"])


async def test_no_youth_id_reaches_a_page_or_the_api(start_ops, nc):
    events = campaign(120, seed=22)
    await publish_all(nc, events)
    youth_ids = {data.youth_id for _, data in events if hasattr(data, "youth_id")}
    service = start_ops()
    await eventually(lambda: caught_up(nc), what="caught up")
    bodies = []
    async with client(service.url) as ops:
        for path in (
            "/",
            "/pipeline",
            "/deadletters",
            "/api/figures",
            "/api/pipeline",
            "/api/deadletters",
            "/?departement=33",
        ):
            response = await ops.get(path)
            assert response.status_code == 200, path
            bodies.append(response.text)
    hexes = {h for body in bodies for h in re.findall(r"[0-9a-f]{64}", body)}
    assert not hexes & youth_ids
    assert not hexes  # nothing that even looks like one
    figures = json.loads(bodies[3])
    for name, value in figures["funnel"].items():
        assert value == "< 5" or value == 0 or value >= 5, name


async def test_pipeline_health_from_jetstream_and_the_services_metrics(start_ops, nc):
    await publish_all(nc, campaign(30, seed=23))
    service = start_ops()
    await eventually(lambda: caught_up(nc), what="caught up")
    async with client(service.url) as ops:
        health = (await ops.get("/api/pipeline")).json()
        consumers = {c["consumer"]: c for c in health["consumers"]}
        assert consumers["ops_psad"]["pending"] == 0 and consumers["ops_psad"]["oldest_unacked_seconds"] == 0
        outboxes = {o["service"]: o for o in health["outboxes"]}
        assert outboxes["psad"]["up"] is False  # OPS_SERVICE_URLS points psad at a closed port
        # A producing service with no address is listed too, as down.
        assert set(outboxes) == {"reperage", "psad", "foquale", "mlds", "clause_sociale"}
        assert outboxes["mlds"]["error"] == "no address: not running"
        metrics = (await ops.get("/metrics")).text
    assert 'raccrochage_ops_consumer_pending{consumer="ops_psad",stream="PSAD"} 0.0' in metrics
    assert 'raccrochage_ops_relay_up{service="psad"} 0.0' in metrics


async def test_a_dead_letter_replayed_from_the_page_is_handled_once_and_audited(start_ops, nc, ops_db):
    service = start_ops()
    data = payload("psad.case.opened.v1")
    envelope = new_event(data, source="raccrochage/psad", subject=str(data.case_id))
    reason = "handler failed: OperationalError (after 6 deliveries)"
    seq = await put_dead_letter(nc, envelope, consumer="ops_psad", reason=reason)
    campaign_event = new_event(
        payload("reperage.campaign.ingested.v1"), source="raccrochage/reperage", subject="c"
    )
    harmless = await put_dead_letter(nc, campaign_event, consumer="ops_reperage", reason="handler failed: X")

    async with client(service.url) as ops:
        listing = (await ops.get("/api/deadletters", params={"service": "ops"})).json()
        listed = listing["dead_letters"]
        assert {d["seq"] for d in listed} == {seq, harmless}
        assert listing["truncated"] is False and listing["older_than"] is None
        one = (await ops.get(f"/api/deadletters/{seq}")).json()
        assert one["shown"] is False and "youth_id" in one["why"] and one["payload"] is None
        assert one["headers"] == {"Nats-Msg-Id": str(envelope.id)}
        assert (await ops.get(f"/api/deadletters/{harmless}")).json()["payload"]["data"]["campaign_id"]
        page = await ops.get(f"/deadletters/{seq}")
        assert data.youth_id not in page.text and "payload withheld" in page.text
        by_reason = (
            await ops.get("/api/deadletters", params={"reason": "handler failed: OperationalError"})
        ).json()
        assert [d["seq"] for d in by_reason["dead_letters"]] == [seq]

        replayed = await ops.post(f"/deadletters/{seq}/replay", follow_redirects=False)
        assert replayed.status_code == 303
        assert (await ops.get(f"/api/deadletters/{seq}")).status_code == 404

        async def youth_count() -> int:
            conn = await asyncpg.connect(libpq_dsn(ops_db))
            try:
                return await conn.fetchval("SELECT count(*) FROM youth WHERE youth_id = $1", data.youth_id)
            finally:
                await conn.close()

        await eventually(youth_count, what="the replayed event projected")
        await eventually(lambda: caught_up(nc), what="caught up")
        before = (await ops.get("/api/figures")).json()

        # The same event dead-lettered again and replayed by reason: the inbox skips it.
        again = await put_dead_letter(nc, envelope, consumer="ops_psad", reason=reason)
        response = await ops.post(
            "/api/deadletters/replay", params={"reason": "handler failed: OperationalError"}
        )
        assert response.json() == {"replayed": 1}
        await eventually(lambda: caught_up(nc), what="caught up after the second replay")
        after = (await ops.get("/api/figures")).json()
        assert {k: v for k, v in after.items() if k != "as_of"} == {
            k: v for k, v in before.items() if k != "as_of"
        }
        audit = (await ops.get("/api/replays")).json()["replays"]
        assert [(a["deadletter_seq"], a["replayed_by"], a["role"]) for a in audit] == [
            (again, "astreinte-1", "ops"),
            (seq, "astreinte-1", "ops"),
        ]
        assert (await ops.post("/api/deadletters/999999/replay")).status_code == 404
        # beyond a stream sequence (unsigned 64-bit): the parameter's bound, not a 500
        too_far = "/api/deadletters/43368334115320271592142929920"
        assert (await ops.get(too_far)).status_code == 422
        assert (await ops.post(f"{too_far}/replay")).status_code == 422

    conn = await asyncpg.connect(libpq_dsn(ops_db))
    try:
        handled = await conn.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = 'ops_psad' AND event_id = $1", envelope.id
        )
    finally:
        await conn.close()
    assert handled == 1
