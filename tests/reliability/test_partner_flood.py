"""A partner flooding its seat subjects is held to its limits without slowing the others.

Partner A publishes thousands of records at full speed; once they are all stored, partner B
publishes a few. Each partner has a FOQUALE durable of its own (`foquale_partner_<id>`), so B's
records are answered while A's backlog is still being worked through; A's records beyond its
backlog limit are answered `rejected` naming the limit, the others applied at its rate at most.
On servers and a partners' file of the test's own, FOQUALE as the rig runs it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError
from raccrochage_contracts import nats_subject
from raccrochage_platform.topology import DEFAULT_PATH, declare, declare_stream, load_topology
from raccrochage_rig.testing.processes import service_process
from raccrochage_rig.testing.reliability import (
    OwnServers,
    eventually,
    migrated,
    own_servers,
    resilient_client,
    service_env,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLE = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "partner.seats.published.v1"
FLOODER, STEADY = "flood-a", "steady-b"
RATE, BACKLOG = 20, 100  # the flooder's limits in the test's partners' file
STEADY_RECORDS = 5
PARTNERS = f"""
[limits]
records_per_second = 50
max_backlog = 1000

[partners.{FLOODER}]
base = "cfa"
seat_uais = ["0331012W"]
records_per_second = {RATE}
max_backlog = {BACKLOG}

[partners.{STEADY}]
base = "cfa"
seat_uais = ["0331345H"]
"""


class Answer(NamedTuple):
    arrived: float  # monotonic, on the test's connection
    made_at: datetime  # the feedback's envelope time: when FOQUALE answered
    data: dict


@dataclass
class Answers:
    """One partner's feedback as it arrives, per record id."""

    seen: dict[str, Answer] = field(default_factory=dict)
    twice: int = 0

    async def on_message(self, msg: Msg) -> None:
        envelope = json.loads(msg.data)
        data = envelope["data"]
        if data["record_event_id"] in self.seen:
            self.twice += 1
        self.seen[data["record_event_id"]] = Answer(
            time.monotonic(), datetime.fromisoformat(envelope["time"]), data
        )


def record(partner_id: str, uai: str, n: int) -> tuple[str, bytes, str]:
    """(subject, envelope, id) of a valid seat record of `partner_id`."""
    envelope = copy.deepcopy(json.loads(next(EXAMPLE.glob("*.json")).read_text(encoding="utf-8")))
    event_id = str(uuid.uuid4())
    key = f"{partner_id}-{n}"
    envelope.update(id=event_id, source=f"partner/{partner_id}", subject=key, correlationid=event_id)
    envelope["data"].update(partner_key=key, uai=uai)
    return nats_subject(envelope["type"], partner_id), json.dumps(envelope).encode(), event_id


@pytest.fixture(scope="module")
def flood_servers() -> Iterator[OwnServers]:
    with own_servers("raccrochage-flood-") as own:
        yield own


async def flood(own: OwnServers, flooded: int) -> None:
    """A floods `flooded` records, then B sends a few; checked and reported."""
    partners = own.folder / f"partners-{flooded}.toml"
    partners.write_text(PARTNERS, encoding="utf-8")
    async with resilient_client(own.servers.nats_url) as nc:
        await run_flood(nc, own, partners, flooded)


