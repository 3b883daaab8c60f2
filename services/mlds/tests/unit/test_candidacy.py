"""A candidacy from reception to exit: admission steps, places, refusals and withdrawals, answers."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_mlds.config import DEFAULT_CAPACITIES
from raccrochage_mlds.domain import events
from raccrochage_mlds.domain.admission import ADMISSION_STEPS, Role, StepOutcome
from raccrochage_mlds.domain.candidacy import Candidacy, Channel, PsadRequest
from raccrochage_mlds.domain.catalogue import DispositifKind, catalogue, read_directory
from raccrochage_mlds.domain.dates import Dated
from raccrochage_mlds.domain.facts import Facts, FrenchLevel, SchoolLevel
from raccrochage_mlds.domain.states import (
    CandidacyError,
    CandidacyStatus,
    ExitDestination,
    InvalidCommand,
    RefusalReason,
    TransitionRefused,
    WithdrawalReason,
)
from raccrochage_mlds.reference import directory_text

T0 = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)
K = DispositifKind
S = CandidacyStatus
SITES = {s.dispositif_id: s for s in catalogue(read_directory(directory_text()), DEFAULT_CAPACITIES, T0)}


def at(days: int, hours: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def eligible_facts(kind: DispositifKind) -> Facts:
    today = T0.date()
    return {
        K.PAPS: Facts(
            age=Dated(17, today),
            still_enrolled=False,
            months_out_of_school=Dated(3, today),
            has_solution=False,
            qualifying_diploma=False,
        ),
        K.DIPA: Facts(
            age=Dated(16, today),
            months_in_france=Dated(4, today),
            french_level=FrenchLevel.NONE,
            schooled_in_country_of_origin=True,
            had_upe2a=False,
        ),
        K.MICRO_LYCEE: Facts(
            age=Dated(19, today),
            months_out_of_school=Dated(14, today),
            holds_dnb=True,
            referred_by_psad=True,
        ),
    }[kind]


def received(kind: DispositifKind, facts: Facts | None = None, *, site: str | None = None) -> Candidacy:
    return Candidacy.receive(
        uuid.uuid4(),
        "b" * 64,
        kind,
        "33",
        facts or eligible_facts(kind),
        T0,
        channel=Channel.PSAD_REQUEST,
        request=PsadRequest(uuid.uuid4(), uuid.uuid4(), "psad-33-bordeaux"),
        dispositif=SITES[site] if site else None,
    )


def answers(candidacy: Candidacy) -> list[tuple[bool, str | None]]:
    return [(e.accepted, e.refusal) for e in candidacy.events if isinstance(e, events.RequestAnswered)]


def through_steps(candidacy: Candidacy, start: int = 1) -> None:
    for i, step in enumerate(ADMISSION_STEPS[candidacy.kind], start=start):
        candidacy.record_step(
            step.code, StepOutcome.FAVOURABLE, at(i).date(), sorted(step.deciders)[0], at(i)
        )


def test_a_micro_lycee_candidacy_from_reception_to_exit() -> None:
    """Micro-lycée: CIO review of the file, interview and tests, commission MLDS + rectorat +
    région; then the rentrée, two years, and a coded destination."""
    candidacy = received(K.MICRO_LYCEE, site="micro_lycee-33-01")
    decision = candidacy.decide(T0)
    assert decision.outcome.value == "eligible" and candidacy.status is S.ADMISSIBLE
    assert [s.code for s in candidacy.pending_steps] == [
        "cio_file_review",
        "interview_and_tests",
        "admission_commission",
    ]
    candidacy.record_step("cio_file_review", StepOutcome.FAVOURABLE, at(3).date(), Role.PSY_EN, at(3))
    candidacy.record_step(
        "interview_and_tests", StepOutcome.ABSENT, at(10).date(), Role.EQUIPE_MICRO_LYCEE, at(10)
    )
    assert candidacy.next_step.code == "interview_and_tests"  # held again
    candidacy.record_step(
        "interview_and_tests", StepOutcome.FAVOURABLE, at(17).date(), Role.EQUIPE_MICRO_LYCEE, at(17)
    )
    candidacy.record_step(
        "admission_commission", StepOutcome.FAVOURABLE, at(30).date(), Role.COMMISSION, at(30)
    )
    site = SITES["micro_lycee-33-01"]
    starts_on = site.sessions.next_entry(at(30).date())
    candidacy.admit(site, starts_on, at(30, 1))
    assert (candidacy.status, candidacy.admission.starts_on) == (S.ADMITTED, date(2027, 9, 1))
    assert answers(candidacy) == [(True, None)]
    first_day = datetime(2027, 9, 1, 8, tzinfo=UTC)
    enrolment = candidacy.enrol(first_day.date(), first_day)
    assert (enrolment.age, enrolment.under_obligation_de_formation) == (19, False)
    left = datetime(2029, 7, 5, 16, tzinfo=UTC)
    candidacy.exit_to(ExitDestination.TRAINING, left.date(), left, diploma_obtained="bac")
    assert candidacy.status is S.EXITED and candidacy.exit.diploma_obtained.value == "bac"
    assert [type(e).__name__ for e in candidacy.events] == [
        "CandidacyReceived",
        "CandidacyDecided",
        "AdmissionStepRecorded",
        "AdmissionStepRecorded",
        "AdmissionStepRecorded",
        "AdmissionStepRecorded",
        "CandidacyAdmitted",
        "RequestAnswered",
        "EnrolmentStarted",
        "EnrolmentExited",
    ]


def test_dipa_steps_cio_mother_tongue_tests_then_the_dasen_who_alone_admits() -> None:
    candidacy = received(K.DIPA, site="dipa-33-01")
    candidacy.decide(T0)
    candidacy.record_step("cio_interview", StepOutcome.FAVOURABLE, at(1).date(), Role.CIO, at(1))
    candidacy.record_step("mother_tongue_tests", StepOutcome.FAVOURABLE, at(2).date(), Role.CASNAV, at(2))
    with pytest.raises(InvalidCommand, match="dasen_admission is decided by dasen, not coordonnateur_mlds"):
        candidacy.record_step(
            "dasen_admission", StepOutcome.FAVOURABLE, at(3).date(), Role.COORDONNATEUR_MLDS, at(3)
        )
    candidacy.record_step("dasen_admission", StepOutcome.FAVOURABLE, at(3).date(), Role.DASEN, at(3))
    assert candidacy.pending_steps == ()


def test_steps_go_in_order_and_an_unfavourable_one_refuses_with_its_code() -> None:
    candidacy = received(K.MICRO_LYCEE)
    candidacy.decide(T0)
    with pytest.raises(InvalidCommand, match="the next step is cio_file_review, not admission_commission"):
        candidacy.record_step(
            "admission_commission", StepOutcome.FAVOURABLE, at(1).date(), Role.COMMISSION, at(1)
        )
    candidacy.record_step("cio_file_review", StepOutcome.UNFAVOURABLE, at(1).date(), Role.CIO, at(1))
    assert candidacy.status is S.REFUSED
    assert (candidacy.refusal.reason, candidacy.refusal.failed_step) == (
        RefusalReason.STEP_UNFAVOURABLE,
        "cio_file_review",
    )
    assert answers(candidacy) == [(False, "other")]


def test_incomplete_facts_keep_a_candidate_until_a_coordinator_collects_them() -> None:
    facts = eligible_facts(K.DIPA).with_changes(french_level=None, had_upe2a=None)
    candidacy = received(K.DIPA, facts)
    first = candidacy.decide(T0)
    assert first.outcome.value == "incomplete" and candidacy.status is S.CANDIDATE
    assert [f.value for f in first.missing_facts] == ["french_level", "had_upe2a"]
    assert answers(candidacy) == []  # no answer to the PSAD yet: no rule failed
    second = candidacy.record_facts(at(2), french_level=FrenchLevel.BEGINNER, had_upe2a=False)
    assert (second.number, second.outcome.value, candidacy.status) == (2, "eligible", S.ADMISSIBLE)
    assert candidacy.decisions == [first, second]  # the first decision is kept as it was


def test_a_failing_fact_collected_later_refuses_with_the_failing_rule() -> None:
    candidacy = received(K.DIPA, eligible_facts(K.DIPA).with_changes(had_upe2a=None))
    candidacy.decide(T0)
    candidacy.record_facts(at(1), had_upe2a=True)
    assert candidacy.status is S.REFUSED
    assert candidacy.refusal.failed_rules == ("dipa.never_in_upe2a",)
    assert answers(candidacy) == [(False, "not_eligible")]


def test_admission_needs_every_step_and_a_chosen_site_of_the_same_kind() -> None:
    candidacy = received(K.PAPS)
    candidacy.decide(T0)
    with pytest.raises(TransitionRefused, match="admission step reception_interview is to be held"):
        candidacy.check_admissible()
    through_steps(candidacy)
    with pytest.raises(InvalidCommand, match="no site chosen"):
        candidacy.check_admissible()
    with pytest.raises(InvalidCommand, match="is not a paps"):
        candidacy.choose_dispositif(SITES["dipa-33-01"], at(2))
    candidacy.choose_dispositif(SITES["paps-33-01"], at(2))
    assert candidacy.check_admissible() == "paps-33-01"


def test_no_place_refuses_with_no_place() -> None:
    candidacy = received(K.PAPS, site="paps-33-01")
    candidacy.decide(T0)
    through_steps(candidacy)
    candidacy.refuse_for_lack_of_place(at(2))
    assert (candidacy.status, candidacy.refusal.reason) == (S.REFUSED, RefusalReason.NO_PLACE)
    assert answers(candidacy) == [(False, "no_place")]


def admitted(kind: DispositifKind = K.PAPS, site: str = "paps-33-01") -> Candidacy:
    candidacy = received(kind, site=site)
    candidacy.decide(T0)
    through_steps(candidacy)
    candidacy.admit(SITES[site], at(5).date(), at(5))
    return candidacy


def test_a_withdrawal_after_admission_frees_the_place_and_the_psad_gets_one_answer_only() -> None:
    candidacy = admitted()
    assert candidacy.withdraw(WithdrawalReason.NO_SHOW, at(20)) is True
    assert candidacy.status is S.WITHDRAWN
    assert answers(candidacy) == [(True, None)]  # accepted once; no second answer
    before = received(K.PAPS)
    assert before.withdraw(WithdrawalReason.YOUTH_DECLINED, at(1)) is False
    assert answers(before) == [(False, "youth_declined")]


@pytest.mark.parametrize(
    ("destination", "options", "message"),
    [
        (ExitDestination.BACK_TO_SCHOOL, {}, "back to school needs the level returned to"),
        (ExitDestination.EMPLOYMENT, {"school_level": SchoolLevel.CAP}, "go with back_to_school only"),
        (ExitDestination.TRAINING, {"droit_au_maintien": True}, "go with back_to_school only"),
        ("abroad", {}, "'abroad' is not a ExitDestination"),
    ],
)
def test_exit_destinations_are_coded(destination, options, message) -> None:
    candidacy = admitted()
    candidacy.enrol(at(5).date(), at(5, 1))
    with pytest.raises(InvalidCommand, match=message):
        candidacy.exit_to(destination, at(60).date(), at(60), **options)
    candidacy.exit_to(
        ExitDestination.BACK_TO_SCHOOL, at(60).date(), at(60), school_level="2nde", droit_au_maintien=True
    )
    assert (candidacy.exit.school_level, candidacy.exit.droit_au_maintien) == (SchoolLevel.SECONDE, True)


def test_pafi_only_where_it_applies_a_pupil_of_at_least_15_still_enrolled() -> None:
    """ "Le PAFI est proposé aux jeunes d'au moins 15 ans en risque de décrochage et scolarisés
    [...] Validation par le DASEN"."""
    pupil = eligible_facts(K.PAPS).with_changes(still_enrolled=True, months_out_of_school=Dated(0, T0.date()))
    candidacy = received(K.PAPS, pupil)
    candidacy.decide(T0)
    pafi = candidacy.record_pafi(at(1).date(), at(1))
    assert candidacy.pafi == pafi
    left_school = received(K.PAPS)
    with pytest.raises(InvalidCommand, match="a PAFI is for pupils of at least 15 still enrolled"):
        left_school.record_pafi(at(1).date(), at(1))


