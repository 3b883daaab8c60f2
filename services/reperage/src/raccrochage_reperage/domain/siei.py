"""Streaming parser of SIEI campaign files, and the CSV machinery partner files share with it."""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import chain
from operator import itemgetter
from typing import BinaryIO, Generic, TypeVar

from .rules import Diploma, is_valid_ine, normalise_ine
from .territory import normalise_code_postal

# Rejection reasons: short codes a report can count and a user can read; never the value itself.
MISSING = "missing"
INVALID_DATE = "invalid date"
INVALID_INE = "invalid INE"
INVALID_POSTCODE = "invalid postcode"
UNKNOWN_DIPLOMA = "unknown diploma code"
SORTIE_AFTER_AS_OF = "date_sortie after the reference date"
WRONG_FIELD_COUNT = "wrong number of fields"
MALFORMED_CSV = "malformed CSV"
LINE_TOO_LONG = "line too long"
WHOLE_ROW = "*"

SIEI_COLUMNS = (
    "ine",
    "nom",
    "prenom",
    "date_naissance",
    "sexe",
    "code_postal",
    "commune",
    "adresse",
    "telephone",
    "courriel",
    "uai_origine",
    "formation_origine",
    "date_sortie",
    "diplome",
)
SIEI_REQUIRED_FIELDS = ("ine", "nom", "prenom", "date_naissance", "date_sortie", "code_postal")
# `diplome` may be empty in a row, but a file without the column would make every youth look
# unqualified and flood the PSADs: the header must have it.
SIEI_REQUIRED_COLUMNS = (*SIEI_REQUIRED_FIELDS, "diplome")

Record = TypeVar("Record")

_SAMPLE_BYTES = 1 << 20
_BLOCK_BYTES = 1 << 20
_MAX_LINE_BYTES = 1 << 20
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Bad bytes come through as lone low surrogates (errors="surrogateescape") and an over-long line
# as a lone high surrogate: decoded text never holds either, so neither can be mistaken for data.
TOO_LONG_MARK = "\ud800"
_BAD_TEXT = re.compile("[\ud800\udc80-\udcff]")
_OTHER_LINE_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


@dataclass(frozen=True, slots=True)
class SieiRow:
    """One valid row of a campaign: a youth as SIEI describes them."""

    line: int
    ine: str
    nom: str
    prenom: str
    date_naissance: date
    sexe: str | None
    code_postal: str
    commune: str | None
    adresse: str | None
    telephone: str | None
    courriel: str | None
    uai_origine: str | None
    formation_origine: str | None
    date_sortie: date
    diplome: Diploma | None  # None: no diploma (empty or AUCUN)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Where a row is wrong and why; never what it held."""

    line: int
    field: str  # a column name, or "*" for the whole row
    reason: str


class FileFormatError(ValueError):
    """The file as a whole cannot be read: empty, no usable header, required columns missing."""


@dataclass
class CsvTable(Generic[Record]):
    """A CSV file opened for streaming: what was detected, and its records.

    `columns` are the header's names as written; `extra_columns` those that are not known and
    are ignored. `records` yields, per data row, what `build(line, values)` makes of it (values:
    one per known column, in the order asked for, "" for a column the file lacks), or a
    Rejection for a row that cannot be read at all. Blank rows are skipped.
    """

    encoding: str
    delimiter: str
    columns: list[str]
    extra_columns: list[str]
    records: Iterator[Record | Rejection]


@dataclass
class SieiFile:
    """A campaign file opened for streaming: what was detected, then its records one by one."""

    encoding: str
    delimiter: str
    columns: list[str]
    extra_columns: list[str]
    records: Iterator[SieiRow | Rejection]


def column_key(name: str) -> str:
    """A header name as matched against known columns: no case, accents, or outer spaces;
    inner spaces and hyphens read as underscores ("Date de-Sortie " ~ "date_de_sortie")."""
    key = name.strip().strip("\ufeff").strip().lower()
    if not key.isascii():
        key = "".join(c for c in unicodedata.normalize("NFKD", key) if not unicodedata.combining(c))
    return "_".join(key.replace("-", " ").split())


