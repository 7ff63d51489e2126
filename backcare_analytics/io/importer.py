"""Import exports into the store: nothing lost, every refused row explained, all or nothing.

For each file: hash it; skip it if those bytes were imported before (``already_imported``);
read it (:func:`backcare_analytics.io.readers.read_export`); normalise and validate each table
(:func:`backcare_analytics.io.normalize.normalize`); de-duplicate and resolve edits against the
store set-wise (:mod:`backcare_analytics.store.merge`); then write the accepted rows, the
quarantined rows, the ledger row and the raw copy in **one** transaction. Files named like
patients files go first; rows refused ``unknown_patient`` are retried automatically, in the
transaction of the patients file that registers their patient, so the order of files does not
change the result. Consecutive small files share one transaction and one CHECKPOINT (group
commit), each file still all or none: a group that fails is rolled back and its files written
one transaction each. The next group is read and normalised in a helper thread (or, with
``workers``, worker processes) while DuckDB writes the current one. See ``docs/import.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from backcare_analytics.config import Settings
from backcare_analytics.errors import InputDataError, StoreBusyError, StoreError
from backcare_analytics.io.import_report import FileReport, ImportReport, RetryReport
from backcare_analytics.protocol import Protocol, build_prescriptions, load_protocol
from backcare_analytics.schemas import ensure_validation_enabled
from backcare_analytics.store.archive import sha256_bytes
from backcare_analytics.store.core import CLEAN_DTYPES, Store
from backcare_analytics.store.merge import (
    MergeResult,
    incoming_table,
    late_files,
    merge_group,
    merge_rows,
)
from backcare_analytics.store.target import WriteTarget

__all__ = ["ImportReport", "expand_paths", "import_paths", "rebuild"]

#: ``progress(done, total, name)`` after each file.
Progress = Callable[[int, int, str], None]

_KIND_ORDER = {"patients": 0, "sessions": 1, "pain": 2}
_REJECT_COLS = ["file_sha", "kind", "row", "column", "reason", "detail", "raw"]
_EMPTY_REJECTS = pd.DataFrame(
    {c: pd.Series(dtype="Int64" if c == "row" else "str") for c in _REJECT_COLS}
)


# -- the two stages owned by io.readers and io.normalize (imported on first use) ---------------


def _read_export(path: Path, settings: Settings, data: bytes | None) -> Any:
    from backcare_analytics.io.readers import read_export

    return read_export(path, settings, data=data)


def _normalize(table: Any, **kwargs: Any) -> Any:
    from backcare_analytics.io.normalize import normalize

    return normalize(table, **kwargs)


_REAL_STAGES = (_read_export, _normalize)


# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    path: Path  # where the bytes are
    name: str  # what the ledger calls it (the offered file's name)


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files as given and files under folders (recursively, sorted), skipping hidden ones.

    Raises
    ------
    InputDataError
        When a path does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
            out.extend(sorted(found))
        elif p.is_file():
            out.append(p)
        else:
            raise InputDataError(f"{p}: no such file or folder. Fix: check the path.")
    seen: set[Path] = set()
    return [f for f in out if not (f.resolve() in seen or seen.add(f.resolve()))]


# -- one file ----------------------------------------------------------------------------------


@dataclass
class _Context:
    target: WriteTarget
    settings: Settings
    protocol: Protocol
    now: pd.Timestamp
    patients: pd.DataFrame
    shas: dict[str, str]
    report: ImportReport
    by_sha: dict[str, FileReport] = field(default_factory=dict)
    held: dict[str, bytes] = field(default_factory=dict)  # dry run: bytes to retry

    def raw_bytes(self, sha: str) -> bytes | None:
        """An earlier file's bytes: from the archive, or (dry run) held in memory."""
        if sha in self.held:
            return self.held[sha]
        archive = self.target.store.archive
        return archive.read(sha) if not self.target.dry_run and archive.has(sha) else None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load(item: _Item) -> tuple[bytes, str]:
    data = item.path.read_bytes()
    return data, sha256_bytes(data)


