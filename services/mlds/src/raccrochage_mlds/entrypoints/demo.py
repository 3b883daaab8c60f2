"""`make run`, after PSAD's demo: Gironde counsellors ask the MLDS for dispositifs for some of
their cases, the MLDS decides with its reasons, a coordinator takes the eligible ones through
admission, and PSAD moves the cases; then how to use the coordinators' API.

The helpers below drive the two services' HTTP APIs as a counsellor and a coordinator would;
tests/flows/test_psad_to_mlds.py uses them too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console

console = Console(stderr=True)

TERRITORY = "33"
# A share of the Gironde's cases: enough for every outcome, and for survey cells of 5 youths.
DEMO_CASES = 40
# What the counsellors ask for, in turn: mostly PAPS (the MLDS's usual answer), some naming a site.
KINDS = (
    ("mlds_paps", ["mlds:paps-33-01"]),
    ("mlds_paps", []),
    ("mlds_paps", ["mlds:paps-33-02"]),
    ("mlds_micro_lycee", []),
    ("mlds_dipa", []),
)


class DemoError(RuntimeError):
    pass


def _ok(answer: httpx.Response, what: str) -> dict[str, Any]:
    if answer.status_code >= 400:
        raise DemoError(f"{what}: {answer.status_code} {answer.text[:300]}")
    return answer.json()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            if not result:
                raise DemoError(f"timed out waiting for {what}")
            return result
        await asyncio.sleep(0.2)


async def request_mlds_solution(psad: httpx.AsyncClient, case_id: str, kind: str, wishes: list[str]) -> dict:
    """A counsellor reaches the youth, holds the interview, and proposes an MLDS dispositif
    (PSAD sends psad.solution.requested.v1)."""
    _ok(
        await psad.post(f"/cases/{case_id}/attempts", json={"channel": "phone", "outcome": "reached"}),
        "contact",
    )
    when = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _ok(await psad.post(f"/cases/{case_id}/interviews", json={"scheduled_for": when}), "interview")
    _ok(
        await psad.post(f"/cases/{case_id}/interviews/outcome", json={"outcome": "seen"}), "interview outcome"
    )
    return _ok(
        await psad.post(f"/cases/{case_id}/solutions", json={"kind": kind, "wishes": wishes}), "proposal"
    )


async def candidacy_for_case(mlds: httpx.AsyncClient, case_id: str, timeout: float = 60) -> dict:
    """The MLDS candidacy opened from a case's request (polling the coordinator's list)."""

    async def found() -> dict | None:
        page = _ok(await mlds.get("/candidacies", params={"limit": 1000}), "candidacies")
        for summary in page["candidacies"]:
            if summary["psad_case_id"] == case_id:
                return _ok(await mlds.get(f"/candidacies/{summary['candidacy_id']}"), "candidacy")
        return None

    return await eventually(found, timeout, f"the MLDS candidacy of case {case_id}")


async def admit(mlds: httpx.AsyncClient, candidacy: dict) -> dict:
    """A coordinator takes an admissible candidacy through its steps (each favourable, decided by
    the first role allowed) and admits it: a place is taken, PSAD is answered accepted."""
    cid = candidacy["candidacy_id"]
    if candidacy["dispositif_id"] is None:
        sites = _ok(await mlds.get("/dispositifs", params={"kind": candidacy["kind"]}), "sites")[
            "dispositifs"
        ]
        if not sites:
            raise DemoError(f"no {candidacy['kind']} site in the coordinator's territory")
        candidacy = _ok(
            await mlds.post(
                f"/candidacies/{cid}/dispositif", json={"dispositif_id": sites[0]["dispositif_id"]}
            ),
            "site",
        )
    today = datetime.now(UTC).date().isoformat()
    while candidacy["next_step"] is not None:
        step = candidacy["next_step"]
        body = {
            "step": step["code"],
            "outcome": "favourable",
            "held_on": today,
            "decided_by": step["decided_by"][0],
        }
        candidacy = _ok(await mlds.post(f"/candidacies/{cid}/steps", json=body), "step")
    return _ok(await mlds.post(f"/candidacies/{cid}/admit", json={}), "admission")


async def demo_main_job() -> None:
    from raccrochage_platform.auth import mint
    from raccrochage_platform.topology import load_topology
    from raccrochage_rig.state import RigState, load_secrets, rig_dir

    folder = rig_dir()
    state = RigState.load(folder)
    psad_http, mlds_http = state.services["psad"].http, state.services["mlds"].http
    key = load_secrets(folder, load_topology())["token_key"]

    def bearer(role: str, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(key, role=role, territory=TERRITORY, sub=sub)}"}

    psad = httpx.AsyncClient(
        base_url=psad_http, headers=bearer("counsellor", "demo-conseillere-33"), timeout=30
    )
    mlds = httpx.AsyncClient(
        base_url=mlds_http, headers=bearer("mlds_coordinator", "demo-coord-33"), timeout=30
    )
    async with psad, mlds:
        page = _ok(
            await psad.get("/cases", params={"status": "to_contact", "limit": DEMO_CASES}),
            "the Gironde's cases",
        )
        cases = page["cases"]
        if not cases:
            console.print("[cyan]mlds[/] no Gironde case to contact: demo skipped")
            return
        for n, case in enumerate(cases):
            kind, wishes = KINDS[n % len(KINDS)]
            await request_mlds_solution(psad, case["case_id"], kind, wishes)
        candidacies = [await candidacy_for_case(mlds, case["case_id"]) for case in cases]
        admitted = []
        for candidacy in candidacies:
            if candidacy["status"] == "admissible":
                admitted.append(await admit(mlds, candidacy))
        # The admitted youths start at once; a third of them already left for a training.
        today = datetime.now(UTC).date().isoformat()
        enrolled = exited = 0
        for n, candidacy in enumerate(admitted):
            if candidacy["status"] != "admitted":
                continue
            cid = candidacy["candidacy_id"]
            _ok(await mlds.post(f"/candidacies/{cid}/enrol", json={"started_on": today}), "enrol")
            enrolled += 1
            if n % 3 == 2:
                body = {"destination": "training", "exited_on": today}
                _ok(await mlds.post(f"/candidacies/{cid}/exit", json=body), "exit")
                exited += 1

        async def answered() -> list[dict] | None:
            statuses = [_ok(await psad.get(f"/cases/{case['case_id']}"), "case")["status"] for case in cases]
            waiting = sum(s == "solution_proposed" for s in statuses)
            undecided = sum(c["status"] in ("candidate",) for c in candidacies)
            return statuses if waiting <= undecided else None

        statuses = await eventually(answered, 60, "PSAD applying the MLDS's answers")

    decided = Counter(c["eligibility"] for c in candidacies)
    reasons = Counter(rule for c in candidacies for rule in c["failed_rules"])
    console.print(
        f"[cyan]mlds[/] {len(cases)} Gironde cases asked for an MLDS dispositif: "
        + ", ".join(f"{outcome} {count}" for outcome, count in sorted(decided.items()))
        + (f"; refused for {', '.join(f'{r} ({n})' for r, n in reasons.most_common())}" if reasons else "")
    )
    console.print(
        f"[cyan]mlds[/] admitted {len(admitted)} (a place taken each), enrolled {enrolled}, exited {exited}; "
        "PSAD cases now: " + ", ".join(f"{s} {n}" for s, n in sorted(Counter(statuses).items()))
    )
    example = candidacies[0]["candidacy_id"]
    console.print(
        f"[cyan]mlds[/] a coordinator's candidacies, decisions with reasons, places (API docs at {mlds_http}/docs):\n"
        f"  TOKEN=$(.venv/bin/raccrochage token --role mlds_coordinator --territory {TERRITORY})\n"
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{mlds_http}/candidacies?limit=5'\n"
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{mlds_http}/candidacies/{example}'\n"
        f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{mlds_http}/dispositifs'\n"
        f"  .venv/bin/raccrochage mlds survey --year {_school_year()} --out enquete_mlds.xlsx"
    )


def _school_year() -> str:
    today = datetime.now(UTC).date()
    first = today.year if today.month >= 9 else today.year - 1
    return f"{first}-{first + 1}"
