"""The identity audit on real PostgreSQL and NATS: append-only for the service's role (tried), a
hash chain that concurrent reads do not fork, and `raccrochage privacy audit verify` finding an
edited, a deleted and a moved row, and, against the heads anchored in the REPERAGE stream (by the
service and by verify itself), the chain's last rows deleted by a superuser."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_platform.db import libpq_dsn, make_engine
from raccrochage_platform.migrations import upgrade
from raccrochage_reperage.adapters import audit, audit_anchors
from raccrochage_reperage.service_layer.unit_of_work import IdentityRead
from raccrochage_rig.provision import service_database_url
from raccrochage_rig.testing.processes import service_process

from .conftest import MIGRATIONS

pytestmark = pytest.mark.asyncio(loop_scope="session")
RACCROCHAGE = str(Path(sys.executable).parent / "raccrochage")


def read(n: int, youth_id: str = "y") -> IdentityRead:
    return IdentityRead(
        "psad", f"{youth_id}{n}", "contact_card", f"case {n}", True, "counsellor", "conseillere-33", "33"
    )


async def append(url: str, count: int) -> None:
    """`count` reads audited at once, each in its own transaction."""
    engine = make_engine(url)

    async def one(n: int) -> None:
        async with engine.begin() as connection:
            await audit.append(connection, read(n))

    try:
        await asyncio.gather(*(one(n) for n in range(count)))
    finally:
        await engine.dispose()


async def verify(url: str) -> audit.ChainReport:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await audit.verify(connection)
    finally:
        await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def no_anchors(nc: Client, reperage_stream: str) -> None:
    """No head anchored by an earlier test's database: each test's chain is its own."""
    await nc.jetstream().purge_stream(reperage_stream, subject=audit_anchors.SUBJECT)


async def run_verify(env: dict[str, str]) -> tuple[int, str]:
    """`raccrochage privacy audit verify`: its exit code and its output (stdout, then stderr)."""
    process = await asyncio.create_subprocess_exec(
        RACCROCHAGE,
        "privacy",
        "audit",
        "verify",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, (out + err).decode()


async def test_the_service_role_may_append_to_the_audit_but_neither_update_nor_delete(servers) -> None:
    # As the rig provisions a service: its own role owns its database and migrates it.
    role, database = f"svc_audit_{uuid.uuid4().hex[:8]}", f"reperage_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(servers.pg_admin_url)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'secret'")
    await admin.execute(f'CREATE DATABASE "{database}" OWNER {role}')
    await admin.close()
    url = service_database_url(servers.pg_admin_url, database, role, "secret")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)

    await append(url, 3)
    service = await asyncpg.connect(libpq_dsn(url))
    try:
        for statement in (
            "UPDATE identity_audit SET purpose = 'nothing' WHERE seq = 2",
            "DELETE FROM identity_audit WHERE seq = 2",
            "TRUNCATE identity_audit",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await service.execute(statement)
        # The youth's link is the service's to delete (an erasure does).
        assert await service.execute("DELETE FROM identity_audit_youth WHERE youth_id = 'y1'") == "DELETE 1"
    finally:
        await service.close()
    # The owner's grants aside, the trigger refuses a superuser too.
    superuser = await asyncpg.connect(libpq_dsn(servers.database_url(database)))
    try:
        for statement in ("UPDATE identity_audit SET purpose = 'nothing'", "DELETE FROM identity_audit"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await superuser.execute(statement)
    finally:
        await superuser.close()
    report = await verify(url)
    assert report.ok and report.rows == 3


async def test_concurrent_reads_make_one_chain(reperage_db: str) -> None:
    await append(reperage_db, 40)
    report = await verify(reperage_db)
    assert report.ok and report.rows == 40


TAMPERING = {
    "edited": (["UPDATE identity_audit SET sub = 'someone-else' WHERE seq = 3"], 3, "was edited"),
    "deleted": (["DELETE FROM identity_audit WHERE seq = 3"], 4, "row 3 is missing"),
    "moved": (
        [
            "UPDATE identity_audit SET seq = -1 WHERE seq = 3",
            "UPDATE identity_audit SET seq = 3 WHERE seq = 4",
            "UPDATE identity_audit SET seq = 4 WHERE seq = -1",
        ],
        3,
        "does not follow row 2",
    ),
}


@pytest.mark.parametrize("tampering", TAMPERING)
async def test_verify_names_the_first_row_tampered_with(
    tampering: str, reperage_db: str, conn, reperage_env: dict[str, str], no_anchors: None
) -> None:
    await append(reperage_db, 5)
    env = {**reperage_env, "DATABASE_URL": reperage_db}
    code, out = await run_verify(env)
    assert code == 0 and "5 rows, chain whole" in out, out

    statements, seq, problem = TAMPERING[tampering]
    # Whoever tampers must get past the trigger: the database's owner or a superuser.
    await conn.execute("ALTER TABLE identity_audit DISABLE TRIGGER USER")
    for statement in statements:
        await conn.execute(statement)

    code, err = await run_verify(env)
    assert code == 1
    assert f"identity audit broken at row {seq}: " in err and problem in err, err


async def delete_last_rows(conn, first: int) -> None:
    """What a superuser can do to the chain: drop the trigger, delete from row `first` on."""
    await conn.execute("DROP TRIGGER identity_audit_no_change ON identity_audit")
    await conn.execute("DELETE FROM identity_audit_youth WHERE seq >= $1", first)
    await conn.execute("DELETE FROM identity_audit WHERE seq >= $1", first)


async def test_the_service_anchors_the_head_and_verify_finds_the_last_rows_deleted(
    reperage_db: str, conn, reperage_env: dict[str, str], no_anchors: None, nc: Client, tmp_path: Path
) -> None:
    await append(reperage_db, 5)
    # The service anchors the chain's head in the REPERAGE stream as it starts.
    with service_process("reperage", reperage_env, tmp_path):
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + 60
        while not (anchors := await audit_anchors.read(js)):
            assert asyncio.get_running_loop().time() < deadline, "the service anchored no head"
            await asyncio.sleep(0.2)
    assert [(a.seq, a.hash) for a in anchors] == [
        (5, (await conn.fetchval("SELECT hash FROM identity_audit WHERE seq = 5")))
    ]

    await delete_last_rows(conn, 4)
    assert (await verify(reperage_db)).ok  # the chain alone still verifies
    code, err = await run_verify({**reperage_env, "DATABASE_URL": reperage_db})
    assert code == 1, err
    assert "identity audit broken at row 4: the chain ends at row 3 but row 5 was anchored at " in err, err
    assert "rows 4 to 5 are missing (the chain's last rows were deleted)" in err, err


async def test_verify_anchors_the_head_and_finds_the_tail_written_again(
    reperage_db: str, conn, reperage_env: dict[str, str], no_anchors: None
) -> None:
    env = {**reperage_env, "DATABASE_URL": reperage_db}
    await append(reperage_db, 3)
    code, out = await run_verify(env)  # anchors row 3
    assert code == 0 and "3 rows, chain whole, 0 anchored heads held" in out, out
    await append(reperage_db, 2)
    code, out = await run_verify(env)  # the untouched chain holds row 3, anchors row 5
    assert code == 0 and "5 rows, chain whole, 1 anchored heads held" in out, out

    # Rows 3 to 5 deleted and two rows appended after row 2: a chain of 4 that verifies alone.
    await delete_last_rows(conn, 3)
    await append(reperage_db, 2)
    assert (await verify(reperage_db)).ok
    code, err = await run_verify(env)
    assert code == 1, err
    assert "identity audit broken at row 3: row 3 is not the row anchored at " in err, err
    assert "(rows from 3 on were deleted and written again)" in err, err


async def test_the_contact_card_audit_moves_into_the_chain(servers) -> None:
    url = await servers.create_database("reperage")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, "0009")
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        # The table as 0009 had it (0001 builds from the live metadata, which no longer has it).
        await conn.execute(
            "CREATE TABLE contact_card_audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "caller text NOT NULL, youth_id text NOT NULL, purpose text NOT NULL, granted boolean NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO contact_card_audit (caller, youth_id, purpose, granted) VALUES "
            "('psad', 'y1', 'case 1', true), ('psad', 'erased', 'case 2', true), ('dpo:d', 'y3', 'export', true)"
        )
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        rows = await conn.fetch(
            "SELECT seq, caller, what, purpose, youth_id FROM identity_audit "
            "LEFT JOIN identity_audit_youth USING (seq) ORDER BY seq"
        )
        assert not await conn.fetchval("SELECT to_regclass('contact_card_audit') IS NOT NULL")
    finally:
        await conn.close()
    assert [tuple(row.values()) for row in rows] == [
        (1, "psad", "contact_card", "case 1", "y1"),
        (2, "psad", "contact_card", "case 2", None),
        (3, "dpo:d", "export", "export", "y3"),
    ]
    assert (await verify(url)).ok


async def test_verify_without_the_anchors_exits_2(reperage_db: str, reperage_env: dict[str, str]) -> None:
    await append(reperage_db, 2)
    # Nothing listens on port 1: the anchors cannot be read, so the chain is not called whole.
    code, err = await run_verify(
        {**reperage_env, "DATABASE_URL": reperage_db, "NATS_URL": "nats://127.0.0.1:1"}
    )
    assert code == 2 and "cannot read the audit's anchors: NATS is unreachable" in err, err