def _upsert_patients(known: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    cols = list(CLEAN_DTYPES["patients"])
    both = pd.concat([known[cols], new[cols].astype(CLEAN_DTYPES["patients"])], ignore_index=True)
    return both.drop_duplicates("patient_id", keep="last").reset_index(drop=True)


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


@dataclass
class _Prepared:
    """A file read and normalised, ready to be written."""

    item: _Item
    sha: str
    data: bytes
    raw: Any
    tables: list[tuple[str, Any, Any]]  # (kind, raw table, Normalized)
    rows_read: int
    warnings: list[str]


def _prepare(
    ctx: _Context | _StageEnv, item: _Item, data: bytes, sha: str, raw: Any, patients: pd.DataFrame
) -> _Prepared:
    tables = sorted(raw.tables, key=lambda t: _KIND_ORDER.get(t.kind, 9))
    out, warnings = [], list(raw.warnings) if hasattr(raw, "warnings") else []
    for t in tables:
        norm = _normalize(
            t,
            source_file=sha,
            patients=patients,
            protocol=ctx.protocol,
            settings=ctx.settings,
            now=ctx.now,
        )
        if t.kind == "patients":
            patients = _upsert_patients(patients, norm.clean)
        warnings += [*t.warnings, *norm.warnings]
        out.append((t.kind, t, norm))
    rows_read = sum(len(t.frame) + len(t.row_errors) for t in tables)
    return _Prepared(item, sha, data, raw, out, rows_read, list(dict.fromkeys(warnings)))


def _reason_counts(rejects: pd.DataFrame) -> dict[str, int]:
    if rejects.empty:
        return {}
    per = rejects.drop_duplicates(["kind", "row", "reason"])["reason"].value_counts()
    return {str(k): int(v) for k, v in per.items()}


def _write_file(ctx: _Context, prep: _Prepared) -> FileReport:
    """Everything of one file in one transaction: rows, rejects, ledger row, raw copy."""
    rep, archived_new = None, False
    try:
        with ctx.target.transaction() as con:
            rep, archived_new = _write_in(ctx, con, prep)
    except BaseException:
        if archived_new:  # the commit failed after the raw copy was made
            ctx.target.store.archive.discard(prep.sha)
        raise
    return rep


def _write_in(
    ctx: _Context,
    con: duckdb.DuckDBPyConnection,
    prep: _Prepared,
    merged: _GroupWrite | None = None,
) -> tuple[FileReport, bool]:
    """One file's rows, rejects, ledger row and raw copy, inside the caller's transaction.

    ``merged`` (a file of a group) holds this file's rows already merged with its group
    (:func:`_merge_run`) and collects its rejects and ledger row, written for the whole group
    by :meth:`_GroupWrite.flush` before the group commits. Returns the report and whether the
    raw copy was new (to discard it on a rollback).
    """
    kinds = "+".join(k for k, _, _ in prep.tables) or None
    rep = FileReport(
        path=prep.item.name,
        sha256=prep.sha,
        format=prep.raw.source_format,
        kind=kinds,
        status="validated" if ctx.target.dry_run else "imported",
        rows_read=prep.rows_read,
        blank_rows=int(prep.raw.blank_rows),
        warnings=prep.warnings,
    )
    archived_new = False
    try:
        if merged is None and _already(con, prep.sha):
            rep.status, rep.rows_read, rep.blank_rows = "already_imported", 0, 0
            return rep, False
        all_rejects, new_ids = [], []
        for kind, table, norm in prep.tables:
            res = (
                merged.merged[(prep.sha, kind)]
                if merged is not None
                else merge_rows(con, kind, norm.clean, prep.sha, repeats=norm.repeats)
            )
            rej = _as_rejects(norm.rejects, prep.sha, kind)
            if len(res.rejects):
                mr = res.rejects.copy()
                mr["raw"] = _raw_json(table, mr["row"].to_numpy())
                rej = pd.concat([rej, _as_rejects(mr, prep.sha, kind)], ignore_index=True)
            n_rej = rej["row"].nunique(dropna=False) if len(rej) else 0
            rows = len(table.frame) + len(table.row_errors)
            if rows != res.accepted + res.duplicates + n_rej:
                raise StoreError(
                    f"{prep.item.name}: {kind} rows do not add up ({rows} read, "
                    f"{res.accepted} accepted, {n_rej} refused, {res.duplicates} duplicates);"
                    " nothing was written. This is a bug: please report it."
                )
            rep.accepted += res.accepted
            rep.replaced += res.replaced
            rep.duplicates += res.duplicates
            rep.rejected += n_rej
            if len(rej):
                all_rejects.append(rej)
            new_ids += res.inserted_ids
        if all_rejects:
            rejects = _sorted_rejects(all_rejects)
            if merged is not None:
                merged.rejects.append(rejects)
            else:
                _insert_rejects(con, rejects)
            rep.reject_reasons = _reason_counts(rejects)
        if merged is not None:
            seq = merged.ledger_row(con, rep, len(prep.data), ctx.now)
        else:
            seq = _insert_ledger(con, rep, len(prep.data), "imported", None, ctx.now)
        if any(k == "patients" for k, _, _ in prep.tables):
            _refresh_prescriptions(con, ctx.protocol)
        if ctx.target.dry_run:
            pass
        elif merged is not None:  # with the group's other files, before its commit
            merged.archive.append((prep.sha, prep.data, prep.item.name, seq, ctx.now.isoformat()))
        else:
            archived_new = ctx.target.store.archive.put(
                prep.sha, prep.data, name=prep.item.name, seq=seq,
                imported_at=ctx.now.isoformat(),
            )  # fmt: skip
        if new_ids:
            _retry_unknown_patients(ctx, con, prep.sha)
    except BaseException:
        if archived_new:
            ctx.target.store.archive.discard(prep.sha)
        raise
    return rep, archived_new


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
            json.dumps(rep.warnings), now.to_pydatetime(), _package_version()]  # fmt: skip


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


