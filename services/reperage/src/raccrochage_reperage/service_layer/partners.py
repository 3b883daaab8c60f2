"""Partner enrolments, live (request/reply) or from files: a handed-over youth now enrolled is found."""

from __future__ import annotations

import os
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import asyncpg
from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.partner_v1 import EnrolmentEnded, EnrolmentStarted
from raccrochage_contracts.events.reperage_v1 import YouthFound
from raccrochage_platform.inbox import claim_raw
from raccrochage_platform.outbox import Leases, OutboxWriter, lease_unless_pending
from raccrochage_platform.topology import REPO_ROOT

from ..domain.partners import identity_key
from ..domain.rules import is_valid_ine, normalise_ine

FOUND_NAMESPACE = uuid.UUID("0c5f3d4a-8e21-4b7e-9a55-2b9d7e1f4c30")


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


# A handed-over youth, case open, matching an enrolment: by INE, or by identity when the partner
# gave no INE. The UPDATE closes the handover and locks it (a concurrent enrolment of the same
# youth then finds it closed); its `found` event is written in the same transaction. Plain
# asyncpg statements, one per case rather than one with an OR: asyncpg prepares them once per
# connection, and a generic plan of the OR would not use the right index.
_CLOSE_OPEN_HANDOVER_BY_INE = """
    UPDATE handover h SET open = false, found_at = now(), found_base = $2
    FROM youth y WHERE y.youth_id = h.youth_id AND h.open AND y.ine = $1
    RETURNING h.youth_id, h.psad_id
"""
_CLOSE_OPEN_HANDOVER_BY_IDENTITY = """
    UPDATE handover h SET open = false, found_at = now(), found_base = $2
    FROM youth y WHERE y.youth_id = h.youth_id AND h.open AND y.identity_key = $1
    RETURNING h.youth_id, h.psad_id
"""
_RECORD_ENROLMENT = """
    INSERT INTO partner_enrolment (base, partner_id, ine, identity_key, date_debut, date_fin, event_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
"""
_END_ENROLMENT = """
    UPDATE partner_enrolment SET date_fin = $1 WHERE base = $2 AND partner_id = $3
    AND {match} AND ($5::date IS NULL OR date_debut = $5)
"""
_END_ENROLMENT_BY_INE = _END_ENROLMENT.format(match="ine = $4")
_END_ENROLMENT_BY_IDENTITY = _END_ENROLMENT.format(match="identity_key = $4")


# The live path (a partner's request, one youth): the inbox claim, the enrolment and, when the
# youth was handed over, the handover's close and its `found` event, as ONE statement, atomic on
# its own: two round trips a request (the lookup below and this) instead of six with
# BEGIN/COMMIT, on a path that is CPU-bound on round trips. Two statements, so that an enrolment
# of nobody handed over inserts nothing into the outbox (the outbox trigger would wake the relay).
_OPEN_HANDOVERS_BY_INE = """
    SELECT h.youth_id, h.psad_id FROM handover h JOIN youth y ON y.youth_id = h.youth_id
    WHERE h.open AND y.ine = $1
"""
_OPEN_HANDOVERS_BY_IDENTITY = """
    SELECT h.youth_id, h.psad_id FROM handover h JOIN youth y ON y.youth_id = h.youth_id
    WHERE h.open AND y.identity_key = $1
"""
_CLAIM_AND_RECORD = """
    WITH claimed AS (
        INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3)
        ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id
    ), recorded AS (
        INSERT INTO partner_enrolment (base, partner_id, ine, identity_key, date_debut, date_fin, event_id)
        SELECT $4, $5, $6, $7, $8, $9, event_id FROM claimed ON CONFLICT DO NOTHING
    )
"""
_RECORD = _CLAIM_AND_RECORD + "SELECT count(*) FROM claimed"
# The envelope was built from the lookup. If the handover moved to another PSAD in between, its
# envelope would name the wrong one: the CASE gives NULL, the outbox's NOT NULL refuses it, and
# the whole statement (inbox claim included) is undone; the caller then takes the locking path.
# With a lease ($17 seconds), the `found` row is inserted leased, for the caller to publish as
# soon as the statement returns (`Leases`), unless an older row of the youth is still pending:
# that one must go first, so the relay takes both in order.
_RECORD_AND_CLOSE = (
    _CLAIM_AND_RECORD
    + f"""
    , closed AS (
        UPDATE handover h SET open = false, found_at = now(), found_base = $4
        FROM claimed WHERE h.youth_id = $10 AND h.open
        RETURNING h.psad_id
    ), announced AS (
        INSERT INTO outbox (event_id, event_type, nats_subject, stream, aggregate_key, envelope, leased_until)
        SELECT $11, $12, $13, $14, $10, CASE WHEN closed.psad_id = $15 THEN $16::bytea END,
               {lease_unless_pending("$10", "$17::float8")}
        FROM closed
        RETURNING id, leased_until IS NOT NULL AS leased
    )
    SELECT (SELECT count(*) FROM claimed), (SELECT count(*) FROM closed),
           (SELECT id FROM announced WHERE leased)
"""
)


