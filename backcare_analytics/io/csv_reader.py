"""CSV exports: encoding and delimiter sniffed, every cell text, row numbers as in the file.

A fast path hands files without line breaks inside quotes to pyarrow's CSV reader; anything it
cannot read exactly (ragged rows, quoted line breaks, a truncated last cell, bytes that are not
UTF-8) goes through the ``csv`` module record by record, which refuses bad rows one by one and
never hits its field-size limit.

Encoding (``docs/export-format.md``, *CSV*): a byte-order mark decides; otherwise UTF-8. A file
that is UTF-8 apart from some invalid bytes (it holds at least one valid non-ASCII UTF-8
character, or a UTF-8 byte-order mark) is read as UTF-8 and only the rows holding those bytes
are refused (``bad_encoding``). A file with no valid non-ASCII UTF-8 at all is read as
Windows-1252 when it decodes cleanly as such, with a warning naming the encoding; otherwise
it is refused (``not_utf_decodable``).

Quotes follow RFC 4180 leniently, as spreadsheet programs and Python's ``csv`` do: a quote opens
a quoted cell only at the start of a cell; elsewhere (``about 5" long``) it is a literal
character. A file ends "inside a quoted cell" (its last row refused as truncated) only when the
last record's quoted cell is really left open at the end of the file.

Before anything is parsed the file's lines and header columns are counted from the bytes and
checked against the limits (:func:`backcare_analytics.io.readers.check_shape`).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.io.readers import (
    FileRefused,
    RawTable,
    build_table,
    check_lines,
    check_shape,
    detect_kind,
    header_names,
    raw_json,
)

__all__ = ["read_csv"]

#: A byte that was not UTF-8, kept by the ``surrogateescape`` error handler.
_ESCAPED = re.compile("[\udc80-\udcff]")
#: A valid non-ASCII character (not an escaped byte): the file is UTF-8 text.
_UTF8_TEXT = re.compile("[^\x00-\x7f\udc80-\udcff]")
_NOT_UTF8 = (
    "some lines hold bytes that are not UTF-8: those rows are refused (bad_encoding); "
    "fix: export the file as UTF-8"
)
_CP1252 = (
    "read as Windows-1252 (cp1252), since the file is not UTF-8; check accented letters, "
    "or export the file as UTF-8"
)

Errors = list[tuple[int, str, str, str, str]]


@dataclass(frozen=True)
class _Decoded:
    """The file as UTF-8 bytes (``buf``), or, when it is UTF-8 holding some invalid bytes, as
    text with those bytes escaped (``lossy``); ``warnings`` name a guessed encoding."""

    buf: bytes
    lossy: str | None = None
    warnings: tuple[str, ...] = ()


def _decode(data: bytes, where: str) -> _Decoded:
    """The encoding rule of the module docstring."""
    if data.startswith(codecs.BOM_UTF8):
        return _utf8(data[3:], where, declared=True)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise FileRefused(
                "not_utf_decodable", f"{where}: broken UTF-16 text; fix: export as UTF-8"
            ) from None
        if "\x00" in text:
            raise FileRefused("not_utf_decodable", f"{where}: the text holds NUL characters")
        return _Decoded(text.encode("utf-8"))
    if b"\x00" in data:
        raise FileRefused(
            "not_utf_decodable",
            f"{where}: the file holds NUL bytes (binary, or UTF-16 without a byte-order mark); "
            "fix: export as UTF-8 text",
        )
    return _utf8(data, where, declared=False)


def _utf8(data: bytes, where: str, *, declared: bool) -> _Decoded:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return _Decoded(data)
    text = data.decode("utf-8", "surrogateescape")
    if declared or _UTF8_TEXT.search(text):
        return _Decoded(b"", text, (_NOT_UTF8,))
    del text
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise FileRefused(
            "not_utf_decodable",
            f"{where}: the text is neither UTF-8 nor Windows-1252; fix: export it as UTF-8",
        ) from None
    return _Decoded(text.encode("utf-8"), None, (_CP1252,))


def _sniff_delimiter(header_line: str) -> tuple[str, int]:
    """The delimiter of a header line and its number of columns (quotes respected)."""
    outside = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: outside.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return (best, counts[best] + 1) if counts[best] > 0 else (",", 1)


def read_csv(data: bytes, settings: Settings, where: str) -> tuple[list[RawTable], int]:
    """Read a CSV export into one raw table; return it and the number of blank lines.

    Raises
    ------
    FileRefused
        ``too_many_rows``, ``too_wide``, ``too_many_cells`` (checked before parsing),
        ``not_utf_decodable``, ``empty_file``, ``bad_csv`` and the header's refusals.
    """
    check_lines(data, settings, where)
    decoded = _decode(data, where)
    if decoded.lossy is not None:
        return _read_lossy(decoded, len(data), settings, where)
    buf, warnings = decoded.buf, decoded.warnings
    del decoded
    if b"\r" in buf and b"\n" not in buf:  # classic Mac line ends: CR only
        buf = buf.replace(b"\r", b"\n")
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(arr)]))
    if len(arr) and arr[-1] == 10:  # no line after the final newline
        starts, ends = starts[:-1], ends[:-1]
    lengths = ends - starts
    cr_only = (lengths == 1) & (arr[np.minimum(starts, max(len(arr) - 1, 0))] == 13)
    blank_line = (lengths == 0) | cr_only
    nonblank = np.flatnonzero(~blank_line)
    if not len(nonblank):
        raise FileRefused("empty_file", f"{where}: the file holds only blank lines")
    h = int(nonblank[0])
    header_line = buf[starts[h] : ends[h]].decode("utf-8").rstrip("\r")
    delim, width = _sniff_delimiter(header_line)
    check_shape(len(data), len(nonblank) - 1, width, settings, where)
    quotes = np.flatnonzero(arr == 34)
    odd_total = bool(len(quotes) % 2)
    # a line break inside quotes: an odd number of quotes before some newline
    spans = bool(len(quotes)) and bool((np.searchsorted(quotes, newlines) % 2).any())
    del arr, quotes, newlines
    try:
        header = next(csv.reader([header_line], delimiter=delim))
    except csv.Error:
        spans = True  # the record-by-record path explains it
    if not spans and not odd_total:
        names = header_names(header, where)
        body = memoryview(buf)[ends[h] + 1 :] if h + 1 < len(starts) else memoryview(b"")
        data_lines = nonblank[1:]
        fast = _csv_fast(body, delim, len(names), len(data_lines))
        if fast is not None:
            frame, kept = fast
            frame.columns = names
            blank = int(blank_line.sum()) + int((~kept).sum())
            numbers = (data_lines + 1)[kept]
            table = _csv_table(frame, numbers, [], delim, settings, where, warnings)
            return [table], blank
    return _csv_slow(buf.decode("utf-8"), delim, settings, where, warnings)


def _read_lossy(
    decoded: _Decoded, size: int, settings: Settings, where: str
) -> tuple[list[RawTable], int]:
    """A UTF-8 file holding some bytes that are not UTF-8: record by record, refusing the
    rows that hold them (the header must be clean)."""
    text = decoded.lossy or ""
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    if _ESCAPED.search(header_line):
        raise FileRefused(
            "not_utf_decodable",
            f"{where}: the header line holds bytes that are not UTF-8; fix: export as UTF-8",
        )
    delim, width = _sniff_delimiter(header_line)
    check_shape(size, text.count("\n"), width, settings, where)
    return _csv_slow(text, delim, settings, where, decoded.warnings)


def _csv_fast(
    body: memoryview, delim: str, width: int, lines: int
) -> tuple[pd.DataFrame, np.ndarray] | None:
    """pyarrow's CSV reader on a body with no line breaks inside quotes: the rows that are not
    all blank cells, and which of the ``lines`` rows those are. ``None`` when it cannot read
    the body exactly (ragged rows, odd quoting): the slow path then explains each row."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not bytes(body[:4096]).strip() and not bytes(body).strip():
        empty = pd.DataFrame({f"c{i}": pd.Series(dtype="str") for i in range(width)})
        return empty, np.zeros(lines, dtype=bool)  # whitespace only: every line is blank
    names = [f"c{i}" for i in range(width)]
    try:
        table = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pcsv.ReadOptions(column_names=names, block_size=16 << 20),
            parse_options=pcsv.ParseOptions(delimiter=delim, newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException, ValueError):
        return None
    if table.num_rows != lines:
        return None
    kept = ~_blank_cells(table)
    if not kept.all():
        table = table.filter(pa.array(kept))
    frame = table.to_pandas()
    return (frame if (frame.dtypes == "str").all() else frame.astype("str")), kept


