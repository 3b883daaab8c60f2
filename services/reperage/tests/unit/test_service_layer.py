"""Repérage's service layer on a fake unit of work: what each use case stores, publishes and
commits, without a database or a broker.

The consumer's handlers run inside the unit of work the consumer opens and commits (`handled`
plays the consumer); the other use cases open and commit their own.
"""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.events.psad_v1 import CaseClosed, CaseTransferred
from raccrochage_reperage.domain.identity import youth_id
from raccrochage_reperage.domain.partners import PartnerSource, identity_key
from raccrochage_reperage.domain.rules import Policy
from raccrochage_reperage.domain.siei import SIEI_COLUMNS
from raccrochage_reperage.service_layer import handovers, ingest, partner_file
from raccrochage_reperage.service_layer.partners import (
    PARTNER_INBOX,
    Duplicate,
    Partner,
    enrolment_ended,
    enrolment_started,
)
from raccrochage_reperage.service_layer.unit_of_work import Enrolment, VaultIdentity
from raccrochage_reperage.service_layer.vault import give_contact_card

from .fakes import FakeCampaignRepository, FakeEnrolmentRepository, FakeReperageUnitOfWork, StoredHandover

AS_OF = date(2026, 11, 2)
TODAY = date(2026, 11, 20)
KEY = b"k" * 64
WHO = Partner("cfa-gironde", "cfa")
IDENTIFIED = "reperage.youth.identified.v1"
REPORTED_AGAIN = "reperage.youth.reported_again.v1"
INGESTED = "reperage.campaign.ingested.v1"
FOUND = "reperage.youth.found.v1"

YOUTH = {
    "ine": "1111111111A",
    "nom": "Dupont",
    "prenom": "Léa",
    "date_naissance": "01/05/2009",
    "sexe": "F",
    "code_postal": "33000",
    "commune": "Bordeaux",
    "adresse": "3 rue Pasteur",
    "telephone": "06 00 00 00 00",
    "courriel": "lea@example.org",
    "uai_origine": "0330023F",
    "formation_origine": "2nde GT",
    "date_sortie": "30/06/2026",
    "diplome": "DNB",
}
# Line 2 onwards (line 1 is the header).
CAMPAIGN = [
    YOUTH,  # identified, Gironde
    {**YOUTH, "ine": "2222222222B", "nom": "Bac", "diplome": "BAC_PRO"},  # excluded: qualified
    {**YOUTH, "ine": "3333333333C", "nom": "Ancien", "date_naissance": "01/05/1990"},  # out of age band
    {**YOUTH, "nom": "Dupond"},  # the first youth's INE again: a duplicate
    {**YOUTH, "ine": ""},  # rejected: INE missing
    {**YOUTH, "ine": "5555555555E", "nom": "Landes", "code_postal": "40000"},  # identified, Landes
]
FIRST, LANDES = youth_id("1111111111A", KEY), youth_id("5555555555E", KEY)


def siei_file(folder: Path, rows: list[dict] = CAMPAIGN) -> Path:
    path = folder / "siei.csv"
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(SIEI_COLUMNS)
        for row in rows:
            writer.writerow([row[name] for name in SIEI_COLUMNS])
    return path


async def ingested(uow: FakeReperageUnitOfWork, path: Path, campaign: str = "c1") -> dict:
    summary = await ingest.ingest_campaign(
        path, campaign_id=campaign, as_of=AS_OF, unit_of_work=lambda: uow, key=KEY, policy=Policy()
    )
    return summary.as_dict()


def published(uow: FakeReperageUnitOfWork, event_type: str) -> list[CloudEvent]:
    return [event for event in uow.published if event.type == event_type]


async def handled(uow: FakeReperageUnitOfWork, handler, *arguments):
    """What the consumer does around a handler: one unit of work, committed after it."""
    async with uow:
        result = await handler(uow, *arguments)
        await uow.commit()
    return result


