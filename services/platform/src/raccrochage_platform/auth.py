"""Bearer tokens for the services' HTTP APIs: compact JWTs (HS256) signed with the rig's token key.

A token says who calls (`sub`), in which role, for the territorial roles (counsellor, academy,
MLDS coordinator or tutor) which territory (the département) it is bound to, and for a buyer or a
company which organisation. Services check the signature and the expiry, then apply their own
rules (PSAD: a counsellor sees only their territory's cases; ops sees counts, nothing personal;
repérage: a campaign manager uploads campaign files, which span every territory).
Kept to the few lines HS256 needs rather than a dependency.

Routes take the caller with `Depends(caller(key, Role.X, ...))`: OpenAPI then declares the bearer
scheme, and the route's documented answers come from `error_responses(...)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict

ISSUER = "raccrochage"


class Role(StrEnum):
    COUNSELLOR = "counsellor"  # a PSAD counsellor: cases of one territory, contact details included
    OPS = "ops"  # dashboards: counts for every territory, nothing personal
    ACADEMY = "academy"  # an académie's steering team: the ops dashboard's counts of one territory
    MLDS_COORDINATOR = "mlds_coordinator"  # an MLDS coordinator: candidacies and sites of one territory
    # repérage (SAIO): uploads campaign files and reads their reports; a campaign spans every
    # territory of the académie, so the token has none
    CAMPAIGN_MANAGER = "campaign_manager"
    # The clause sociale's three parties: a public buyer and a company each act for their
    # organisation, an MLDS tutor for a territory.
    BUYER = "buyer"
    COMPANY = "company"
    MLDS_TUTOR = "mlds_tutor"
    # The data protection officer: erases a youth everywhere and exports what is held about
    # them (repérage's /privacy routes); acts for every territory, so the token has none.
    DPO = "dpo"


# The roles whose token is bound to one territory; the others act for every territory.
TERRITORIAL_ROLES = frozenset({Role.COUNSELLOR, Role.ACADEMY, Role.MLDS_COORDINATOR, Role.MLDS_TUTOR})
# The roles whose token is bound to one organisation (its id); no other role has one.
ORGANISATION_ROLES = frozenset({Role.BUYER, Role.COMPANY})


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    territory: str | None  # a département ("33") for the territorial roles, else None
    organisation: str | None = None  # a buyer's or a company's id; None for the other roles

    def may_see(self, departement: str) -> bool:
        return self.role is Role.COUNSELLOR and self.territory == departement


class InvalidToken(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, signing_input: str) -> str:
    return _b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def mint(
    key: str,
    *,
    role: Role | str,
    sub: str,
    territory: str | None = None,
    ttl_seconds: int = 12 * 3600,
    now: float | None = None,
    organisation: str | None = None,
) -> str:
    role = Role(role)
    if role in TERRITORIAL_ROLES and not territory:
        raise ValueError(f"a {role.value} token needs a territory (département, e.g. 33)")
    if role not in TERRITORIAL_ROLES and territory:
        raise ValueError(f"an {role.value} token is for every territory: give no territory")
    if role in ORGANISATION_ROLES and not organisation:
        raise ValueError(f"a {role.value} token needs an organisation (its id, e.g. bordeaux-metropole)")
    if role not in ORGANISATION_ROLES and organisation:
        raise ValueError(f"a {role.value} token has no organisation")
    issued = int(now if now is not None else time.time())
    claims = {"iss": ISSUER, "sub": sub, "role": role.value, "iat": issued, "exp": issued + ttl_seconds}
    if territory:
        claims["territory"] = territory
    if organisation:
        claims["organisation"] = organisation
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{body}.{_signature(key.encode(), f'{header}.{body}')}"


def verify(key: str, token: str, now: float | None = None) -> Principal:
    """The principal of a valid token; InvalidToken says what is wrong (never echoing the token)."""
    try:
        header, body, signature = token.split(".")
    except ValueError:
        raise InvalidToken("not a token: expected three dot-separated parts") from None
    expected = _signature(key.encode(), f"{header}.{body}")
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("bad signature")
    try:
        if json.loads(_unb64(header)).get("alg") != "HS256":
            raise InvalidToken("unsupported algorithm")
        claims = json.loads(_unb64(body))
        role = Role(claims["role"])
        sub, expiry = str(claims["sub"]), float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise InvalidToken("malformed claims") from None
    if claims.get("iss") != ISSUER:
        raise InvalidToken("unknown issuer")
    if (now if now is not None else time.time()) >= expiry:
        raise InvalidToken("expired")
    territory, organisation = claims.get("territory"), claims.get("organisation")
    if role in TERRITORIAL_ROLES and not territory:
        raise InvalidToken(f"{role.value} token without territory")
    if role not in TERRITORIAL_ROLES and territory:
        raise InvalidToken(f"{role.value} token bound to a territory")
    if role in ORGANISATION_ROLES and not organisation:
        raise InvalidToken(f"{role.value} token without organisation")
    return Principal(sub=sub, role=role, territory=territory, organisation=organisation)


# The scheme OpenAPI declares; it only reads the header: `caller` answers 401 with our message.
BEARER_SCHEME = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="a token from `raccrochage token --role ...` (HS256, the rig's token key)",
    auto_error=False,
)
_SCHEME = Security(BEARER_SCHEME)


def bearer(key: str):
    """A FastAPI dependency that returns the caller's Principal or answers 401."""

    def principal(request: Request, _scheme: Any = _SCHEME) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "missing bearer token (raccrochage token --role ...)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return verify(key, token.strip())
        except InvalidToken as error:
            raise HTTPException(
                401, f"invalid token: {error}", headers={"WWW-Authenticate": "Bearer"}
            ) from None

    return principal


def caller(key: str, *roles: Role):
    """A FastAPI dependency: the caller's Principal when their token is valid (else 401) and has
    one of `roles` (else 403 naming the roles that may)."""
    authenticated = bearer(key)
    allowed = ", ".join(role.value for role in roles)

    def principal(found: Principal = Depends(authenticated)) -> Principal:
        if found.role not in roles:
            raise HTTPException(403, f"a {found.role.value} token may not do this; it needs: {allowed}")
        return found

    return principal


class ValidationIssue(BaseModel):
    """One of FastAPI's validation errors: where (`loc`), what (`msg`) and the rule (`type`)."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a sentence saying what is wrong, or FastAPI's list of invalid fields."""

    detail: str | list[ValidationIssue]


_MEANING = {
    400: "malformed request (e.g. a multipart body that cannot be read)",
    401: "no bearer token, or an invalid or expired one",
    403: "the token's role or territory does not allow this",
    404: "not found",
    409: "conflicts with the current state",
    413: "too large",
    422: "invalid parameters or body: says which field and what rule",
    502: "a service this one asks did not answer usably",
    503: "a service this one asks is unreachable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route gives, each with the ErrorBody schema."""
    return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}