def parse_date(text: str) -> date | None:
    """A date written DD/MM/YYYY (day and month may have one digit) or YYYY-MM-DD; None if it
    is not one of those or does not exist (31/02/2010)."""
    if not text.isascii():
        return None
    parts = text.split("/")
    if len(parts) == 3:
        day, month, year = parts
    else:
        parts = text.split("-")
        if len(parts) != 3:
            return None
        year, month, day = parts
    if len(year) != 4 or not (0 < len(month) <= 2 and 0 < len(day) <= 2):
        return None
    if not (year.isdigit() and month.isdigit() and day.isdigit()):
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def date_reader() -> Callable[[str], date | None]:
    """`parse_date` with a memory of the values already seen: a campaign has a few thousand
    distinct dates for a million rows."""
    known: dict[str, date | None] = {}

    def read(text: str) -> date | None:
        value = known.get(text, _UNSEEN)
        if value is _UNSEEN:
            value = _remember(known, text, parse_date(text))
        return value  # type: ignore[return-value]

    return read


def _detect_encoding(sample: bytes) -> tuple[str, str, bytes]:
    """(codec, name to report, sample without BOM)."""
    if sample.startswith(_UTF8_BOM):
        return "utf-8", "utf-8-sig", sample[len(_UTF8_BOM) :]
    if sample.startswith(_UTF16_BOMS):
        raise FileFormatError("the file is UTF-16: save it as CSV in UTF-8 or Windows-1252")
    try:
        # Incremental, so that a sample cut inside a multi-byte character still counts as UTF-8.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8", "utf-8", sample
    except UnicodeDecodeError:
        pass
    # Accented Windows-1252 text is almost never valid UTF-8. So when the header is UTF-8 and the
    # accented rows mostly are, the file is UTF-8 with a few bad rows, each rejected alone, rather
    # than Windows-1252 with every accent of the file turned into mojibake.
    header, *rows = sample.lstrip().splitlines() or [b""]
    if not _is_utf8(header):
        return "cp1252", "cp1252", sample
    verdicts = [_is_utf8(row) for row in rows if not row.isascii()]
    if verdicts.count(True) > verdicts.count(False):
        return "utf-8", "utf-8", sample
    return "cp1252", "cp1252", sample


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Lines:
    """The physical lines of a byte stream, decoded a block at a time.

    A block is cut after its last line end, so a character or a CRLF is never split. A block
    that does not decode is decoded again with errors="surrogateescape", and `dirty` is set:
    from then on rows are checked for the lone surrogates that mark bad bytes. A line longer
    than _MAX_LINE_BYTES is dropped unread and stands as one line holding TOO_LONG_MARK, so that
    one runaway line can neither exhaust memory nor shift the line numbers.
    """

    def __init__(self, first: bytes, source: BinaryIO, codec: str) -> None:
        self.first = first
        self.source = source
        self.codec = codec
        self.dirty = False

    def decode(self, block: bytes) -> str:
        try:
            return block.decode(self.codec)
        except UnicodeDecodeError:
            self.dirty = True
            return block.decode(self.codec, "surrogateescape")

    def blocks(self) -> Iterator[Iterable[str]]:
        pending = self.first
        self.first = b""
        at_end = False
        while True:
            if not at_end:
                block = self.source.read(_BLOCK_BYTES)
                at_end = not block
                pending += block
            if at_end:
                if pending:
                    yield self.split(self.decode(pending))
                return
            cut = pending.rfind(b"\n") + 1 or pending.rfind(b"\r", 0, len(pending) - 1) + 1
            if cut:
                yield self.split(self.decode(pending[:cut]))
                pending = pending[cut:]
            elif len(pending) > _MAX_LINE_BYTES:
                pending = self.skip_rest_of_line()
                self.dirty = True
                yield (TOO_LONG_MARK + "\n",)

    def skip_rest_of_line(self) -> bytes:
        while True:
            block = self.source.read(_BLOCK_BYTES)
            if not block:
                return b""
            cut = block.find(b"\n") + 1 or block.find(b"\r") + 1
            if cut:
                return block[cut:]

    @staticmethod
    def split(text: str) -> Iterable[str]:
        # str.splitlines also breaks at form feeds, separators and U+2028/2029, which a CSV
        # line may hold; only then pay for io.StringIO, which breaks at \r, \n and \r\n alone.
        if any(mark in text for mark in _OTHER_LINE_BREAKS):
            return io.StringIO(text, newline="")
        return text.splitlines(keepends=True)

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self.blocks())