@dataclass
class _GroupWrite:
    """A group's merge results, and its rejects and ledger rows collected file by file and
    written with one statement each (:meth:`flush`) inside the group's transaction."""

    merged: dict[tuple[str, str], MergeResult]
    rejects: list[pd.DataFrame] = field(default_factory=list)
    ledger: list[list[Any]] = field(default_factory=list)
    archive: list[tuple[str, bytes, str, int, str]] = field(default_factory=list)

    def ledger_row(
        self, con: duckdb.DuckDBPyConnection, rep: FileReport, size: int, now: pd.Timestamp
    ) -> int:
        """The seq :func:`_insert_ledger` would give this file after the group's earlier
        files (which replaces an old row of the same bytes, e.g. refused before); the row
        itself waits for :meth:`flush`."""
        if self.ledger:  # one more than the group's previous file, as file by file
            seq = int(self.ledger[-1][0]) + 1
        else:
            q = "SELECT coalesce(max(seq), 0) + 1 FROM imports WHERE sha256 <> ?"
            seq = int(con.execute(q, [rep.sha256]).fetchall()[0][0])
        self.ledger.append(_ledger_values(seq, rep, size, "imported", None, now))
        return seq

    def flush(self, ctx: _Context, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Write the collected rows, then the raw copies; returns the SHA-256 of the raw
        copies that are new (to discard if the commit fails)."""
        if self.rejects:
            _insert_rejects(con, pd.concat(self.rejects, ignore_index=True))
        if self.ledger:
            shas = [row[1] for row in self.ledger]
            con.execute("DELETE FROM imports WHERE list_contains(?, sha256)", [shas])
            rows = pa.Table.from_pylist(
                [dict(zip(_LEDGER_COLS, row, strict=True)) for row in self.ledger],
                schema=_LEDGER_SCHEMA,
            )
            con.register("_ledger", rows)
            try:
                con.execute("INSERT INTO imports SELECT * FROM _ledger ORDER BY seq")
            finally:
                con.unregister("_ledger")
        if not self.archive:
            return []
        new = ctx.target.store.archive.put_many(self.archive)
        return [sha for (sha, *_), fresh in zip(self.archive, new, strict=True) if fresh]


_LEDGER_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("sha256", pa.string()), ("path", pa.string()),
     ("size_bytes", pa.int64()), ("format", pa.string()), ("kind", pa.string()),
     ("rows_read", pa.int64()), ("accepted", pa.int64()), ("rejected", pa.int64()),
     ("duplicates", pa.int64()), ("replaced", pa.int64()), ("blank_rows", pa.int64()),
     ("status", pa.string()), ("reason", pa.string()), ("warnings", pa.string()),
     ("imported_at", pa.timestamp("us", tz="UTC")), ("package_version", pa.string())]
)  # fmt: skip
_LEDGER_COLS = _LEDGER_SCHEMA.names


@cache
def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backcare_analytics")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0.0.0+unknown"


def _refresh_prescriptions(con: duckdb.DuckDBPyConnection, protocol: Protocol) -> None:
    """Keep the ``prescriptions`` table (protocol defaults) in step with the patients."""
    from backcare_analytics.store.core import to_frame

    sql = "SELECT patient_id, timezone, programme_start, clinician FROM patients"
    pts = to_frame(con.sql(sql).to_arrow_table(), CLEAN_DTYPES["patients"])
    rx = build_prescriptions(pts, protocol)
    con.register("_rx", rx)
    try:
        con.execute("DELETE FROM prescriptions")
        con.execute("INSERT INTO prescriptions BY NAME SELECT * FROM _rx")
    finally:
        con.unregister("_rx")


# -- unknown patients, retried -----------------------------------------------------------------


def _retry_unknown_patients(ctx: _Context, con: duckdb.DuckDBPyConnection, this_sha: str) -> None:
    """Re-normalise rows refused ``unknown_patient`` now that new patients are registered.

    Runs inside the transaction of the patients file, so it commits or rolls back with it.
    Each earlier file's ledger counts move rows from ``rejected`` to ``accepted`` (or
    ``duplicates``), keeping ``rows_read == accepted + rejected + duplicates``.
    """
    from backcare_analytics.store.core import to_frame

    targets = con.execute(
        """SELECT r.file_sha, r.kind, list(DISTINCT r."row" ORDER BY r."row"), i.path, i.seq
        FROM rejects r JOIN imports i ON i.sha256 = r.file_sha
        WHERE r.reason = 'unknown_patient' AND r.file_sha <> ?
        GROUP BY ALL ORDER BY i.seq, r.kind""",
        [this_sha],
    ).fetchall()
    if not targets:
        return
    sql = "SELECT patient_id, timezone, programme_start, clinician FROM patients"
    patients = to_frame(con.sql(sql).to_arrow_table(), CLEAN_DTYPES["patients"])
    for sha, kind, rows, name, _seq in targets:
        data = ctx.raw_bytes(sha)
        if data is None:
            continue
        raw = _read_export(Path(name), ctx.settings, data)
        table = next((t for t in raw.tables if t.kind == kind), None)
        if table is None:
            continue
        rows_arr = np.asarray(rows, dtype="int64")
        mask = np.isin(np.asarray(table.row_numbers), rows_arr)
        sub = replace(
            table,
            frame=table.frame[mask].reset_index(drop=True),
            row_numbers=np.asarray(table.row_numbers)[mask],
            row_errors=table.row_errors.iloc[0:0],
        )
        norm = _normalize(
            sub, source_file=sha, patients=patients, protocol=ctx.protocol,
            settings=ctx.settings, now=ctx.now,
        )  # fmt: skip
        res = merge_rows(con, kind, norm.clean, sha, repeats=norm.repeats)
        rej = _as_rejects(norm.rejects, sha, kind)
        if len(res.rejects):
            mr = res.rejects.copy()
            mr["raw"] = _raw_json(sub, mr["row"].to_numpy())
            rej = pd.concat([rej, _as_rejects(mr, sha, kind)], ignore_index=True)
        still = rej["row"].nunique()
        con.execute(
            'DELETE FROM rejects WHERE file_sha = ? AND kind = ? AND list_contains(?, "row")',
            [sha, kind, rows],
        )
        if len(rej):
            _insert_rejects(con, rej)
        con.execute(
            """UPDATE imports SET accepted = accepted + ?, duplicates = duplicates + ?,
            replaced = replaced + ?, rejected = rejected - ? + ? WHERE sha256 = ?""",
            [res.accepted, res.duplicates, res.replaced, len(rows), still, sha],
        )
        if res.accepted or res.duplicates:
            ctx.report.retried.append(
                RetryReport(name, sha, len(rows), res.accepted, res.duplicates, still)
            )
            if sha in ctx.by_sha:  # a file of this batch: its report shows the outcome
                rep = ctx.by_sha[sha]
                rep.accepted += res.accepted
                rep.duplicates += res.duplicates
                rep.replaced += res.replaced
                rep.rejected += still - len(rows)
                counts = con.execute(
                    """SELECT reason, count(DISTINCT (kind, "row")) FROM rejects
                    WHERE file_sha = ? GROUP BY ALL""",
                    [sha],
                ).fetchall()
                rep.reject_reasons = {str(r): int(n) for r, n in counts}


# -- the batch ---------------------------------------------------------------------------------


def _refused(ctx: _Context, item: _Item, sha: str, size: int, exc: Exception) -> FileReport:
    reason = str(getattr(exc, "reason", "") or "refused")
    rep = FileReport(path=item.name, sha256=sha, status="refused", reason=reason)
    if not ctx.target.dry_run:
        with ctx.target.transaction() as con:
            _insert_ledger(con, rep, size, "refused", reason, ctx.now)
    return rep


@dataclass
class _Staged:
    """A file hashed, read and normalised (maybe in the helper thread), ready to write."""

    item: _Item
    sha: str
    size: int
    prep: _Prepared | None = None
    refused: Exception | None = None
    already: bool = False

    @property
    def has_patients(self) -> bool:
        return self.prep is not None and any(k == "patients" for k, _, _ in self.prep.tables)


def _read_one(env: _Context | _StageEnv, item: _Item) -> tuple[_Staged, Any, bytes | None]:
    """Hash and read one file: the staged file, and its raw export and bytes when readable."""
    size = item.path.stat().st_size
    if size > env.settings.max_file_bytes:  # hash it in chunks; the reader refuses it
        sha = _sha256_file(item.path)
        if env.shas.get(sha) == "imported":
            return _Staged(item, sha, size, already=True), None, None
        try:
            _read_export(item.path, env.settings, None)
            raise InputDataError(f"{item.name}: over the size limit")
        except InputDataError as exc:
            return _Staged(item, sha, size, refused=exc), None, None
    data, sha = _load(item)
    if env.shas.get(sha) == "imported":
        return _Staged(item, sha, size, already=True), None, None
    try:
        raw = _read_export(Path(item.name), env.settings, data)
    except InputDataError as exc:
        return _Staged(item, sha, size, refused=exc), None, None
    return _Staged(item, sha, size), raw, data


def _stage(env: _Context | _StageEnv, item: _Item, patients: pd.DataFrame) -> _Staged:
    """Everything of one file that needs no store lock: hash, read, normalise."""
    return _stage_many(env, [item], patients)[0]


def _stage_many(
    env: _Context | _StageEnv, items: list[_Item], patients: pd.DataFrame
) -> list[_Staged]:
    """:func:`_stage` for a group of files; their tables are normalised together
    (:func:`~backcare_analytics.io.normalize.normalize_many`, the same per-file results)
    unless one holds patients. A file after one holding patients must be staged again once
    that one is written (:func:`_run` does)."""
    staged, reads = [], []
    for item in items:
        st, raw, data = _read_one(env, item)
        staged.append(st)
        if raw is not None:
            reads.append((st, raw, data))
    batch = (
        len(reads) > 1
        and _normalize is _REAL_STAGES[1]
        and not any(t.kind == "patients" for _, raw, _ in reads for t in raw.tables)
    )
    if not batch:
        for st, raw, data in reads:
            st.prep = _prepare(env, st.item, data, st.sha, raw, patients)
        return staged
    from backcare_analytics.io.normalize import normalize_many

    per_file = [sorted(raw.tables, key=lambda t: _KIND_ORDER.get(t.kind, 9)) for _, raw, _ in reads]
    flat = [(st.sha, t) for (st, _, _), tables in zip(reads, per_file, strict=True) for t in tables]
    norms = iter(
        normalize_many(
            [t for _, t in flat],
            source_files=[sha for sha, _ in flat],
            patients=patients,
            protocol=env.protocol,
            settings=env.settings,
            now=env.now,
        )  # fmt: skip
    )
    for (st, raw, data), tables in zip(reads, per_file, strict=True):
        out, warnings = [], list(getattr(raw, "warnings", ()))
        for t in tables:
            norm = next(norms)
            warnings += [*t.warnings, *norm.warnings]
            out.append((t.kind, t, norm))
        rows_read = sum(len(t.frame) + len(t.row_errors) for t in tables)
        st.prep = _Prepared(
            st.item, st.sha, data, raw, out, rows_read, list(dict.fromkeys(warnings))
        )
    return staged


@dataclass(frozen=True)
class _StageEnv:
    """What staging needs, without the store: sent once to each worker process."""

    settings: Settings
    protocol: Protocol
    now: pd.Timestamp
    shas: dict[str, str]


_WORKER_ENV: _StageEnv | None = None


def _worker_init(env: _StageEnv) -> None:
    global _WORKER_ENV
    _WORKER_ENV = env
    ensure_validation_enabled()


def _worker_usage() -> dict[str, float]:
    """This worker's CPU seconds and peak resident memory (VmHWM, MiB)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"pid": os.getpid(), "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": _vm_hwm_mib()}


