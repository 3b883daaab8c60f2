"""The identity audit's hash chain: append a row under a lock, walk the chain to verify it.

Each row of `identity_audit` carries `prev_hash`, the previous row's `hash`, and `hash`, the
sha256 of the row's canonical content (`canonical`) with `prev_hash`. Rows are appended under a
transaction-scoped advisory lock, so concurrent reads take turns and the chain does not fork
(`prev_hash` is also unique). The youth a row read is in `identity_audit_youth`, outside the
hashed content: an erasure deletes that link and the chain still verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..service_layer.unit_of_work import IdentityRead
from .tables import identity_audit, identity_audit_youth

GENESIS = "0" * 64
# pg_advisory_xact_lock's key for the audit chain (any constant no other lock of this database uses).
CHAIN_LOCK = 0x1D_A0D1
HASHED = ("seq", "at", "caller", "role", "sub", "territory", "what", "purpose", "granted", "prev_hash")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash is computed over: its hashed columns as sorted, compact JSON, the
    timestamp in UTC ISO 8601 with microseconds."""
    content = {name: row[name] for name in HASHED}
    content["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


async def append(connection: AsyncConnection, read: IdentityRead) -> int:
    """Append one audit row after the last, and its youth link; returns its seq. The lock is
    held until the caller's transaction ends."""
    await connection.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK)))
    last = (
        await connection.execute(
            select(identity_audit.c.seq, identity_audit.c.hash).order_by(identity_audit.c.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
    row = {
        "seq": seq,
        "at": datetime.now(UTC),
        "caller": read.caller,
        "role": read.role,
        "sub": read.sub,
        "territory": read.territory,
        "what": read.what,
        "purpose": read.purpose,
        "granted": read.granted,
        "prev_hash": prev_hash,
    }
    await connection.execute(insert(identity_audit).values(**row, hash=row_hash(row)))
    await connection.execute(insert(identity_audit_youth).values(seq=seq, youth_id=read.youth_id))
    return seq


@dataclass(frozen=True)
class ChainReport:
    rows: int  # rows walked (all of them when the chain is whole)
    seq: int | None = None  # the first row found wrong; None: the chain is whole
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.seq is None


def check(previous: Mapping[str, Any] | None, row: Mapping[str, Any]) -> str:
    """What is wrong with `row` following `previous` (None: it is the first), or ''."""
    seq, prev_seq = row["seq"], 0 if previous is None else previous["seq"]
    if seq != prev_seq + 1:
        missing = f"row {prev_seq + 1} is" if seq == prev_seq + 2 else f"rows {prev_seq + 1} to {seq - 1} are"
        return f"row {seq} follows row {prev_seq}: {missing} missing"
    expected = GENESIS if previous is None else previous["hash"]
    if row["prev_hash"] != expected:
        return (
            f"row {seq} does not follow row {prev_seq}: its previous hash {row['prev_hash'][:12]}… is not "
            f"{expected[:12]}… (a row was deleted, inserted or moved)"
        )
    if row["hash"] != row_hash(row):
        return f"row {seq} was edited: its content does not match its hash"
    return ""


async def verify(connection: AsyncConnection) -> ChainReport:
    """Walk the chain in seq order; the first row found wrong, if any."""
    result = await connection.stream(select(identity_audit).order_by(identity_audit.c.seq))
    previous, count = None, 0
    async for partition in result.mappings().partitions(1000):
        for row in partition:
            problem = check(previous, row)
            if problem:
                return ChainReport(count, row["seq"], problem)
            previous, count = row, count + 1
    return ChainReport(count)