def open_table(
    source: BinaryIO,
    known: Sequence[str],
    required: Sequence[str],
    build: Callable[[int, tuple[str, ...]], Record | Rejection],
) -> CsvTable[Record]:
    """Detect encoding and delimiter, read the header now, and stream the records.

    Encoding: a UTF-8 BOM means UTF-8; otherwise UTF-8 if the first megabyte decodes as UTF-8
    (or most of its accented lines do), else Windows-1252. Delimiter: ';' or ',', whichever the
    header has more of.
    """
    sample = source.read(_SAMPLE_BYTES)
    if not sample:
        raise FileFormatError("the file is empty")
    codec, encoding, sample = _detect_encoding(sample)
    physical = _Lines(sample, source, codec)
    lines = iter(physical)

    header_line = 0
    for header in lines:
        header_line += 1
        if header.strip():
            break
    else:
        raise FileFormatError("the file has no header line")
    if TOO_LONG_MARK in header:
        raise FileFormatError(f"line {header_line}: the header line is too long: is this a CSV file?")
    if _BAD_TEXT.search(header):
        raise FileFormatError(f"line {header_line}: the header is not decodable as {codec}")
    delimiter = ";" if header.count(";") >= header.count(",") else ","
    try:
        columns = [name.strip() for name in next(csv.reader([header], delimiter=delimiter))]
    except (csv.Error, StopIteration) as error:
        raise FileFormatError(f"line {header_line}: the header cannot be read as CSV") from error

    keys = [column_key(name) for name in columns]
    position: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key in known:
            if key in position:
                raise FileFormatError(f"line {header_line}: column '{key}' appears twice in the header")
            position[key] = index
    missing = [name for name in required if name not in position]
    if missing:
        raise FileFormatError(
            f"line {header_line}: required columns missing from the header: {', '.join(missing)}"
        )
    extra = [name for name, key in zip(columns, keys, strict=True) if key not in known]

    width = len(columns)
    # A column the file lacks reads as the "" appended to every such row.
    pad = any(name not in position for name in known)
    getter = itemgetter(*(position.get(name, width) for name in known))
    reader = csv.reader(lines, delimiter=delimiter)
    undecodable = f"not decodable as {codec}"

    def records() -> Iterator[Record | Rejection]:
        while True:
            line = header_line + reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield Rejection(line, WHOLE_ROW, MALFORMED_CSV)
                continue
            if physical.dirty:
                text = "".join(fields)
                if not text.isascii() and _BAD_TEXT.search(text):
                    yield Rejection(line, WHOLE_ROW, LINE_TOO_LONG if TOO_LONG_MARK in text else undecodable)
                    continue
            if not fields or (not fields[0].strip() and not "".join(fields).strip()):
                continue
            if len(fields) != width:
                # Spreadsheets pad rows with empty cells; anything else means shifted columns.
                if len(fields) < width or "".join(fields[width:]).strip():
                    yield Rejection(line, WHOLE_ROW, WRONG_FIELD_COUNT)
                    continue
                del fields[width:]
            if pad:
                fields.append("")
            yield build(line, getter(fields))

    return CsvTable(encoding, delimiter, columns, extra, records())


_DIPLOMA_CODES: dict[str, Diploma | None] = {d.value: d for d in Diploma}
_DIPLOMA_CODES[""] = None
_DIPLOMA_CODES[Diploma.AUCUN.value] = None
_UNSEEN = object()
_MEMO_LIMIT = 100_000


def open_siei(source: BinaryIO, as_of: date) -> SieiFile:
    """Open a SIEI campaign file: the header is checked now (FileFormatError), rows are read as
    `records` is iterated, one at a time. Line numbers are the file's (the header is line 1)."""
    table = open_table(source, SIEI_COLUMNS, SIEI_REQUIRED_COLUMNS, _siei_record_builder(as_of))
    return SieiFile(table.encoding, table.delimiter, table.columns, table.extra_columns, table.records)


