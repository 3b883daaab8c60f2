"""Canaries, on real NATS and PostgreSQL: known, distinctive identities go through the demo's
paths across the whole system, as `make run` runs it (a partner's feed, an SIEI file, PSAD cases,
a counsellor reading a contact card, a FOQUALE seat the school and the partner answer, an MLDS
candidacy admitted, a clause sociale mission with its convention and bilan croisé, ops'
projections), and none of them may come out anywhere but the repérage vault (and clause_sociale,
which keeps the youth's birth date for the convention): not in any stream's messages (every stream
of deploy/topology.toml, PARTNER, PRIVACY and DEADLETTER included), not in any service's log (its
stdout and stderr), not in another service's database.

Services run as their own processes, started together (as the other flow tests do);
every wait is for a count (cases opened, rows of the canaries, consumers with nothing pending),
never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_clause_sociale.entrypoints.demo import SITES, clause_terms, deliver_bilan, place
from raccrochage_contracts import new_event
from raccrochage_contracts.events.partner_v1 import EnrolmentStarted
from raccrochage_foquale.adapters.partners import inbox_prefix
from raccrochage_foquale.entrypoints import demo as foquale_demo
from raccrochage_mlds.entrypoints.demo import admit, candidacy_for_case, request_mlds_solution
from raccrochage_platform.auth import mint
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.topology import declare, load_topology
from raccrochage_reperage.domain.demo import generate
from raccrochage_rig.testing.flows import database_traces, migrated_databases, service_processes
from raccrochage_rig.testing.processes import ServiceProcess
from raccrochage_rig.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")
# Every service, in `make run`'s order of main jobs (ops last: it projects what the others publish).
SERVICES = ("reperage", "psad", "foquale", "mlds", "clause_sociale", "ops")
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


# Handed over to PSAD (its card read by a counsellor, then a FOQUALE seat), found later by a
# partner, found by a partner before the campaign, a partner's enrolment of nobody in the
# campaign, and handed over to PSAD then the MLDS and a clause sociale mission.
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
    for n in range(5)
]
IN_SIEI, FOUND_LATER, FOUND_BEFORE, PARTNER_ONLY, IN_CLAUSE = CANARIES


@pytest_asyncio.fixture(loop_scope="session")
async def topology(nc: Client, deadletter_stream: str) -> None:
    """Fresh consumers for every service and empty streams: the waits below count what
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


def bearer(role: str, territory: str | None = None, sub: str = "", **binding: str) -> dict[str, str]:
    token = mint(TOKEN_KEY, role=role, sub=sub or f"canary-{role}", territory=territory, **binding)
    return {"Authorization": f"Bearer {token}"}


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
    for canary in (IN_SIEI, FOUND_LATER, FOUND_BEFORE, IN_CLAUSE):
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
    """Every consumer of every service has nothing left to deliver or to acknowledge."""
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


async def youths_in(url: str, table: str, youths: list[str]) -> set[str]:
    rows = await fetch(url, f"SELECT DISTINCT youth_id FROM {table} WHERE youth_id = ANY($1)", youths)
    return {row["youth_id"] for row in rows}


async def publish_seats(nc: Client, foquale: httpx.AsyncClient) -> str:
    """FOQUALE's demo offers: a school's through the API (its key made by ops), the rectorat's
    over NATS (the PARTNER stream); the school's API key once FOQUALE holds all of them."""
    created = await foquale.post(
        "/foquale/api-keys",
        json={"uais": [foquale_demo.SCHOOL_UAI], "label": "canary school"},
        headers=bearer("ops"),
    )
    assert created.status_code in (200, 201), created.text
    api_key = created.json()["api_key"]
    school = foquale_demo.seat_record("canary-bac-pro", foquale_demo.SCHOOL_UAI, "33", 8, "Bac pro commerce")
    offered = await foquale.post("/foquale/offers", json=school, headers={"X-Api-Key": api_key})
    assert offered.status_code in (200, 201), offered.text
    return api_key


