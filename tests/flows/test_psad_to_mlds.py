"""Across services, on real NATS and PostgreSQL: a PSAD case asks the MLDS for a dispositif, the
MLDS decides (with its reasons) and answers, and PSAD applies the answer: the case goes in
solution when a coordinator admits the youth, back to the solution stage when a rule fails.
Then the clause sociale's mission of that youth ends in an apprenticeship
(`clause.mission.completed.v1`): PSAD's case and the MLDS enrolment both move to it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from raccrochage_contracts import nats_subject, new_event
from raccrochage_contracts.events.reperage_v1 import YouthIdentified
from raccrochage_mlds.entrypoints.demo import admit, candidacy_for_case, eventually, request_mlds_solution
from raccrochage_platform.auth import mint
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.events import mission_completed
from raccrochage_rig.testing.flows import migrated_databases, service_processes
from raccrochage_rig.testing.processes import ServiceProcess
from raccrochage_rig.testing.servers import Servers

ROOT = Path(__file__).resolve().parents[2]
KEY = "f" * 64


@pytest_asyncio.fixture(loop_scope="session")
async def topology(nc: Client, deadletter_stream: str) -> None:
    js = nc.jetstream()
    definitions = load_topology()
    for service in ("psad", "mlds"):
        for consumer in definitions.consumers_of(service):
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, definitions, services={"psad", "mlds"})
    for stream in ("REPERAGE", "PSAD", "FOQUALE", "MLDS", "CLAUSE"):
        await js.purge_stream(stream)


@pytest_asyncio.fixture(loop_scope="session")
async def databases(servers: Servers) -> dict[str, str]:
    return await migrated_databases(servers, ("psad", "mlds"))


@pytest.fixture
def running(
    servers: Servers, databases: dict[str, str], topology: None, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    with service_processes(servers.nats_url, databases, tmp_path, RACCROCHAGE_TOKEN_KEY=KEY) as processes:
        yield processes


def _client(url: str, role: str) -> httpx.AsyncClient:
    token = mint(KEY, role=role, territory="33", sub=f"{role}-33")
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


async def _identified(nc: Client, n: int, age: int) -> str:
    youth_id = hashlib.sha256(f"flow-youth-{n}".encode()).hexdigest()
    payload = YouthIdentified(
        youth_id=youth_id,
        campaign_id="2026-11",
        psad_id="psad-33-bordeaux-centre",
        departement="33",
        age=age,
        months_since_leaving=4,
        as_of=date(2026, 11, 1),
        last_diploma="DNB",
        last_training="2nde GT",
    )
    event = new_event(payload, source="raccrochage/reperage", subject=youth_id)
    await nc.jetstream().publish(
        nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )
    return youth_id


async def test_a_psad_case_gets_an_mlds_decision_and_psad_applies_it(
    nc: Client, running: dict[str, ServiceProcess]
) -> None:
    eligible, too_old = await _identified(nc, 1, age=17), await _identified(nc, 2, age=22)
    async with (
        _client(running["psad"].url, "counsellor") as psad,
        _client(running["mlds"].url, "mlds_coordinator") as mlds,
    ):

        async def cases() -> dict[str, str] | None:
            page = (await psad.get("/cases")).json()
            found = {c["youth_id"]: c["case_id"] for c in page["cases"]}
            return found if {eligible, too_old} <= set(found) else None

        case_of = await eventually(cases, what="PSAD's two cases")
        for youth in (eligible, too_old):
            proposed = await request_mlds_solution(psad, case_of[youth], "mlds_paps", ["mlds:paps-33-01"])
            assert proposed["status"] == "solution_proposed"

        # Too old for a PAPS: refused at once, with the rule; PSAD goes back to the solution stage.
        refused = await candidacy_for_case(mlds, case_of[too_old])
        assert (refused["status"], refused["failed_rules"]) == ("refused", ["paps.age_16_to_18"])

        async def back_to_solution_stage() -> dict | None:
            case = (await psad.get(f"/cases/{case_of[too_old]}")).json()
            return case if case["status"] == "interview_held" else None

        case = await eventually(back_to_solution_stage, what="the refusal applied")
        assert case["solutions"][-1]["state"] == "refused"

        # Eligible: admissible, and PSAD waits; admitted by the coordinator: PSAD's case in solution.
        candidacy = await candidacy_for_case(mlds, case_of[eligible])
        assert (candidacy["status"], candidacy["eligibility"]) == ("admissible", "eligible")
        assert (await psad.get(f"/cases/{case_of[eligible]}")).json()["status"] == "solution_proposed"
        admitted = await admit(mlds, candidacy)
        assert admitted["status"] == "admitted" and admitted["dispositif_id"] == "paps-33-01"

        async def in_solution() -> dict | None:
            case = (await psad.get(f"/cases/{case_of[eligible]}")).json()
            return case if case["status"] == "in_solution" else None

        case = await eventually(in_solution, what="the acceptance applied")
        assert case["solutions"][-1]["kind"] == "mlds_paps" and case["solutions"][-1]["state"] == "confirmed"
        sites = (await mlds.get("/dispositifs", params={"kind": "paps"})).json()["dispositifs"]
        assert next(s for s in sites if s["dispositif_id"] == "paps-33-01")["places_taken"] == 1


async def _mission_completed(nc: Client, youth_id: str, *, outcome: str):
    """What clause_sociale publishes when a tutor records the end of a mission."""
    event, _ = mission_completed(youth_id, outcome)
    await _publish_again(nc, event, str(event.id))
    return event


async def _publish_again(nc: Client, event, msg_id: str) -> None:
    """The same envelope; another Nats-Msg-Id gets past the broker's duplicate window, as a
    redelivery would: the consumers' inboxes must catch it."""
    await nc.jetstream().publish(nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": msg_id})


async def test_a_mission_ending_in_an_apprenticeship_moves_the_psad_case_and_the_mlds_enrolment(
    nc: Client, running: dict[str, ServiceProcess]
) -> None:
    youth = await _identified(nc, 3, age=17)
    async with (
        _client(running["psad"].url, "counsellor") as psad,
        _client(running["mlds"].url, "mlds_coordinator") as mlds,
    ):

        async def case_id() -> str | None:
            page = (await psad.get("/cases")).json()
            return next((c["case_id"] for c in page["cases"] if c["youth_id"] == youth), None)

        case = await eventually(case_id, what="PSAD's case")
        # A clause sociale needs the youth on an MLDS action: PSAD asks for it, the MLDS admits.
        await request_mlds_solution(psad, case, "clause_sociale_via_mlds", ["mlds:paps-33-01"])
        admitted = await admit(mlds, await candidacy_for_case(mlds, case))
        candidacy = admitted["candidacy_id"]
        enrolled = await mlds.post(
            f"/candidacies/{candidacy}/enrol", json={"started_on": date.today().isoformat()}
        )
        assert enrolled.status_code == 200 and enrolled.json()["status"] == "enrolled", enrolled.text

        async def in_mission() -> bool:
            return (await psad.get(f"/cases/{case}")).json()["status"] == "in_solution"

        await eventually(in_mission, what="the case in solution through the MLDS")

        # The mission ends in an apprenticeship; delivered twice, and one for a youth nobody knows.
        completed = await _mission_completed(nc, youth, outcome="apprenticeship")
        await _publish_again(nc, completed, f"{completed.id}-again")
        await _mission_completed(nc, hashlib.sha256(b"nobody").hexdigest(), outcome="job")

        async def exited() -> dict | None:
            seen = (await mlds.get(f"/candidacies/{candidacy}")).json()
            return seen if seen["status"] == "exited" else None

        seen = await eventually(exited, what="the MLDS enrolment exited")
        assert seen["exit"]["destination"] == "apprenticeship"
        sites = (await mlds.get("/dispositifs", params={"kind": "paps"})).json()["dispositifs"]
        assert next(s for s in sites if s["dispositif_id"] == "paps-33-01")["places_taken"] == 0

        async def apprenticeship() -> dict | None:
            seen = (await psad.get(f"/cases/{case}")).json()
            return seen if seen["solutions"][-1]["kind"] == "apprenticeship" else None

        seen = await eventually(apprenticeship, what="PSAD's case in solution as an apprenticeship")
        assert seen["status"] == "in_solution"
        assert [(s["kind"], s["state"]) for s in seen["solutions"]] == [
            ("clause_sociale_via_mlds", "ended"),
            ("apprenticeship", "confirmed"),
        ]

    # Every delivery acknowledged (the duplicate and the unknown youth too), none dead-lettered.
    js = nc.jetstream()
    for durable in ("psad_clause", "mlds_clause"):

        async def all_acked(durable: str = durable) -> bool:
            # The stream may hold other tests' events before these three: up to its last one.
            last = (await js.stream_info("CLAUSE")).state.last_seq
            info = await js.consumer_info("CLAUSE", durable)
            return info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq == last

        await eventually(all_acked, what=f"{durable} acknowledging every delivery")
    dead = await js.stream_info("DEADLETTER", subjects_filter="deadletter.>")
    assert not any("clause" in subject for subject in (dead.state.subjects or {}))
    for service in ("psad", "mlds"):
        assert youth not in running[service].log_text()
