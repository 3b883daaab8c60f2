"""The MLDS's own events read back from its stream, for the yearly survey.

The stream keeps 400 days (deploy/topology.toml), more than a school year and its late exits, so
the survey is rebuilt from it rather than from a table of its own: the figures are those of
the events other services saw.
"""

from __future__ import annotations

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from raccrochage_contracts import CloudEvent

STREAM = "MLDS"
# Enrolment starts and exits (and the PSAD's answers, which the survey skips).
ENROLMENTS = "mlds.enrolment.>"


async def replay(
    js: JetStreamContext, subject: str = ENROLMENTS, *, stream: str = STREAM, idle_seconds: float = 1.0
) -> list[CloudEvent]:
    """Every event on `subject`, from the stream's first, through an ordered ephemeral consumer:
    until none is pending, or none comes for `idle_seconds` (none stored)."""
    subscription = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    events: list[CloudEvent] = []
    try:
        while True:
            try:
                message = await subscription.next_msg(timeout=idle_seconds)
            except NatsTimeout:
                break
            events.append(CloudEvent.from_json(message.data))
            if message.metadata.num_pending == 0:
                break
    finally:
        await subscription.unsubscribe()
    return events
