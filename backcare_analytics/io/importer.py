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
one transaction each. The next group is read and normalised ahead while DuckDB writes the
current one: in a helper thread, or in a worker process (by default for a batch of hundreds of
small files; ``workers`` chooses). See ``docs/import.md``.

The work is split in three modules: :mod:`backcare_analytics.io.staging` (hash, read,
normalise, ahead of the writer), :mod:`backcare_analytics.io.writer` (transactions, group
commit, the unknown-patient retry) and :mod:`backcare_analytics.io.ledger` (rejects, ledger,
prescriptions); this module orders the files, groups them and runs the pipeline.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.errors import InputDataError, StoreError
from backcare_analytics.io.import_report import ImportReport
from backcare_analytics.io.staging import (
    LAST_WORKER_USAGE as LAST_WORKER_USAGE,  # for benchmarks: the last batch's workers
)
from backcare_analytics.io.staging import (
    _close_pool,
    _Item,
    _make_pool,
    _pool_workers,
    _stage_in_worker,
    _stage_many,
    _Staged,
)
from backcare_analytics.io.staging import (
    _vm_hwm_mib as _vm_hwm_mib,  # for benchmarks: peak resident memory of this process
)
from backcare_analytics.io.writer import _Context, _retry_registered, _write_staged_group
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.schemas import ensure_validation_enabled
from backcare_analytics.store.backup import rebuild_path, row_counts, swap_in, wal_path
from backcare_analytics.store.core import Store
from backcare_analytics.store.db import environment_error
from backcare_analytics.store.target import WriteTarget

__all__ = ["ImportReport", "RebuildResult", "expand_paths", "import_paths", "rebuild"]

#: ``progress(done, total, name)`` after each file.
Progress = Callable[[int, int, str], None]


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


#: A group of files shares one transaction (and one CHECKPOINT) and is normalised together.
#: 16 MiB holds four 50k-row CSV exports (~190k rows per insert and commit): for 1M rows the
#: writer took 2.5-2.7 s instead of 3.5-3.8 s with 8 MiB groups (fewer, larger inserts and
#: commits, measured on 2 cores); peak memory stays well under 1 GiB (``bench_import``).
#: 128 small files per group: 6.6 ms per weekly file against 7.1 ms with 64 (256: 6.3 ms, but
#: a bigger group holds the store's lock longer, and a failed one is redone file by file).
GROUP_MAX_FILES = 128
GROUP_MAX_BYTES = 16 << 20


def _is_store_file(path: Path, store: Store) -> bool:
    """The store file and the files beside it named after it (its WAL, lock, backups, a
    rebuild in progress) and the raw archive are never offered as exports (a folder given to
    ``import`` may contain them)."""
    p = path.resolve()
    db = store.path.resolve()
    return (
        p == db
        or (p.parent == db.parent and p.name.startswith(db.name + "."))
        or p.is_relative_to(store.archive.root.resolve())
    )


def _looks_like_patients(item: _Item) -> bool:
    return "patient" in item.name.lower()


def _order(items: list[_Item]) -> list[_Item]:
    """Files named like a patients file first (a cheap guess; the retry covers a wrong one)."""
    return sorted(items, key=lambda it: not _looks_like_patients(it))


