"""The audit finds what it is for: a 500, an undocumented status, a route with no token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from raccrochage_platform.auth import Principal, Role, caller, error_responses

from .conftest import TOKEN_KEY, TOKENS
from .openapi_audit import audit_openapi, declared_problems


def app() -> FastAPI:
    api = FastAPI()
    ops = Depends(caller(TOKEN_KEY, Role.OPS))

    @api.get("/crashes")
    async def crashes(limit: int = 10) -> dict:
        return {"ratio": 1 // (limit - limit)}  # ZeroDivisionError: a 500

    @api.get("/undocumented", responses=error_responses(401, 422))
    async def undocumented(principal: Principal = ops) -> dict:
        raise HTTPException(409, "not in the document")

    @api.get("/kept", responses=error_responses(401, 403, 422))
    async def kept(
        principal: Principal = ops, limit: Annotated[int, Query(ge=1, le=10)] = 1
    ) -> dict[str, int]:
        return {"limit": limit}

    return api


def test_the_audit_reports_a_500_and_an_undocumented_status_and_passes_a_kept_route() -> None:
    failures = audit_openapi(app(), {"ops": TOKENS["ops"], "none": {}}, max_examples=10)
    # in process the server's exception itself comes back; over HTTP it is a 500
    assert any(f.startswith("GET /crashes with ops: ZeroDivisionError") for f in failures), failures
    assert any(f.startswith("GET /undocumented with ops") for f in failures), failures
    assert not any("/kept" in f for f in failures), failures


def test_a_route_with_no_token_is_declared_as_a_problem() -> None:
    problems = declared_problems(app().openapi())
    assert "GET /crashes: no security requirement" in problems
    assert "GET /undocumented: undocumented 403" in problems
    assert not any("/kept" in p for p in problems)