def _vm_hwm_mib() -> float:
    """Peak resident memory of this process (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: CPU and peak memory of each worker process of the last batch (for benchmarks).
LAST_WORKER_USAGE: list[dict[str, float]] = []


def _close_pool(pool: Executor, n_proc: int) -> None:
    """Shut the pool down, first asking each worker process for its resource usage."""
    LAST_WORKER_USAGE.clear()
    if n_proc:
        try:
            futs = [pool.submit(_worker_usage) for _ in range(n_proc * 2)]
            seen = {u["pid"]: u for u in (f.result(timeout=10) for f in futs)}
            LAST_WORKER_USAGE.extend(seen.values())
        except Exception:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _stage_in_worker(items: list[_Item], patients: pd.DataFrame) -> list[_Staged]:
    """:func:`_stage_many` in a worker process (its environment came with the initializer)."""
    if _WORKER_ENV is None:  # pragma: no cover - the pool always runs the initializer
        raise RuntimeError("import worker not initialised")
    staged = _stage_many(_WORKER_ENV, items, patients)
    for st in staged:  # a reader's refusal may not survive pickling: send message and reason
        if st.refused is not None:
            sent = InputDataError(str(st.refused))
            sent.reason = getattr(st.refused, "reason", None)  # type: ignore[attr-defined]
            st.refused = sent
    return staged


#: A group of files shares one transaction (and one CHECKPOINT) and is normalised together.
GROUP_MAX_FILES = 64
GROUP_MAX_BYTES = 8 << 20


def _pool_workers(workers: int | None, items: list[_Item]) -> int:
    """How many worker processes stage files (0: a helper thread in this process).

    ``workers=None`` chooses: one worker process for a batch of at least
    ``AUTO_WORKER_FILES`` small files (on average under ``AUTO_WORKER_BYTES``), else the
    helper thread. Small files cost mostly Python-level reading and normalisation, which the
    helper thread runs under the GIL alongside the writer; a worker process runs it beside the
    writer (2,321 weekly files: 10.8 -> 7.6 ms per file on 2 cores). Large files are staged
    in the helper thread: their frames would cost more to send between processes than the
    worker saves (measured slower), and a worker costs ~400 MiB. A worker that cannot start
    (say, a script without an ``if __name__ == "__main__"`` guard) falls back to the thread.
    """
    real = _read_export is _REAL_STAGES[0] and _normalize is _REAL_STAGES[1]
    if not real:  # tests replace the two stages with stand-ins in this process only
        return 0
    if workers is not None:
        return max(workers, 0)
    if len(items) < AUTO_WORKER_FILES or (os.cpu_count() or 1) < 2:
        return 0
    sizes = []
    for it in items:
        try:
            sizes.append(it.path.stat().st_size)
        except OSError:
            sizes.append(0)
    return 1 if sum(sizes) / len(sizes) <= AUTO_WORKER_BYTES else 0


#: ``workers=None``: a batch of this many files or more, on average this small, is staged
#: in a worker process.
AUTO_WORKER_FILES = 200
AUTO_WORKER_BYTES = 256 << 10


def _make_pool(ctx: _Context, n: int) -> Executor:
    if n == 0:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="backcare-import")
    import multiprocessing as mp

    mpc = mp.get_context("forkserver")
    mpc.set_forkserver_preload(["backcare_analytics.io.importer"])
    env = _StageEnv(ctx.settings, ctx.protocol, ctx.now, dict(ctx.shas))
    pool = ProcessPoolExecutor(n, mp_context=mpc, initializer=_worker_init, initargs=(env,))
    for _ in range(n):  # start the workers now (about a second) while the first file is staged
        pool.submit(os.getpid)
    return pool


def _is_store_file(path: Path, store: Store) -> bool:
    """The store file, its WAL and the raw archive are never offered as exports (a folder
    given to ``import`` may contain them)."""
    p = path.resolve()
    db = store.path.resolve()
    return p in (db, db.with_name(db.name + ".wal")) or p.is_relative_to(
        store.archive.root.resolve()
    )


def _looks_like_patients(item: _Item) -> bool:
    return "patient" in item.name.lower()


def _order(items: list[_Item]) -> list[_Item]:
    """Files named like a patients file first (a cheap guess; the retry covers a wrong one)."""
    return sorted(items, key=lambda it: not _looks_like_patients(it))


def _groups(items: list[_Item]) -> list[list[_Item]]:
    """Consecutive small files in groups (up to GROUP_MAX_FILES and GROUP_MAX_BYTES); a file
    named like a patients file, or a large one, is a group of its own."""
    out: list[list[_Item]] = []
    size = 0
    for it in items:
        try:
            n = it.path.stat().st_size
        except OSError:
            n = GROUP_MAX_BYTES
        alone = _looks_like_patients(it) or n >= GROUP_MAX_BYTES
        last = out[-1] if out else None
        if (
            alone
            or last is None
            or _looks_like_patients(last[0])
            or len(last) >= GROUP_MAX_FILES
            or size + n > GROUP_MAX_BYTES
        ):
            out.append([it])
            size = n
        else:
            last.append(it)
            size += n
    return out


def _run(
    items: list[_Item],
    store: Store,
    *,
    dry_run: bool,
    progress: Progress | None,
    settings: Settings,
    protocol: Protocol | None,
    now: pd.Timestamp | None,
    patients_first: bool,
    workers: int | None = None,
) -> ImportReport:
    """Write files in order, a group of small files per transaction, while the next groups
    are read and normalised ahead: in a helper thread, or in ``workers`` worker processes
    (:func:`_pool_workers`). A file holding patients (or named like
    one) is written before any later file is staged, so later files see its patients; a file
    staged before a patients file was written (the name guess was wrong) is staged again."""
    ensure_validation_enabled()
    report = ImportReport(dry_run=dry_run)
    target = WriteTarget(store, dry_run)
    pool: Executor | None = None
    n_proc = 0
    try:
        ctx = _Context(
            target=target,
            settings=settings,
            protocol=protocol or load_protocol(settings.protocol),
            now=pd.Timestamp(now or datetime.now(UTC)).tz_convert("UTC"),
            patients=target.patients(),
            shas=target.imported_shas(),
            report=report,
        )
        ordered = _order(items) if patients_first else list(items)
        groups = _groups(ordered)
        n_proc = _pool_workers(workers, ordered)
        try:
            pool = _make_pool(ctx, n_proc)
        except BrokenProcessPool:
            n_proc, pool = 0, _make_pool(ctx, 0)
        depth = n_proc + 1 if n_proc else 1  # groups staged ahead (bounds memory)

        def in_process(its: list[_Item], pts: pd.DataFrame) -> list[_Staged]:
            return _stage_many(ctx, its, pts)

        stage: Callable[[list[_Item], pd.DataFrame], list[_Staged]] = (
            _stage_in_worker if n_proc else in_process
        )
        pending: deque[tuple[int, int, Future[list[_Staged]]]] = deque()  # (group, version, _)
        version, nxt = 0, 0
        for gi, group in enumerate(groups):
            if pending and pending[0][0] == gi:
                _, v, fut = pending.popleft()
                try:
                    staged = fut.result()
                except BrokenProcessPool:  # the worker could not start or died: go on here
                    if n_proc:
                        _close_pool(pool, 0)
                        pool, n_proc, depth, stage = _make_pool(ctx, 0), 0, 1, in_process
                    v = -1
                if v != version:  # staged before a patients file was written: again
                    staged = _stage_many(ctx, group, ctx.patients)
            else:
                staged = _stage_many(ctx, group, ctx.patients)
                nxt = max(nxt, gi + 1)
            if not any(st.has_patients for st in staged):
                while (
                    nxt < len(groups)
                    and len(pending) < depth
                    and not any(_looks_like_patients(groups[k][0]) for k in range(gi + 1, nxt))
                ):
                    try:
                        fut = pool.submit(stage, groups[nxt], ctx.patients)
                    except BrokenProcessPool:  # staged again in this process when its turn comes
                        fut = Future()
                        fut.set_exception(BrokenProcessPool("import worker unavailable"))
                    pending.append((nxt, version, fut))
                    nxt += 1
            try:
                version = _write_staged_group(ctx, staged, version)
            except StoreBusyError as exc:
                # Files before this one stay committed: say which, then stop.
                k = len(report.files)
                done = sum(f.status == "imported" for f in report.files)
                err = StoreBusyError(
                    f"{exc} {ordered[k].name} and {len(ordered) - k - 1} later file(s) were not "
                    f"imported; {done} earlier file(s) were (run the command again to finish)."
                )
                err.report = report  # type: ignore[attr-defined]
                raise err from None
            if progress:
                progress(len(report.files), len(ordered), group[-1].name)
    finally:
        if pool is not None:
            _close_pool(pool, n_proc)
        target.close()
    return report


def _write_staged_group(ctx: _Context, staged: list[_Staged], version: int) -> int:
    """Write a staged group in order: runs of ordinary files share a transaction; a file
    holding patients goes alone, and the files after it are staged again. Returns the
    patients version (one more per patients file written)."""
    j = 0
    while j < len(staged):
        st = staged[j]
        if st.has_patients:
            _write_staged(ctx, st)
            version += 1
            j += 1
            if j < len(staged):  # normalised without this file's patients: again
                staged[j:] = _stage_many(ctx, [s.item for s in staged[j:]], ctx.patients)
            continue
        run = [st]
        while (
            j + len(run) < len(staged)
            and _groupable(ctx, st)
            and _groupable(ctx, staged[j + len(run)])
        ):
            run.append(staged[j + len(run)])
        _write_group(ctx, run)
        j += len(run)
    return version


def _groupable(ctx: _Context, st: _Staged) -> bool:
    return (
        st.prep is not None
        and not st.has_patients
        and not st.already
        and ctx.shas.get(st.sha) != "imported"
    )


def _write_group(ctx: _Context, run: list[_Staged]) -> None:
    """Several files in one transaction and one CHECKPOINT, each with its own ledger row.

    Each file stays all or none: when anything fails, the whole group is rolled back and its
    files are written again one transaction each, so one bad file never takes others down.
    """
    if len(run) == 1:
        _write_staged(ctx, run[0])
        return
    archived: list[str] = []
    reps: list[FileReport] = []
    try:
        with ctx.target.transaction() as con:
            merged = _merge_run(con, [st.prep for st in run if st.prep is not None])
            group = _GroupWrite(merged) if merged is not None else None
            for st in run:
                assert st.prep is not None
                rep, new = _write_in(ctx, con, st.prep, group)
                reps.append(rep)
                if new:
                    archived.append(st.sha)
            if group is not None:
                archived += group.flush(ctx, con)
    except StoreBusyError:
        raise
    except Exception:
        for sha in archived:
            ctx.target.store.archive.discard(sha)
        for st in run:
            _write_staged(ctx, st)
        return
    except BaseException:
        for sha in archived:
            ctx.target.store.archive.discard(sha)
        raise
    for st, rep in zip(run, reps, strict=True):
        _book(ctx, st, rep)


def _merge_run(
    con: duckdb.DuckDBPyConnection, preps: list[_Prepared]
) -> dict[tuple[str, str], MergeResult] | None:
    """Merge a group's rows with one :func:`merge_group` per table kind and round: each round
    takes the files that share no record key or session time with an earlier file still
    waiting (their earlier versions are then in the store), so the result equals file-by-file
    merges. None (merge file by file) when a file is already stored or twice in the group."""
    shas = [p.sha for p in preps]
    q = "SELECT count(*) FROM imports WHERE status = 'imported' AND list_contains(?, sha256)"
    if len(set(shas)) < len(shas) or con.execute(q, [shas]).fetchall()[0][0]:
        return None
    by_kind: dict[str, list[tuple[int, str, pd.DataFrame]]] = {}
    norms: dict[str, list[Any]] = {}
    for i, prep in enumerate(preps):
        for kind, _, norm in prep.tables:
            if kind == "patients":
                return None
            by_kind.setdefault(kind, []).append((i, prep.sha, norm.clean))
            norms.setdefault(kind, []).append(norm)
    repeats = {kind: any(n.repeats for n in got) for kind, got in norms.items()}
    # One Arrow table per kind for the whole group; each round merges a subset of its files.
    parts = {kind: [(sha, clean) for _, sha, clean in got] for kind, got in by_kind.items()}
    tables = {
        kind: incoming_table(kind, p, together=_together(norms[kind])) for kind, p in parts.items()
    }
    out: dict[tuple[str, str], MergeResult] = {}
    waiting = set(range(len(preps)))
    while waiting:
        late: set[int] = set()
        for kind, got in by_kind.items():
            mine = [k for k, (i, _, _) in enumerate(got) if i in waiting]
            if len(mine) > 1:
                pos = late_files(con, kind, parts[kind], table=tables[kind], files=mine)
                late |= {got[k][0] for k in pos}
        for kind, got in by_kind.items():
            sub = [k for k, (i, _, _) in enumerate(got) if i in waiting and i not in late]
            if sub:
                res = merge_group(
                    con, kind, parts[kind], table=tables[kind], files=sub, repeats=repeats[kind]
                )
                out.update({(sha, kind): r for sha, r in res.items()})
        waiting = late
    return out


def _together(norms: list[Any]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The clean rows of ``norms`` in one frame, taken from the batch they were normalised in
    (one ``take`` instead of concatenating many small frames); None when they come from
    different batches."""
    batch = norms[0].batch
    if batch is None or any(n.batch is None or n.batch[0] is not batch[0] for n in norms):
        return None
    starts = np.array([n.batch[1] for n in norms], dtype=np.int64)
    lengths = np.array([n.batch[2] - n.batch[1] for n in norms], dtype=np.int64)
    files = np.repeat(np.arange(len(norms), dtype=np.int64), lengths)
    first = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    pos = first + np.arange(len(files), dtype=np.int64)
    frame = batch[0]
    if len(pos) == len(frame) and (pos == np.arange(len(frame))).all():
        return frame, files  # the whole batch, in order
    return frame.take(pos).reset_index(drop=True), files


