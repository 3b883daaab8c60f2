"""Across services, on the rig as `make run` starts it (`up --detach --main-jobs`: every
service, every demo), started once for the three journeys of this module, in this order:
- a newcomer's: the repérage demo campaign becomes PSAD cases, and the counsellor's API serves them;
- the SIEI file to confirmed seats: repérage hands youths to the PSADs; FOQUALE's demo publishes
  seats for the five départements (a partner over NATS, a school through the API), counsellors ask
  for seats, FOQUALE reserves them, the school confirms through the API and the partner through
  its feed (refusing some with a coded reason), and PSAD moves the confirmed cases to "in
  solution";
- last, as it erases youths and silences a consumer: a youth who went through repérage, PSAD,
  FOQUALE and the MLDS is exported, then erased; afterwards no database of any service, no
  message of any stream (dead letters and PRIVACY included) and no service log holds the youth's
  youth_id, INE or contact details, and the request is complete with every service's answer and
  its streams swept. A service that cannot answer is named by `privacy erase --wait`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.aio.client import Client
from raccrochage_platform.auth import mint
from raccrochage_platform.broker import connect_once
from raccrochage_platform.db import libpq_dsn
from raccrochage_platform.topology import load_topology
from raccrochage_rig.state import RigState, load_secrets, service_environment
from raccrochage_rig.testing.flows import database_traces, stream_traces

CLI = [sys.executable, "-m", "raccrochage_platform.cli"]
SERVICES = ("reperage", "psad", "foquale", "mlds", "clause_sociale", "ops")


def _env(folder: Path) -> dict[str, str]:
    skip = ("NATS_URL", "RACCROCHAGE_PG_ADMIN_URL", "RACCROCHAGE_TOPOLOGY", "RACCROCHAGE_EXTRA_SERVICES")
    return {**{k: v for k, v in os.environ.items() if k not in skip}, "RACCROCHAGE_RIG_DIR": str(folder)}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)


def _cli(env: dict[str, str], *args: str) -> str:
    result = _run(env, *args)
    assert result.returncode == 0, f"raccrochage {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def _fetch(url: str, query: str, *arguments) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetch(query, *arguments)
    finally:
        await conn.close()


async def _counts(url: str, query: str) -> dict[str, int]:
    return {row[0]: row[1] for row in await _fetch(url, query)}


@dataclass(frozen=True)
class DemoRig:
    folder: Path
    env: dict[str, str]
    up_output: str  # what `up` printed: its demos' summaries


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRig]:
    folder = tmp_path_factory.mktemp("demo") / "rig"
    env = _env(folder)
    up = _run(env, "up", "--detach", "--main-jobs")  # the 5,000-youth demo campaign, as `make run` does
    try:
        assert up.returncode == 0, f"raccrochage up:\n{up.stdout}\n{up.stderr}"
        yield DemoRig(folder, env, up.stdout + up.stderr)
    finally:
        _cli(env, "down")


def test_the_demo_campaign_opens_one_case_per_identified_youth_per_territory(rig: DemoRig) -> None:
    folder, env = rig.folder, rig.env
    reperage_db = service_environment(folder, "reperage")["DATABASE_URL"]
    psad_db = service_environment(folder, "psad")["DATABASE_URL"]
    handed = asyncio.run(_counts(reperage_db, "SELECT psad_id, count(*) FROM handover WHERE open GROUP BY 1"))
    assert sum(handed.values()) > 1000 and len(handed) >= 5
    deadline = time.monotonic() + 120
    opened: dict[str, int] = {}
    while opened != handed and time.monotonic() < deadline:
        time.sleep(0.5)
        opened = asyncio.run(
            _counts(psad_db, "SELECT psad_id, count(*) FROM case_file WHERE status <> 'closed' GROUP BY 1")
        )
    assert opened == handed

    token = _cli(env, "token", "--role", "counsellor", "--territory", "33", "--sub", "conseillere-33").strip()
    http = json.loads(_cli(env, "status", "--json"))["services"]["psad"]["http"]
    page = httpx.get(
        f"{http}/cases",
        params={"work_list": "priority", "limit": 5},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert page["total"] > 0
    assert {case["departement"] for case in page["cases"]} == {"33"}
    assert all(case["next_action"]["what"] == "contact_youth" for case in page["cases"])

    # Opening a case: the contact card comes from the repérage vault, which audits it; PSAD
    # neither stores nor logs it.
    case_id = page["cases"][0]["case_id"]
    card = httpx.get(
        f"{http}/cases/{case_id}/contact", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["card"]
    assert card["youth_id"] == page["cases"][0]["youth_id"] and card["nom"]
    audit = asyncio.run(
        _counts(
            reperage_db,
            # PSAD's reads only: clause_sociale's demo asks cards for its conventions too.
            "SELECT concat_ws(' ', caller, role, sub, territory, purpose), count(*) FROM identity_audit "
            "WHERE granted AND caller = 'psad' GROUP BY 1",
        )
    )
    assert audit == {f"psad counsellor conseillere-33 33 case {case_id} opened by conseillere-33": 1}
    psad_log = (folder / "logs" / "psad.log").read_text()
    for secret in (card["nom"], card["prenom"], card["date_naissance"], card["telephone"] or "\0"):
        assert secret not in psad_log


def test_a_youth_from_the_siei_file_gets_a_confirmed_seat_and_psad_says_in_solution(rig: DemoRig) -> None:
    folder, out = rig.folder, rig.up_output
    assert "placements confirmed" in out, out[-3000:]
    foquale_db = service_environment(folder, "foquale")["DATABASE_URL"]
    psad_db = service_environment(folder, "psad")["DATABASE_URL"]
    offers = asyncio.run(_fetch(foquale_db, "SELECT departement, source FROM offer"))
    assert {row["departement"] for row in offers} == {"24", "33", "40", "47", "64"}
    assert {row["source"] for row in offers} == {"partner_feed", "establishment_api"}
    placed = asyncio.run(_fetch(foquale_db, "SELECT case_id FROM reservation WHERE state = 'confirmed'"))
    assert placed, "no reservation was confirmed"
    answered = asyncio.run(
        _fetch(
            foquale_db,
            "SELECT r.state, r.refusal_reason FROM reservation r JOIN offer o USING (offer_id)"
            " WHERE o.owner_kind = 'partner' AND r.state <> 'made'",
        )
    )
    by_partner = {(row["state"], row["refusal_reason"]) for row in answered}
    assert ("confirmed", None) in by_partner, out[-3000:]  # through its feed
    assert ("refused", "youth_declined") in by_partner, out[-3000:]
    placed_cases = {row["case_id"] for row in placed}
    deadline = time.monotonic() + 60
    in_solution: set = set()
    while not placed_cases <= in_solution and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = asyncio.run(_fetch(psad_db, "SELECT case_id FROM case_file WHERE status = 'in_solution'"))
        in_solution = {row["case_id"] for row in rows}
    assert placed_cases <= in_solution


async def _eventually(query, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await query()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"never: {what}")


async def _through_foquale_and_mlds(state: RigState, token_key: str, urls: dict[str, str]) -> str:
    """A Gironde youth still to contact asks FOQUALE for a seat, which the school refuses, then
    the MLDS for a dispositif: returns the youth_id."""

    def bearer(role: str, **claims) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(token_key, role=role, sub=f'test-{role}', **claims)}"}

    async with (
        httpx.AsyncClient(
            base_url=state.services["psad"].http, headers=bearer("counsellor", territory="33")
        ) as psad,
        httpx.AsyncClient(base_url=state.services["foquale"].http) as foquale,
    ):
        case = (await psad.get("/cases", params={"status": "to_contact", "limit": 1})).json()["cases"][0]
        case_id = case["case_id"]
        when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        for path, body in [
            ("attempts", {"channel": "phone", "outcome": "reached"}),
            ("interviews", {"scheduled_for": when, "with_role": "psy_en"}),
            ("interviews/outcome", {"outcome": "seen"}),
            ("solutions", {"kind": "foquale_seat", "wishes": ["commerce"]}),
        ]:
            answer = await psad.post(f"/cases/{case_id}/{path}", json=body)
            assert answer.status_code < 400, (path, answer.text)
        [reservation] = await _eventually(
            lambda: _fetch(
                urls["foquale"],
                "SELECT reservation_id, uai, youth_id FROM reservation WHERE case_id = $1",
                uuid.UUID(case_id),
            ),
            "a FOQUALE reservation for the case",
        )
        created = await foquale.post(
            "/foquale/api-keys",
            json={"uais": [reservation["uai"]], "label": "erasure test"},
            headers=bearer("ops"),
        )
        api_key = {"X-Api-Key": created.json()["api_key"]}
        refused = await foquale.post(
            f"/foquale/reservations/{reservation['reservation_id']}/refuse",
            json={"reason": "other", "comment": "la jeune a préféré une autre voie"},
            headers=api_key,
        )
        assert refused.status_code == 200, refused.text

        async def back_to_solution_stage():
            return (await psad.get(f"/cases/{case_id}")).json()["status"] == "interview_held"

        await _eventually(back_to_solution_stage, "PSAD applying FOQUALE's refusal")
        answer = await psad.post(f"/cases/{case_id}/solutions", json={"kind": "mlds_paps", "wishes": []})
        assert answer.status_code < 400, answer.text
        youth_id = reservation["youth_id"]

        async def settled() -> bool:
            """Every event about the youth projected: an erasure must not race them (a late
            event would bring the youth back into a projection)."""
            case_status = (await psad.get(f"/cases/{case_id}")).json()["status"]
            decided = await _fetch(
                urls["ops"], "SELECT 1 FROM candidacy WHERE youth_id = $1 AND decision IS NOT NULL", youth_id
            )
            projected = await _fetch(urls["ops"], "SELECT status FROM youth WHERE youth_id = $1", youth_id)
            return bool(decided) and [row["status"] for row in projected] == [case_status]

        await _eventually(settled, "the MLDS's decision and the case's status projected in ops")
        return youth_id


# A journey through four services, an export, two erasures and their sweeps: the timeout only
# guards against a hang, on a machine that may be busy.
@pytest.mark.timeout(600)
def test_an_erased_youth_leaves_no_trace_in_any_database_and_a_silent_service_is_named(
    rig: DemoRig, tmp_path: Path
) -> None:
    asyncio.run(_scenario(rig.folder, rig.env, tmp_path))


async def _scenario(folder: Path, env: dict[str, str], tmp_path: Path) -> None:
    state = RigState.load(folder)
    token_key = load_secrets(folder, load_topology())["token_key"]
    urls = {service: service_environment(folder, service)["DATABASE_URL"] for service in SERVICES}
    youth_id = await _through_foquale_and_mlds(state, token_key, urls)
    [identity] = await _fetch(urls["reperage"], "SELECT * FROM youth WHERE youth_id = $1", youth_id)
    ine = identity["ine"]

    # Subject access: one document, the vault's identity and every service's records.
    document_path = tmp_path / "export.json"
    await asyncio.to_thread(
        _cli, env, "privacy", "export", "--ine", ine, "--out", str(document_path), "--by", "dpo-test"
    )
    document = json.loads(document_path.read_text(encoding="utf-8"))
    assert document["unanswered"] == []
    held = document["services"]
    assert held["reperage"]["youth"][0]["nom"] == identity["nom"]
    assert [case["youth_id"] for case in held["psad"]["case_file"]] == [youth_id]
    assert [r["youth_id"] for r in held["foquale"]["reservation"]] == [youth_id]
    assert [c["youth_id"] for c in held["mlds"]["candidacy"]] == [youth_id]
    assert [y["youth_id"] for y in held["ops"]["youth"]] == [youth_id]
    assert set(held) == set(SERVICES)
    # The export is a read of the identity: audited, in the chain.
    audited = await _fetch(
        urls["reperage"],
        "SELECT what, role, sub FROM identity_audit JOIN identity_audit_youth USING (seq) "
        "WHERE youth_id = $1 ORDER BY seq",
        youth_id,
    )
    assert tuple(audited[-1].values()) == ("export", "dpo", "dpo-test")

    # Erasure: every service answers, the streams are swept, and nothing of the youth is left
    # anywhere (--wait waits for the sweep).
    ops_total = await _fetch(urls["ops"], "SELECT count(*) AS n FROM youth")
    erased = await asyncio.to_thread(
        _run, env, "privacy", "erase", "--ine", ine, "--wait", "--timeout", "120"
    )
    assert erased.returncode == 0, erased.stdout + erased.stderr
    status = json.loads(erased.stdout)
    assert status["complete"] and status["silent"] == []
    assert sorted(a["service"] for a in status["answers"]) == sorted(set(SERVICES) - {"reperage"})
    answers = {a["service"]: a for a in status["answers"]}
    assert answers["psad"]["erased"]["case_file"] == 1
    assert answers["foquale"]["anonymised"]["reservation"] == 1
    assert answers["mlds"]["anonymised"]["candidacy"] == 1
    assert answers["ops"]["anonymised"]["youth"] == 1
    # The youth's events went from every stream they were in, the request itself from PRIVACY.
    assert status["swept_at"] is not None
    assert status["swept"]["PRIVACY"] == 1
    assert all(status["swept"][stream] >= 1 for stream in ("REPERAGE", "PSAD", "FOQUALE", "MLDS")), status
    needles = [youth_id, ine, *(identity[c] for c in ("telephone", "courriel") if identity[c])]
    for service in SERVICES:
        assert await database_traces(urls[service], needles) == [], service
    assert await stream_traces(state.nats_url, needles) == []
    # No log line names the youth, not even by youth_id: neither the journey, nor the export,
    # nor the erasure wrote one.
    assert not any(needle in erased.stdout + erased.stderr for needle in needles)
    for log_file in sorted((folder / "logs").glob("*.log")):
        text = log_file.read_text(encoding="utf-8", errors="replace")
        assert [needle for needle in needles if needle in text] == [], log_file.name
    # The audit kept its rows, unlinked from the youth: the chain is whole.
    assert "chain whole" in await asyncio.to_thread(_cli, env, "privacy", "audit", "verify")
    # ops' figures still count the youth, under a key that names nobody.
    assert await _fetch(urls["ops"], "SELECT count(*) AS n FROM youth") == ops_total
    still = await asyncio.to_thread(_run, env, "privacy", "status", status["request_id"])
    assert still.returncode == 0 and json.loads(still.stdout)["swept"] == status["swept"]

    # A service that cannot answer (its consumer of erasure requests is gone) is named.
    nc: Client = await connect_once(state.nats_url)
    try:
        await nc.jetstream().delete_consumer("PRIVACY", "ops_privacy")
    finally:
        await nc.close()
    [other] = await _fetch(urls["reperage"], "SELECT ine FROM youth LIMIT 1")
    silent = await asyncio.to_thread(
        _run, env, "privacy", "erase", "--ine", other["ine"], "--wait", "--timeout", "10"
    )
    assert silent.returncode == 1, silent.stdout + silent.stderr
    assert "no answer from" in silent.stderr and "ops" in silent.stderr.rsplit("no answer from", 1)[1]
    unanswered = json.loads(silent.stdout)
    assert "ops" in unanswered["silent"] and unanswered["swept_at"] is None
