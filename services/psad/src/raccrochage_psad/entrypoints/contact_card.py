"""A youth's contact card, asked from the repérage identity vault by NATS request/reply.

The vault checks that PSAD may read it and writes the audit row (who, when, which youth, why).
The card goes straight to the counsellor's screen: it is never stored, published or logged here.
"""

from __future__ import annotations

import json
from typing import Any

import nats.errors
from faststream.nats import NatsBroker
from raccrochage_platform.broker import connection

SUBJECT = "rpc.reperage.contact_card.psad"  # the last token is the caller: NATS permissions pin it


class ContactCardError(Exception):
    def __init__(self, message: str, http_status: int):
        super().__init__(message)
        self.http_status = http_status


async def fetch_contact_card(
    broker: NatsBroker, youth_id: str, *, purpose: str, timeout: float = 5.0
) -> dict[str, Any]:
    request = json.dumps({"youth_id": youth_id, "purpose": purpose}).encode()
    try:
        reply = await connection(broker).request(SUBJECT, request, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        raise ContactCardError("the repérage vault did not answer; try again in a moment", 503) from None
    answer = json.loads(reply.data)
    if answer.get("status") == "ok":
        return answer["card"]
    status = 404 if answer.get("status") == "not_found" else 502
    raise ContactCardError(f"the repérage vault refused: {answer.get('error', answer.get('status'))}", status)
