"""The :class:`Store`: where the DuckDB file and the raw archive live, and typed queries.

A :class:`Store` holds paths only. Every call opens a short-lived connection and closes it, so
a notebook reading the store never locks out an import for longer than one query.

>>> import tempfile, pathlib
>>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "clinic.duckdb")
>>> s.exists()
False
>>> s.initialise(); s.sessions().shape
(0, 15)
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from backcare_analytics.config import Settings, get_settings
from backcare_analytics.errors import BackcareWarning, StoreError
from backcare_analytics.protocol import (
    Protocol,
    build_prescriptions,
    load_prescription_overrides,
)
from backcare_analytics.store.archive import RawArchive, is_dead_pid_name
from backcare_analytics.store.db import (
    CLEAN_MODELS,
    TABLES,
    clean_columns,
    connect,
    create_tables,
    environment_error,
)
from backcare_analytics.store.lock import write_lock
from backcare_analytics.store.merge import SPECS

__all__ = ["CLEAN_DTYPES", "IMPORT_COLUMNS", "REJECT_COLUMNS", "Store", "to_frame"]

#: The exact pandas dtypes of the clean tables, derived from their pandera models
#: (:func:`~backcare_analytics.store.db.clean_columns`), in model order.
CLEAN_DTYPES: dict[str, dict[str, str]] = {
    table: {c.name: c.pandas_dtype for c in clean_columns(table)} for table in CLEAN_MODELS
}

REJECT_COLUMNS = {
    "file_sha": "str", "kind": "str", "row": "Int64", "column": "str", "reason": "str",
    "detail": "str", "raw": "str",
}  # fmt: skip
IMPORT_COLUMNS = {
    "seq": "int64", "sha256": "str", "path": "str", "size_bytes": "Int64", "format": "str",
    "kind": "str", "rows_read": "int64", "accepted": "int64", "rejected": "int64",
    "duplicates": "int64", "replaced": "int64", "blank_rows": "int64", "status": "str",
    "reason": "str", "warnings": "str", "imported_at": "datetime64[us, UTC]",
    "package_version": "str",
}  # fmt: skip

_ARROW_TO_PANDAS = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def to_frame(table: pa.Table, dtypes: dict[str, str]) -> pd.DataFrame:
    """An Arrow result as a pandas frame with exactly ``dtypes`` (column order included)."""
    df = table.to_pandas(types_mapper=_ARROW_TO_PANDAS.get)
    out = pd.DataFrame(
        {c: df[c].astype(t) if c in df else pd.Series(dtype=t) for c, t in dtypes.items()}
    )
    return out.reset_index(drop=True)


class Store:
    """A backcare store: the DuckDB file and the raw archive next to it.

    Parameters
    ----------
    path
        The DuckDB file (``Settings.store``, default ``data/backcare.duckdb``).
    raw_archive
        The folder of raw files by SHA-256 (default: ``Settings.raw_archive`` for the default
        store, else ``<store name>.raw`` beside the store file).
    settings
        Supplies the busy timeout; :func:`get_settings` when omitted.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        raw_archive: Path | str | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        default = Path(self.settings.store)
        self.path = Path(path) if path is not None else default
        if raw_archive is None:
            same = self.path.resolve() == default.resolve()
            raw_archive = (
                self.settings.raw_archive if same else self.path.with_name(self.path.name + ".raw")
            )
        self.archive = RawArchive(raw_archive)
        self._tables_ok: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Store:
        settings = settings or get_settings()
        return cls(settings.store, settings.raw_archive, settings=settings)

    @classmethod
    def of(cls, store: Store | Path | str | None = None) -> Store:
        """The one conversion at every public entry point: a :class:`Store` as it is, a path
        opened as ``Store(path)``, ``None`` as the configured store (:meth:`from_settings`,
        the CLI's default when ``--store`` is not given).

        >>> s = Store("a.duckdb")
        >>> Store.of(s) is s, Store.of("a.duckdb").path == s.path
        (True, True)
        """
        if isinstance(store, Store):
            return store
        return cls.from_settings() if store is None else cls(store)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- connections ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one query (waits while a writer holds the file)."""
        with connect(self.path, read_only=True, timeout_s=self.settings.store_busy_timeout_s) as c:
            yield c

    @contextmanager
    def exclusive(self, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Be the store's only writer for the ``with`` block (``import``, ``rebuild``).

        Takes the writer lock (:func:`backcare_analytics.store.lock.write_lock`, waiting up
        to ``Settings.store_lock_timeout_s`` and calling ``on_wait`` once if another writer
        holds it), then tidies what a killed writer left behind: temporary raw copies in the
        archive and a half-created store file. Read the store's contents only inside.
        """
        with write_lock(self.path, self.settings.store_lock_timeout_s, on_wait):
            self.archive.remove_temporaries()
            for tmp in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.creating*"):
                if is_dead_pid_name(tmp.name.removesuffix(".wal").removesuffix(".creating")):
                    tmp.unlink(missing_ok=True)
            yield

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection with the tables created; raises StoreBusyError when held."""
        with connect(self.path, read_only=False, timeout_s=self.settings.store_busy_timeout_s) as c:
            # Create tables once per Store object and file (the DDL costs a transaction).
            stamp = self.path.stat().st_ino
            if self._tables_ok != stamp:
                create_tables(c)
                self._tables_ok = stamp
            yield c

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on any error), then ``CHECKPOINT``."""
        with self.writer() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            try:
                con.execute("CHECKPOINT")
            except duckdb.Error:
                # The data is committed and durable in the write-ahead log; a failed checkpoint
                # (disk full, say) must not make the caller undo what is already stored.
                warnings.warn(
                    f"{self.path}: the import is committed, but CHECKPOINT failed; the next "
                    "write checkpoints again (check free disk space)",
                    BackcareWarning,
                    stacklevel=3,
                )

    def initialise(self) -> None:
        """Create the store file and its tables (owner-only) if missing."""
        with self.writer():
            pass

    def query(self, sql: str, params: Sequence[object] | None = None) -> pa.Table:
        """Run a read-only query and return its Arrow table.

        Raises
        ------
        StoreError
            The store lacks a table (created by an interrupted or older version: any write,
            such as the next ``backcare import``, adds it), or its file cannot be read.
        """
        with self.reader() as con:
            try:
                return (
                    con.sql(sql, params=params).to_arrow_table()
                    if params
                    else con.sql(sql).to_arrow_table()
                )
            except duckdb.CatalogException:
                missing = sorted(set(TABLES) - self._tables(con))
                if not missing:
                    raise
                raise StoreError(
                    f"the store {self.path} has no {', '.join(missing)} table(s) (its creation "
                    "was interrupted, or an older version made it). Fix: run `backcare import` "
                    "with any file (it adds the missing tables), or `backcare rebuild`.",
                    "missing_tables",
                ) from None
            except (duckdb.IOException, duckdb.InternalException) as exc:
                raise environment_error(exc, self.path) from exc

    @staticmethod
    def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
        q = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        return {r[0] for r in con.execute(q).fetchall()}

    # -- typed queries -------------------------------------------------------------------------

    def _clean(
        self,
        kind: str,
        patient_ids: Iterable[str] | None,
        start: object,
        end: object,
        order: str,
    ) -> pd.DataFrame:
        cols = ", ".join(f'"{c}"' for c in SPECS[kind].columns)
        where, params = ["TRUE"], []
        if patient_ids is not None:
            where.append("list_contains(?, patient_id)")
            params.append(list(patient_ids))
        if start is not None:
            where.append("day >= ?")
            params.append(pd.Timestamp(start).normalize().to_pydatetime())
        if end is not None:
            where.append("day <= ?")
            params.append(pd.Timestamp(end).normalize().to_pydatetime())
        sql = f"SELECT {cols} FROM {kind} WHERE {' AND '.join(where)} ORDER BY {order}"
        return to_frame(self.query(sql, params), CLEAN_DTYPES[kind])

    def sessions(
        self,
        patient_ids: Iterable[str] | None = None,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """Session rows matching :class:`~backcare_analytics.schemas.Sessions`.

        ``start`` and ``end`` are patient-local days, both included (``start <= day <= end``),
        like :class:`~backcare_analytics.metrics.params.Window`. Sorted by patient and time.
        """
        return self._clean(
            "sessions", patient_ids, start, end, "patient_id, performed_at, exercise_id, side"
        )

    def pain(
        self,
        patient_ids: Iterable[str] | None = None,
        start: object = None,
        end: object = None,
    ) -> pd.DataFrame:
        """Pain-diary rows matching :class:`~backcare_analytics.schemas.Pain` (days inclusive)."""
        return self._clean("pain", patient_ids, start, end, "patient_id, recorded_at")

    def patients(self) -> pd.DataFrame:
        """Registered patients matching :class:`~backcare_analytics.schemas.Patients`."""
        sql = "SELECT patient_id, timezone, programme_start, clinician FROM patients ORDER BY 1"
        return to_frame(self.query(sql), CLEAN_DTYPES["patients"])

    def prescriptions(
        self, overrides: Path | str | None = None, protocol: Protocol | None = None
    ) -> pd.DataFrame:
        """Prescriptions matching :class:`~backcare_analytics.schemas.Prescriptions`, built by
        :func:`~backcare_analytics.protocol.build_prescriptions` from the stored patients, the
        protocol and an overrides YAML file: ``overrides``, else ``Settings.prescriptions``
        (``BACKCARE_PRESCRIPTIONS``, default ``data/prescriptions.yaml``) when that file exists."""
        if overrides is None and self.settings.prescriptions is not None:
            configured = Path(self.settings.prescriptions)
            overrides = configured if configured.exists() else None
        ov = load_prescription_overrides(overrides, protocol) if overrides else None
        return build_prescriptions(self.patients(), protocol, ov)

    def rejects(self, file_sha: str | None = None) -> pd.DataFrame:
        """Quarantined rows: ``file_sha, kind, row, column, reason, detail, raw`` (one row per
        reason). ``raw`` holds the refused values: keep it inside the owner-only store."""
        sql = 'SELECT * FROM rejects WHERE ? IS NULL OR file_sha = ? ORDER BY file_sha, "row"'
        return to_frame(self.query(sql, [file_sha, file_sha]), REJECT_COLUMNS)

    def imports(self) -> pd.DataFrame:
        """The ledger: one row per file ever offered, in import order."""
        return to_frame(self.query("SELECT * FROM imports ORDER BY seq"), IMPORT_COLUMNS)
