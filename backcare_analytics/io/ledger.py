"""The store's own records of an import: quarantined rows and the ledger row of each file.

Part of the importer (:mod:`backcare_analytics.io.writer` calls these inside its transactions).
Names with a leading underscore are private to the ``io`` package.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from backcare_analytics.config import package_version
from backcare_analytics.io.import_report import FileReport

__all__: list[str] = []

_REJECT_COLS = ["file_sha", "kind", "row", "column", "reason", "detail", "raw"]


_EMPTY_REJECTS = pd.DataFrame(
    {c: pd.Series(dtype="Int64" if c == "row" else "str") for c in _REJECT_COLS}
)


def _raw_json(table: Any, rows: np.ndarray) -> list[str]:
    """The raw cells of ``rows`` as one JSON object each (kept in the owner-only store)."""
    if len(rows) == 0:
        return []
    pos = pd.Index(np.asarray(table.row_numbers)).get_indexer(rows)
    sub = table.frame.iloc[pos[pos >= 0]]
    text = sub.to_json(orient="records", lines=True, force_ascii=False).splitlines()
    out = dict(zip(rows[pos >= 0].tolist(), text, strict=True))
    return [out.get(int(r), "") for r in rows]


def _as_rejects(frame: pd.DataFrame, sha: str, kind: str) -> pd.DataFrame:
    if frame.empty:
        return _EMPTY_REJECTS
    out = pd.DataFrame(
        {
            "file_sha": sha,
            "kind": kind,
            "row": pd.array(frame["row"], dtype="Int64"),
            "column": frame["column"].astype("str"),
            "reason": frame["reason"].astype("str"),
            "detail": frame["detail"].astype("str"),
            "raw": frame["raw"].astype("str") if "raw" in frame else "",
        }
    )
    return out[_REJECT_COLS]


def _reason_counts(rejects: pd.DataFrame) -> dict[str, int]:
    if rejects.empty:
        return {}
    per = rejects.drop_duplicates(["kind", "row", "reason"])["reason"].value_counts()
    return {str(k): int(v) for k, v in per.items()}


def _already(con: duckdb.DuckDBPyConnection, sha: str) -> bool:
    q = "SELECT count(*) FROM imports WHERE sha256 = ? AND status = 'imported'"
    return con.execute(q, [sha]).fetchall()[0][0] > 0


def _sorted_rejects(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One file's rejects in the order they are stored: by kind, row and reason (stable)."""
    rejects = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return rejects.sort_values(["kind", "row", "reason"], kind="stable", ignore_index=True)


def _insert_rejects(con: duckdb.DuckDBPyConnection, rejects: pd.DataFrame) -> None:
    """Insert rejects in the frame's order (:func:`_sorted_rejects` per file)."""
    con.register("_rej", rejects[_REJECT_COLS].assign(_pos=np.arange(len(rejects))))
    try:
        cols = ", ".join(f'"{c}"' for c in _REJECT_COLS)
        con.execute(f"INSERT INTO rejects SELECT {cols} FROM _rej ORDER BY _pos")
    finally:
        con.unregister("_rej")


def _ledger_values(
    seq: int,
    rep: FileReport,
    size: int | None,
    status: str,
    reason: str | None,
    now: pd.Timestamp,
) -> list[Any]:
    return [seq, rep.sha256, rep.path, size, rep.format, rep.kind, rep.rows_read, rep.accepted,
            rep.rejected, rep.duplicates, rep.replaced, rep.blank_rows, status, reason,
            json.dumps(rep.warnings), now.to_pydatetime(), package_version()]  # fmt: skip


def _insert_ledger(
    con: duckdb.DuckDBPyConnection,
    rep: FileReport,
    size: int | None,
    status: str,
    reason: str | None,
    now: pd.Timestamp,
) -> int:
    con.execute("DELETE FROM imports WHERE sha256 = ?", [rep.sha256])
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM imports").fetchall()[0][0]
    con.execute(
        "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _ledger_values(int(seq), rep, size, status, reason, now),
    )
    return int(seq)


_LEDGER_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("sha256", pa.string()), ("path", pa.string()),
     ("size_bytes", pa.int64()), ("format", pa.string()), ("kind", pa.string()),
     ("rows_read", pa.int64()), ("accepted", pa.int64()), ("rejected", pa.int64()),
     ("duplicates", pa.int64()), ("replaced", pa.int64()), ("blank_rows", pa.int64()),
     ("status", pa.string()), ("reason", pa.string()), ("warnings", pa.string()),
     ("imported_at", pa.timestamp("us", tz="UTC")), ("package_version", pa.string())]
)  # fmt: skip


_LEDGER_COLS = _LEDGER_SCHEMA.names
