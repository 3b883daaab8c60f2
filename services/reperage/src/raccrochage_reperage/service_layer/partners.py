"""Partner enrolments, live (request/reply) or from files: a handed-over youth now enrolled is found."""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.events.reperage_v1 import YouthFound
from raccrochage_platform.topology import REPO_ROOT

from ..domain.identity import youth_id
from ..domain.partners import identity_key
from ..domain.rules import is_valid_ine, normalise_ine
from .unit_of_work import AbstractReperageUnitOfWork, Enrolment

FOUND_NAMESPACE = uuid.UUID("0c5f3d4a-8e21-4b7e-9a55-2b9d7e1f4c30")
PARTNER_INBOX = "reperage_partner_enrolments"  # the inbox of partners' requests


class UnknownPartner(LookupError):
    pass


@dataclass(frozen=True)
class Partner:
    partner_id: str
    base: str


@cache
def partners_registry(path: str | None = None) -> dict[str, Partner]:
    source = Path(path or os.environ.get("RACCROCHAGE_PARTNERS", REPO_ROOT / "deploy" / "partners.toml"))
    raw = tomllib.loads(source.read_text(encoding="utf-8"))
    return {pid: Partner(pid, body["base"]) for pid, body in raw.get("partners", {}).items()}


def partner(partner_id: str) -> Partner:
    try:
        return partners_registry()[partner_id]
    except KeyError:
        raise UnknownPartner(f"partner {partner_id!r} is not registered (deploy/partners.toml)") from None


def _clean_ine(raw: str | None) -> str | None:
    if not raw:
        return None
    ine = normalise_ine(raw)
    if not is_valid_ine(ine):
        raise ValueError("data.ine: not 11 letters or digits")
    return ine


class Duplicate(Exception):
    """The partner's event was already recorded (its inbox row exists)."""


def is_current(data: EnrolmentStarted | Enrolment, today: date) -> bool:
    return data.date_debut <= today and (data.date_fin is None or data.date_fin >= today)


async def enrolment_started(
    uow: AbstractReperageUnitOfWork,
    who: Partner,
    envelope: CloudEvent,
    data: EnrolmentStarted,
    today: date,
    *,
    key: bytes,
    inbox: str = PARTNER_INBOX,
) -> list[str]:
    """Record a live enrolment once (inbox `inbox`); if it is current, the open handovers of its
    youth are closed and each youth is found (`reperage.youth.found.v1`), in one transaction.
    `key`: the youth_id key, which finds a youth by INE. Returns the youth_ids found; raises
    Duplicate for an event already recorded, ValueError for an INE the contract's model accepts
    but the domain does not."""
    ine = _clean_ine(data.ine)
    identity = identity_key(data.nom, data.prenom, data.date_naissance)
    async with uow:
        if not await uow.claim(inbox, [(envelope.id, envelope.type)]):
            raise Duplicate
        await uow.enrolments.add(
            [Enrolment(who.base, who.partner_id, ine, identity, data.date_debut, data.date_fin, envelope.id)]
        )
        found = (
            await uow.handovers.close_found(
                youth_id=youth_id(ine, key) if ine is not None else None, identity_key=identity, base=who.base
            )
            if is_current(data, today)
            else []
        )
        for youth in found:
            uow.add_event(
                YouthFound(
                    youth_id=youth.youth_id,
                    psad_id=youth.psad_id,
                    base=who.base,
                    partner_id=who.partner_id,
                    enrolled_since=data.date_debut,
                    cause_event_id=envelope.id,
                ),
                subject=youth.youth_id,
                cause=envelope,
                event_id=uuid.uuid5(FOUND_NAMESPACE, f"{envelope.id}|{youth.youth_id}"),
            )
        await uow.commit()
    return [youth.youth_id for youth in found]


async def enrolment_ended(
    uow: AbstractReperageUnitOfWork,
    who: Partner,
    envelope: CloudEvent,
    data: EnrolmentEnded,
    *,
    inbox: str = PARTNER_INBOX,
) -> int:
    """Set the end date of the partner's matching enrolments, once (inbox `inbox`). Returns how
    many were updated; raises Duplicate for an event already recorded."""
    ine = _clean_ine(data.ine)
    identity = identity_key(data.nom, data.prenom, data.date_naissance)
    async with uow:
        if not await uow.claim(inbox, [(envelope.id, envelope.type)]):
            raise Duplicate
        ended = await uow.enrolments.end(
            base=who.base,
            partner_id=who.partner_id,
            ine=ine,
            identity_key=identity,
            date_debut=data.date_debut,
            date_fin=data.date_fin,
        )
        await uow.commit()
    return ended
