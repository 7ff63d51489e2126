"""The DuckDB file: table definitions and short-lived connections.

Every connection sets ``TimeZone='UTC'`` and lives for one operation. A write connection that
cannot get DuckDB's file lock (another process is writing, or a reader is mid-query) is retried
with backoff for ``Settings.store_busy_timeout_s`` seconds, then :class:`StoreBusyError` is
raised with nothing changed. Files are created readable by the owner only (``0o600``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.safety import create_private_folders

__all__ = ["DDL", "SCHEMA_VERSION", "connect", "create_tables", "is_lock_error"]

SCHEMA_VERSION = "1"

#: Store tables. Clean columns follow :mod:`backcare_analytics.schemas.clean`; the extra
#: ``updated_at`` (the source's edit time, used by the edit rule) and ``source_row`` (row number in
#: the source file) are provenance and are dropped by the typed queries.
DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS patients (
    patient_id VARCHAR NOT NULL, timezone VARCHAR NOT NULL, programme_start TIMESTAMP NOT NULL,
    clinician VARCHAR, source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ, source_row BIGINT);
CREATE TABLE IF NOT EXISTS sessions (
    patient_id VARCHAR NOT NULL, session_id VARCHAR, performed_at TIMESTAMPTZ NOT NULL,
    day TIMESTAMP NOT NULL, exercise_id VARCHAR NOT NULL, side VARCHAR NOT NULL, sets BIGINT,
    reps BIGINT, hold_s DOUBLE, level VARCHAR, variant VARCHAR, pain_before BIGINT,
    pain_after BIGINT, note VARCHAR, source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ,
    source_row BIGINT);
CREATE TABLE IF NOT EXISTS pain (
    patient_id VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL, day TIMESTAMP NOT NULL,
    back_pain BIGINT NOT NULL, leg_pain BIGINT, flare BOOLEAN, note VARCHAR,
    source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ, source_row BIGINT);
CREATE TABLE IF NOT EXISTS prescriptions (
    patient_id VARCHAR NOT NULL, exercise_id VARCHAR NOT NULL, valid_from TIMESTAMP NOT NULL,
    valid_to TIMESTAMP, sets BIGINT, reps BIGINT, reps_max BIGINT, hold_s DOUBLE,
    per_side BOOLEAN, level VARCHAR, variant VARCHAR, source VARCHAR);
CREATE TABLE IF NOT EXISTS rejects (
    file_sha VARCHAR NOT NULL, kind VARCHAR NOT NULL, "row" BIGINT, "column" VARCHAR,
    reason VARCHAR NOT NULL, detail VARCHAR, raw VARCHAR);
CREATE TABLE IF NOT EXISTS imports (
    seq BIGINT NOT NULL, sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL, size_bytes BIGINT,
    format VARCHAR, kind VARCHAR, rows_read BIGINT NOT NULL, accepted BIGINT NOT NULL,
    rejected BIGINT NOT NULL, duplicates BIGINT NOT NULL, replaced BIGINT NOT NULL,
    blank_rows BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, warnings VARCHAR,
    imported_at TIMESTAMPTZ NOT NULL, package_version VARCHAR);
"""

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
                raise StoreError(
                    f"cannot open the store {path}: {type(exc).__name__}. Fix: check the path "
                    "is a backcare store, or rebuild it from the raw archive (`backcare rebuild`)."
                ) from exc
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


@contextmanager
def connect(
    path: Path | str, *, read_only: bool, timeout_s: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection, closed on exit. Write connections create owner-only files."""
    path = Path(path)
    if read_only:
        if not path.exists():
            raise StoreError(
                f"no store at {path}. Fix: import some exports first (`backcare import PATH`) "
                "or pass --store with the right file."
            )
        con = _open(path, True, timeout_s)
    else:
        create_private_folders(path.parent)  # data/ and parents: 0o700 whatever the umask
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


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables (idempotent) and record the schema version."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(DDL)
        q = "SELECT count(*) FROM meta WHERE key = 'schema_version'"
        if con.execute(q).fetchall()[0][0] == 0:
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
