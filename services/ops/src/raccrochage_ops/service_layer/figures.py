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


async def dashboard(uow: OpsUnitOfWork, filters: Filters, now: datetime) -> dict[str, Any]:
    """Every panel for these filters (the caller's territory already applied to `filters`)."""
    async with uow:
        repo = uow.projections
        funnel = await repo.funnel(filters, now)
        weekly = await repo.weekly(filters)
        campaigns = await repo.campaigns(filters.campaign_id)
        seats = await repo.seats(filters.departement, filters)
        mlds = await repo.mlds(filters.departement)
        clauses = await repo.clauses(filters.departement, now.date())
        choices = await repo.territories()
    interviewed, late = funnel["interviewed"], funnel["interviewed_late"]
    return {
        "as_of": now.isoformat(),
        "filters": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vars(filters).items()},
        "choices": choices,
        "funnel": {name: cell(funnel[name]) for name, _ in FUNNEL_STEPS},
        "interviews": _shown(breakdown(interviewed, {"within_15_days": interviewed - late, "late": late})),
        "in_solution_by_kind": _shown(breakdown(funnel["in_solution"], funnel["in_solution_by_kind"])),
        "closed_by_reason": _shown(breakdown(funnel["closed"], funnel["closed_by_reason"])),
        "by_status": {status: cell(n) for status, n in sorted(funnel["by_status"].items())},
        "weekly": {week: {k: cell(n) for k, n in row.items()} for week, row in weekly.items()},
        # Campaign files' counts are repérage's, national: not split by territory in its event.
        "campaigns": [
            {
                "campaign_id": c["campaign_id"],
                "as_of": c["as_of"].isoformat() if c["as_of"] else None,
                **{
                    k: cell(c[k])
                    for k in ("rows", "rejected", "duplicates", "excluded", "identified", "reported_again")
                },
            }
            for c in campaigns
        ],
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
