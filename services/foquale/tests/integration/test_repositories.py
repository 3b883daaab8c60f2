"""FOQUALE's repositories on real PostgreSQL: round trips, seat counters, timers' selections,
and no overbooking under concurrent reservations."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_contracts import CloudEvent
from raccrochage_foquale.adapters.repository import (
    SqlOfferRepository,
    SqlPartnerFeedbackRepository,
    SqlPartnerRateRepository,
    SqlReservationRepository,
)
from raccrochage_foquale.adapters.tables import offer as offer_table
from raccrochage_foquale.domain.offer import Offer
from raccrochage_foquale.domain.offer_types import (
    ContactRole,
    Formation,
    FormationCodeKind,
    Level,
    OfferDescription,
    OfferState,
    Owner,
    Source,
    Statut,
)
from raccrochage_foquale.domain.policy import Policy
from raccrochage_foquale.domain.refusals import Refusal
from raccrochage_foquale.domain.reservation import Reservation, ReservationState
from raccrochage_foquale.domain.uai import Uai
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import publish_school_offer

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
TODAY = T0.date()
UAI = Uai("0331234M")


def days(n: float) -> timedelta:
    return timedelta(days=n)


def make_offer(
    n: int = 1,
    *,
    capacity: int = 3,
    departement: str = "33",
    keywords: tuple[str, ...] = ("metiers-relation-client",),
    closes_on: date | None = date(2027, 6, 30),
    at: datetime = T0,
) -> Offer:
    description = OfferDescription(
        uai=UAI if departement == "33" else Uai("0400003L"),
        formation=Formation(
            FormationCodeKind.MEF, "24020020110", "Bac pro métiers de l'accueil (1re)", Level.NIVEAU_4
        ),
        statut=Statut.SCOLAIRE,
        departement=departement,
        zap="bordeaux-nord" if departement == "33" else None,
        capacity=capacity,
        opens_on=date(2026, 11, 2),
        closes_on=closes_on,
        contact_role=ContactRole.CPE,
        keywords=keywords,
    )
    offer_id = uuid.uuid5(uuid.NAMESPACE_URL, f"offer/{n}/{uuid.uuid4()}")
    return Offer.publish(offer_id, description, Source.PARTNER_FEED, Owner.partner("cfa-gironde"), at)


def make_reservation(offer: Offer, n: int, seats_left: int = 0) -> Reservation:
    return Reservation.make(
        uuid.uuid5(uuid.NAMESPACE_URL, f"request/{offer.offer_id}/{n}"),
        uuid.uuid5(uuid.NAMESPACE_URL, f"case/{n}"),
        hashlib.sha256(f"youth-{n}".encode()).hexdigest(),
        offer,
        seats_left,
        T0,
    )


async def add(engine: AsyncEngine, *offers: Offer) -> None:
    async with engine.begin() as conn:
        for offer in offers:
            await SqlOfferRepository(conn).add(offer)


async def load(engine: AsyncEngine, offer_id: uuid.UUID) -> Offer:
    async with engine.connect() as conn:
        offer = await SqlOfferRepository(conn).get(offer_id, lock=False)
    assert offer is not None
    return offer


# --- offers ---------------------------------------------------------------------------------------


async def test_an_offer_round_trips(engine: AsyncEngine) -> None:
    offer = make_offer(keywords=("accueil", "metiers-relation-client"))
    await add(engine, offer)
    loaded = await load(engine, offer.offer_id)
    assert loaded.description == offer.description
    assert (loaded.source, loaded.owner, loaded.state) == (offer.source, offer.owner, OfferState.PUBLISHED)
    assert (loaded.published_at, loaded.last_confirmed_at, loaded.reserved, loaded.placed) == (T0, T0, 0, 0)
    assert loaded.events == []
    async with engine.connect() as conn:
        codes = (
            await conn.execute(
                select(offer_table.c.wish_codes).where(offer_table.c.offer_id == offer.offer_id)
            )
        ).scalar_one()
    assert set(codes) == {"accueil", "metiers-relation-client", "24020020110", "niveau_4", "scolaire"}


async def test_save_writes_the_owners_changes_never_the_counters(engine: AsyncEngine) -> None:
    offer = make_offer(capacity=3)
    await add(engine, offer)
    async with engine.begin() as conn:
        assert await SqlOfferRepository(conn).take_seat(offer.offer_id, TODAY) == 2
    async with engine.begin() as conn:
        repo = SqlOfferRepository(conn)
        stale_copy = await repo.get(offer.offer_id)
        assert stale_copy is not None and stale_copy.reserved == 1
        stale_copy.update(replace(stale_copy.description, capacity=5), T0 + days(1))
        stale_copy.reserved = 0  # what a careless caller might hold: save ignores it
        await repo.save(stale_copy)
    loaded = await load(engine, offer.offer_id)
    assert (loaded.capacity, loaded.reserved, loaded.seats_left) == (5, 1, 4)
    assert loaded.last_confirmed_at == T0 + days(1)


async def test_seat_counters_move_by_conditional_updates(engine: AsyncEngine) -> None:
    offer = make_offer(capacity=2)
    await add(engine, offer)
    async with engine.begin() as conn:
        repo = SqlOfferRepository(conn)
        assert await repo.take_seat(offer.offer_id, TODAY) == 1
        assert await repo.take_seat(offer.offer_id, TODAY) == 0
        assert await repo.take_seat(offer.offer_id, TODAY) is None  # full: nothing updated
        assert await repo.fill_seat(offer.offer_id) == 0
        assert await repo.release_seat(offer.offer_id) == 1
        with pytest.raises(RuntimeError, match="no reserved seat"):
            await repo.release_seat(offer.offer_id)
    loaded = await load(engine, offer.offer_id)
    assert (loaded.reserved, loaded.placed, loaded.seats_left) == (0, 1, 1)


async def test_more_seats_on_offers_the_transaction_holds_in_one_statement(engine: AsyncEngine) -> None:
    first, second = make_offer(1, capacity=5), make_offer(2, capacity=3)
    await add(engine, first, second)
    async with engine.begin() as conn:
        repo = SqlOfferRepository(conn)
        assert await repo.take_seat(first.offer_id, TODAY) == 4
        assert await repo.take_seat(second.offer_id, TODAY) == 2
        await repo.take_held_seats({first.offer_id: 3, second.offer_id: 2})
    assert (await load(engine, first.offer_id)).seats_left == 1
    assert (await load(engine, second.offer_id)).seats_left == 0
    with pytest.raises(IntegrityError):  # the database refuses more than the capacity
        async with engine.begin() as conn:
            await SqlOfferRepository(conn).take_held_seats({second.offer_id: 1})


async def test_a_free_seat_is_taken_on_the_first_offer_no_other_transaction_holds(
    engine: AsyncEngine,
) -> None:
    first, second, full = make_offer(1, capacity=2), make_offer(2, capacity=2), make_offer(3, capacity=1)
    await add(engine, first, second, full)
    order = [full.offer_id, first.offer_id, second.offer_id]
    async with engine.begin() as conn:
        assert await SqlOfferRepository(conn).take_seat(full.offer_id, TODAY) == 0
    async with engine.connect() as holder, engine.connect() as other:
        await holder.begin()
        assert await SqlOfferRepository(holder).take_free_seat(order, TODAY) == (first.offer_id, 1)
        await other.begin()
        repo = SqlOfferRepository(other)
        # `first` is held by the open transaction: skipped, not waited for; `full` has no seat
        assert await repo.take_free_seat(order, TODAY) == (second.offer_id, 1)
        assert await repo.take_free_seat(order, TODAY) == (second.offer_id, 0)
        assert await repo.take_free_seat(order, TODAY) is None  # `first` held, the others full
        # a reservation's foreign key on a held offer does not wait for its holder
        await SqlReservationRepository(other).add(make_reservation(first, 9, 1))
        await other.rollback()
        await holder.commit()
    assert await repo_seats(engine, first, second, full) == [1, 2, 0]
    async with engine.connect() as conn:
        assert await SqlOfferRepository(conn).take_free_seat([], TODAY) is None


async def repo_seats(engine: AsyncEngine, *offers: Offer) -> list[int]:
    return [(await load(engine, offer.offer_id)).seats_left for offer in offers]


async def test_no_seat_is_taken_on_an_offer_not_reservable(engine: AsyncEngine) -> None:
    closed, unpublished, past = make_offer(1), make_offer(2), make_offer(3, closes_on=date(2026, 11, 30))
    closed.close(T0 + days(1))
    unpublished.check_freshness(T0 + days(90), Policy())
    await add(engine, closed, unpublished, past)
    async with engine.begin() as conn:
        repo = SqlOfferRepository(conn)
        assert await repo.take_seat(closed.offer_id, TODAY) is None
        assert await repo.take_seat(unpublished.offer_id, TODAY) is None
        assert await repo.take_seat(past.offer_id, date(2026, 12, 1)) is None
        assert await repo.take_seat(past.offer_id, date(2026, 11, 30)) == 2
        assert await repo.take_seat(uuid.uuid4(), TODAY) is None


async def test_the_database_itself_refuses_an_overbooked_offer(engine: AsyncEngine) -> None:
    """The last guard, for code that would bypass the repository."""
    offer = make_offer(capacity=1)
    await add(engine, offer)
    with pytest.raises(IntegrityError, match="offer_not_overbooked"):
        async with engine.begin() as conn:
            await conn.execute(
                update(offer_table).where(offer_table.c.offer_id == offer.offer_id).values(reserved=2)
            )


async def test_search_and_alternatives_elsewhere(engine: AsyncEngine) -> None:
    here = make_offer(1)
    full_here = make_offer(2, capacity=0)
    landes_wished = make_offer(3, departement="40")
    landes_other = make_offer(4, departement="40", keywords=("commerce",))
    landes_full = make_offer(5, departement="40", capacity=0)
    landes_closed = make_offer(6, departement="40")
    landes_closed.close(T0)
    await add(engine, here, full_here, landes_wished, landes_other, landes_full, landes_closed)
    levels = {Level.NIVEAU_3, Level.NIVEAU_4}
    async with engine.connect() as conn:
        repo = SqlOfferRepository(conn)
        found = await repo.search({"33"}, levels, TODAY)
        assert {o.offer_id for o in found} == {here.offer_id, full_here.offer_id}
        assert await repo.search({"33", "40"}, {Level.NIVEAU_5}, TODAY) == []
        assert await repo.count_with_seats_elsewhere("33", levels, ("metiers-relation-client",), TODAY) == 1
        assert await repo.count_with_seats_elsewhere("33", levels, ("commerce", "niveau_4"), TODAY) == 2
        assert await repo.count_with_seats_elsewhere("33", levels, (), TODAY) == 2


async def test_freshness_selects_what_is_due_and_skips_rows_another_transaction_holds(
    engine: AsyncEngine,
) -> None:
    fresh = make_offer(1, closes_on=None, at=T0 + days(30))
    stale_due = make_offer(2, closes_on=None)
    held = make_offer(3, closes_on=None)
    past = make_offer(4, closes_on=date(2026, 12, 1))
    await add(engine, fresh, stale_due, held, past)
    now = T0 + days(60)
    async with engine.begin() as holder:
        assert await SqlOfferRepository(holder).get(held.offer_id) is not None  # FOR UPDATE
        async with engine.begin() as conn:
            due = await SqlOfferRepository(conn).due_for_freshness(now, Policy(), 100)
    assert {o.offer_id for o in due} == {stale_due.offer_id, past.offer_id}


# --- reservations ---------------------------------------------------------------------------------


async def test_a_reservation_round_trips_with_its_answer(engine: AsyncEngine) -> None:
    offer = make_offer()
    await add(engine, offer)
    made, refused = make_reservation(offer, 1, 2), make_reservation(offer, 2, 1)
    async with engine.begin() as conn:
        repo = SqlReservationRepository(conn)
        await repo.add_all([made, refused])
        refused.refuse(Refusal("other", "atelier plein jusqu'en mars"), T0 + days(1))
        await repo.save(refused)
    async with engine.connect() as conn:
        repo = SqlReservationRepository(conn)
        found = await repo.for_requests([made.request_id, uuid.uuid4()])
        assert list(found) == [made.request_id]
        loaded = found[made.request_id]
        assert loaded.reservation_id == made.reservation_id
        assert (loaded.expires_at, loaded.state, loaded.uai, loaded.training) == (
            T0 + days(15),
            ReservationState.MADE,
            UAI,
            "Bac pro métiers de l'accueil (1re)",
        )
        answered = await repo.get(refused.reservation_id, lock=False)
        assert answered is not None and answered.refusal == Refusal("other", "atelier plein jusqu'en mars")
        assert answered.state is ReservationState.REFUSED and answered.decided_at == T0 + days(1)
        assert await repo.for_requests([uuid.uuid4()]) == {}


async def test_expiry_selects_unanswered_reservations_past_their_time(engine: AsyncEngine) -> None:
    offer = make_offer(capacity=5)
    await add(engine, offer)
    due, confirmed, held = (make_reservation(offer, n) for n in range(3))
    confirmed.confirm(T0 + days(1))
    async with engine.begin() as conn:
        repo = SqlReservationRepository(conn)
        for r in (due, confirmed, held):
            await repo.add(r)
    async with engine.begin() as holder:
        await SqlReservationRepository(holder).get(held.reservation_id)  # FOR UPDATE
        async with engine.begin() as conn:
            repo = SqlReservationRepository(conn)
            assert await repo.due_to_expire(T0 + days(15) - days(0.001), 100) == []
            assert [r.reservation_id for r in await repo.due_to_expire(T0 + days(15), 100)] == [
                due.reservation_id
            ]


# --- partners' feedback --------------------------------------------------------------------------


async def test_pruning_keeps_each_partners_last_answers_a_batch_at_a_time(engine: AsyncEngine) -> None:
    partners = [f"prune-{uuid.uuid4().hex[:8]}" for _ in range(2)]

    def answer(n: int) -> CloudEvent:
        return CloudEvent(
            id=uuid.uuid4(),
            source="raccrochage/foquale",
            type="partner.seats.feedback.v1",
            time=T0 + timedelta(seconds=n),
            subject="partner/prune",
            dataschema="https://schemas.raccrochage.example/partner.seats.feedback.v1.json",
            data={"n": n},
            correlationid=uuid.uuid4(),
        )

    async with engine.begin() as conn:
        repo = SqlPartnerFeedbackRepository(conn)
        for n in range(6):
            await repo.add(partners[0], answer(n))
        await repo.add(partners[1], answer(100))
    async with engine.begin() as conn:
        repo = SqlPartnerFeedbackRepository(conn)
        assert await repo.prune(keep=2, limit=3) == 3  # of the 4 past the last 2, the oldest 3
        assert await repo.prune(keep=2, limit=3) == 1
        assert await repo.prune(keep=2, limit=3) == 0
        assert [e["data"]["n"] for e in await repo.latest(partners[0], 10)] == [4, 5]
        assert [e["data"]["n"] for e in await repo.latest(partners[1], 10)] == [100]


async def test_a_partners_rate_is_one_for_every_process_of_foquale(engine: AsyncEngine) -> None:
    """Two FOQUALE processes (their own connections) taking turns for the same partner share its
    bucket: ten records a second between them, not ten each. Another partner has its own."""
    partner = f"cfa-{uuid.uuid4().hex[:8]}"

    async def turns(who: str, count: int, at: datetime) -> list[float]:
        async with engine.connect() as one, engine.connect() as other:
            waits = []
            for n in range(count):
                conn = (one, other)[n % 2]
                waits.append(await SqlPartnerRateRepository(conn).take_turn(who, 10, at))
                await conn.commit()
            return waits

    waits = await turns(partner, 14, T0)
    assert waits[:10] == [0.0] * 10  # the burst: one second's worth
    assert waits[10:] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert await turns(f"{partner}-b", 1, T0) == [0.0]
    # A process whose clock is a second behind changes nothing; ten seconds on, a burst again.
    assert await turns(partner, 1, T0 - timedelta(seconds=1)) == pytest.approx([0.5])
    assert await turns(partner, 10, T0 + timedelta(seconds=10)) == [0.0] * 10


# --- no overbooking -------------------------------------------------------------------------------


async def test_200_concurrent_reservations_on_20_seats_take_exactly_20(engine: AsyncEngine) -> None:
    """Each attempt is its own connection and transaction, as replicas of the service would be:
    the conditional UPDATE queues them on the offer's row, and those that find it full update
    nothing and take no seat."""
    offer = make_offer(capacity=20)
    await add(engine, offer)
    start = asyncio.Event()

    async def reserve(n: int) -> bool:
        async with engine.connect() as conn:
            await start.wait()
            async with conn.begin():
                seats_left = await SqlOfferRepository(conn).take_seat(offer.offer_id, TODAY)
                if seats_left is None:
                    return False
                await SqlReservationRepository(conn).add(make_reservation(offer, n, seats_left))
                await asyncio.sleep(0)  # let others run while the row is held
                return True

    tasks = [asyncio.create_task(reserve(n)) for n in range(200)]
    await asyncio.sleep(0.2)  # connections checked out, all waiting on the same start
    start.set()
    results = await asyncio.gather(*tasks)
    assert sum(results) == 20
    loaded = await load(engine, offer.offer_id)
    assert (loaded.reserved, loaded.seats_left) == (20, 0)
    async with engine.connect() as conn:
        count = await conn.execute(
            text("SELECT count(*) FROM reservation WHERE offer_id = :id"), {"id": offer.offer_id}
        )
        assert count.scalar_one() == 20


async def test_the_same_offer_published_by_several_requests_at_once_is_one_offer(engine: AsyncEngine) -> None:
    # A double-click: each request reads that the offer does not exist, one adds it, the others
    # find it added (their insert waits for its commit) and update it instead of failing.
    key = f"double-{uuid.uuid4()}"
    outcomes = await asyncio.gather(*(publish_school_offer(engine, key) for _ in range(6)))

    assert len({outcome.offer_id for outcome in outcomes}) == 1
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count())
            .select_from(offer_table)
            .where(offer_table.c.offer_id == outcomes[0].offer_id)
        )
    assert stored == 1
