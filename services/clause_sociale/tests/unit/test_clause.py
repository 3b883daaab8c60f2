"""A clause's rules: hours from the amount, the refusals, the proof of execution, bientôt échues."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from raccrochage_clause_sociale.domain import events
from raccrochage_clause_sociale.domain.clause import Buyer, Clause, hours_for_amount
from raccrochage_clause_sociale.domain.errors import Refused

from .builders import BUYER, T0, completed, drafted, new_clause, new_mission, proposed, signed, uid


@pytest.mark.parametrize(
    ("amount", "hours"),
    [
        (0, 150),
        (99_999, 150),
        (100_000, 300),
        (199_999, 300),
        (200_000, 450),
        (399_999, 450),
        (400_000, 900),
        (12_000_000, 900),
    ],
)
def test_hours_follow_the_firm_amount(amount: int, hours: int) -> None:
    assert hours_for_amount(amount) == hours
    assert new_clause(amount).hours_required == hours


def test_publishing_records_the_event() -> None:
    clause = new_clause()
    assert clause.events == [events.ClausePublished(clause.clause_id, T0)]
    assert clause.hours_required == 450


def test_a_contract_of_one_firm_year_or_less_is_refused() -> None:
    with pytest.raises(
        Refused, match="more than one firm year; notified on 2026-09-01, its firm period ends on 2027-08-31"
    ):
        new_clause(firm_end=date(2027, 8, 31))
    assert new_clause(firm_end=date(2027, 9, 1)).hours_required == 450  # a year and a day


def test_a_clause_declared_less_than_six_months_before_the_end_is_refused() -> None:
    with pytest.raises(
        Refused,
        match="declared on 2027-03-02, less than 6 months before the contract ends on 2027-09-01; a clause must be declared by 2027-03-01",
    ):
        new_clause(firm_end=date(2027, 9, 1), ends=date(2027, 9, 1), now=datetime(2027, 3, 2, tzinfo=UTC))
    new_clause(firm_end=date(2027, 9, 1), ends=date(2027, 9, 1), now=datetime(2027, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"buyer_id": "Bordeaux Métropole"}, "buyer id"),
        ({"buyer_type": "mairie"}, "buyer type 'mairie' is not one of etat"),
        ({"contact_role": "Jean Dupont"}, "contact role"),
        ({"departement": "330"}, "not a département"),
    ],
)
def test_a_buyer_must_be_described_by_codes(changes: dict, message: str) -> None:
    buyer = Buyer(**{**BUYER.__dict__, **changes})
    with pytest.raises(Refused, match=message):
        Clause.publish(
            uid("c"),
            buyer,
            "batisud-33",
            "objet",
            date(2026, 9, 1),
            date(2028, 9, 1),
            1,
            date(2030, 1, 1),
            T0,
        )


def test_a_contract_ending_before_its_firm_period_is_refused() -> None:
    with pytest.raises(Refused, match="before its firm period"):
        new_clause(ends=date(2028, 1, 1))


def test_the_proof_adds_every_youths_hours_and_counts_planned_hours() -> None:
    clause = new_clause(250_000)  # 450 h
    done = completed(signed(drafted(proposed_accepted(new_mission(clause, name="m1", hours=150)))))
    under_way = signed(drafted(proposed_accepted(new_mission(clause, name="m2", hours=100)), tutor="ref-311"))
    free = new_mission(clause, name="m3", hours=200)
    proof = clause.proof([done, under_way, free])
    assert proof.hours_required == 450
    assert proof.hours_declared == 450
    assert proof.hours_planned == 58 + 100  # done's hours once over, under_way's whole
    assert proof.hours_done == 58
    assert proof.hours_by_youth == {done.convention.youth_id: 58}
    assert not proof.executed


def proposed_accepted(mission):
    mission = proposed(mission)
    mission.answer(mission.pending_proposal.proposal_id, True, T0.replace(day=5))
    return mission


def test_bientot_echue_ends_within_six_months_with_hours_not_all_planned() -> None:
    clause = new_clause(50_000, firm_end=date(2027, 9, 30), ends=date(2027, 9, 30))  # 150 h
    mission = new_mission(clause, hours=150)
    assert not clause.is_bientot_echue([mission], date(2027, 3, 29))  # ends in more than 6 months
    assert clause.is_bientot_echue([mission], date(2027, 3, 30))
    assert clause.is_bientot_echue([mission], date(2027, 9, 30))
    assert not clause.is_bientot_echue([mission], date(2027, 10, 1))  # over
    planned = proposed_accepted(mission)
    assert not clause.is_bientot_echue([planned], date(2027, 4, 1))
