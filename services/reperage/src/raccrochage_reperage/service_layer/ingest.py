"""Ingest a SIEI campaign file: parse, cross-check, keep identities in the vault, hand youths over.

Streaming from file to database in chunks, one unit of work per chunk holding the vault rows,
the outcomes, the handovers and the outgoing events. Event ids are derived from
(campaign, youth, type), so an ingest killed midway and run again converges to the same state
and publishes nothing twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.reperage_v1 import (
    CampaignIngested,
    YouthFound,
    YouthIdentified,
    YouthReportedAgain,
)
from raccrochage_platform.faults import crash_point
from raccrochage_platform.logging import get_logger

from ..domain.identity import youth_id
from ..domain.partners import PartnerIndex, identity_key
from ..domain.rules import CampaignTally, Diploma, ExclusionReason, Policy, SeenFilter, age_on, classify
from ..domain.siei import Rejection, SieiRow, open_siei
from ..domain.territory import route
from .partners import FOUND_NAMESPACE, is_current
from .unit_of_work import AbstractReperageUnitOfWork, Handover, Outcome, RejectedLine, VaultIdentity

log = get_logger(__name__)

CHUNK = 5000
WRITE_AHEAD = 3  # chunks read but not yet written: memory stays a few chunks, whatever the file
# Chunks written at once, each in its own unit of work: one chunk's statements run while the
# other's events are published, so neither PostgreSQL nor this process waits for the other.
WRITERS = 2
YIELD_EVERY = 50  # rows parsed between two turns of the event loop (the writer's replies)
EVENT_NAMESPACE = uuid.UUID("6f0d3c1e-5a3b-4c59-9f64-3f1d2a7c0b11")


class CampaignConflict(ValueError):
    """The campaign id is taken by another file."""


@dataclass
class IngestSummary:
    campaign_id: str
    as_of: date
    tally: dict
    extra_columns: list[str] = field(default_factory=list)
    reported_again: int = 0
    events_published: int = 0
    already_ingested: bool = False
    encoding: str = ""
    delimiter: str = ""

    def as_dict(self) -> dict:
        return {
            "campaign_id": self.campaign_id,
            "as_of": self.as_of.isoformat(),
            **self.tally,
            "reported_again": self.reported_again,
            "events_published": self.events_published,
            "already_ingested": self.already_ingested,
            "extra_columns": self.extra_columns,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
        }


def event_id(campaign_id: str, subject: str, event_type: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{campaign_id}|{subject}|{event_type}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def months_between(earlier: date, later: date) -> int:
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return max(0, months - (1 if later.day < earlier.day else 0))


@dataclass
class Chunk:
    # (row, youth_id, reason, maybe seen in an earlier chunk)
    youths: list[tuple[SieiRow, str, ExclusionReason | None, bool]] = field(default_factory=list)
    rejections: list[RejectedLine] = field(default_factory=list)
    read_up_to: int = 0  # file offset once the chunk's rows are read, for the progress bar

    def __len__(self) -> int:
        return len(self.youths) + len(self.rejections)


# A second ingest of a campaign waits this long for the first's hold before it is refused: long
# enough for a killed ingest's connection to be closed by PostgreSQL.
INGEST_HOLD_WAIT_SECONDS = 3.0


def ingest_job(campaign_id: str) -> str:
    """The name of the hold an ingest of `campaign_id` keeps (`AbstractUnitOfWork.alone`)."""
    return f"reperage.ingest:{campaign_id}"


async def ingest_campaign(
    path: Path,
    *,
    campaign_id: str,
    as_of: date,
    unit_of_work: Callable[[], AbstractReperageUnitOfWork],
    key: bytes,
    policy: Policy,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest a campaign file: a unit of work to start (or resume) the campaign, one per chunk
    of the file, one to finish it with its `campaign.ingested` event. One ingest of a campaign
    at a time, whichever process runs it (a second upload meanwhile is refused: it would mix its
    file's youths into the first's, or hand the same youths over twice); one that died is resumed
    at once (its hold went with its connection)."""
    async with unit_of_work().alone(ingest_job(campaign_id), wait=INGEST_HOLD_WAIT_SECONDS) as alone:
        if not alone:
            raise CampaignConflict(
                f"campaign {campaign_id} is being ingested right now, from another upload; its summary "
                "is given there, and by the campaign's status once done"
            )
        return await _ingest_campaign(
            path,
            campaign_id=campaign_id,
            as_of=as_of,
            unit_of_work=unit_of_work,
            key=key,
            policy=policy,
            progress=progress,
        )


