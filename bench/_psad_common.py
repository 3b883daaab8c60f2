"""Shared by bench/psad.py and bench/psad_latency.py: PSAD's database, topology and process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from _common import REPO_ROOT, migrated_database

PSAD_MIGRATIONS = REPO_ROOT / "services" / "psad" / "migrations"
TOKEN_KEY = "t" * 64  # RACCROCHAGE_TOKEN_KEY: the API is not called here


async def psad_database(servers, prefix: str = "bench_psad") -> str:
    """A new database with PSAD's migrations applied; its URL."""
    return await migrated_database(servers, PSAD_MIGRATIONS, prefix)


async def declare_psad_topology(nc) -> None:
    """Every stream of topology.toml and PSAD's durable consumers, as the rig declares them."""
    from raccrochage_platform.topology import declare, load_topology

    await declare(nc.jetstream(), load_topology(), services={"psad"})


@contextlib.contextmanager
def psad_process(servers, url: str, folder: Path, *, tag: str = "", **extra_env: str) -> Iterator:
    """`raccrochage serve psad` as its own process (raccrochage_rig.testing.processes);
    yields the ServiceProcess once its HTTP server listens (the port file is written)."""
    from raccrochage_rig.testing.processes import service_process

    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="psad",
        NATS_URL=servers.nats_url,
        DATABASE_URL=url,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(folder / "rig-psad"),
        **extra_env,
    )
    with service_process("psad", env, folder, tag=tag) as running:
        yield running


async def count_cases(conn, *, status: str | None = None) -> int:
    if status is None:
        return await conn.fetchval("SELECT count(*) FROM case_file")
    return await conn.fetchval("SELECT count(*) FROM case_file WHERE status = $1", status)