# --- a campaign --------------------------------------------------------------------------------
async def test_a_campaign_hands_over_the_youths_found_nowhere_and_counts_the_others(tmp_path: Path) -> None:
    uow = FakeReperageUnitOfWork()
    summary = await ingested(uow, siei_file(tmp_path))

    assert (summary["rows"], summary["rejected"], summary["duplicates"]) == (6, 1, 1)
    assert summary["excluded"] == 2
    assert summary["excluded_by_reason"] == {"out_of_age_band": 1, "qualified": 1, "found_in_partner_base": 0}
    assert summary["identified"] == 2 and summary["reported_again"] == 0
    identified = {event.subject: event.data for event in published(uow, IDENTIFIED)}
    assert set(identified) == {FIRST, LANDES}
    assert identified[FIRST]["psad_id"].startswith("psad-33") and identified[LANDES]["departement"] == "40"
    (done,) = published(uow, INGESTED)
    assert (done.data["identified"], done.data["excluded"], done.data["rows"]) == (2, 2, 6)
    assert uow.published_types()[-1] == INGESTED  # the campaign's last event
    # Only the youths handed over enter the vault; every youth has an outcome.
    assert set(uow.db.vault) == {FIRST, LANDES} == {y for y, h in uow.db.handovers.items() if h.open}
    assert sorted(o.outcome for o in uow.db.outcomes.values()) == [
        "excluded",
        "excluded",
        "identified",
        "identified",
    ]
    assert [(r.line, r.field) for r in uow.db.rejections.values()] == [(6, "ine")]
    assert uow.db.campaigns["c1"].status == "done"
    assert uow.commits == 3  # start, the one chunk, finish


async def test_a_youth_a_partner_enrols_during_the_ingest_is_handed_over_then_found(tmp_path: Path) -> None:
    class EnrolledMeanwhile(FakeCampaignRepository):
        """As the ingest's first chunk is written (the partners' index read long before), a
        partner's enrolment of the first youth is kept by another transaction."""

        async def progressed(self, campaign_id: str) -> None:
            await super().progressed(campaign_id)
            birth = date(2009, 5, 1)
            enrolled = Enrolment(
                "cfa",
                "cfa-gironde",
                "1111111111A",
                identity_key("Dupont", "Léa", birth),
                AS_OF,
                None,
                uuid.uuid4(),
            )
            await FakeEnrolmentRepository(self.db).add([enrolled])

    uow = FakeReperageUnitOfWork()
    uow.campaigns = EnrolledMeanwhile(uow.db)

    summary = await ingested(uow, siei_file(tmp_path))

    assert summary["identified"] == 2
    assert [e.subject for e in published(uow, IDENTIFIED)] == [FIRST, LANDES]
    [found] = published(uow, FOUND)
    assert (found.subject, found.data["base"], found.data["partner_id"]) == (FIRST, "cfa", "cfa-gironde")
    assert not uow.db.handovers[FIRST].open and uow.db.handovers[LANDES].open


@pytest.mark.parametrize("refused", [b"", "ine;nom\n".encode("utf-16")])
async def test_a_refused_file_leaves_its_campaign_id_free_for_the_corrected_one(
    tmp_path: Path, refused: bytes
) -> None:
    from raccrochage_reperage.domain.siei import FileFormatError

    uow = FakeReperageUnitOfWork()
    bad = tmp_path / "refused.csv"
    bad.write_bytes(refused)
    with pytest.raises(FileFormatError):
        await ingested(uow, bad)
    summary = await ingested(uow, siei_file(tmp_path))  # was: "ingested from another file"
    assert summary["identified"] > 0 and uow.db.campaigns["c1"].status == "done"


async def test_a_campaign_that_stored_lines_keeps_its_file(tmp_path: Path) -> None:
    uow = FakeReperageUnitOfWork()
    await ingested(uow, siei_file(tmp_path))
    other = tmp_path / "other.csv"
    other.write_bytes(siei_file(tmp_path).read_bytes() + b"\n")
    with pytest.raises(ingest.CampaignConflict, match="another file"):
        await ingested(uow, other)


