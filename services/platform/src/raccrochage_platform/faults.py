"""Fault injection for the reliability tests: SIGKILL this process at a named point of the
delivery path. Off unless `RACCROCHAGE_CRASH_AT` names points; then `crash_point` costs a dict
lookup, and otherwise one test of an empty dict.

    RACCROCHAGE_CRASH_AT=consumer.after_commit:3            # killed at the 3rd hit
    RACCROCHAGE_CRASH_AT=relay.after_publish:1,ingest.mid_chunk:2

The points (`POINTS`), each where a crash is the hardest to recover from:
- `consumer.after_commit`: a consumer's batch committed (state, inbox rows, outbox), not acked;
- `relay.after_publish`: a relay's (or a writer's) events PubAcked, their rows not yet marked;
- `uow.mid_transaction`: a unit of work's changes and outbox rows written, not committed (only
  a transaction that writes events passes it);
- `ingest.mid_chunk`: repérage's ingest half-way through writing a chunk of a campaign file.

A service image never sets the variable: the reliability tests (`tests/reliability/`) do, on the
processes they kill and start again.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "RACCROCHAGE_CRASH_AT"
POINTS = frozenset(
    {"consumer.after_commit", "relay.after_publish", "uow.mid_transaction", "ingest.mid_chunk"}
)


def parse(spec: str) -> dict[str, int]:
    """`point:N[,point:N]` -> {point: N}; a bare point is its first hit. An unknown point or a
    hit below 1 is an error that says which."""
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, hit = item.partition(":")
        if point not in POINTS:
            raise ValueError(f"{VARIABLE}: unknown point {point!r}; known: {', '.join(sorted(POINTS))}")
        if hit and (not hit.isdigit() or int(hit) < 1):
            raise ValueError(f"{VARIABLE}: {item!r}: the hit must be a whole number from 1")
        armed[point] = int(hit or 1)
    return armed


_armed = parse(os.environ.get(VARIABLE, ""))
_hits: dict[str, int] = {}


def crash_point(point: str) -> None:
    """SIGKILL this process if `point` is armed and this is its armed hit; else nothing."""
    if not _armed or point not in _armed:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == _armed[point]:
        os.write(2, f"{VARIABLE}: {point} hit {_hits[point]}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
