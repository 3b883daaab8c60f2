"""One database and one role per service: a role reaches its own database only."""

from __future__ import annotations

import asyncpg
import pytest
from raccrochage_platform.topology import load_topology
from raccrochage_rig.provision import provision
from raccrochage_rig.testing.servers import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_service_role_cannot_connect_to_another_services_database(servers: Servers) -> None:
    topology = load_topology()
    passwords = {name: f"pw-{name}-x'y" for name in topology.services}
    urls = await provision(servers.pg_admin_url, topology, passwords)
    assert set(urls) == set(topology.services)

    own = await asyncpg.connect(urls["psad"])
    await own.execute("CREATE TABLE IF NOT EXISTS probe (id int)")  # it owns its database
    await own.close()

    psad_role_on_reperage = urls["psad"].rsplit("/", 1)[0] + "/reperage"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
        await asyncpg.connect(psad_role_on_reperage)

    # Provisioning again changes nothing and still works (a second `raccrochage up`).
    assert await provision(servers.pg_admin_url, topology, passwords) == urls
