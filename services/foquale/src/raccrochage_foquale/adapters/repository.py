"""Offers and reservations in PostgreSQL (SQLAlchemy Core on the unit of work's connection).

An offer's seat counters move only through `take_seat`, `release_seat` and `fill_seat`, each one
conditional UPDATE that PostgreSQL re-checks on the row's latest version: concurrent reservations
queue on the row and the ones that find no seat left update nothing. `save` never writes them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from raccrochage_contracts import CloudEvent
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    RowMapping,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Date, Integer, Text, Uuid

from ..domain.limits import RecordRate
from ..domain.matching import wish_codes
from ..domain.offer import Offer
from ..domain.offer_types import (
    RESERVABLE_STATES,
    CloseReason,
    ContactRole,
    Formation,
    FormationCodeKind,
    Level,
    OfferDescription,
    OfferState,
    Owner,
    OwnerKind,
    Source,
    Statut,
)
from ..domain.policy import Policy
from ..domain.refusals import Refusal, RefusalReason
from ..domain.reservation import Reservation, ReservationState
from ..domain.uai import Uai
from ..service_layer.unit_of_work import (
    OfferExists,
    OfferRepository,
    PartnerFeedbackRepository,
    PartnerRateRepository,
    ReservationRepository,
)
from .tables import offer as offer_table
from .tables import partner_feedback as partner_feedback_table
from .tables import partner_rate as partner_rate_table
from .tables import reservation as reservation_table

_o = offer_table.c
_r = reservation_table.c
SEATS_LEFT = (_o.capacity - _o.reserved - _o.placed).label("seats_left")
_RESERVABLE = [state.value for state in RESERVABLE_STATES]


def _reservable_on(today: date | BindParameter[date]) -> ColumnElement[bool]:
    """Published (stale included) and not past its close date: `Offer.is_reservable`."""
    return and_(_o.state.in_(_RESERVABLE), or_(_o.closes_on.is_(None), _o.closes_on >= today))


# A PSAD request's statements are built once, with parameters: building and keying a statement
# costs more Python than running it.
_TODAY = bindparam("today", type_=Date)
_LEVELS = bindparam("levels", type_=ARRAY(Text))
_HAS_A_SEAT = and_(_reservable_on(_TODAY), _o.capacity - _o.reserved - _o.placed > 0)
_SEARCH = select(offer_table).where(
    _o.departement == func.any(bindparam("departements", type_=ARRAY(Text))),
    _o.level == func.any(_LEVELS),
    _reservable_on(_TODAY),
)
_TAKE_SEAT = (
    update(offer_table)
    .where(_o.offer_id == bindparam("taken_offer_id"), _HAS_A_SEAT)
    .values(reserved=_o.reserved + 1)
    .returning(SEATS_LEFT)
)
# The first of the offers, in the caller's order, with a seat and no other transaction's lock
# (FOR NO KEY UPDATE: a reservation's foreign key takes KEY SHARE, which does not conflict), then
# the same conditional UPDATE as `_TAKE_SEAT`, re-checked on the row it locked.
_OFFER_IDS = bindparam("offer_ids", type_=ARRAY(Uuid))
_TAKE_FREE_SEAT = (
    update(offer_table)
    .where(
        _o.offer_id
        == select(_o.offer_id)
        .where(_o.offer_id == func.any(_OFFER_IDS), _HAS_A_SEAT)
        .order_by(func.array_position(_OFFER_IDS, _o.offer_id))
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
        .scalar_subquery(),
        _HAS_A_SEAT,
    )
    .values(reserved=_o.reserved + 1)
    .returning(_o.offer_id, SEATS_LEFT)
)

# Seats a transaction takes on offers it holds (`take_held_seats`): one UPDATE for all of them.
_TAKE_HELD_SEATS = (
    update(offer_table)
    .where(_o.offer_id == bindparam("held_offer_id"))
    .values(reserved=_o.reserved + bindparam("more", type_=Integer))
)


# --- offers ---------------------------------------------------------------------------------------


def _described(offer: Offer) -> dict[str, Any]:
    """The columns `save` writes: everything but the id, the counters and the first publication."""
    d = offer.description
    return {
        "uai": str(d.uai),
        "formation_code_kind": d.formation.code_kind.value,
        "formation_code": d.formation.code,
        "formation_label": d.formation.label,
        "level": d.formation.level.value,
        "statut": d.statut.value,
        "departement": d.departement,
        "zap": d.zap,
        "capacity": d.capacity,
        "opens_on": d.opens_on,
        "closes_on": d.closes_on,
        "contact_role": d.contact_role.value,
        "keywords": list(d.keywords),
        "wish_codes": sorted(wish_codes(offer)),
        "source": offer.source.value,
        "owner_kind": offer.owner.kind.value,
        "owner_id": offer.owner.id,
        "state": offer.state.value,
        "last_confirmed_at": offer.last_confirmed_at,
        "updated_at": offer.updated_at,
        "stale_since": offer.stale_since,
        "closed_at": offer.closed_at,
        "close_reason": offer.close_reason.value if offer.close_reason else None,
    }


def offer_of(m: RowMapping) -> Offer:
    """Rebuild a stored offer; it records no event (only new commands do)."""
    description = OfferDescription(
        uai=Uai(m["uai"]),
        formation=Formation(
            FormationCodeKind(m["formation_code_kind"]),
            m["formation_code"],
            m["formation_label"],
            Level(m["level"]),
        ),
        statut=Statut(m["statut"]),
        departement=m["departement"],
        zap=m["zap"],
        capacity=m["capacity"],
        opens_on=m["opens_on"],
        closes_on=m["closes_on"],
        contact_role=ContactRole(m["contact_role"]),
        keywords=tuple(m["keywords"]),
    )
    return Offer(
        offer_id=m["offer_id"],
        description=description,
        source=Source(m["source"]),
        owner=Owner(OwnerKind(m["owner_kind"]), m["owner_id"]),
        published_at=m["published_at"],
        last_confirmed_at=m["last_confirmed_at"],
        updated_at=m["updated_at"],
        state=OfferState(m["state"]),
        reserved=m["reserved"],
        placed=m["placed"],
        stale_since=m["stale_since"],
        closed_at=m["closed_at"],
        close_reason=CloseReason(m["close_reason"]) if m["close_reason"] else None,
    )


class SqlOfferRepository(OfferRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, offer: Offer) -> None:
        values = {**_described(offer), "offer_id": offer.offer_id, "published_at": offer.published_at}
        added = await self.connection.execute(insert(offer_table).values(**values).on_conflict_do_nothing())
        if added.rowcount == 0:
            raise OfferExists(str(offer.offer_id))

    async def get(self, offer_id: uuid.UUID, *, lock: bool = True) -> Offer | None:
        query = select(offer_table).where(_o.offer_id == offer_id)
        if lock:
            query = query.with_for_update()
        row = (await self.connection.execute(query)).mappings().first()
        return None if row is None else offer_of(row)

    async def save(self, offer: Offer) -> None:
        await self.connection.execute(
            update(offer_table).where(_o.offer_id == offer.offer_id).values(**_described(offer))
        )

    async def search(
        self, departements: Collection[str], levels: Collection[Level], today: date
    ) -> list[Offer]:
        if not departements:
            return []
        parameters = {
            "departements": sorted(departements),
            "levels": [level.value for level in levels],
            "today": today,
        }
        return [offer_of(row) for row in (await self.connection.execute(_SEARCH, parameters)).mappings()]

    async def count_with_seats_elsewhere(
        self, departement: str, levels: Collection[Level], wishes: Collection[str], today: date
    ) -> int:
        conditions = [
            _o.departement != departement,
            _o.level.in_([level.value for level in levels]),
            _reservable_on(today),
            SEATS_LEFT > 0,
        ]
        if wishes:
            conditions.append(_o.wish_codes.overlap(bindparam("wishes", list(wishes), type_=ARRAY(Text))))
        query = select(func.count()).select_from(offer_table).where(*conditions)
        return (await self.connection.execute(query)).scalar_one()

    async def take_seat(self, offer_id: uuid.UUID, today: date) -> int | None:
        result = await self.connection.execute(_TAKE_SEAT, {"taken_offer_id": offer_id, "today": today})
        return result.scalar_one_or_none()

    async def take_free_seat(
        self, offer_ids: Sequence[uuid.UUID], today: date
    ) -> tuple[uuid.UUID, int] | None:
        if not offer_ids:
            return None
        result = await self.connection.execute(
            _TAKE_FREE_SEAT, {"offer_ids": list(offer_ids), "today": today}
        )
        row = result.first()
        return None if row is None else (row[0], row[1])

    async def take_held_seats(self, seats: Mapping[uuid.UUID, int]) -> None:
        if seats:
            parameters = [{"held_offer_id": offer_id, "more": more} for offer_id, more in seats.items()]
            await self.connection.execute(_TAKE_HELD_SEATS, parameters)

    async def _move_a_reserved_seat(self, offer_id: uuid.UUID, **values: Any) -> int:
        statement = (
            update(offer_table)
            .where(_o.offer_id == offer_id, _o.reserved > 0)
            .values(reserved=_o.reserved - 1, **values)
            .returning(SEATS_LEFT)
        )
        seats_left = (await self.connection.execute(statement)).scalar_one_or_none()
        if seats_left is None:  # a reservation in state `made` always holds one: a bug, not a race
            raise RuntimeError(f"offer {offer_id} has no reserved seat to release")
        return seats_left

    async def release_seat(self, offer_id: uuid.UUID) -> int:
        return await self._move_a_reserved_seat(offer_id)

    async def fill_seat(self, offer_id: uuid.UUID) -> int:
        return await self._move_a_reserved_seat(offer_id, placed=_o.placed + 1)

    async def due_for_freshness(self, now: datetime, policy: Policy, limit: int) -> list[Offer]:
        query = (
            select(offer_table)
            .where(
                _o.state.in_(_RESERVABLE),
                or_(
                    _o.closes_on < now.date(),
                    _o.last_confirmed_at <= now - policy.unpublish_after,
                    and_(
                        _o.state == OfferState.PUBLISHED.value,
                        _o.last_confirmed_at <= now - policy.stale_after,
                    ),
                ),
            )
            .order_by(_o.last_confirmed_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [offer_of(row) for row in (await self.connection.execute(query)).mappings()]


# --- reservations ---------------------------------------------------------------------------------


def _decided(reservation: Reservation) -> dict[str, Any]:
    refusal = reservation.refusal
    return {
        "state": reservation.state.value,
        "decided_at": reservation.decided_at,
        "starts_on": reservation.starts_on,
        "refusal_reason": refusal.reason.value if refusal else None,
        "refusal_comment": refusal.comment if refusal else None,
    }


def reservation_of(m: RowMapping) -> Reservation:
    refusal = (
        Refusal(RefusalReason(m["refusal_reason"]), m["refusal_comment"]) if m["refusal_reason"] else None
    )
    return Reservation(
        reservation_id=m["reservation_id"],
        request_id=m["request_id"],
        case_id=m["case_id"],
        youth_id=m["youth_id"],
        offer_id=m["offer_id"],
        uai=Uai(m["uai"]),
        training=m["training"],
        opens_on=m["opens_on"],
        made_at=m["made_at"],
        expires_at=m["expires_at"],
        state=ReservationState(m["state"]),
        decided_at=m["decided_at"],
        starts_on=m["starts_on"],
        refusal=refusal,
    )


_ADD_RESERVATION = reservation_table.insert()
_FOR_REQUESTS = select(reservation_table).where(
    _r.request_id == func.any(bindparam("request_ids", type_=ARRAY(Uuid)))
)


def _stored(r: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": r.reservation_id,
        "request_id": r.request_id,
        "case_id": r.case_id,
        "youth_id": r.youth_id,
        "offer_id": r.offer_id,
        "uai": str(r.uai),
        "training": r.training,
        "opens_on": r.opens_on,
        "made_at": r.made_at,
        "expires_at": r.expires_at,
        **_decided(r),
    }


class SqlReservationRepository(ReservationRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, reservation: Reservation) -> None:
        await self.add_all([reservation])

    async def add_all(self, reservations: Sequence[Reservation]) -> None:
        if reservations:
            await self.connection.execute(_ADD_RESERVATION, [_stored(r) for r in reservations])

    async def _one(self, condition: ColumnElement[bool], lock: bool) -> Reservation | None:
        query = select(reservation_table).where(condition)
        if lock:
            query = query.with_for_update()
        row = (await self.connection.execute(query)).mappings().first()
        return None if row is None else reservation_of(row)

    async def get(self, reservation_id: uuid.UUID, *, lock: bool = True) -> Reservation | None:
        return await self._one(_r.reservation_id == reservation_id, lock)

    async def for_requests(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Reservation]:
        rows = await self.connection.execute(_FOR_REQUESTS, {"request_ids": list(request_ids)})
        return {row["request_id"]: reservation_of(row) for row in rows.mappings()}

    async def save(self, reservation: Reservation) -> None:
        await self.connection.execute(
            update(reservation_table)
            .where(_r.reservation_id == reservation.reservation_id)
            .values(**_decided(reservation))
        )

    async def pending_at(self, uais: Collection[Uai], now: datetime, limit: int) -> list[Reservation]:
        if not uais:
            return []
        query = (
            select(reservation_table)
            .where(
                _r.state == ReservationState.MADE.value,
                _r.expires_at > now,
                _r.uai == func.any(bindparam("uais", sorted(map(str, uais)), type_=ARRAY(Text))),
            )
            .order_by(_r.expires_at, _r.reservation_id)
            .limit(limit)
        )
        return [reservation_of(row) for row in (await self.connection.execute(query)).mappings()]

    async def due_to_expire(self, now: datetime, limit: int) -> list[Reservation]:
        query = (
            select(reservation_table)
            .where(_r.state == ReservationState.MADE.value, _r.expires_at <= now)
            .order_by(_r.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [reservation_of(row) for row in (await self.connection.execute(query)).mappings()]


# --- partners' feedback ---------------------------------------------------------------------------

_f = partner_feedback_table.c
# Each partner's answers older than its last `keep`, oldest first, a batch at a time.
_RANKED = select(
    _f.id, func.row_number().over(partition_by=_f.partner_id, order_by=_f.id.desc()).label("rank")
).subquery("ranked")
_PRUNE = delete(partner_feedback_table).where(
    _f.id.in_(
        select(_RANKED.c.id)
        .where(_RANKED.c.rank > bindparam("keep"))
        .order_by(_RANKED.c.id)
        .limit(bindparam("limit"))
    )
)


class SqlPartnerFeedbackRepository(PartnerFeedbackRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def add(self, partner_id: str, feedback: CloudEvent) -> None:
        statement = (
            insert(partner_feedback_table)
            .values(
                partner_id=partner_id,
                event_id=feedback.id,
                recorded_at=feedback.time,
                envelope=json.loads(feedback.to_json()),
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        await self.connection.execute(statement)

    async def latest(self, partner_id: str, count: int) -> list[dict]:
        query = select(_f.envelope).where(_f.partner_id == partner_id).order_by(_f.id.desc()).limit(count)
        newest_first = (await self.connection.execute(query)).scalars().all()
        return list(reversed(newest_first))

    async def prune(self, keep: int, limit: int) -> int:
        result = await self.connection.execute(_PRUNE, {"keep": keep, "limit": limit})
        return result.rowcount


# --- partners' record rates -----------------------------------------------------------------------

_rate = partner_rate_table.c


class SqlPartnerRateRepository(PartnerRateRepository):
    """The bucket's row, locked: the processes of FOQUALE take a partner's turns one after the
    other."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def take_turn(self, partner_id: str, per_second: float, now: datetime) -> float:
        await self.connection.execute(
            insert(partner_rate_table)
            .values(partner_id=partner_id, tokens=per_second, at=now)
            .on_conflict_do_nothing(index_elements=["partner_id"])
        )
        row = (
            await self.connection.execute(
                select(_rate.tokens, _rate.at).where(_rate.partner_id == partner_id).with_for_update()
            )
        ).one()
        rate, wait = RecordRate(per_second, row.tokens).take((now - row.at).total_seconds())
        # A process whose clock is behind another's does not move the bucket back in time.
        await self.connection.execute(
            update(partner_rate_table)
            .where(_rate.partner_id == partner_id)
            .values(tokens=rate.tokens, at=max(now, row.at))
        )
        return wait
