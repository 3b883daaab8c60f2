"""A mission's state machine and rules: reservation, proposals on a frozen clock, convention,
hours, completion, bilan croisé. A refused command leaves the mission as it was."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta

import pytest
from raccrochage_clause_sociale.domain import events
from raccrochage_clause_sociale.domain.bilan import SkillAssessment
from raccrochage_clause_sociale.domain.convention import SignatoryRole
from raccrochage_clause_sociale.domain.errors import Refused, TransitionRefused
from raccrochage_clause_sociale.domain.mission import ActivityDomain, Mission, MissionOutcome, Site
from raccrochage_clause_sociale.domain.proposal import ProposalState
from raccrochage_clause_sociale.domain.states import MissionStatus as S

from .builders import (
    ENDS,
    SITE,
    SKILLS,
    STARTS,
    UAI,
    accepted,
    completed,
    days,
    drafted,
    new_clause,
    new_mission,
    parties,
    profile,
    proposed,
    reserved,
    signed,
    uid,
    with_signed_bilan,
    youth,
)


def moves(mission: Mission) -> list[tuple[str, str, str]]:
    return [
        (e.from_status.value, e.to_status.value, e.action.value)
        for e in mission.events
        if isinstance(e, events.StatusChanged)
    ]


def refused_unchanged(mission: Mission, error: type[Exception], match: str, command) -> None:
    """The command is refused with `match` in its message, and the mission is left as it was."""
    before = copy.deepcopy(mission.__dict__)
    with pytest.raises(error, match=match):
        command(mission)
    assert mission.__dict__ == before


# --- declaring ----------------------------------------------------------------------------------


def test_declaring_a_mission() -> None:
    mission = new_mission()
    assert mission.status is S.DISPONIBLE
    assert mission.departement == "33" and mission.buyer_id == "bordeaux-metropole"
    assert mission.events == [events.MissionDeclared(mission.mission_id, days(0))]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"company_id": "autre-33"}, "is held by batisud-33, not autre-33"),
        ({"activity_domain": ActivityDomain.AUTRE}, "Autre needs a comment"),
        ({"activity_domain": "plomberie"}, "activity domain 'plomberie' is not one of accueil"),
        ({"tasks": ()}, "1 to 20 tasks"),
        ({"hours": 451}, "1 to 450 hours"),
        ({"hours": 0}, "1 to 450 hours"),
        ({"second_referent_id": "ref-204"}, "second referent must be another person"),
        ({"referent_id": "Jean Dupont"}, "referent id 'Jean Dupont' is not an id"),
        ({"site": Site("", "33000", "Bordeaux", "33")}, "needs an address"),
    ],
)
def test_declaring_is_refused_with_the_rule(changes: dict, message: str) -> None:
    clause = new_clause()
    arguments = {
        "mission_id": uid("m"),
        "clause": clause,
        "company_id": clause.company_id,
        "activity_domain": ActivityDomain.LOGISTIQUE,
        "tasks": ("Inventaire",),
        "site": SITE,
        "referent_id": "ref-204",
        "hours": 150,
        "now": days(0),
        "second_referent_id": "ref-311",
    }
    with pytest.raises(Refused, match=message):
        Mission.declare(**{**arguments, **changes})


def test_autre_with_a_comment_is_declared() -> None:
    clause = new_clause()
    mission = Mission.declare(
        uid("m"),
        clause,
        clause.company_id,
        "autre",
        ["Tri"],
        SITE,
        "ref-204",
        150,
        days(0),
        activity_comment="Recyclage",
    )
    assert mission.activity_domain is ActivityDomain.AUTRE and mission.activity_comment == "Recyclage"


def test_no_mission_once_the_contract_ended() -> None:
    clause = new_clause()
    with pytest.raises(Refused, match="ended on 2030-08-31"):
        new_mission(clause, now=datetime(2030, 9, 1, tzinfo=UTC))


# --- reservation and proposals ----------------------------------------------------------------


def test_the_whole_path_raises_an_event_for_every_status_change() -> None:
    mission = with_signed_bilan()
    assert moves(mission) == [
        ("disponible", "reservee", "reserve"),
        ("reservee", "en_preparation", "accept_youth"),
        ("en_preparation", "en_realisation", "start"),
        ("en_realisation", "realisee", "complete"),
    ]
    assert mission.status is S.REALISEE and mission.outcome is MissionOutcome.APPRENTICESHIP


def test_a_reserved_mission_cannot_be_reserved_again() -> None:
    mission = reserved()
    refused_unchanged(
        mission, TransitionRefused, "is reservee: cannot reserve", lambda m: m.reserve("t-2", days(2))
    )


def test_only_the_reserving_tutor_proposes_or_releases() -> None:
    mission = reserved()
    refused_unchanged(
        mission,
        TransitionRefused,
        "reserved by tuteur-33-07, not t-2",
        lambda m: m.propose(uid("p"), youth(1), profile(), "t-2", days(2)),
    )
    refused_unchanged(mission, TransitionRefused, "not t-2", lambda m: m.release("t-2", days(2)))
    mission.release("tuteur-33-07", days(2))
    assert mission.status is S.DISPONIBLE and mission.reserved_by is None


def test_one_proposal_at_a_time_and_no_release_while_it_waits() -> None:
    mission = proposed()
    refused_unchanged(
        mission,
        TransitionRefused,
        "waits for the company's answer",
        lambda m: m.release("tuteur-33-07", days(2)),
    )
    refused_unchanged(
        mission,
        TransitionRefused,
        "waits for the company's answer",
        lambda m: m.propose(uid("p2"), youth(2), profile(), "tuteur-33-07", days(2)),
    )


@pytest.mark.parametrize(("age", "ok"), [(15, False), (16, True), (25, True), (26, False)])
def test_the_clause_sociale_is_for_youths_of_16_to_25(age: int, ok: bool) -> None:
    mission = reserved()
    propose = lambda m: m.propose(uid("p"), youth(1), profile(age), "tuteur-33-07", days(2))  # noqa: E731
    if ok:
        propose(mission)
    else:
        refused_unchanged(mission, Refused, f"16 to 25, not {age}", propose)


def test_the_company_answers_within_15_days_reminded_at_day_10() -> None:
    mission = proposed(at=0)
    proposal = mission.pending_proposal
    assert proposal.answer_due_at == days(15)
    assert not mission.remind_if_due(days(9.99))
    assert mission.remind_if_due(days(10))
    assert not mission.remind_if_due(days(11))  # once
    assert mission.pending_proposal.reminded_at == days(10)
    assert not mission.lapse_if_due(days(15))  # day 15 still in time
    mission.answer(proposal.proposal_id, True, days(15))
    assert mission.status is S.EN_PREPARATION and mission.youth_id == youth(1)
    assert [type(e).__name__ for e in mission.events][-3:] == [
        "AnswerReminded",
        "ProposalAnswered",
        "StatusChanged",
    ]


def test_past_day_15_the_proposal_lapses_and_the_mission_is_free_again() -> None:
    mission = proposed(at=0)
    proposal_id = mission.pending_proposal.proposal_id
    refused_unchanged(
        mission,
        Refused,
        "was to be answered by 2026-10-16T09:00:00\\+00:00; it has lapsed",
        lambda m: m.answer(proposal_id, True, days(15.01)),
    )
    assert mission.lapse_if_due(days(15.01))
    assert mission.status is S.DISPONIBLE and mission.reserved_by is None
    assert mission.proposals[-1].state is ProposalState.LAPSED
    assert moves(mission)[-1] == ("reservee", "disponible", "lapse")
    assert not mission.lapse_if_due(days(16))
    mission.reserve("t-2", days(16))  # any tutor now


def test_a_reminder_is_not_sent_after_the_due_date() -> None:
    mission = proposed(at=0)
    assert not mission.remind_if_due(days(15.5))
    assert mission.lapse_if_due(days(15.5))


def test_declining_frees_the_mission() -> None:
    mission = proposed()
    proposal = mission.answer(mission.pending_proposal.proposal_id, False, days(3), "schedule")
    assert proposal.state is ProposalState.DECLINED and proposal.decline_reason.value == "schedule"
    assert mission.status is S.DISPONIBLE and mission.reserved_by is None
    assert moves(mission)[-1] == ("reservee", "disponible", "decline_youth")


def test_an_answer_must_name_the_waiting_proposal() -> None:
    mission = proposed()
    refused_unchanged(mission, TransitionRefused, "not x", lambda m: m.answer("x", True, days(3)))


def test_commands_may_not_go_back_in_time() -> None:
    mission = proposed(at=5)
    refused_unchanged(
        mission,
        Refused,
        "before the mission's last change",
        lambda m: m.answer(m.pending_proposal.proposal_id, True, days(4)),
    )


# --- convention -----------------------------------------------------------------------------------


def test_a_minor_on_the_start_date_needs_a_legal_guardian() -> None:
    mission = accepted()
    birth = date(2008, 11, 3)  # 17 on 2 Nov 2026, 18 the day after
    without_guardian = parties(minor=False)
    refused_unchanged(
        mission,
        Refused,
        "a minor \\(17\\) on the start date 2026-11-02: the legal guardian must be a party",
        lambda m: m.draft_convention(
            uid("c"), STARTS, ENDS, UAI, "ref-204", birth, without_guardian, days(10)
        ),
    )
    convention = mission.draft_convention(
        uid("c"), STARTS, ENDS, UAI, "ref-204", birth, parties(True), days(10)
    )
    assert convention.youth_minor
    assert convention.required_roles == tuple(SignatoryRole)


def test_of_age_on_the_start_date_no_guardian_signs() -> None:
    mission = accepted()
    birth = date(2008, 11, 2)  # 18 on the start date
    refused_unchanged(
        mission,
        Refused,
        "of age \\(18\\) on 2026-11-02: no legal guardian signs",
        lambda m: m.draft_convention(uid("c"), STARTS, ENDS, UAI, "ref-204", birth, parties(True), days(10)),
    )
    convention = mission.draft_convention(
        uid("c"), STARTS, ENDS, UAI, "ref-204", birth, parties(False), days(10)
    )
    assert not convention.youth_minor and len(convention.required_roles) == 3


@pytest.mark.parametrize(
    ("uai", "tutor", "starts", "message"),
    [
        ("0330012B", "ref-204", STARTS, "not a valid UAI"),
        (UAI, "ref-999", STARTS, "must be one of the mission's referents"),
        (UAI, "ref-204", date(2026, 10, 1), "in the past"),
    ],
)
def test_convention_refusals(uai: str, tutor: str, starts: date, message: str) -> None:
    mission = accepted()
    refused_unchanged(
        mission,
        Refused,
        message,
        lambda m: m.draft_convention(
            uid("c"), starts, ENDS, uai, tutor, date(2009, 1, 1), parties(True), days(10)
        ),
    )


def test_the_convention_is_complete_only_when_every_party_signed() -> None:
    mission = drafted(age=17)
    for n, role in enumerate(("company", "mlds_structure", "youth")):
        mission.sign_convention(role, days(11 + n))
        assert mission.status is S.EN_PREPARATION and not mission.convention.complete
    refused_unchanged(
        mission, Refused, "youth has signed already", lambda m: m.sign_convention("youth", days(14))
    )
    mission.sign_convention("legal_guardian", days(14))
    assert mission.convention.complete and mission.status is S.EN_REALISATION
    assert [(s.role.value, s.signed_at) for s in mission.convention.signatures] == [
        ("company", days(11)),
        ("mlds_structure", days(12)),
        ("youth", days(13)),
        ("legal_guardian", days(14)),
    ]
    completed_events = [e for e in mission.events if isinstance(e, events.ConventionCompleted)]
    assert len(completed_events) == 1


def test_an_adult_convention_refuses_a_guardian_signature() -> None:
    mission = drafted(age=19)
    refused_unchanged(
        mission,
        Refused,
        "legal_guardian is not a party",
        lambda m: m.sign_convention("legal_guardian", days(11)),
    )


def test_no_redraft_once_signing_started_but_abandon_frees_the_mission() -> None:
    mission = drafted()
    mission.sign_convention("company", days(11))
    refused_unchanged(
        mission,
        TransitionRefused,
        "is being signed",
        lambda m: m.draft_convention(
            uid("c2"), STARTS, ENDS, UAI, "ref-204", date(2009, 1, 1), parties(True), days(12)
        ),
    )
    mission.abandon("company", days(12))
    assert mission.status is S.DISPONIBLE and mission.convention is None and mission.reserved_by is None


def test_one_tutor_one_place_one_youth_at_a_time() -> None:
    clause = new_clause()
    first = signed(drafted(accepted(new_mission(clause, name="m1"))))
    second = accepted(new_mission(clause, name="m2"))
    overlapping = lambda m: m.draft_convention(  # noqa: E731
        uid("c2"),
        date(2026, 12, 14),
        date(2027, 1, 15),
        UAI,
        "ref-204",
        date(2009, 1, 1),
        parties(True),
        days(20),
        hosted_elsewhere=[first],
    )
    refused_unchanged(
        second,
        Refused,
        "ref-204 already tutors a youth at this site from 2026-11-02 to 2026-12-18",
        overlapping,
    )
    # another tutor, or after the first placement, or at another site: fine
    second.draft_convention(
        uid("c2"),
        date(2026, 12, 14),
        date(2027, 1, 15),
        UAI,
        "ref-311",
        date(2009, 1, 1),
        parties(True),
        days(20),
        hosted_elsewhere=[first],
    )
    third = accepted(new_mission(clause, name="m3"))
    third.draft_convention(
        uid("c3"),
        date(2026, 12, 19),
        date(2027, 1, 15),
        UAI,
        "ref-204",
        date(2009, 1, 1),
        parties(True),
        days(20),
        hosted_elsewhere=[first, second],
    )
    elsewhere = accepted(
        new_mission(clause, name="m4", site=Site("1 quai Riquet", "31000", "Toulouse", "31"))
    )
    elsewhere.draft_convention(
        uid("c4"),
        STARTS,
        ENDS,
        UAI,
        "ref-204",
        date(2009, 1, 1),
        parties(True),
        days(20),
        hosted_elsewhere=[first, second, third],
    )


def test_the_same_site_typed_differently_is_the_same_place() -> None:
    assert Site("12  Rue des docks ", "33300", "Bordeaux", "33").key == SITE.key


# --- hours ------------------------------------------------------------------------------------------


def test_hours_are_recorded_per_started_week_within_the_convention() -> None:
    mission = signed(drafted(starts=date(2026, 11, 4), ends=date(2026, 11, 20)))  # Wednesday to Friday
    monday = date(2026, 11, 2)
    # the week the placement starts in counts, from its first day on, given by any of its days
    assert mission.record_hours(date(2026, 11, 5), 20, datetime(2026, 11, 6, 17, tzinfo=UTC)) is None
    assert mission.attendance == {monday: 20}
    assert mission.record_hours(monday, 21, datetime(2026, 11, 7, tzinfo=UTC)) == 20  # a correction
    assert mission.hours_done == 21
    refused_unchanged(
        mission,
        Refused,
        "week of 2026-11-16 has not started yet",
        lambda m: m.record_hours(date(2026, 11, 16), 10, datetime(2026, 11, 15, 23, tzinfo=UTC)),
    )
    refused_unchanged(
        mission,
        Refused,
        "outside the convention",
        lambda m: m.record_hours(date(2026, 11, 23), 10, datetime(2026, 11, 24, tzinfo=UTC)),
    )
    refused_unchanged(
        mission,
        Refused,
        "0 to 35 hours a week",
        lambda m: m.record_hours(date(2026, 11, 9), 36, datetime(2026, 11, 10, tzinfo=UTC)),
    )
    recorded = [e for e in mission.events if isinstance(e, events.HoursRecorded)]
    assert [(e.week_of, e.hours, e.previous_hours, e.mission_hours_done) for e in recorded] == [
        (monday, 20, None, 20),
        (monday, 21, 20, 21),
    ]


def test_no_hours_before_the_convention_is_signed() -> None:
    mission = drafted()
    refused_unchanged(
        mission,
        TransitionRefused,
        "is en_preparation: cannot record_hours",
        lambda m: m.record_hours(STARTS, 10, datetime(2026, 11, 3, tzinfo=UTC)),
    )


def test_completion_needs_the_placement_started_and_a_known_outcome() -> None:
    mission = signed()
    refused_unchanged(
        mission,
        Refused,
        "starts on 2026-11-02",
        lambda m: m.complete("job", datetime(2026, 11, 1, tzinfo=UTC)),
    )
    refused_unchanged(
        mission,
        Refused,
        "outcome 'cdi' is not one of",
        lambda m: m.complete("cdi", datetime(2026, 12, 1, tzinfo=UTC)),
    )
    done = completed(mission, "job")
    [event] = [e for e in done.events if isinstance(e, events.MissionCompleted)]
    assert (event.outcome, event.hours_done, event.tutor_id) == ("job", 58, "tuteur-33-07")
    assert done.hours_planned == 58


# --- bilan croisé -----------------------------------------------------------------------------------


def test_the_bilan_is_delivered_only_signed_by_the_three() -> None:
    mission = completed()
    at = datetime(2026, 12, 19, 10, tzinfo=UTC)
    mission.write_bilan(SKILLS, "Ponctuel.", "Prépare une commande.", "CAP logistique.", at)
    mission.sign_bilan("mlds_tutor", at)
    mission.sign_bilan("company_referent", at)
    refused_unchanged(
        mission, Refused, "waits for the signature of youth", lambda m: m.deliver_bilan("a" * 64, at)
    )
    refused_unchanged(
        mission,
        TransitionRefused,
        "is being signed",
        lambda m: m.write_bilan(SKILLS, "x", "y", "z", at),
    )
    mission.sign_bilan("youth", at)
    bilan = mission.deliver_bilan("a" * 64, at + timedelta(hours=1))
    assert bilan.fully_signed and bilan.document_sha256 == "a" * 64
    refused_unchanged(
        mission,
        TransitionRefused,
        "delivered on",
        lambda m: m.deliver_bilan("b" * 64, at + timedelta(hours=2)),
    )


def test_the_bilan_is_not_delivered_before_the_end_of_the_mission() -> None:
    mission = signed()
    at = datetime(2026, 11, 20, tzinfo=UTC)
    mission.write_bilan(SKILLS, "a", "b", "c", at)
    for role in ("mlds_tutor", "company_referent", "youth"):
        mission.sign_bilan(role, at)
    refused_unchanged(
        mission,
        TransitionRefused,
        "en_realisation: cannot deliver_bilan",
        lambda m: m.deliver_bilan("a" * 64, at),
    )


def test_a_bilan_assesses_skills_with_known_levels() -> None:
    mission = completed()
    at = datetime(2026, 12, 19, tzinfo=UTC)
    refused_unchanged(mission, Refused, "1 to 30 skills", lambda m: m.write_bilan((), "a", "b", "c", at))
    refused_unchanged(
        mission,
        Refused,
        "level 'bien' is not one of",
        lambda m: m.write_bilan((SkillAssessment("Accueil", "bien"),), "a", "b", "c", at),
    )
    refused_unchanged(
        mission,
        Refused,
        "savoir-être must have",
        lambda m: m.write_bilan((SkillAssessment("Accueil", "acquired"),), " ", "b", "c", at),
    )


def test_every_status_refuses_what_its_table_does_not_allow() -> None:
    mission = new_mission()
    for command in (
        lambda m: m.release("tuteur-33-07", days(1)),
        lambda m: m.sign_convention("company", days(1)),
        lambda m: m.complete("job", days(1)),
        lambda m: m.sign_bilan("youth", days(1)),
    ):
        refused_unchanged(mission, TransitionRefused, "is disponible: cannot", command)
    assert not mission.remind_if_due(days(30)) and not mission.lapse_if_due(days(30))
