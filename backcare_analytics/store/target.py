"""Where an import writes: the store itself, or (dry run) a throw-away in-memory copy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pandas as pd

from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.store.core import CLEAN_DTYPES, Store, to_frame
from backcare_analytics.store.db import DDL, environment_error, is_lock_error

__all__ = ["WriteTarget"]


class WriteTarget:
    """A store to write to, or (dry run) an in-memory copy of it.

    A dry run copies the store's tables into an in-memory DuckDB (the file is attached
    read-only for the copy only), so that ``backcare validate`` de-duplicates against the store
    and against earlier files of the same batch without writing anything.
    """

    def __init__(self, store: Store, dry_run: bool) -> None:
        self.store, self.dry_run = store, dry_run
        self._mem: duckdb.DuckDBPyConnection | None = None
        if dry_run:
            self._mem = duckdb.connect(":memory:")
            self._mem.execute("SET TimeZone='UTC'")
            self._mem.execute(DDL)
            if store.exists():
                self._copy_from(store)

    def _copy_from(self, store: Store) -> None:
        """Copy the store's tables into memory (waiting, bounded, while a writer holds it)."""
        assert self._mem is not None
        deadline = time.monotonic() + store.settings.store_busy_timeout_s
        delay = 0.02
        while True:
            try:
                self._mem.execute(f"ATTACH '{_sql_str(str(store.path))}' AS src (READ_ONLY)")
                break
            except duckdb.Error as exc:
                if not is_lock_error(exc):
                    raise environment_error(exc, store.path) from None
                if time.monotonic() + delay > deadline:
                    raise StoreBusyError(
                        f"store busy: {store.path} is held by another process; nothing was read."
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            for t in ("patients", "sessions", "pain", "rejects", "imports"):
                self._mem.execute(f"INSERT INTO {t} SELECT * FROM src.{t}")
        except duckdb.CatalogException:
            raise StoreError(
                f"the store {store.path} lacks some tables (its creation was interrupted, or an "
                "older version made it). Fix: run `backcare import` with any file (it adds the "
                "missing tables), or `backcare rebuild`.",
                "missing_tables",
            ) from None
        finally:
            self._mem.execute("DETACH src")

    def close(self) -> None:
        if self._mem is not None:
            self._mem.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._mem is None:
            with self.store.transaction() as con:
                yield con
            return
        self._mem.execute("BEGIN TRANSACTION")
        try:
            yield self._mem
        except BaseException:
            self._mem.execute("ROLLBACK")
            raise
        self._mem.execute("COMMIT")

    def imported_shas(self) -> dict[str, str]:
        sql = "SELECT sha256, status FROM imports"
        if self._mem is not None:
            return dict(self._mem.execute(sql).fetchall())
        if not self.store.exists():
            return {}
        with self.store.reader() as con:
            return dict(con.execute(sql).fetchall())

    def patients(self) -> pd.DataFrame:
        if self._mem is not None:
            sql = "SELECT patient_id, timezone, programme_start, clinician FROM patients"
            return to_frame(self._mem.sql(sql).to_arrow_table(), CLEAN_DTYPES["patients"])
        if not self.store.exists():
            return _empty_patients()
        return self.store.patients()


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


def _empty_patients() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CLEAN_DTYPES["patients"].items()})
