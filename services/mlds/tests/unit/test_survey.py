"""The yearly survey: counts per dispositif and département, destinations, durations, shares,
and statistical secrecy (no count of fewer than 5 youths can be read or worked out)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from raccrochage_mlds.domain.catalogue import DispositifKind
from raccrochage_mlds.domain.dates import SchoolYear
from raccrochage_mlds.domain.disclosure import Cell, Relation, determined, withheld_cells
from raccrochage_mlds.domain.states import ExitDestination
from raccrochage_mlds.domain.survey import WITHHELD, Leave, Start, build_survey, duration_band, survey_cells

YEAR = SchoolYear.parse("2025-2026")
K = DispositifKind
D = ExitDestination


def start(n: int, kind=K.PAPS, dept="33", on=date(2025, 10, 1), under_of=None) -> Start:
    if under_of is None:
        under_of = n % 2 == 0
    return Start(uuid.UUID(int=n), f"youth-{n}", kind, dept, on, under_of)


def leave(
    n: int, kind=K.PAPS, dept="33", started=date(2025, 10, 1), days=100, destination=D.TRAINING
) -> Leave:
    return Leave(
        uuid.UUID(int=n), f"youth-{n}", kind, dept, started, started + timedelta(days=days), destination
    )


def test_entries_and_exits_counted_in_the_school_year_only() -> None:
    starts = [start(i) for i in range(12)] + [
        start(100, on=date(2025, 8, 31)),
        start(101, on=date(2026, 9, 1)),
    ]
    leaves = [leave(i) for i in range(6)] + [leave(7, days=400)]  # exits 2026-11-05: next year
    survey = build_survey(YEAR, starts, leaves)
    assert survey.value("entries", "paps", "33", "count") == "12"
    assert survey.value("exits", "paps", "33", "count") == "6"
    assert survey.value("exits_by_duration", "paps", "all", "3_to_6_months") == "6"
    # All 6 in training: the share would tell that none is not (a count under 5).
    assert survey.value("back_in_training_share", "paps", "all", "share_percent") == WITHHELD


def test_a_share_of_100_percent_withholds_the_share_not_the_counts() -> None:
    survey = build_survey(YEAR, [start(i, under_of=True) for i in range(12)], [])
    assert survey.value("entries", "paps", "33", "count") == "12"
    assert survey.value("obligation_de_formation_share", "paps", "all", "share_percent") == WITHHELD


def test_a_replayed_event_counts_once() -> None:
    starts = [start(i) for i in range(7)]
    assert build_survey(YEAR, starts + starts, []).value("entries", "paps", "33", "count") == "7"


def test_a_small_cell_is_withheld_and_so_is_its_complement() -> None:
    """33: 20 entries, 24: 3. With the PAPS total published, 24 = total - 33 would give it away:
    33 is withheld too."""
    starts = [start(i, dept="33") for i in range(20)] + [start(100 + i, dept="24") for i in range(3)]
    survey = build_survey(YEAR, starts, [])
    assert survey.value("entries", "paps", "24", "count") == WITHHELD
    assert survey.value("entries", "paps", "33", "count") == WITHHELD
    assert survey.value("entries", "paps", "all", "count") == "23"


def test_cells_count_youths_a_youth_entering_twice_is_one_youth() -> None:
    starts = [
        Start(uuid.UUID(int=i), f"youth-{i % 4}", K.PAPS, "33", date(2025, 10, 1), True) for i in range(8)
    ]
    survey = build_survey(YEAR, starts, [])
    assert survey.value("entries", "paps", "33", "count") == WITHHELD  # 8 entries, 4 youths


def test_shares_back_in_training_and_under_obligation_de_formation() -> None:
    starts = [start(i, under_of=i < 10) for i in range(20)]
    destinations = [D.BACK_TO_SCHOOL] * 5 + [D.APPRENTICESHIP] * 5 + [D.EMPLOYMENT] * 5 + [D.INTERRUPTION] * 5
    leaves = [leave(i, destination=d) for i, d in enumerate(destinations)]
    survey = build_survey(YEAR, starts, leaves)
    assert survey.value("back_in_training_share", "paps", "all", "share_percent") == "50.0"
    assert survey.value("obligation_de_formation_share", "paps", "all", "share_percent") == "50.0"
    assert survey.value("exits_by_destination", "paps", "all", "back_to_school") == "5"


def test_a_share_whose_complement_is_small_is_withheld() -> None:
    """18 of 20 under the obligation de formation: 50 % would be fine, 90 % tells that 2 are not."""
    starts = [start(i, under_of=i < 18) for i in range(20)]
    survey = build_survey(YEAR, starts, [])
    assert survey.value("obligation_de_formation_share", "paps", "all", "share_percent") == WITHHELD


def test_the_same_events_in_any_order_give_the_same_rows() -> None:
    starts = [start(i, kind=list(K)[i % 3], dept=["24", "33", "47"][i % 3]) for i in range(40)]
    leaves = [
        leave(i, kind=list(K)[i % 3], dept=["24", "33", "47"][i % 3], destination=list(D)[i % 8])
        for i in range(30)
    ]
    first = build_survey(YEAR, starts, leaves)
    again = build_survey(YEAR, list(reversed(starts)), list(reversed(leaves)))
    assert first.rows == again.rows


def test_duration_bands() -> None:
    assert duration_band(date(2025, 9, 1), date(2025, 11, 30)) == "under_3_months"
    assert duration_band(date(2025, 9, 1), date(2025, 12, 1)) == "3_to_6_months"
    assert duration_band(date(2025, 9, 1), date(2026, 8, 31)) == "6_to_12_months"
    assert duration_band(date(2024, 9, 1), date(2025, 9, 1)) == "12_months_or_more"


def test_disclosure_a_two_by_two_table_with_margins() -> None:
    """a=2 (small) in a 2x2 table with row and column totals: a, b, c, d all withheld, the totals
    shown, and a cannot be worked out."""
    cells = {
        "a": Cell(2, 2),
        "b": Cell(10, 10),
        "c": Cell(10, 10),
        "d": Cell(20, 20),
        "row1": Cell(12, 12),
        "row2": Cell(30, 30),
        "col1": Cell(12, 12),
        "col2": Cell(30, 30),
        "all": Cell(42, 42),
    }
    relations = [
        Relation("row1", ("a", "b")),
        Relation("row2", ("c", "d")),
        Relation("col1", ("a", "c")),
        Relation("col2", ("b", "d")),
        Relation("all", ("row1", "row2")),
        Relation("all", ("col1", "col2")),
    ]
    withheld = withheld_cells(cells, relations, 5)
    assert {"a", "b", "c", "d"} <= withheld
    assert "a" not in determined(set(withheld), relations, {k: i for i, k in enumerate(cells)})


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(K), st.sampled_from(["24", "33", "40", "47", "64"]), st.booleans()),
        max_size=80,
    ),
    exits=st.lists(st.tuples(st.integers(0, 79), st.sampled_from(D), st.integers(0, 500)), max_size=80),
)
def test_no_count_of_fewer_than_5_youths_can_be_read_or_worked_out(entries, exits) -> None:
    starts = [start(i, kind, dept, under_of=of) for i, (kind, dept, of) in enumerate(entries)]
    leaves = [
        leave(i, s.kind, s.departement, s.started_on, days, destination)
        for i, destination, days in exits
        if i < len(starts) and (s := starts[i])
    ]
    survey = build_survey(YEAR, starts, leaves)
    for row in survey.rows:
        if row.value != WITHHELD and row.category != "share_percent":
            assert int(row.value) >= 5, row
    # Exactly: with what the rows show (a share shows its numerator), no cell of fewer than 5
    # youths, shown or hidden, is determined by the sums that tie the cells.
    cells, relations = survey_cells(YEAR, starts, leaves)
    shown = {row.as_tuple()[:4] for row in survey.rows if row.value != WITHHELD}
    shares = {"back_in_training_share": "in_training", "obligation_de_formation_share": "under_of"}
    shown |= {
        (shares[r.section], r.dispositif) for r in survey.rows if r.section in shares and r.value != WITHHELD
    }
    unknown = set(cells) - shown
    order = {key: i for i, key in enumerate(cells)}
    small = {key for key, cell in cells.items() if cell.youths < 5}
    assert not small & shown
    assert not small & set(determined(unknown, relations, order))
