"""Canaries, on real NATS and PostgreSQL: known, distinctive identities go through the demo's
path (a partner's feed, an SIEI file, PSAD cases, a counsellor reading a contact card, ops'
projections) and none of them may come out anywhere but the repérage vault: not in any stream's
messages (dead letters included), not in any service's log (its stdout and stderr), not in ops'
or PSAD's database.

Services run as their own processes, started one after the other (as the other flow tests do);
every wait is for a count (cases opened, consumers with nothing pending), never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_contracts import new_event
from raccrochage_contracts.events.partner_v1 import EnrolmentStarted
from raccrochage_platform.auth import mint
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.topology import declare, load_topology
from raccrochage_reperage.domain.demo import generate
from raccrochage_rig.testing.flows import database_traces, migrated_databases, service_processes
from raccrochage_rig.testing.processes import ServiceProcess
from raccrochage_rig.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")
SERVICES = ("reperage", "psad", "ops")
TOKEN_KEY = "c" * 64
AS_OF = date(2026, 11, 2)
WAIT = 240  # seconds: generous, for a loaded machine; every wait ends as soon as its count is met


@dataclass(frozen=True)
class Canary:
    ine: str
    nom: str
    prenom: str
    birth: date
    telephone: str
    courriel: str
    adresse: str

    def needles(self) -> list[str]:
        return [
            self.ine,
            self.nom,
            self.prenom,
            self.telephone,
            self.telephone.replace(" ", ""),
            self.courriel,
            self.adresse,
            self.birth.strftime("%d/%m/%Y"),
            self.birth.isoformat(),
        ]


# Handed over to PSAD (its card read by a counsellor), found later by a partner, found by a
# partner before the campaign, and a partner's enrolment of nobody in the campaign.
CANARIES = [
    Canary(
        f"09{n}77{n}55{n}1K",
        f"Zorglubienne{n}",
        f"Quillonette{n}",
        date(2009, 2, 10 + n),
        f"06 13 57 9{n} 2{n}",
        f"quillonette{n}.canari@kanaryx.invalid",
        f"{n} impasse du Canari Jaune",
    )
    for n in range(4)
]
IN_SIEI, FOUND_LATER, FOUND_BEFORE, PARTNER_ONLY = CANARIES


@pytest_asyncio.fixture(loop_scope="session")
async def topology(nc: Client, deadletter_stream: str) -> None:
    """Fresh consumers for the three services and empty streams: the waits below count what
    this test's events leave pending."""
    js = nc.jetstream()
    definitions = load_topology()
    for service in SERVICES:
        for consumer in definitions.consumers_of(service):
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, definitions, services=set(SERVICES))
    for stream in definitions.streams:
        await js.purge_stream(stream)


@pytest_asyncio.fixture(loop_scope="session")
async def databases(servers: Servers) -> dict[str, str]:
    return await migrated_databases(servers, SERVICES)


@pytest.fixture
def running(
    servers: Servers, databases: dict[str, str], topology: None, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    with service_processes(
        servers.nats_url,
        databases,
        tmp_path,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_YOUTH_ID_KEY="y" * 64,
    ) as processes:
        yield processes


def bearer(role: str, territory: str | None = None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {mint(TOKEN_KEY, role=role, sub=f'canary-{role}', territory=territory)}"
    }


async def fetch(url: str, query: str, *arguments) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetch(query, *arguments)
    finally:
        await conn.close()


async def eventually(check, what: str):
    deadline = asyncio.get_running_loop().time() + WAIT
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.2)
    return result


def siei_with_canaries(folder: Path) -> Path:
    """The demo's SIEI file, plus one row per canary in the file: a Gironde youth of 17 with no
    diploma, who left school in June (the demo's other columns from a Gironde row)."""
    path = generate(40, 7, folder, campaign="canary", as_of=AS_OF).siei
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter=";"))
    template = next(row for row in rows if row["code_postal"].startswith("33"))
    for canary in (IN_SIEI, FOUND_LATER, FOUND_BEFORE):
        rows.append(
            {
                **template,
                "ine": canary.ine,
                "nom": canary.nom,
                "prenom": canary.prenom,
                "date_naissance": canary.birth.strftime("%d/%m/%Y"),
                "adresse": canary.adresse,
                "telephone": canary.telephone,
                "courriel": canary.courriel,
                "date_sortie": "30/06/2026",
                "diplome": "AUCUN",
            }
        )
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    return path


async def partner_enrols(nc: Client, canary: Canary) -> None:
    """A CFA's live feed: one enrolment, with the canary's INE and identity."""
    data = EnrolmentStarted(
        ine=canary.ine, nom=canary.nom, prenom=canary.prenom, date_naissance=canary.birth, date_debut=AS_OF
    )
    event = new_event(data, source="partner/cfa-gironde", subject=f"canary-{uuid.uuid4().hex[:8]}")
    reply = await nc.request("partner.cfa-gironde.enrolment.started.v1", event.to_json(), timeout=30)
    assert b'"accepted"' in reply.data, reply.data