async def test_a_campaign_ingested_again_emits_nothing_new(tmp_path: Path) -> None:
    uow = FakeReperageUnitOfWork()
    path = siei_file(tmp_path)
    first = await ingested(uow, path)
    events, commits = list(uow.published), uow.commits

    again = await ingested(uow, path)
    assert again == {**first, "already_ingested": True}
    assert uow.published == events and uow.commits == commits


async def test_an_ingest_that_failed_midway_converges_on_rerun_without_a_second_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uow = FakeReperageUnitOfWork()
    path = siei_file(tmp_path)
    monkeypatch.setattr(ingest, "CHUNK", 2)  # three chunks, each its own unit of work
    add_outcomes = uow.campaigns.add_outcomes
    calls = 0

    async def fails_on_the_second_chunk(campaign_id, outcomes):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("PostgreSQL went away")
        await add_outcomes(campaign_id, outcomes)

    monkeypatch.setattr(uow.campaigns, "add_outcomes", fails_on_the_second_chunk)
    with pytest.raises(ConnectionError):
        await ingested(uow, path)
    assert uow.db.campaigns["c1"].status == "ingesting"
    assert FIRST in [event.subject for event in uow.published]  # the first chunk is committed
    assert INGESTED not in uow.published_types()

    summary = await ingested(uow, path)
    assert summary["identified"] == 2 and summary["duplicates"] == 1 and not summary["already_ingested"]
    assert sorted(event.subject for event in published(uow, IDENTIFIED)) == sorted([FIRST, LANDES])
    assert len({event.id for event in uow.published}) == len(uow.published) == 3


async def test_a_youth_whose_case_is_open_is_reported_again_by_a_later_campaign(tmp_path: Path) -> None:
    uow = FakeReperageUnitOfWork()
    path = siei_file(tmp_path)
    await ingested(uow, path, "c1")
    uow.db.handovers[LANDES].open = False  # the PSAD closed this one: the youth is handed over anew

    summary = await ingested(uow, path, "c2")
    assert summary["identified"] == 2 and summary["reported_again"] == 1
    again = [event for event in uow.published if event.data.get("campaign_id") == "c2"]
    assert sorted((event.type, event.subject) for event in again) == sorted(
        [(REPORTED_AGAIN, FIRST), (IDENTIFIED, LANDES), (INGESTED, "c2")]
    )
    assert uow.db.handovers[FIRST].campaign_id == "c1" and uow.db.handovers[LANDES].campaign_id == "c2"


# --- partners' live enrolments -----------------------------------------------------------------
BIRTH = date(2009, 5, 1)


def hand_over(uow: FakeReperageUnitOfWork, ine: str, psad_id: str = "psad-33", nom: str = "Martin") -> str:
    """A youth in the vault, handed over to `psad_id` by an earlier campaign."""
    yid = youth_id(ine, KEY)
    key = identity_key(nom, "Léa", BIRTH)
    uow.db.vault[yid] = VaultIdentity(
        yid,
        ine,
        key,
        nom,
        "Léa",
        BIRTH,
        "F",
        "33000",
        None,
        None,
        "06",
        None,
        None,
        None,
        date(2026, 6, 30),
        None,
    )
    uow.db.handovers[yid] = StoredHandover(psad_id, "c0")
    return yid


def enrolment(
    ine: str | None, *, nom: str = "Martin", since: date = TODAY
) -> tuple[CloudEvent, EnrolmentStarted]:
    data = EnrolmentStarted(ine=ine, nom=nom, prenom="Léa", date_naissance=BIRTH, date_debut=since)
    return new_event(data, source=f"partner/{WHO.partner_id}", subject="contrat-1"), data


