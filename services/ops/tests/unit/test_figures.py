"""The dashboard's breakdowns: statuses, weeks and campaign files suppressed as wholes."""

from __future__ import annotations

from datetime import date

from raccrochage_ops.domain.suppression import HIDDEN
from raccrochage_ops.service_layer.figures import _by_departement, _campaign, _weeks


def test_one_small_week_takes_another_with_it():
    weekly = {
        "2026-11-02": {"opened": 40, "contacted": 3, "solution": 0},
        "2026-11-09": {"opened": 2, "contacted": 30, "solution": 0},
        "2026-11-16": {"opened": 9, "contacted": 12, "solution": 0},
    }
    shown = _weeks(weekly)
    assert [shown[w]["opened"] for w in weekly] == [40, HIDDEN, HIDDEN]
    assert [shown[w]["contacted"] for w in weekly] == [HIDDEN, 30, HIDDEN]


def test_a_campaign_file_small_exclusions_cannot_be_derived_from_its_rows():
    row = {
        "campaign_id": "c",
        "as_of": date(2026, 11, 2),
        "rows": 120,
        "rejected": 3,
        "duplicates": 10,
        "excluded": 40,
        "identified": 60,
        "reported_again": 0,
    }
    shown = _campaign(row)
    # 120 rows, 7 of them none of the named parts: "other" is the smallest part beside the
    # hidden 3 rejected, and goes with it.
    assert shown["rows"] == 120
    assert (shown["rejected"], shown["other"], shown["duplicates"]) == (HIDDEN, HIDDEN, 10)


def test_per_departement_each_column_is_suppressed_as_a_whole():
    rows = {
        "33": {
            "handed_over": 50,
            "case_opened": 50,
            "contacted": 3,
            "in_solution": 0,
            "closed": 9,
            "open_30": 0,
        },
        "40": {
            "handed_over": 20,
            "case_opened": 20,
            "contacted": 12,
            "in_solution": 0,
            "closed": 2,
            "open_30": 0,
        },
    }
    shown = _by_departement(rows)
    assert (shown["33"]["contacted"], shown["40"]["contacted"]) == (HIDDEN, HIDDEN)
    assert (shown["33"]["closed"], shown["40"]["closed"]) == (HIDDEN, HIDDEN)
    assert shown["33"]["handed_over"] == 50 and shown["40"]["in_solution"] == 0
