"""The streams' sweep after an erasure, on fakes: which messages name an erased youth (exactly),
and a pass that scans each stream once for every complete request, then records it swept."""

from __future__ import annotations

import json
from collections import Counter

from raccrochage_reperage.adapters.stream_sweep import youths_named
from raccrochage_reperage.service_layer import privacy

from .fakes import FakeReperageUnitOfWork
from .test_privacy import NOW, answer, erased
from .test_service_layer import KEY

A = "a" * 63 + "1"
B = "b" * 63 + "2"
ERASED = frozenset({A, B})


def envelope(**data) -> bytes:
    return json.dumps({"id": "e1", "type": "psad.case.opened.v1", "subject": "c1", "data": data}).encode()


def test_a_json_payload_names_a_youth_by_a_whole_string_at_any_depth() -> None:
    assert youths_named(envelope(youth_id=A), None, ERASED) == {A}
    assert youths_named(envelope(proposals=[{"youth_id": B}], by={A: 1}), None, ERASED) == {A, B}
    subject_only = json.dumps({"subject": A, "data": {}}).encode()
    assert youths_named(subject_only, None, ERASED) == {A}


def test_a_youth_id_inside_a_longer_string_or_another_youth_is_no_match() -> None:
    assert youths_named(envelope(youth_id="c" * 64), None, ERASED) == set()
    assert youths_named(envelope(note=f"case of {A}"), None, ERASED) == set()
    assert youths_named(envelope(digest=A + "ff"), None, ERASED) == set()
    assert youths_named(envelope(youth_id=A), None, frozenset({B})) == set()
    assert youths_named(envelope(youth_id=A), None, frozenset()) == set()


def test_a_payload_that_is_not_json_names_a_youth_standing_alone() -> None:
    assert youths_named(b'{"youth_id": "' + A.encode() + b'", oops', None, ERASED) == {A}
    assert youths_named(b"\xff\xfe" + A.encode(), None, ERASED) == {A}
    assert youths_named(b"not json " + A.encode() + b"0", None, ERASED) == set()


def test_a_header_naming_a_youth_counts() -> None:
    headers = {"Raccrochage-Dlq-Reason": f"rejected by handler: youth {B} unknown", "Nats-Msg-Id": "x"}
    assert youths_named(envelope(youth_id="c" * 64), headers, ERASED) == {B}
    assert youths_named(b"{}", {"Nats-Msg-Id": f"{A}1"}, ERASED) == set()


class FakeSweeper:
    """Streams as lists of (seq, payload, headers); counts the scans."""

    def __init__(self, streams: dict[str, list[tuple[int, bytes, dict | None]]]) -> None:
        self.streams = streams
        self.scans: Counter[str] = Counter()

    async def sweep(self, stream: str, youth_ids: frozenset[str]) -> dict[str, int]:
        self.scans[stream] += 1
        deleted: Counter[str] = Counter()
        kept = []
        for seq, data, headers in self.streams[stream]:
            named = youths_named(data, headers, youth_ids)
            deleted.update(named)
            if not named:
                kept.append((seq, data, headers))
        self.streams[stream] = kept
        return dict(deleted)


async def test_one_pass_scans_each_stream_once_for_every_complete_request_and_records_it() -> None:
    uow = FakeReperageUnitOfWork()
    first = await erased(uow, "1234567890A")
    second = await erased(uow, "2234567890B")
    waiting = await erased(uow, "3234567890C")
    for record in (first, second):
        for service in ("psad", "ops"):
            await answer(uow, record.request_id, service)
    youths = dict(uow.db.to_sweep)
    one, two, three = youths[first.request_id], youths[second.request_id], youths[waiting.request_id]
    sweeper = FakeSweeper(
        {
            "PSAD": [(1, envelope(youth_id=one), None), (2, envelope(youth_id=three), None)],
            "PRIVACY": [(1, json.dumps({"data": {"youth_id": one}}).encode(), None)],
            "DEADLETTER": [(7, envelope(youth_id=two), None), (8, envelope(youth_id=two), None)],
        }
    )
    streams = sorted(sweeper.streams)

    swept = await privacy.sweep_streams(lambda: uow, sweeper, streams, lambda: NOW)

    assert sweeper.scans == Counter({"PSAD": 1, "PRIVACY": 1, "DEADLETTER": 1})
    assert swept == {
        first.request_id: {"DEADLETTER": 0, "PRIVACY": 1, "PSAD": 1},
        second.request_id: {"DEADLETTER": 2, "PRIVACY": 0, "PSAD": 0},
    }
    # The waiting request's youth (a service has not answered) is not swept yet.
    assert [seq for seq, *_ in sweeper.streams["PSAD"]] == [2]
    assert sweeper.streams["DEADLETTER"] == [] and sweeper.streams["PRIVACY"] == []
    assert uow.db.erasures[first.request_id].swept_at == NOW
    assert uow.db.erasures[second.request_id].swept == {"DEADLETTER": 2, "PRIVACY": 0, "PSAD": 0}
    assert uow.db.erasures[waiting.request_id].swept_at is None
    # The swept requests' youth_ids are gone from the vault; the waiting one's stays until swept.
    assert uow.db.to_sweep == {waiting.request_id: three}

    assert await privacy.sweep_streams(lambda: uow, sweeper, streams, lambda: NOW) == {}
    assert sweeper.scans["PSAD"] == 1  # nothing due: no stream is read


async def test_a_request_no_service_owes_an_answer_is_swept_at_once() -> None:
    uow = FakeReperageUnitOfWork()
    record = await privacy.request_erasure(
        uow, ine="1234567890A", key=KEY, requested_by="dpo-1", services=(), now=NOW
    )
    sweeper = FakeSweeper({"REPERAGE": []})
    swept = await privacy.sweep_streams(lambda: uow, sweeper, ["REPERAGE"], lambda: NOW)
    assert swept == {record.request_id: {"REPERAGE": 0}}
    assert uow.db.to_sweep == {}