def _blank_cells(table: object) -> np.ndarray:
    """Rows whose every cell is empty or whitespace (a spreadsheet's empty row, ``,,,``),
    column by column while any row is still a candidate (usually one column)."""
    import pyarrow.compute as pc

    blank = None
    for column in table.columns:  # type: ignore[attr-defined]
        empty = pc.or_(pc.equal(pc.utf8_length(column), 0), pc.utf8_is_space(column))
        blank = empty if blank is None else pc.and_(blank, empty)
        if not pc.any(blank).as_py():
            break
    if blank is None:
        return np.zeros(table.num_rows, dtype=bool)  # type: ignore[attr-defined]
    return np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)


class _Lines:
    """The lines of a text, remembering whether the reader asked past the last one."""

    def __init__(self, text: str) -> None:
        self._lines: Iterator[str] = iter(io.StringIO(text))
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.exhausted = True
            raise


def _ends_inside_quotes(text: str, first_line: int, delim: str) -> bool:
    """Whether the record starting at line ``first_line`` (1-based) leaves a quoted cell open
    at the end of ``text``: the ``csv`` module in strict mode fails only there at the end."""
    at = len(text)
    for _ in range(text.count("\n", 0) - (first_line - 1) + 1):
        at = text.rfind("\n", 0, at)
        if at < 0:
            break
    tail = _Lines(text[at + 1 :])
    try:
        for _ in csv.reader(tail, delimiter=delim, strict=True):
            pass
    except csv.Error:
        return tail.exhausted
    return False


