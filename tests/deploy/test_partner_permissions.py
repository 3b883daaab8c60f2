"""Partners' NATS users as the rig generates them, on a real nats-server: each partner publishes
under its own subjects only and reads nothing but its own replies. Every ordered pair of the
partners declared in deploy/partners.toml is checked, not a sample."""

from __future__ import annotations

import asyncio
import itertools
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.errors import NoRespondersError
from raccrochage_platform.topology import REPO_ROOT, declare, load_topology
from raccrochage_rig.nats import NatsServer, declared_partners, partner_user

PARTNERS = declared_partners()
PAIRS = list(itertools.permutations(PARTNERS, 2))
TOPOLOGY = load_topology()
TOPOLOGY_TOML = REPO_ROOT / "deploy" / "topology.toml"
# What a partner must never read: every service stream's subjects, the dead letters, every stream.
SERVICE_SUBJECTS = sorted(
    {subject for stream in TOPOLOGY.streams.values() for subject in stream.subjects} | {">", "_INBOX.>"}
)
# Partners' requests the services answer (core request/reply): the `partner.*.` subjects of
# their `serves` in deploy/topology.toml.
PARTNER_REQUESTS = sorted(
    subject
    for service in tomllib.loads(TOPOLOGY_TOML.read_text(encoding="utf-8"))["services"].values()
    for subject in service.get("serves", [])
    if subject.startswith("partner.*.")
)


class Partner:
    """A partner's connection and the permission errors the server sent it."""

    def __init__(self, partner_id: str) -> None:
        self.partner_id = partner_id
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, server: NatsServer) -> None:
        async def on_error(error: Exception) -> None:
            self.errors.append(str(error))

        self.nc = await nats.connect(
            server.url,
            user=partner_user(self.partner_id),
            password=server.partner_passwords[self.partner_id],
            inbox_prefix=f"_INBOX.partner_{self.partner_id}".encode(),
            error_cb=on_error,
            allow_reconnect=False,
        )

    async def refused(self, what: str, subject: str) -> bool:
        """Wait until the server said this publish or subscription was a violation."""
        wanted = f'permissions violation for {what} to "{subject}"'.lower()  # nats-py lowers it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(wanted in error.lower() for error in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    server = NatsServer(Path(tmp_path_factory.mktemp("nats-partners")))
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def rig(server: NatsServer) -> AsyncIterator[Client]:
    """A connection without credentials: the rig's user, as the services connect."""
    nc = await nats.connect(server.url)
    await declare(nc.jetstream(), TOPOLOGY, services=set())
    yield nc
    await nc.close()


@pytest_asyncio.fixture(loop_scope="session")
async def partners(server: NatsServer, rig: Client) -> AsyncIterator[dict[str, Partner]]:
    connected = {partner_id: Partner(partner_id) for partner_id in PARTNERS}
    for partner in connected.values():
        await partner.connect(server)
    yield connected
    for partner in connected.values():
        await partner.nc.close()


def test_every_declared_partner_has_a_user_and_there_are_pairs_to_check(server: NatsServer) -> None:
    assert set(server.partner_passwords) == set(PARTNERS)
    assert len(PAIRS) == len(PARTNERS) * (len(PARTNERS) - 1) >= 2


@pytest.mark.parametrize("partner_id", PARTNERS)
async def test_a_partner_publishes_its_seats_into_the_partner_stream(
    partners: dict[str, Partner], partner_id: str
) -> None:
    ack = await partners[partner_id].nc.jetstream().publish(f"partner.{partner_id}.seats.published.v1", b"{}")
    assert ack.stream == "PARTNER"


@pytest.mark.parametrize("partner_id", PARTNERS)
async def test_a_partner_reads_no_stream_and_calls_no_jetstream_api(
    partners: dict[str, Partner], partner_id: str
) -> None:
    partner = partners[partner_id]
    for subject in SERVICE_SUBJECTS:
        await partner.nc.subscribe(subject)
        await partner.nc.flush()
        assert await partner.refused("subscription", subject), subject
    await partner.nc.publish("$JS.API.STREAM.INFO.PARTNER", b"")
    await partner.nc.flush()
    assert await partner.refused("publish", "$JS.API.STREAM.INFO.PARTNER")


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}-as-{b}" for a, b in PAIRS])
async def test_a_partner_cannot_speak_for_another_or_read_its_replies(
    partners: dict[str, Partner], rig: Client, a: str, b: str
) -> None:
    partner = partners[a]
    seen: list[str] = []
    observer = await rig.subscribe(f"partner.{b}.>", cb=_collect(seen))
    await rig.flush()

    subject = f"partner.{b}.seats.published.v1"
    await partner.nc.publish(subject, b"{}")
    await partner.nc.flush()
    assert await partner.refused("publish", subject)
    for request in PARTNER_REQUESTS:  # asking as another partner: refused by the server
        subject = request.replace("*", b, 1)
        await partner.nc.publish(subject, b"{}", reply=partner.nc.new_inbox())
        await partner.nc.flush()
        assert await partner.refused("publish", subject)

    replies = f"_INBOX.partner_{b}.>"
    got: list[str] = []
    await partner.nc.subscribe(replies, cb=_collect(got))
    await partner.nc.subscribe(f"partner.{b}.>", cb=_collect(got))
    await partner.nc.flush()
    assert await partner.refused("subscription", replies)
    assert await partner.refused("subscription", f"partner.{b}.>")
    await rig.publish(f"_INBOX.partner_{b}.reply", b"for b only")
    await rig.publish(f"partner.{b}.seats.feedback.v1", b"for b only")
    await rig.flush()
    await partner.nc.flush()  # a round trip after the rig's: anything delivered has arrived
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:  # the rig's own callback runs on its loop turn
        await asyncio.sleep(0.01)
    assert got == []
    assert seen == [f"partner.{b}.seats.feedback.v1"]  # only the rig's own message got through
    await observer.unsubscribe()


@pytest.mark.parametrize("a", PARTNERS)
async def test_a_partner_asks_foquale_on_its_own_request_subjects(
    partners: dict[str, Partner], rig: Client, a: str
) -> None:
    assert PARTNER_REQUESTS  # the feedback replay and the pending reservations at least
    for request in PARTNER_REQUESTS:
        answering = await rig.subscribe(request, cb=_answer_with_its_subject(rig))
        await rig.flush()
        reply = await _request_once_answered(partners[a].nc, request.replace("*", a, 1))
        assert reply.data == request.replace("*", a, 1).encode()
        await answering.unsubscribe()


async def _request_once_answered(nc: Client, subject: str):
    """The rig's new subscription may reach the partner's side of the server a moment after
    the rig's flush: "no responders" until then."""
    for _ in range(50):
        try:
            return await nc.request(subject, b"{}", timeout=10)
        except NoRespondersError:
            await asyncio.sleep(0.1)
    return await nc.request(subject, b"{}", timeout=10)


def _answer_with_its_subject(rig: Client) -> Callable:
    async def handler(msg) -> None:
        await rig.publish(msg.reply, msg.subject.encode())

    return handler


def _collect(into: list[str]) -> Callable:
    async def handler(msg) -> None:
        into.append(msg.subject)

    return handler