COMMANDS = {
    "decide": lambda c: c.decide(at(40)),
    "record_facts": lambda c: c.record_facts(at(40), had_upe2a=True),
    "step": lambda c: c.record_step("reception_interview", "favourable", at(40).date(), Role.CIO, at(40)),
    "admit": lambda c: c.admit(SITES["paps-33-01"], at(40).date(), at(40)),
    "no_place": lambda c: c.refuse_for_lack_of_place(at(40)),
    "enrol": lambda c: c.enrol(at(40).date(), at(40)),
    "exit": lambda c: c.exit_to(ExitDestination.UNKNOWN, at(40).date(), at(40)),
    "withdraw": lambda c: c.withdraw(WithdrawalReason.OTHER, at(40)),
    "in_the_past": lambda c: c.withdraw(WithdrawalReason.OTHER, T0 - timedelta(days=1)),
    "naive_time": lambda c: c.withdraw(WithdrawalReason.OTHER, datetime(2027, 1, 1)),
}


def states() -> dict[str, Candidacy]:
    candidate = received(K.PAPS, eligible_facts(K.PAPS).with_changes(has_solution=None))
    candidate.decide(T0)
    admissible = received(K.PAPS, site="paps-33-01")
    admissible.decide(T0)
    enrolled = admitted()
    enrolled.enrol(at(6).date(), at(6))
    exited = admitted()
    exited.enrol(at(6).date(), at(6))
    exited.exit_to(ExitDestination.EMPLOYMENT, at(7).date(), at(7))
    refused = received(K.PAPS, eligible_facts(K.PAPS).with_changes(qualifying_diploma=True))
    refused.decide(T0)
    return {
        "candidate": candidate,
        "admissible": admissible,
        "admitted": admitted(),
        "enrolled": enrolled,
        "exited": exited,
        "refused": refused,
    }


@pytest.mark.parametrize("state", ["candidate", "admissible", "admitted", "enrolled", "exited", "refused"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_refused_command_leaves_the_candidacy_exactly_as_it_was(state: str, command: str) -> None:
    candidacy = states()[state]
    before = copy.deepcopy(candidacy.__dict__)
    try:
        COMMANDS[command](candidacy)
    except CandidacyError:
        assert candidacy.__dict__ == before
    else:
        assert command not in ("in_the_past", "naive_time")
