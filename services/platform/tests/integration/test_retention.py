"""The retention runner (raccrochage_platform.retention) on real PostgreSQL: a batch per
transaction until nothing is due, a crash resumed from what is left, a dry run that changes
nothing, and counts (never keys) in the metric and the log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from prometheus_client import REGISTRY
from raccrochage_platform.retention import RetentionRule, apply_retention, before
from sqlalchemy import Column, DateTime, MetaData, Table, Text, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = datetime(2030, 1, 10, tzinfo=UTC)
PERIOD_DAYS = 30


def record_table() -> Table:
    return Table(
        f"record_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("record_id", Text, primary_key=True),
        Column("youth_id", Text),
        Column("ended_at", DateTime(timezone=True), nullable=False),
    )


def rule_of(table: Table, *, fail_after: int | None = None) -> RetentionRule:
    done = {"batches": 0}

    def due(now: datetime):
        return and_(table.c.ended_at < before(now, PERIOD_DAYS), table.c.youth_id.is_not(None))

    async def anonymise(connection, keys) -> None:
        if fail_after is not None and done["batches"] == fail_after:
            raise RuntimeError("the process died")
        done["batches"] += 1
        await connection.execute(update(table).where(table.c.record_id.in_(keys)).values(youth_id=None))

    return RetentionRule("record", "anonymised", table, ("record_id",), due, anonymise)


async def table_with(engine: AsyncEngine, ended: list[datetime]) -> Table:
    table = record_table()
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
        await conn.execute(
            table.insert(),
            [{"record_id": f"r{i}", "youth_id": f"y{i:064d}", "ended_at": at} for i, at in enumerate(ended)],
        )
    return table


async def named(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).where(table.c.youth_id.is_not(None)))


def applied(service: str) -> float:
    value = REGISTRY.get_sample_value(
        "raccrochage_retention_applied_total", {"service": service, "kind": "record", "action": "anonymised"}
    )
    return value or 0.0


async def test_one_day_before_nothing_changes_and_one_day_after_every_batch_commits(
    service_engine: AsyncEngine,
) -> None:
    ended = NOW - timedelta(days=PERIOD_DAYS)
    table = await table_with(service_engine, [ended] * 5 + [NOW])
    rule, service = rule_of(table), f"svc_{uuid.uuid4().hex[:6]}"

    counts = await apply_retention(service_engine, service, [rule], NOW - timedelta(days=1), batch_size=2)
    assert counts == {"record": 0} and await named(service_engine, table) == 6

    dry = await apply_retention(service_engine, service, [rule], NOW + timedelta(days=1), dry_run=True)
    assert dry == {"record": 5} and await named(service_engine, table) == 6 and applied(service) == 0

    with structlog.testing.capture_logs() as logs:
        counts = await apply_retention(service_engine, service, [rule], NOW + timedelta(days=1), batch_size=2)
    assert counts == {"record": 5} and await named(service_engine, table) == 1
    assert applied(service) == 5
    [line] = [entry for entry in logs if entry["event"] == "retention_applied"]
    assert line["counts"] == {"record": 5} and "y0" not in repr(line)


async def test_a_crash_between_batches_keeps_what_committed_and_the_next_run_does_the_rest(
    service_engine: AsyncEngine,
) -> None:
    table = await table_with(service_engine, [NOW - timedelta(days=PERIOD_DAYS + 1)] * 5)
    with pytest.raises(RuntimeError):
        await apply_retention(service_engine, "svc", [rule_of(table, fail_after=1)], NOW, batch_size=2)
    assert await named(service_engine, table) == 3  # the first batch committed, the second did not

    counts = await apply_retention(service_engine, "svc", [rule_of(table)], NOW, batch_size=2)
    assert counts == {"record": 3} and await named(service_engine, table) == 0
