"""The youth's identity the clause sociale needs, from the repérage vault's contact card.

The convention needs the youth's birth date (a minor signs with a legal guardian) and the bilan
croisé names the youth. The card is used for the one command and never published, logged or
stored here (the convention keeps the birth date it was drafted with, in this service's database
only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from faststream.nats import NatsBroker
from raccrochage_platform.auth import Principal
from raccrochage_platform.broker import connection
from raccrochage_platform.vault import ContactCardError, fetch_contact_card

__all__ = ["ContactCardError", "YouthIdentity", "fetch_identity"]


@dataclass(frozen=True)
class YouthIdentity:
    full_name: str
    birth_date: date


async def fetch_identity(
    broker: NatsBroker, youth_id: str, *, purpose: str, on_behalf: Principal, timeout: float = 5.0
) -> YouthIdentity:
    card = await fetch_contact_card(
        connection(broker),
        "clause_sociale",
        youth_id,
        purpose=purpose,
        on_behalf=on_behalf,
        timeout=timeout,
    )
    try:
        return YouthIdentity(f"{card['prenom']} {card['nom']}", date.fromisoformat(card["date_naissance"]))
    except (KeyError, TypeError, ValueError):
        raise ContactCardError("the repérage vault's contact card has no name or birth date", 502) from None
