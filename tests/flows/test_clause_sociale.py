"""Across the bus, on real NATS and PostgreSQL: a youth the MLDS enrolled (mlds.enrolment.accepted.v1)
goes through clause_sociale's API from a buyer's clause to the bilan croisé the buyer downloads,
with the youth's identity asked from the repérage vault by request/reply and clause.* events out.

The vault here answers on repérage's subject with one synthetic card: filling the real vault
takes a SIEI campaign (tests/flows/test_demo_rig.py runs one)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
import raccrochage_clause_sociale
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from pypdf import PdfReader
from raccrochage_contracts import nats_subject, new_event
from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted
from raccrochage_platform.auth import mint
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import ServiceProcess, service_process
from raccrochage_rig.testing.servers import Servers

MIGRATIONS = Path(raccrochage_clause_sociale.__file__).resolve().parents[2] / "migrations"
KEY = "f" * 64
YOUTH = hashlib.sha256(b"flow-youth-clause").hexdigest()
NAME = ("Léa", "Marchetti")


def headers(role: str, sub: str, **binding: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(KEY, role=role, sub=sub, **binding)}"}


BUYER = headers("buyer", "acheteuse-1", organisation="bordeaux-metropole")
COMPANY = headers("company", "ref-204", organisation="docks-logistique")
TUTOR = headers("mlds_tutor", "tuteur-a", territory="33")
RIVAL = headers("mlds_tutor", "tuteur-b", territory="33")


@pytest_asyncio.fixture(loop_scope="session")
async def flow_db(servers: Servers) -> str:
    url = await servers.create_database("clause_flow")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def flow_topology(nc: Client, deadletter_stream: str) -> None:
    js = nc.jetstream()
    topology = load_topology()
    for consumer in topology.consumers_of("clause_sociale"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, topology, services={"clause_sociale"})
    for stream in ("MLDS", "CLAUSE"):
        await js.purge_stream(stream)


@pytest.fixture
def clause_service(
    servers: Servers, flow_db: str, flow_topology: None, tmp_path: Path
) -> Iterator[ServiceProcess]:
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="clause_sociale",
        NATS_URL=servers.nats_url,
        DATABASE_URL=flow_db,
        RACCROCHAGE_TOKEN_KEY=KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
    )
    with service_process("clause_sociale", env, tmp_path) as process:
        yield process


async def _eventually(check, what: str, timeout: float = 30):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return result


async def _events(nc: Client, subject: str) -> list[dict]:
    sub = await nc.jetstream().subscribe(subject, stream="CLAUSE", ordered_consumer=True)
    out = []
    try:
        while True:
            try:
                out.append(json.loads((await sub.next_msg(timeout=0.5)).data))
            except Exception:
                return out
    finally:
        await sub.unsubscribe()


async def test_from_an_mlds_enrolment_to_the_bilan_croise_the_buyer_downloads(
    nc: Client, flow_db: str, clause_service: ServiceProcess
) -> None:
    today = datetime.now(UTC).date()
    # A minor on the convention's start: 17 and a month.
    birth = date(today.year - 17, today.month, 1) - timedelta(days=31)
    asked: list[str] = []

    async def vault(msg) -> None:
        request = json.loads(msg.data)
        person = request["on_behalf"]  # for the vault's audit: who the service asks for
        asked.append(f"{request['purpose']} ({person['role']}, {person['sub']}, {person['territory']})")
        card = {"youth_id": YOUTH, "prenom": NAME[0], "nom": NAME[1], "date_naissance": birth.isoformat()}
        known = request["youth_id"] == YOUTH
        await msg.respond(
            json.dumps({"status": "ok", "card": card} if known else {"status": "not_found"}).encode()
        )

    responder = await nc.subscribe("rpc.reperage.contact_card.clause_sociale", cb=vault)

    # The MLDS enrolled the youth: the event comes through the bus.
    accepted = EnrolmentAccepted(
        request_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        youth_id=YOUTH,
        decided_at=datetime.now(UTC),
        dispositif="clause_sociale",
        starts_on=today,
    )
    event = new_event(accepted, source="raccrochage/mlds", subject=str(accepted.case_id))
    await nc.jetstream().publish(
        nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )

    async def enrolled() -> bool:
        conn = await asyncpg.connect(libpq_dsn(flow_db))
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM enrolment WHERE youth_id = $1", YOUTH))
        finally:
            await conn.close()

    await _eventually(enrolled, "the enrolment in clause_sociale's database")

    base = clause_service.url
    async with (
        httpx.AsyncClient(base_url=base, headers=BUYER, timeout=10) as buyer,
        httpx.AsyncClient(base_url=base, headers=COMPANY, timeout=10) as company,
        httpx.AsyncClient(base_url=base, headers=TUTOR, timeout=10) as tutor,
        httpx.AsyncClient(base_url=base, headers=RIVAL, timeout=10) as rival,
    ):
        clause = await buyer.post(
            "/clauses",
            json={
                "organisation": "Bordeaux Métropole",
                "buyer_type": "collectivite_territoriale",
                "contact_role": "acheteur",
                "departement": "33",
                "company_id": "docks-logistique",
                "contract_object": "Logistique des entrepôts municipaux",
                "notification_date": today.isoformat(),
                "firm_period_ends_on": (today + timedelta(days=730)).isoformat(),
                "firm_amount_eur": 120_000,
                "ends_on": (today + timedelta(days=1460)).isoformat(),
            },
        )
        assert clause.status_code == 201, clause.text
        clause_id = clause.json()["clause_id"]
        assert clause.json()["hours_required"] == 300
        site = {"address": "5 quai de Brazza", "postcode": "33100", "city": "Bordeaux", "departement": "33"}
        missions = []
        for hours in (150, 150):
            declared = await company.post(
                f"/clauses/{clause_id}/missions",
                json={
                    "activity_domain": "logistique",
                    "tasks": ["Préparation de commandes"],
                    "site": site,
                    "referent_id": "ref-204",
                    "hours": hours,
                },
            )
            assert declared.status_code == 201, declared.text
            missions.append(declared.json()["mission_id"])
        first, second = missions

        # Two tutors race for the same mission: exactly one wins.
        races = await asyncio.gather(
            tutor.post(f"/missions/{first}/reservation"), rival.post(f"/missions/{first}/reservation")
        )
        assert sorted(r.status_code for r in races) == [200, 409]
        winner, loser = (tutor, rival) if races[0].status_code == 200 else (rival, tutor)
        # The loser is told whichever way it lost: beaten in the same instant, or after the
        # winner's commit, when the mission is already reserved.
        refusal = next(r for r in races if r.status_code == 409).json()["detail"]
        assert "reserved by another tutor" in refusal or "is reservee: cannot reserve" in refusal

        profile = {
            "age": 17,
            "level": "2nde",
            "wishes": ["logistique"],
            "available_from": today.isoformat(),
            "hours_per_week": 30,
        }
        refused = await winner.post(
            f"/missions/{first}/proposals", json={"youth_id": "0" * 64, "profile": profile}
        )
        assert refused.status_code == 422 and "not enrolled" in refused.json()["detail"]
        proposed = await winner.post(
            f"/missions/{first}/proposals", json={"youth_id": YOUTH, "profile": profile}
        )
        assert proposed.status_code == 201, proposed.text
        proposal = proposed.json()["pending_proposal"]
        assert proposal["answer_due_at"].startswith((today + timedelta(days=15)).isoformat())
        # One youth per company at a time: the other mission's proposal waits for this answer.
        assert (await loser.post(f"/missions/{second}/reservation")).status_code == 200
        busy = await loser.post(f"/missions/{second}/proposals", json={"youth_id": YOUTH, "profile": profile})
        assert busy.status_code == 409 and "one youth per company" in busy.json()["detail"]

        seen = (await company.get(f"/missions/{first}")).json()
        assert (
            seen["pending_proposal"]["profile"]["level"] == "2nde"
            and "youth_id" not in seen["pending_proposal"]
        )
        answered = await company.post(
            f"/missions/{first}/proposals/{proposal['proposal_id']}/answer", json={"accepted": True}
        )
        assert answered.json()["status"] == "en_preparation", answered.text

        convention = {
            "starts_on": today.isoformat(),
            "ends_on": (today + timedelta(days=27)).isoformat(),
            "mlds_structure_uai": "0330012J",
            "company_tutor_id": "ref-204",
        }
        minor = await winner.post(f"/missions/{first}/convention", json=convention)
        assert minor.status_code == 422 and "legal guardian must be a party" in minor.json()["detail"]
        drafted = await winner.post(
            f"/missions/{first}/convention", json={**convention, "legal_guardian_ref": "dossier-77-rl1"}
        )
        assert drafted.status_code == 201, drafted.text
        assert drafted.json()["convention"]["required_roles"] == [
            "company",
            "mlds_structure",
            "youth",
            "legal_guardian",
        ]
        assert (
            await company.post(f"/missions/{first}/convention/signatures", json={"role": "youth"})
        ).status_code == 403
        assert (
            await company.post(f"/missions/{first}/convention/signatures", json={"role": "company"})
        ).status_code == 200
        for role in ("mlds_structure", "youth", "legal_guardian"):
            signed = await winner.post(f"/missions/{first}/convention/signatures", json={"role": role})
            assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "en_realisation"

        hours = await company.put(
            f"/missions/{first}/hours", json={"week_of": today.isoformat(), "hours": 30}
        )
        assert hours.status_code == 200 and hours.json()["hours_done"] == 30, hours.text
        proof = (await buyer.get(f"/clauses/{clause_id}")).json()
        assert (proof["hours_required"], proof["hours_planned"], proof["hours_done"]) == (300, 150, 30)

        done = await winner.post(f"/missions/{first}/completion", json={"outcome": "apprenticeship"})
        assert done.json()["status"] == "realisee", done.text
        bilan = {
            "skills": [
                {"skill": "Préparer une commande", "level": "acquired"},
                {"skill": "Gérer un inventaire", "level": "in_progress"},
            ],
            "savoir_etre": "Ponctuelle, à l'écoute",
            "savoir_faire": "Utilise le lecteur de codes",
            "next_steps": "Contrat d'apprentissage en logistique",
        }
        assert (await company.put(f"/missions/{first}/bilan", json=bilan)).status_code == 200
        assert (
            await company.post(f"/missions/{first}/bilan/signatures", json={"role": "company_referent"})
        ).status_code == 200
        for role in ("mlds_tutor", "youth"):
            assert (
                await winner.post(f"/missions/{first}/bilan/signatures", json={"role": role})
            ).status_code == 200
        delivered = await winner.post(f"/missions/{first}/bilan/delivery")
        assert delivered.status_code == 200, delivered.text
        digest = delivered.json()["bilan"]["document_sha256"]

        pdf = await buyer.get(f"/missions/{first}/bilan.pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert hashlib.sha256(pdf.content).hexdigest() == digest
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
        assert f"{NAME[0]} {NAME[1]}" in text and "Bilan croisé" in text and "Préparer une commande" in text

    await responder.unsubscribe()
    who = "tuteur-a" if winner is tutor else "tuteur-b"
    assert asked == [f"convention of mission {first} by {who} (mlds_tutor, {who}, 33)"] * 2 + [
        f"bilan croisé of mission {first} by {who} (mlds_tutor, {who}, 33)"
    ]
    completed = await _eventually(
        lambda: _events(nc, "clause.mission.completed.v1"), "clause.mission.completed.v1"
    )
    assert [(e["data"]["youth_id"], e["data"]["outcome"]) for e in completed] == [(YOUTH, "apprenticeship")]
    delivered_events = await _eventually(
        lambda: _events(nc, "clause.bilan.delivered.v1"), "clause.bilan.delivered.v1"
    )
    assert [e["data"]["document_sha256"] for e in delivered_events] == [digest]
    everything = json.dumps(await _events(nc, "clause.>"))
    log = clause_service.log_text()
    for secret in (NAME[1], birth.isoformat()):
        assert secret not in everything and secret not in log