async def test_a_partner_enrolment_of_a_handed_over_youth_finds_them() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "A1234567890", psad_id="psad-40")
    envelope, data = enrolment("a1234567890 ")

    assert await enrolment_started(uow, WHO, envelope, data, TODAY, key=KEY) == [yid]
    (found,) = uow.published
    assert (found.type, found.subject, found.data["psad_id"], found.data["base"]) == (
        FOUND,
        yid,
        "psad-40",
        "cfa",
    )
    assert found.causationid == envelope.id and found.correlationid == envelope.correlationid
    assert not uow.db.handovers[yid].open and uow.db.handovers[yid].found_base == "cfa"
    assert [(e.ine, e.partner_id, e.event_id) for e in uow.db.enrolments] == [
        ("A1234567890", "cfa-gironde", envelope.id)
    ]
    assert uow.inbox[PARTNER_INBOX] == {envelope.id} and uow.commits == 1


async def test_a_partner_enrolment_without_ine_finds_the_youth_by_identity() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "B1234567890", nom="D'Arcy")
    envelope, data = enrolment(None, nom="d arcy")
    assert await enrolment_started(uow, WHO, envelope, data, TODAY, key=KEY) == [yid]
    assert [event.subject for event in published(uow, FOUND)] == [yid]


async def test_a_partner_request_sent_again_changes_nothing() -> None:
    uow = FakeReperageUnitOfWork()
    hand_over(uow, "C1234567890")
    envelope, data = enrolment("C1234567890")
    await enrolment_started(uow, WHO, envelope, data, TODAY, key=KEY)
    events, enrolments, commits = list(uow.published), list(uow.db.enrolments), uow.commits

    with pytest.raises(Duplicate):
        await enrolment_started(uow, WHO, envelope, data, TODAY, key=KEY)
    assert uow.published == events and uow.db.enrolments == enrolments and uow.commits == commits


async def test_an_enrolment_starting_later_is_kept_and_finds_nobody_yet() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "D1234567890")
    envelope, data = enrolment("D1234567890", since=date(2027, 1, 5))
    assert await enrolment_started(uow, WHO, envelope, data, TODAY, key=KEY) == []
    assert uow.published == [] and uow.db.handovers[yid].open and len(uow.db.enrolments) == 1


async def test_an_ine_the_domain_refuses_writes_nothing() -> None:
    uow = FakeReperageUnitOfWork()
    envelope, data = enrolment("12")
    with pytest.raises(ValueError, match="data.ine"):
        await enrolment_started(uow, WHO, envelope, data, TODAY, key=KEY)
    assert uow.commits == 0 and uow.inbox == {}


async def test_an_ended_enrolment_gets_its_end_date_once() -> None:
    uow = FakeReperageUnitOfWork()
    started, data = enrolment("E1234567890", since=date(2026, 9, 1))
    await enrolment_started(uow, WHO, started, data, TODAY, key=KEY)
    ended = EnrolmentEnded(
        ine="E1234567890", nom="Martin", prenom="Léa", date_naissance=BIRTH, date_fin=date(2026, 10, 15)
    )
    envelope = new_event(ended, source=f"partner/{WHO.partner_id}", subject="contrat-1")
    assert await enrolment_ended(uow, WHO, envelope, ended) == 1
    assert [e.date_fin for e in uow.db.enrolments] == [date(2026, 10, 15)]
    with pytest.raises(Duplicate):
        await enrolment_ended(uow, WHO, envelope, ended)


