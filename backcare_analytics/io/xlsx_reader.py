"""XLSX exports: checked for zip bombs and XML entity tricks before openpyxl opens them, then
read in read-only mode; formula cells are refused, dates become ISO local text.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.io.readers import (
    KNOWN_COLUMNS,
    TIME_COLUMNS,
    FileRefused,
    RawTable,
    build_table,
    detect_kind,
    header_names,
    normalize_header,
    raw_json,
)

__all__ = ["check_xlsx", "read_xlsx"]

_XML_TRAPS = (b"<!DOCTYPE", b"<!ENTITY", "<!DOCTYPE".encode("utf-16-le"),
              "<!ENTITY".encode("utf-16-le"), "<!DOCTYPE".encode("utf-16-be"),
              "<!ENTITY".encode("utf-16-be"))  # fmt: skip
_SMALL_PART = 1 << 20


def check_xlsx(data: bytes, settings: Settings, where: str) -> None:
    """Refuse zip bombs (declared sizes and ratios) and XML with a DOCTYPE or ENTITY before
    any XML parser sees the file, reading each part in chunks."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception:  # zipfile raises BadZipFile, OSError, ValueError, NotImplementedError...
        raise FileRefused(
            "bad_xlsx", f"{where}: not a readable .xlsx file (damaged or truncated?)"
        ) from None
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    limit = settings.max_xlsx_uncompressed_bytes
    ratio = settings.max_xlsx_ratio

    def bomb() -> FileRefused:
        return FileRefused(
            "xlsx_zip_bomb",
            f"{where}: the workbook expands to more than {limit // (1 << 20)} MiB or more than "
            f"{ratio}x its size (a zip bomb?); fix: export the data again, or as CSV",
        )

    if total > limit or (total > _SMALL_PART and total > ratio * max(packed, 1)):
        raise bomb()
    for info in infos:
        if info.file_size > _SMALL_PART and info.file_size > ratio * max(info.compress_size, 1):
            raise bomb()
    seen = 0
    try:
        # Every part is scanned, whatever its name: a relationship may point openpyxl at an
        # XML part with any file name.
        for info in infos:
            tail = b""
            with zf.open(info) as part:
                while chunk := part.read(1 << 20):
                    seen += len(chunk)
                    if seen > limit:
                        raise bomb()
                    window = tail + chunk
                    if any(trap in window for trap in _XML_TRAPS):
                        raise FileRefused(
                            "xml_entities",
                            f"{where}: the workbook's XML declares a DOCTYPE or ENTITY "
                            "(an XML entity attack?); fix: save the workbook again from Excel",
                        )
                    tail = chunk[-32:]
    except FileRefused:
        raise
    except Exception:  # BadZipFile, zlib.error, EOFError, NotImplementedError, ...
        raise FileRefused("bad_xlsx", f"{where}: a part of the workbook is damaged") from None


def _excel_text(value: Any, column: str, epoch: datetime) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _iso_local(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, int | float):
        if column in TIME_COLUMNS:
            return _excel_serial(float(value), epoch)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value) if isinstance(value, float) else str(value)
    return str(value)


def _iso_local(value: datetime) -> str:
    value = value.replace(tzinfo=None)
    if value.microsecond:
        value = (value + timedelta(microseconds=500_000)).replace(microsecond=0)
    return value.isoformat(sep=" ")


def _excel_serial(serial: float, epoch: datetime) -> str:
    """An Excel serial date (1900 system, with its 1900-02-29 bug) as ISO local text."""
    if not np.isfinite(serial) or not 0 < serial < 2_958_466:
        return f"excel-serial:{serial!r}"  # refused as bad_datetime by the parser
    from openpyxl.utils.datetime import from_excel

    return _iso_local(from_excel(serial, epoch))


def read_xlsx(data: bytes, settings: Settings, where: str) -> tuple[list[RawTable], int]:
    check_xlsx(data, settings, where)
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:  # openpyxl raises many types for damaged files
        raise FileRefused("bad_xlsx", f"{where}: not a readable .xlsx workbook") from None
    try:
        named = _sheets_by_kind(wb.worksheets, where)
        sheets = list(named.items()) or [(None, ws) for ws in wb.worksheets[:1]]
        tables = []
        blank = 0
        for declared, ws in sheets:
            table, b = _read_sheet(ws, declared, wb.epoch, settings, f"{where} [{ws.title}]")
            tables.append(table)
            blank += b
    except FileRefused:
        raise
    except Exception:  # a damaged sheet part: openpyxl/lxml raise many types
        raise FileRefused("bad_xlsx", f"{where}: a worksheet of the workbook is damaged") from None
    finally:
        wb.close()
    return tables, blank


def _sheets_by_kind(worksheets: list[Any], where: str) -> dict[str, Any]:
    """The worksheets named for a kind (``sessions``, ``pain``, ``patients``; names matched as
    column names are), by kind.

    Two sheets of one kind (``pain`` and ``Pain ``) refuse the workbook (``duplicate_sheet``):
    a row is known by its kind and row number, so their rows would collide (one sheet's row 2
    taken for the other's when a quarantined row is retried), and merging them would number
    rows that no person can find.
    """
    out: dict[str, Any] = {}
    for ws in worksheets:
        kind = normalize_header(ws.title)
        if kind not in KNOWN_COLUMNS:
            continue
        if kind in out:
            raise FileRefused(
                "duplicate_sheet",
                f"{where}: the sheets {out[kind].title!r} and {ws.title!r} both hold the {kind} "
                "records; fix: move their rows into one sheet, or rename or delete the other",
            )
        out[kind] = ws
    return out


def _read_sheet(
    ws: Any, declared: str | None, epoch: datetime, settings: Settings, where: str
) -> tuple[RawTable, int]:
    limit = settings.max_field_chars
    names: list[str] | None = None
    rows: list[list[str]] = []
    numbers: list[int] = []
    errors: list[tuple[int, str, str, str, str]] = []
    blank = stray = 0
    for rownum, cells in enumerate(ws.iter_rows(), start=1):
        values = [getattr(c, "value", None) for c in cells]
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            blank += 1
            continue
        if names is None:
            names = header_names([_excel_text(v, "", epoch) for v in values], where)
            while names and names[-1] == "":
                names.pop()
            continue
        values = values + [None] * (len(names) - len(values))
        formula = [
            names[i]
            for i, c in enumerate(cells[: len(names)])
            if getattr(c, "data_type", None) == "f"
        ]
        text = [_excel_text(v, names[i], epoch) for i, v in enumerate(values[: len(names)])]
        if formula:
            errors.append(
                (
                    rownum,
                    formula[0],
                    "formula_cell",
                    "a formula where a value belongs; fix: paste values only",
                    raw_json(dict(zip(names, text, strict=True)), limit),
                )
            )
            continue
        if any(v not in (None, "") for v in values[len(names) :]):
            stray += 1
        rows.append(text)
        numbers.append(rownum)
    if names is None:
        raise FileRefused("empty_file", f"{where}: the sheet is empty")
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({f"c{i}": pd.Series(c, dtype="str") for i, c in enumerate(columns)})
    frame.columns = names
    unnamed = [n == "" for n in names]
    if any(unnamed) and (frame.loc[:, unnamed] != "").any(axis=None):
        stray += 1
    frame = frame.loc[:, [not u for u in unnamed]]
    warn = [f"ignored cells in columns without a header on {stray} row(s)"] if stray else []
    kind = detect_kind(frame.columns, declared, where)
    table = build_table(
        kind, frame, np.array(numbers), errors, "xlsx", settings, where, warnings=warn
    )
    return table, blank
