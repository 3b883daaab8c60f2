"""The repérage service as a process: a partner enrolment finds a handed-over youth; contact cards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy
from raccrochage_contracts import new_event
from raccrochage_contracts.events.partner_v1 import EnrolmentStarted
from raccrochage_contracts.events.privacy_v1 import ErasureDone
from raccrochage_platform.auth import mint
from raccrochage_platform.db import exclusive, libpq_dsn
from raccrochage_reperage.domain.demo import generate
from raccrochage_reperage.entrypoints.app import ERASURE_SWEEP_JOB
from raccrochage_reperage.entrypoints.cli import unit_of_work_factory
from raccrochage_reperage.service_layer import privacy
from raccrochage_reperage.service_layer.ingest import file_sha256
from raccrochage_rig.testing.processes import service_process

pytestmark = pytest.mark.asyncio(loop_scope="session")
AS_OF = date(2026, 11, 2)


def bearer(role: str = "campaign_manager", territory: str | None = None) -> dict[str, str]:
    from .conftest import TOKEN_KEY

    return {"Authorization": f"Bearer {mint(TOKEN_KEY, role=role, sub='test', territory=territory)}"}


async def handed_over(url: str, count: int) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetch(
            "SELECT y.youth_id, y.ine, y.nom, y.prenom, y.date_naissance, h.psad_id FROM handover h "
            "JOIN youth y USING (youth_id) WHERE h.open ORDER BY y.youth_id LIMIT $1",
            count,
        )
    finally:
        await conn.close()


async def upload(http: str, path: Path, campaign: str) -> dict:
    async with httpx.AsyncClient(timeout=120, headers=bearer()) as client:
        response = await client.post(
            f"{http}/campaigns/{campaign}/siei",
            params={"as_of": AS_OF.isoformat()},
            files={"file": (path.name, path.read_bytes(), "text/csv")},
        )
    assert response.status_code == 200, response.text
    return response.json()


async def test_upload_then_partner_enrolment_finds_the_youth(
    nc: Client, reperage_service: str, reperage_db: str, tmp_path: Path
) -> None:
    files = generate(300, 21, tmp_path, campaign="c1", as_of=AS_OF)
    summary = await upload(reperage_service, files.siei, "c1")
    assert summary["identified"] > 2
    async with httpx.AsyncClient(headers=bearer()) as client:
        status = (await client.get(f"{reperage_service}/campaigns/c1")).json()
        report = (await client.get(f"{reperage_service}/campaigns/c1/rejections")).json()
        missing = await client.get(f"{reperage_service}/campaigns/nope")
    assert status["status"] == "done" and status["summary"]["rows"] == summary["rows"]
    assert len(report["rejections"]) == summary["rejected"]
    assert set(report["rejections"][0]) == {"line", "field", "reason"}
    assert missing.status_code == 404

    by_ine, by_identity = await handed_over(reperage_db, 2)
    js = nc.jetstream()
    found = await js.pull_subscribe(
        "reperage.youth.found.v1",
        durable=None,
        stream="REPERAGE",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
    )

    # A CFA enrols one youth with its INE, a mission locale another without INE, names re-spelled.
    with_ine = EnrolmentStarted(
        ine=by_ine["ine"].lower(),
        nom=by_ine["nom"],
        prenom=by_ine["prenom"],
        date_naissance=by_ine["date_naissance"],
        date_debut=date.today(),
    )
    without_ine = EnrolmentStarted(
        nom=by_identity["nom"].upper().replace("-", " "),
        prenom=by_identity["prenom"].lower(),
        date_naissance=by_identity["date_naissance"],
        date_debut=date.today(),
    )
    replies = []
    for partner_id, payload in (("cfa-gironde", with_ine), ("ml-bordeaux", without_ine)):
        event = new_event(
            payload, source=f"partner/{partner_id}", subject=f"{partner_id}-{uuid.uuid4().hex[:6]}"
        )
        subject = f"partner.{partner_id}.enrolment.started.v1"
        reply = json.loads((await nc.request(subject, event.to_json(), timeout=10)).data)
        again = json.loads((await nc.request(subject, event.to_json(), timeout=10)).data)
        replies.append(reply)
        assert again == {**reply, "duplicate": True}
    assert all(r["status"] == "accepted" and r["duplicate"] is False for r in replies)

    messages = []
    while len(messages) < 2:  # fetch returns as soon as one is there
        messages += await found.fetch(2 - len(messages), timeout=10)
    events = [json.loads(m.data) for m in messages]
    assert {e["data"]["youth_id"] for e in events} == {by_ine["youth_id"], by_identity["youth_id"]}
    assert {e["data"]["base"] for e in events} == {"cfa", "ml"}
    assert all(e["causationid"] for e in events)
    for m in messages:
        await m.ack()
    await found.unsubscribe()


async def test_an_ended_enrolment_no_longer_excludes_the_youth(
    nc: Client, reperage_service: str, reperage_db: str
) -> None:
    from raccrochage_contracts.events.partner_v1 import EnrolmentEnded

    person = {"ine": "9876543210Z", "nom": "Lagarde", "prenom": "Inès", "date_naissance": date(2008, 5, 6)}
    started = EnrolmentStarted(**person, date_debut=date(2026, 9, 1))
    ended = EnrolmentEnded(**person, date_debut=date(2026, 9, 1), date_fin=date(2026, 10, 15))
    for verb, payload in (("started", started), ("ended", ended)):
        event = new_event(payload, source="partner/cfa-gironde", subject="contrat-77")
        reply = json.loads(
            (await nc.request(f"partner.cfa-gironde.enrolment.{verb}.v1", event.to_json(), timeout=10)).data
        )
        assert reply["status"] == "accepted", reply
    conn = await asyncpg.connect(libpq_dsn(reperage_db))
    row = await conn.fetchrow(
        "SELECT base, partner_id, date_debut, date_fin FROM partner_enrolment WHERE ine = $1", "9876543210Z"
    )
    await conn.close()
    assert (row["base"], row["partner_id"], row["date_fin"]) == ("cfa", "cfa-gironde", date(2026, 10, 15))


async def test_partner_mistakes_are_answered_with_what_and_where(nc: Client, reperage_service: str) -> None:
    good = EnrolmentStarted(
        ine="1234567890A",
        nom="Durand",
        prenom="Léa",
        date_naissance=date(2009, 3, 1),
        date_debut=date.today(),
    )
    event = new_event(good, source="partner/cfa-gironde", subject="x")

    async def ask(subject: str, body: bytes) -> dict:
        return json.loads((await nc.request(subject, body, timeout=10)).data)

    forged = await ask("partner.ml-bordeaux.enrolment.started.v1", event.to_json())
    assert forged["status"] == "rejected" and forged["errors"][0]["field"] == "envelope.source"
    unknown = await ask("partner.nobody.enrolment.started.v1", event.to_json())
    assert "not registered" in unknown["errors"][0]["message"]
    broken = json.loads(event.to_json())
    broken["data"]["date_naissance"] = "31/02/2009"
    del broken["data"]["nom"]
    answer = await ask("partner.cfa-gironde.enrolment.started.v1", json.dumps(broken).encode())
    assert {e["field"] for e in answer["errors"]} == {"data.nom", "data.date_naissance"}
    assert "31/02" not in json.dumps(answer)
    bad_ine = json.loads(event.to_json())
    bad_ine["data"]["ine"] = "12"
    answer = await ask("partner.cfa-gironde.enrolment.started.v1", json.dumps(bad_ine).encode())
    assert answer["errors"] == [{"field": "data.ine", "message": "not 11 letters or digits"}]


async def test_contact_card_for_allowed_callers_only_and_audited(
    nc: Client, reperage_service: str, reperage_db: str, tmp_path: Path
) -> None:
    files = generate(200, 4, tmp_path, campaign="c1", as_of=AS_OF)
    await upload(reperage_service, files.siei, "c1")
    (youth,) = await handed_over(reperage_db, 1)
    person = {"role": "counsellor", "sub": "conseillere-33", "territory": "33"}
    request = json.dumps(
        {"youth_id": youth["youth_id"], "purpose": "first call", "on_behalf": person}
    ).encode()
    card = json.loads((await nc.request("rpc.reperage.contact_card.psad", request, timeout=10)).data)
    assert card["status"] == "ok" and card["card"]["nom"] == youth["nom"]
    refused = json.loads((await nc.request("rpc.reperage.contact_card.foquale", request, timeout=10)).data)
    assert refused["status"] == "refused"
    conn = await asyncpg.connect(libpq_dsn(reperage_db))
    audit = await conn.fetch(
        "SELECT caller, role, sub, territory, what, purpose, granted, youth_id "
        "FROM identity_audit JOIN identity_audit_youth USING (seq) ORDER BY seq"
    )
    await conn.close()
    assert [(a["caller"], a["granted"]) for a in audit] == [("psad", True), ("foquale", False)]
    assert tuple(audit[0].values()) == (
        "psad",
        "counsellor",
        "conseillere-33",
        "33",
        "contact_card",
        "first call",
        True,
        youth["youth_id"],
    )


async def test_no_identity_reaches_the_service_log(
    nc: Client, reperage_service: str, reperage_db: str, tmp_path: Path
) -> None:
    """Canary identities go through upload, partner enrolments and contact cards; the log has none."""
    files = generate(200, 9, tmp_path, campaign="c1", as_of=AS_OF)
    await upload(reperage_service, files.siei, "c1")
    people = await handed_over(reperage_db, 20)
    for person in people[:5]:
        request = json.dumps({"youth_id": person["youth_id"], "purpose": "canary"}).encode()
        await nc.request("rpc.reperage.contact_card.psad", request, timeout=10)
        enrolment = EnrolmentStarted(
            ine=person["ine"],
            nom=person["nom"],
            prenom=person["prenom"],
            date_naissance=person["date_naissance"],
            date_debut=date.today(),
        )
        event = new_event(enrolment, source="partner/cfa-gironde", subject="canary")
        await nc.request("partner.cfa-gironde.enrolment.started.v1", event.to_json(), timeout=10)
    conn = await asyncpg.connect(libpq_dsn(reperage_db))
    vault = await conn.fetch("SELECT ine, telephone, courriel, adresse, date_naissance FROM youth")
    await conn.close()
    log = (tmp_path / "reperage.log").read_text()
    assert "contact_card_given" in log and "partner_enrolment_started" in log
    assert '"event_loop": "uvloop"' in log  # the service process runs on uvloop (raccrochage_platform.loop)
    for person in vault:
        for value in (person["ine"], person["telephone"], person["courriel"], person["adresse"]):
            assert not value or value not in log
        assert person["date_naissance"].strftime("%d/%m/%Y") not in log


async def test_a_case_the_psad_closes_ends_the_handover_and_a_transfer_moves_it(
    nc: Client, reperage_service: str, reperage_db: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from raccrochage_contracts import nats_subject
    from raccrochage_contracts.events.psad_v1 import CaseClosed, CaseTransferred

    files = generate(300, 22, tmp_path, campaign="c1", as_of=AS_OF)
    await upload(reperage_service, files.siei, "c1")
    refused, moved, unreachable = await handed_over(reperage_db, 3)
    now = datetime.now(UTC)
    events = [
        CaseClosed(
            case_id=uuid.uuid4(),
            youth_id=refused["youth_id"],
            psad_id=refused["psad_id"],
            reason="refuses_support",
            closed_at=now,
        ),
        CaseTransferred(
            case_id=uuid.uuid4(),
            youth_id=moved["youth_id"],
            psad_id=moved["psad_id"],
            to_psad_id="psad-40-mont-de-marsan",
            departement="40",
            age=19,
            transferred_at=now,
        ),
        CaseClosed(
            case_id=uuid.uuid4(),
            youth_id=moved["youth_id"],
            psad_id=moved["psad_id"],
            reason="moved",
            closed_at=now,
        ),
    ]
    for payload in events:
        event = new_event(payload, source="raccrochage/psad", subject=str(payload.case_id))
        await nc.jetstream().publish(
            nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
        )

    async def handovers() -> dict:
        conn = await asyncpg.connect(libpq_dsn(reperage_db))
        try:
            rows = await conn.fetch(
                "SELECT youth_id, open, psad_id, close_reason FROM handover WHERE youth_id = ANY($1)",
                [refused["youth_id"], moved["youth_id"], unreachable["youth_id"]],
            )
        finally:
            await conn.close()
        return {row["youth_id"]: (row["open"], row["psad_id"], row["close_reason"]) for row in rows}

    import asyncio

    expected = {
        refused["youth_id"]: (False, refused["psad_id"], "refuses_support"),
        moved["youth_id"]: (True, "psad-40-mont-de-marsan", None),  # still someone's case
        unreachable["youth_id"]: (True, unreachable["psad_id"], None),
    }
    for _ in range(100):
        if await handovers() == expected:
            break
        await asyncio.sleep(0.1)
    assert await handovers() == expected


async def test_the_campaign_api_takes_a_campaign_managers_token_and_bounded_pages(
    reperage_service: str,
) -> None:
    async with httpx.AsyncClient(base_url=reperage_service) as client:
        anonymous = await client.get("/campaigns/c1")
        counsellor = await client.get("/campaigns/c1", headers=bearer("counsellor", "33"))
        ops_report = await client.get("/campaigns/c1/rejections", headers=bearer("ops"))
        pages = [
            await client.get("/campaigns/c1/rejections", params=params, headers=bearer())
            for params in ({"limit": -1}, {"limit": 0}, {"after_line": 10**30}, {"after_line": -1})
        ]
        document = (await client.get("/openapi.json")).json()
    assert (anonymous.status_code, counsellor.status_code, ops_report.status_code) == (401, 403, 403)
    assert [page.status_code for page in pages] == [422] * 4
    assert {issue["loc"][-1] for page in pages for issue in page.json()["detail"]} == {"limit", "after_line"}
    limit = next(p for p in document["paths"]["/campaigns/{campaign_id}/rejections"]["get"]["parameters"])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert limit["name"] == "campaign_id" and limit["schema"]["maxLength"] == 64


async def test_a_refused_upload_leaves_the_campaign_id_for_the_corrected_file(
    reperage_service: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    async with httpx.AsyncClient(base_url=reperage_service, headers=bearer(), timeout=60) as client:
        refused = await client.post(
            "/campaigns/c-retry/siei",
            params={"as_of": AS_OF.isoformat()},
            files={"file": ("empty.csv", b"", "text/csv")},
        )
    assert refused.status_code == 422, refused.text
    files = generate(100, 5, tmp_path, campaign="c-retry", as_of=AS_OF)
    assert (await upload(reperage_service, files.siei, "c-retry"))["rows"] > 0


async def test_an_ingest_that_died_is_reported_stalled_and_resumes_from_the_same_file(
    reperage_env: dict[str, str], reperage_db: str, reperage_stream: str, tmp_path: Path
) -> None:
    files = generate(100, 5, tmp_path, campaign="c-died", as_of=AS_OF)
    # What an HTTP ingest killed midway leaves: the campaign ingesting, its last chunk committed
    # an hour ago.
    conn = await asyncpg.connect(libpq_dsn(reperage_db))
    try:
        await conn.execute(
            "INSERT INTO campaign (campaign_id, as_of, file_sha256, status, progressed_at) "
            "VALUES ('c-died', $1, $2, 'ingesting', now() - interval '1 hour')",
            AS_OF,
            file_sha256(files.siei),
        )
    finally:
        await conn.close()
    env = {**reperage_env, "REPERAGE_INGEST_STALL_SECONDS": "600", "REPERAGE_STALL_CHECK_SECONDS": "0.2"}
    with service_process("reperage", env, tmp_path) as service:
        async with httpx.AsyncClient(base_url=service.url, headers=bearer(), timeout=60) as client:
            stalled = (await client.get("/campaigns/c-died")).json()

            async def gauge() -> str:
                text = (await client.get("/metrics")).text
                return next(line for line in text.splitlines() if line.startswith(STALLED_GAUGE))

            for _ in range(200):
                if (alerted := await gauge()) != f"{STALLED_GAUGE} 0.0":
                    break
                await asyncio.sleep(0.05)
            resumed = await upload(service.url, files.siei, "c-died")
            done = (await client.get("/campaigns/c-died")).json()
            for _ in range(200):
                if (cleared := await gauge()) == f"{STALLED_GAUGE} 0.0":
                    break
                await asyncio.sleep(0.05)
        log = service.log_text()
    assert (stalled["status"], stalled["stalled"]) == ("ingesting", True)
    assert "send the same file again under the same campaign id" in stalled["retry"]
    assert alerted == f"{STALLED_GAUGE} 1.0"
    assert '"campaign_ingest_stalled"' in log and "c-died" in log
    assert resumed["rows"] > 0
    assert (done["status"], done["stalled"], done["retry"]) == ("done", False, None)
    assert cleared == f"{STALLED_GAUGE} 0.0"


STALLED_GAUGE = "raccrochage_reperage_campaigns_stalled"


async def test_a_replica_sweeps_an_erasure_only_once_the_one_sweeping_is_done(
    reperage_env: dict[str, str], reperage_stream: str, engine, conn, tmp_path: Path
) -> None:
    from .test_live_enrolments import KEY, hand_over

    await hand_over(conn, "1234567890A")
    unit_of_work = unit_of_work_factory(engine)
    now = datetime.now(UTC)
    record = await privacy.request_erasure(
        unit_of_work(), ine="1234567890A", key=KEY, requested_by="dpo-1", services=("psad",), now=now
    )
    async with unit_of_work() as uow:
        await privacy.record_answer(uow, ErasureDone(request_id=record.request_id, service="psad"), now)
        await uow.commit()

    async def swept_at() -> datetime | None:
        return (await privacy.erasure_status(unit_of_work(), record.request_id)).swept_at

    env = {**reperage_env, "REPERAGE_ERASURE_SWEEP_SECONDS": "0.2"}
    async with contextlib.AsyncExitStack() as another_replica:
        assert await another_replica.enter_async_context(exclusive(engine, ERASURE_SWEEP_JOB))
        with service_process("reperage", env, tmp_path):
            await asyncio.sleep(3)  # the service tries at start, then every second
            assert await swept_at() is None
            await another_replica.aclose()  # that replica's sweep ends

            for _ in range(300):
                if await swept_at() is not None:
                    break
                await asyncio.sleep(0.1)
            assert await swept_at() is not None