async def settled(nc: Client) -> bool:
    """Every consumer of the three services has nothing left to deliver or to acknowledge."""
    js = nc.jetstream()
    for service in SERVICES:
        for consumer in load_topology().consumers_of(service):
            info = await js.consumer_info(consumer.stream, consumer.durable)
            if info.num_pending or info.num_ack_pending:
                return False
    return True


async def stream_messages(nc: Client) -> Iterator[tuple[str, int, bytes]]:
    """(stream, sequence, data and headers) of every message of every stream."""
    js = nc.jetstream()
    found = []
    for stream in await js.streams_info():
        for seq in range(stream.state.first_seq, stream.state.last_seq + 1):
            try:
                message = await js.get_msg(stream.config.name, seq)
            except NotFoundError:
                continue
            headers = "".join(f"{k}:{v}" for k, v in (message.headers or {}).items())
            found.append((stream.config.name, seq, (message.data or b"") + headers.encode()))
    return found


async def test_no_canary_identity_leaves_the_vault(
    nc: Client, running: dict[str, ServiceProcess], databases: dict[str, str], tmp_path: Path
) -> None:
    await partner_enrols(nc, FOUND_BEFORE)
    await partner_enrols(nc, PARTNER_ONLY)
    siei = siei_with_canaries(tmp_path / "demo")
    async with httpx.AsyncClient(timeout=WAIT, headers=bearer("campaign_manager")) as client:
        uploaded = await client.post(
            f"{running['reperage'].url}/campaigns/canary/siei",
            params={"as_of": AS_OF.isoformat()},
            files={"file": (siei.name, siei.read_bytes(), "text/csv")},
        )
    assert uploaded.status_code == 200, uploaded.text

    # The vault identified the canaries of the file; those handed over open PSAD cases.
    vault = {
        row["ine"]: row["youth_id"]
        for row in await fetch(
            databases["reperage"],
            "SELECT ine, youth_id FROM youth WHERE ine = ANY($1)",
            [c.ine for c in CANARIES],
        )
    }
    # The vault keeps the youths it hands over; one a partner already enrolled is not among them.
    assert set(vault) == {IN_SIEI.ine, FOUND_LATER.ine}
    handed = [vault[IN_SIEI.ine], vault[FOUND_LATER.ine]]

    async def cases() -> dict[str, str]:
        rows = await fetch(
            databases["psad"], "SELECT youth_id, case_id FROM case_file WHERE youth_id = ANY($1)", handed
        )
        return {row["youth_id"]: str(row["case_id"]) for row in rows} if len(rows) == len(handed) else {}

    case_of = await eventually(cases, "PSAD's cases of the two canaries handed over")

    # A counsellor reads a canary's contact card (through PSAD, from the vault, audited there).
    async with httpx.AsyncClient(
        base_url=running["psad"].url, headers=bearer("counsellor", "33"), timeout=WAIT
    ) as psad:
        card = await psad.get(f"/cases/{case_of[vault[IN_SIEI.ine]]}/contact")
    assert card.status_code == 200, card.text
    assert card.json()["card"]["courriel"] == IN_SIEI.courriel
    # A partner then enrols another canary: the vault finds them and tells PSAD by youth_id.
    await partner_enrols(nc, FOUND_LATER)

    async def found_later_projected() -> bool:
        rows = await fetch(databases["ops"], "SELECT youth_id FROM youth WHERE youth_id = ANY($1)", handed)
        return len(rows) == len(handed) and await settled(nc)

    await eventually(found_later_projected, "ops projecting both canaries, every consumer settled")
    audit = await fetch(
        databases["reperage"],
        "SELECT caller, role, territory FROM identity_audit JOIN identity_audit_youth USING (seq) "
        "WHERE youth_id = $1",
        vault[IN_SIEI.ine],
    )
    assert [tuple(row.values()) for row in audit] == [("psad", "counsellor", "33")]

    needles = [needle for canary in CANARIES for needle in canary.needles()]
    messages = await stream_messages(nc)
    assert {stream for stream, _seq, _data in messages} >= {"REPERAGE", "PSAD"}
    leaks = [
        f"{stream} #{seq} holds {needle}"
        for stream, seq, data in messages
        for needle in needles
        if needle.encode() in data
    ]
    for service, process in running.items():
        log = process.log_text()
        assert log, f"{service} logged nothing"
        leaks += [f"{service}'s log holds {needle}" for needle in needles if needle in log]
    for service in ("ops", "psad"):
        leaks += [f"{service}: {trace}" for trace in await database_traces(databases[service], needles)]
    assert leaks == []
    # The same search finds the canaries where they belong: the vault.
    assert f"youth.courriel holds {IN_SIEI.courriel}" in await database_traces(
        databases["reperage"], [IN_SIEI.courriel]
    )
