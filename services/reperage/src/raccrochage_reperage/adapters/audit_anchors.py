"""The identity audit's heads, anchored in the REPERAGE stream (`reperage.audit.anchored.v1`).

A superuser of the vault's database can delete the chain's last rows and leave a chain that
verifies. The heads the vault published before are out of that database's reach: `verify`
reads them back and checks that the chain still holds each one. They are published straight to
JetStream, not through the outbox: an outbox row waits in the very database they guard. Each
carries a row number and a hash, nothing of a person.
"""

from __future__ import annotations

from datetime import datetime

from nats.js import JetStreamContext
from raccrochage_contracts import nats_subject, new_event
from raccrochage_contracts.envelope import typed_envelope
from raccrochage_contracts.events.reperage_v1 import AuditAnchored
from raccrochage_platform.streams import scan

from .audit import Anchor

SUBJECT = nats_subject("reperage.audit.anchored.v1")
STREAM = "REPERAGE"
READ_TIMEOUT = 10.0  # seconds for each batch of anchors to come back from the stream


async def publish(js: JetStreamContext, head: tuple[int, str], now: datetime) -> None:
    """Anchor the chain's head; the same head anchored twice within the stream's duplicate
    window is stored once."""
    seq, digest = head
    event = new_event(
        AuditAnchored(seq=seq, hash=digest, anchored_at=now),
        source="raccrochage/reperage",
        subject="identity-audit",
    )
    await js.publish(
        SUBJECT, event.to_json(), stream=STREAM, headers={"Nats-Msg-Id": f"audit-head-{seq}-{digest}"}
    )


async def read(js: JetStreamContext) -> list[Anchor]:
    """Every head anchored so far (the stream keeps them as long as its other events)."""
    envelope = typed_envelope(AuditAnchored)
    anchors = []
    async for messages in scan(js, STREAM, subject=SUBJECT, fetch_timeout=READ_TIMEOUT):
        for message in messages:
            data = envelope.model_validate_json(message.data).data
            anchors.append(Anchor(data.seq, data.hash, data.anchored_at))
    return anchors
