"""Contact attempts: by which channel a PSAD tried to reach a youth, and the coded outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Channel(StrEnum):
    PHONE = "phone"
    SMS = "sms"
    EMAIL = "email"
    LETTER = "letter"
    HOME_VISIT = "home_visit"
    VIA_SCHOOL_OF_ORIGIN = "via_school_of_origin"


class ContactOutcome(StrEnum):
    """Coded as mission locales code theirs (RDV_PRIS, CONTACTE_SANS_RETOUR, ...): no free text."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    WRONG_DETAILS = "wrong_details"
    REFUSED = "refused"
    ALREADY_SUPPORTED = "already_supported"
    NEW_CONTRACT_OR_TRAINING = "new_contract_or_training"
    MOVED = "moved"
    OTHER = "other"


# Outcomes that count towards "unreachable after reminders". A wrong phone number says nothing of
# the e-mail address, so WRONG_DETAILS is one more failed attempt, not a closure: the counsellor
# closes with WRONG_CONTACT_DETAILS once every channel has failed, or the unreachable rule does.
# MOVED is not a failure: the youth is known, elsewhere; the case waits for a transfer.
FAILED_OUTCOMES: frozenset[ContactOutcome] = frozenset(
    {ContactOutcome.NO_ANSWER, ContactOutcome.WRONG_DETAILS, ContactOutcome.OTHER}
)


@dataclass(frozen=True)
class ContactAttempt:
    """One attempt; `episode` tells which opening of the case it belongs to (a reopen starts one)."""

    number: int
    episode: int
    channel: Channel
    outcome: ContactOutcome
    at: datetime
    by: str | None = None
