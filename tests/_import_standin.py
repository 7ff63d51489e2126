"""A tiny stand-in for io.readers / io.normalize, for testing the store and importer alone.

CSV only (comma, header on line 1, blank lines counted apart), times ISO 8601 with an offset.
It follows the agreed interface: ``RawTable``/``RawExport``, ``FileRefused(reason)``, and
``Normalized(kind, clean, rejects, warnings)`` with the clean schema's columns plus ``_row`` and
``updated_at``. Rows of unregistered patients are refused ``unknown_patient``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from backcare_analytics.errors import InputDataError
from backcare_analytics.protocol import load_protocol

ERR_COLS = ["row", "column", "reason", "detail", "raw"]


class FileRefused(InputDataError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RawTable:
    kind: str
    frame: pd.DataFrame
    row_numbers: np.ndarray
    row_errors: pd.DataFrame
    source_format: str = "csv"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawExport:
    path: Path
    sha256: str
    size_bytes: int
    source_format: str
    tables: tuple[RawTable, ...]
    blank_rows: int = 0
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Normalized:
    kind: str
    clean: pd.DataFrame
    rejects: pd.DataFrame
    warnings: tuple[str, ...] = ()


def read_export(path, settings=None, *, data=None) -> RawExport:
    path = Path(path)
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise FileRefused("empty_file", f"{path.name}: the file is empty")
    lines = data.decode("utf-8").split("\n")
    header = next(csv.reader([lines[0]]))
    rows, numbers, blank = [], [], 0
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            blank += int(i < len(lines))  # a final newline is not a blank line
            continue
        cells = next(csv.reader(io.StringIO(line)))
        rows.append(cells + [""] * (len(header) - len(cells)))
        numbers.append(i)
    cols = set(header)
    kind = (
        "sessions" if "performed_at" in cols
        else "pain" if "recorded_at" in cols
        else "patients" if "timezone" in cols
        else None
    )  # fmt: skip
    if kind is None:
        raise FileRefused("unknown_kind", f"{path.name}: unknown kind")
    frame = (
        pd.DataFrame(rows, columns=header, dtype="str")
        if rows
        else pd.DataFrame({c: pd.Series(dtype="str") for c in header})
    )
    table = RawTable(kind, frame, np.asarray(numbers, dtype="int64"),
                     pd.DataFrame({c: pd.Series(dtype="str") for c in ERR_COLS}).astype({"row": "int64"}))  # fmt: skip
    return RawExport(path, hashlib.sha256(data).hexdigest(), len(data), "csv", (table,), blank)


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return frame[name].astype("str")
    return pd.Series([""] * len(frame), dtype="str")


def _num(s: pd.Series, dtype: str) -> pd.Series:
    return pd.to_numeric(s.where(s != ""), errors="coerce").astype(dtype)


def normalize(table: RawTable, *, source_file, patients, protocol=None, settings=None, now=None):
    protocol = protocol or load_protocol()
    f = table.frame
    rows = pd.Series(table.row_numbers, dtype="int64")
    errs: list[pd.DataFrame] = []

    def refuse(mask: pd.Series, column: str, reason: str) -> None:
        m = mask.to_numpy(dtype=bool)
        if m.any():
            errs.append(pd.DataFrame({"row": rows[m].to_numpy(), "column": column,
                                      "reason": reason, "detail": f"{column}: {reason}",
                                      "raw": _col(f, column)[m].to_numpy()}))  # fmt: skip

    pid = _col(f, "patient_id")
    out = pd.DataFrame({"patient_id": pid})
    upd = pd.to_datetime(_col(f, "updated_at").where(lambda s: s != ""), utc=True)
    if table.kind == "patients":
        out["timezone"] = _col(f, "timezone")
        out["programme_start"] = pd.to_datetime(_col(f, "programme_start")).astype("datetime64[us]")
        out["clinician"] = _col(f, "clinician").where(lambda s: s != "")
    else:
        known = pid.isin(patients["patient_id"])
        refuse(~known, "patient_id", "unknown_patient")
        tzs = pid.map(dict(zip(patients["patient_id"], patients["timezone"], strict=True)))
        tcol = "performed_at" if table.kind == "sessions" else "recorded_at"
        t = pd.to_datetime(_col(f, tcol), utc=True).astype("datetime64[us, UTC]")
        out[tcol] = t
        day = pd.Series(pd.NaT, index=f.index, dtype="datetime64[us]")
        for tz in tzs.dropna().unique():
            m = tzs == tz
            day[m] = t[m].dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
        out["day"] = day.astype("datetime64[us]")
        if table.kind == "sessions":
            ex = (
                _col(f, "exercise")
                .map(lambda n: protocol.resolve_exercise(n) if n else None)
                .astype("str")
            )
            refuse(ex.isna(), "exercise", "unknown_exercise")
            sid = _col(f, "session_id")
            out["session_id"] = sid.where(sid != "")
            out["exercise_id"] = ex
            side = _col(f, "side")
            default = ex.map(
                lambda e: "none" if e != e or protocol.by_id[e].sidedness == "none" else "both"
            )
            out["side"] = side.where(side != "", default).astype("str")
            for c, lo, hi, dt in [("sets", 1, 20, "Int64"), ("reps", 0, 500, "Int64"),
                                  ("hold_s", 0, 600, "Float64"), ("pain_before", 0, 10, "Int64"),
                                  ("pain_after", 0, 10, "Int64")]:  # fmt: skip
                v = _num(_col(f, c), "Float64")
                refuse(v.notna() & ((v < lo) | (v > hi)), c, "out_of_range")
                out[c] = v.where((v >= lo) & (v <= hi)).astype(dt)
            for c in ("level", "variant", "note"):
                s = _col(f, c)
                out[c] = s.where(s != "")
            refuse(out["reps"].isna() & out["hold_s"].isna(), "reps", "no_dose")
        else:
            for c in ("back_pain", "leg_pain"):
                v = _num(_col(f, c), "Float64")
                refuse(v.notna() & ((v < 0) | (v > 10)), c, "out_of_range")
                out[c] = v.where((v >= 0) & (v <= 10)).astype("Int64")
            refuse(out["back_pain"].isna() & (_col(f, "back_pain") == ""), "back_pain",
                   "missing_value")  # fmt: skip
            fl = _col(f, "flare").str.lower()
            out["flare"] = fl.map({"true": True, "false": False, "": None}).astype("boolean")
            s = _col(f, "note")
            out["note"] = s.where(s != "")
    out["source_file"] = source_file
    out["_row"] = rows.to_numpy()
    out["updated_at"] = upd.astype("datetime64[us, UTC]")
    rejects = (
        pd.concat(errs, ignore_index=True)
        if errs
        else pd.DataFrame({c: pd.Series(dtype="str") for c in ERR_COLS}).astype({"row": "int64"})
    )
    bad = out["_row"].isin(rejects["row"])
    clean = out.loc[~bad].reset_index(drop=True)
    for c in clean.columns:
        if clean[c].dtype == object:
            clean[c] = clean[c].astype("str")
    return Normalized(table.kind, clean, rejects, ())
