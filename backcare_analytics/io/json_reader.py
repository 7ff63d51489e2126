"""JSON (an array of records or a ``{"records": [...]}`` envelope) and JSON Lines exports.

Numbers arrive as their literal text (:func:`~backcare_analytics.io.readers.loads_json`),
booleans as ``true``/``false``, ``null`` as blank; a record that is not an object or holds a
nested value is refused for that row, as is a JSON Lines line that is not JSON.
"""

from __future__ import annotations

import codecs
import io
import json
from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.io.readers import (
    REQUIRED,
    SUPPORTED_MAJOR_VERSION,
    FileRefused,
    RawTable,
    build_table,
    check_json_text,
    check_record_count,
    decode_utf8,
    detect_kind,
    json_depth,
    json_shape,
    loads_json,
    normalize_header,
    raw_json,
    record_cells,
)

__all__ = ["jsonl_records", "read_json", "read_jsonl"]


def read_json(data: bytes, settings: Settings, where: str) -> list[RawTable]:
    text = decode_utf8(data, where)
    depth, objects = json_shape(data)
    if depth > settings.max_json_depth:
        raise FileRefused(
            "json_too_deep",
            f"{where}: JSON nested deeper than {settings.max_json_depth} levels; "
            "fix: records are flat objects of values",
        )
    check_json_text(data, where)
    check_record_count(objects, len(data), where)  # before decoding: each object is a dict
    try:
        doc = loads_json(text, where)
    except RecursionError:  # pragma: no cover - the depth scan comes first
        raise FileRefused("json_too_deep", f"{where}: JSON nested too deep") from None
    except json.JSONDecodeError as exc:
        at_end = exc.pos >= len(text.rstrip()) - 1
        if at_end:
            raise FileRefused(
                "truncated", f"{where}: the JSON ends early (truncated?); fix: export it again"
            ) from None
        raise FileRefused(
            "invalid_json",
            f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno}; "
            "fix: export it again",
        ) from None
    declared: str | None = None
    if isinstance(doc, dict) and isinstance(doc.get("records"), list):
        version = doc.get("format_version")
        if version is not None and str(version).split(".")[0] != SUPPORTED_MAJOR_VERSION:
            raise FileRefused(
                "unsupported_version",
                f"{where}: format_version is not 1.x; this importer reads contract 1.x",
            )
        kind = doc.get("kind")  # matched as column names are: "Pain" and " pain " are pain
        declared = normalize_header(str(kind)) if kind is not None else None
        records = doc["records"]
    elif isinstance(doc, list):
        records = doc
    else:
        raise FileRefused(
            "bad_json_shape",
            f"{where}: expected an array of records or an object with 'records'; "
            "fix: see docs/export-format.md, JSON",
        )
    check_record_count(len(records), len(data), where)
    if not records and declared is None:
        raise FileRefused("empty_file", f"{where}: the file holds no records")
    numbered = [(i, rec) for i, rec in enumerate(records, start=1)]
    return [_records_table(numbered, declared, "json", settings, where)]


def _records_table(
    numbered: list[tuple[int, Any]],
    declared: str | None,
    fmt: str,
    settings: Settings,
    where: str,
    errors: list[tuple[int, str, str, str, str]] | None = None,
) -> RawTable:
    limit = settings.max_field_chars
    errors = list(errors or [])
    fast = _records_frame(numbered, limit)
    if fast is not None:
        frame, numbers_arr, fast_errors = fast
        kind = detect_kind(frame.columns, declared, where)
        if frame.empty and not len(frame.columns):
            frame = pd.DataFrame({c: pd.Series(dtype="str") for c in REQUIRED[kind]})
        return build_table(kind, frame, numbers_arr, errors + fast_errors, fmt, settings, where)
    cells: list[dict[str, str]] = []
    numbers: list[int] = []
    for row, rec in numbered:
        out, problem = record_cells(rec, limit, where)
        if problem is not None:
            col, reason, detail = problem
            errors.append((row, col, reason, detail, raw_json(rec, limit)))
            continue
        cells.append(out)  # type: ignore[arg-type]
        numbers.append(row)
    columns = list(dict.fromkeys(c for rec in cells for c in rec))
    kind = detect_kind(columns, declared, where)
    frame = pd.DataFrame.from_records(cells, columns=columns) if cells else None
    if frame is None:
        frame = pd.DataFrame({c: pd.Series(dtype="str") for c in REQUIRED[kind]})
    frame = frame.fillna("")
    return build_table(kind, frame, np.array(numbers, dtype=np.int64), errors, fmt, settings, where)