# --- partner files -----------------------------------------------------------------------------
async def test_a_partner_file_finds_the_handed_over_youths_it_enrols_once(tmp_path: Path) -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "F1234567890")
    other = hand_over(uow, "G1234567890", nom="Nobody")
    path = tmp_path / "partner_ml.csv"
    path.write_text(
        "ine;nom;prenom;date_naissance;date_debut;date_fin\r\n"
        "F1234567890;Martin;Léa;01/05/2009;01/09/2026;\r\n"
        "9999999999Z;Autre;Jeune;01/05/2009;01/09/2026;\r\n",
        encoding="utf-8",
    )
    summary = await partner_file.ingest_partner_file(
        path, source=PartnerSource.ML, unit_of_work=lambda: uow, today=TODAY
    )
    assert (summary.rows, summary.enrolments, summary.found) == (2, 2, 1)
    (found,) = uow.published
    assert (found.subject, found.data["base"], found.data["enrolled_since"]) == (yid, "ml", "2026-09-01")
    assert not uow.db.handovers[yid].open and uow.db.handovers[other].open

    again = await partner_file.ingest_partner_file(
        path, source=PartnerSource.ML, unit_of_work=lambda: uow, today=TODAY
    )
    assert (again.enrolments, again.found) == (0, 0) and uow.published == [found]


# --- what the PSADs tell ------------------------------------------------------------------------
def case_closed(yid: str, psad_id: str, reason: str) -> CaseClosed:
    return CaseClosed(
        case_id=uuid.uuid4(), youth_id=yid, psad_id=psad_id, reason=reason, closed_at=datetime.now(UTC)
    )


async def test_a_case_the_psad_closes_ends_the_handover() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "H1234567890", psad_id="psad-33")
    assert await handled(uow, handovers.case_closed, case_closed(yid, "psad-33", "refuses_support")) is True
    stored = uow.db.handovers[yid]
    assert (stored.open, stored.close_reason) == (False, "refuses_support") and stored.closed_at is not None
    assert uow.published == []


async def test_a_case_closed_as_moved_or_by_another_psad_leaves_the_handover_open() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "J1234567890", psad_id="psad-33")
    assert await handled(uow, handovers.case_closed, case_closed(yid, "psad-33", "moved")) is False
    assert await handled(uow, handovers.case_closed, case_closed(yid, "psad-64", "refuses_support")) is False
    assert uow.db.handovers[yid].open


async def test_a_transferred_case_moves_the_handover() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "K1234567890", psad_id="psad-33")
    transferred = CaseTransferred(
        case_id=uuid.uuid4(),
        youth_id=yid,
        psad_id="psad-33",
        to_psad_id="psad-40",
        departement="40",
        age=19,
        transferred_at=datetime.now(UTC),
    )
    await handled(uow, handovers.case_transferred, transferred)
    assert uow.db.handovers[yid].psad_id == "psad-40" and uow.db.handovers[yid].open


# --- contact cards -----------------------------------------------------------------------------
ALLOWED = {"psad", "mlds"}


async def test_a_contact_card_is_given_to_an_allowed_caller_and_every_request_is_audited() -> None:
    uow = FakeReperageUnitOfWork()
    yid = hand_over(uow, "L1234567890")

    answer = await give_contact_card(uow, caller="psad", youth_id=yid, purpose="first call", allowed=ALLOWED)
    assert answer.status == "ok" and answer.card is not None
    assert (answer.card.nom, answer.card.date_naissance, answer.card.telephone) == (
        "Martin",
        "2009-05-01",
        "06",
    )
    refused = await give_contact_card(uow, caller="foquale", youth_id=yid, purpose="curious", allowed=ALLOWED)
    no_purpose = await give_contact_card(uow, caller="mlds", youth_id=yid, purpose="  ", allowed=ALLOWED)
    missing = await give_contact_card(uow, caller="psad", youth_id="0" * 64, purpose="call", allowed=ALLOWED)

    assert (refused.status, refused.card) == ("refused", None) and "foquale" in refused.reason
    assert no_purpose.status == "refused" and missing.status == "not_found"
    assert uow.db.audit == [
        ("psad", yid, "first call", True),
        ("foquale", yid, "curious", False),
        ("mlds", yid, "  ", False),
        ("psad", "0" * 64, "call", False),
    ]
    assert uow.commits == 4 and uow.published == []
