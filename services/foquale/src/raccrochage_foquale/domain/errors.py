"""What FOQUALE's domain refuses, and how: every error says what is wrong and where (the field)."""

from __future__ import annotations


class FoqualeError(Exception):
    """A command the domain does not take; the aggregate is left exactly as it was."""


class InvalidCommand(FoqualeError, ValueError):
    """An argument is wrong. `field` names it (a dotted path, as partners' feedback shows it)."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class CommandRefused(FoqualeError):
    """The command is well formed but not allowed now (a closed offer, an answered reservation)."""


class NotYourEstablishment(FoqualeError, PermissionError):
    """An establishment key or a partner acts on a UAI it is not registered for."""


class NotFound(FoqualeError, LookupError):
    pass
