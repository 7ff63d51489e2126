"""Replacing a store file by a rebuilt one without ever losing either.

:func:`swap_in` keeps the old store as a numbered backup (``<store>.bak``, ``<store>.bak.1``,
…; an existing backup is never overwritten) and puts the new file in its place so that the
store's name never points at nothing: the backup is a hard link made first, then the new file
is renamed over the store (one atomic ``rename``). A process killed at any step leaves the old
store or the new one under the store's name, both whole, plus at most an extra backup; running
``rebuild`` again converges. :func:`row_counts` is what ``rebuild`` compares before it swaps.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import duckdb

from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.store.db import connect, environment_error, sync_folder

__all__ = ["COUNTED", "backup_paths", "rebuild_path", "row_counts", "swap_in"]

#: The tables a rebuild may not shrink without ``--force``.
COUNTED = ("sessions", "pain", "patients")


def rebuild_path(store: Path) -> Path:
    """Where ``rebuild`` builds the new store before :func:`swap_in`: ``<store>.rebuild``."""
    return store.with_name(store.name + ".rebuild")


def wal_path(path: Path) -> Path:
    """DuckDB's write-ahead log of the database file ``path``."""
    return path.with_name(path.name + ".wal")


def backup_paths(store: Path) -> list[Path]:
    """The store's backups that exist, oldest name first (``.bak``, ``.bak.1``, …)."""
    found = [p for p in store.parent.glob(store.name + ".bak*") if _backup_number(store, p) >= 0]
    return sorted(found, key=lambda p: _backup_number(store, p))


def _backup_number(store: Path, p: Path) -> int:
    suffix = p.name.removeprefix(store.name + ".bak")
    if suffix == "":
        return 0
    return int(suffix[1:]) if suffix.startswith(".") and suffix[1:].isdigit() else -1


def row_counts(path: Path, timeout_s: float) -> dict[str, int] | None:
    """Rows of each :data:`COUNTED` table of the store file ``path`` (a missing table counts
    0); None when there is no file or it cannot be read (damaged)."""
    if not path.exists():
        return None
    try:
        with connect(path, read_only=True, timeout_s=timeout_s) as con:
            q = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            have = {r[0] for r in con.execute(q).fetchall()}
            return {
                t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                if t in have
                else 0
                for t in COUNTED
            }
    except (StoreError, duckdb.Error):
        return None


def _link_exclusive(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (a hard link, or a copy where the file system
    has none); FileExistsError when ``dst`` exists."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


def _keep_backup(store: Path) -> Path:
    """Link the store file (and a WAL it still has) to the first free backup name."""
    n = 0
    while True:
        bak = store.with_name(store.name + (".bak" if n == 0 else f".bak.{n}"))
        if not bak.exists() and not wal_path(bak).exists():
            try:
                _link_exclusive(store, bak)
            except FileExistsError:
                pass  # taken meanwhile: try the next name
            else:
                break
        n += 1
    wal = wal_path(store)
    if wal.exists():  # a store that could not be checkpointed: its log goes with it
        _link_exclusive(wal, wal_path(bak))
        wal.unlink()
    return bak


def _checkpoint(store: Path, timeout_s: float) -> None:
    """Fold the old store's WAL into its file, so the WAL never meets the new file."""
    if not wal_path(store).exists():
        return
    try:
        with connect(store, read_only=False, timeout_s=timeout_s) as con:
            con.execute("CHECKPOINT")
    except StoreBusyError:
        raise  # a reader holds it: swap nothing rather than move its log away from it
    except (StoreError, duckdb.Error):
        pass  # a damaged store (the reason to rebuild): its log goes with it to the backup


def swap_in(new: Path, store: Path, timeout_s: float) -> Path | None:
    """Put the closed store file ``new`` (no WAL) in the place of ``store``, keeping the old
    one as a numbered backup; returns the backup (None when there was no old store).

    The old file is linked to the backup name first, then ``new`` is renamed over ``store``:
    at every moment ``store`` names a whole store, the old one or the new one.
    """
    if wal_path(new).exists():
        raise StoreError(f"{new}: the rebuilt store still has a write-ahead log; not swapped in.")
    try:
        bak = None
        if store.exists():
            _checkpoint(store, timeout_s)
            bak = _keep_backup(store)
        os.replace(new, store)
        sync_folder(store.parent)
    except OSError as exc:
        raise environment_error(exc, store) from exc
    return bak
