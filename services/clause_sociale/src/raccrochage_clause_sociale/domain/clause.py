"""A clause sociale de formation in a public contract: its hours, and what proves them executed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from . import events
from .dates import add_months
from .errors import Refused, require_aware

if TYPE_CHECKING:
    from .mission import Mission

# The national pilot's sizes: (the firm amount below which, hours); 900 h from 400 k EUR on.
HOURS_BY_AMOUNT: tuple[tuple[int, int], ...] = ((100_000, 150), (200_000, 300), (400_000, 450))
HOURS_FROM_400K = 900
# A clause is for a contract of more than one firm year...
MIN_FIRM_MONTHS = 12
# ... declared at least six months before the contract ends; the same six months make a clause
# "bientôt échue" while its hours are not all planned.
MONTHS_BEFORE_END = 6

ORG_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
ROLE = re.compile(r"^[a-z][a-z_]{0,39}$")
DEPARTEMENT = re.compile(r"^([0-9]{2}|2A|2B|9[78][0-9])$")


class BuyerType(StrEnum):
    ETAT = "etat"
    COLLECTIVITE_TERRITORIALE = "collectivite_territoriale"
    ETABLISSEMENT_PUBLIC = "etablissement_public"
    HOPITAL = "hopital"
    BAILLEUR_SOCIAL = "bailleur_social"
    AUTRE = "autre"


@dataclass(frozen=True)
class Buyer:
    """The public buyer: an organisation, reached through a contact known by role."""

    buyer_id: str
    organisation: str
    buyer_type: BuyerType
    contact_role: str  # acheteur, responsable_achats, ...
    departement: str


def hours_for_amount(firm_amount_eur: int) -> int:
    """The training hours a clause requires for the firm period's estimated amount."""
    if firm_amount_eur < 0:
        raise Refused(f"the firm amount {firm_amount_eur} EUR is negative")
    return next((hours for below, hours in HOURS_BY_AMOUNT if firm_amount_eur < below), HOURS_FROM_400K)


@dataclass(frozen=True)
class ExecutionProof:
    """The buyer's proof of execution of one clause: hours required, declared in missions,
    planned (a youth is on them), done; and the ledger of hours done, youth by youth."""

    clause_id: str
    hours_required: int
    hours_declared: int
    hours_planned: int
    hours_done: int
    hours_by_youth: dict[str, int]

    @property
    def executed(self) -> bool:
        return self.hours_done >= self.hours_required


@dataclass(eq=False)
class Clause:
    """Build a new one with `Clause.publish` (which checks the rules and records ClausePublished);
    the constructor is for repositories loading a stored clause."""

    clause_id: str
    buyer: Buyer
    company_id: str  # the company that holds the contract and hosts the youths
    contract_object: str
    notification_date: date
    firm_period_ends_on: date
    firm_amount_eur: int
    ends_on: date  # renewals included
    hours_required: int
    published_at: datetime
    events: list[events.DomainEvent] = field(default_factory=list, repr=False)

    @classmethod
    def publish(
        cls,
        clause_id: str,
        buyer: Buyer,
        company_id: str,
        contract_object: str,
        notification_date: date,
        firm_period_ends_on: date,
        firm_amount_eur: int,
        ends_on: date,
        now: datetime,
    ) -> Clause:
        """A buyer publishes a clause. Refused, with the rule, for a contract of one firm year or
        less, or a clause declared less than six months before the contract ends."""
        require_aware(now, "now")
        where = f"clause {clause_id}"
        _check_buyer(buyer, where)
        if not ORG_ID.match(company_id):
            raise Refused(f"{where}: company id {company_id!r} is not a lower-case id (a-z, 0-9, - and _)")
        contract_object = contract_object.strip()
        if not 1 <= len(contract_object) <= 300:
            raise Refused(f"{where}: the contract object must have 1 to 300 characters")
        if firm_period_ends_on <= notification_date:
            raise Refused(
                f"{where}: the firm period ends on {firm_period_ends_on}, not after its notification"
            )
        if ends_on < firm_period_ends_on:
            raise Refused(
                f"{where}: the contract ends on {ends_on}, before its firm period ({firm_period_ends_on})"
            )
        one_firm_year = add_months(notification_date, MIN_FIRM_MONTHS)
        if firm_period_ends_on < one_firm_year:
            raise Refused(
                f"{where}: a clause sociale de formation needs a contract of more than one firm year; "
                f"notified on {notification_date}, its firm period ends on {firm_period_ends_on}"
            )
        latest_end_refused = add_months(now.date(), MONTHS_BEFORE_END)
        if ends_on < latest_end_refused:
            raise Refused(
                f"{where}: declared on {now.date()}, less than {MONTHS_BEFORE_END} months before the "
                f"contract ends on {ends_on}; a clause must be declared by "
                f"{add_months(ends_on, -MONTHS_BEFORE_END)}"
            )
        clause = cls(
            clause_id,
            buyer,
            company_id,
            contract_object,
            notification_date,
            firm_period_ends_on,
            firm_amount_eur,
            ends_on,
            hours_for_amount(firm_amount_eur),
            now,
        )
        clause.events.append(events.ClausePublished(clause_id, now))
        return clause

    def is_open_on(self, day: date) -> bool:
        """Missions may be declared and hosted until the contract ends."""
        return day <= self.ends_on

    def proof(self, missions: Iterable[Mission]) -> ExecutionProof:
        missions = [m for m in missions if m.clause_id == self.clause_id]
        by_youth: dict[str, int] = {}
        for mission in missions:
            for youth_id, hours in mission.hours_by_youth().items():
                by_youth[youth_id] = by_youth.get(youth_id, 0) + hours
        return ExecutionProof(
            self.clause_id,
            self.hours_required,
            sum(m.hours for m in missions),
            sum(m.hours_planned for m in missions),
            sum(by_youth.values()),
            by_youth,
        )

    def is_bientot_echue(self, missions: Iterable[Mission], today: date) -> bool:
        """The contract ends within six months and its hours are not all planned."""
        if not today <= self.ends_on <= add_months(today, MONTHS_BEFORE_END):
            return False
        return self.proof(missions).hours_planned < self.hours_required


def _check_buyer(buyer: Buyer, where: str) -> None:
    if not ORG_ID.match(buyer.buyer_id):
        raise Refused(f"{where}: buyer id {buyer.buyer_id!r} is not a lower-case id (a-z, 0-9, - and _)")
    if not 1 <= len(buyer.organisation.strip()) <= 200:
        raise Refused(f"{where}: the buyer's organisation must have 1 to 200 characters")
    if buyer.buyer_type not in tuple(BuyerType):
        known = ", ".join(BuyerType)
        raise Refused(f"{where}: buyer type {buyer.buyer_type!r} is not one of {known}")
    if not ROLE.match(buyer.contact_role):
        raise Refused(f"{where}: the buyer's contact role {buyer.contact_role!r} is not a code (a-z and _)")
    if not DEPARTEMENT.match(buyer.departement):
        raise Refused(f"{where}: {buyer.departement!r} is not a département")