async def run_flood(nc: Client, own: OwnServers, partners: Path, flooded: int) -> None:
    servers, folder = own.servers, own.folder
    js = nc.jetstream()
    topology = load_topology(DEFAULT_PATH, partners)
    await declare(js, topology, services={"foquale"})
    await js.purge_stream("PARTNER")
    for partner_id in (FLOODER, STEADY):  # as for partners added since: FOQUALE declares their durables
        await js.delete_consumer("PARTNER", f"foquale_partner_{partner_id}")
    database = await migrated(servers, "foquale")
    env = service_env(servers, folder, DEFAULT_PATH, "foquale", database, 5) | {
        "RACCROCHAGE_PARTNERS": str(partners)
    }
    answers = {FLOODER: Answers(), STEADY: Answers()}
    for partner_id, seen in answers.items():
        await nc.subscribe(
            f"partner.{partner_id}.seats.feedback.v1", cb=seen.on_message, pending_msgs_limit=-1
        )
    flood_ids, steady_sent = [], {}
    with service_process("foquale", env, folder, tag=f"flood{flooded}") as foquale:
        for start in range(0, flooded, 500):  # at full speed: 500 publishes in flight
            batch = [record(FLOODER, "0331012W", n) for n in range(start, min(flooded, start + 500))]
            await asyncio.gather(*(js.publish(s, d, headers={"Nats-Msg-Id": i}) for s, d, i in batch))
            flood_ids += [i for _, _, i in batch]
        stored = time.monotonic()
        for n in range(STEADY_RECORDS):  # behind the whole flood in the stream
            subject, data, event_id = record(STEADY, "0331345H", n)
            await js.publish(subject, data, headers={"Nats-Msg-Id": event_id})
            steady_sent[event_id] = time.monotonic()

        async def steady_answered() -> bool:
            return len(answers[STEADY].seen) == STEADY_RECORDS

        await eventually(steady_answered, "the steady partner's records to be answered")
        flooder_answered_then = len(answers[FLOODER].seen)
        flooder_info = await js.consumer_info("PARTNER", f"foquale_partner_{FLOODER}")

        async def flood_answered() -> bool:
            return len(answers[FLOODER].seen) == flooded

        await eventually(flood_answered, "every record of the flood to be answered")
        drained = time.monotonic() - stored
        assert foquale.process.poll() is None, foquale.log_text()[-3000:]

    steady, flooder = answers[STEADY].seen, answers[FLOODER].seen
    latencies = [steady[i].arrived - sent for i, sent in steady_sent.items()]
    outcomes = {answer.data["outcome"] for answer in steady.values()}
    accepted = sorted(answer.made_at for answer in flooder.values() if answer.data["outcome"] == "accepted")
    refused = [answer.data for answer in flooder.values() if answer.data["outcome"] == "rejected"]
    newest = flood_ids[-(BACKLOG + 1) :]  # never more than the backlog behind them
    tail = sorted(flooder[i].made_at for i in newest)
    rate = (len(tail) - RATE) / (tail[-1] - tail[0]).total_seconds()  # after its burst
    print(
        json.dumps(
            {
                "case": f"partner flood: {flooded} records of A, then {STEADY_RECORDS} of B",
                "b_latency_median_s": round(statistics.median(latencies), 3),
                "b_latency_max_s": round(max(latencies), 3),
                "a_answered_when_b_done": flooder_answered_then,
                "a_waiting_when_b_done": flooder_info.num_pending + flooder_info.num_ack_pending,
                "a_accepted": len(accepted),
                "a_refused_over_backlog": len(refused),
                "a_rate_per_s": round(rate, 1),
                "a_all_answered_after_s": round(drained, 1),
                "a_rate_limit_per_s": RATE,
            }
        )
    )
    # B's records were all applied while A's backlog was still waiting.
    assert outcomes == {"accepted"}
    assert flooder_answered_then < flooded
    assert flooder_info.num_pending + flooder_info.num_ack_pending > 0
    # Every record of A answered once: the newest within its backlog applied, the others refused
    # with the limit named and where it is set.
    assert answers[FLOODER].twice == 0 and answers[STEADY].twice == 0
    assert set(flooder) == set(flood_ids)
    assert len(accepted) + len(refused) == flooded
    assert all(flooder[i].data["outcome"] == "accepted" for i in newest)
    assert len(refused) >= flooded - 4 * BACKLOG  # most of a flood published faster than it is read
    for data in refused:
        [problem] = data["problems"]
        assert problem["field"] == "*"
        assert f"backlog limit of {BACKLOG}" in problem["reason"]
        assert f"partners.{FLOODER}.max_backlog" in problem["reason"]
        assert "deploy/partners.toml" in problem["reason"]
    # Applied at its rate at most: in any run of them, no more than a second's burst plus the
    # rate over the run's span (an upper bound, which a loaded machine can only lower).
    for first in range(len(accepted)):
        for last in range(first + RATE + 1, len(accepted)):
            span = (accepted[last] - accepted[first]).total_seconds()
            assert last - first + 1 <= RATE * span * 1.05 + RATE + 2, (first, last, span)
    assert (await js.stream_info("DEADLETTER")).state.messages == 0


async def test_a_flooding_partner_does_not_slow_another(flood_servers: OwnServers) -> None:
    await flood(flood_servers, 2000)


@pytest.mark.reliability
@pytest.mark.timeout(900)
async def test_a_partner_flooding_twenty_thousand_records(flood_servers: OwnServers) -> None:
    await flood(flood_servers, 20_000)


async def test_what_a_partner_stores_is_bounded_per_subject(flood_servers: OwnServers) -> None:
    """The PARTNER stream's settings, with 10 messages per subject instead of 50,000: a partner
    over the bound loses its own oldest messages, none of another's, and no publish is refused
    for it; a record over the size bound is refused at its publish."""
    partner_stream = load_topology().streams["PARTNER"]
    bounded = replace(
        partner_stream, name="PARTNER_BOUND", subjects=("bounded.*.seats.>",), max_msgs_per_subject=10
    )
    async with resilient_client(flood_servers.servers.nats_url) as nc:
        js = nc.jetstream()
        await declare_stream(js, bounded)
        for n in range(3):
            await js.publish(f"bounded.{STEADY}.seats.published.v1", f"b{n}".encode())
        for n in range(25):
            await js.publish(f"bounded.{FLOODER}.seats.published.v1", f"a{n}".encode())
        kept = (await js.stream_info("PARTNER_BOUND", subjects_filter=">")).state.subjects
        assert kept == {
            f"bounded.{STEADY}.seats.published.v1": 3,
            f"bounded.{FLOODER}.seats.published.v1": 10,
        }
        newest = await js.get_last_msg("PARTNER_BOUND", f"bounded.{FLOODER}.seats.published.v1")
        assert newest.data == b"a24"
        with pytest.raises(APIError, match="message size exceeds maximum allowed"):
            await js.publish(
                f"bounded.{FLOODER}.seats.published.v1", b"x" * (partner_stream.max_msg_size + 1)
            )
        await js.delete_stream("PARTNER_BOUND")
