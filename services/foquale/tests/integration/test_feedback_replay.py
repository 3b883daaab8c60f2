"""A partner reads its last answers again by request/reply, with its own NATS user as the rig
generates it (publish under `partner.<id>.>`, read its own inbox only): its own answers, and
never another partner's."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from raccrochage_foquale.adapters.partners import inbox_prefix
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.nats import NatsServer, partner_user
from raccrochage_rig.testing.processes import ServiceProcess

from .helpers import eventually, partner_envelope, seat_record


@pytest.fixture(scope="module")
def partner_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    """A nats-server with the partners' users, as `raccrochage up` starts it."""
    server = NatsServer(Path(tmp_path_factory.mktemp("nats-partners")))
    server.start()
    yield server
    server.stop()


class Partner:
    """A partner's own connection, and the permission errors the server sent it."""

    def __init__(self, partner_id: str) -> None:
        self.partner_id = partner_id
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, server: NatsServer) -> Partner:
        async def on_error(error: Exception) -> None:
            self.errors.append(str(error).lower())

        self.nc = await nats.connect(
            server.url,
            user=partner_user(self.partner_id),
            password=server.partner_passwords[self.partner_id],
            inbox_prefix=inbox_prefix(self.partner_id).encode(),
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self

    async def publish_record(self, verb: str, data: dict) -> dict:
        envelope = partner_envelope(self.partner_id, verb, data)
        ack = await self.nc.jetstream().publish(
            f"partner.{self.partner_id}.seats.{verb}.v1",
            json.dumps(envelope).encode(),
            headers={"Nats-Msg-Id": envelope["id"]},
        )
        assert ack.stream == "PARTNER"
        return envelope

    async def replay(self, body: dict | None = None, *, of: str | None = None) -> dict:
        subject = f"partner.{of or self.partner_id}.feedback.replay.v1"
        reply = await self.nc.request(subject, json.dumps(body or {}).encode(), timeout=10)
        return json.loads(reply.data)

    async def refused(self, subject: str) -> bool:
        """Wait until the server said a publish to `subject` was a violation."""
        wanted = f'permissions violation for publish to "{subject}"'.lower()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(wanted in error for error in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False


@pytest_asyncio.fixture(loop_scope="session")
async def partners(partner_nats: NatsServer) -> AsyncIterator[dict[str, Partner]]:
    rig = await nats.connect(partner_nats.url)  # the rig's user, as the services connect
    await declare(rig.jetstream(), load_topology(), services={"foquale"})
    await rig.close()
    connected = {pid: await Partner(pid).connect(partner_nats) for pid in ("cfa-gironde", "agri-landes")}
    yield connected
    for partner in connected.values():
        await partner.nc.close()


async def test_a_partner_replays_its_own_answers_and_cannot_ask_for_anothers(
    start_foquale: Callable[..., ServiceProcess], partner_nats: NatsServer, partners: dict[str, Partner]
) -> None:
    start_foquale(NATS_URL=partner_nats.url)
    gironde, landes = partners["cfa-gironde"], partners["agri-landes"]
    sent = [
        await gironde.publish_record("published", seat_record("RP-1")),
        await gironde.publish_record("published", seat_record("RP-2", uai="0331012A")),  # wrong letter
        await landes.publish_record("published", seat_record("RP-L", uai="0400345H", departement="40")),
    ]

    async def all_answered() -> list[dict] | None:
        answers = (await gironde.replay({"last": 10}))["feedback"]
        return answers if len(answers) == 2 else None

    answers = await eventually(all_answered, what="gironde's two answers")
    assert {(a["data"]["record_event_id"], a["data"]["outcome"]) for a in answers} == {
        (sent[0]["id"], "accepted"),
        (sent[1]["id"], "rejected"),
    }
    rejected = next(a["data"] for a in answers if a["data"]["outcome"] == "rejected")
    assert (rejected["partner_key"], rejected["problems"][0]["field"]) == ("RP-2", "uai")
    assert all(a["type"] == "partner.seats.feedback.v1" for a in answers)  # as published
    last = await gironde.replay({"last": 1})
    assert last["feedback"] == answers[-1:]
    wrong = await gironde.replay({"last": 501})
    assert wrong["status"] == "rejected" and wrong["errors"][0]["field"] == "last"

    landes_answers = await eventually(lambda: _answers(landes), what="landes' answer")  # only its own record
    assert [a["data"]["record_event_id"] for a in landes_answers] == [sent[2]["id"]]

    # Gironde asking on Landes' subject: the server refuses the publish; nothing is answered.
    subject = "partner.agri-landes.feedback.replay.v1"
    inbox = gironde.nc.new_inbox()
    got: list[bytes] = []

    async def collect(msg) -> None:
        got.append(msg.data)

    await gironde.nc.subscribe(inbox, cb=collect)
    await gironde.nc.publish(subject, b"{}", reply=inbox)
    await gironde.nc.flush()
    assert await gironde.refused(subject)
    # A request that went through afterwards is answered: had Landes' been, it came first.
    assert (await gironde.replay({"last": 1}))["status"] == "ok"
    await gironde.nc.flush()
    assert got == []


async def _answers(partner: Partner) -> list[dict]:
    return (await partner.replay())["feedback"]