async def answer_reservation(nats_url: str, foquale: httpx.AsyncClient, api_key: str) -> None:
    """Whoever owns the canary's seat answers, as in the demo: the school through the API, the
    rectorat through its feed (its own inbox)."""
    partner = await nats.connect(nats_url, inbox_prefix=inbox_prefix(foquale_demo.PARTNER))
    answered: Counter = Counter()
    deadline = time.monotonic() + WAIT
    try:
        await asyncio.gather(
            foquale_demo.confirm_reservations(foquale, api_key, answered, 1, deadline),
            foquale_demo.partner_answers(partner, answered, 1, deadline),
        )
    finally:
        await partner.close()
    assert answered.total() >= 1, "nobody answered the canary's reservation"


async def clause_mission(clause: dict[str, httpx.AsyncClient], youth_id: str, age: int) -> str:
    """A buyer's clause, its company's mission, the canary placed (convention signed, its card
    read from the vault) and the bilan croisé delivered (the card read again): the mission's id."""
    today = datetime.now(UTC).date()
    terms = clause_terms(
        "Bordeaux Métropole", "33", "docks-logistique", "Logistique des entrepôts", 250_000, today
    )
    published = await clause["buyer"].post("/clauses", json=terms)
    assert published.status_code == 201, published.text
    declared = await clause["company"].post(
        f"/clauses/{published.json()['clause_id']}/missions",
        json={
            "activity_domain": "logistique",
            "tasks": ["Inventaire"],
            "site": SITES["33"],
            "referent_id": "ref-204",
            "hours": 150,
        },
    )
    assert declared.status_code == 201, declared.text
    mission = declared.json()["mission_id"]
    await place(clause["company"], clause["tutor"], mission, youth_id, age, "ref-204", today)
    await deliver_bilan(clause["company"], clause["tutor"], mission)
    return mission


