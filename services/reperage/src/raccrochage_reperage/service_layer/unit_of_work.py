"""What the service layer needs from storage: repérage's repositories and its unit of work.

The service layer depends on these interfaces only. `adapters.unit_of_work.ReperageUnitOfWork`
implements them on PostgreSQL (SQLAlchemy Core on the unit of work's connection); the unit tests
implement them in memory (tests/unit/fakes.py).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from raccrochage_platform.uow import AbstractUnitOfWork


@dataclass(frozen=True)
class CampaignRecord:
    campaign_id: str
    as_of: date
    file_sha256: str
    status: str  # ingesting | done
    summary: dict | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progressed_at: datetime | None = None  # the last chunk committed

    def stalled(self, now: datetime, after_seconds: float) -> bool:
        """Still ingesting with no chunk committed for `after_seconds`: its ingest died."""
        return (
            self.status == "ingesting"
            and self.progressed_at is not None
            and (now - self.progressed_at).total_seconds() > after_seconds
        )


class Outcome(NamedTuple):
    """What a campaign made of one youth (`campaign_youth`)."""

    youth_id: str
    line: int
    outcome: str  # identified | reported_again | excluded
    reason: str | None
    psad_id: str | None


class RejectedLine(NamedTuple):
    line: int
    field: str
    reason: str


class Handover(NamedTuple):
    youth_id: str
    psad_id: str


class Found(NamedTuple):
    """A handed-over youth found enrolled at a partner: the handover is closed."""

    youth_id: str
    psad_id: str
    enrolled_since: date | None = None


class Enrolment(NamedTuple):
    """A youth enrolled at a partner base, from a file (`partner_id` None) or live."""

    base: str
    partner_id: str | None
    ine: str | None
    identity_key: str
    date_debut: date
    date_fin: date | None
    event_id: uuid.UUID | None = None


class VaultIdentity(NamedTuple):
    """A handed-over youth's clear identity and contact details, as the vault keeps them."""

    youth_id: str
    ine: str
    identity_key: str
    nom: str
    prenom: str
    date_naissance: date
    sexe: str | None
    code_postal: str
    commune: str | None
    adresse: str | None
    telephone: str | None
    courriel: str | None
    uai_origine: str | None
    formation_origine: str | None
    date_sortie: date
    diplome: str | None


class CampaignRepository(abc.ABC):
    """Campaigns, the outcome of each youth in each, and their rejected lines."""

    @abc.abstractmethod
    async def get(self, campaign_id: str) -> CampaignRecord | None: ...

    @abc.abstractmethod
    async def start(self, campaign_id: str, as_of: date, file_sha256: str) -> bool:
        """Record the campaign as ingesting; False when it exists already (a resumed ingest)."""

    @abc.abstractmethod
    async def restart(self, campaign_id: str, as_of: date, file_sha256: str) -> bool:
        """Give a campaign still ingesting that stored nothing (its file was refused, or its
        ingest died before its first chunk) this file and date; False when it stored something."""

    @abc.abstractmethod
    async def finish(self, campaign_id: str, summary: dict) -> None: ...

    @abc.abstractmethod
    async def progressed(self, campaign_id: str) -> None:
        """A chunk of the campaign is being committed (`progressed_at` = now)."""

    @abc.abstractmethod
    async def stalled(self, after_seconds: float) -> list[str]:
        """The campaigns still ingesting with no chunk committed for `after_seconds`."""

    @abc.abstractmethod
    async def first_lines(self, campaign_id: str, youth_ids: Sequence[str]) -> dict[str, int]:
        """youth_id -> line of the row that stands for this youth in the campaign already."""

    @abc.abstractmethod
    async def add_outcomes(self, campaign_id: str, outcomes: Sequence[Outcome]) -> None:
        """Outcomes not recorded yet (a youth already in the campaign keeps its first)."""

    @abc.abstractmethod
    async def add_rejections(self, campaign_id: str, rejections: Sequence[RejectedLine]) -> None: ...

    @abc.abstractmethod
    async def rejections(self, campaign_id: str, after_line: int, limit: int) -> list[RejectedLine]: ...


class HandoverRepository(abc.ABC):
    """The youths handed to a PSAD: open until found at a partner or closed by the PSAD."""

    @abc.abstractmethod
    async def open_elsewhere(self, youth_ids: Sequence[str], campaign_id: str) -> dict[str, str]:
        """youth_id -> psad_id of those handed over by another campaign, still open."""

    @abc.abstractmethod
    async def hand_over(self, campaign_id: str, handovers: Sequence[Handover]) -> None:
        """Open handovers from this campaign; a youth already handed over gets a new one only once the earlier is closed."""

    @abc.abstractmethod
    async def close_found(self, *, youth_id: str | None, identity_key: str, base: str) -> list[Found]:
        """Close the open handovers of the youth an enrolment names: by the youth_id of its INE,
        else by identity (several youths may share one)."""

    @abc.abstractmethod
    async def close_found_in_base(self, base: str, today: date) -> list[Found]:
        """Close every open handover whose youth a file of `base` enrols today."""

    @abc.abstractmethod
    async def close_by_psad(self, youth_id: str, psad_id: str, at: datetime, reason: str) -> bool:
        """End the open handover of the youth at that PSAD; False when there is none."""

    @abc.abstractmethod
    async def transfer(self, youth_id: str, to_psad_id: str) -> None: ...


