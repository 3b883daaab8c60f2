"""The identity audit on real PostgreSQL: append-only for the service's role (tried), a hash chain
that concurrent reads do not fork, and `raccrochage privacy audit verify` finding an edited, a
deleted and a moved row."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from raccrochage_platform.db import libpq_dsn, make_engine
from raccrochage_platform.migrations import upgrade
from raccrochage_reperage.adapters import audit
from raccrochage_reperage.service_layer.unit_of_work import IdentityRead
from raccrochage_rig.provision import service_database_url

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
    tampering: str, reperage_db: str, conn, reperage_env: dict[str, str]
) -> None:
    await append(reperage_db, 5)
    env = {**reperage_env, "DATABASE_URL": reperage_db}
    whole = await asyncio.create_subprocess_exec(
        RACCROCHAGE, "privacy", "audit", "verify", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await whole.communicate()
    assert whole.returncode == 0 and b"5 rows, chain whole" in out

    statements, seq, problem = TAMPERING[tampering]
    # Whoever tampers must get past the trigger: the database's owner or a superuser.
    await conn.execute("ALTER TABLE identity_audit DISABLE TRIGGER USER")
    for statement in statements:
        await conn.execute(statement)

    broken = await asyncio.create_subprocess_exec(
        RACCROCHAGE, "privacy", "audit", "verify", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await broken.communicate()
    assert broken.returncode == 1
    assert f"identity audit broken at row {seq}: ".encode() in err and problem.encode() in err


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
