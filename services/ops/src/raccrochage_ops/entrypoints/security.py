"""Who may open the dashboard: a bearer token (API) or the same token kept in a cookie (pages).

Roles: ops sees every territory and the pipeline; academy and counsellor tokens see the counts
of their territory (département) only, and neither the pipeline nor the dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPBearer
from raccrochage_platform.auth import InvalidToken, Principal, Role, verify

COOKIE = "ops_token"
# Declared for OpenAPI: either scheme is accepted on every route.
BEARER_SCHEME = HTTPBearer(auto_error=False, description="raccrochage token --role ops|academy|counsellor")
COOKIE_SCHEME = APIKeyCookie(name=COOKIE, auto_error=False, description="set by POST /login")


class NotLoggedIn(Exception):
    """No valid token: an API caller gets 401, a browser the login page."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class Caller:
    principal: Principal

    @property
    def territory(self) -> str | None:
        """The only département this caller may see (None: every one)."""
        return None if self.principal.role is Role.OPS else self.principal.territory

    def scope(self, departement: str | None) -> str | None:
        if self.territory is None:
            return departement or None
        if departement and departement != self.territory:
            raise HTTPException(
                403, f"departement {departement} is not the token's territory ({self.territory})"
            )
        return self.territory

    def require_ops(self) -> None:
        if self.principal.role is not Role.OPS:
            raise HTTPException(
                403, "the pipeline and dead letters need an ops token (raccrochage token --role ops)"
            )


def token_of(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(COOKIE) or None


# The roles that may open the dashboard. Any other valid token is refused: a campaign manager's,
# a buyer's or a company's has no territory, which here would mean every territory's counts.
DASHBOARD_ROLES = frozenset({Role.OPS, Role.ACADEMY, Role.COUNSELLOR})


def caller_dependency(key: str):
    def caller(request: Request) -> Caller:
        token = token_of(request)
        if token is None:
            raise NotLoggedIn("missing token: a bearer token, or log in at /login")
        try:
            principal = verify(key, token)
        except InvalidToken as error:
            raise NotLoggedIn(f"invalid token: {error}") from None
        if principal.role not in DASHBOARD_ROLES:
            allowed = ", ".join(sorted(role.value for role in DASHBOARD_ROLES))
            raise HTTPException(
                403, f"a {principal.role.value} token may not open the dashboard; it needs: {allowed}"
            )
        return Caller(principal)

    return caller
