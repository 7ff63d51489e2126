"""Readers of the export contract (``docs/export-format.md``): bytes in, all-text frames out.

:func:`read_export` reads one CSV, JSON, JSON Lines, XLSX or FHIR R4 file into a
:class:`RawExport`: one :class:`RawTable` per kind of record found, every cell pandas ``str``
text (``""`` for blank), canonical column names, the file's own row numbers, and the rows refused
while reading (``row_errors``). Nothing is interpreted here: values are parsed in
:mod:`backcare_analytics.io.normalize`.

A whole file is refused with :class:`FileRefused` (attribute ``reason``) when it cannot be read
safely or has the wrong shape: too large (checked before reading it), empty, undecodable, a
duplicated or missing column, nested too deep, an XLSX zip bomb or XML entity trick.

>>> export = read_export(Path("p.csv"),
...     data=b"Patient ID;performed_at;Exercise;reps\\nP001;2026-03-02 07:15;Bridge;00123\\n")
>>> t = export.tables[0]
>>> t.kind, list(t.frame.columns), t.frame.iloc[0]["reps"], t.row_numbers.tolist()
('sessions', ['patient_id', 'performed_at', 'exercise', 'reps'], '00123', [2])
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings, get_settings
from backcare_analytics.errors import InputDataError
from backcare_analytics.schemas.raw import (
    PAIN_COLUMNS,
    PATIENT_COLUMNS,
    SESSION_COLUMNS,
    RawPain,
    RawPatients,
    RawSessions,
    required_columns,
)

__all__ = [
    "KNOWN_COLUMNS",
    "TIME_COLUMNS",
    "FileRefused",
    "RawExport",
    "RawTable",
    "build_table",
    "check_lines",
    "check_refused",
    "check_shape",
    "detect_kind",
    "check_json_text",
    "check_record_count",
    "duplicate_column",
    "estimated_peak_bytes",
    "header_names",
    "internal_error",
    "normalize_header",
    "raw_json",
    "read_export",
    "shown_name",
    "unreadable",
]

Kind = Literal["sessions", "pain", "patients"]

#: Columns read for each kind (everything else is ignored with a warning).
KNOWN_COLUMNS: dict[str, tuple[str, ...]] = {
    "sessions": (*SESSION_COLUMNS, "updated_at"),
    "pain": (*PAIN_COLUMNS, "updated_at"),
    "patients": (*PATIENT_COLUMNS, "updated_at"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "sessions": required_columns(RawSessions),
    "pain": required_columns(RawPain),
    "patients": required_columns(RawPatients),
}
#: Columns holding times or dates: a number there in an XLSX file is an Excel serial date.
TIME_COLUMNS = frozenset({"performed_at", "recorded_at", "updated_at", "programme_start"})
_MARKERS: dict[str, tuple[str, str]] = {
    "sessions": ("exercise", "performed_at"),
    "pain": ("back_pain", "recorded_at"),
    "patients": ("timezone", "programme_start"),
}
SUPPORTED_MAJOR_VERSION = "1"
ERROR_COLUMNS = ("row", "column", "reason", "detail", "raw")
#: Longest warning kept (the report and the ledger store warnings), and the longest column
#: name a message shows.
MAX_WARNING_CHARS = 300
SHOWN_NAME_CHARS = 40
MAX_UNKNOWN_COLUMN_WARNINGS = 10
#: Peak memory of importing one CSV file: the interpreter with its libraries (measured
#: 271-286 MiB on 2026-12-02 for a file of one to 200 rows), and per byte, per row and per
#: cell of the file: upper bounds of the valid shapes measured (docs/import.md, *Memory*:
#: 600k rows of 13 cells in 48 MiB peaked at 833-857 MiB, 1.1M rows of 4 cells in 38 MiB at
#: 1,148 MiB) and of the hostile ones of ``benchmarks/bench_memory.py`` (a cell of a wide row
#: ~15 B, a byte of a long cell a few bytes). A *refused* row costs ~4.4 KB more, from
#: normalising to the store (issue frames, the rejects table, its raw JSON, the writer): that
#: part is checked once the refusals are known, before their rejects are built
#: (:func:`check_refused`).
PEAK_BASE_BYTES = 288 * 2**20
PEAK_PER_BYTE = 4
PEAK_PER_ROW = 650
PEAK_PER_CELL = 16
PEAK_PER_REFUSED_ROW = 5_000


class FileRefused(InputDataError):
    """The whole file is refused; ``reason`` is a reason code, the message says why and how to
    fix it, naming the file but never a patient's values."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RawTable:
    """One kind of record read from a file, all cells text.

    ``frame`` has canonical column names (only known columns and ``updated_at``) and a plain
    RangeIndex; ``row_numbers[i]`` is the file's row number of ``frame`` row ``i`` as the export
    contract defines it. ``row_errors`` lists rows refused while reading (columns ``row, column,
    reason, detail, raw``). ``rows_read == len(frame) + len(row_errors)``. Excel date cells and
    serial numbers in time columns are already ISO text without offset. ``decimal_comma`` says
    whether ``"12,5"`` may be read as 12.5 (not in a comma-separated file).
    """

    kind: Kind
    frame: pd.DataFrame
    row_numbers: np.ndarray
    row_errors: pd.DataFrame
    source_format: str
    warnings: tuple[str, ...] = ()
    decimal_comma: bool = True
    #: The file's name and size in bytes (set by :func:`read_export`; ``""`` and 0 for a table
    #: built otherwise): the second memory check names the file and counts its bytes.
    source: str = ""
    source_bytes: int = 0

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.row_errors)


