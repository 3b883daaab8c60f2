"""Ingest against real PostgreSQL and NATS: the path, idempotent re-ingest, kill and re-run."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client
from raccrochage_platform.db import exclusive, libpq_dsn, make_engine
from raccrochage_platform.outbox import OutboxRelay
from raccrochage_reperage.config import ReperageSettings
from raccrochage_reperage.domain.demo import generate
from raccrochage_reperage.domain.partners import PartnerSource
from raccrochage_reperage.entrypoints.cli import unit_of_work_factory
from raccrochage_reperage.service_layer.ingest import CampaignConflict, ingest_campaign, ingest_job
from raccrochage_reperage.service_layer.partner_file import ingest_partner_file

pytestmark = pytest.mark.asyncio(loop_scope="session")
AS_OF = date(2026, 11, 2)
KEY = b"k" * 64


def policy():
    return ReperageSettings.model_construct(
        min_age=16,
        max_age=25,
        qualifying_diplomas="CAP,BEP,BP,BAC_PRO,BAC_GENERAL,BAC_TECHNO,BTS,DUT,BUT,LICENCE,MASTER,DOCTORAT",
    ).policy()


async def ingest(url: str, path: Path, campaign: str = "c1", as_of: date = AS_OF):
    """As `raccrochage ingest siei` runs it, without a relay: the events stay in the outbox."""
    engine = make_engine(url)
    try:
        return await ingest_campaign(
            path,
            campaign_id=campaign,
            as_of=as_of,
            unit_of_work=unit_of_work_factory(engine),
            key=KEY,
            policy=policy(),
        )
    finally:
        await engine.dispose()


async def load_partners(url: str, folder: Path) -> None:
    engine = make_engine(url)
    for path in sorted(folder.glob("partner_*.csv")):
        await ingest_partner_file(
            path,
            source=PartnerSource(path.stem.split("_", 1)[1]),
            unit_of_work=unit_of_work_factory(engine),
            today=AS_OF,
        )
    await engine.dispose()


async def scalar(url: str, sql: str, *args):
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_ingest_path_counts_and_events(
    reperage_db: str, nc: Client, reperage_stream: str, tmp_path: Path
) -> None:
    files = generate(600, 7, tmp_path, campaign="c1", as_of=AS_OF)
    await load_partners(reperage_db, tmp_path)
    summary = (await ingest(reperage_db, files.siei)).as_dict()

    assert (
        summary["rows"]
        == summary["rejected"] + summary["duplicates"] + summary["excluded"] + summary["identified"]
    )
    assert summary["identified"] > 0 and summary["excluded_by_reason"]["found_in_partner_base"] > 0
    assert summary["rejected"] > 0 and summary["duplicates"] > 0 and not summary["already_ingested"]
    assert (
        await scalar(reperage_db, "SELECT count(*) FROM campaign_youth WHERE outcome = 'identified'")
        == summary["identified"]
    )
    assert await scalar(reperage_db, "SELECT count(*) FROM rejection") == summary["rejected"]
    assert await scalar(reperage_db, "SELECT count(*) FROM handover WHERE open") == summary["identified"]
    assert await scalar(reperage_db, "SELECT count(*) FROM outbox") == summary["identified"] + 1

    # Events carry no identity: no INE, name, phone, e-mail or birth date of the vault.
    envelopes = await scalar(
        reperage_db, "SELECT string_agg(convert_from(envelope, 'UTF8'), '\n') FROM outbox"
    )
    conn = await asyncpg.connect(libpq_dsn(reperage_db))
    identities = await conn.fetch(
        "SELECT ine, nom, telephone, courriel, date_naissance::text AS birth FROM youth "
        "JOIN handover USING (youth_id) LIMIT 50"
    )
    await conn.close()
    for person in identities:
        for value in (person["ine"], person["telephone"], person["courriel"], person["birth"]):
            assert value is None or value not in envelopes
        assert f'"{person["nom"]}"' not in envelopes

    engine = make_engine(reperage_db)
    relay = OutboxRelay(engine, nc.jetstream())
    await relay.drain()
    assert await relay.backlog() == 0
    await engine.dispose()


async def test_reingest_changes_nothing(reperage_db: str, reperage_stream: str, tmp_path: Path) -> None:
    files = generate(300, 3, tmp_path, campaign="c1", as_of=AS_OF)
    first = (await ingest(reperage_db, files.siei)).as_dict()
    outbox_rows = await scalar(reperage_db, "SELECT count(*) FROM outbox")
    again = (await ingest(reperage_db, files.siei)).as_dict()
    assert again["already_ingested"] is True
    assert {k: v for k, v in again.items() if k != "already_ingested"} == {
        k: v for k, v in first.items() if k != "already_ingested"
    }
    assert await scalar(reperage_db, "SELECT count(*) FROM outbox") == outbox_rows
    other = tmp_path / "other.csv"
    other.write_bytes(files.siei.read_bytes() + b"\n")
    with pytest.raises(CampaignConflict, match="another file"):
        await ingest(reperage_db, other)


async def test_a_youth_in_a_later_campaign_is_reported_again_not_identified_twice(
    reperage_db: str, reperage_stream: str, tmp_path: Path
) -> None:
    files = generate(300, 5, tmp_path, campaign="c1", as_of=AS_OF)
    first = (await ingest(reperage_db, files.siei, "c1")).as_dict()
    versions = "SELECT string_agg(youth_id || xmin::text, ',' ORDER BY youth_id) FROM youth"
    vault = await scalar(reperage_db, versions)
    second = (await ingest(reperage_db, files.siei, "c2")).as_dict()
    assert await scalar(reperage_db, versions) == vault  # the same details: no vault row rewritten
    assert second["identified"] == first["identified"] and second["reported_again"] == first["identified"]
    assert (
        await scalar(
            reperage_db, "SELECT count(*) FROM outbox WHERE event_type = 'reperage.youth.identified.v1'"
        )
        == first["identified"]
    )
    assert (
        await scalar(
            reperage_db, "SELECT count(*) FROM outbox WHERE event_type = 'reperage.youth.reported_again.v1'"
        )
        == first["identified"]
    )


KILLABLE = """
import asyncio, sys
from datetime import date
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_ingest import ingest
asyncio.run(ingest({url!r}, Path({path!r})))
"""


async def test_a_second_upload_while_the_campaign_is_being_ingested_is_refused(
    reperage_db: str, reperage_stream: str, tmp_path: Path
) -> None:
    files = generate(300, 3, tmp_path, campaign="c1", as_of=AS_OF)
    engine = make_engine(reperage_db)
    try:
        async with exclusive(engine, ingest_job("c1")):  # an ingest of c1 runs, in another process
            with pytest.raises(CampaignConflict, match="c1 is being ingested right now"):
                await ingest(reperage_db, files.siei)
        assert await scalar(reperage_db, "SELECT count(*) FROM campaign") == 0
        assert (await ingest(reperage_db, files.siei)).as_dict()["already_ingested"] is False
    finally:
        await engine.dispose()


async def test_an_ingest_killed_midway_converges_on_rerun(
    reperage_db: str, reperage_stream: str, tmp_path: Path
) -> None:
    files = generate(30_000, 11, tmp_path, campaign="c1", as_of=AS_OF)
    script = KILLABLE.format(tests=str(Path(__file__).parent), url=reperage_db, path=str(files.siei))
    victim = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            done = await scalar(reperage_db, "SELECT count(*) FROM campaign_youth")
            if done >= 5000 or victim.poll() is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert await scalar(reperage_db, "SELECT status FROM campaign WHERE campaign_id = 'c1'") == "ingesting"
    partial_events = await scalar(reperage_db, "SELECT count(*) FROM outbox")
    assert partial_events > 0

    summary = (await ingest(reperage_db, files.siei)).as_dict()
    assert summary["already_ingested"] is False
    assert await scalar(reperage_db, "SELECT status FROM campaign WHERE campaign_id = 'c1'") == "done"
    identified = await scalar(reperage_db, "SELECT count(*) FROM campaign_youth WHERE outcome = 'identified'")
    assert identified == summary["identified"] and summary["reported_again"] == 0
    assert await scalar(reperage_db, "SELECT count(*) FROM outbox") == summary["identified"] + 1
    assert (
        await scalar(
            reperage_db,
            "SELECT count(DISTINCT aggregate_key) FROM outbox "
            "WHERE event_type = 'reperage.youth.identified.v1'",
        )
        == summary["identified"]
    )
    assert (
        json.loads(await scalar(reperage_db, "SELECT summary::text FROM campaign"))["rows"] == summary["rows"]
    )


async def test_duplicates_across_chunks_are_found_in_the_database(
    reperage_db: str, reperage_stream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tiny chunks nearly every duplicate's first row is in an earlier chunk, which the
    ingest no longer remembers: the database tells. Counts must still be the planned ones."""
    from raccrochage_reperage.service_layer import ingest as ingest_module

    files = generate(400, 13, tmp_path, campaign="c1", as_of=AS_OF)
    await load_partners(reperage_db, tmp_path)
    monkeypatch.setattr(ingest_module, "CHUNK", 7)
    summary = (await ingest(reperage_db, files.siei)).as_dict()
    assert summary["duplicates"] == files.planned.duplicates > 0
    assert summary["identified"] == files.planned.identified
    assert summary["excluded_by_reason"] == files.planned.as_dict()["excluded_by_reason"]
    assert (
        summary["rows"]
        == summary["rejected"] + summary["duplicates"] + summary["excluded"] + summary["identified"]
    )
    assert (
        await scalar(reperage_db, "SELECT count(*) FROM campaign_youth")
        == summary["excluded"] + summary["identified"]
    )
    # Only youths handed over are kept in the vault.
    assert await scalar(reperage_db, "SELECT count(*) FROM youth") == summary["identified"]
    assert await scalar(reperage_db, "SELECT count(*) FROM outbox") == summary["identified"] + 1
