"""Across services, on the real rig: the repérage demo campaign becomes PSAD cases, and the
counsellor's API serves them. This is what `make run` shows a newcomer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
from raccrochage_platform.db import libpq_dsn
from raccrochage_rig.state import service_environment

CLI = [sys.executable, "-m", "raccrochage_platform.cli"]


def _env(folder: Path) -> dict[str, str]:
    skip = ("NATS_URL", "RACCROCHAGE_PG_ADMIN_URL", "RACCROCHAGE_TOPOLOGY", "RACCROCHAGE_EXTRA_SERVICES")
    return {**{k: v for k, v in os.environ.items() if k not in skip}, "RACCROCHAGE_RIG_DIR": str(folder)}


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"raccrochage {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def _counts(url: str, query: str) -> dict[str, int]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return {row[0]: row[1] for row in await conn.fetch(query)}
    finally:
        await conn.close()


def test_the_demo_campaign_opens_one_case_per_identified_youth_per_territory(tmp_path: Path) -> None:
    folder = tmp_path / "rig"
    env = _env(folder)
    _cli(env, "up", "--detach", "--main-jobs")  # the 5,000-youth demo campaign, as `make run` does
    try:
        reperage_db = service_environment(folder, "reperage")["DATABASE_URL"]
        psad_db = service_environment(folder, "psad")["DATABASE_URL"]
        handed = asyncio.run(
            _counts(reperage_db, "SELECT psad_id, count(*) FROM handover WHERE open GROUP BY 1")
        )
        assert sum(handed.values()) > 1000 and len(handed) >= 5
        deadline = time.monotonic() + 120
        opened: dict[str, int] = {}
        while opened != handed and time.monotonic() < deadline:
            time.sleep(0.5)
            opened = asyncio.run(
                _counts(
                    psad_db, "SELECT psad_id, count(*) FROM case_file WHERE status <> 'closed' GROUP BY 1"
                )
            )
        assert opened == handed

        token = _cli(
            env, "token", "--role", "counsellor", "--territory", "33", "--sub", "conseillere-33"
        ).strip()
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
    finally:
        _cli(env, "down")
