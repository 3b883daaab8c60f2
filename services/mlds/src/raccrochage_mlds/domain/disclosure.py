"""Statistical secrecy for published tables: no count of fewer than `threshold` youths can be read
or worked out from what is published.

A table's cells are tied by relations (a total is the sum of its parts). Withholding a small cell
is not enough when a total and the other parts are published: subtraction gives it back. So, after
withholding every small cell (primary suppression), cells are withheld one by one (secondary
suppression, the smallest first) until no small cell is determined by the published ones, which is
checked exactly: a withheld cell is determined iff its unit vector lies in the row space of the
relations restricted to the withheld cells (Gaussian elimination, exact).

Cells may be hidden (never published, e.g. "not under the obligation de formation", the
complement of a published share): a small hidden cell is protected like a published one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

Key = Hashable


@dataclass(frozen=True)
class Cell:
    value: int  # what the table shows (a count of enrolments)
    youths: int  # distinct youths behind it: what secrecy is about
    published: bool = True
    # Secondary suppression withholds the cheapest cell first (then the smallest): a share's
    # numerator costs less to lose than a count of the main tables.
    cost: int = 1


@dataclass(frozen=True)
class Relation:
    """`total` is the sum of `parts`."""

    total: Key
    parts: tuple[Key, ...]


def withheld_cells(
    cells: Mapping[Key, Cell], relations: Sequence[Relation], threshold: int
) -> frozenset[Key]:
    """The published cells to show as withheld (primary and secondary suppression)."""
    for relation in relations:
        for key in (relation.total, *relation.parts):
            if key not in cells:
                raise KeyError(f"relation names an unknown cell {key!r}")
    sensitive = {k for k, c in cells.items() if c.youths < threshold}
    withheld = {k for k, c in cells.items() if not c.published or c.youths < threshold}
    order = {key: i for i, key in enumerate(cells)}
    while True:
        # Cheap first: a relation with a single withheld member gives it away by subtraction.
        single = [members & withheld for members in (frozenset((r.total, *r.parts)) for r in relations)]
        exposed = [next(iter(m)) for m in single if len(m) == 1 and next(iter(m)) in sensitive]
        if not exposed:
            exposed = [k for k in determined(withheld, relations, order) if k in sensitive]
        if not exposed:
            break
        candidate = _next_to_withhold(exposed[0], cells, relations, withheld, order)
        if candidate is None:
            break  # everything that could hide it is withheld already
        withheld.add(candidate)
    return frozenset(k for k in withheld if cells[k].published)


def determined(withheld: set[Key], relations: Sequence[Relation], order: Mapping[Key, int]) -> list[Key]:
    """The withheld cells whose value the relations and the published cells give away."""
    unknowns = sorted(withheld, key=lambda k: order[k])
    column = {key: i for i, key in enumerate(unknowns)}
    rows = []
    for relation in relations:
        row = [0] * len(unknowns)
        for key, sign in ((relation.total, 1), *((part, -1) for part in relation.parts)):
            if key in column:
                row[column[key]] += sign
        if any(row):
            rows.append(row)
    reduced = _row_echelon(rows, len(unknowns))
    found = []
    for row in reduced:
        nonzero = [i for i, value in enumerate(row) if value]
        if len(nonzero) == 1:
            found.append(unknowns[nonzero[0]])
    return found


def _next_to_withhold(
    target: Key, cells: Mapping[Key, Cell], relations: Sequence[Relation], withheld: set[Key], order
) -> Key | None:
    """The cheapest, then smallest, published cell still shown in a relation of `target`, or
    failing that in any relation that has a withheld cell."""
    for pool in (
        [r for r in relations if target in (r.total, *r.parts)],
        [r for r in relations if withheld & {r.total, *r.parts}],
    ):
        candidates = {
            key
            for relation in pool
            for key in (relation.total, *relation.parts)
            if key not in withheld and cells[key].published
        }
        if candidates:
            return min(candidates, key=lambda k: (cells[k].cost, cells[k].value, order[k]))
    return None


def _row_echelon(rows: list[list[int]], width: int) -> list[list[int]]:
    """Reduced row echelon form, in integers (each row divided by its gcd): exact, and faster
    than fractions."""
    rows = [list(r) for r in rows]
    pivot_row = 0
    for col in range(width):
        pivot = next((r for r in range(pivot_row, len(rows)) if rows[r][col]), None)
        if pivot is None:
            continue
        rows[pivot_row], rows[pivot] = rows[pivot], rows[pivot_row]
        lead_row = rows[pivot_row]
        lead = lead_row[col]
        for r in range(len(rows)):
            value = rows[r][col]
            if r != pivot_row and value:
                rows[r] = _normalised([lead * a - value * b for a, b in zip(rows[r], lead_row, strict=True)])
        pivot_row += 1
        if pivot_row == len(rows):
            break
    return rows[:pivot_row]


def _normalised(row: list[int]) -> list[int]:
    divisor = math.gcd(*row)
    return [value // divisor for value in row] if divisor > 1 else row