def _groups(items: list[_Item]) -> list[list[_Item]]:
    """Consecutive small files in groups (up to GROUP_MAX_FILES and GROUP_MAX_BYTES); a file
    named like a patients file, or a large one, is a group of its own. The first group, and
    the first after a patients file, take a quarter of that: nothing is staged ahead of them
    (the pipeline is empty), so the sooner they are written the sooner writing and staging
    overlap."""
    out: list[list[_Item]] = []
    size, cap_files, cap_bytes = 0, GROUP_MAX_FILES, GROUP_MAX_BYTES
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
            or len(last) >= cap_files
            or size + n > cap_bytes
        ):
            first = last is None or _looks_like_patients(last[0])
            cap_files = max(GROUP_MAX_FILES // 4, 1) if first else GROUP_MAX_FILES
            cap_bytes = GROUP_MAX_BYTES // 4 if first else GROUP_MAX_BYTES
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
                    except (BrokenProcessPool, OSError, RuntimeError):  # a worker could not
                        # (re)start: the group is staged again in this process when its turn comes
                        fut = Future()
                        fut.set_exception(BrokenProcessPool("import worker unavailable"))
                    pending.append((nxt, version, fut))
                    nxt += 1
            try:
                version = _write_staged_group(ctx, staged, version)
            except (StoreError, duckdb.Error, OSError) as exc:
                raise _stopped(exc, store, report, ordered) from None
            if progress:
                progress(len(report.files), len(ordered), group[-1].name)
        try:
            _retry_registered(ctx)
        except (StoreError, duckdb.Error, OSError) as exc:
            raise _stopped(exc, store, report, ordered) from None
    finally:
        if pool is not None:
            _close_pool(pool, n_proc)
        target.close()
    return report


def _stopped(
    exc: BaseException, store: Store, report: ImportReport, ordered: list[_Item]
) -> StoreError:
    """The error that stops a batch while writing (store busy, a full or read-only disk, a
    damaged store): what happened, which file stopped it and how many were done; the files
    before it stay committed (``report`` of them attached as ``.report``). Anything else (an
    OSError about an input file, a DuckDB error that is no failure of the machine: a bug) is
    re-raised as it is."""
    base = environment_error(exc, store.path)
    if not isinstance(exc, StoreError) and (
        base.reason is None or (isinstance(exc, OSError) and not _about_the_store(exc, store))
    ):
        raise exc
    k = len(report.files)
    done = sum(f.status == "imported" for f in report.files)
    if k < len(ordered):
        where = (
            f"{ordered[k].name} and {len(ordered) - k - 1} later file(s) were not imported; "
            f"{done} earlier file(s) were (run the command again to finish)."
        )
    else:
        where = (
            f"Every file was written ({done} imported now), but not the final retry of rows "
            "refused unknown_patient (run the command again to finish it)."
        )
    err = type(base)(f"{base} {where}", base.reason)
    err.report = report  # type: ignore[attr-defined]
    return err


def _about_the_store(exc: OSError, store: Store) -> bool:
    """Whether an OSError concerns the disk under the store (a full or read-only disk, or a
    file of the store or its archive), not an input file."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    name = Path(str(exc.filename)) if exc.filename else None
    return name is not None and (
        name.is_relative_to(store.archive.root) or name.name.startswith(store.path.name)
    )


def import_paths(
    paths: Iterable[Path | str],
    store: Store | Path | str | None = None,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    settings: Settings | None = None,
    protocol: Protocol | None = None,
    now: datetime | pd.Timestamp | None = None,
    workers: int | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import files and folders into ``store`` (or, with ``dry_run``, only report).

    One writer at a time: the import holds the store's writer lock
    (:meth:`Store.exclusive`) for the whole batch, taken before the registered patients are
    read; a second import waits for it (``Settings.store_lock_timeout_s``). At the end, rows
    refused ``unknown_patient`` whose patient is registered by then are retried.

    Parameters
    ----------
    paths
        Files, or folders searched recursively (sorted; hidden files skipped).
    store
        The target, or its file (:meth:`Store.of`); :meth:`Store.from_settings` when omitted.
    dry_run
        Read, validate and de-duplicate against a throw-away copy of the store; write nothing.
    progress
        Called as ``progress(done, total, file_name)`` after each file.
    workers
        Worker processes that read and normalise files ahead of the writer; 0 for a helper
        thread in this process; None (the default) chooses: one worker process for a batch
        of hundreds of small files, else the thread (:func:`_pool_workers`).
    on_wait
        Called once with a message when another writer holds the store and this one waits.

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
        When another writer holds the store longer than ``store_lock_timeout_s`` (nothing
        written), or a DuckDB connection holds the file longer than ``store_busy_timeout_s``
        mid-batch (files committed before that stay committed, the file in hand is not).
    StoreError
        The disk under the store is full or read-only, or the store file is damaged; the
        message gives the advice that fits, files committed before stay committed.
    """
    store = Store.from_settings(settings) if store is None else Store.of(store)
    settings = settings or store.settings
    ensure_validation_enabled()
    items = [_Item(p, p.name) for p in expand_paths(paths) if not _is_store_file(p, store)]

    def run() -> ImportReport:
        return _run(
            items, store, dry_run=dry_run, progress=progress, settings=settings,
            protocol=protocol, now=now, patients_first=True, workers=workers,
        )  # fmt: skip

    if dry_run:  # reads a copy of the store: no lock (it never waits for a writer's batch)
        return run()
    with store.exclusive(on_wait):  # before anything (the patients, the ledger) is read
        if store.exists():
            store.initialise()  # adds any table an interrupted or older version left out
        return run()


@dataclass(frozen=True)
class RebuildResult:
    """What :func:`rebuild` did: the replay's report, the backup of the old store (None when
    there was none), and the rows of ``sessions``, ``pain`` and ``patients`` before (None:
    no readable store) and after."""

    report: ImportReport
    backup: Path | None
    before: dict[str, int] | None
    after: dict[str, int]

    def summary(self) -> str:
        """The replay's summary, then where the old store was kept."""
        counts = ", ".join(f"{n} {t}" for t, n in self.after.items())
        kept = f"; the old store is kept as {self.backup}" if self.backup else ""
        return f"{self.report.summary()}\nrebuilt store: {counts}{kept}"


def rebuild(
    store: Store,
    raw_archive: Path | str | None = None,
    *,
    progress: Progress | None = None,
    force: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> RebuildResult:
    """Recreate ``store`` from the raw archive alone, replaying every archived file (from
    the manifests) in its original order.

    The new store is built beside the old one (:func:`~backcare_analytics.store.backup.rebuild_path`)
    and swapped in when complete (:func:`~backcare_analytics.store.backup.swap_in`): the old
    file is kept as the next free numbered backup (``.bak``, ``.bak.1``, …) and the store's
    name never points at nothing. Holds the store's writer lock throughout. Files refused
    whole were never archived and are not replayed.

    Parameters
    ----------
    force
        Replace the store even when the rebuilt one has fewer rows in ``sessions``, ``pain``
        or ``patients`` (archived files missing).
    on_wait
        Called once with a message when another writer holds the store and this one waits.

    Raises
    ------
    StoreError
        No archive (``reason`` ``no_archive``), a rebuilt store smaller than the current one
        without ``force`` (``smaller_store``), or a failure of the disk; in each case the
        store is left as it was.
    """
    from backcare_analytics.store.archive import RawArchive

    archive = RawArchive(raw_archive) if raw_archive is not None else store.archive
    timeout = store.settings.store_busy_timeout_s
    with store.exclusive(on_wait):
        if not archive.root.is_dir():
            raise StoreError(
                f"no raw archive at {archive.root}: `rebuild` recreates the store from the raw "
                "files that `import` keeps in that folder beside the store, and without them it "
                "would make an empty store. Nothing was changed. Fix: copy the store's .raw "
                "folder along with the .duckdb file (or set BACKCARE_RAW_ARCHIVE to where it "
                "is), then run `backcare rebuild` again.",
                "no_archive",
            )
        tmp = rebuild_path(store.path)
        try:
            _remove_store_file(tmp)
            new = Store(tmp, archive.root, settings=store.settings)
            new.initialise()
            report = _run(
                [_Item(f.path, f.name) for f in archive.files()], new, dry_run=False,
                progress=progress, settings=store.settings, protocol=None, now=None,
                patients_first=False,
            )  # fmt: skip
            before = row_counts(store.path, timeout)
            after = row_counts(tmp, timeout) or {}
            _refuse_smaller(store, before, after, force)
            backup = swap_in(tmp, store.path, timeout)
        finally:
            _remove_store_file(tmp)
    return RebuildResult(report, backup, before, after)


def _remove_store_file(path: Path) -> None:
    for p in (path, wal_path(path)):
        p.unlink(missing_ok=True)


def _refuse_smaller(
    store: Store, before: dict[str, int] | None, after: dict[str, int], force: bool
) -> None:
    """Raise when the rebuilt store has fewer rows than the current one, unless ``force``."""
    if force or before is None:
        return
    shrunk = {t: (n, after.get(t, 0)) for t, n in before.items() if after.get(t, 0) < n}
    if not shrunk:
        return
    what = ", ".join(f"{t} {old} -> {new}" for t, (old, new) in shrunk.items())
    raise StoreError(
        f"rebuild refused: the store rebuilt from {store.archive.root} would have fewer rows "
        f"than {store.path} ({what}), so some archived files are missing (a .duckdb copied "
        "without its .raw folder?). Nothing was changed. Fix: restore the archive folder, or "
        "run `backcare rebuild --force` to accept the smaller store (the current one is kept "
        "as a numbered .bak).",
        "smaller_store",
    )