@dataclass(frozen=True)
class RawExport:
    """A file as read: its hash, size, format, tables and the blank lines skipped.

    ``tables`` holds at most one table per kind, so a kind and a row number name one row of
    the file (the ledger, the quarantine and its retry rely on it).
    """

    path: Path
    sha256: str
    size_bytes: int
    source_format: str
    tables: tuple[RawTable, ...]
    blank_rows: int = 0
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def normalize_header(name: str) -> str:
    """A column name as matched: NFKC, case-folded, trimmed, spaces and hyphens as ``_``.

    >>> normalize_header(" Pain-Before "), normalize_header("\\ufeffPATIENT ID")
    ('pain_before', 'patient_id')
    """
    text = unicodedata.normalize("NFKC", str(name)).replace("\ufeff", "").strip().casefold()
    return re.sub(r"[\s\-]+", "_", text)


def raw_json(record: dict[str, Any] | Sequence[Any] | Any, limit: int) -> str:
    """The raw record as JSON text, cut to ``limit`` characters."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(record), ensure_ascii=False)
    return text[:limit]


def error_frame(errors: Iterable[tuple[int, str, str, str, str]]) -> pd.DataFrame:
    """The ``row_errors`` frame from ``(row, column, reason, detail, raw)`` tuples."""
    rows = list(errors)
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return pd.DataFrame(
        {
            name: pd.Series(list(values), dtype="int64" if name == "row" else "str")
            for name, values in zip(ERROR_COLUMNS, columns, strict=True)
        }
    )


def detect_kind(columns: Iterable[str], declared: str | None, where: str) -> Kind:
    """The kind of a table from its columns (or the JSON envelope's ``kind``)."""
    cols = set(columns)
    if declared is not None:
        if declared not in KNOWN_COLUMNS:
            raise FileRefused(
                "unknown_kind",
                f"{where}: the envelope's kind is not one of sessions, pain, patients; "
                "fix: correct 'kind' or leave it out",
            )
        return declared  # type: ignore[return-value]
    found = [k for k, marks in _MARKERS.items() if set(marks) <= cols]
    if len(found) == 1:
        return found[0]  # type: ignore[return-value]
    if len(found) > 1:
        raise FileRefused(
            "unknown_kind",
            f"{where}: the columns mix several kinds of file ({', '.join(found)}); "
            "fix: export session logs, pain diaries and patients to separate files",
        )
    partial = [(k, m) for k, m in _MARKERS.items() if cols & set(m)]
    if partial:
        kind, marks = partial[0]
        missing = [m for m in marks if m not in cols]
        raise FileRefused(
            "missing_column",
            f"{where}: looks like a {kind} file but has no column {', '.join(missing)}; "
            "fix: add the column (see docs/export-format.md)",
        )
    raise FileRefused(
        "unknown_kind",
        f"{where}: cannot tell the kind of file from its columns; expected exercise + "
        "performed_at (session log), back_pain + recorded_at (pain diary) or timezone + "
        "programme_start (patients)",
    )


def build_table(
    kind: Kind,
    frame: pd.DataFrame,
    row_numbers: np.ndarray,
    errors: list[tuple[int, str, str, str, str]],
    source_format: str,
    settings: Settings,
    where: str,
    *,
    warnings: Sequence[str] = (),
    decimal_comma: bool = True,
) -> RawTable:
    """Keep known columns, check required ones, refuse over-long cells, and wrap up."""
    known = KNOWN_COLUMNS[kind]
    unknown = [c for c in frame.columns if c not in known]
    warn = [w[:MAX_WARNING_CHARS] for w in (*warnings, *_unknown_column_warnings(unknown))]
    missing = [c for c in REQUIRED[kind] if c not in frame.columns]
    if missing:
        raise FileRefused(
            "missing_column",
            f"{where}: the {kind} file has no column {', '.join(missing)}; "
            "fix: add it (see docs/export-format.md)",
        )
    if unknown:
        frame = frame[[c for c in frame.columns if c in known]]
    if not (frame.dtypes == "str").all():
        frame = frame.astype("str")
    frame = frame.reset_index(drop=True)
    row_numbers = np.asarray(row_numbers, dtype=np.int64)
    limit = settings.max_field_chars
    too_long = np.zeros(len(frame), dtype=bool)
    first_col = np.full(len(frame), "", dtype=object)
    for col in frame.columns:
        if _longest(frame[col]) <= limit:
            continue
        over = (frame[col].str.len() > limit).to_numpy(dtype=bool, na_value=False)
        first_col[over & ~too_long] = col
        too_long |= over
    if too_long.any():
        for pos in np.flatnonzero(too_long):
            record = frame.iloc[pos].to_dict()
            errors.append(
                (
                    int(row_numbers[pos]),
                    str(first_col[pos]),
                    "field_too_long",
                    f"a cell is longer than {limit} characters; fix: shorten it",
                    raw_json({k: v[:limit] for k, v in record.items()}, limit),
                )
            )
        frame = frame.loc[~too_long].reset_index(drop=True)
        row_numbers = row_numbers[~too_long]
    err = error_frame(sorted(errors, key=lambda e: e[0]))
    return RawTable(kind, frame, row_numbers, err, source_format, tuple(warn), decimal_comma)


def shown_name(name: str) -> str:
    """A column name as a message shows it: quoted, cut to ``SHOWN_NAME_CHARS`` characters
    (a header line can hold anything, a patient's note included).

    >>> shown_name("colour"), shown_name("x" * 100)[-4:]
    ("'colour'", "xx'…")
    """
    text = repr(name[:SHOWN_NAME_CHARS])
    return text + "…" if len(name) > SHOWN_NAME_CHARS else text


def _unknown_column_warnings(unknown: Sequence[str]) -> list[str]:
    """One warning per ignored column, at most ``MAX_UNKNOWN_COLUMN_WARNINGS``, then a count."""
    distinct = list(dict.fromkeys(unknown))
    shown = distinct[:MAX_UNKNOWN_COLUMN_WARNINGS]
    warn = [
        f"ignored unknown column {shown_name(c)}" if c else "ignored a column without a header"
        for c in shown
    ]
    if len(distinct) > len(shown):
        warn.append(f"... and {len(distinct) - len(shown)} more unknown columns ignored")
    return warn


def _longest(cells: pd.Series) -> int:
    """The longest cell of a text column (0 when empty), computed in pyarrow when it can be."""
    if not len(cells):
        return 0
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.chunked_array(cells.array._pa_array)  # type: ignore[attr-defined]
        longest = pc.max(pc.utf8_length(arr)).as_py()
        return int(longest or 0)
    except (AttributeError, TypeError, ValueError, ImportError):
        return int(cells.str.len().max() or 0)


def record_cells(
    record: Any, limit: int, where: str = ""
) -> tuple[dict[str, str] | None, tuple[str, str, str] | None]:
    """A JSON record as ``{canonical column: text}``, or the reason it is refused.

    Numbers arrive as their literal text (see :func:`loads_json`); booleans become
    ``true``/``false``, ``null`` becomes ``""``; an object or array as a value refuses the
    record. Two keys naming one column (``back_pain`` and ``Back Pain``) refuse the whole file
    (``duplicate_column``), as a column named twice in a CSV header does.
    """
    if not isinstance(record, dict):
        return None, ("", "bad_record", "the record is not a JSON object")
    out: dict[str, str] = {}
    for key, value in record.items():
        col = normalize_header(key)
        if col in out:
            raise duplicate_column(col, where)
        if value is None:
            out[col] = ""
        elif isinstance(value, str):
            out[col] = value
        elif isinstance(value, bool):
            out[col] = "true" if value else "false"
        elif isinstance(value, dict | list):
            return None, (col, "bad_record", "a nested object or array where a value belongs")
        else:
            out[col] = str(value)
    return out, None


#: Characters of a column name or JSON key shown in a message (a hostile key may be huge).
def duplicate_column(name: str, where: str) -> FileRefused:
    """The refusal of a file naming one column twice (``name`` as normalised, cut short)."""
    return FileRefused(
        "duplicate_column",
        f"{where}: the column {shown_name(name)} appears twice; fix: remove or rename one of them",
    )


class _DuplicateKeyError(Exception):
    """A JSON object names one key twice (``json`` would silently keep the last value)."""

    def __init__(self, key: str) -> None:
        super().__init__("a JSON key given twice")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(
    parse_int=str, parse_float=str, parse_constant=str, object_pairs_hook=_unique_keys
)


def loads_json(text: str, where: str = "") -> Any:
    """``json.loads`` keeping numbers as their literal text (no float rounding, no 4300-digit
    limit, ``NaN``/``Infinity`` kept as text for the parser to refuse).

    An object naming one key twice refuses the file (``duplicate_column``, as a CSV header
    naming a column twice): ``json`` alone would keep the last value silently.

    >>> loads_json('{"reps": 10.0, "pain": NaN, "n": 1e999}')
    {'reps': '10.0', 'pain': 'NaN', 'n': '1e999'}
    >>> loads_json('{"reps": 1, "reps": 2}', "s.json")
    Traceback (most recent call last):
    ...
    backcare_analytics.io.readers.FileRefused: s.json: the column 'reps' appears twice; fix: remove or rename one of them
    """
    try:
        return _DECODER.decode(text)
    except _DuplicateKeyError as exc:
        raise duplicate_column(exc.key, where) from None


#: A JSON escape, read left to right: ``\uXXXX`` (group 1: the hex digits) or another one.
_JSON_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
#: An escape that may stand for a NUL or a surrogate (the cheap test before the exact scan).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def check_json_text(data: bytes, where: str) -> None:
    r"""Refuse JSON text whose strings would hold a NUL (``\u0000``) or a lone surrogate
    (``\ud800`` without its pair) as ``not_utf_decodable``: the CSV reader refuses a NUL the
    same way, and a lone surrogate is no character at all (it cannot be stored as UTF-8).

    Escapes are read left to right, so ``\\u0000`` (an escaped backslash, then ``u0000``) is
    text, not a NUL. Only text holding a suspect escape is scanned escape by escape.

    >>> check_json_text(rb'["\\u0000", "\ud83d\ude00"]', "x.json")
    >>> check_json_text(rb'["a\ud800"]', "x.json")
    Traceback (most recent call last):
    ...
    backcare_analytics.io.readers.FileRefused: x.json: the JSON holds a NUL character or a lone surrogate (an escape \u0000 or \ud800-\udfff); fix: export it as UTF-8 text
    """
    if _SUSPECT_ESCAPE.search(data) is None:
        return
    high_end = -1  # where a high surrogate's escape ended, while it waits for its low half
    for m in _JSON_ESCAPE.finditer(data):
        unit = int(m[1], 16) if m[1] is not None else -1
        low = 0xDC00 <= unit <= 0xDFFF
        if high_end >= 0:
            if not (low and m.start() == high_end):
                break  # a high surrogate without its low half right after it
            high_end = -1
        elif unit == 0 or low:
            break
        elif 0xD800 <= unit <= 0xDBFF:
            high_end = m.end()
    else:
        if high_end < 0:
            return
    raise FileRefused(
        "not_utf_decodable",
        f"{where}: the JSON holds a NUL character or a lone surrogate (an escape \\u0000 or "
        "\\ud800-\\udfff); fix: export it as UTF-8 text",
    )


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    r"""The deepest bracket nesting of a JSON text, found without recursion.

    Brackets inside strings do not count. Without escaped quotes (``\"``) a bracket is inside
    a string when an odd number of quotes precede it, found for every bracket at once; otherwise
    strings are blanked out with a regular expression first.

    >>> json_depth(b'[{"a": "[[[["}, [1, [2]]]'), json_depth(b'["\\"[[", {}]')
    (3, 2)
    """
    return json_shape(data)[0]


def json_shape(data: bytes, chunk: int = 1 << 18) -> tuple[int, int]:
    r"""The deepest bracket nesting of a JSON text and its number of objects (``{`` outside
    strings), found without decoding it (see :func:`json_depth`).

    The text is scanned ``chunk`` bytes at a time, carrying the depth and whether the chunk
    starts inside a string, so the scan's arrays stay a fixed size (a whole file of brackets
    once took 23 times its size).

    >>> json_shape(b'[{"a": "{{"}, {}, [{"b": 1}]]')
    (3, 3)
    """
    if b'\\"' in data or b"\\\\" in data:
        data = _JSON_STRING.sub(b'""', data)
    depth = deepest = objects = 0
    in_string = 0  # 1 when an odd number of quotes came before the chunk
    for start in range(0, len(data), chunk):
        arr = np.frombuffer(data, np.uint8, min(chunk, len(data) - start), start)
        quotes = np.flatnonzero(arr == 34)
        positions = np.flatnonzero((arr == 91) | (arr == 123) | (arr == 93) | (arr == 125))
        outside = positions[(np.searchsorted(quotes, positions) + in_string) % 2 == 0]
        brackets = arr[outside]
        if len(brackets):
            run = np.cumsum(np.where((brackets == 91) | (brackets == 123), 1, -1)) + depth
            deepest, depth = max(deepest, int(run.max())), int(run[-1])
            objects += int(np.count_nonzero(brackets == 123))
        in_string = (in_string + len(quotes)) % 2
    return deepest, objects


#: Fewer bytes than any record of the export contract takes in JSON, whose required column
#: names alone fill more (``{"patient_id":"P1","recorded_at":"2026-03-02","back_pain":1}``
#: is 61 bytes).
MIN_RECORD_BYTES = 32
#: A file may hold this many records whatever its size (its rows cost little memory).
RECORDS_ALWAYS_ALLOWED = 10_000


def check_record_count(
    count: int, size: int, where: str, record_bytes: int = MIN_RECORD_BYTES
) -> int:
    """The most records (JSON array items or objects, JSON Lines lines) a file of ``size``
    bytes may hold at one per ``record_bytes``, refusing it (``too_many_rows``) when ``count``
    is more.

    Each record costs a roughly fixed amount of memory on its way to the store (a Python
    object, a row of the frames and of the quarantine), whatever its size: a file of tiny
    records (``1``, ``{}``, ``x`` a line) would cost hundreds of times its size. Records of at
    least :data:`MIN_RECORD_BYTES` on average keep that a small multiple of the file size, and
    no real record is smaller. Blank lines are not records and cost nothing.

    >>> check_record_count(3, 100, "a.jsonl")
    10000
    >>> check_record_count(2_000_000, 2_000_000, "a.jsonl")
    Traceback (most recent call last):
    ...
    backcare_analytics.io.readers.FileRefused: a.jsonl: more than 62500 records in 2000000 bytes (fewer than 32 bytes a record: no export looks like this); fix: check that it is the export itself
    """
    most = max(size // record_bytes, RECORDS_ALWAYS_ALLOWED)
    if count > most:
        raise FileRefused(
            "too_many_rows",
            f"{where}: more than {most} records in {size} bytes (fewer than "
            f"{record_bytes} bytes a record: no export looks like this); fix: check that "
            "it is the export itself",
        )
    return most


def decode_utf8(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefused(
            "not_utf_decodable",
            f"{where}: JSON must be UTF-8; fix: export it as UTF-8",
        ) from None
    return text


def header_names(header: list[str], where: str) -> list[str]:
    """Normalised header names; a name given twice refuses the file."""
    names = [normalize_header(c) for c in header]
    seen: set[str] = set()
    for name in names:
        if name in seen and name != "":  # unnamed columns are ignored, not duplicates
            raise duplicate_column(name, where)
        seen.add(name)
    return names


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

_FORMATS = {
    ".csv": "csv", ".txt": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "jsonl",
    ".ndjson": "jsonl", ".xlsx": "xlsx",
}  # fmt: skip


def read_export(
    path: Path | str, settings: Settings | None = None, *, data: bytes | None = None
) -> RawExport:
    """Read one export file (or its ``data`` bytes, named by ``path``).

    Raises
    ------
    FileRefused
        With ``reason`` one of ``too_large``, ``empty_file``, ``not_utf_decodable``,
        ``too_many_rows``, ``too_wide``, ``too_many_cells``,
        ``duplicate_column``, ``missing_column``, ``unknown_kind``, ``bad_json_shape``,
        ``invalid_json``, ``truncated``, ``json_too_deep``, ``unsupported_version``,
        ``bad_xlsx``, ``xlsx_zip_bomb``, ``xml_entities``, ``unsupported_format``,
        ``duplicate_sheet``, ``unreadable``; ``internal_error`` for any other exception of a
        reader, so that one file never stops a batch.
        (``too_many_refused_rows`` comes later, from normalising: :func:`check_refused`.)
    """
    settings = settings or get_settings()
    path = Path(path)
    where = path.name
    if data is None:
        try:
            _check_size(path.stat().st_size, settings, where)
            data = path.read_bytes()
        except OSError as exc:
            raise unreadable(where, exc) from None
    _check_size(len(data), settings, where)
    sha = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise FileRefused(
            "unsupported_format",
            f"{where}: files ending in {suffix or '(nothing)'} are not read; fix: export as "
            ".csv, .json, .jsonl, .ndjson or .xlsx",
        )
    if not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"):
        raise FileRefused("empty_file", f"{where}: the file is empty; fix: export it again")
    try:
        tables, blank, warnings, fmt = _read_format(data, fmt, settings, where)
    except FileRefused:
        raise
    except Exception as exc:  # a reader's own defect: this file is refused, never the batch
        raise internal_error(where, exc) from exc
    tables = [replace(t, source=where, source_bytes=len(data)) for t in tables]
    return RawExport(path, sha, len(data), fmt, tuple(tables), blank, warnings)


def _read_format(
    data: bytes, fmt: str, settings: Settings, where: str
) -> tuple[list[RawTable], int, tuple[str, ...], str]:
    """The tables, blank lines, warnings and format (``fhir`` found by content) of a file."""
    blank = 0
    warnings: tuple[str, ...] = ()
    if fmt == "xlsx":
        from backcare_analytics.io.xlsx_reader import read_xlsx

        tables, blank = read_xlsx(data, settings, where)
    elif fmt == "csv":
        from backcare_analytics.io.csv_reader import read_csv

        tables, blank = read_csv(data, settings, where)
    else:
        from backcare_analytics.io import fhir

        if fhir.looks_like_fhir(data, fmt):
            tables, blank, warnings = fhir.read_fhir(data, settings, where, fmt)
            fmt = "fhir"
        elif fmt == "json":
            from backcare_analytics.io.json_reader import read_json

            tables = read_json(data, settings, where)
        else:
            from backcare_analytics.io.json_reader import read_jsonl

            tables, blank = read_jsonl(data, settings, where)
    return tables, blank, warnings, fmt


def unreadable(where: str, exc: OSError) -> FileRefused:
    """The refusal of a file that cannot be opened or read (gone, no permission, an I/O
    error); the message names the error, never the file's contents."""
    why = exc.strerror or type(exc).__name__
    return FileRefused(
        "unreadable",
        f"{where}: cannot read the file ({why}); nothing of it was imported; fix: check that it "
        "still exists and that this user may read it, then import it again",
    )


def internal_error(where: str, exc: BaseException) -> FileRefused:
    """The refusal of a file whose reading or normalising failed unexpectedly (a defect of
    backcare_analytics): the file is refused, the rest of the batch goes on. The message
    names the error's type only: its text may quote the file's contents."""
    return FileRefused(
        "internal_error",
        f"{where}: could not be read ({type(exc).__name__}, an internal error); nothing of "
        "it was imported; fix: report it to the maintainers (without the file: it holds "
        "health data); the other files are not affected",
    )


def estimated_peak_bytes(size: int, rows: int, columns: int, refused: int = 0) -> int:
    """An upper bound of the peak memory of importing a CSV file of ``size`` bytes holding
    ``rows`` rows of ``columns`` cells, ``refused`` of those rows refused (see
    ``PEAK_PER_ROW`` and its neighbours).

    >>> estimated_peak_bytes(0, 0, 0) == PEAK_BASE_BYTES
    True
    >>> estimated_peak_bytes(0, 1, 0, refused=1) - estimated_peak_bytes(0, 1, 0)
    5000
    """
    cells = rows * columns
    return (
        PEAK_BASE_BYTES + PEAK_PER_BYTE * size + PEAK_PER_ROW * rows + PEAK_PER_CELL * cells
        + PEAK_PER_REFUSED_ROW * refused
    )  # fmt: skip


def check_lines(data: bytes, settings: Settings, where: str) -> None:
    """Refuse a text file of more than ``max_rows`` lines after its first (``too_many_rows``),
    counted in its bytes before anything is decoded or allocated per line."""
    if len(data) <= settings.max_rows:  # a line takes at least one byte
        return
    lines = data.count(b"\n") or data.count(b"\r")  # CR only: classic Mac line ends
    if lines - 1 > settings.max_rows:
        raise FileRefused(
            "too_many_rows",
            f"{where}: the file has {lines:,} lines, more than the limit of "
            f"{settings.max_rows:,}; fix: split the export by period or raise BACKCARE_MAX_ROWS",
        )


def check_shape(size: int, rows: int, columns: int, settings: Settings, where: str) -> None:
    """Refuse a file whose shape would take more memory than the limits allow, before it is
    parsed: more than ``max_columns`` columns (``too_wide``), more than ``max_rows`` rows
    (``too_many_rows``), or an estimated peak (:func:`estimated_peak_bytes`, every row
    valid) over ``max_memory_bytes`` (``too_many_cells``). What refused rows add is checked
    after normalising (:func:`check_refused`)."""
    if columns > settings.max_columns:
        raise FileRefused(
            "too_wide",
            f"{where}: the header has {columns:,} columns, more than the limit of "
            f"{settings.max_columns:,}; fix: export only the columns of docs/export-format.md "
            "or raise BACKCARE_MAX_COLUMNS",
        )
    if rows > settings.max_rows:
        raise FileRefused(
            "too_many_rows",
            f"{where}: the file has {rows:,} rows, more than the limit of "
            f"{settings.max_rows:,}; fix: split the export by period or raise BACKCARE_MAX_ROWS",
        )
    need = estimated_peak_bytes(size, rows, columns)
    if need > settings.max_memory_bytes:
        raise FileRefused(
            "too_many_cells",
            f"{where}: {rows:,} rows of {columns:,} columns would need about "
            f"{need / 2**20:,.0f} MiB to import, more than the limit of "
            f"{settings.max_memory_bytes / 2**20:,.0f} MiB; fix: split the export, drop unused "
            "columns, or raise BACKCARE_MAX_MEMORY_MIB",
        )


def check_refused(table: RawTable, refused: int, settings: Settings) -> None:
    """Refuse a table whose ``refused`` rows would take the import over ``max_memory_bytes``
    (``too_many_refused_rows``): the second stage of the memory bound, called once the
    refusals are known and before their rejects are built. The file's shape was checked
    before parsing at the cost of valid rows (:func:`check_shape`); each refused row adds
    ``PEAK_PER_REFUSED_ROW``. The message gives counts, never a row's values."""
    rows = table.rows_read
    need = estimated_peak_bytes(table.source_bytes, rows, len(table.frame.columns), refused)
    if need > settings.max_memory_bytes:
        where = table.source or "the file"
        raise FileRefused(
            "too_many_refused_rows",
            f"{where}: {refused:,} of its {rows:,} rows are refused, and recording each of "
            f"them would need about {need / 2**20:,.0f} MiB, more than the limit of "
            f"{settings.max_memory_bytes / 2**20:,.0f} MiB; nothing of the file is stored; "
            "fix: correct the rows (see docs/export-format.md), split the export, or raise "
            "BACKCARE_MAX_MEMORY_MIB",
        )


def _check_size(size: int, settings: Settings, where: str) -> None:
    if size > settings.max_file_bytes:
        mib = settings.max_file_bytes / 1024 / 1024
        raise FileRefused(
            "too_large",
            f"{where}: the file is larger than {mib:g} MiB; fix: split the export by month "
            "or raise BACKCARE_MAX_FILE_MIB",
        )
