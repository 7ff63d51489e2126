"""The DuckDB file: table definitions, short-lived connections, and what a failure of the disk
under it means.

The clean tables (patients, sessions, pain) are defined by their pandera models in
:mod:`backcare_analytics.schemas.clean`: their DDL, the pandas dtypes of the typed queries and
the merge's column lists are derived here (:func:`clean_columns`, :func:`store_columns`,
:func:`record_columns`), once per process, with the provenance columns the store adds
(:data:`PROVENANCE_COLUMNS`).

Every connection sets ``TimeZone='UTC'`` and lives for one operation. A write connection that
cannot get DuckDB's file lock (another process is writing, or a reader is mid-query) is retried
with backoff for ``Settings.store_busy_timeout_s`` seconds, then :class:`StoreBusyError` is
raised with nothing changed. Files are created readable by the owner only (``0o600``). A new
store file is created whole, tables included (:func:`create_store`); :func:`create_tables`
adds any table an older or damaged store lacks (``CREATE TABLE IF NOT EXISTS``) and drops the
tables an older schema had and nothing reads (:data:`RETIRED_TABLES`), in one transaction. Failures of the disk or the file become a :class:`StoreError` with advice
(:func:`environment_error`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pandera.pandas as pa

from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.safety import create_private_folders
from backcare_analytics.schemas.clean import Pain, Patients, Sessions

__all__ = [
    "CLEAN_MODELS",
    "COLUMN_TYPES",
    "DDL",
    "EDIT_COLUMNS",
    "PROVENANCE_COLUMNS",
    "RETIRED_TABLES",
    "SCHEMA_VERSION",
    "TABLES",
    "StoreColumn",
    "clean_columns",
    "connect",
    "create_tables",
    "environment_error",
    "is_lock_error",
    "record_columns",
    "store_columns",
    "table_ddl",
]

SCHEMA_VERSION = "2"


@dataclass(frozen=True)
class StoreColumn:
    """One column of a stored table: its name, DuckDB type, pandas dtype and nullability."""

    name: str
    sql_type: str
    pandas_dtype: str
    not_null: bool

    def ddl(self) -> str:
        """The column's definition in ``CREATE TABLE``."""
        return f"{self.name} {self.sql_type}{' NOT NULL' if self.not_null else ''}"


#: How a clean model's column type is stored: pandera's name of the dtype -> (DuckDB type, the
#: exact pandas dtype the typed queries return). ``pa.DateTime`` (naive, a calendar day) is
#: stored as ``TIMESTAMP`` and read back in microseconds, pandas 3's unit.
COLUMN_TYPES: dict[str, tuple[str, str]] = {
    "string[pyarrow]": ("VARCHAR", "str"),
    "Int64": ("BIGINT", "Int64"),
    "Float64": ("DOUBLE", "Float64"),
    "boolean": ("BOOLEAN", "boolean"),
    "datetime64[ns]": ("TIMESTAMP", "datetime64[us]"),
    "datetime64[us, UTC]": ("TIMESTAMPTZ", "datetime64[us, UTC]"),
}

#: The clean tables the store keeps, each defined by its pandera model.
CLEAN_MODELS: dict[str, type[pa.DataFrameModel]] = {
    "patients": Patients,
    "sessions": Sessions,
    "pain": Pain,
}

#: The provenance columns the merge writes beside each record (not part of its content):
#: ``updated_at`` (the source's edit time, used by the edit rule) and ``source_row`` (row
#: number in the source file).
EDIT_COLUMNS = ("updated_at", "source_row")
_EDIT = (
    StoreColumn("updated_at", "TIMESTAMPTZ", "datetime64[us, UTC]", False),
    StoreColumn("source_row", "BIGINT", "Int64", False),
)

#: Provenance the store keeps after a clean model's columns, in store order: the
#: :data:`EDIT_COLUMNS`, and for patients first ``source_file`` (the SHA-256 of the file that
#: delivered the row; the clean ``Patients`` model has none). The typed queries drop them.
PROVENANCE_COLUMNS: dict[str, tuple[StoreColumn, ...]] = {
    "patients": (StoreColumn("source_file", "VARCHAR", "str", True), *_EDIT),
    "sessions": _EDIT,
    "pain": _EDIT,
}


