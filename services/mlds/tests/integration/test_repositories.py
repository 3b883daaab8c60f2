"""The MLDS repositories against real PostgreSQL: round trips, places held by the database under
concurrent admissions, candidacies locked for their transaction."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from raccrochage_mlds.adapters.repository import (
    ConcurrentUpdate,
    SqlCandidacyRepository,
    SqlDispositifRepository,
)
from raccrochage_mlds.config import DEFAULT_CAPACITIES
from raccrochage_mlds.domain.admission import ADMISSION_STEPS, StepOutcome
from raccrochage_mlds.domain.candidacy import Candidacy, Channel, PsadRequest
from raccrochage_mlds.domain.catalogue import (
    CapacityError,
    Dispositif,
    DispositifKind,
    catalogue,
    read_directory,
)
from raccrochage_mlds.domain.dates import Dated
from raccrochage_mlds.domain.facts import Facts, SchoolLevel
from raccrochage_mlds.domain.states import ExitDestination
from raccrochage_mlds.reference import directory_text
from raccrochage_mlds.service_layer.unit_of_work import CandidacyNotFound, DispositifNotFound
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

T0 = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)
K = DispositifKind


def site(n: int, capacity: int = 10) -> Dispositif:
    """A PAPS of its own for each test (the database is shared by the module)."""
    return Dispositif(
        f"paps-33-{n:02d}",
        K.PAPS,
        "33",
        f"LP test {n}",
        "1 rue",
        "33000",
        "BORDEAUX",
        "05",
        capacity,
        updated_at=T0,
    )


async def store(engine, dispositif: Dispositif) -> None:
    async with engine.begin() as conn:
        assert await SqlDispositifRepository(conn).add(dispositif)


async def test_the_migration_creates_the_tables_the_outbox_and_the_inbox(engine) -> None:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        checks = await conn.run_sync(lambda sync: inspect(sync).get_check_constraints("dispositif"))
    assert {"dispositif", "candidacy", "outbox", "inbox", "alembic_version"} <= names
    assert "places_within_capacity" in {c["name"] for c in checks}


async def test_the_catalogue_round_trip_and_a_second_load_changes_nothing(engine) -> None:
    sites = catalogue(read_directory(directory_text()), DEFAULT_CAPACITIES, T0)
    async with engine.begin() as conn:
        repo = SqlDispositifRepository(conn)
        assert [await repo.add(s) for s in sites] == [True] * 51
    async with engine.begin() as conn:
        repo = SqlDispositifRepository(conn)
        assert [await repo.add(s) for s in sites[:3]] == [False] * 3
        micro = await repo.find(kind=K.MICRO_LYCEE)
        assert [s.dispositif_id for s in micro] == [
            "micro_lycee-33-01",
            "micro_lycee-33-02",
            "micro_lycee-47-01",
        ]
        assert len(await repo.find(kind=K.PAPS, departement="24")) == len(
            [s for s in sites if s.dispositif_id.startswith("paps-24")]
        )
        loaded = await repo.get("dipa-33-01")
        original = next(s for s in sites if s.dispositif_id == "dipa-33-01")
        assert {k: v for k, v in vars(loaded).items() if k != "changes"} == {
            k: v for k, v in vars(original).items() if k != "changes"
        }
        with pytest.raises(DispositifNotFound):
            await repo.get("paps-99-01")


async def test_places_taken_then_full_then_released(engine) -> None:
    await store(engine, site(60, capacity=2))
    async with engine.begin() as conn:
        repo = SqlDispositifRepository(conn)
        first = await repo.take_place("paps-33-60", T0)
        second = await repo.take_place("paps-33-60", T0 + timedelta(minutes=1))
        assert (first.places_taken, first.revision, second.places_taken, second.places_left) == (1, 2, 2, 0)
        assert await repo.take_place("paps-33-60", T0) is None  # full
        assert (await repo.release_place("paps-33-60", T0)).places_taken == 1
        assert (await repo.get("paps-33-60")).updated_at == T0 + timedelta(minutes=1)  # never goes back
        with pytest.raises(DispositifNotFound):
            await repo.take_place("paps-99-01", T0)


async def test_releasing_a_place_none_holds_is_refused(engine) -> None:
    await store(engine, site(61))
    async with engine.begin() as conn:
        with pytest.raises(CapacityError, match="no place is taken"):
            await SqlDispositifRepository(conn).release_place("paps-33-61", T0)


async def test_a_capacity_below_the_places_taken_is_refused_by_the_same_update(engine) -> None:
    await store(engine, site(62, capacity=5))
    async with engine.begin() as conn:
        repo = SqlDispositifRepository(conn)
        for _ in range(3):
            await repo.take_place("paps-33-62", T0)
        assert await repo.set_capacity("paps-33-62", 2, T0) is None
        changed = await repo.set_capacity("paps-33-62", 3, T0)
        assert (changed.capacity, changed.places_left) == (3, 0)


async def test_the_database_itself_refuses_more_places_than_the_capacity(engine) -> None:
    """The CHECK, for any writer that bypasses the repository (a hand-written fix, say)."""
    await store(engine, site(63, capacity=1))
    with pytest.raises(IntegrityError, match="places_within_capacity"):
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE dispositif SET places_taken = 2 WHERE dispositif_id = 'paps-33-63'")
            )


async def admit_one(engine, dispositif_id: str, n: int) -> Dispositif | None:
    async with engine.begin() as conn:
        return await SqlDispositifRepository(conn).take_place(dispositif_id, T0 + timedelta(seconds=n))


async def test_50_concurrent_admissions_on_10_places_admit_exactly_10(engine) -> None:
    await store(engine, site(64, capacity=10))
    results = await asyncio.gather(*(admit_one(engine, "paps-33-64", n) for n in range(50)))
    admitted = [r for r in results if r is not None]
    assert len(admitted) == 10
    assert sorted(r.places_taken for r in admitted) == list(range(1, 11))  # each saw its own count
    assert sorted(r.revision for r in admitted) == list(range(2, 12))
    async with engine.connect() as conn:
        final = await SqlDispositifRepository(conn).get("paps-33-64")
    assert (final.places_taken, final.places_left) == (10, 0)


async def test_capacity_cuts_racing_admissions_never_leave_more_taken_than_places(engine) -> None:
    await store(engine, site(65, capacity=20))

    async def cut(capacity: int) -> Dispositif | None:
        async with engine.begin() as conn:
            return await SqlDispositifRepository(conn).set_capacity("paps-33-65", capacity, T0)

    jobs = [admit_one(engine, "paps-33-65", n) for n in range(30)] + [cut(c) for c in (12, 8, 15, 5)]
    results = await asyncio.gather(*jobs)
    async with engine.connect() as conn:
        final = await SqlDispositifRepository(conn).get("paps-33-65")
    assert 0 <= final.places_taken <= final.capacity
    assert final.places_taken == sum(r is not None for r in results[:30])


# --- candidacies ---------------------------------------------------------------------------------


def full_candidacy(dispositif: Dispositif) -> Candidacy:
    """A candidacy with every part of its history filled: decisions, steps, admission,
    enrolment, exit, PAFI."""
    facts = Facts(
        age=Dated(16, T0.date()),
        months_out_of_school=Dated(0, T0.date()),
        still_enrolled=True,
        qualifying_diploma=False,
        level_reached=SchoolLevel.SECONDE,
    )
    candidacy = Candidacy.receive(
        uuid.uuid4(),
        "d" * 64,
        K.PAPS,
        "33",
        facts,
        T0,
        channel=Channel.PSAD_REQUEST,
        request=PsadRequest(uuid.uuid4(), uuid.uuid4(), "psad-33-medoc", uuid.uuid4()),
        dispositif=dispositif,
    )
    candidacy.decide(T0)
    candidacy.record_pafi(T0.date(), T0)
    step = ADMISSION_STEPS[K.PAPS][0]
    candidacy.record_step(
        step.code, StepOutcome.FAVOURABLE, T0.date(), sorted(step.deciders)[0], T0 + timedelta(hours=1)
    )
    candidacy.admit(dispositif, T0.date(), T0 + timedelta(hours=2))
    candidacy.enrol((T0 + timedelta(days=1)).date(), T0 + timedelta(days=1))
    later = T0 + timedelta(days=100)
    candidacy.exit_to(
        ExitDestination.BACK_TO_SCHOOL, later.date(), later, school_level="1re", diploma_obtained="none"
    )
    candidacy.events.clear()
    return candidacy


def state(candidacy: Candidacy) -> dict:
    return {k: v for k, v in vars(candidacy).items() if k not in ("events", "version")}


async def test_a_candidacy_survives_the_round_trip_with_its_whole_history(engine) -> None:
    dispositif = site(66)
    await store(engine, dispositif)
    candidacy = full_candidacy(dispositif)
    async with engine.begin() as conn:
        assert await SqlCandidacyRepository(conn).add(candidacy)
    async with engine.begin() as conn:
        repo = SqlCandidacyRepository(conn)
        loaded = await repo.get(candidacy.candidacy_id)
        assert state(loaded) == state(candidacy) and loaded.version == 1
        assert loaded.decisions[0].results[0].evidence  # what each rule saw is kept here
        assert (await repo.for_request(candidacy.request.request_id)).candidacy_id == candidacy.candidacy_id
        assert await repo.for_request(uuid.uuid4()) is None
        with pytest.raises(CandidacyNotFound):
            await repo.get(uuid.uuid4())


async def test_one_candidacy_per_psad_request(engine) -> None:
    dispositif = site(67)
    await store(engine, dispositif)
    first = full_candidacy(dispositif)
    second = copy.deepcopy(first)
    second.candidacy_id = uuid.uuid4()
    async with engine.begin() as conn:
        repo = SqlCandidacyRepository(conn)
        assert await repo.add(first) is True
        assert await repo.add(second) is False


async def test_a_save_from_a_stale_copy_is_refused(engine) -> None:
    dispositif = site(68)
    await store(engine, dispositif)
    candidacy = full_candidacy(dispositif)
    async with engine.begin() as conn:
        await SqlCandidacyRepository(conn).add(candidacy)
    stale = copy.deepcopy(candidacy)
    async with engine.begin() as conn:
        repo = SqlCandidacyRepository(conn)
        fresh = await repo.get(candidacy.candidacy_id)
        await repo.save(fresh)
        assert fresh.version == 2
        with pytest.raises(ConcurrentUpdate):
            await repo.save(stale)


async def test_a_candidacy_is_held_for_the_transaction_that_got_it(engine) -> None:
    dispositif = site(69)
    await store(engine, dispositif)
    candidacy = full_candidacy(dispositif)
    async with engine.begin() as conn:
        await SqlCandidacyRepository(conn).add(candidacy)
    got_second = asyncio.Event()

    async def second() -> None:
        async with engine.begin() as conn:
            await SqlCandidacyRepository(conn).get(candidacy.candidacy_id)
            got_second.set()

    async with engine.begin() as conn:
        await SqlCandidacyRepository(conn).get(candidacy.candidacy_id)
        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not got_second.is_set()  # queued behind the first transaction
    await asyncio.wait_for(waiting, 5)
    assert got_second.is_set()


async def test_the_migration_goes_down_and_up_again(servers) -> None:
    from alembic import command
    from raccrochage_platform.migrations import alembic_config

    from .conftest import MIGRATIONS

    url = await servers.create_database("mlds_down")
    config = alembic_config(MIGRATIONS, url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")
