"""The convention de stage: company, MLDS structure, youth, and the legal guardian of a minor.

Its parties are named by references to the identities the service keeps in its own database
(fetched from the repérage vault by request/reply, audited there); the rules need only the roles,
the period and the youth's birth date, which never leaves the service either.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from .dates import age_on
from .errors import Refused

UAI = re.compile(r"^[0-9]{7}[A-Z]$")
UAI_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
AGE_OF_MAJORITY = 18
AGES = range(16, 26)


class SignatoryRole(StrEnum):
    COMPANY = "company"
    MLDS_STRUCTURE = "mlds_structure"
    YOUTH = "youth"
    LEGAL_GUARDIAN = "legal_guardian"


ALWAYS_SIGN = (SignatoryRole.COMPANY, SignatoryRole.MLDS_STRUCTURE, SignatoryRole.YOUTH)


def uai_is_valid(uai: str) -> bool:
    """7 digits and the check letter of the académies' directory."""
    return bool(UAI.match(uai)) and UAI_LETTERS[int(uai[:7]) % 23] == uai[7]


@dataclass(frozen=True)
class Signature:
    role: SignatoryRole
    signed_at: datetime
    signed_by: str  # the reference of the party who signed


@dataclass(frozen=True)
class Convention:
    convention_id: str
    youth_id: str
    starts_on: date
    ends_on: date
    mlds_structure_uai: str
    company_tutor_id: str  # the company referent who hosts the youth
    youth_birth_date: date  # from the vault; stays in this service
    parties: dict[SignatoryRole, str]  # role -> reference of the party's identity in this service
    drafted_at: datetime
    signatures: tuple[Signature, ...] = ()

    @classmethod
    def draft(
        cls,
        convention_id: str,
        youth_id: str,
        starts_on: date,
        ends_on: date,
        mlds_structure_uai: str,
        company_tutor_id: str,
        youth_birth_date: date,
        parties: dict[SignatoryRole, str],
        now: datetime,
    ) -> Convention:
        where = f"convention {convention_id}"
        if ends_on < starts_on:
            raise Refused(f"{where}: it ends on {ends_on}, before it starts on {starts_on}")
        if starts_on < now.date():
            raise Refused(f"{where}: it cannot start on {starts_on}, in the past")
        if not uai_is_valid(mlds_structure_uai):
            raise Refused(
                f"{where}: {mlds_structure_uai!r} is not a valid UAI (7 digits and their check letter)"
            )
        age = age_on(youth_birth_date, starts_on)
        if age not in AGES:
            raise Refused(f"{where}: the youth is {age} on {starts_on}; the clause sociale is for 16 to 25")
        parties = {SignatoryRole(role): ref for role, ref in parties.items()}
        minor = age < AGE_OF_MAJORITY
        required = {*ALWAYS_SIGN, *((SignatoryRole.LEGAL_GUARDIAN,) if minor else ())}
        missing = [role.value for role in SignatoryRole if role in required and not parties.get(role)]
        if minor and SignatoryRole.LEGAL_GUARDIAN.value in missing:
            raise Refused(
                f"{where}: the youth is a minor ({age}) on the start date {starts_on}: "
                "the legal guardian must be a party to the convention"
            )
        if missing:
            raise Refused(f"{where}: no party for {', '.join(missing)}")
        if not minor and SignatoryRole.LEGAL_GUARDIAN in parties:
            raise Refused(f"{where}: the youth is of age ({age}) on {starts_on}: no legal guardian signs")
        return cls(
            convention_id,
            youth_id,
            starts_on,
            ends_on,
            mlds_structure_uai,
            company_tutor_id,
            youth_birth_date,
            parties,
            now,
        )

    @property
    def youth_minor(self) -> bool:
        return age_on(self.youth_birth_date, self.starts_on) < AGE_OF_MAJORITY

    @property
    def youth_age(self) -> int:
        """Age in whole years on the start date: what may leave the service."""
        return age_on(self.youth_birth_date, self.starts_on)

    @property
    def required_roles(self) -> tuple[SignatoryRole, ...]:
        return tuple(role for role in SignatoryRole if role in self.parties)

    @property
    def signed_roles(self) -> tuple[SignatoryRole, ...]:
        return tuple(s.role for s in self.signatures)

    @property
    def complete(self) -> bool:
        return set(self.required_roles) <= set(self.signed_roles)

    def signed(self, role: SignatoryRole, now: datetime) -> Convention:
        """The convention with `role`'s signature; Refused for a role that is not a party, or one
        that signed already."""
        where = f"convention {self.convention_id}"
        try:
            role = SignatoryRole(role)
        except ValueError:
            raise Refused(f"{where}: {role!r} is not a signatory role") from None
        if role not in self.parties:
            raise Refused(f"{where}: {role.value} is not a party to this convention")
        if role in self.signed_roles:
            raise Refused(f"{where}: {role.value} has signed already")
        if now < self.drafted_at:
            raise Refused(f"{where}: a signature at {now.isoformat()} is before the draft")
        return dataclasses.replace(
            self, signatures=(*self.signatures, Signature(role, now, self.parties[role]))
        )

    def overlaps(self, other: Convention) -> bool:
        return self.starts_on <= other.ends_on and other.starts_on <= self.ends_on
