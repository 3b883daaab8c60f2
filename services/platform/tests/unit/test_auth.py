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


def test_the_clause_sociale_roles_carry_their_organisation_or_territory() -> None:
    buyer = verify(KEY, mint(KEY, role="buyer", sub="acheteuse", organisation="bordeaux-metropole"))
    assert (buyer.role, buyer.organisation, buyer.territory) == (Role.BUYER, "bordeaux-metropole", None)
    company = verify(KEY, mint(KEY, role="company", sub="ref-204", organisation="batisud-33"))
    assert company.organisation == "batisud-33"
    tutor = verify(KEY, mint(KEY, role="mlds_tutor", sub="tuteur-1", territory="33"))
    assert (tutor.territory, tutor.organisation) == ("33", None)


@pytest.mark.parametrize(
    ("role", "territory", "organisation", "message"),
    [
        ("buyer", None, None, "needs an organisation"),
        ("company", None, None, "needs an organisation"),
        ("company", "33", "batisud-33", "give no territory"),
        ("mlds_tutor", None, None, "needs a territory"),
        ("counsellor", "33", "batisud-33", "has no organisation"),
    ],
)
def test_minting_refuses_a_clause_role_without_what_binds_it(
    role: str, territory: str | None, organisation: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mint(KEY, role=role, sub="x", territory=territory, organisation=organisation)
