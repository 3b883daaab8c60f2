"""Every service's OpenAPI document against its behaviour, with a token of every role (schemathesis).

A service joins by adding its name to SERVICES."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from .conftest import TOKENS
from .openapi_audit import audit_openapi, declared_problems

pytestmark = pytest.mark.asyncio(loop_scope="session")
SERVICES = ["reperage", "psad", "foquale", "mlds", "clause_sociale", "ops"]
# Routes meant for anyone: ops' login form, which takes the token it then keeps in a cookie.
PUBLIC = {"ops": frozenset({"/login", "/logout"})}


@pytest.mark.parametrize("name", SERVICES)
async def test_the_openapi_document_declares_the_bearer_scheme_and_its_refusals(start_service, name) -> None:
    service = await start_service(name)
    async with httpx.AsyncClient(base_url=service.url) as client:
        document = (await client.get("/openapi.json")).json()
    assert declared_problems(document, PUBLIC.get(name, frozenset())) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVICES)
async def test_no_request_gets_a_500_or_an_undocumented_answer(start_service, name) -> None:
    service = await start_service(name)
    tokens = {**TOKENS, **await own_credentials(name, service.url)}
    failures = await asyncio.to_thread(
        audit_openapi,
        f"{service.url}/openapi.json",
        tokens,
        base_url=service.url,
        max_examples=int(os.environ.get("RACCROCHAGE_FUZZ_EXAMPLES", "10")),
    )
    assert failures == [], "\n".join(failures)


async def own_credentials(name: str, url: str) -> dict[str, dict[str, str]]:
    """A service's credentials other than the platform's tokens: FOQUALE's establishment key."""
    if name != "foquale":
        return {}
    async with httpx.AsyncClient(base_url=url) as client:
        answer = await client.post(
            "/foquale/api-keys", json={"uais": ["0640345C"], "label": "fuzz"}, headers=TOKENS["ops"]
        )
    answer.raise_for_status()
    return {"establishment": {"X-Api-Key": answer.json()["api_key"]}}