async def warm_up(conn: asyncpg.Connection) -> None:
    """A new connection of the live path: its backend reads the catalog of every table the path
    touches, and the lookups are prepared (and cached), before the first request waits for it."""
    await conn.execute("SELECT FROM inbox, partner_enrolment, handover, youth, outbox LIMIT 0")
    await conn.fetch(_OPEN_HANDOVERS_BY_INE, "")
    await conn.fetch(_OPEN_HANDOVERS_BY_IDENTITY, "")


class Duplicate(Exception):
    """The partner's event was already recorded (its inbox row exists)."""


def _found_event(
    outbox: OutboxWriter,
    who: Partner,
    envelope: CloudEvent,
    data: EnrolmentStarted,
    youth_id: str,
    psad_id: str,
) -> CloudEvent:
    return outbox.envelope(
        YouthFound(
            youth_id=youth_id,
            psad_id=psad_id,
            base=who.base,
            partner_id=who.partner_id,
            enrolled_since=data.date_debut,
            cause_event_id=envelope.id,
        ),
        subject=youth_id,
        cause=envelope,
        event_id=uuid.uuid5(FOUND_NAMESPACE, f"{envelope.id}|{youth_id}"),
    )


async def enrolment_started(
    conn: asyncpg.Connection,
    outbox: OutboxWriter,
    inbox: str,
    who: Partner,
    envelope: CloudEvent,
    data: EnrolmentStarted,
    today: date,
    leases: Leases | None = None,
) -> list[str]:
    """Record a live enrolment once (inbox `inbox`); if it is current and its youth was handed
    over, the youth is found. Not in a transaction: each statement is one. Returns the youth_ids
    found; raises Duplicate for an event already recorded. With `leases`, the found event of the
    one-statement path is written leased to the caller and added there, to publish at once."""
    ine = _clean_ine(data.ine)
    identity = identity_key(data.nom, data.prenom, data.date_naissance)
    enrolment = (
        inbox,
        envelope.id,
        envelope.type,
        who.base,
        who.partner_id,
        ine,
        identity,
        data.date_debut,
        data.date_fin,
    )
    current = data.date_debut <= today and (data.date_fin is None or data.date_fin >= today)
    handed = []
    if current:
        handed = await conn.fetch(
            _OPEN_HANDOVERS_BY_INE if ine is not None else _OPEN_HANDOVERS_BY_IDENTITY,
            ine if ine is not None else identity,
        )
    if not handed:
        if not await conn.fetchval(_RECORD, *enrolment):
            raise Duplicate
        return []
    if len(handed) == 1:
        ((youth_id, psad_id),) = handed
        row = outbox.row(_found_event(outbox, who, envelope, data, youth_id, psad_id))
        try:
            claimed, closed, leased_id = await conn.fetchrow(
                _RECORD_AND_CLOSE,
                *enrolment,
                youth_id,
                row["event_id"],
                row["event_type"],
                row["nats_subject"],
                row["stream"],
                psad_id,
                row["envelope"],
                leases.seconds if leases else None,
            )
        except asyncpg.NotNullViolationError:  # moved to another PSAD since the lookup
            pass
        else:
            if not claimed:
                raise Duplicate
            if not closed:  # closed by a concurrent enrolment of the same youth
                return []
            if leased_id is not None:
                leases.add(leased_id, row)
            return [youth_id]
    async with conn.transaction():  # several youths share the identity, or the handover moved
        if not await claim_raw(conn, inbox, envelope.id, envelope.type):
            raise Duplicate
        return await _record_enrolment_started(conn, outbox, who, envelope, data, ine, identity)


async def _record_enrolment_started(
    conn: asyncpg.Connection,
    outbox: OutboxWriter,
    who: Partner,
    envelope: CloudEvent,
    data: EnrolmentStarted,
    ine: str | None,
    identity: str,
) -> list[str]:
    """The locking path, in the caller's transaction: the UPDATE closes every matching open
    handover and locks it, and each one's `found` event is written beside it."""
    await conn.execute(
        _RECORD_ENROLMENT,
        who.base,
        who.partner_id,
        ine,
        identity,
        data.date_debut,
        data.date_fin,
        envelope.id,
    )
    if ine is not None:
        found = await conn.fetch(_CLOSE_OPEN_HANDOVER_BY_INE, ine, who.base)
    else:
        found = await conn.fetch(_CLOSE_OPEN_HANDOVER_BY_IDENTITY, identity, who.base)
    for youth_id, psad_id in found:
        await outbox.add_event_raw(conn, _found_event(outbox, who, envelope, data, youth_id, psad_id))
    return [youth_id for youth_id, _ in found]


async def record_enrolment_ended(
    conn: asyncpg.Connection, who: Partner, envelope: CloudEvent, data: EnrolmentEnded
) -> int:
    """Set the end date of the partner's matching enrolments. Returns how many were updated."""
    ine = _clean_ine(data.ine)
    statement, match = (
        (_END_ENROLMENT_BY_INE, ine)
        if ine is not None
        else (_END_ENROLMENT_BY_IDENTITY, identity_key(data.nom, data.prenom, data.date_naissance))
    )
    status = await conn.execute(statement, data.date_fin, who.base, who.partner_id, match, data.date_debut)
    return int(status.rsplit(" ", 1)[-1])  # "UPDATE n"
