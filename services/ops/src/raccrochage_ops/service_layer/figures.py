"""The dashboard's figures: counted by the read models, scoped to the caller, suppressed.

Every count of youths goes through domain/suppression.py before it leaves this module: a cell
of 1 to 4 youths is "< 5", and parts of a shown total are suppressed so that none can be derived.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..adapters.repository import Filters
from ..domain.suppression import Breakdown, breakdown, cell
from .unit_of_work import OpsUnitOfWork

FUNNEL_STEPS = (
    ("handed_over", "handed over by repérage"),
    ("identified", "identified (first hand-over)"),
    ("case_opened", "case opened by a PSAD"),
    ("contacted", "contacted"),
    ("interviewed", "interviewed"),
    ("in_solution", "in solution"),
    ("closed", "closed"),
    ("open_30", "still open after 30 days"),
    ("open_60", "still open after 60 days"),
    ("open_90", "still open after 90 days"),
    ("escalated", "minors escalated (obligation de formation)"),
)


def _shown(b: Breakdown) -> dict[str, Any]:
    return {"total": b.total, "parts": b.parts}


BY_DEPARTEMENT = ("handed_over", "case_opened", "contacted", "in_solution", "closed", "open_30")
CAMPAIGN_PARTS = ("rejected", "duplicates", "excluded", "identified", "reported_again")


def _campaign(row: dict[str, Any]) -> dict[str, Any]:
    """A campaign file's counts: its rows split into rejected, duplicates, excluded, identified,
    reported again, and the rest (repérage's other valid rows), suppressed as one breakdown."""
    parts = {name: row[name] for name in CAMPAIGN_PARTS}
    parts["other"] = max(0, row["rows"] - sum(parts.values()))
    shown = breakdown(sum(parts.values()), parts)
    return {
        "campaign_id": row["campaign_id"],
        "as_of": row["as_of"].isoformat() if row["as_of"] else None,
        "rows": shown.total,
        **shown.parts,
    }


def _by_departement(rows: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Each column adds up to the funnel's figure for that step (a youth counted in these steps
    has a département, from repérage or PSAD): suppressed column by column as breakdowns."""
    columns: dict[str, dict[str, Any]] = {}
    for name in BY_DEPARTEMENT:
        counts = {dep: row[name] for dep, row in rows.items()}
        columns[name] = breakdown(sum(counts.values()), counts).parts
    return {dep: {name: columns[name][dep] for name in BY_DEPARTEMENT} for dep in rows}


def _weeks(weekly: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    series: dict[str, dict[str, Any]] = {}
    for name in ("opened", "contacted", "solution"):
        counts = {week: row[name] for week, row in weekly.items()}
        series[name] = breakdown(sum(counts.values()), counts).parts
    return {week: {name: series[name][week] for name in series} for week in weekly}


async def dashboard(uow: OpsUnitOfWork, filters: Filters, now: datetime) -> dict[str, Any]:
    """Every panel for these filters (the caller's territory already applied to `filters`)."""
    async with uow:
        repo = uow.projections
        funnel = await repo.funnel(filters, now)
        territories = funnel["by_departement"]
        weekly = await repo.weekly(filters)
        campaigns = await repo.campaigns(filters.campaign_id)
        seats = await repo.seats(
            filters.departement, {dep: row["placed"] for dep, row in territories.items()}
        )
        mlds = await repo.mlds(filters.departement)
        clauses = await repo.clauses(filters.departement, now.date())
        choices = await repo.territories()
    interviewed, late = funnel["interviewed"], funnel["interviewed_late"]
    return {
        "as_of": now.isoformat(),
        "filters": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vars(filters).items()},
        "choices": choices,
        "funnel": {name: cell(funnel[name]) for name, _ in FUNNEL_STEPS},
        "by_departement": _by_departement(territories),
        "interviews": _shown(breakdown(interviewed, {"within_15_days": interviewed - late, "late": late})),
        "in_solution_by_kind": _shown(breakdown(funnel["in_solution"], funnel["in_solution_by_kind"])),
        "closed_by_reason": _shown(breakdown(funnel["closed"], funnel["closed_by_reason"])),
        # Statuses add up to the cases opened, shown in the funnel; each weekly series adds up
        # to its total: both suppressed as breakdowns, so that no hidden cell is a difference.
        "by_status": _shown(
            breakdown(sum(funnel["by_status"].values()), dict(sorted(funnel["by_status"].items())))
        ),
        "weekly": _weeks(weekly),
        # Campaign files' counts are repérage's, national: not split by territory in its event.
        "campaigns": [_campaign(c) for c in campaigns],
        "seats": {
            dep: {**row, "reserved": cell(row["reserved"]), "placed": cell(row["placed"])}
            for dep, row in seats.items()
        },
        "mlds": {
            "candidacies": cell(mlds["candidacies"]),
            "decisions": _shown(breakdown(mlds["decided"], mlds["decisions"])),
            "enrolled": cell(mlds["enrolled"]),
            "exits_by_destination": _shown(breakdown(mlds["exited"], mlds["exits_by_destination"])),
            "places": mlds["places"],
        },
        "clauses": clauses,
    }