async def test_no_canary_identity_leaves_the_vault(
    nc: Client,
    servers: Servers,
    running: dict[str, ServiceProcess],
    databases: dict[str, str],
    tmp_path: Path,
) -> None:
    url = {service: process.url for service, process in running.items()}
    await partner_enrols(nc, FOUND_BEFORE)
    await partner_enrols(nc, PARTNER_ONLY)
    async with httpx.AsyncClient(base_url=url["foquale"], timeout=WAIT) as foquale:
        api_key = await publish_seats(nc, foquale)
    assert await foquale_demo.publish_partner_seats(nc) == len(foquale_demo.RECTORAT_SEATS)
    siei = siei_with_canaries(tmp_path / "demo")
    async with httpx.AsyncClient(timeout=WAIT, headers=bearer("campaign_manager")) as client:
        uploaded = await client.post(
            f"{url['reperage']}/campaigns/canary/siei",
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
    assert set(vault) == {IN_SIEI.ine, FOUND_LATER.ine, IN_CLAUSE.ine}
    handed = list(vault.values())

    async def cases() -> dict[str, str]:
        rows = await fetch(
            databases["psad"], "SELECT youth_id, case_id FROM case_file WHERE youth_id = ANY($1)", handed
        )
        return {row["youth_id"]: str(row["case_id"]) for row in rows} if len(rows) == len(handed) else {}

    case_of = await eventually(cases, "PSAD's cases of the three canaries handed over")
    seat_case, clause_case = case_of[vault[IN_SIEI.ine]], case_of[vault[IN_CLAUSE.ine]]

    async with (
        httpx.AsyncClient(base_url=url["psad"], headers=bearer("counsellor", "33"), timeout=WAIT) as psad,
        httpx.AsyncClient(
            base_url=url["mlds"], headers=bearer("mlds_coordinator", "33"), timeout=WAIT
        ) as mlds,
        httpx.AsyncClient(base_url=url["foquale"], timeout=WAIT) as foquale,
    ):
        # A counsellor reads a canary's contact card (through PSAD, from the vault, audited there).
        card = await psad.get(f"/cases/{seat_case}/contact")
        assert card.status_code == 200, card.text
        assert card.json()["card"]["courriel"] == IN_SIEI.courriel
        # Then asks FOQUALE for a seat: reserved, and answered by the seat's owner.
        await request_mlds_solution(psad, seat_case, "foquale_seat", ["commerce"])

        async def reserved() -> set[str]:
            return await youths_in(databases["foquale"], "reservation", [vault[IN_SIEI.ine]])

        await eventually(reserved, "FOQUALE's reservation for the canary")
        await answer_reservation(servers.nats_url, foquale, api_key)
        # Another canary goes to the MLDS for a clause sociale: admitted and enrolled there.
        await request_mlds_solution(psad, clause_case, "clause_sociale_via_mlds", ["mlds:paps-33-01"])
        admitted = await admit(mlds, await candidacy_for_case(mlds, clause_case, timeout=WAIT))
        assert admitted["status"] == "admitted", admitted
        enrolled = await mlds.post(
            f"/candidacies/{admitted['candidacy_id']}/enrol", json={"started_on": date.today().isoformat()}
        )
        assert enrolled.status_code == 200, enrolled.text

    async def enrolled_in_clause() -> set[str]:
        return await youths_in(databases["clause_sociale"], "enrolment", [vault[IN_CLAUSE.ine]])

    await eventually(enrolled_in_clause, "clause_sociale told of the MLDS enrolment")
    clause = {
        "buyer": bearer("buyer", organisation="bordeaux-metropole"),
        "company": bearer("company", sub="ref-204", organisation="docks-logistique"),
        "tutor": bearer("mlds_tutor", "33"),
    }
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            who: await stack.enter_async_context(
                httpx.AsyncClient(base_url=url["clause_sociale"], headers=headers, timeout=WAIT)
            )
            for who, headers in clause.items()
        }
        await clause_mission(clients, vault[IN_CLAUSE.ine], age=17)

    # A partner then enrols another canary: the vault finds them and tells PSAD by youth_id.
    await partner_enrols(nc, FOUND_LATER)

    # Each service holds the canaries that reached it (by youth_id), and every consumer settled.
    reached = {
        "psad": ("case_file", handed),
        "foquale": ("reservation", [vault[IN_SIEI.ine]]),
        "mlds": ("candidacy", [vault[IN_CLAUSE.ine]]),
        "clause_sociale": ("enrolment", [vault[IN_CLAUSE.ine]]),
        "ops": ("youth", handed),
    }

    async def everywhere() -> bool:
        for service, (table, youths) in reached.items():
            if await youths_in(databases[service], table, youths) != set(youths):
                return False
        return await settled(nc)

    await eventually(everywhere, "every service holding its canaries, every consumer settled")
    audit = await fetch(
        databases["reperage"],
        "SELECT caller, role, territory, what FROM identity_audit JOIN identity_audit_youth USING (seq) "
        "WHERE youth_id = $1 ORDER BY seq",
        vault[IN_SIEI.ine],
    )
    assert [tuple(row.values()) for row in audit] == [("psad", "counsellor", "33", "contact_card")]
    audit = await fetch(
        databases["reperage"],
        "SELECT caller FROM identity_audit JOIN identity_audit_youth USING (seq) WHERE youth_id = $1",
        vault[IN_CLAUSE.ine],
    )
    assert {row["caller"] for row in audit} == {"clause_sociale"}  # the convention and the bilan

    needles = [needle for canary in CANARIES for needle in canary.needles()]
    messages = await stream_messages(nc)
    # Every stream of the topology is read; those the paths write to hold messages.
    assert {info.config.name for info in await nc.jetstream().streams_info()} >= set(load_topology().streams)
    streams = {stream for stream, _seq, _data in messages}
    assert streams >= {"REPERAGE", "PSAD", "FOQUALE", "MLDS", "CLAUSE", "PARTNER"}, streams
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
    for service in ("psad", "foquale", "mlds", "ops"):
        leaks += [f"{service}: {trace}" for trace in await database_traces(databases[service], needles)]
    assert leaks == []
    # clause_sociale keeps the birth date the vault gave for the convention (a minor's needs a
    # legal guardian), in the mission's history, and nothing else of a canary.
    assert await database_traces(databases["clause_sociale"], needles) == [
        f"mission.history holds {IN_CLAUSE.birth.isoformat()}"
    ]
    # The same search finds the canaries where they belong: the vault.
    assert f"youth.courriel holds {IN_SIEI.courriel}" in await database_traces(
        databases["reperage"], [IN_SIEI.courriel]
    )
