"""Import exports into the store: nothing lost, every refused row explained, all or nothing.

For each file: hash it; skip it if those bytes were imported before (``already_imported``);
read it (:func:`backcare_analytics.io.readers.read_export`); normalise and validate each table
(:func:`backcare_analytics.io.normalize.normalize`); de-duplicate and resolve edits against the
store set-wise (:mod:`backcare_analytics.store.merge`); then write the accepted rows, the
quarantined rows, the ledger row and the raw copy in **one** transaction. Files named like
patients files go first; rows refused ``unknown_patient`` are retried automatically, in the
transaction of the patients file that registers their patient, so the order of files does not
change the result. The next file is read and normalised in a helper thread while DuckDB writes
the current one. See ``docs/import.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.errors import InputDataError, StoreBusyError, StoreError
from backcare_analytics.io.import_report import FileReport, ImportReport, RetryReport
from backcare_analytics.protocol import Protocol, build_prescriptions, load_protocol
from backcare_analytics.schemas import ensure_validation_enabled
from backcare_analytics.store.archive import sha256_bytes
from backcare_analytics.store.core import CLEAN_DTYPES, Store
from backcare_analytics.store.merge import merge_rows
from backcare_analytics.store.target import WriteTarget

__all__ = ["ImportReport", "expand_paths", "import_paths", "rebuild"]

#: ``progress(done, total, name)`` after each file.
Progress = Callable[[int, int, str], None]

_KIND_ORDER = {"patients": 0, "sessions": 1, "pain": 2}
_REJECT_COLS = ["file_sha", "kind", "row", "column", "reason", "detail", "raw"]


# -- the two stages owned by io.readers and io.normalize (imported on first use) ---------------


def _read_export(path: Path, settings: Settings, data: bytes | None) -> Any:
    from backcare_analytics.io.readers import read_export

    return read_export(path, settings, data=data)


def _normalize(table: Any, **kwargs: Any) -> Any:
    from backcare_analytics.io.normalize import normalize

    return normalize(table, **kwargs)


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
    ctx: _Context, item: _Item, data: bytes, sha: str, raw: Any, patients: pd.DataFrame
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
        with ctx.target.transaction() as con:
            if _already(con, prep.sha):
                rep.status, rep.rows_read, rep.blank_rows = "already_imported", 0, 0
                return rep
            all_rejects, new_ids = [], []
            for kind, table, norm in prep.tables:
                res = merge_rows(con, kind, norm.clean, prep.sha)
                rej = _as_rejects(norm.rejects, prep.sha, kind)
                if len(res.rejects):
                    mr = res.rejects.copy()
                    mr["raw"] = _raw_json(table, mr["row"].to_numpy())
                    rej = pd.concat([rej, _as_rejects(mr, prep.sha, kind)], ignore_index=True)
                n_rej = rej.drop_duplicates(["row"])["row"].shape[0]
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
                all_rejects.append(rej)
                new_ids += res.inserted_ids
            rejects = pd.concat(all_rejects, ignore_index=True) if all_rejects else None
            if rejects is not None and len(rejects):
                _insert_rejects(con, rejects)
                rep.reject_reasons = _reason_counts(rejects)
            seq = _insert_ledger(con, rep, len(prep.data), "imported", None, ctx.now)
            if any(k == "patients" for k, _, _ in prep.tables):
                _refresh_prescriptions(con, ctx.protocol)
            if not ctx.target.dry_run:
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
    return rep


def _already(con: duckdb.DuckDBPyConnection, sha: str) -> bool:
    q = "SELECT count(*) FROM imports WHERE sha256 = ? AND status = 'imported'"
    return con.execute(q, [sha]).fetchall()[0][0] > 0


def _insert_rejects(con: duckdb.DuckDBPyConnection, rejects: pd.DataFrame) -> None:
    con.register("_rej", rejects[_REJECT_COLS])
    try:
        con.execute('INSERT INTO rejects SELECT * FROM _rej ORDER BY kind, "row", reason')
    finally:
        con.unregister("_rej")


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
        [seq, rep.sha256, rep.path, size, rep.format, rep.kind, rep.rows_read, rep.accepted,
         rep.rejected, rep.duplicates, rep.replaced, rep.blank_rows, status, reason,
         json.dumps(rep.warnings), now.to_pydatetime(), _package_version()],
    )  # fmt: skip
    return int(seq)


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
        res = merge_rows(con, kind, norm.clean, sha)
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


def _stage(ctx: _Context, item: _Item, patients: pd.DataFrame) -> _Staged:
    """Everything of one file that needs no store lock: hash, read, normalise."""
    size = item.path.stat().st_size
    if size > ctx.settings.max_file_bytes:  # hash it in chunks; the reader refuses it
        sha = _sha256_file(item.path)
        if ctx.shas.get(sha) == "imported":
            return _Staged(item, sha, size, already=True)
        try:
            _read_export(item.path, ctx.settings, None)
            raise InputDataError(f"{item.name}: over the size limit")
        except InputDataError as exc:
            return _Staged(item, sha, size, refused=exc)
    data, sha = _load(item)
    if ctx.shas.get(sha) == "imported":
        return _Staged(item, sha, size, already=True)
    try:
        raw = _read_export(Path(item.name), ctx.settings, data)
    except InputDataError as exc:
        return _Staged(item, sha, size, refused=exc)
    return _Staged(item, sha, size, prep=_prepare(ctx, item, data, sha, raw, patients))


def _is_store_file(path: Path, store: Store) -> bool:
    """The store file, its WAL and the raw archive are never offered as exports (a folder
    given to ``import`` may contain them)."""
    p = path.resolve()
    db = store.path.resolve()
    return p in (db, db.with_name(db.name + ".wal")) or p.is_relative_to(
        store.archive.root.resolve()
    )


def _order(items: list[_Item]) -> list[_Item]:
    """Files named like a patients file first (a cheap guess; the retry covers a wrong one)."""
    return sorted(items, key=lambda it: "patient" not in it.name.lower())


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
) -> ImportReport:
    """Write files one transaction each, in order, while the next file is read and normalised
    in a helper thread (DuckDB releases the GIL while it writes). A file holding patients is
    written before the next file is normalised, so later files see its patients."""
    ensure_validation_enabled()
    report = ImportReport(dry_run=dry_run)
    target = WriteTarget(store, dry_run)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backcare-import")
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
        ahead: Future[_Staged] | None = None
        for i, item in enumerate(ordered):
            staged = ahead.result() if ahead is not None else _stage(ctx, item, ctx.patients)
            ahead = None
            if i + 1 < len(ordered) and not staged.has_patients:
                ahead = pool.submit(_stage, ctx, ordered[i + 1], ctx.patients)
            try:
                _write_staged(ctx, staged)
            except StoreBusyError as exc:
                # Files before this one stay committed: say which, then stop.
                done = sum(f.status == "imported" for f in report.files)
                err = StoreBusyError(
                    f"{exc} {item.name} and {len(ordered) - i - 1} later file(s) were not "
                    f"imported; {done} earlier file(s) were (run the command again to finish)."
                )
                err.report = report  # type: ignore[attr-defined]
                raise err from None
            if progress:
                progress(i + 1, len(ordered), item.name)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        target.close()
    return report


def _write_staged(ctx: _Context, st: _Staged) -> None:
    if st.already:
        rep = FileReport(path=st.item.name, sha256=st.sha, status="already_imported")
    elif st.refused is not None:
        rep = _refused(ctx, st.item, st.sha, st.size, st.refused)
        ctx.shas[st.sha] = "refused"
    else:
        assert st.prep is not None
        rep = _write_file(ctx, st.prep)
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
        protocol=protocol, now=now, patients_first=True,
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
