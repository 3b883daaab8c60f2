"""The erasure's stream sweep on a real nats-server with the production users (deploy/nats/
users.conf) and a real PostgreSQL: the vault's user deletes an erased youth's messages from a
service stream and from the dead letters, and nothing else; psad's user, denied message deletion,
deletes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_contracts.events.privacy_v1 import ErasureDone
from raccrochage_platform.topology import REPO_ROOT, declare_stream, load_topology
from raccrochage_reperage.adapters.stream_sweep import JetStreamSweeper
from raccrochage_reperage.entrypoints.cli import unit_of_work_factory
from raccrochage_reperage.service_layer import privacy
from raccrochage_rig.nats import NatsServer

from .test_live_enrolments import KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")
USERS_CONF = REPO_ROOT / "deploy" / "nats" / "users.conf"
SERVICES = sorted(load_topology().services)
PASSWORDS = {f"RACCROCHAGE_NATS_PASSWORD_{name.upper()}": f"p{name.replace('_', '')}1" for name in SERVICES}
NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
OTHER = "c" * 64


class ProductionUsersNats(NatsServer):
    """The rig's nats-server with deploy/nats/users.conf's users instead of its own."""

    def write_config(self) -> Path:
        conf = super().write_config()
        conf.write_text(conf.read_text(encoding="utf-8") + USERS_CONF.read_text(encoding="utf-8"))
        return conf

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **PASSWORDS}


@pytest.fixture(scope="module")
def users_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = ProductionUsersNats(Path(tmp_path_factory.mktemp("nats-users")), partner_users=False)
    server.start()
    yield server
    server.stop()


class User:
    """A service's connection as its NATS user, and the permission errors the server sent it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, server: NatsServer, name: str) -> Client:
        async def on_error(error: Exception) -> None:
            self.errors.append(str(error).lower())

        self.nc = await nats.connect(
            server.url,
            user=name,
            password=PASSWORDS[f"RACCROCHAGE_NATS_PASSWORD_{name.upper()}"],
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self.nc


@pytest_asyncio.fixture(loop_scope="session")
async def users(users_nats: NatsServer) -> AsyncIterator[dict[str, User]]:
    connected = {"reperage": User(), "psad": User()}
    for name, user in connected.items():
        await user.connect(users_nats, name)
    yield connected
    for user in connected.values():
        await user.nc.close()


def event(youth_id: str, **more) -> bytes:
    envelope = {"id": str(uuid.uuid4()), "type": "psad.case.opened.v1", "subject": str(uuid.uuid4())}
    return json.dumps({**envelope, "data": {"youth_id": youth_id, **more}}).encode()


async def stored(js, stream: str) -> list[bytes]:
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            found.append((await js.get_msg(stream, seq)).data)
        except nats.js.errors.NotFoundError:
            continue
    return found


async def test_the_vault_sweeps_a_complete_erasure_and_a_service_user_may_not(users, engine) -> None:
    vault, psad = users["reperage"].nc.jetstream(timeout=3), users["psad"].nc.jetstream(timeout=3)
    for name in ("PSAD", "DEADLETTER"):
        await declare_stream(vault, load_topology().streams[name])
    unit_of_work = unit_of_work_factory(engine)
    record = await privacy.request_erasure(
        unit_of_work(), ine="1234567890A", key=KEY, requested_by="dpo-1", services=("psad",), now=NOW
    )
    youth_id = privacy.youth_of("1234567890A", KEY)
    # psad publishes the youth's events, another youth's, and one merely quoting the youth_id
    # inside a longer string (not a match); one of the youth's events ends in the dead letters.
    payloads = [event(youth_id), event(OTHER), event(youth_id, step=2), event(OTHER, note=f"x{youth_id}")]
    for payload in payloads:
        await psad.publish("psad.case.opened.v1", payload, stream="PSAD")
    await psad.publish(
        "deadletter.mlds_psad", payloads[0], stream="DEADLETTER", headers={"Raccrochage-Dlq-Reason": "test"}
    )

    # Not complete yet: nothing is swept.
    sweeper = JetStreamSweeper(vault, batch=2)  # several fetches per stream
    assert await privacy.sweep_streams(unit_of_work, sweeper, ["PSAD", "DEADLETTER"], lambda: NOW) == {}
    assert len(await stored(vault, "PSAD")) == 4

    # psad's user may scan but not delete: the server refuses, the messages stay.
    with pytest.raises(TimeoutError):
        await JetStreamSweeper(psad).sweep("PSAD", frozenset({youth_id}))
    assert 'permissions violation for publish to "$js.api.stream.msg.delete.psad"' in " ".join(
        users["psad"].errors
    )
    assert len(await stored(vault, "PSAD")) == 4

    async with unit_of_work() as uow:
        await privacy.record_answer(uow, ErasureDone(request_id=record.request_id, service="psad"), NOW)
        await uow.commit()
    swept = await privacy.sweep_streams(unit_of_work, sweeper, ["PSAD", "DEADLETTER"], lambda: NOW)

    assert swept == {record.request_id: {"PSAD": 2, "DEADLETTER": 1}}
    assert await stored(vault, "PSAD") == [payloads[1], payloads[3]]
    assert await stored(vault, "DEADLETTER") == []
    status = await privacy.erasure_status(unit_of_work(), record.request_id)
    assert status.swept_at == NOW and status.swept == {"PSAD": 2, "DEADLETTER": 1}
    async with engine.connect() as connection:
        # The youth_id kept for the sweep is gone with it; the scans' consumers are gone too.
        assert (await connection.exec_driver_sql("SELECT count(*) FROM erasure_sweep")).scalar() == 0
    assert [c.name async for c in _consumers(vault, "PSAD")] == []
    assert await sweeper.sweep("UNDECLARED", frozenset({youth_id})) == {}  # holds nothing
    assert users["reperage"].errors == []


async def _consumers(js, stream: str):
    for info in await js.consumers_info(stream):
        yield info
