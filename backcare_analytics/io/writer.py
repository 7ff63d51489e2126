"""Writing staged files into the store: all of a file or none of it.

A file is written in one transaction: its accepted rows (de-duplicated and edit-resolved
set-wise by :mod:`backcare_analytics.store.merge`), its quarantined rows, its ledger row and
its raw copy (:mod:`backcare_analytics.io.ledger`, :mod:`backcare_analytics.store.archive`).
Consecutive small files share one transaction (group commit: one set-wise merge per table,
rejects and ledger rows written once, raw copies flushed together), each still all or none; a
group that fails is rolled back and its files written one transaction each. Rows refused
``unknown_patient`` are retried in the transaction of the patients file that registers them,
and again at the end of every import for any whose patient is registered by then.
Part of the importer (:mod:`backcare_analytics.io.importer` drives it). Names with a leading
underscore are private to the ``io`` package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from backcare_analytics.config import Settings
from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.io.import_report import FileReport, ImportReport, RetryReport
from backcare_analytics.io.ledger import (
    _LEDGER_COLS,
    _LEDGER_SCHEMA,
    _already,
    _as_rejects,
    _insert_ledger,
    _insert_rejects,
    _ledger_values,
    _raw_json,
    _reason_counts,
    _sorted_rejects,
)
from backcare_analytics.io.staging import (
    _Item,
    _normalize,
    _Prepared,
    _read_export,
    _stage_many,
    _Staged,
    _upsert_patients,
)
from backcare_analytics.protocol import Protocol
from backcare_analytics.store.core import CLEAN_DTYPES
from backcare_analytics.store.merge import (
    MergeResult,
    incoming_table,
    late_files,
    merge_group,
    merge_rows,
)
from backcare_analytics.store.target import WriteTarget

__all__: list[str] = []


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


#: Files holding a row refused ``unknown_patient`` whose patient is registered now. The raw
#: row keeps the id as read; a valid id is plain ASCII, which normalisation does not change.
_NOW_REGISTERED = """SELECT DISTINCT r.file_sha FROM rejects r
    WHERE r.reason = 'unknown_patient' AND json_valid(r.raw)
    AND json_extract_string(r.raw, '$.patient_id') IN (SELECT patient_id FROM patients)"""


def _retry_registered(ctx: _Context) -> None:
    """At the end of every import: retry the ``unknown_patient`` rows whose patient is
    registered now, whoever registered it and whenever (an earlier import, another writer
    before this one took the lock, an import interrupted before its retry ran). One cheap
    query decides; nothing is read from the archive unless some such row exists."""
    if not ctx.target.dry_run and not ctx.target.store.exists():
        return
    with ctx.target.transaction() as con:
        shas = [r[0] for r in con.execute(_NOW_REGISTERED).fetchall()]
        if shas:
            _retry_unknown_patients(ctx, con, None, only=shas)


def _retry_unknown_patients(
    ctx: _Context,
    con: duckdb.DuckDBPyConnection,
    this_sha: str | None,
    *,
    only: list[str] | None = None,
) -> None:
    """Re-normalise rows refused ``unknown_patient`` against the patients registered now.

    Runs inside the caller's transaction (the patients file's, or :func:`_retry_registered`'s),
    so it commits or rolls back with it. Files: every file with such rows except
    ``this_sha``, or only the files ``only``. Each file's ledger counts move rows from
    ``rejected`` to ``accepted`` (or ``duplicates``), keeping
    ``rows_read == accepted + rejected + duplicates``.
    """
    from backcare_analytics.store.core import to_frame

    targets = con.execute(
        """SELECT r.file_sha, r.kind, list(DISTINCT r."row" ORDER BY r."row"), i.path, i.seq
        FROM rejects r JOIN imports i ON i.sha256 = r.file_sha
        WHERE r.reason = 'unknown_patient' AND r.file_sha IS DISTINCT FROM ?
        AND (?::VARCHAR[] IS NULL OR list_contains(?::VARCHAR[], r.file_sha))
        GROUP BY ALL ORDER BY i.seq, r.kind""",
        [this_sha, only, only],
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


def _refused(ctx: _Context, item: _Item, sha: str, size: int, exc: Exception) -> FileReport:
    reason = str(getattr(exc, "reason", "") or "refused")
    rep = FileReport(path=item.name, sha256=sha, status="refused", reason=reason)
    if not ctx.target.dry_run:
        with ctx.target.transaction() as con:
            _insert_ledger(con, rep, size, "refused", reason, ctx.now)
    return rep


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
