"""The survey written as CSV and XLSX: the same rows in both."""

from __future__ import annotations

import csv
import uuid
from datetime import date

import pytest
from openpyxl import load_workbook
from raccrochage_mlds.adapters.survey_files import survey_csv, write_survey
from raccrochage_mlds.domain.catalogue import DispositifKind
from raccrochage_mlds.domain.dates import SchoolYear
from raccrochage_mlds.domain.states import ExitDestination
from raccrochage_mlds.domain.survey import Leave, Start, build_survey

YEAR = SchoolYear.parse("2025-2026")


def survey():
    starts = [
        Start(uuid.UUID(int=i), f"y{i}", DispositifKind.PAPS, "33", date(2025, 10, 1), i % 2 == 0)
        for i in range(20)
    ]
    leaves = [
        Leave(
            s.candidacy_id, s.youth_id, s.kind, "33", s.started_on, date(2026, 2, 1), ExitDestination.TRAINING
        )
        for s in starts[:10]
    ]
    return build_survey(YEAR, starts, leaves)


def test_csv_and_xlsx_hold_the_same_rows(tmp_path) -> None:
    data = survey()
    written = write_survey(data, tmp_path / "enquete.csv").read_text(encoding="utf-8")
    assert written == survey_csv(data)
    rows = list(csv.reader(written.splitlines()))
    sheet = load_workbook(write_survey(data, tmp_path / "enquete.xlsx")).active
    assert sheet.title == "enquete MLDS 2025-2026"
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert [[str(v) for v in row[:4]] for row in cells] == [row[:4] for row in rows]
    for cell, row in zip(cells[1:], rows[1:], strict=True):
        assert cell[4] == row[4] if row[4] == "s" else float(cell[4]) == float(row[4])
    assert sheet["E2"].value == 20  # a number in the spreadsheet, "s" stays text


def test_only_csv_or_xlsx(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.csv or \.xlsx, not \.ods"):
        write_survey(survey(), tmp_path / "enquete.ods")
