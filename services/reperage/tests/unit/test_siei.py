"""SIEI campaign files: detection, header, every rejection, line numbers, streaming, robustness."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from raccrochage_reperage.domain import siei
from raccrochage_reperage.domain.partners import PartnerIndex
from raccrochage_reperage.domain.rules import (
    CampaignTally,
    Diploma,
    Policy,
    classify,
    normalise_ine,
)
from raccrochage_reperage.domain.siei import FileFormatError, Rejection, SieiRow, open_siei

AS_OF = date(2026, 11, 2)
COLUMNS = list(siei.SIEI_COLUMNS)
GOOD = {
    "ine": "1234567890A",
    "nom": "Dupont",
    "prenom": "Léa",
    "date_naissance": "01/05/2009",
    "sexe": "F",
    "code_postal": "33000",
    "commune": "Bordeaux",
    "adresse": "3 rue Pasteur",
    "telephone": "06 00 00 00 00",
    "courriel": "lea@example.org",
    "uai_origine": "0330023F",
    "formation_origine": "2nde GT",
    "date_sortie": "30/06/2026",
    "diplome": "DNB",
}
REASONS = {
    siei.MISSING,
    siei.INVALID_DATE,
    siei.INVALID_INE,
    siei.INVALID_POSTCODE,
    siei.UNKNOWN_DIPLOMA,
    siei.SORTIE_AFTER_AS_OF,
    siei.WRONG_FIELD_COUNT,
    siei.MALFORMED_CSV,
    siei.LINE_TOO_LONG,
    "not decodable as utf-8",
    "not decodable as cp1252",
}


def campaign(
    *rows: dict[str, str],
    columns: list[str] = COLUMNS,
    delimiter: str = ";",
    encoding: str = "utf-8",
    header: list[str] | None = None,
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header or columns)
    for row in rows:
        writer.writerow([row.get(name, GOOD.get(name, "")) for name in columns])
    return out.getvalue().encode(encoding)


def records(data: bytes, as_of: date = AS_OF) -> list[SieiRow | Rejection]:
    return list(open_siei(io.BytesIO(data), as_of).records)


def only(data: bytes) -> SieiRow | Rejection:
    [record] = records(data)
    return record


def test_a_good_row() -> None:
    row = only(campaign({}))
    assert row == SieiRow(
        2,
        "1234567890A",
        "Dupont",
        "Léa",
        date(2009, 5, 1),
        "F",
        "33000",
        "Bordeaux",
        "3 rue Pasteur",
        "06 00 00 00 00",
        "lea@example.org",
        "0330023F",
        "2nde GT",
        date(2026, 6, 30),
        Diploma.DNB,
    )


def test_the_fast_constructor_builds_the_same_frozen_row() -> None:
    args = (
        2,
        "1234567890A",
        "N",
        "P",
        date(2009, 5, 1),
        None,
        "33000",
        None,
        None,
        None,
        None,
        None,
        None,
        date(2026, 6, 30),
        None,
    )
    fast = siei._new_siei_row(*args)
    assert fast == SieiRow(*args) and type(fast) is SieiRow
    with pytest.raises(AttributeError):
        fast.ine = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "header",
    [
        ["INE", "NOM", "PRÉNOM", "DATE_NAISSANCE", "code_postal", "Date_Sortie", "Diplôme"],
        ["Ine", "Nom", "Prénom", "Date_Naissance", "Code Postal", "date-sortie", "diplome"],
        [" ine ", "nom", "prenom", "date_naissance", "code_postal", "date_sortie", "DIPLOME"],
        ["diplome", "date_sortie", "code_postal", "date_naissance", "prenom", "nom", "ine"],  # any order
    ],
)
def test_headers_match_whatever_the_case_accents_and_order(header: list[str]) -> None:
    canonical = [siei.column_key(name) for name in header]
    row = only(campaign({}, columns=canonical, header=header))
    assert isinstance(row, SieiRow)
    assert (row.ine, row.prenom, row.diplome, row.commune) == ("1234567890A", "Léa", Diploma.DNB, None)


def test_extra_columns_are_ignored_and_listed() -> None:
    columns = [*COLUMNS[:3], "classe", *COLUMNS[3:], "Remarque élève"]
    parsed = open_siei(
        io.BytesIO(campaign({"classe": "2nde", "Remarque élève": "x"}, columns=columns)), AS_OF
    )
    assert parsed.extra_columns == ["classe", "Remarque élève"]
    assert parsed.columns == columns
    [row] = list(parsed.records)
    assert isinstance(row, SieiRow) and row.nom == "Dupont"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\r\n\n  \n", "no header"),
        (
            campaign(columns=["ine", "nom", "prenom", "date_naissance"]),
            "required columns missing from the header: date_sortie, code_postal, diplome",
        ),
        (campaign(columns=["ine", "nom", "Nom", "prenom"]), "column 'nom' appears twice"),
        ("\ufeffine;nom".encode("utf-16"), "UTF-16"),
        (b"x" * (3 << 20), "too long"),
    ],
)
def test_whole_file_problems(data: bytes, message: str) -> None:
    with pytest.raises(FileFormatError, match=message):
        open_siei(io.BytesIO(data), AS_OF)


@pytest.mark.parametrize(
    ("data", "encoding", "delimiter"),
    [
        (campaign({}), "utf-8", ";"),
        (b"\xef\xbb\xbf" + campaign({}), "utf-8-sig", ";"),
        (campaign({}, delimiter=","), "utf-8", ","),
        (campaign({}, encoding="cp1252"), "cp1252", ";"),
        (campaign({}, encoding="cp1252", delimiter=","), "cp1252", ","),
        (b"\xef\xbb\xbf" + campaign({}, delimiter=","), "utf-8-sig", ","),
    ],
)
def test_encoding_and_delimiter_are_detected(data: bytes, encoding: str, delimiter: str) -> None:
    parsed = open_siei(io.BytesIO(data), AS_OF)
    assert (parsed.encoding, parsed.delimiter) == (encoding, delimiter)
    assert parsed.columns == COLUMNS  # a BOM does not stick to the first column
    [row] = list(parsed.records)
    assert isinstance(row, SieiRow)
    assert (row.ine, row.prenom) == ("1234567890A", "Léa")


def test_cp1252_accents_and_curly_apostrophe() -> None:
    row = only(
        campaign({"nom": "D’Arcy-Lefèvre", "prenom": "Maëlys", "commune": "Bègles"}, encoding="cp1252")
    )
    assert isinstance(row, SieiRow)
    assert (row.nom, row.prenom, row.commune) == ("D’Arcy-Lefèvre", "Maëlys", "Bègles")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("01/05/2009", date(2009, 5, 1)),
        ("2009-05-01", date(2009, 5, 1)),
        ("1/5/2009", date(2009, 5, 1)),
        ("29/02/2008", date(2008, 2, 29)),
        ("31/02/2010", None),
        ("29/02/2009", None),
        ("2010-13-01", None),
        ("00/01/2010", None),
        ("01-05-2009", None),
        ("2009/05/01", None),
        ("01/05/09", None),
        ("01.05.2009", None),
        ("le 1er mai", None),
        ("٠١/٠٥/٢٠٠٩", None),
    ],
)
def test_date_formats(text: str, parsed: date | None) -> None:
    assert siei.parse_date(text) == parsed


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"ine": ""}, "ine", "missing"),
        ({"ine": "   "}, "ine", "missing"),
        ({"nom": ""}, "nom", "missing"),
        ({"prenom": ""}, "prenom", "missing"),
        ({"date_naissance": ""}, "date_naissance", "missing"),
        ({"date_sortie": ""}, "date_sortie", "missing"),
        ({"code_postal": ""}, "code_postal", "missing"),
        ({"ine": "12345"}, "ine", "invalid INE"),
        ({"ine": "1234567890É"}, "ine", "invalid INE"),
        ({"date_naissance": "31/02/2010"}, "date_naissance", "invalid date"),
        ({"date_sortie": "2026-02-30"}, "date_sortie", "invalid date"),
        ({"code_postal": "3300A"}, "code_postal", "invalid postcode"),
        ({"code_postal": "00100"}, "code_postal", "invalid postcode"),
        ({"diplome": "BAC+2"}, "diplome", "unknown diploma code"),
        ({"diplome": "BAC PRO"}, "diplome", "unknown diploma code"),
        ({"date_sortie": "03/11/2026"}, "date_sortie", "date_sortie after the reference date"),
        # Rule order: missing beats a bad format, a bad format beats the date check.
        ({"nom": "", "ine": "bad"}, "nom", "missing"),
        ({"ine": "bad", "date_naissance": "31/02/2010"}, "ine", "invalid INE"),
        ({"diplome": "??", "date_sortie": "03/11/2026"}, "diplome", "unknown diploma code"),
    ],
)
def test_rejections(change: dict[str, str], field: str, reason: str) -> None:
    assert only(campaign(change)) == Rejection(2, field, reason)


def test_date_sortie_on_the_reference_date_is_accepted() -> None:
    assert isinstance(only(campaign({"date_sortie": "02/11/2026"})), SieiRow)


@pytest.mark.parametrize("code", [d.value for d in Diploma])
@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.title, lambda c: f"  {c} "])
def test_every_diploma_code_in_any_case(code: str, spelling) -> None:
    row = only(campaign({"diplome": spelling(code)}))
    assert isinstance(row, SieiRow)
    assert row.diplome == (None if code == "AUCUN" else Diploma(code))


def test_empty_diploma_is_none() -> None:
    row = only(campaign({"diplome": ""}))
    assert isinstance(row, SieiRow) and row.diplome is None


@pytest.mark.parametrize(
    ("raw", "normalised"), [(" 1234 5678 90a ", "1234567890A"), ("1234567890a", "1234567890A")]
)
def test_ine_is_normalised(raw: str, normalised: str) -> None:
    row = only(campaign({"ine": raw}))
    assert isinstance(row, SieiRow) and row.ine == normalised


@pytest.mark.parametrize(
    ("raw", "normalised"), [("33 000", "33000"), ("6400", "06400"), (" 64000 ", "64000")]
)
def test_postcode_is_normalised(raw: str, normalised: str) -> None:
    row = only(campaign({"code_postal": raw}))
    assert isinstance(row, SieiRow) and row.code_postal == normalised


def test_optional_fields_empty_are_none() -> None:
    blank = {
        name: ""
        for name in (
            "sexe",
            "commune",
            "adresse",
            "telephone",
            "courriel",
            "uai_origine",
            "formation_origine",
        )
    }
    row = only(campaign(blank))
    assert isinstance(row, SieiRow)
    assert (
        row.sexe,
        row.commune,
        row.adresse,
        row.telephone,
        row.courriel,
        row.uai_origine,
        row.formation_origine,
    ) == (None,) * 7


def test_optional_columns_may_be_absent() -> None:
    columns = ["ine", "nom", "prenom", "date_naissance", "code_postal", "date_sortie", "diplome"]
    row = only(campaign({}, columns=columns))
    assert isinstance(row, SieiRow) and row.telephone is None and row.sexe is None


def test_line_numbers_are_physical_and_blank_lines_are_skipped() -> None:
    header = ";".join(COLUMNS)
    good = ";".join(GOOD[c] for c in COLUMNS)
    bad = good.replace("01/05/2009", "31/02/2009")
    quoted = good.replace("3 rue Pasteur", '"3 rue Pasteur\r\nBâtiment B"')
    text = "\r\n".join(
        [header, good, "", bad, ";;;;;;;;;;;;;", "   ", quoted, bad.replace("1234567890A", "2234567890A")]
    )
    got = records(text.encode())
    assert [(r.line, type(r).__name__) for r in got] == [
        (2, "SieiRow"),
        (4, "Rejection"),
        (7, "SieiRow"),
        (9, "Rejection"),
    ]
    assert isinstance(got[2], SieiRow) and got[2].adresse == "3 rue Pasteur\r\nBâtiment B"


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_any_line_ending(ending: str) -> None:
    good = ";".join(GOOD[c] for c in COLUMNS)
    text = ending.join([";".join(COLUMNS), good, good.replace("1234567890A", "2234567890A"), ""])
    assert [r.line for r in records(text.encode()) if isinstance(r, SieiRow)] == [2, 3]


@pytest.mark.parametrize(
    ("tail", "result"),
    [
        (";;", "SieiRow"),  # a spreadsheet padding the row with empty cells
        (";x", "Rejection"),  # one field too many
    ],
)
def test_extra_fields(tail: str, result: str) -> None:
    good = ";".join(GOOD[c] for c in COLUMNS)
    got = records(f"{';'.join(COLUMNS)}\n{good}{tail}\n".encode())
    assert [type(r).__name__ for r in got] == [result]


def test_too_few_fields() -> None:
    good = ";".join(GOOD[c] for c in COLUMNS[:-1])
    assert records(f"{';'.join(COLUMNS)}\n{good}\n".encode()) == [Rejection(2, "*", "wrong number of fields")]


def test_an_undecodable_line_is_rejected_and_the_rest_kept() -> None:
    good = campaign({}, {"ine": "2234567890A"})
    lines = good.split(b"\r\n")
    lines.insert(2, lines[1].replace(b"Dupont", b"Dup\xffnt"))
    got = records(b"\r\n".join(lines))
    assert [(r.line, getattr(r, "reason", "ok")) for r in got] == [
        (2, "ok"),
        (3, "not decodable as utf-8"),
        (4, "ok"),
    ]


def test_one_accented_line_not_in_utf8_makes_a_small_file_cp1252() -> None:
    data = (
        campaign({"nom": "Lefèvre"}, encoding="cp1252")
        + campaign({"ine": "2234567890A"}).split(b"\r\n", 1)[1]
    )
    parsed = open_siei(io.BytesIO(data), AS_OF)
    assert parsed.encoding == "cp1252"
    # The detection is per file: the UTF-8 row is read as Windows-1252 too.
    assert [(r.nom, r.prenom) for r in parsed.records] == [("Lefèvre", "Léa"), ("Dupont", "LÃ©a")]


def test_a_cp1252_file_with_a_byte_cp1252_lacks() -> None:
    data = campaign({"nom": "Lefèvre"}, {"nom": "Lef\x81vre"}, encoding="latin-1")
    got = records(data)
    assert [getattr(r, "reason", "ok") for r in got] == ["ok", "not decodable as cp1252"]
    assert isinstance(got[0], SieiRow) and got[0].nom == "Lefèvre"


def test_a_late_line_not_in_utf8_after_a_clean_first_megabyte() -> None:
    good = ";".join(GOOD[c] for c in COLUMNS).encode() + b"\n"
    bad = good.replace(b"Dupont", "Dupré".encode("cp1252"))
    data = ";".join(COLUMNS).encode() + b"\n" + good * 12_000 + bad + good
    got = records(data)
    assert len(got) == 12_002
    assert got[-2] == Rejection(12_002, "*", "not decodable as utf-8")
    assert isinstance(got[-1], SieiRow) and got[-1].line == 12_003


def test_a_runaway_line_is_rejected_without_losing_count() -> None:
    good = ";".join(GOOD[c] for c in COLUMNS).encode() + b"\n"
    data = ";".join(COLUMNS).encode() + b"\n" + good + b"y" * (3 << 20) + b"\n" + good
    got = records(data)
    assert [(r.line, getattr(r, "reason", "ok")) for r in got] == [(2, "ok"), (3, "line too long"), (4, "ok")]


def test_rejections_never_carry_the_value() -> None:
    secret = "SECRET-7F3A"
    rows = [
        {"ine": secret},
        {"date_naissance": secret},
        {"code_postal": secret},
        {"diplome": secret},
        {"date_sortie": secret},
        {"nom": "", "prenom": secret},
    ]
    for record in records(campaign(*rows)):
        assert isinstance(record, Rejection)
        assert secret not in repr(record)
        assert record.reason in REASONS


class _Endless(io.RawIOBase):
    """A campaign of as many rows as one cares to read, counting the bytes handed out."""

    def __init__(self) -> None:
        self.served = 0
        header = ";".join(COLUMNS).encode() + b"\n"
        self._row = ";".join(GOOD[c] for c in COLUMNS).encode() + b"\n"
        self._pending = header

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._pending) < len(buffer):
            self._pending += self._row * 1000
        n = len(buffer)
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.served += n
        return n


def test_records_are_streamed() -> None:
    source = _Endless()
    parsed = open_siei(io.BufferedReader(source), AS_OF)
    first = [next(parsed.records) for _ in range(50_000)]
    assert all(isinstance(r, SieiRow) for r in first)
    assert source.served < 12 << 20  # ~8 MB of rows read, with the look-ahead of a few blocks


def test_a_non_seekable_source() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer) -> int:
            n = min(len(buffer), len(self.data), 7)  # short reads, as a pipe gives
            buffer[:n] = self.data[:n]
            self.data = self.data[n:]
            return n

    assert isinstance(only(campaign({})), SieiRow)
    assert [type(r) for r in open_siei(Pipe(campaign({}, {"ine": "2234567890A"})), AS_OF).records] == [
        SieiRow
    ] * 2


# -- Hypothesis ------------------------------------------------------------------------------------


def _consume(data: bytes) -> CampaignTally:
    tally = CampaignTally()
    try:
        parsed = open_siei(io.BytesIO(data), AS_OF)
    except FileFormatError:
        return tally
    for _ in classify(parsed.records, AS_OF, Policy(), PartnerIndex(AS_OF), tally):
        pass
    assert tally.balanced
    return tally


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    _consume(data)


_HEADERS = [
    ";".join(COLUMNS).encode() + b"\n",
    ",".join(COLUMNS).encode() + b"\r\n",
    b"\xef\xbb\xbf" + ";".join(COLUMNS).encode() + b"\r",
    "INE;NOM;PRÉNOM;DATE_NAISSANCE;CODE_POSTAL;DATE_SORTIE;DIPLÔME\n".encode("cp1252"),
]
_PIECES = st.sampled_from(
    [
        b";",
        b",",
        b'"',
        b"\n",
        b"\r",
        b"\r\n",
        b"\x00",
        b"\xff",
        b"\xc3\xa9",
        b"\xe9",
        b"1234567890A",
        b"31/02/2010",
        b"01/05/2009",
        b"33000",
        b"DNB",
        b"\x81",
        b"\xe2\x80\xa8",
        b"\x0c",
        b" ",
        b"x",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_HEADERS), st.lists(_PIECES | st.binary(max_size=20), max_size=120))
def test_arbitrary_bytes_after_a_good_header_never_crash(header: bytes, pieces: list[bytes]) -> None:
    parsed = open_siei(io.BytesIO(header + b"".join(pieces)), AS_OF)
    lines = [r.line for r in parsed.records]
    assert lines == sorted(set(lines))
    _consume(header + b"".join(pieces))


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_INES = ["1234567890A", "1234 5678 90a", "2234567890B", "2234567890b", "ABCDEFGHIJK", "abcdefghijk"]
_DATES = st.dates(min_value=date(1995, 1, 1), max_value=AS_OF)


def _written(d: date, iso: bool) -> str:
    return d.isoformat() if iso else d.strftime("%d/%m/%Y")


_VALID_ROW = st.fixed_dictionaries(
    {
        "ine": st.sampled_from(_INES),
        "nom": st.text(st.characters(whitelist_categories=("L",)), min_size=1, max_size=10),
        "prenom": st.sampled_from(["Léa", "D'Arcy", "Jean-Pierre", "Éloïse"]),
        "date_naissance": st.builds(_written, _DATES, st.booleans()),
        "code_postal": st.sampled_from(["33000", "24100", "33830", "31000", "6400"]),
        "date_sortie": st.builds(_written, _DATES, st.booleans()),
        "diplome": st.sampled_from(["", "aucun", "DNB", "cap", "BAC_PRO", "Master"]),
        "adresse": _TEXT,
    }
)
_ANY_ROW = st.fixed_dictionaries(
    {
        "ine": st.sampled_from([*_INES, "", "12345", "1234567890É"]) | _TEXT,
        "nom": _TEXT,
        "prenom": _TEXT,
        "date_naissance": st.builds(_written, _DATES, st.booleans())
        | st.sampled_from(["", "31/02/2010", "x"]),
        "code_postal": st.sampled_from(["33000", "", "3300A", "00100", "6400", " 33 000 "]),
        "date_sortie": st.builds(
            _written, st.dates(min_value=date(2020, 1, 1), max_value=date(2027, 12, 31)), st.booleans()
        )
        | st.just(""),
        "diplome": st.sampled_from([*(d.value for d in Diploma), "bac_pro", "", "BAC+2"]),
        "adresse": _TEXT,
    }
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_VALID_ROW, max_size=25), st.sampled_from([";", ","]), st.sampled_from(["utf-8", "utf-8-sig"])
)
def test_valid_rows_all_accounted_for(rows: list[dict[str, str]], delimiter: str, encoding: str) -> None:
    tally = CampaignTally()
    parsed = open_siei(io.BytesIO(campaign(*rows, delimiter=delimiter, encoding=encoding)), AS_OF)
    youths = list(classify(parsed.records, AS_OF, Policy(), PartnerIndex(AS_OF), tally))
    distinct = {normalise_ine(row["ine"]) for row in rows}
    assert tally.rows == len(rows)
    assert tally.rejected == 0
    assert len(youths) == tally.excluded + tally.identified == len(distinct)
    assert tally.duplicates == len(rows) - len(distinct)
    assert tally.balanced


@settings(max_examples=150, deadline=None)
@given(st.lists(_ANY_ROW, max_size=25), st.sampled_from([";", ","]))
def test_any_rows_all_accounted_for(rows: list[dict[str, str]], delimiter: str) -> None:
    data = campaign(*rows, delimiter=delimiter)
    tally = CampaignTally()
    parsed = open_siei(io.BytesIO(data), AS_OF)
    youths = list(classify(_lines_in_order(parsed.records), AS_OF, Policy(), PartnerIndex(AS_OF), tally))
    not_blank = [row for row in rows if "".join(row.get(c, GOOD.get(c, "")) for c in COLUMNS).strip()]
    assert tally.rows == len(not_blank)
    assert tally.rows == tally.rejected + tally.duplicates + tally.excluded + tally.identified
    assert sum(tally.rejected_by_reason.values()) == tally.rejected
    assert len({youth.ine for youth, _ in youths}) == len(youths)
    assert all(len(youth.ine) == 11 and youth.date_sortie <= AS_OF for youth, _ in youths)


def _lines_in_order(records: Iterator[SieiRow | Rejection]) -> Iterator[SieiRow | Rejection]:
    last = 1
    for record in records:
        assert record.line > last
        last = record.line
        yield record


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0330023F", True),
        ("0330023f", False),
        ("033002F", False),
        ("", False),
        (None, False),
        ("٠٣٣٠٠٢٣F", False),  # Arabic-Indic digits: str.isdigit() alone took them
        ("0330023É", False),
    ],
)
def test_only_an_ascii_uai_goes_into_the_identified_event(value: str | None, expected: bool) -> None:
    from raccrochage_reperage.service_layer.ingest import _is_uai

    assert _is_uai(value) is expected