async def _ingest_campaign(
    path: Path,
    *,
    campaign_id: str,
    as_of: date,
    unit_of_work: Callable[[], AbstractReperageUnitOfWork],
    key: bytes,
    policy: Policy,
    progress: Callable[[int], None] | None,
) -> IngestSummary:
    sha = file_sha256(path)
    async with unit_of_work() as uow:
        existing = await uow.campaigns.get(campaign_id)
        # A refused file (or a mistyped date) left the campaign with nothing stored: the
        # corrected file takes the id rather than being refused under it.
        if (
            existing is not None
            and (existing.file_sha256, existing.as_of) != (sha, as_of)
            and await uow.campaigns.restart(campaign_id, as_of, sha)
        ):
            existing = None
        if existing is not None:
            if existing.file_sha256 != sha:
                raise CampaignConflict(
                    f"campaign {campaign_id} was ingested from another file; give this file a new campaign id"
                )
            if existing.as_of != as_of:
                raise CampaignConflict(
                    f"campaign {campaign_id} has reference date {existing.as_of}, not {as_of}"
                )
            if existing.status == "done" and existing.summary:
                return IngestSummary(**{**_summary_fields(existing.summary), "already_ingested": True})
        await uow.campaigns.start(campaign_id, as_of, sha)
        await uow.commit()

    # A resumed ingest also checks again what was kept while its killed run was under way.
    index_read_from = datetime.now(UTC)
    if existing is not None and existing.started_at is not None:
        index_read_from = min(index_read_from, existing.started_at)
    partners = PartnerIndex(as_of)
    async with unit_of_work() as uow:
        async for ine, identity, date_debut, date_fin in uow.enrolments.every():  # not a list of them all
            partners.add(ine, identity, date_debut, date_fin)
    tally = CampaignTally()
    summary = IngestSummary(campaign_id, as_of, {})
    # Reading and writing overlap: a writer task takes the chunks the reader hands over (at most
    # WRITE_AHEAD waiting), so PostgreSQL merges one chunk while this process parses the next.
    chunks: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=WRITE_AHEAD)
    writer = asyncio.create_task(_write_chunks(chunks, unit_of_work, campaign_id, as_of, tally, progress))
    try:
        with open(path, "rb") as handle:
            siei = open_siei(handle, as_of)
            summary.extra_columns, summary.encoding, summary.delimiter = (
                siei.extra_columns,
                siei.encoding,
                siei.delimiter,
            )
            # Duplicates: `classify` knows the INEs of the chunk being read and of the one before
            # (`seen`: WRITERS chunks, which may not be committed yet); for earlier chunks, all
            # committed, a fixed-size filter says "maybe", and the writer asks the database
            # about those. Memory does not grow with the file.
            seen: set[int] = set()
            keys: list[int] = []  # INE digests of the chunk being read
            previous_keys: list[int] = []
            earlier = SeenFilter()
            chunk = Chunk()
            rejections: list[Rejection] = []
            for row, reason in classify(
                _capture(siei.records, rejections), as_of, policy, partners, tally, seen
            ):
                for rejected in rejections:
                    chunk.rejections.append(RejectedLine(rejected.line, rejected.field, rejected.reason))
                rejections.clear()
                digest = hash(row.ine)  # as classify's
                keys.append(digest)
                chunk.youths.append((row, youth_id(row.ine, key), reason, earlier.add(digest)))
                if len(chunk) >= CHUNK:
                    chunk.read_up_to = handle.tell()
                    await _hand_over(chunks, chunk, writer)
                    chunk = Chunk()
                    seen.difference_update(previous_keys)  # `seen` keeps this chunk's and the next's
                    previous_keys, keys = keys, []
                elif len(chunk.youths) % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the writer's database replies in
            for rejected in rejections:
                chunk.rejections.append(RejectedLine(rejected.line, rejected.field, rejected.reason))
            chunk.read_up_to = handle.tell()
            await _hand_over(chunks, chunk, writer)
            await _hand_over(chunks, None, writer)
        summary.reported_again = await writer
    finally:
        if not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    summary.tally = tally.as_dict()
    # Every youth found nowhere is `identified`; those whose case is still open from an earlier
    # campaign (`reported_again`, a subset) got a reported_again event instead of a second case.
    summary.events_published = tally.identified
    final = CampaignIngested(
        campaign_id=campaign_id,
        as_of=as_of,
        rows=tally.rows,
        rejected=tally.rejected,
        duplicates=tally.duplicates,
        excluded=tally.excluded,
        identified=tally.identified,
        reported_again=summary.reported_again,
    )
    async with unit_of_work() as uow:
        found = await _close_found_meanwhile(
            uow, index_read_from - LATE_ENROLMENT_MARGIN, as_of, key, campaign_id
        )
        await uow.campaigns.finish(campaign_id, summary.as_dict())
        uow.add_event(
            final, subject=campaign_id, event_id=event_id(campaign_id, campaign_id, final.event_type)
        )
        await uow.commit()
    if found:
        log.info("campaign_youths_found_during_ingest", campaign_id=campaign_id, found=found)
    return summary


