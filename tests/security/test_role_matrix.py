"""Each route of each service, each role, a foreign territory: the expected answer.

A cell is the status expected, or "ok" for anything the route documents other than 401 and 403
(the token is accepted; what follows is the route's business)."""

from __future__ import annotations

import asyncio
from datetime import date

import httpx
import pytest
from nats.aio.client import Client
from raccrochage_contracts import nats_subject, new_event
from raccrochage_contracts.events.reperage_v1 import YouthIdentified

from .conftest import TOKENS

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROLES = list(TOKENS)  # none, forged, counsellor-33, counsellor-40, ops, campaign_manager, dpo


def row(own: str | int, **others: str | int) -> dict[str, str | int]:
    """A route's expectations: `own` for the role that owns it, `others` by role; 401 without a
    valid token, 403 for any other role."""
    return {"_own": own, **others}


def expected(cell: dict[str, str | int], role: str, owner: str) -> str | int:
    if role in cell:
        return cell[role]
    if role == owner:
        return cell["_own"]
    return 401 if role in ("none", "forged") else 403


async def check(client: httpx.AsyncClient, matrix: list[tuple], owner: str) -> list[str]:
    """Every (method, path, body, cell) of the matrix asked with every role's token."""
    wrong = []
    for method, path, body, cell in matrix:
        for role in ROLES:
            want = expected(cell, role, owner)
            kwargs = {"json": body} if isinstance(body, dict) else {"files": list(body)} if body else {}
            got = (await client.request(method, path, headers=TOKENS[role], **kwargs)).status_code
            ok = got not in (401, 403, 500) if want == "ok" else got == want
            if not ok:
                wrong.append(f"{method} {path} as {role}: {got}, expected {want}")
    return wrong


async def test_reperage_campaign_routes_are_a_campaign_managers(start_service) -> None:
    service = await start_service("reperage")
    csv = "ine;nom;prenom;date_naissance;date_sortie;code_postal\n"
    upload = (("file", ("s.csv", csv, "text/csv")),)
    matrix = [
        ("POST", "/campaigns/c-matrix/siei?as_of=2026-11-02", upload, row("ok")),
        ("GET", "/campaigns/c-matrix", None, row("ok", ops="ok")),
        ("GET", "/campaigns/c-matrix/rejections", None, row("ok")),
    ]
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        wrong = await check(client, matrix, owner="campaign_manager")
    assert wrong == []


async def test_reperage_privacy_routes_are_the_dpos(start_service) -> None:
    service = await start_service("reperage")
    youth = {"ine": "1234567890A"}
    matrix = [
        ("POST", "/privacy/erasures", youth, row(202)),
        ("GET", "/privacy/erasures/00000000-0000-0000-0000-000000000000", None, row(404)),
        ("POST", "/privacy/exports", youth, row(200)),
    ]
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        wrong = await check(client, matrix, owner="dpo")
    assert wrong == []


async def test_psad_case_routes_are_their_territorys_counsellors(nc: Client, start_service) -> None:
    service = await start_service("psad")
    youth = YouthIdentified(
        youth_id="a" * 64,
        campaign_id="c-matrix",
        psad_id="psad-33-bordeaux-centre",
        departement="33",
        age=19,
        last_diploma="AUCUN",
        months_since_leaving=5,
        as_of=date(2026, 11, 2),
    )
    event = new_event(youth, source="raccrochage/reperage", subject=youth.youth_id)
    await nc.jetstream().publish(
        nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        for _ in range(100):
            listed = (await client.get("/cases", headers=TOKENS["counsellor-33"])).json()
            if listed["cases"]:
                break
            await asyncio.sleep(0.1)
        case_id = listed["cases"][0]["case_id"]
        case = f"/cases/{case_id}"
        commands = {
            "/attempts": {"channel": "phone", "outcome": "no_answer"},
            "/interviews": {"scheduled_for": "2030-01-01T10:00:00+00:00"},
            "/interviews/outcome": {"outcome": "seen"},
            "/solutions": {"kind": "job"},
            "/solutions/confirm": {},
            "/solutions/refuse": {"reason": "other"},
            "/review": {"outcome": "still_in_solution"},
            "/assign": {"owner": "conseillere-1"},
            "/close": {"reason": "exempt"},
            "/reopen": {},
            "/transfer": {"to_psad_id": "psad-40-dax"},
        }
        matrix = [
            ("GET", "/cases", None, row("ok", **{"counsellor-40": "ok"})),  # their own territory's
            ("GET", "/cases?territory=33", None, row("ok")),
            ("GET", case, None, row("ok")),
            ("GET", f"{case}/contact", None, row("ok")),
            ("GET", "/stats", None, row("ok", ops="ok", **{"counsellor-40": "ok"})),
            *(("POST", f"{case}{path}", body, row("ok")) for path, body in commands.items()),
        ]
        wrong = await check(client, matrix, owner="counsellor-33")
        foreign = (await client.get("/cases", headers=TOKENS["counsellor-40"])).json()
    assert case_id not in {c["case_id"] for c in foreign["cases"]}  # (40 holds the case transferred there)
    assert wrong == []


async def test_ops_dashboard_is_for_ops_academies_and_counsellors_only(start_service) -> None:
    service = await start_service("ops")
    territorial = {"academy-33": "ok", "counsellor-33": "ok", "counsellor-40": "ok"}
    matrix = [
        ("GET", "/api/figures", None, row("ok", **territorial)),
        ("GET", "/api/figures?departement=33", None, row("ok", **{**territorial, "counsellor-40": 403})),
        ("GET", "/", None, row("ok", **territorial)),
        ("GET", "/api/pipeline", None, row("ok")),
        ("GET", "/api/deadletters", None, row("ok")),
        ("GET", "/api/replays", None, row("ok")),
        ("GET", "/pipeline", None, row("ok")),
    ]
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        wrong = await check(client, matrix, owner="ops")
    assert wrong == []
