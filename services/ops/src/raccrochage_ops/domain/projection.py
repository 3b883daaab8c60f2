"""The read models ops keeps, and how each event moves them: pure, order-independent rules.

Events of different streams reach ops in any order (a replay of REPERAGE may finish before
PSAD's), so every rule here commutes: a fact with a time keeps the latest (status, territory,
hours) or the earliest (first contact, first interview) by the event's own time, never by
arrival. Replaying the streams in another interleaving gives the same rows, which is what makes
a rebuild comparable with the live projection.

A rule reads the payload by attribute (the contract models), and never keeps anything personal:
the youth is the pseudonymous `youth_id`, which stays in ops' database and never reaches a page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar


def at_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _later(current: datetime | None, candidate: datetime | None) -> bool:
    """Whether a fact at `candidate` replaces one at `current` (ties keep the current one)."""
    return candidate is not None and (current is None or candidate > current)


def _earliest(current: Any, candidate: Any) -> Any:
    if candidate is None:
        return current
    return candidate if current is None or candidate < current else current


# --- rows ---------------------------------------------------------------------------------------
@dataclass
class Row:
    TABLE: ClassVar[str]
    KEY: ClassVar[str]

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.columns()}


@dataclass
class Youth(Row):
    """Where one youth is in the funnel: from repérage's hand-over to the case's last status."""

    TABLE: ClassVar[str] = "youth"
    KEY: ClassVar[str] = "youth_id"
    youth_id: str
    campaign_id: str | None = None
    campaign_at: datetime | None = None  # the campaign's reference date: the latest one wins
    identified: bool = False
    departement: str | None = None
    psad_id: str | None = None
    territory_at: datetime | None = None
    age: int | None = None
    case_opened_at: datetime | None = None
    first_contact_at: datetime | None = None
    interview_deadline: date | None = None
    interviewed_at: datetime | None = None
    status: str | None = None
    status_at: datetime | None = None
    closed_reason: str | None = None
    closed_at: datetime | None = None
    solution_kind: str | None = None
    solution_at: datetime | None = None
    placed_at: datetime | None = None
    escalated_on: date | None = None
    found_base: str | None = None


@dataclass
class Campaign(Row):
    TABLE: ClassVar[str] = "campaign"
    KEY: ClassVar[str] = "campaign_id"
    campaign_id: str
    as_of: date | None = None
    rows: int = 0
    rejected: int = 0
    duplicates: int = 0
    excluded: int = 0
    identified: int = 0
    reported_again: int = 0


@dataclass
class Offer(Row):
    TABLE: ClassVar[str] = "offer"
    KEY: ClassVar[str] = "offer_id"
    offer_id: str
    departement: str | None = None
    capacity: int = 0
    seats_left: int = 0
    changed_at: datetime | None = None
    confirmed_at: datetime | None = None
    stale_confirmed_at: datetime | None = None  # last_confirmed_at quoted by the latest stale flag
    closed_at: datetime | None = None
    reserved: int = 0  # its reservations holding a seat: kept by `derive`, not by an event


@dataclass
class Reservation(Row):
    TABLE: ClassVar[str] = "reservation"
    KEY: ClassVar[str] = "reservation_id"
    reservation_id: str
    offer_id: str | None = None
    made: bool = False
    expired: bool = False
    placed: bool = False


@dataclass
class Dispositif(Row):
    TABLE: ClassVar[str] = "dispositif"
    KEY: ClassVar[str] = "dispositif_id"
    dispositif_id: str
    kind: str | None = None
    departement: str | None = None
    capacity: int = 0
    places_left: int = 0
    revision: int = 0


@dataclass
class Candidacy(Row):
    TABLE: ClassVar[str] = "candidacy"
    KEY: ClassVar[str] = "candidacy_id"
    candidacy_id: str
    youth_id: str | None = None
    departement: str | None = None
    dispositif: str | None = None
    received_at: datetime | None = None
    decision: str | None = None
    decision_number: int = 0
    enrolled_on: date | None = None
    exited_on: date | None = None
    destination: str | None = None


@dataclass
class Clause(Row):
    TABLE: ClassVar[str] = "clause"
    KEY: ClassVar[str] = "clause_id"
    clause_id: str
    departement: str | None = None
    hours_required: int = 0
    ends_on: date | None = None
    published_at: datetime | None = None
    hours_planned: int = 0  # its missions' hours: kept by `derive`, not by an event
    hours_done: int = 0


@dataclass
class Mission(Row):
    TABLE: ClassVar[str] = "mission"
    KEY: ClassVar[str] = "mission_id"
    mission_id: str
    clause_id: str | None = None
    departement: str | None = None
    hours_planned: int = 0
    hours_done: int = 0
    hours_at: datetime | None = None
    status: str | None = None
    status_at: datetime | None = None
    outcome: str | None = None


ROW_KINDS: tuple[type[Row], ...] = (
    Youth,
    Campaign,
    Offer,
    Reservation,
    Dispositif,
    Candidacy,
    Clause,
    Mission,
)


@dataclass
class Store:
    """The rows one batch touches, by kind and key: loaded before `apply`, saved after."""

    rows: dict[type[Row], dict[str, Row]] = field(default_factory=lambda: {kind: {} for kind in ROW_KINDS})
    changed: dict[type[Row], set[str]] = field(default_factory=lambda: {kind: set() for kind in ROW_KINDS})
    # Each row as it was loaded, before the batch's rules: the counts move by after - before.
    loaded: dict[type[Row], dict[str, Row]] = field(default_factory=lambda: {kind: {} for kind in ROW_KINDS})

    def get(self, kind: type[Row], key: str) -> Any:
        """The row (a new one if absent), marked changed: every caller of `get` writes to it."""
        table = self.rows[kind]
        row = table.get(key)
        if row is None:
            row = table[key] = kind(key)  # type: ignore[call-arg]
        self.changed[kind].add(key)
        return row

    def put(self, row: Row) -> None:
        key = getattr(row, row.KEY)
        self.rows[type(row)][key] = row
        self.loaded[type(row)][key] = dataclasses.replace(row)

    def before(self, kind: type[Row], key: str) -> Row:
        """The row as loaded (an empty one when it was not there)."""
        return self.loaded[kind].get(key) or kind(key)  # type: ignore[call-arg]

    def changed_rows(self, kind: type[Row]) -> list[Row]:
        return [self.rows[kind][key] for key in sorted(self.changed[kind])]

    def merge(self, other: Store) -> None:
        """Take in the rows loaded into `other` (a second load for the same batch)."""
        for kind in ROW_KINDS:
            self.rows[kind].update(other.rows[kind])
            self.loaded[kind].update(other.loaded[kind])


# --- the counts the dashboard reads ------------------------------------------------------------
# A youth row counts once in `youth_total` (campaign, territory, whether its case opened, status,
# solution kind, closing reason), once in `youth_count` (the same with the day its case opened,
# for date filters), once per dated fact in `youth_week`, and while its case is open once in
# `youth_open` (the day it opened: "still open after N days"); an
# offer in `seat_total`, a candidacy in `candidacy_total`, an MLDS site in `dispositif_total`, a
# clause in `clause_total`. The projection moves these counts by (after - before) of every row a
# batch changes, in the batch's transaction, so the dashboard adds up aggregate rows instead of
# every youth, offer or candidacy. Days and weeks are UTC's.
TOTAL_KEY = ("campaign_id", "departement", "psad_id", "opened", "status", "solution_kind", "closed_reason")
COUNT_KEY = ("campaign_id", "departement", "psad_id", "opened_on", "status", "solution_kind", "closed_reason")
COUNT_SUMS = ("youths", "identified", "contacted", "interviewed", "interviewed_late", "escalated", "placed")
WEEK_KEY = ("campaign_id", "departement", "psad_id", "series", "monday")
WEEK_SERIES = {"opened": "case_opened_at", "contacted": "first_contact_at", "solution": "solution_at"}
YOUTH_TABLES = ("youth_total", "youth_count", "youth_week", "youth_open")
# Every aggregate table: its key columns, then its sums.
AGGREGATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "youth_total": (TOTAL_KEY, COUNT_SUMS),
    "youth_count": (COUNT_KEY, COUNT_SUMS),
    "youth_week": (WEEK_KEY, ("youths",)),
    # Cases still open per day they opened: "still open after N days" reads the last 90 days.
    "youth_open": (("campaign_id", "departement", "psad_id", "opened_on"), ("youths",)),
    # Open offers' seats, stale offers, reservations holding a seat, per département.
    "seat_total": (("departement",), ("offered", "left", "stale", "reserved")),
    # Candidacies per the youth's département, latest decision and exit destination.
    "candidacy_total": (("departement", "decision", "destination"), ("candidacies", "enrolled", "exited")),
    "dispositif_total": (("departement",), ("capacity", "places_left")),
    # Clauses per département, end date and whether hours are still to do ("bientôt échus").
    "clause_total": (
        ("departement", "ends_on", "unfinished"),
        ("clauses", "hours_required", "hours_planned", "hours_done"),
    ),
}
Counts = dict[str, dict[tuple, tuple[int, ...]]]


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def monday_of(at: datetime) -> date:
    day = utc_day(at)
    return day - timedelta(days=day.weekday())


def youth_counts(youth: Youth) -> Counts:
    """What one youth row adds to each youth table (YOUTH_TABLES): key -> sums (COUNT_SUMS'
    order; `youth_week` counts youths only). An empty row (every column at its default: the
    projection inserts one before it locks it) adds nothing."""
    if youth == Youth(youth.youth_id):
        return {}
    opened_on = utc_day(youth.case_opened_at) if youth.case_opened_at is not None else None
    where = (youth.campaign_id, youth.departement, youth.psad_id)
    case = (youth.status, youth.solution_kind, youth.closed_reason)
    late = (
        youth.interviewed_at is not None
        and youth.interview_deadline is not None
        and utc_day(youth.interviewed_at) > youth.interview_deadline
    )
    sums = (
        1,
        int(youth.identified),
        int(youth.first_contact_at is not None),
        int(youth.interviewed_at is not None),
        int(late),
        int(youth.escalated_on is not None),
        int(youth.placed_at is not None),
    )
    weeks = {}
    for series, column in WEEK_SERIES.items():
        at = getattr(youth, column)
        if at is not None:
            weeks[(*where, series, monday_of(at))] = (1,)
    still_open = opened_on is not None and youth.status not in (None, "closed")
    return {
        "youth_total": {(*where, opened_on is not None, *case): sums},
        "youth_count": {(*where, opened_on, *case): sums},
        "youth_week": weeks,
        "youth_open": {(*where, opened_on): (1,)} if still_open else {},
    }


def _offer_counts(offer: Offer) -> Counts:
    is_open = offer.closed_at is None
    stale = (
        is_open
        and offer.stale_confirmed_at is not None
        and (offer.confirmed_at is None or offer.confirmed_at <= offer.stale_confirmed_at)
    )
    sums = (offer.capacity if is_open else 0, offer.seats_left if is_open else 0, int(stale), offer.reserved)
    return {"seat_total": {(offer.departement,): sums}}


def _candidacy_counts(candidacy: Candidacy) -> Counts:
    exited = candidacy.exited_on is not None
    key = (candidacy.departement, candidacy.decision, candidacy.destination if exited else None)
    return {"candidacy_total": {key: (1, int(candidacy.enrolled_on is not None), int(exited))}}


def _dispositif_counts(site: Dispositif) -> Counts:
    return {"dispositif_total": {(site.departement,): (site.capacity, site.places_left)}}


def _clause_counts(clause: Clause) -> Counts:
    key = (clause.departement, clause.ends_on, clause.hours_done < clause.hours_required)
    sums = (
        int(clause.published_at is not None),
        clause.hours_required,
        clause.hours_planned,
        clause.hours_done,
    )
    return {"clause_total": {key: sums}}


COUNTED: dict[type[Row], Callable[[Any], Counts]] = {
    Youth: youth_counts,
    Offer: _offer_counts,
    Candidacy: _candidacy_counts,
    Dispositif: _dispositif_counts,
    Clause: _clause_counts,
}


def counts_of(row: Row) -> Counts:
    """What one row adds to the aggregate tables (AGGREGATES) it feeds: table -> key -> sums.
    A row at its defaults adds nothing (the projection inserts one empty before it locks it)."""
    kind = type(row)
    if kind not in COUNTED or row == kind(getattr(row, kind.KEY)):  # type: ignore[call-arg]
        return {}
    return COUNTED[kind](row)


def add_counts(totals: dict[str, dict[tuple, list[int]]], row: Row, sign: int = 1) -> None:
    """Add what `row` counts (`counts_of`), times `sign`, to `totals`: table -> key -> sums."""
    for table, counts in counts_of(row).items():
        for where, sums in counts.items():
            total = totals.setdefault(table, {}).setdefault(where, [0] * len(sums))
            for i, n in enumerate(sums):
                total[i] += sign * n


def count_changes(store: Store) -> Counts:
    """How the batch in `store` moves each aggregate table: after - before of every changed row
    it counts, added up per key, keys that do not move left out."""
    changes: dict[str, dict[tuple, list[int]]] = {table: {} for table in AGGREGATES}
    for kind in COUNTED:
        for key in store.changed[kind]:
            add_counts(changes, store.before(kind, key), -1)
            add_counts(changes, store.rows[kind][key])
    return {
        table: {where: tuple(sums) for where, sums in counts.items() if any(sums)}
        for table, counts in changes.items()
    }


def key_order(key: tuple) -> tuple:
    """Aggregate keys in one order in every batch (None first), so that two batches lock the
    aggregate rows they share in the same order and cannot deadlock."""
    return tuple((value is not None, str(value) if value is not None else "") for value in key)


# --- which rows an event touches (loaded in one query per kind before applying) ------------------
def keys_of(event_type: str, data: Any) -> dict[type[Row], str]:
    keys: dict[type[Row], str] = {}
    if hasattr(data, "youth_id") and (
        event_type.startswith(("reperage.youth.", "psad.")) or event_type == "foquale.placement.confirmed.v1"
    ):
        keys[Youth] = data.youth_id
    if event_type == "reperage.campaign.ingested.v1":
        keys[Campaign] = data.campaign_id
    if event_type.startswith("foquale.seat."):
        keys[Offer] = str(data.offer_id)
    # A reservation's offer and a mission's clause too: `derive` counts one into the other.
    if event_type.startswith("foquale.reservation."):
        keys[Reservation] = str(data.reservation_id)
        keys[Offer] = str(data.offer_id)
    if event_type == "foquale.placement.confirmed.v1" and data.reservation_id is not None:
        # FOQUALE names the reserved offer in seat_id.
        keys[Reservation], keys[Offer] = str(data.reservation_id), data.seat_id
    if event_type == "mlds.dispositif.updated.v1":
        keys[Dispositif] = data.dispositif_id
    if event_type.startswith(("mlds.candidacy.", "mlds.enrolment.started", "mlds.enrolment.exited")):
        keys[Candidacy] = str(data.candidacy_id)
    if event_type == "clause.clause.published.v1":
        keys[Clause] = str(data.clause_id)
    if event_type in ("clause.mission.declared.v1", "clause.mission.status_changed.v1") or event_type in (
        "clause.hours.recorded.v1",
        "clause.mission.completed.v1",
    ):
        keys[Mission] = str(data.mission_id)
        keys[Clause] = str(data.clause_id)
    return keys


def linked_keys(store: Store) -> dict[type[Row], set[str]]:
    """Offers of the loaded reservations and clauses of the loaded missions that the batch's
    events did not name (`derive` moves their counts): loaded after the rest when there are any."""
    missing: dict[type[Row], set[str]] = {}
    for kind, parent, link in ((Reservation, Offer, "offer_id"), (Mission, Clause, "clause_id")):
        for row in store.loaded[kind].values():
            key = getattr(row, link)
            if key is not None and key not in store.rows[parent]:
                missing.setdefault(parent, set()).add(key)
    return missing


# --- the rules -----------------------------------------------------------------------------------
def _handed_over(store: Store, data: Any, *, identified: bool) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.identified = youth.identified or identified
    at = at_midnight(data.as_of)
    if _later(youth.campaign_at, at) or (
        youth.campaign_at == at and data.campaign_id > (youth.campaign_id or "")
    ):
        youth.campaign_id, youth.campaign_at = data.campaign_id, at
    _territory(youth, data.departement, data.psad_id, at)
    if youth.age is None:
        youth.age = data.age


def _territory(youth: Youth, departement: str, psad_id: str, at: datetime) -> None:
    if _later(youth.territory_at, at) or (youth.territory_at == at and psad_id > (youth.psad_id or "")):
        youth.departement, youth.psad_id, youth.territory_at = departement, psad_id, at


def _status(youth: Youth, status: str, at: datetime) -> None:
    # On a tie, "closed" wins: a case closed and its status change share one instant.
    if _later(youth.status_at, at) or (youth.status_at == at and status == "closed"):
        youth.status, youth.status_at = status, at


def identified(store: Store, data: Any) -> None:
    _handed_over(store, data, identified=True)


def reported_again(store: Store, data: Any) -> None:
    _handed_over(store, data, identified=False)


def found(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.found_base = youth.found_base or data.base


def campaign_ingested(store: Store, data: Any) -> None:
    campaign: Campaign = store.get(Campaign, data.campaign_id)
    if campaign.as_of is None or data.as_of >= campaign.as_of:
        campaign.as_of = data.as_of
        for name in ("rows", "rejected", "duplicates", "excluded", "identified", "reported_again"):
            setattr(campaign, name, getattr(data, name))


def case_opened(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.case_opened_at = _earliest(youth.case_opened_at, data.opened_at)
    _territory(youth, data.departement, data.psad_id, data.opened_at)
    _status(youth, "to_contact", data.opened_at)
    youth.age = data.age if youth.age is None else youth.age


def case_status_changed(store: Store, data: Any) -> None:
    _status(store.get(Youth, data.youth_id), data.to_status, data.at)


def case_closed(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    _status(youth, "closed", data.closed_at)
    if _later(youth.closed_at, data.closed_at):
        youth.closed_reason, youth.closed_at = data.reason, data.closed_at


def contact_recorded(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.first_contact_at = _earliest(youth.first_contact_at, data.at)


def interview_scheduled(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.interview_deadline = _earliest(youth.interview_deadline, data.deadline)


def interview_recorded(store: Store, data: Any) -> None:
    if data.outcome == "seen":
        youth: Youth = store.get(Youth, data.youth_id)
        youth.interviewed_at = _earliest(youth.interviewed_at, data.at)


def solution_requested(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    if _later(youth.solution_at, data.requested_at):
        youth.solution_kind, youth.solution_at = data.kind, data.requested_at


def escalation_raised(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.escalated_on = _earliest(youth.escalated_on, data.raised_on)


def placement_confirmed(store: Store, data: Any) -> None:
    youth: Youth = store.get(Youth, data.youth_id)
    youth.placed_at = _earliest(youth.placed_at, data.decided_at)
    if data.reservation_id is not None:
        store.get(Reservation, str(data.reservation_id)).placed = True


def seat_changed(store: Store, data: Any, at: datetime) -> None:
    offer: Offer = store.get(Offer, str(data.offer_id))
    if _later(offer.changed_at, at):
        offer.departement, offer.capacity, offer.seats_left = data.departement, data.capacity, data.seats_left
        offer.changed_at = at
    if _later(offer.confirmed_at, data.last_confirmed_at):
        offer.confirmed_at = data.last_confirmed_at


def seat_stale(store: Store, data: Any) -> None:
    offer: Offer = store.get(Offer, str(data.offer_id))
    if _later(offer.stale_confirmed_at, data.last_confirmed_at):
        offer.stale_confirmed_at = data.last_confirmed_at


def seat_closed(store: Store, data: Any) -> None:
    offer: Offer = store.get(Offer, str(data.offer_id))
    offer.closed_at = _earliest(offer.closed_at, data.closed_at)


def reservation_made(store: Store, data: Any) -> None:
    reservation: Reservation = store.get(Reservation, str(data.reservation_id))
    reservation.offer_id, reservation.made = str(data.offer_id), True


def reservation_expired(store: Store, data: Any) -> None:
    reservation: Reservation = store.get(Reservation, str(data.reservation_id))
    reservation.offer_id, reservation.expired = str(data.offer_id), True


def dispositif_updated(store: Store, data: Any) -> None:
    site: Dispositif = store.get(Dispositif, data.dispositif_id)
    if data.revision > site.revision:
        site.kind, site.departement, site.revision = data.dispositif, data.departement, data.revision
        site.capacity, site.places_left = data.capacity, data.places_left


def candidacy_received(store: Store, data: Any) -> None:
    candidacy: Candidacy = store.get(Candidacy, str(data.candidacy_id))
    candidacy.youth_id, candidacy.departement, candidacy.dispositif = (
        data.youth_id,
        data.departement,
        data.dispositif,
    )
    candidacy.received_at = _earliest(candidacy.received_at, data.received_at)


def candidacy_decided(store: Store, data: Any) -> None:
    candidacy: Candidacy = store.get(Candidacy, str(data.candidacy_id))
    candidacy.youth_id = candidacy.youth_id or data.youth_id
    candidacy.dispositif = candidacy.dispositif or data.dispositif
    if data.decision_number > candidacy.decision_number:
        candidacy.decision, candidacy.decision_number = data.outcome, data.decision_number


def enrolment_started(store: Store, data: Any) -> None:
    candidacy: Candidacy = store.get(Candidacy, str(data.candidacy_id))
    candidacy.departement = candidacy.departement or data.departement
    candidacy.enrolled_on = _earliest(candidacy.enrolled_on, data.started_on)


def enrolment_exited(store: Store, data: Any) -> None:
    candidacy: Candidacy = store.get(Candidacy, str(data.candidacy_id))
    candidacy.departement = candidacy.departement or data.departement
    candidacy.enrolled_on = _earliest(candidacy.enrolled_on, data.started_on)
    if candidacy.exited_on is None or data.exited_on >= candidacy.exited_on:
        candidacy.exited_on, candidacy.destination = data.exited_on, data.destination


def clause_published(store: Store, data: Any) -> None:
    clause: Clause = store.get(Clause, str(data.clause_id))
    if _later(clause.published_at, data.published_at):
        clause.departement, clause.hours_required = data.departement, data.hours_required
        clause.ends_on, clause.published_at = data.ends_on, data.published_at


def mission_declared(store: Store, data: Any) -> None:
    mission: Mission = store.get(Mission, str(data.mission_id))
    mission.clause_id, mission.departement, mission.hours_planned = (
        str(data.clause_id),
        data.departement,
        data.hours,
    )


def mission_status_changed(store: Store, data: Any) -> None:
    mission: Mission = store.get(Mission, str(data.mission_id))
    mission.clause_id = mission.clause_id or str(data.clause_id)
    if _later(mission.status_at, data.at):
        mission.status, mission.status_at = data.to_status, data.at


def hours_recorded(store: Store, data: Any) -> None:
    mission: Mission = store.get(Mission, str(data.mission_id))
    if _later(mission.hours_at, data.recorded_at):
        mission.hours_done, mission.hours_at = data.mission_hours_done, data.recorded_at


def mission_completed(store: Store, data: Any) -> None:
    mission: Mission = store.get(Mission, str(data.mission_id))
    mission.outcome = data.outcome
    if _later(mission.hours_at, data.completed_at):
        mission.hours_done, mission.hours_at = data.hours_done, data.completed_at


RULES: dict[str, Callable[[Store, Any], None]] = {
    "reperage.youth.identified.v1": identified,
    "reperage.youth.reported_again.v1": reported_again,
    "reperage.youth.found.v1": found,
    "reperage.campaign.ingested.v1": campaign_ingested,
    "psad.case.opened.v1": case_opened,
    "psad.case.status_changed.v1": case_status_changed,
    "psad.case.closed.v1": case_closed,
    "psad.contact.recorded.v1": contact_recorded,
    "psad.interview.scheduled.v1": interview_scheduled,
    "psad.interview.recorded.v1": interview_recorded,
    "psad.solution.requested.v1": solution_requested,
    "psad.escalation.raised.v1": escalation_raised,
    "foquale.placement.confirmed.v1": placement_confirmed,
    "foquale.seat.published.v1": lambda store, data: seat_changed(store, data, data.published_at),
    "foquale.seat.updated.v1": lambda store, data: seat_changed(store, data, data.updated_at),
    "foquale.seat.stale.v1": seat_stale,
    "foquale.seat.closed.v1": seat_closed,
    "foquale.reservation.made.v1": reservation_made,
    "foquale.reservation.expired.v1": reservation_expired,
    "mlds.dispositif.updated.v1": dispositif_updated,
    "mlds.candidacy.received.v1": candidacy_received,
    "mlds.candidacy.decided.v1": candidacy_decided,
    "mlds.enrolment.started.v1": enrolment_started,
    "mlds.enrolment.exited.v1": enrolment_exited,
    "clause.clause.published.v1": clause_published,
    "clause.mission.declared.v1": mission_declared,
    "clause.mission.status_changed.v1": mission_status_changed,
    "clause.hours.recorded.v1": hours_recorded,
    "clause.mission.completed.v1": mission_completed,
}


def projects(event_type: str) -> bool:
    """Whether an event moves a read model (the others are acknowledged and counted only)."""
    return event_type in RULES


def holds_a_seat(reservation: Reservation) -> bool:
    return reservation.made and not reservation.expired and not reservation.placed


def derive(store: Store) -> None:
    """Move the counts rows keep of other rows by (after - before) of each changed one: an
    offer's reservations holding a seat, a clause's missions' hours planned and done. A
    reservation's flags and a mission's hours commute, so these sums do too."""
    for key in sorted(store.changed[Reservation]):
        for reservation, sign in ((store.before(Reservation, key), -1), (store.rows[Reservation][key], 1)):
            if reservation.offer_id is not None and holds_a_seat(reservation):
                store.get(Offer, reservation.offer_id).reserved += sign
    for key in sorted(store.changed[Mission]):
        for mission, sign in ((store.before(Mission, key), -1), (store.rows[Mission][key], 1)):
            if mission.clause_id is not None and (mission.hours_planned or mission.hours_done):
                clause: Clause = store.get(Clause, mission.clause_id)
                clause.hours_planned += sign * mission.hours_planned
                clause.hours_done += sign * mission.hours_done


def apply(store: Store, events: Iterable[tuple[str, Any]]) -> None:
    """Apply (event type, payload) pairs to the rows in `store` (which holds every key they
    touch, and the offers and clauses of its reservations and missions), then `derive`."""
    for event_type, data in events:
        rule = RULES.get(event_type)
        if rule is not None:
            rule(store, data)
    derive(store)