# The enrolments kept since this long before an ingest read the partners' index are checked
# again at its end: one kept by a transaction under way then was not in the index.
LATE_ENROLMENT_MARGIN = timedelta(minutes=5)


async def _close_found_meanwhile(
    uow: AbstractReperageUnitOfWork, since: datetime, as_of: date, key: bytes, campaign_id: str
) -> int:
    """Close, as the live path does, the handovers of youths a partner enrolled while the ingest
    ran: the index it excluded youths by (enrolled on `as_of`) was read at its start, and an
    enrolment kept meanwhile found no handover to close yet. Each closed handover gets its
    `found` event. Returns how many."""
    closed = 0
    for enrolment in await uow.enrolments.received_since(since):
        if not is_current(enrolment, as_of):
            continue
        found = await uow.handovers.close_found(
            youth_id=youth_id(enrolment.ine, key) if enrolment.ine is not None else None,
            identity_key=enrolment.identity_key,
            base=enrolment.base,
        )
        for youth in found:
            cause = enrolment.event_id or f"{campaign_id}|{enrolment.base}|{enrolment.date_debut}"
            uow.add_event(
                YouthFound(
                    youth_id=youth.youth_id,
                    psad_id=youth.psad_id,
                    base=enrolment.base,
                    partner_id=enrolment.partner_id,
                    enrolled_since=enrolment.date_debut,
                    cause_event_id=enrolment.event_id,
                ),
                subject=youth.youth_id,
                event_id=uuid.uuid5(FOUND_NAMESPACE, f"{cause}|{youth.youth_id}"),
            )
        closed += len(found)
    return closed


async def _hand_over(chunks: asyncio.Queue[Chunk | None], chunk: Chunk | None, writer: asyncio.Task) -> None:
    """Queue a chunk for the writer; if the writer failed, raise its error rather than wait."""
    put = asyncio.ensure_future(chunks.put(chunk))
    await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()
        writer.result()  # raises the writer's error
        raise RuntimeError("the chunk writer stopped early")


async def _write_chunks(
    chunks: asyncio.Queue[Chunk | None],
    unit_of_work: Callable[[], AbstractReperageUnitOfWork],
    campaign_id: str,
    as_of: date,
    tally: CampaignTally,
    progress: Callable[[int], None] | None,
) -> int:
    """Write chunks until None, each in its unit of work, WRITERS at once: chunk k starts once
    chunk k - WRITERS is committed (its rows are what chunk k asks the database about). Returns
    how many youths were reported again."""
    reported_again = 0
    writing: collections.deque[tuple[asyncio.Task[int], int]] = collections.deque()
    try:
        while (chunk := await chunks.get()) is not None:
            if len(writing) >= WRITERS:
                reported_again += await _written(writing, progress)
            task = asyncio.create_task(_write_one(unit_of_work(), chunk, campaign_id, as_of, tally))
            writing.append((task, chunk.read_up_to))
        while writing:
            reported_again += await _written(writing, progress)
    finally:
        for task, _ in writing:  # a chunk failed: the others roll back
            task.cancel()
        await asyncio.gather(*(task for task, _ in writing), return_exceptions=True)
    return reported_again


async def _write_one(
    uow: AbstractReperageUnitOfWork, chunk: Chunk, campaign_id: str, as_of: date, tally: CampaignTally
) -> int:
    async with uow:
        reported_again = await write_chunk(uow, chunk, campaign_id, as_of, tally)
        # last, so that concurrent writers hold the campaign's row only while committing
        await uow.campaigns.progressed(campaign_id)
        await uow.commit()
    return reported_again


async def _written(
    writing: collections.deque[tuple[asyncio.Task[int], int]], progress: Callable[[int], None] | None
) -> int:
    """Wait for the oldest chunk in writing; returns its reported_again."""
    task, read_up_to = writing[0]
    reported_again = await task
    writing.popleft()
    if progress:
        progress(read_up_to)
    return reported_again


def _summary_fields(stored: dict) -> dict:
    tally_keys = (
        "rows",
        "rejected",
        "rejected_by_reason",
        "duplicates",
        "excluded",
        "excluded_by_reason",
        "identified",
    )
    return {
        "campaign_id": stored["campaign_id"],
        "as_of": date.fromisoformat(stored["as_of"]),
        "tally": {k: stored[k] for k in tally_keys},
        "extra_columns": stored.get("extra_columns", []),
        "reported_again": stored.get("reported_again", 0),
        "events_published": stored.get("events_published", 0),
        "encoding": stored.get("encoding", ""),
        "delimiter": stored.get("delimiter", ""),
    }


