"""Clauses and missions at each stage, on a frozen clock (T0 and `days`)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta

from raccrochage_clause_sociale.domain.bilan import SkillAssessment, SkillLevel
from raccrochage_clause_sociale.domain.clause import Buyer, BuyerType, Clause
from raccrochage_clause_sociale.domain.convention import SignatoryRole
from raccrochage_clause_sociale.domain.mission import ActivityDomain, Mission, Site
from raccrochage_clause_sociale.domain.proposal import SchoolLevel, YouthProfile

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)  # a Thursday
UAI = "0330012J"  # a valid UAI: 0330012 % 23 -> J
BUYER = Buyer(
    "bordeaux-metropole", "Bordeaux Métropole", BuyerType.COLLECTIVITE_TERRITORIALE, "acheteur", "33"
)
SITE = Site("12 rue des Docks", "33300", "Bordeaux", "33")


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def youth(n: int | str) -> str:
    return hashlib.sha256(f"youth-{n}".encode()).hexdigest()


def birth_date_for_age(age: int, on: date) -> date:
    """A birth date making the youth exactly `age` on `on` (born on a 1st of January)."""
    return date(on.year - age, 1, 1)


def new_clause(
    amount: int = 250_000,
    *,
    name: str = "clause-1",
    notified: date = date(2026, 9, 1),
    firm_end: date = date(2028, 8, 31),
    ends: date = date(2030, 8, 31),
    now: datetime = T0,
    company_id: str = "batisud-33",
) -> Clause:
    return Clause.publish(
        uid(name), BUYER, company_id, "Nettoyage des locaux, lot 2", notified, firm_end, amount, ends, now
    )


def new_mission(
    clause: Clause | None = None,
    *,
    name: str = "mission-1",
    hours: int = 150,
    site: Site = SITE,
    now: datetime = T0,
) -> Mission:
    clause = clause or new_clause()
    return Mission.declare(
        uid(name),
        clause,
        clause.company_id,
        ActivityDomain.LOGISTIQUE,
        ("Réception des livraisons", "Inventaire"),
        site,
        "ref-204",
        hours,
        now,
        second_referent_id="ref-311",
    )


def profile(age: int = 17) -> YouthProfile:
    return YouthProfile(age, SchoolLevel.SECONDE, ("logistique",), date(2026, 10, 12), 30)


def reserved(mission: Mission | None = None, tutor: str = "tuteur-33-07", at: float = 1) -> Mission:
    mission = mission or new_mission()
    mission.reserve(tutor, days(at))
    return mission


def proposed(mission: Mission | None = None, n: int = 1, at: float = 1) -> Mission:
    mission = reserved(mission, at=at)
    mission.propose(uid(f"proposal-{n}-{mission.mission_id}"), youth(n), profile(), "tuteur-33-07", days(at))
    return mission


def accepted(mission: Mission | None = None, at: float = 5) -> Mission:
    mission = proposed(mission)
    mission.answer(mission.pending_proposal.proposal_id, True, days(at))
    return mission


def parties(minor: bool) -> dict[SignatoryRole, str]:
    roles = {
        SignatoryRole.COMPANY: "p-company",
        SignatoryRole.MLDS_STRUCTURE: "p-mlds",
        SignatoryRole.YOUTH: "p-youth",
    }
    if minor:
        roles[SignatoryRole.LEGAL_GUARDIAN] = "p-guardian"
    return roles


STARTS = date(2026, 11, 2)  # a Monday
ENDS = date(2026, 12, 18)  # a Friday


def drafted(
    mission: Mission | None = None,
    *,
    age: int = 17,
    starts: date = STARTS,
    ends: date = ENDS,
    tutor: str = "ref-204",
    at: float = 10,
) -> Mission:
    mission = mission or accepted()
    mission.draft_convention(
        uid(f"convention-{mission.mission_id}"),
        starts,
        ends,
        UAI,
        tutor,
        birth_date_for_age(age, starts),
        parties(age < 18),
        days(at),
    )
    return mission


def signed(mission: Mission | None = None, at: float = 12, age: int = 17) -> Mission:
    mission = mission or drafted(age=age)
    for role in mission.convention.required_roles:
        mission.sign_convention(role, days(at))
    return mission


SKILLS = (
    SkillAssessment("Réceptionner une livraison", SkillLevel.ACQUIRED),
    SkillAssessment("Tenir un inventaire", SkillLevel.ACQUIRED),
    SkillAssessment("Utiliser un transpalette", SkillLevel.IN_PROGRESS),
    SkillAssessment("Renseigner le logiciel de stock", SkillLevel.NOT_ACQUIRED),
)


def completed(mission: Mission | None = None, outcome: str = "apprenticeship") -> Mission:
    mission = mission or signed()
    mission.record_hours(date(2026, 11, 2), 28, datetime(2026, 11, 6, 17, tzinfo=UTC))
    mission.record_hours(date(2026, 11, 9), 30, datetime(2026, 11, 13, 17, tzinfo=UTC))
    mission.complete(outcome, datetime(2026, 12, 18, 17, tzinfo=UTC))
    return mission


def with_signed_bilan(mission: Mission | None = None) -> Mission:
    mission = mission or completed()
    at = datetime(2026, 12, 19, 10, tzinfo=UTC)
    mission.write_bilan(
        SKILLS, "Ponctuel et poli.", "Sait préparer une commande.", "Entrée en CAP logistique.", at
    )
    for role in ("mlds_tutor", "company_referent", "youth"):
        mission.sign_bilan(role, at + timedelta(hours=1))
    return mission
