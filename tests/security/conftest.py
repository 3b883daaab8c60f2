"""Any installed service started as the rig starts it, on the session's NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client
from raccrochage_platform.auth import mint
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.service import installed_services
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import ServiceProcess, service_process
from raccrochage_rig.testing.servers import Servers

TOKEN_KEY = "t" * 64
# The secrets the rig gives every service (rig/state.py), fixed for the tests.
SECRETS = {"RACCROCHAGE_TOKEN_KEY": TOKEN_KEY, "RACCROCHAGE_YOUTH_ID_KEY": "k" * 64}


def bearer(role: str, territory: str | None = None, organisation: str | None = None) -> dict[str, str]:
    token = mint(TOKEN_KEY, role=role, sub=f"{role}-test", territory=territory, organisation=organisation)
    return {"Authorization": f"Bearer {token}"}


# A token of every role (auth.Role; a territorial one for Gironde), a counsellor of another
# territory, a forged token and none.
TOKENS = {
    "none": {},
    "forged": {"Authorization": "Bearer forged.token.value"},
    "counsellor-33": bearer("counsellor", "33"),
    "counsellor-40": bearer("counsellor", "40"),
    "ops": bearer("ops"),
    "campaign_manager": bearer("campaign_manager"),
    "academy-33": bearer("academy", "33"),
    "mlds_coordinator-33": bearer("mlds_coordinator", "33"),
    "mlds_tutor-33": bearer("mlds_tutor", "33"),
    "buyer": bearer("buyer", organisation="bordeaux-metropole"),
    "company": bearer("company", organisation="btp-gironde"),
    "dpo": bearer("dpo"),
}
ROLE_OF = {label: label.split("-")[0] for label in TOKENS}


@pytest_asyncio.fixture(loop_scope="session")
async def start_service(
    servers: Servers, nc: Client, deadletter_stream: str, tmp_path: Path
) -> AsyncIterator[Callable[[str], Awaitable[ServiceProcess]]]:
    """`await start_service(name)`: a fresh migrated database, the service's streams and
    consumers, and the service as its own process (as the rig runs it); stopped after the test."""
    specs = installed_services()
    topology = load_topology()
    with contextlib.ExitStack() as stack:

        async def start(name: str) -> ServiceProcess:
            url = await servers.create_database(name)
            await asyncio.to_thread(upgrade, specs[name].migrations, url)
            await declare(nc.jetstream(), topology, services={name})
            env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
            env.update(
                SECRETS,
                RACCROCHAGE_SERVICE=name,
                NATS_URL=servers.nats_url,
                DATABASE_URL=url,
                RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
            )
            return await asyncio.to_thread(stack.enter_context, service_process(name, env, tmp_path))

        yield start
