"""A youth's contact card, asked from the repérage identity vault by NATS request/reply.

The vault checks that the calling service may read it and writes the audit row (which service,
for whom: the role, sub and territory of the person's token, when, which youth, why). The caller is the last token of the subject, which its NATS user alone may publish
(deploy/topology.toml `requests`), so a service cannot ask in another's name. What a service
does with the card (show it, keep a birth date) is its own business; never publish or log it.
"""

from __future__ import annotations

import json
from typing import Any

import nats.errors
from nats.aio.client import Client

from .auth import Principal


def contact_card_subject(caller: str) -> str:
    return f"rpc.reperage.contact_card.{caller}"


class ContactCardError(Exception):
    """The card could not be had; `http_status` is what an API should answer for it."""

    def __init__(self, message: str, http_status: int):
        super().__init__(message)
        self.http_status = http_status


async def fetch_contact_card(
    nc: Client,
    caller: str,
    youth_id: str,
    *,
    purpose: str,
    on_behalf: Principal | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """The card, asked for `purpose` (the case, the convention) by `on_behalf`, the person whose
    token the service is serving, if any."""
    person = (
        None
        if on_behalf is None
        else {"role": on_behalf.role.value, "sub": on_behalf.sub, "territory": on_behalf.territory}
    )
    request = json.dumps({"youth_id": youth_id, "purpose": purpose, "on_behalf": person}).encode()
    try:
        reply = await nc.request(contact_card_subject(caller), request, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        raise ContactCardError("the repérage vault did not answer; try again in a moment", 503) from None
    answer = json.loads(reply.data)
    if answer.get("status") == "ok":
        return answer["card"]
    status = 404 if answer.get("status") == "not_found" else 502
    reason = answer.get("reason") or answer.get("status")
    raise ContactCardError(f"the repérage vault refused the contact card: {reason}", status)
