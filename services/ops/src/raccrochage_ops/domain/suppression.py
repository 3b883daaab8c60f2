"""Small-cell suppression: no count of fewer than 5 youths is shown, nor derivable.

A count of 1 to 4 youths is shown as "< 5" (a 0 is shown: it names nobody). Where parts add up
to a total that is shown (closed by reason, in solution by kind, exits by destination), one
hidden part could be computed back as total minus the others: then the smallest other non-zero
part is hidden too (complement suppression), and if there is none the total is hidden as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

THRESHOLD = 5
HIDDEN = "< 5"

Cell = int | str  # a count, or HIDDEN


def small(count: int) -> bool:
    return 0 < count < THRESHOLD


def cell(count: int) -> Cell:
    """One count shown on its own."""
    return HIDDEN if small(count) else count


@dataclass(frozen=True)
class Breakdown:
    """A total and its parts, as shown."""

    total: Cell
    parts: dict[str, Cell]


def breakdown(total: int, parts: Mapping[str, int]) -> Breakdown:
    """Parts that add up to `total` exactly (give an "other" part for the rest), suppressed so
    that no hidden cell can be derived from the ones shown."""
    counts = dict(parts)
    if sum(counts.values()) != total:
        raise ValueError(f"parts add up to {sum(counts.values())}, not to the total {total}")
    hidden = {name for name, count in counts.items() if small(count)}
    total_hidden = small(total)
    if len(hidden) == 1 and not total_hidden:
        shown = {name: count for name, count in counts.items() if name not in hidden and count > 0}
        if shown:
            hidden.add(min(shown, key=lambda name: (shown[name], name)))
        else:  # the hidden part is the whole total
            total_hidden = True
    return Breakdown(
        total=HIDDEN if total_hidden else total,
        parts={name: (HIDDEN if name in hidden else count) for name, count in counts.items()},
    )


def table(rows: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Cell]]:
    """A table of counts with no totals shown (cells hidden one by one)."""
    return {key: {name: cell(count) for name, count in row.items()} for key, row in rows.items()}
