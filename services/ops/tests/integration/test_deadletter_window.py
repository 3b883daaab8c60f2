"""The dead-letter list reads a bounded window of the DEADLETTER stream on real NATS: newest
first, a service's by its consumers' subjects, what it left unread said and a page further;
replaying a reason and the health counts still see every dead letter."""

from __future__ import annotations

from raccrochage_contracts import new_event
from raccrochage_ops.adapters import health
from raccrochage_ops.service_layer import deadletters
from raccrochage_ops.service_layer.unit_of_work import SqlOpsUnitOfWork
from raccrochage_ops.synthetic import payload
from raccrochage_platform.auth import Principal, Role
from raccrochage_platform.db import make_engine
from raccrochage_platform.topology import load_topology

from .conftest import put_dead_letter

DOWN = "handler failed: OperationalError"
INVALID = "invalid data.age: Input should be >= 0"


async def dead_letters(nc) -> dict[str, list[int]]:
    """Nine dead letters, interleaved: five of ops_psad (DOWN), three of ops_reperage (INVALID),
    one of another service's consumer (DOWN). Their sequences by kind, oldest first."""
    topology = load_topology()
    other = next(name for name, d in sorted(topology.consumers.items()) if d.service == "psad")
    data = payload("psad.case.opened.v1")
    plan = ["psad", "reperage", "psad", "other", "psad", "reperage", "psad", "reperage", "psad"]
    seqs: dict[str, list[int]] = {"psad": [], "reperage": [], "other": []}
    for n, which in enumerate(plan):
        consumer = {"psad": "ops_psad", "reperage": "ops_reperage", "other": other}[which]
        reason = INVALID if which == "reperage" else f"{DOWN} (after {n + 2} deliveries)"
        envelope = new_event(data, source="raccrochage/psad", subject=f"s-{n}")
        seqs[which].append(await put_dead_letter(nc, envelope, consumer=consumer, reason=reason))
    return seqs


async def test_the_list_reads_a_window_newest_first_and_says_what_it_left(nc, ops_topology):
    js, topology = nc.jetstream(), load_topology()
    seqs = await dead_letters(nc)
    every = sorted(s for group in seqs.values() for s in group)

    whole = await deadletters.search(js, topology)
    assert [d.seq for d in whole.letters] == every[::-1] and not whole.truncated
    assert whole.reasons == sorted({DOWN, INVALID})

    # Four sequences a page: the newest four, then the next four before them, then the last one.
    pages, before = [], None
    while True:
        found = await deadletters.search(js, topology, window=4, before=before)
        pages.append([d.seq for d in found.letters])
        if not found.truncated:
            break
        before = found.older
    assert pages == [every[:-5:-1], every[-5:-9:-1], every[:1]]
    # A page stops reading mid-stream: the scan's consumer went with it.
    assert [c.name for c in await js.consumers_info("DEADLETTER") if c.name.startswith("scan_")] == []

    # A service's dead letters only (its consumers' subjects), the window still in sequences.
    ops = await deadletters.search(js, topology, service="ops")
    assert sorted(d.seq for d in ops.letters) == sorted(seqs["psad"] + seqs["reperage"])
    psad = await deadletters.search(js, topology, service="psad", window=3)
    assert psad.letters == [] and psad.truncated

    # More of a reason than a page shows: the newest, and where the rest begins.
    down = await deadletters.search(js, topology, service="ops", reason=DOWN, limit=2)
    assert [d.seq for d in down.letters] == seqs["psad"][:-3:-1] and down.older == seqs["psad"][-2]
    rest = await deadletters.search(js, topology, service="ops", reason=DOWN, before=down.older)
    assert [d.seq for d in rest.letters] == seqs["psad"][-3::-1] and not rest.truncated


async def test_a_reason_is_replayed_whole_and_the_counts_stay_exact_past_the_window(
    nc, ops_topology, ops_db, monkeypatch
):
    js, topology = nc.jetstream(), load_topology()
    seqs = await dead_letters(nc)
    monkeypatch.setattr(health, "READ_AT_MOST", 3)
    counts = await health.dead_letter_counts(js, topology)
    per_service: dict[str, int] = {}
    for row in counts:
        per_service[row["service"]] = per_service.get(row["service"], 0) + row["count"]
    assert per_service == {"ops": 8, "psad": 1}
    assert {row["kind"] for row in counts} >= {health.NOT_READ}

    monkeypatch.setattr(deadletters, "WINDOW", 2)
    engine = make_engine(ops_db, application_name="test-deadletters")
    try:
        replayed = await deadletters.replay_reason(
            SqlOpsUnitOfWork(engine, source="raccrochage/ops"),
            js,
            topology,
            DOWN,
            Principal(sub="astreinte-2", role=Role.OPS, territory=None),
            service="ops",
        )
        async with SqlOpsUnitOfWork(engine, source="raccrochage/ops") as uow:
            audit = await uow.projections.replays()
    finally:
        await engine.dispose()
    assert replayed == 5
    assert [row["deadletter_seq"] for row in audit[:5]] == seqs["psad"][::-1]
    left = await deadletters.search(js, topology)
    assert sorted(d.seq for d in left.letters) == sorted(seqs["reperage"] + seqs["other"])