@cache
def clean_columns(table: str) -> tuple[StoreColumn, ...]:
    """The columns of clean ``table`` as its pandera model defines them, in model order.

    Raises
    ------
    TypeError
        A model column has a dtype :data:`COLUMN_TYPES` does not know how to store.
    """
    out = []
    for name, col in CLEAN_MODELS[table].to_schema().columns.items():
        dtype = str(col.dtype)
        if dtype not in COLUMN_TYPES:
            raise TypeError(
                f"{table}.{name}: no store type for the pandera dtype {dtype!r}; "
                "fix: add it to backcare_analytics.store.db.COLUMN_TYPES"
            )
        sql_type, pandas_dtype = COLUMN_TYPES[dtype]
        out.append(StoreColumn(name, sql_type, pandas_dtype, not col.nullable))
    return tuple(out)


@cache
def store_columns(table: str) -> tuple[StoreColumn, ...]:
    """Every column of clean ``table`` in the store: the model's, then its provenance."""
    return (*clean_columns(table), *PROVENANCE_COLUMNS[table])


@cache
def record_columns(table: str) -> tuple[str, ...]:
    """The columns of a stored record of clean ``table`` that the merge compares and copies:
    every store column except :data:`EDIT_COLUMNS` (``source_file`` included)."""
    return tuple(c.name for c in store_columns(table) if c.name not in EDIT_COLUMNS)


