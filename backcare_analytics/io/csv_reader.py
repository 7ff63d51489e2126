"""CSV exports: encoding and delimiter sniffed, every cell text, row numbers as in the file.

A fast path hands files without line breaks inside quotes to pyarrow's CSV reader; anything it
cannot read exactly (ragged rows, quoted line breaks, a truncated last cell) goes through the
``csv`` module record by record, which refuses bad rows one by one and never hits its
field-size limit.
"""

from __future__ import annotations

import codecs
import csv
import io
import re

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.io.readers import (
    FileRefused,
    RawTable,
    build_table,
    detect_kind,
    header_names,
    raw_json,
)

__all__ = ["read_csv"]


def _decode_text(data: bytes, where: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError:
            raise FileRefused(
                "not_utf_decodable",
                f"{where}: marked as UTF-8 but holds bytes that are not; fix: export it again",
            ) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise FileRefused(
                "not_utf_decodable", f"{where}: broken UTF-16 text; fix: export as UTF-8"
            ) from None
    if b"\x00" in data:
        raise FileRefused(
            "not_utf_decodable",
            f"{where}: the file holds NUL bytes (binary, or UTF-16 without a byte-order mark); "
            "fix: export as UTF-8 text",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _sniff_delimiter(header_line: str) -> str:
    outside = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: outside.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def read_csv(data: bytes, settings: Settings, where: str) -> tuple[list[RawTable], int]:
    text = _decode_text(data, where)
    if "\x00" in text:
        raise FileRefused("not_utf_decodable", f"{where}: the text holds NUL characters")
    # plain UTF-8 is handed on as it is; other encodings are re-encoded once
    buf = data if _is_plain_utf8(data) else text.encode("utf-8")
    if buf is data:
        del text  # decoded again only if the slow path needs it
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
    delim = _sniff_delimiter(header_line)
    quotes = np.flatnonzero(arr == 34)
    odd_total = bool(len(quotes) % 2)
    # a line break inside quotes: an odd number of quotes before some newline
    spans = bool(len(quotes)) and bool((np.searchsorted(quotes, newlines) % 2).any())
    try:
        header = next(csv.reader([header_line], delimiter=delim))
    except csv.Error:
        spans = True  # the record-by-record path explains it
    if not spans and not odd_total:
        names = header_names(header, where)
        body = memoryview(buf)[ends[h] + 1 :] if h + 1 < len(starts) else memoryview(b"")
        fast = _csv_fast(body, delim, len(names))
        data_lines = nonblank[1:]
        if fast is not None and len(fast) == len(data_lines):
            fast.columns = names
            blank = int(blank_line.sum())
            table = _csv_table(fast, data_lines + 1, [], delim, settings, where)
            return [table], blank
    text = buf.decode("utf-8")
    return _csv_slow(text, delim, odd_total, settings, where)


def _is_plain_utf8(data: bytes) -> bool:
    """UTF-8 without a byte-order mark (``_decode_text`` tried UTF-8 first)."""
    if data.startswith(codecs.BOM_UTF8):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _csv_fast(body: memoryview, delim: str, width: int) -> pd.DataFrame | None:
    """pyarrow's CSV reader on a body with no line breaks inside quotes; ``None`` when it
    cannot read it exactly (ragged rows, odd quoting): the slow path then explains each row."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if not bytes(body[:4096]).strip() and not bytes(body).strip():
        return pd.DataFrame({f"c{i}": pd.Series(dtype="str") for i in range(width)})
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
    frame = table.to_pandas()
    return frame if (frame.dtypes == "str").all() else frame.astype("str")


def _csv_slow(
    text: str, delim: str, odd_total: bool, settings: Settings, where: str
) -> tuple[list[RawTable], int]:
    """The csv module, record by record: exact row numbers for quoted line breaks, ragged
    rows refused one by one, no field-size crash."""
    limit = settings.max_field_chars
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, settings.max_file_bytes + 1))
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delim)
        names: list[str] | None = None
        rows: list[list[str]] = []
        numbers: list[int] = []
        errors: list[tuple[int, str, str, str, str]] = []
        blank = 0
        prev_end = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error:
                if names is None:
                    raise FileRefused(
                        "bad_csv", f"{where}: the header line is not readable CSV"
                    ) from None
                errors.append((prev_end + 1, "", "bad_record", "the line is not readable CSV", ""))
                prev_end = reader.line_num
                continue
            start = prev_end + 1
            prev_end = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                blank += 1
                continue
            if names is None:
                names = header_names(record, where)
                continue
            if len(record) != len(names):
                detail = f"the row has {len(record)} cells, the header {len(names)}"
                errors.append((start, "", "bad_record", detail, raw_json(record, limit)))
                continue
            rows.append(record)
            numbers.append(start)
    finally:
        csv.field_size_limit(old_limit)
    if names is None:
        raise FileRefused("empty_file", f"{where}: the file holds only blank lines")
    if odd_total and numbers and (not errors or numbers[-1] > errors[-1][0]):
        last = rows.pop()
        errors.append(
            (
                numbers.pop(),
                "",
                "bad_record",
                "the file ends inside a quoted cell (truncated?); fix: export it again",
                raw_json(last, limit),
            )
        )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({f"c{i}": pd.Series(col, dtype="str") for i, col in enumerate(columns)})
    frame.columns = names
    table = _csv_table(frame, np.array(numbers, dtype=np.int64), errors, delim, settings, where)
    return [table], blank


def _csv_table(
    frame: pd.DataFrame,
    numbers: np.ndarray,
    errors: list[tuple[int, str, str, str, str]],
    delim: str,
    settings: Settings,
    where: str,
) -> RawTable:
    kind = detect_kind(frame.columns, None, where)
    return build_table(
        kind, frame, numbers, errors, "csv", settings, where, decimal_comma=delim != ","
    )
