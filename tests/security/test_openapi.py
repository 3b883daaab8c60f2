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
SERVICES = ["reperage", "psad"]


@pytest.mark.parametrize("name", SERVICES)
async def test_the_openapi_document_declares_the_bearer_scheme_and_its_refusals(start_service, name) -> None:
    service = await start_service(name)
    async with httpx.AsyncClient(base_url=service.url) as client:
        document = (await client.get("/openapi.json")).json()
    assert declared_problems(document) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVICES)
async def test_no_request_gets_a_500_or_an_undocumented_answer(start_service, name) -> None:
    service = await start_service(name)
    failures = await asyncio.to_thread(
        audit_openapi,
        f"{service.url}/openapi.json",
        TOKENS,
        base_url=service.url,
        max_examples=int(os.environ.get("RACCROCHAGE_FUZZ_EXAMPLES", "15")),
    )
    assert failures == [], "\n".join(failures)
