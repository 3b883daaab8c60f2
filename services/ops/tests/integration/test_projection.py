"""Ops' projections on real servers: what the streams hold reaches the read models once, and a
rebuild (drop the read models, replay the streams) gives the same figures."""

from __future__ import annotations

import asyncpg
from raccrochage_ops.adapters.tables import READ_MODELS
from raccrochage_ops.domain import projection
from raccrochage_ops.domain.projection import ROW_KINDS, Store
from raccrochage_ops.service_layer.projecting import CONSUMERS
from raccrochage_ops.synthetic import campaign
from raccrochage_platform.db import libpq_dsn

from .conftest import caught_up, client, eventually, publish_all


async def read_models(db_url: str) -> dict[str, list[dict]]:
    conn = await asyncpg.connect(libpq_dsn(db_url))
    try:
        out = {}
        for kind in ROW_KINDS:
            rows = await conn.fetch(f"SELECT * FROM {READ_MODELS[kind].name} ORDER BY {kind.KEY}")
            out[kind.TABLE] = [dict(r) for r in rows]
        return out
    finally:
        await conn.close()


async def inbox_times(db_url: str, which: str = "max"):
    conn = await asyncpg.connect(libpq_dsn(db_url))
    try:
        return await conn.fetchval(f"SELECT {which}(handled_at) FROM inbox WHERE consumer LIKE 'ops\\_%'")
    finally:
        await conn.close()


async def counts_match_the_rows(db_url: str, expected: Store) -> None:
    """The dashboard's one-scan SQL counts equal the same counts made in Python over the rows."""
    from datetime import UTC, datetime, timedelta

    from raccrochage_ops.adapters.repository import Filters, ProjectionRepository
    from raccrochage_platform.db import make_engine

    now = datetime(2027, 2, 15, tzinfo=UTC)
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            counted = await ProjectionRepository(conn).funnel(Filters(departement="33"), now)
            weekly = await ProjectionRepository(conn).weekly(Filters())
    finally:
        await engine.dispose()
    youths = [y for y in expected.rows[ROW_KINDS[0]].values()]
    mine = [y for y in youths if y.departement == "33"]
    opened_before = lambda y, days: (  # noqa: E731
        y.case_opened_at is not None
        and y.status != "closed"
        and y.case_opened_at <= now - timedelta(days=days)
    )
    assert counted["handed_over"] == sum(y.campaign_id is not None for y in mine)
    assert counted["contacted"] == sum(y.first_contact_at is not None for y in mine)
    assert counted["interviewed_late"] == sum(
        y.interviewed_at is not None
        and y.interview_deadline is not None
        and y.interviewed_at.date() > y.interview_deadline
        for y in mine
    )
    assert counted["open_60"] == sum(opened_before(y, 60) for y in mine)
    assert counted["escalated"] == sum(y.escalated_on is not None for y in mine)
    assert counted["placed"] == sum(y.placed_at is not None for y in mine)
    closed: dict[str, int] = {}
    for y in mine:
        if y.status == "closed":
            closed[y.closed_reason] = closed.get(y.closed_reason, 0) + 1
    assert counted["closed_by_reason"] == closed
    assert counted["by_departement"]["33"]["case_opened"] == sum(y.case_opened_at is not None for y in mine)
    monday = lambda t: (t.date() - timedelta(days=t.weekday())).isoformat()  # noqa: E731
    opened: dict[str, int] = {}
    for y in youths:
        if y.case_opened_at is not None:
            opened[monday(y.case_opened_at)] = opened.get(monday(y.case_opened_at), 0) + 1
    assert {week: row["opened"] for week, row in weekly.items() if row["opened"]} == opened


def without_clock(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if k != "as_of"}


async def test_rebuild_from_the_streams_gives_the_same_figures(start_ops, nc, ops_db):
    events = campaign(400, seed=11)
    await publish_all(nc, events)
    service = start_ops()
    await eventually(lambda: caught_up(nc), what="ops consumers caught up")
    async with client(service.url) as http:
        before = (await http.get("/api/figures")).json()
        by_campaign = (
            await http.get("/api/figures", params={"campaign": "2026-11", "departement": "33"})
        ).json()
    rows_before = await read_models(ops_db)

    # The rows are what the pure rules make of the same events.
    expected = Store()
    projection.apply(expected, events)
    youths = {r["youth_id"]: r for r in rows_before["youth"]}
    assert len(youths) == 400
    expected_youths = {k: r.values() for k, r in expected.rows[ROW_KINDS[0]].items()}
    differing = {
        (k, name, value, youths[k][name])
        for k, row in expected_youths.items()
        for name, value in row.items()
        if youths[k][name] != value
    }
    assert not differing
    await counts_match_the_rows(ops_db, expected)

    last_handled = await inbox_times(ops_db)
    async with client(service.url) as http:
        started = await http.post("/api/rebuild")
        assert started.status_code == 202 and sorted(started.json()["rebuilding"]) == sorted(CONSUMERS)
        await eventually(lambda: caught_up(nc), what="the replay caught up")
        after = (await http.get("/api/figures")).json()
        by_campaign_after = (
            await http.get("/api/figures", params={"campaign": "2026-11", "departement": "33"})
        ).json()
    assert without_clock(after) == without_clock(before)
    assert without_clock(by_campaign_after) == without_clock(by_campaign)
    assert await read_models(ops_db) == rows_before
    assert before["funnel"]["handed_over"] == 400
    assert "projections_rebuilding" in service.log_text()
    # Every event was handled again, after the rebuild: the figures come from the replay.
    assert (await inbox_times(ops_db, "min")) > last_handled


async def test_an_event_delivered_again_is_projected_once(start_ops, nc, ops_db):
    events = campaign(30, seed=12)
    envelopes = await publish_all(nc, events)
    service = start_ops()
    await eventually(lambda: caught_up(nc), what="caught up")
    rows = await read_models(ops_db)
    # The same events again under new message ids (past the broker's dedup): the inbox skips them.
    js = nc.jetstream()
    from raccrochage_contracts import nats_subject

    for envelope in envelopes:
        await js.publish(
            nats_subject(envelope.type), envelope.to_json(), headers={"Nats-Msg-Id": f"{envelope.id}:again"}
        )
    await eventually(lambda: caught_up(nc), what="caught up again")
    assert await read_models(ops_db) == rows
    conn = await asyncpg.connect(libpq_dsn(ops_db))
    try:
        handled = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer LIKE 'ops\\_%'")
    finally:
        await conn.close()
    assert handled == len(envelopes)
    assert "dead_lettered" not in service.log_text()
