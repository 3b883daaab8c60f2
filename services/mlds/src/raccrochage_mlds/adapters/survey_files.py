"""The yearly survey as files: CSV (the same events give the same bytes) and XLSX (the same
cells; openpyxl stamps the time of writing in the file's properties)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from openpyxl import Workbook

from ..domain.survey import Survey


def survey_csv(survey: Survey) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(Survey.COLUMNS)
    writer.writerows(row.as_tuple() for row in survey.rows)
    return out.getvalue()


def write_survey(survey: Survey, path: Path) -> Path:
    """Write `path` as CSV or XLSX, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        path.write_text(survey_csv(survey), encoding="utf-8", newline="")
    elif suffix == ".xlsx":
        workbook = Workbook()
        sheet = workbook.active
        sheet.title = f"enquete MLDS {survey.year}"
        sheet.append(Survey.COLUMNS)
        for row in survey.rows:
            values = list(row.as_tuple())
            # Numbers as numbers, so that a spreadsheet sums them; "s" stays text.
            values[4] = _number(values[4])
            sheet.append(values)
        sheet.freeze_panes = "A2"
        workbook.save(path)
    else:
        raise ValueError(f"{path}: the survey is written as .csv or .xlsx, not {suffix or 'no suffix'}")
    return path


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
