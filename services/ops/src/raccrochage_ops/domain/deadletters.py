"""Dead letters as ops shows them: grouped by a reason kind, payloads shown only when harmless."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Fields that name a person or something only one youth has (a case, a candidacy): an event type
# that declares one of them never has its payload shown, even pseudonymous.
PERSON_FIELDS = frozenset(
    {
        "youth_id",
        "case_id",
        "candidacy_id",
        "proposal_id",
        "convention_id",
        "tutor_id",
        "referent_id",
        "second_referent_id",
        "interviewer_id",
    }
)

_AFTER = re.compile(r"\s*\(after \d+ deliveries\)$")
_KINDS = (
    ("invalid envelope", "invalid envelope"),
    ("invalid data", "invalid data"),
    ("invalid ", "invalid payload"),
    ("unknown event type", "unknown event type"),
    ("envelope type", "subject mismatch"),
    ("source ", "partner mismatch"),
    ("rejected by handler", "rejected by handler"),
    ("handler failed", "handler failed"),
)


def reason_kind(reason: str) -> str:
    """A short, bounded label for a reason (metrics labels, the per-reason table): reasons are
    written by our consumers and start with what went wrong."""
    lowered = reason.lower()
    if " has no handler for " in lowered:
        return "no handler"
    for prefix, kind in _KINDS:
        if lowered.startswith(prefix):
            return kind
    return "other"


def reason_group(reason: str) -> str:
    """The reason without its delivery count: letters that failed the same way group together."""
    return _AFTER.sub("", reason)


@dataclass(frozen=True)
class Visibility:
    shown: bool
    why: str


def payload_visibility(declared_fields: frozenset[str] | None, strictly_valid: bool) -> Visibility:
    """Whether a dead letter's payload may be shown: only an event of a known type that declares
    no field about a person, and that its contract reads strictly (no field beside the declared
    ones, where anything could hide)."""
    if declared_fields is None:
        return Visibility(False, "payload withheld: unknown event type")
    personal = sorted(declared_fields & PERSON_FIELDS)
    if personal:
        return Visibility(False, f"payload withheld: this event type carries {', '.join(personal)}")
    if not strictly_valid:
        return Visibility(False, "payload withheld: it does not match its contract, it could hold anything")
    return Visibility(True, "no field about a person in this event type")