def _csv_slow(
    text: str, delim: str, settings: Settings, where: str, warnings: tuple[str, ...] = ()
) -> tuple[list[RawTable], int]:
    """The csv module, record by record: exact row numbers for quoted line breaks, ragged
    rows and rows holding bytes that are not UTF-8 refused one by one, no field-size crash."""
    limit = settings.max_field_chars
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, settings.max_file_bytes + 1))
    try:
        names, rows, numbers, errors, blank = _records(text, delim, limit, where)
    finally:
        csv.field_size_limit(old_limit)
    if names is None:
        raise FileRefused("empty_file", f"{where}: the file holds only blank lines")
    last_is_row = bool(numbers) and (not errors or numbers[-1] > errors[-1][0])
    if last_is_row and _ends_inside_quotes(text, numbers[-1], delim):
        errors.append(
            (
                numbers.pop(),
                "",
                "bad_record",
                "the file ends inside a quoted cell (truncated?); fix: export it again",
                raw_json(rows.pop(), limit),
            )
        )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({f"c{i}": pd.Series(col, dtype="str") for i, col in enumerate(columns)})
    frame.columns = names
    numbers_arr = np.array(numbers, dtype=np.int64)
    table = _csv_table(frame, numbers_arr, errors, delim, settings, where, warnings)
    return [table], blank


class _Cursor:
    """The lines of a text as an iterator that can be moved back (to read lines again)."""

    def __init__(self, text: str) -> None:
        self.lines = io.StringIO(text).readlines()
        self.pos = 0  # index of the next line to hand out

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _quotes_close_properly(lines: list[str], delim: str) -> bool:
    """Whether ``lines`` read as one CSV record whose every quoted cell closes before a
    delimiter or the line's end (the ``csv`` module's strict mode)."""
    try:
        return len(list(csv.reader(lines, delimiter=delim, strict=True))) == 1
    except csv.Error:
        return False


def _records(
    text: str, delim: str, limit: int, where: str
) -> tuple[list[str] | None, list[list[str]], list[int], Errors, int]:
    """Header names, the rows read and their first line numbers, the rows refused, and the
    number of blank rows (blank lines and rows of blank cells).

    A record spanning several lines must close its quoted cells properly. One that does not
    (a stray ``"`` opening a cell, closed lines later in the middle of another cell) would
    swallow the rows between into one cell: its first line is refused ``bad_record`` and the
    lines after it are read again, so no row is lost into another's cell."""
    cursor = _Cursor(text)
    reader = csv.reader(cursor, delimiter=delim)
    names: list[str] | None = None
    rows: list[list[str]] = []
    numbers: list[int] = []
    errors: Errors = []
    blank = 0
    while True:
        start = cursor.pos + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error:
            if names is None:
                raise FileRefused(
                    "bad_csv", f"{where}: the header line is not readable CSV"
                ) from None
            errors.append((start, "", "bad_record", "the line is not readable CSV", ""))
            continue
        if cursor.pos > start and not _quotes_close_properly(
            cursor.lines[start - 1 : cursor.pos], delim
        ):
            detail = "a quote opens a cell that does not close before the next delimiter"
            raw = _raw(cursor.lines[start - 1].rstrip("\r\n").split(delim), limit)
            errors.append((start, "", "bad_record", detail, raw))
            cursor.pos = start  # read the following lines again, each on its own
            reader = csv.reader(cursor, delimiter=delim)
            continue
        if not any(cell.strip() for cell in record):
            blank += 1
            continue
        if names is None:
            names = header_names(record, where)
            continue
        refusal = _refusal(record, names)
        if refusal is not None:
            errors.append((start, refusal[0], refusal[1], refusal[2], _raw(record, limit)))
            continue
        rows.append(record)
        numbers.append(start)
    return names, rows, numbers, errors, blank


def _refusal(record: list[str], names: list[str]) -> tuple[str, str, str] | None:
    """Why a record cannot be a row: ``(column, reason, detail)``, or ``None``."""
    if len(record) != len(names):
        return "", "bad_record", f"the row has {len(record)} cells, the header {len(names)}"
    for name, cell in zip(names, record, strict=True):
        if _ESCAPED.search(cell):
            detail = "the cell holds bytes that are not UTF-8; fix: export the file as UTF-8"
            return name, "bad_encoding", detail
    return None


def _raw(record: list[str], limit: int) -> str:
    """The raw record for the rejects table, with bytes that were not UTF-8 shown as U+FFFD."""
    cells = [_ESCAPED.sub("\ufffd", cell) for cell in record]
    return raw_json(cells, limit)


def _csv_table(
    frame: pd.DataFrame,
    numbers: np.ndarray,
    errors: Errors,
    delim: str,
    settings: Settings,
    where: str,
    warnings: tuple[str, ...] = (),
) -> RawTable:
    if not len(frame) and not errors:
        raise FileRefused(
            "empty_file", f"{where}: the file has a header but no rows; fix: check the period"
        )
    kind = detect_kind(frame.columns, None, where)
    return build_table(
        kind, frame, numbers, errors, "csv", settings, where,
        warnings=warnings, decimal_comma=delim != ",",
    )  # fmt: skip