class EnrolmentRepository(abc.ABC):
    """Partner bases' enrolments, as a campaign is matched against them."""

    @abc.abstractmethod
    async def add(self, enrolments: Sequence[Enrolment]) -> int:
        """Keep new enrolments (one already known is skipped); returns how many were new."""

    @abc.abstractmethod
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
        """Set the end date of the partner's matching enrolments; returns how many."""

    @abc.abstractmethod
    def every(self) -> AsyncIterator[tuple[str | None, str, date, date | None]]:
        """Every enrolment (ine, identity_key, date_debut, date_fin), streamed."""

    @abc.abstractmethod
    async def received_since(self, since: datetime) -> list[Enrolment]:
        """The enrolments received at `since` or later (by the transaction that kept them), in
        the order kept."""


@dataclass(frozen=True)
class IdentityRead:
    """One read of an identity, for the audit: which service asked for whom (the role, sub and
    territory of the person's token, when it acted for one), what, why, and for which youth."""

    caller: str
    youth_id: str
    what: str  # contact_card | export
    purpose: str
    granted: bool
    role: str | None = None
    sub: str | None = None
    territory: str | None = None


class VaultRepository(abc.ABC):
    """The identity vault, and the audit of who read from it."""

    @abc.abstractmethod
    async def keep(self, identities: Sequence[VaultIdentity]) -> None:
        """Store or refresh these identities."""

    @abc.abstractmethod
    async def get(self, youth_id: str) -> VaultIdentity | None: ...

    @abc.abstractmethod
    async def audit(self, read: IdentityRead) -> None:
        """Append the read to the identity audit (its hash chain: adapters/audit.py)."""

    @abc.abstractmethod
    async def erase(
        self, youth_id: str, identity: VaultIdentity | None
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Delete the youth's identity and everything repérage keeps under it (campaign
        outcomes, handover, partner enrolments of its INE or, without INE, of its identity, the
        published events that name it), and unlink the youth from the audit rows; returns
        (erased, anonymised) rows per kind."""

    @abc.abstractmethod
    def export(self, youth_id: str, identity: VaultIdentity | None) -> Awaitable[dict[str, list[dict]]]:
        """Everything repérage keeps about the youth, per kind of record, JSON-ready."""


@dataclass(frozen=True)
class ErasureAnswer:
    service: str
    answered_at: datetime | None
    erased: dict[str, int] | None = None
    anonymised: dict[str, int] | None = None


@dataclass(frozen=True)
class ErasureRecord:
    """An erasure request as the vault tracks it: no youth in it, only who asked and who answered."""

    request_id: uuid.UUID
    requested_by: str
    requested_at: datetime
    identity_found: bool
    erased: dict[str, int]
    completed_at: datetime | None
    answers: tuple[ErasureAnswer, ...]
    # When the youth's messages were deleted from the streams, and how many per stream.
    swept_at: datetime | None = None
    swept: dict[str, int] | None = None

    @property
    def silent(self) -> list[str]:
        """The services that have not answered yet."""
        return [answer.service for answer in self.answers if answer.answered_at is None]


class ErasureRepository(abc.ABC):
    """The DPO's erasure requests and the services' answers."""

    @abc.abstractmethod
    async def add(self, record: ErasureRecord, youth_id: str) -> None:
        """Record the request; its youth_id is kept apart, until the streams are swept of it."""

    @abc.abstractmethod
    async def get(self, request_id: uuid.UUID) -> ErasureRecord | None: ...

    @abc.abstractmethod
    async def answer(
        self, request_id: uuid.UUID, service: str, at: datetime, erased: dict, anonymised: dict
    ) -> bool:
        """Record a service's answer; False when the request does not expect it (unknown request
        or service, or answered already)."""

    @abc.abstractmethod
    async def complete(self, request_id: uuid.UUID, at: datetime) -> None:
        """Mark the request complete and forget its outbox event, which named the youth."""

    @abc.abstractmethod
    async def due_for_sweep(self) -> dict[uuid.UUID, str]:
        """The complete requests whose streams are not swept yet: request id -> youth_id. Waits
        for a transaction completing one to end, so that a sweep woken by it finds it."""

    @abc.abstractmethod
    async def swept(self, request_id: uuid.UUID, at: datetime, deleted: dict[str, int]) -> None:
        """The streams are swept of the request's youth (`deleted`: messages per stream): its
        youth_id goes."""


class AbstractReperageUnitOfWork(AbstractUnitOfWork):
    """A unit of work with repérage's repositories, open inside its `async with` block."""

    campaigns: CampaignRepository
    handovers: HandoverRepository
    enrolments: EnrolmentRepository
    vault: VaultRepository
    erasures: ErasureRepository