def _write_staged(ctx: _Context, st: _Staged) -> None:
    if st.already or ctx.shas.get(st.sha) == "imported":  # (a worker's list may be older)
        rep = FileReport(path=st.item.name, sha256=st.sha, status="already_imported")
    elif st.refused is not None:
        rep = _refused(ctx, st.item, st.sha, st.size, st.refused)
        ctx.shas[st.sha] = "refused"
    else:
        assert st.prep is not None
        rep = _write_file(ctx, st.prep)
    _book(ctx, st, rep)


def _book(ctx: _Context, st: _Staged, rep: FileReport) -> None:
    """After a file's transaction committed: the batch's own records of it."""
    if st.prep is not None and st.refused is None and not st.already:
        ctx.shas[st.sha] = "imported"
        if rep.status != "already_imported":
            for kind, _, norm in st.prep.tables:
                if kind == "patients":
                    ctx.patients = _upsert_patients(ctx.patients, norm.clean)
            if ctx.target.dry_run and rep.reject_reasons.get("unknown_patient"):
                ctx.held[st.sha] = st.prep.data  # for the retry; a dry run has no archive
    ctx.report.files.append(rep)
    ctx.by_sha[st.sha] = rep


def import_paths(
    paths: Iterable[Path | str],
    store: Store | None = None,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    settings: Settings | None = None,
    protocol: Protocol | None = None,
    now: datetime | pd.Timestamp | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import files and folders into ``store`` (or, with ``dry_run``, only report).

    Parameters
    ----------
    paths
        Files, or folders searched recursively (sorted; hidden files skipped).
    store
        The target; :meth:`Store.from_settings` when omitted.
    dry_run
        Read, validate and de-duplicate against a throw-away copy of the store; write nothing.
    progress
        Called as ``progress(done, total, file_name)`` after each file.
    workers
        Worker processes that read and normalise files ahead of the writer; 0 for a helper
        thread in this process; None (the default) chooses: one worker process for a batch
        of hundreds of small files, else the thread (:func:`_pool_workers`).

    Returns
    -------
    ImportReport
        One :class:`FileReport` per file (``path, sha256, format, kind, status, rows_read,
        accepted, rejected, duplicates, replaced, blank_rows, warnings, reason,
        reject_reasons``) and the earlier files whose ``unknown_patient`` rows were retried.

    Raises
    ------
    ValidationDisabledError
        When pandera's data checks are switched off.
    StoreBusyError
        When another process holds the store longer than ``store_busy_timeout_s``; files
        committed before that stay committed, the file in hand is not written.
    """
    store = store or Store.from_settings(settings)
    settings = settings or store.settings
    ensure_validation_enabled()
    items = [_Item(p, p.name) for p in expand_paths(paths) if not _is_store_file(p, store)]
    return _run(
        items, store, dry_run=dry_run, progress=progress, settings=settings,
        protocol=protocol, now=now, patients_first=True, workers=workers,
    )  # fmt: skip


def rebuild(
    store: Store, raw_archive: Path | str | None = None, *, progress: Progress | None = None
) -> ImportReport:
    """Recreate ``store`` from the raw archive alone, replaying files in their original order.

    The new store is built beside the old one and swapped in when complete; the old file is
    kept as ``<store>.bak``. Files refused whole were never archived and are not replayed.
    """
    from backcare_analytics.store.archive import RawArchive

    archive = RawArchive(raw_archive) if raw_archive is not None else store.archive
    files = archive.files()
    try:  # leave out archived bytes whose import never committed (a crash between the two)
        ledger = store.imports() if store.exists() else None
    except StoreError:
        ledger = None
    if ledger is not None and len(ledger):
        ok = set(ledger.loc[ledger["status"] == "imported", "sha256"])
        files = [f for f in files if f.sha256 in ok]
    tmp = store.path.with_name(store.path.name + ".rebuild")
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)
    new = Store(tmp, archive.root, settings=store.settings)
    new.initialise()
    report = _run(
        [_Item(f.path, f.name) for f in files], new, dry_run=False, progress=progress,
        settings=store.settings, protocol=None, now=None, patients_first=False,
    )  # fmt: skip
    if store.exists():
        os.replace(store.path, store.path.with_name(store.path.name + ".bak"))
        store.path.with_name(store.path.name + ".wal").unlink(missing_ok=True)
    os.replace(tmp, store.path)
    return report