def table_ddl(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of clean ``table``, generated from its model."""
    cols = ", ".join(c.ddl() for c in store_columns(table))
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols});\n"


#: Store tables. The clean ones (patients, sessions, pain) are generated from their pandera
#: models (:func:`table_ddl`); ``meta``, ``rejects`` and ``imports`` are
#: written here (``rejects``, ``imports`` and ``meta`` have no pandera model).
DDL = (
    """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
"""
    + "".join(table_ddl(t) for t in CLEAN_MODELS)
    + """CREATE TABLE IF NOT EXISTS rejects (
    file_sha VARCHAR NOT NULL, kind VARCHAR NOT NULL, "row" BIGINT, "column" VARCHAR,
    reason VARCHAR NOT NULL, detail VARCHAR, raw VARCHAR);
CREATE TABLE IF NOT EXISTS imports (
    seq BIGINT NOT NULL, sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL, size_bytes BIGINT,
    format VARCHAR, kind VARCHAR, rows_read BIGINT NOT NULL, accepted BIGINT NOT NULL,
    rejected BIGINT NOT NULL, duplicates BIGINT NOT NULL, replaced BIGINT NOT NULL,
    blank_rows BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, warnings VARCHAR,
    imported_at TIMESTAMPTZ NOT NULL, package_version VARCHAR);
"""
)

#: The tables :data:`DDL` creates.
TABLES = ("meta", "patients", "sessions", "pain", "rejects", "imports")

#: Tables an older schema created that nothing reads any more, dropped by :func:`create_tables`
#: (so at the first write to an older store; reading one works before that). Schema 1's
#: ``prescriptions`` held the protocol defaults, rewritten on every import; prescriptions are
#: built from the protocol and the stored patients when asked for (``Store.prescriptions``).
RETIRED_TABLES = ("prescriptions",)

_LOCK_MARKERS = ("could not set lock", "conflicting lock", "different configuration")


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB refusing a file lock held by another connection."""
    return isinstance(exc, duckdb.Error) and any(m in str(exc).lower() for m in _LOCK_MARKERS)


@contextmanager
def owner_only_umask() -> Iterator[None]:
    """Files created inside (the store, its WAL, archived files) are ``0o600``."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _open(path: Path | str, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + max(timeout_s, 0.0)
    delay = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise environment_error(exc, path) from exc
            if time.monotonic() + delay > deadline:
                raise StoreBusyError(
                    f"store busy: {path} is held by another process (an import or an open "
                    f"notebook connection) for more than {timeout_s:g} s; nothing was changed. "
                    "Fix: close the other connection or wait, then run the command again "
                    "(BACKCARE_STORE_BUSY_TIMEOUT_S sets the wait)."
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        con.execute("SET TimeZone='UTC'")
        return con


#: What an environment failure says (lower case; DuckDB's messages or an OSError's errno) and
#: the code and advice it gets. The first match wins.
_ENVIRONMENT = (
    (
        "disk_full",
        (errno.ENOSPC, errno.EDQUOT),
        ("no space left", "disk quota", "disk is full"),
        "the disk is full. Nothing of the file in hand was stored (each file is all or "
        "none). Fix: free some space, then run the same command again (files already "
        "imported are skipped).",
    ),
    (
        "read_only",
        (errno.EROFS,),
        ("read-only file system",),
        "the file system is mounted read-only, so nothing can be written there. Fix: use a "
        "store on a writable disk (--store or BACKCARE_STORE), or remount it read-write; "
        "reading (report, metrics, rejects) still works.",
    ),
    (
        "no_permission",
        (errno.EACCES, errno.EPERM),
        ("permission denied", "operation not permitted"),
        "permission denied. Fix: run as the store's owner, or check the folder's permissions.",
    ),
    (
        "damaged_store",
        (),
        ("could not read enough bytes", "not a valid duckdb", "corrupt", "checksum",
         "invalid database", "unable to open database", "replaying wal"),
        "the file is not a readable backcare store (truncated or damaged). Fix: check the "
        "path, then recreate it from the raw archive with `backcare rebuild` (the damaged "
        "file is kept as a numbered .bak).",
    ),
)  # fmt: skip


def environment_error(exc: BaseException, path: Path | str) -> StoreError:
    """A :class:`StoreError` for a failure of the disk or file under the store: what
    happened, which file, and the advice that fits (a full disk, a read-only mount, missing
    permission, a damaged store file), with ``reason`` set accordingly. Never carries data
    values: only the file, the error's type and the operating system's description.

    >>> environment_error(OSError(28, "No space left on device"), "s.duckdb").reason
    'disk_full'
    """
    if isinstance(exc, StoreError):
        return exc
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    for reason, codes, markers, advice in _ENVIRONMENT:
        if code in codes or any(m in text for m in markers):
            return StoreError(f"cannot open or write {path}: {advice}", reason)
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return StoreError(
        f"cannot open or write the store {path} ({what}). Fix: check the path is a backcare "
        "store on a writable disk; if the file itself is damaged, `backcare rebuild` recreates "
        "it from the raw archive."
    )


@contextmanager
def connect(
    path: Path | str, *, read_only: bool, timeout_s: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection, closed on exit. Write connections create owner-only files;
    a store file that does not exist yet is created whole (:func:`create_store`)."""
    path = Path(path)
    if read_only:
        if not path.exists():
            raise StoreError(
                f"no store at {path}. Fix: import some exports first (`backcare import PATH`) "
                "or pass --store with the right file."
            )
        con = _open(path, True, timeout_s)
    else:
        if not path.exists():
            create_store(path)
        with owner_only_umask():  # the WAL is created during writes: keep the mask until closed
            con = _open(path, False, timeout_s)
            try:
                os.chmod(path, 0o600)
            except OSError:  # pragma: no cover - e.g. a file owned by someone else
                pass
            try:
                yield con
            finally:
                con.close()
        return
    try:
        yield con
    finally:
        con.close()


def creating_path(path: Path) -> Path:
    """Where :func:`create_store` builds ``path`` before it appears under its name."""
    return path.with_name(f".{path.name}.{os.getpid()}.creating")


def create_store(path: Path) -> None:
    """Create the store file with all its tables, atomically: built under a temporary name
    beside it (:func:`creating_path`), closed (so it has no WAL), then linked to ``path``.
    A process killed meanwhile leaves no store, never one without tables; if another process
    created ``path`` first, that one is kept."""
    create_private_folders(path.parent)  # data/ and parents: 0o700 whatever the umask
    tmp = creating_path(path)
    try:
        with owner_only_umask():
            for p in (tmp, tmp.with_name(tmp.name + ".wal")):
                p.unlink(missing_ok=True)
            try:
                con = duckdb.connect(str(tmp))
            except duckdb.Error as exc:
                raise environment_error(exc, path) from exc
            try:
                create_tables(con)
            except duckdb.Error as exc:
                raise environment_error(exc, path) from exc
            finally:
                con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # created meanwhile by another process: keep theirs
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise environment_error(exc, path) from exc
            if not path.exists():  # a file system without hard links
                os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as exc:
        raise environment_error(exc, path) from exc
    finally:
        for p in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(OSError):
                p.unlink()


def sync_folder(folder: Path) -> None:
    """Make renames and links in ``folder`` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - a file system that cannot flush folders
        pass
    finally:
        os.close(fd)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and drop :data:`RETIRED_TABLES` (idempotent), and record the
    schema version: the migration of an older store, in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(DDL)
        for name in RETIRED_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        q = "SELECT value FROM meta WHERE key = 'schema_version'"
        if con.execute(q).fetchall() != [(SCHEMA_VERSION,)]:
            con.execute("DELETE FROM meta WHERE key = 'schema_version'")
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
