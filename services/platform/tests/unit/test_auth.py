"""Bearer tokens: what a token grants, and every way a token is refused."""

from __future__ import annotations

import pytest
from raccrochage_platform.auth import InvalidToken, Principal, Role, mint, verify

KEY = "s" * 64


def test_a_counsellor_token_is_bound_to_its_territory() -> None:
    principal = verify(KEY, mint(KEY, role="counsellor", territory="33", sub="c-1"))
    assert principal == Principal("c-1", Role.COUNSELLOR, "33")
    assert principal.may_see("33") and not principal.may_see("40")


def test_an_mlds_coordinator_token_is_bound_to_its_territory_and_sees_no_psad_case() -> None:
    principal = verify(KEY, mint(KEY, role="mlds_coordinator", territory="40", sub="coord-40"))
    assert principal == Principal("coord-40", Role.MLDS_COORDINATOR, "40")
    assert not principal.may_see("40")


def test_an_ops_token_sees_no_case() -> None:
    principal = verify(KEY, mint(KEY, role="ops", sub="dashboard"))
    assert principal.territory is None and not principal.may_see("33")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("abc", "three dot-separated parts"),
        (mint("other" * 10, role="ops", sub="x"), "bad signature"),
        (mint(KEY, role="ops", sub="x", now=0, ttl_seconds=60), "expired"),
    ],
)
def test_refused_tokens_say_why(token: str, message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        verify(KEY, token)


def test_a_tampered_territory_breaks_the_signature() -> None:
    import base64
    import json

    header, body, signature = mint(KEY, role="counsellor", territory="33", sub="c").split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["territory"] = "40"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(KEY, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize(
    ("role", "territory"),
    [("counsellor", None), ("mlds_coordinator", None), ("ops", "33"), ("campaign_manager", "33")],
)
def test_minting_refuses_inconsistent_claims(role: str, territory: str | None) -> None:
    with pytest.raises(ValueError, match="territory"):
        mint(KEY, role=role, sub="x", territory=territory)


def test_a_campaign_manager_acts_for_every_territory_and_sees_no_case() -> None:
    principal = verify(KEY, mint(KEY, role="campaign_manager", sub="saio"))
    assert principal == Principal("saio", Role.CAMPAIGN_MANAGER, None)
    assert not principal.may_see("33")
