"""PSAD's retention (adapters/retention.py) on real PostgreSQL with a frozen clock: a closed case
is anonymised the day after its period, not the day before, and still counts among the closed
cases of its PSAD with its coded history."""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from raccrochage_platform.cli import app
from raccrochage_platform.db import make_engine
from raccrochage_platform.retention import RetentionSettings, apply_retention
from raccrochage_psad.adapters.retention import rules
from raccrochage_psad.domain.case import Case
from raccrochage_psad.domain.contact import Channel, ContactOutcome
from raccrochage_psad.domain.states import CloseReason
from raccrochage_psad.service_layer.unit_of_work import SqlPsadUnitOfWork
from sqlalchemy import text
from typer.testing import CliRunner

from .helpers import youth_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Earlier than any other test's cases: only this test's are ever due.
CLOSED = datetime(2019, 3, 1, 9, tzinfo=UTC)
PSAD = "psad-33-retention"


async def test_a_closed_case_is_anonymised_after_its_period_and_still_counts(psad_db: str) -> None:
    engine = make_engine(psad_db, pool_size=2)
    settings = RetentionSettings()
    unit_of_work = functools.partial(SqlPsadUnitOfWork, engine, source="raccrochage/psad", stream="PSAD")
    youth = youth_id(f"retention-{uuid.uuid4()}")
    case = Case.open(str(uuid.uuid4()), youth, PSAD, "33", 17, CLOSED - timedelta(days=30))
    case.record_contact_attempt(Channel.PHONE, ContactOutcome.REACHED, CLOSED - timedelta(days=29), by="c1")
    case.close(CloseReason.REFUSES_SUPPORT, CLOSED)
    async with unit_of_work() as uow:
        await uow.cases.insert_new([case])
        await uow.cases.save(case)
        await uow.commit()

    async def closed_of_psad() -> list[tuple]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT youth_id, close_reason FROM case_file WHERE psad_id = :p AND status = 'closed'"),
                {"p": PSAD},
            )
            return [tuple(row) for row in rows]

    period = timedelta(days=settings.psad_closed_case_days)
    try:
        counts = await apply_retention(engine, "psad", rules(settings), CLOSED + period - timedelta(days=1))
        assert counts["case_file"] == 0 and await closed_of_psad() == [(youth, "refuses_support")]

        counts = await apply_retention(engine, "psad", rules(settings), CLOSED + period + timedelta(days=1))
        assert counts["case_file"] == 1
        assert await closed_of_psad() == [("erased", "refuses_support")]
        async with unit_of_work() as uow:
            kept = await uow.cases.get(case.case_id, lock=False)
        assert kept.youth_id == "erased" and kept.attempts == case.attempts

        again = await apply_retention(engine, "psad", rules(settings), CLOSED + period + timedelta(days=2))
        assert again["case_file"] == 0  # nothing left to do: the next day's run is a no-op
    finally:
        await engine.dispose()


async def test_the_operator_command_counts_what_is_due_and_applies_it(psad_db: str) -> None:
    engine = make_engine(psad_db, pool_size=2)
    case = Case.open(str(uuid.uuid4()), youth_id(f"cli-{uuid.uuid4()}"), PSAD, "33", 17, CLOSED)
    case.close(CloseReason.REFUSES_SUPPORT, CLOSED)
    async with SqlPsadUnitOfWork(engine, source="raccrochage/psad", stream="PSAD") as uow:
        await uow.cases.insert_new([case])
        await uow.cases.save(case)
        await uow.commit()
    await engine.dispose()
    runner = CliRunner()
    env = {"DATABASE_URL": psad_db, "RETENTION_PSAD_CLOSED_CASE_DAYS": "1000"}  # only 2019 cases are due

    dry = await asyncio.to_thread(
        runner.invoke, app, ["retention", "run", "--service", "psad", "--dry-run"], env=env
    )
    assert dry.exit_code == 0, dry.output
    assert re.search(r"^psad\s+case_file\s+due\s+[1-9]", dry.stdout, re.MULTILINE)
    done = await asyncio.to_thread(runner.invoke, app, ["retention", "run", "--service", "psad"], env=env)
    assert re.search(r"^psad\s+case_file\s+anonymised\s+[1-9]", done.stdout, re.MULTILINE)
    again = await asyncio.to_thread(
        runner.invoke, app, ["retention", "run", "--service", "psad", "--dry-run"], env=env
    )
    assert re.search(r"^psad\s+case_file\s+due\s+0$", again.stdout, re.MULTILINE)
    assert case.youth_id not in dry.output + done.output  # counts only
