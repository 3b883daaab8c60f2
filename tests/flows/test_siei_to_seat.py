"""Across services, on the real rig: from the SIEI demo campaign to confirmed seats. Repérage
ingests the file and hands youths to the PSADs; FOQUALE's demo publishes seats for the five
départements (a partner over NATS, a school through the API), counsellors ask for seats, FOQUALE
reserves them, the school confirms through the API and the partner through its feed (refusing
some with a coded reason), and PSAD moves the confirmed cases to "in solution"."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from raccrochage_platform.db import libpq_dsn
from raccrochage_rig.state import service_environment

CLI = [sys.executable, "-m", "raccrochage_platform.cli"]


def _env(folder: Path) -> dict[str, str]:
    skip = ("NATS_URL", "RACCROCHAGE_PG_ADMIN_URL", "RACCROCHAGE_TOPOLOGY", "RACCROCHAGE_EXTRA_SERVICES")
    return {**{k: v for k, v in os.environ.items() if k not in skip}, "RACCROCHAGE_RIG_DIR": str(folder)}


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"raccrochage {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


async def _rows(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


def test_a_youth_from_the_siei_file_gets_a_confirmed_seat_and_psad_says_in_solution(tmp_path: Path) -> None:
    folder = tmp_path / "rig"
    env = _env(folder)
    out = _cli(env, "up", "--detach", "--main-jobs")
    try:
        assert "placements confirmed" in out, out[-3000:]
        foquale_db = service_environment(folder, "foquale")["DATABASE_URL"]
        psad_db = service_environment(folder, "psad")["DATABASE_URL"]
        offers = asyncio.run(_rows(foquale_db, "SELECT departement, source FROM offer"))
        assert {row["departement"] for row in offers} == {"24", "33", "40", "47", "64"}
        assert {row["source"] for row in offers} == {"partner_feed", "establishment_api"}
        placed = asyncio.run(_rows(foquale_db, "SELECT case_id FROM reservation WHERE state = 'confirmed'"))
        assert placed, "no reservation was confirmed"
        answered = asyncio.run(
            _rows(
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
            rows = asyncio.run(_rows(psad_db, "SELECT case_id FROM case_file WHERE status = 'in_solution'"))
            in_solution = {row["case_id"] for row in rows}
        assert placed_cases <= in_solution
    finally:
        _cli(env, "down")
