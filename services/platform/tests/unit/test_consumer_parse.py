"""How a consumer reads a message: envelope and payload in one pass, reasons for the rest."""

from __future__ import annotations

import json

from nats.aio.msg import Msg
from raccrochage_contracts import new_event
from raccrochage_platform.consumer import EventConsumer
from raccrochage_platform.topology import ConsumerDef
from raccrochage_rig.testing.sample import (
    SAMPLE_REGISTRY,
    CounterIncremented,
    CounterReported,
    CounterReset,
)

SUBJECT = "sample.counter.incremented.v1"
V1_REPLY = "$JS.ACK.SAMPLE.parse_test.3.41.40.1700000000000000000.0"  # delivered 3 times
V2_REPLY = "$JS.ACK._.ACCOUNTHASH.SAMPLE.parse_test.2.41.40.1700000000000000000.0.token"


async def _nothing(*_args) -> None:
    return None


def consumer() -> EventConsumer:
    definition = ConsumerDef("parse_test", "psad", "SAMPLE", ("sample.>", "partner.>"))
    made = EventConsumer(definition, SAMPLE_REGISTRY, unit_of_work=None, js=None)  # type: ignore[arg-type]
    made.on(SUBJECT)(_nothing)
    made.on_batch("partner.seats.reported.v1")(_nothing)
    return made


def message(body: bytes | dict, subject: str = SUBJECT, reply: str = V1_REPLY) -> Msg:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Msg(_client=None, subject=subject, reply=reply, data=data)  # type: ignore[arg-type]


def envelope(**changes) -> dict:
    event = json.loads(
        new_event(CounterIncremented(counter="c", by=2), source="raccrochage/psad", subject="c").to_json()
    )
    event.update(changes)
    return event


def test_a_good_message_is_read_in_one_pass_with_its_delivery_count() -> None:
    parsed = consumer()._parse(message(envelope()))
    assert parsed.reason is None and parsed.delivered == 3
    assert parsed.event.data == CounterIncremented(counter="c", by=2)
    assert parsed.event.envelope.data is parsed.event.data  # the typed envelope: no second validation
    assert consumer()._parse(message(envelope(), reply=V2_REPLY)).delivered == 2


def test_batch_handled_and_partner_types_are_read_too() -> None:
    event = json.loads(new_event(CounterReported(counter="c"), source="partner/acme", subject="c").to_json())
    parsed = consumer()._parse(message(event, subject="partner.acme.seats.reported.v1"))
    assert parsed.reason is None and parsed.event.partner_id == "acme"
    parsed = consumer()._parse(message(event, subject="partner.other.seats.reported.v1"))
    assert parsed.reason == (
        "source partner/acme does not match the partner of subject partner.other.seats.reported.v1"
    )


def test_what_is_wrong_is_named_without_the_values() -> None:
    reasons = {
        "not json": consumer()._parse(message(b"{not json")).reason,
        "type": consumer()._parse(message(envelope(type="sample.counter.reset.v1"))).reason,
        "data": consumer()._parse(message(envelope(data={"counter": "c", "by": "SECRET"}))).reason,
        "envelope": consumer()._parse(message(envelope(time="SECRET"))).reason,
    }
    assert reasons["not json"].startswith("invalid envelope")
    assert reasons["type"] == f"envelope type sample.counter.reset.v1 does not match subject {SUBJECT}"
    assert reasons["data"].startswith("invalid data.by: Input should be a valid integer")
    assert reasons["envelope"].startswith("invalid envelope.time:")
    assert not any("SECRET" in reason for reason in reasons.values())


def test_a_type_nobody_registered_or_handles_is_named() -> None:
    unknown = envelope(type="sample.counter.incremented.v9")
    reason = consumer()._parse(message(unknown, subject="sample.counter.incremented.v9")).reason
    assert reason == (
        "unknown event type 'sample.counter.incremented.v9'; known versions: sample.counter.incremented.v1"
    )
    reset = json.loads(new_event(CounterReset(counter="c"), source="raccrochage/psad", subject="c").to_json())
    reason = consumer()._parse(message(reset, subject="sample.counter.reset.v1")).reason
    assert reason == "consumer parse_test has no handler for sample.counter.reset.v1"


def test_a_body_that_is_not_an_envelope_is_refused_without_its_content() -> None:
    for body in (b"[1, 2]", b'"SECRET"', b"", b'{"id": "SECRET"}'):
        reason = consumer()._parse(message(body)).reason
        assert reason.startswith("invalid envelope") and "SECRET" not in reason


def test_a_handlers_failure_is_described_without_the_input() -> None:
    """A database error's text quotes the statement's parameters, a validation error the values:
    neither reaches a dead letter's reason or the logs."""
    from pydantic import ValidationError
    from raccrochage_platform.consumer import _failure
    from sqlalchemy.exc import IntegrityError, StatementError

    class UniqueViolationError(Exception):
        sqlstate = "23505"

    database = IntegrityError(
        "INSERT INTO t VALUES ($1)", ("SECRET",), UniqueViolationError("Key (n)=(SECRET)")
    )
    assert "SECRET" in str(database)
    assert _failure(database) == "IntegrityError: UniqueViolationError (SQLSTATE 23505)"
    assert _failure(StatementError("bind failed", "SELECT $1", ("SECRET",), None)) == "StatementError"
    try:
        CounterIncremented(counter="c", by="SECRET")
    except ValidationError as error:
        validation = error
    assert _failure(validation).startswith("ValidationError: invalid CounterIncremented.by: Input should")
    assert "SECRET" not in _failure(validation)
    assert _failure(RuntimeError("the dependency is down")) == "RuntimeError: the dependency is down"
