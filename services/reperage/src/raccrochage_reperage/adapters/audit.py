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
from collections.abc import Iterable, Mapping
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
    last = await head(connection)
    seq, prev_hash = (1, GENESIS) if last is None else (last[0] + 1, last[1])
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


async def head(connection: AsyncConnection) -> tuple[int, str] | None:
    """The chain's last row, (seq, hash), or None while it is empty."""
    last = (
        await connection.execute(
            select(identity_audit.c.seq, identity_audit.c.hash).order_by(identity_audit.c.seq.desc()).limit(1)
        )
    ).first()
    return None if last is None else (last.seq, last.hash)


@dataclass(frozen=True)
class Anchor:
    """A head of the chain as the vault anchored it, out of its database."""

    seq: int
    hash: str
    at: datetime

    def when(self) -> str:
        return self.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class ChainReport:
    rows: int  # rows walked (all of them when the chain is whole)
    seq: int | None = None  # the first row found wrong; None: the chain is whole
    problem: str = ""
    anchors: int = 0  # anchored heads checked

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


def check_anchored(row: Mapping[str, Any], anchors: Iterable[Anchor]) -> str:
    """What is wrong with `row` against the heads anchored at its seq, or ''."""
    for anchor in anchors:
        if row["hash"] != anchor.hash:
            return (
                f"row {row['seq']} is not the row anchored at {anchor.when()}: its hash {row['hash'][:12]}… "
                f"is not {anchor.hash[:12]}… (rows from {row['seq']} on were deleted and written again)"
            )
    return ""


def check_tail(last: int, anchors: Iterable[Anchor]) -> str:
    """What is missing after the chain's last row `last` (0: empty), given the anchored heads."""
    beyond = [anchor for anchor in anchors if anchor.seq > last]
    if not beyond:
        return ""
    latest = max(beyond, key=lambda anchor: anchor.seq)
    missing = f"row {last + 1} is" if latest.seq == last + 1 else f"rows {last + 1} to {latest.seq} are"
    return (
        f"the chain ends at row {last} but row {latest.seq} was anchored at {latest.when()}: {missing} "
        "missing (the chain's last rows were deleted)"
    )


async def verify(connection: AsyncConnection, anchors: Iterable[Anchor] = ()) -> ChainReport:
    """Walk the chain in seq order; the first row found wrong, if any: a gap, an edit, a row
    moved, a row that is not the one anchored at its seq, or anchored rows missing at the end."""
    anchored: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        anchored.setdefault(anchor.seq, []).append(anchor)
    result = await connection.stream(select(identity_audit).order_by(identity_audit.c.seq))
    previous, count = None, 0
    async for partition in result.mappings().partitions(1000):
        for row in partition:
            problem = check(previous, row) or check_anchored(row, anchored.get(row["seq"], ()))
            if problem:
                return ChainReport(count, row["seq"], problem)
            previous, count = row, count + 1
    last = 0 if previous is None else previous["seq"]
    problem = check_tail(last, (a for heads in anchored.values() for a in heads))
    if problem:
        return ChainReport(count, last + 1, problem)
    return ChainReport(count, anchors=sum(map(len, anchored.values())))