_NESTED = object()


def _cell_text(value: Any) -> Any:
    """A JSON value as cell text (numbers already arrive as text); ``_NESTED`` for an object
    or array."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict | list):
        return _NESTED
    return str(value)


def _records_frame(
    numbered: list[tuple[int, Any]], limit: int
) -> tuple[pd.DataFrame, np.ndarray, list[tuple[int, str, str, str, str]]] | None:
    """Records as text columns, one list comprehension per column (the per-record loop of
    :func:`record_cells` is the fallback). ``None`` when the records are not all objects or
    two keys name the same column; rows with nested values come back as row errors."""
    records = [rec for _, rec in numbered]
    if not records or not all(type(rec) is dict for rec in records):
        return None
    keys = list(dict.fromkeys(key for rec in records for key in rec))
    names = [normalize_header(key) for key in keys]
    if len(set(names)) != len(names):
        return None
    nested: dict[int, str] = {}
    columns: dict[str, list[str]] = {}
    for key, name in zip(keys, names, strict=True):
        values = [v if type(v) is str else _cell_text(v) for v in (rec.get(key) for rec in records)]
        if any(v is _NESTED for v in values):
            for i, v in enumerate(values):
                if v is _NESTED:
                    nested.setdefault(i, name)
                    values[i] = ""
        columns[name] = values
    rows = np.array([row for row, _ in numbered], dtype=np.int64)
    frame = pd.DataFrame({name: pd.Series(values, dtype="str") for name, values in columns.items()})
    errors = [
        (int(rows[i]), col, "bad_record", "a nested object or array where a value belongs",
         raw_json(records[i], limit))
        for i, col in sorted(nested.items())
    ]  # fmt: skip
    if not nested:
        return frame, rows, errors
    keep = np.ones(len(records), dtype=bool)
    keep[list(nested)] = False
    return frame.loc[keep].reset_index(drop=True), rows[keep], errors


def read_jsonl(data: bytes, settings: Settings, where: str) -> tuple[list[RawTable], int]:
    numbered, errors, blank = jsonl_records(data, settings, where)
    if not numbered and not errors:
        raise FileRefused("empty_file", f"{where}: the file holds no records")
    if not numbered:
        raise FileRefused("bad_json_shape", f"{where}: no line holds a JSON record")
    return [_records_table(numbered, None, "jsonl", settings, where, errors)], blank


def jsonl_records(
    data: bytes, settings: Settings, where: str
) -> tuple[list[tuple[int, Any]], list[tuple[int, str, str, str, str]], int]:
    """Each non-blank line parsed; bad lines are row errors, blank lines counted.

    Lines are taken one at a time (never a list of every line), and a file with more non-blank
    lines than :func:`~backcare_analytics.io.readers.check_record_count` allows for its size
    is refused as soon as the count is crossed, so memory stays a small multiple of the size.
    """
    limit = settings.max_field_chars
    check_json_text(data, where)
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    most = check_record_count(0, len(data), where)
    numbered: list[tuple[int, Any]] = []
    errors: list[tuple[int, str, str, str, str]] = []
    blank = 0
    for lineno, line in enumerate(io.BytesIO(data), start=1):
        if not line.strip():
            blank += line.endswith(b"\n")  # blanks after the last line break are no line
            continue
        if len(numbered) + len(errors) == most:
            check_record_count(most + 1, len(data), where)
        try:
            if line.count(b"[") + line.count(b"{") > settings.max_json_depth:
                if json_depth(line) > settings.max_json_depth:
                    raise ValueError("nested too deep")
            numbered.append((lineno, loads_json(line.decode("utf-8"), where)))
        except FileRefused:  # a key given twice refuses the file, not the line
            raise
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError too
            raw = line.decode("utf-8", errors="replace").rstrip("\r\n")
            errors.append(
                (lineno, "", "bad_record", "the line is not a valid JSON object", raw[:limit])
            )
    return numbered, errors, blank
