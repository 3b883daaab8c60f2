"""A youth's contact card, asked from the repérage identity vault by NATS request/reply.

The convention needs the youth's birth date (a minor signs with a legal guardian) and the bilan
croisé names the youth. The vault checks that clause_sociale may read the card and audits the
request; the card is used for the one command and never published, logged or stored here (the
convention keeps the birth date it was drafted with, in this service's database only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import nats.errors
from faststream.nats import NatsBroker
from raccrochage_platform.broker import connection

SUBJECT = "rpc.reperage.contact_card.clause_sociale"  # the last token is the caller: NATS permissions pin it


class ContactCardError(Exception):
    def __init__(self, message: str, http_status: int):
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class YouthIdentity:
    full_name: str
    birth_date: date


async def fetch_identity(
    broker: NatsBroker, youth_id: str, *, purpose: str, timeout: float = 5.0
) -> YouthIdentity:
    request = json.dumps({"youth_id": youth_id, "purpose": purpose}).encode()
    try:
        reply = await connection(broker).request(SUBJECT, request, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        raise ContactCardError("the repérage vault did not answer; try again in a moment", 503) from None
    answer = json.loads(reply.data)
    if answer.get("status") != "ok":
        status = 404 if answer.get("status") == "not_found" else 502
        reason = answer.get("error") or answer.get("reason") or answer.get("status")
        raise ContactCardError(f"the repérage vault refused youth {youth_id}: {reason}", status)
    card = answer["card"]
    try:
        return YouthIdentity(f"{card['prenom']} {card['nom']}", date.fromisoformat(card["date_naissance"]))
    except (KeyError, TypeError, ValueError):
        raise ContactCardError("the repérage vault's contact card has no name or birth date", 502) from None