def _capture(
    records: Iterator[SieiRow | Rejection], rejections: list[Rejection]
) -> Iterator[SieiRow | Rejection]:
    """Pass records to `classify` and keep the rejections aside for the rejection report."""
    for record in records:
        if isinstance(record, Rejection):
            rejections.append(record)
        yield record


async def write_chunk(
    uow: AbstractReperageUnitOfWork,
    chunk: Chunk,
    campaign_id: str,
    as_of: date,
    tally: CampaignTally,
) -> int:
    """Record one chunk in `uow` (the caller commits): vault rows, outcomes, handovers, events,
    rejections. Returns how many youths were reported again rather than identified.

    A youth the filter may have seen, whose INE already stands in the campaign under an earlier
    line (an earlier chunk), is a duplicate: `classify` only knew this chunk's INEs. Under its
    own line, it is this very row, written by an ingest that was killed: it is written again,
    to no effect.
    """
    maybe_seen = [yid for _, yid, _, maybe in chunk.youths if maybe]
    first = await uow.campaigns.first_lines(campaign_id, maybe_seen) if maybe_seen else {}
    youths: list[tuple[SieiRow, str, ExclusionReason | None]] = []
    for row, yid, reason, _ in chunk.youths:
        if first.get(yid, row.line) < row.line:
            tally.count_as_duplicate(reason)
        else:
            youths.append((row, yid, reason))
    already = await uow.handovers.open_elsewhere(
        [yid for _, yid, reason in youths if reason is None], campaign_id
    )
    vault: list[VaultIdentity] = []
    outcomes: list[Outcome] = []
    handovers: list[Handover] = []
    events: list[CloudEvent] = []
    for row, yid, reason in youths:
        if reason is not None:
            outcomes.append(Outcome(yid, row.line, "excluded", str(reason), None))
            continue
        # Only youths handed to a PSAD enter the vault: nobody outside ever learns the youth_id
        # of an excluded one, so their identity would be kept for nothing.
        vault.append(_vault_identity(row, yid))
        territory = route(row.code_postal)
        age = age_on(row.date_naissance, as_of)
        months = months_between(row.date_sortie, as_of)
        if yid in already:
            payload = YouthReportedAgain(
                youth_id=yid,
                campaign_id=campaign_id,
                psad_id=territory.psad_id,
                departement=territory.departement,
                zap=territory.zap,
                age=age,
                months_since_leaving=months,
                as_of=as_of,
            )
            outcome = "reported_again"
        else:
            payload = YouthIdentified(
                youth_id=yid,
                campaign_id=campaign_id,
                psad_id=territory.psad_id,
                departement=territory.departement,
                zap=territory.zap,
                age=age,
                last_diploma=Diploma.DNB.value if row.diplome == Diploma.DNB else Diploma.AUCUN.value,
                last_training=(row.formation_origine or None) and row.formation_origine[:120],
                uai_origine=row.uai_origine if _is_uai(row.uai_origine) else None,
                months_since_leaving=months,
                as_of=as_of,
            )
            handovers.append(Handover(yid, territory.psad_id))
            outcome = "identified"
        outcomes.append(Outcome(yid, row.line, outcome, None, territory.psad_id))
        events.append(
            uow.event(payload, subject=yid, event_id=event_id(campaign_id, yid, payload.event_type))
        )
    await uow.vault.keep(vault)
    await uow.campaigns.add_outcomes(campaign_id, outcomes)
    crash_point("ingest.mid_chunk")  # half the chunk written: the run again writes it whole
    await uow.handovers.hand_over(campaign_id, handovers)
    await uow.campaigns.add_rejections(campaign_id, chunk.rejections)
    uow.add_events(events)
    return len(already)


def _vault_identity(row: SieiRow, yid: str) -> VaultIdentity:
    return VaultIdentity(
        yid,
        row.ine,
        identity_key(row.nom, row.prenom, row.date_naissance),
        row.nom,
        row.prenom,
        row.date_naissance,
        row.sexe,
        row.code_postal,
        row.commune,
        row.adresse,
        row.telephone,
        row.courriel,
        row.uai_origine,
        row.formation_origine,
        row.date_sortie,
        row.diplome.value if row.diplome else None,
    )


def _is_uai(value: str | None) -> bool:
    """Seven digits and a capital letter, ASCII only, as the contract's pattern says (`isdigit`
    alone takes any Unicode digit, which the `identified` event would then refuse)."""
    return bool(value) and len(value) == 8 and value.isascii() and value[:7].isdigit() and value[7].isupper()