def _slot_setter_constructor(cls: type) -> Callable[..., object]:
    """A constructor for a frozen slotted dataclass that sets the slots directly.

    A frozen dataclass's own __init__ goes through object.__setattr__ once per field, which for
    a SIEI row is most of the cost of parsing it; the slots' descriptors do the same job at
    half the cost. The instance is the same frozen object either way (a test checks equality).
    """
    names = [name for name in cls.__dataclass_fields__]  # type: ignore[attr-defined]
    scope = {"new": object.__new__, "cls": cls}
    scope.update({f"set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(f"    set_{name}(row, {name})\n" for name in names)
    exec(f"def construct({', '.join(names)}):\n    row = new(cls)\n{body}    return row\n", scope)
    return scope["construct"]  # type: ignore[return-value]


_new_siei_row = _slot_setter_constructor(SieiRow)


def _siei_record_builder(as_of: date) -> Callable[[int, tuple[str, ...]], SieiRow | Rejection]:
    # Dates, postcodes and diplomas repeat a lot over a million rows: each is parsed once.
    dates: dict[str, date | None] = {}
    postcodes: dict[str, str | None] = {}
    diplomas = _DIPLOMA_CODES
    strip = str.strip
    new_row = _new_siei_row

    def build(line: int, values: tuple[str, ...]) -> SieiRow | Rejection:
        (
            ine,
            nom,
            prenom,
            naissance,
            sexe,
            code_postal,
            commune,
            adresse,
            telephone,
            courriel,
            uai,
            formation,
            sortie,
            diplome,
        ) = map(strip, values)

        # Rule order: a missing field first, then each format in column order, then the date check.
        if not (ine and nom and prenom and naissance and sortie and code_postal):
            field = _first_missing((ine, nom, prenom, naissance, sortie, code_postal), SIEI_REQUIRED_FIELDS)
            return Rejection(line, field, MISSING)
        if len(ine) == 11 and ine.isalnum() and ine.isascii():
            ine = ine.upper()
        else:
            ine = normalise_ine(ine)
            if not is_valid_ine(ine):
                return Rejection(line, "ine", INVALID_INE)
        date_naissance = dates.get(naissance, _UNSEEN)
        if date_naissance is _UNSEEN:
            date_naissance = _remember(dates, naissance, parse_date(naissance))
        if date_naissance is None:
            return Rejection(line, "date_naissance", INVALID_DATE)
        postcode = postcodes.get(code_postal, _UNSEEN)
        if postcode is _UNSEEN:
            postcode = _remember(postcodes, code_postal, normalise_code_postal(code_postal))
        if postcode is None:
            return Rejection(line, "code_postal", INVALID_POSTCODE)
        date_sortie = dates.get(sortie, _UNSEEN)
        if date_sortie is _UNSEEN:
            date_sortie = _remember(dates, sortie, parse_date(sortie))
        if date_sortie is None:
            return Rejection(line, "date_sortie", INVALID_DATE)
        diploma = diplomas.get(diplome, _UNSEEN)
        if diploma is _UNSEEN:
            diploma = diplomas.get(diplome.upper(), _UNSEEN)
            if diploma is _UNSEEN:
                return Rejection(line, "diplome", UNKNOWN_DIPLOMA)
        if date_sortie > as_of:  # type: ignore[operator]
            return Rejection(line, "date_sortie", SORTIE_AFTER_AS_OF)
        return new_row(  # type: ignore[return-value]
            line,
            ine,
            nom,
            prenom,
            date_naissance,
            sexe or None,
            postcode,
            commune or None,
            adresse or None,
            telephone or None,
            courriel or None,
            uai or None,
            formation or None,
            date_sortie,
            diploma,
        )

    return build


def _remember(memo: dict, key: str, value: object) -> object:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def _first_missing(values: Sequence[str], names: Sequence[str]) -> str:
    return next(name for value, name in zip(values, names, strict=True) if not value)
