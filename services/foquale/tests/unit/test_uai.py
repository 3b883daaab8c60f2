"""The UAI's check letter: `"ABCDEFGHJKLMNPRSTUVWXYZ"[int(first 7 digits) % 23]`."""

from __future__ import annotations

import pytest
from raccrochage_foquale.domain.errors import InvalidCommand
from raccrochage_foquale.domain.uai import InvalidUai, Uai, check_letter


@pytest.mark.parametrize("code", ["0781977A", "0942434K", "0350760L", "0331234M", "0400003L"])
def test_valid_codes(code: str) -> None:
    assert str(Uai(code)) == code
    assert check_letter(code[:7]) == code[7]


def test_a_wrong_letter_is_refused_naming_the_expected_one() -> None:
    with pytest.raises(InvalidUai, match=r"the check letter of 0781977 is A, not B") as error:
        Uai("0781977B")
    assert isinstance(error.value, InvalidCommand) and error.value.field == "uai"


@pytest.mark.parametrize(
    "code",
    ["078197A", "07819770A", "A781977A", "0781977", "", "078 977A", "٠٧٨١٩٧٧A"],
    ids=["short", "long", "letter-first", "no-letter", "empty", "space", "arabic-indic-digits"],
)
def test_malformed_codes_say_the_expected_shape(code: str) -> None:
    with pytest.raises(InvalidUai, match="expected 7 digits and a check letter"):
        Uai(code)


def test_parse_normalises_and_names_the_field() -> None:
    assert Uai.parse(" 0781977a ") == Uai("0781977A")
    with pytest.raises(InvalidUai) as error:
        Uai.parse("0781977B", field="records[3].uai")
    assert error.value.field == "records[3].uai"
    assert "is A, not B" in error.value.reason
