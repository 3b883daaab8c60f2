"""What every service's HTTP API must keep, checked from its OpenAPI document (reusable).

`audit_openapi(url_or_app, tokens)` has schemathesis generate requests for every operation and
sends each with the token of every role (and none): no answer may be a 500, give a status the
document does not list, or a body outside the listed schema. `declared_problems(document)` reads
the document itself: every route is behind a security scheme and lists 401, and 403 when the
scheme is the bearer token (a role that may be refused).

A service adds itself by adding its name to `SERVICES` in test_openapi.py (it is started as the
rig starts it) or by calling these functions on its own app or URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

OPERATIONS_ROUTES = {"/health", "/ready", "/metrics"}  # the platform's, for probes: no token
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def load(source: str | Any) -> Any:
    """The schemathesis schema of a service: `source` is the URL of its /openapi.json, or an app."""
    if isinstance(source, str):
        return schemathesis.openapi.from_url(source)
    return schemathesis.openapi.from_asgi("/openapi.json", source)


def audit_openapi(
    source: str | Any,
    tokens: Mapping[str, Mapping[str, str]],
    *,
    base_url: str | None = None,
    max_examples: int = 25,
    skip: frozenset[str] = frozenset(OPERATIONS_ROUTES),
) -> list[str]:
    """Failures found (empty when none): each names the operation, the token and what broke.

    `tokens` maps a label ("counsellor-33", "none") to the headers to send."""
    schema = load(source)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in skip:
            continue
        for label, headers in tokens.items():
            problem = _fuzz(operation, dict(headers), base_url, max_examples)
            if problem:
                failures.append(f"{operation.method.upper()} {operation.path} with {label}: {problem}")
    return failures


def _fuzz(operation: Any, headers: dict[str, str], base_url: str | None, max_examples: int) -> str | None:
    # A token the route refuses is refused before its parameters are read: a few requests show
    # it, and the budget goes to the tokens that reach the route's own code.
    statuses: set[int] = set()
    problem = _run(operation, headers, base_url, min(REFUSED_EXAMPLES, max_examples), statuses)
    if problem or statuses <= {401, 403}:
        return problem
    return _run(operation, headers, base_url, max_examples, statuses)


REFUSED_EXAMPLES = 1


def _run(
    operation: Any, headers: dict[str, str], base_url: str | None, max_examples: int, statuses: set[int]
) -> str | None:
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same requests on every run: a failure can be replayed
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        statuses.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except (Exception, BaseExceptionGroup) as error:  # schemathesis' failure group, a transport error
        return f"{type(error).__name__}: {str(error)[:2000]}"
    return None


def declared_problems(document: Mapping[str, Any], public: frozenset[str] = frozenset()) -> list[str]:
    """What the OpenAPI document fails to declare: the bearer scheme on each route, and the 401
    and 403 each route behind a token gives. `public`: the paths meant for anyone (a login form)."""
    problems = []
    schemes = document.get("components", {}).get("securitySchemes", {})
    if not any(s.get("scheme") == "bearer" for s in schemes.values()):
        problems.append("no bearer security scheme in components.securitySchemes")
    for path, methods in document.get("paths", {}).items():
        if path in OPERATIONS_ROUTES or path in public:
            continue
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            if not operation.get("security"):
                problems.append(f"{where}: no security requirement")
            # a role's token may be refused (403); a key bound to its holder's resources is only
            # valid or not (an establishment's X-Api-Key)
            needed = {"401", "403"} if _behind_bearer(operation, schemes) else {"401"}
            missing = needed - set(operation.get("responses", {}))
            if missing:
                problems.append(f"{where}: undocumented {', '.join(sorted(missing))}")
    return problems


def _behind_bearer(operation: Mapping[str, Any], schemes: Mapping[str, Any]) -> bool:
    names = {name for requirement in operation.get("security", []) for name in requirement}
    return any(schemes.get(name, {}).get("scheme") == "bearer" for name in names)
