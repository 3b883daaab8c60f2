"""Asking the repérage vault for a contact card: each answer it can give becomes the right error."""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client
from raccrochage_platform.vault import ContactCardError, contact_card_subject, fetch_contact_card

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _vault(nc: Client, caller: str, answer: dict):
    async def reply(msg) -> None:
        asked = json.loads(msg.data)
        assert asked["purpose"]
        await msg.respond(json.dumps(answer).encode())

    return await nc.subscribe(contact_card_subject(caller), cb=reply)


async def test_a_card_comes_back_as_the_vault_sent_it(nc: Client) -> None:
    subscription = await _vault(nc, "psad", {"status": "ok", "card": {"nom": "Canary"}})
    try:
        assert await fetch_contact_card(nc, "psad", "y1", purpose="a call") == {"nom": "Canary"}
    finally:
        await subscription.unsubscribe()


@pytest.mark.parametrize(
    ("answer", "status", "said"),
    [
        ({"status": "not_found", "reason": "no youth y1 in the vault"}, 404, "no youth y1 in the vault"),
        ({"status": "refused", "reason": "a purpose is required"}, 502, "a purpose is required"),
    ],
)
async def test_a_refusal_says_the_vaults_reason(nc: Client, answer: dict, status: int, said: str) -> None:
    subscription = await _vault(nc, "clause_sociale", answer)
    try:
        with pytest.raises(ContactCardError) as error:
            await fetch_contact_card(nc, "clause_sociale", "y1", purpose="a convention")
        assert error.value.http_status == status and said in str(error.value)
    finally:
        await subscription.unsubscribe()


async def test_no_vault_is_a_503_to_try_again(nc: Client) -> None:
    with pytest.raises(ContactCardError) as error:
        await fetch_contact_card(nc, "nobody", "y1", purpose="a call", timeout=1)
    assert error.value.http_status == 503
