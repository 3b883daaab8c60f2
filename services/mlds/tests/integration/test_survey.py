"""The yearly survey from the running service's stream: `GET /survey` and `raccrochage mlds
survey` give the same file, the same as the survey of the events the service wrote to its
outbox, and no youth_id."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
from raccrochage_contracts import CloudEvent
from raccrochage_mlds.adapters.survey_files import survey_csv
from raccrochage_mlds.domain.dates import SchoolYear
from raccrochage_mlds.service_layer.survey import survey_from_events

from .helpers import api, eventually, fetch, token

PAPS_FACTS = {
    "age": 17,
    "months_out_of_school": 3,
    "still_enrolled": False,
    "has_solution": False,
    "qualifying_diploma": False,
}


async def _through_exit(client, youth: str, today: str, exit_to: str | None) -> None:
    body = {
        "youth_id": youth,
        "kind": "paps",
        "departement": "33",
        "facts": PAPS_FACTS,
        "dispositif_id": "paps-33-04",
    }
    cid = (await client.post("/candidacies", json=body)).json()["candidacy_id"]
    step = {"step": "reception_interview", "outcome": "favourable", "held_on": today, "decided_by": "cio"}
    for path, payload in (("steps", step), ("admit", {}), ("enrol", {"started_on": today})):
        answer = await client.post(f"/candidacies/{cid}/{path}", json=payload)
        assert answer.status_code == 200, answer.text
    if exit_to:
        answer = await client.post(
            f"/candidacies/{cid}/exit", json={"destination": exit_to, "exited_on": today}
        )
        assert answer.status_code == 200, answer.text


async def test_the_survey_from_the_stream_is_the_same_by_api_cli_and_outbox(
    mlds_service, mlds_env: dict[str, str], mlds_db: str, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    year = SchoolYear.containing(today)
    youths = [uuid.uuid4().hex * 2 for _ in range(7)]
    async with api(mlds_service.url) as client:
        assert (
            await client.put("/dispositifs/paps-33-04/capacity", json={"capacity": 10})
        ).status_code == 200
        for n, youth in enumerate(youths):
            await _through_exit(client, youth, today.isoformat(), "training" if n < 5 else None)

    async def published() -> bool:
        rows = await fetch(mlds_db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return rows[0][0] == 0

    await eventually(published, what="the outbox published")
    async with api(mlds_service.url, token("ops", None)) as ops:
        answer = await ops.get("/survey", params={"year": str(year), "format": "csv"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        as_json = (await ops.get("/survey", params={"year": str(year)})).json()
        assert (await ops.get("/survey", params={"year": "2026-2028"})).status_code == 422
    from_api = answer.text
    rows = {tuple(r[c] for c in as_json["columns"][:4]): r["value"] for r in as_json["rows"]}
    assert rows[("entries", "paps", "33", "count")] == "7"
    assert rows[("exits", "paps", "33", "count")] == "5"
    assert rows[("exits_by_destination", "paps", "all", "employment")] == "s"  # 0 < 5: withheld

    out = tmp_path / "survey.csv"
    env = {**mlds_env, "RACCROCHAGE_RIG_DIR": str(tmp_path / "no-rig")}
    cli = [sys.executable, "-m", "raccrochage_platform.cli", "mlds", "survey", "--year", str(year)]
    done = await asyncio.to_thread(
        subprocess.run, [*cli, "--out", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == from_api
    xlsx = tmp_path / "survey.xlsx"
    done = await asyncio.to_thread(
        subprocess.run, [*cli, "--out", str(xlsx)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    sheet = openpyxl.load_workbook(xlsx).active
    cells = [tuple(str(v) for v in row) for row in sheet.iter_rows(values_only=True)]
    assert cells == [tuple(line.split(",")) for line in from_api.splitlines()]

    envelopes = [
        CloudEvent.from_json(bytes(row[0]))
        for row in await fetch(
            mlds_db, "SELECT envelope FROM outbox WHERE event_type LIKE 'mlds.enrolment.%'"
        )
    ]
    assert survey_csv(survey_from_events(envelopes, year)) == from_api
    assert not any(youth in from_api for youth in youths)
