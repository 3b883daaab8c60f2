"""A fake unit of work and in-memory repositories for repérage's service-layer tests (no database).

The repositories share one `FakeDatabase`; the unit of work snapshots it when it begins and
puts it back when it rolls back: what a unit of work left without committing is gone, as in
PostgreSQL. Each repository does what its SQL twin in `adapters/repositories.py` does.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from raccrochage_platform.fakes import FakeUnitOfWork
from raccrochage_reperage.service_layer.unit_of_work import (
    AbstractReperageUnitOfWork,
    CampaignRecord,
    CampaignRepository,
    Enrolment,
    EnrolmentRepository,
    ErasureRecord,
    ErasureRepository,
    Found,
    Handover,
    HandoverRepository,
    IdentityRead,
    Outcome,
    RejectedLine,
    VaultIdentity,
    VaultRepository,
)


@dataclass
class StoredHandover:
    psad_id: str
    campaign_id: str
    open: bool = True
    found_base: str | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None


@dataclass
class FakeDatabase:
    campaigns: dict[str, CampaignRecord] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    rejections: dict[tuple[str, int], RejectedLine] = field(default_factory=dict)
    handovers: dict[str, StoredHandover] = field(default_factory=dict)
    enrolments: list[Enrolment] = field(default_factory=list)
    # When each enrolment was kept, by its unique key (base, identity_key, date_debut).
    enrolments_received_at: dict[tuple, datetime] = field(default_factory=dict)
    vault: dict[str, VaultIdentity] = field(default_factory=dict)
    audit: list[tuple[str, str, str, bool]] = field(default_factory=list)
    erasures: dict[uuid.UUID, ErasureRecord] = field(default_factory=dict)
    to_sweep: dict[uuid.UUID, str] = field(default_factory=dict)  # request id -> youth_id

    def restore(self, snapshot: FakeDatabase) -> None:
        self.__dict__.update(copy.deepcopy(snapshot.__dict__))


class FakeCampaignRepository(CampaignRepository):
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def get(self, campaign_id: str) -> CampaignRecord | None:
        return self.db.campaigns.get(campaign_id)

    async def start(self, campaign_id: str, as_of: date, file_sha256: str) -> bool:
        if campaign_id in self.db.campaigns:
            return False
        self.db.campaigns[campaign_id] = CampaignRecord(campaign_id, as_of, file_sha256, "ingesting", None)
        return True

    async def restart(self, campaign_id: str, as_of: date, file_sha256: str) -> bool:
        record = self.db.campaigns.get(campaign_id)
        stored = any(c == campaign_id for c, _ in self.db.outcomes) or any(
            c == campaign_id for c, _ in self.db.rejections
        )
        if record is None or record.status != "ingesting" or stored:
            return False
        self.db.campaigns[campaign_id] = CampaignRecord(campaign_id, as_of, file_sha256, "ingesting", None)
        return True

    async def finish(self, campaign_id: str, summary: dict) -> None:
        record = self.db.campaigns[campaign_id]
        self.db.campaigns[campaign_id] = CampaignRecord(
            campaign_id, record.as_of, record.file_sha256, "done", copy.deepcopy(summary)
        )

    async def progressed(self, campaign_id: str) -> None:
        self.db.campaigns[campaign_id] = dataclasses.replace(
            self.db.campaigns[campaign_id], progressed_at=datetime.now(UTC)
        )

    async def stalled(self, after_seconds: float) -> list[str]:
        now = datetime.now(UTC)
        return sorted(c for c, record in self.db.campaigns.items() if record.stalled(now, after_seconds))

    async def first_lines(self, campaign_id: str, youth_ids: Sequence[str]) -> dict[str, int]:
        outcomes = self.db.outcomes
        return {
            youth_id: outcomes[campaign_id, youth_id].line
            for youth_id in youth_ids
            if (campaign_id, youth_id) in outcomes
        }

    async def add_outcomes(self, campaign_id: str, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            self.db.outcomes.setdefault((campaign_id, outcome.youth_id), outcome)

    async def add_rejections(self, campaign_id: str, rejections: Sequence[RejectedLine]) -> None:
        for rejected in rejections:
            self.db.rejections.setdefault((campaign_id, rejected.line), rejected)

    async def rejections(self, campaign_id: str, after_line: int, limit: int) -> list[RejectedLine]:
        lines = sorted(
            r for (c, line), r in self.db.rejections.items() if c == campaign_id and line > after_line
        )
        return lines[:limit]


class FakeHandoverRepository(HandoverRepository):
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def open_elsewhere(self, youth_ids: Sequence[str], campaign_id: str) -> dict[str, str]:
        handovers = self.db.handovers
        return {
            youth_id: handovers[youth_id].psad_id
            for youth_id in youth_ids
            if youth_id in handovers
            and handovers[youth_id].open
            and handovers[youth_id].campaign_id != campaign_id
        }

    async def hand_over(self, campaign_id: str, handovers: Sequence[Handover]) -> None:
        for handover in handovers:
            stored = self.db.handovers.get(handover.youth_id)
            if stored is None or not stored.open:
                self.db.handovers[handover.youth_id] = StoredHandover(handover.psad_id, campaign_id)

    def _close(self, youth_ids: set[str], base: str) -> list[Found]:
        found = []
        for youth_id in sorted(youth_ids):
            stored = self.db.handovers.get(youth_id)
            if stored is not None and stored.open:
                stored.open, stored.found_base = False, base
                found.append(Found(youth_id, stored.psad_id))
        return found

    async def close_found(self, *, youth_id: str | None, identity_key: str, base: str) -> list[Found]:
        if youth_id is not None:
            return self._close({youth_id}, base)
        return self._close(
            {youth.youth_id for youth in self.db.vault.values() if youth.identity_key == identity_key}, base
        )

    async def close_found_in_base(self, base: str, today: date) -> list[Found]:
        since: dict[str, date] = {}
        for enrolment in self.db.enrolments:
            if enrolment.base != base or enrolment.partner_id is not None:
                continue
            if enrolment.date_debut > today or (
                enrolment.date_fin is not None and enrolment.date_fin < today
            ):
                continue
            for youth in self.db.vault.values():
                if (enrolment.ine is not None and enrolment.ine == youth.ine) or (
                    enrolment.ine is None and enrolment.identity_key == youth.identity_key
                ):
                    since[youth.youth_id] = min(
                        since.get(youth.youth_id, enrolment.date_debut), enrolment.date_debut
                    )
        return [
            found._replace(enrolled_since=since[found.youth_id]) for found in self._close(set(since), base)
        ]

    async def close_by_psad(self, youth_id: str, psad_id: str, at: datetime, reason: str) -> bool:
        stored = self.db.handovers.get(youth_id)
        if stored is None or not stored.open or stored.psad_id != psad_id:
            return False
        stored.open, stored.closed_at, stored.close_reason = False, at, reason
        return True

    async def transfer(self, youth_id: str, to_psad_id: str) -> None:
        stored = self.db.handovers.get(youth_id)
        if stored is not None and stored.open:
            stored.psad_id = to_psad_id


class FakeEnrolmentRepository(EnrolmentRepository):
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def add(self, enrolments: Sequence[Enrolment]) -> int:
        added = 0
        for enrolment in enrolments:
            if any(
                (enrolment.event_id is not None and known.event_id == enrolment.event_id)
                or (known.base, known.identity_key, known.date_debut)
                == (enrolment.base, enrolment.identity_key, enrolment.date_debut)
                for known in self.db.enrolments
            ):
                continue
            self.db.enrolments.append(enrolment)
            key = (enrolment.base, enrolment.identity_key, enrolment.date_debut)
            self.db.enrolments_received_at[key] = datetime.now(UTC)
            added += 1
        return added

    async def end(
        self,
        *,
        base: str,
        partner_id: str,
        ine: str | None,
        identity_key: str,
        date_debut: date | None,
        date_fin: date,
    ) -> int:
        ended = 0
        for index, known in enumerate(self.db.enrolments):
            matches = known.ine == ine if ine is not None else known.identity_key == identity_key
            if (
                known.base == base
                and known.partner_id == partner_id
                and matches
                and (date_debut is None or known.date_debut == date_debut)
            ):
                self.db.enrolments[index] = known._replace(date_fin=date_fin)
                ended += 1
        return ended

    async def every(self) -> AsyncIterator[tuple[str | None, str, date, date | None]]:
        for enrolment in list(self.db.enrolments):
            yield enrolment.ine, enrolment.identity_key, enrolment.date_debut, enrolment.date_fin

    async def received_since(self, since: datetime) -> list[Enrolment]:
        received = self.db.enrolments_received_at
        return [e for e in self.db.enrolments if received[(e.base, e.identity_key, e.date_debut)] >= since]


class FakeVaultRepository(VaultRepository):
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def keep(self, identities: Sequence[VaultIdentity]) -> None:
        for identity in identities:
            self.db.vault[identity.youth_id] = identity

    async def get(self, youth_id: str) -> VaultIdentity | None:
        return self.db.vault.get(youth_id)

    async def audit(self, read: IdentityRead) -> None:
        self.db.audit.append((read.caller, read.youth_id, read.purpose, read.granted))

    async def erase(
        self, youth_id: str, identity: VaultIdentity | None
    ) -> tuple[dict[str, int], dict[str, int]]:
        db = self.db
        erased = {
            "youth": int(db.vault.pop(youth_id, None) is not None),
            "campaign_youth": len([key for key in db.outcomes if key[1] == youth_id]),
            "handover": int(db.handovers.pop(youth_id, None) is not None),
        }
        db.outcomes = {key: outcome for key, outcome in db.outcomes.items() if key[1] != youth_id}
        if identity is not None:
            kept = [
                e
                for e in db.enrolments
                if e.ine != identity.ine and (e.ine or e.identity_key != identity.identity_key)
            ]
            erased["partner_enrolment"] = len(db.enrolments) - len(kept)
            db.enrolments = kept
        audited = sum(entry[1] == youth_id for entry in db.audit)
        db.audit = [(c, "erased" if y == youth_id else y, p, g) for c, y, p, g in db.audit]
        return erased, {"identity_audit": audited}

    async def export(self, youth_id: str, identity: VaultIdentity | None) -> dict[str, list[dict]]:
        return {"youth": [identity._asdict()] if identity else []}


class FakeErasureRepository(ErasureRepository):
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def add(self, record: ErasureRecord, youth_id: str) -> None:
        self.db.erasures[record.request_id] = record
        self.db.to_sweep[record.request_id] = youth_id

    async def get(self, request_id: uuid.UUID) -> ErasureRecord | None:
        return self.db.erasures.get(request_id)

    async def answer(
        self, request_id: uuid.UUID, service: str, at: datetime, erased: dict, anonymised: dict
    ) -> bool:
        record = self.db.erasures.get(request_id)
        owed = [a for a in record.answers if a.service == service and a.answered_at is None] if record else []
        if not owed:
            return False
        answers = tuple(
            dataclasses.replace(a, answered_at=at, erased=erased, anonymised=anonymised) if a in owed else a
            for a in record.answers
        )
        self.db.erasures[request_id] = dataclasses.replace(record, answers=answers)
        return True

    async def complete(self, request_id: uuid.UUID, at: datetime) -> None:
        self.db.erasures[request_id] = dataclasses.replace(self.db.erasures[request_id], completed_at=at)

    async def due_for_sweep(self) -> dict[uuid.UUID, str]:
        return {
            request_id: youth_id
            for request_id, youth_id in self.db.to_sweep.items()
            if self.db.erasures[request_id].completed_at is not None
        }

    async def swept(self, request_id: uuid.UUID, at: datetime, deleted: dict[str, int]) -> None:
        self.db.erasures[request_id] = dataclasses.replace(
            self.db.erasures[request_id], swept_at=at, swept=deleted
        )
        del self.db.to_sweep[request_id]


class FakeReperageUnitOfWork(FakeUnitOfWork, AbstractReperageUnitOfWork):
    """One fake unit of work, entered again and again (a factory that always gives it:
    `lambda: uow`); `db` is what its commits left."""

    def __init__(self, db: FakeDatabase | None = None) -> None:
        super().__init__(source="raccrochage/reperage")
        self.db = db or FakeDatabase()
        self.campaigns = FakeCampaignRepository(self.db)
        self.handovers = FakeHandoverRepository(self.db)
        self.enrolments = FakeEnrolmentRepository(self.db)
        self.vault = FakeVaultRepository(self.db)
        self.erasures = FakeErasureRepository(self.db)
        self._snapshot: FakeDatabase | None = None

    async def _begin(self) -> None:
        await super()._begin()
        self._snapshot = copy.deepcopy(self.db)

    async def _commit(self, events) -> None:
        await super()._commit(events)
        self._snapshot = None

    async def _rollback(self) -> None:
        await super()._rollback()
        if self._snapshot is not None:
            self.db.restore(self._snapshot)
            self._snapshot = None
