"""Bearer tokens for the services' HTTP APIs: compact JWTs (HS256) signed with the rig's token key.

A token says who calls (`sub`), in which role, for a counsellor or an MLDS tutor which
territory (the département) it is bound to, and for a buyer or a company which organisation. Services check the signature and the expiry, then apply their own
rules (PSAD: a counsellor sees only their territory's cases; ops sees counts, nothing personal).
Kept to the few lines HS256 needs rather than a dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, Request

ISSUER = "raccrochage"


class Role(StrEnum):
    COUNSELLOR = "counsellor"  # a PSAD counsellor: cases of one territory, contact details included
    OPS = "ops"  # dashboards: counts for every territory, nothing personal
    # The clause sociale's three parties: a public buyer and a company each act for their
    # organisation, an MLDS tutor for a territory.
    BUYER = "buyer"
    COMPANY = "company"
    MLDS_TUTOR = "mlds_tutor"


TERRITORY_ROLES = (Role.COUNSELLOR, Role.MLDS_TUTOR)
ORGANISATION_ROLES = (Role.BUYER, Role.COMPANY)


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    territory: str | None  # a département ("33"); None for ops
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
    if role in TERRITORY_ROLES and not territory:
        raise ValueError(f"a {role.value} token needs a territory (département, e.g. 33)")
    if role is Role.OPS and territory:
        raise ValueError("an ops token is for every territory: give no territory")
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
    if role in TERRITORY_ROLES and not territory:
        raise InvalidToken(f"{role.value} token without territory")
    if role in ORGANISATION_ROLES and not organisation:
        raise InvalidToken(f"{role.value} token without organisation")
    return Principal(sub=sub, role=role, territory=territory, organisation=organisation)


def bearer(key: str):
    """A FastAPI dependency that returns the caller's Principal or answers 401."""

    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
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
