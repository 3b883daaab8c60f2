"""The UAI, an establishment's national code: seven digits and a check letter."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidCommand

# The letter is chosen by the 7 digits modulo 23, in an alphabet without I, O and Q.
CHECK_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


class InvalidUai(InvalidCommand):
    def __init__(self, code: str, reason: str, field: str = "uai"):
        self.code = code
        super().__init__(field, f"UAI {code!r}: {reason}")


def check_letter(digits: str) -> str:
    """The check letter of seven digits: `CHECK_LETTERS[int(digits) % 23]`."""
    return CHECK_LETTERS[int(digits) % 23]


def _problem(code: str) -> str | None:
    if len(code) != 8 or not code[:7].isascii() or not code[:7].isdigit():
        return "expected 7 digits and a check letter, as 0781977A"
    expected = check_letter(code[:7])
    if code[7] != expected:
        return f"the check letter of {code[:7]} is {expected}, not {code[7]}"
    return None


@dataclass(frozen=True, slots=True, order=True)
class Uai:
    """A valid UAI (`Uai("0781977A")`); `Uai.parse` also takes spaces around and a lower-case letter."""

    code: str

    def __post_init__(self) -> None:
        problem = _problem(self.code)
        if problem is not None:
            raise InvalidUai(self.code, problem)

    @classmethod
    def parse(cls, text: str, field: str = "uai") -> Uai:
        """`field` names where the text came from, for the error (`records[3].uai`)."""
        code = text.strip().upper()
        problem = _problem(code)
        if problem is not None:
            raise InvalidUai(text, problem, field)
        return cls(code)

    def __str__(self) -> str:
        return self.code
