"""Set-wise de-duplication and edit resolution of one file's clean rows against the store.

A record is identified by its key (``docs/export-format.md``, "Re-exports and edits"):

* sessions: ``(patient_id, session_id, exercise_id, side)`` when ``session_id`` is given, else
  ``(patient_id, performed_at, exercise_id, side)``;
* pain: ``(patient_id, recorded_at)``;
* patients: ``patient_id``.

Each incoming row is classified in one SQL pass (window functions and hash joins, never row by
row):

==================  =========================================================================
``insert``          no stored record has its key: accepted
``duplicate``       same key and same content as a stored row, or an identical repeat earlier
                    in the same file: counted, changes nothing
``replace``         same key, different content, later ``updated_at`` than the stored version
                    (a missing ``updated_at`` counts as earliest): accepted, replaces it.
                    Patients are always replaced by the newer file (a patients file updates).
``conflicting_edit``  same key, different content, not later: refused, the stored one stays;
                    also a session at the same time as another stored record of a different key
``duplicate_in_file``  same key as an earlier row of the same file with different content
==================  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from backcare_analytics.schemas.clean import Sessions
from backcare_analytics.store.db import record_columns

__all__ = [
    "SPECS",
    "MergeResult",
    "TableSpec",
    "incoming_table",
    "late_files",
    "merge_group",
    "merge_rows",
]

REJECT_COLUMNS = ["row", "column", "reason", "detail"]


@dataclass(frozen=True)
class TableSpec:
    """How a clean table is keyed and compared."""

    table: str
    columns: tuple[str, ...]  # clean columns and source_file, in store order
    partition: str  # the record key as a PARTITION BY list (NULLs group together)
    same_record: str  # join condition: stored ``s`` and incoming ``n`` are the same record
    by_updated_at: bool  # edit rule: later updated_at wins (else: the newer file wins)
    time_unique: tuple[str, ...] = ()  # a second uniqueness the clean schema demands

    @property
    def content(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c != "source_file")


SPECS: dict[str, TableSpec] = {
    "sessions": TableSpec(
        "sessions",
        record_columns("sessions"),
        "patient_id, exercise_id, side, session_id, "
        "CASE WHEN session_id IS NULL THEN performed_at END",
        "s.patient_id = n.patient_id AND s.exercise_id = n.exercise_id AND s.side = n.side "
        "AND s.session_id IS NOT DISTINCT FROM n.session_id "
        "AND (n.session_id IS NOT NULL OR s.performed_at = n.performed_at)",
        by_updated_at=True,
        time_unique=tuple(Sessions.to_schema().unique or ()),
    ),
    "pain": TableSpec(
        "pain",
        record_columns("pain"),
        "patient_id, recorded_at",
        "s.patient_id = n.patient_id AND s.recorded_at = n.recorded_at",
        by_updated_at=True,
    ),
    "patients": TableSpec(
        "patients",
        record_columns("patients"),
        "patient_id",
        "s.patient_id = n.patient_id",
        by_updated_at=False,
    ),  # fmt: skip
}


@dataclass(frozen=True)
class MergeResult:
    """Counts of one table of one file, and the rows refused by the merge."""

    accepted: int
    replaced: int
    duplicates: int
    rejects: pd.DataFrame  # row, column, reason, detail
    inserted_ids: tuple[str, ...]  # patients only: ids not registered before


def _same(cols: tuple[str, ...], a: str, b: str) -> str:
    return " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in cols)


def merge_rows(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    clean: pd.DataFrame,
    file_sha: str,
    *,
    repeats: bool = True,
) -> MergeResult:
    """Classify and write one file's clean rows of ``kind`` (caller holds the transaction).

    ``clean`` holds the clean schema's columns plus ``_row`` (row number in the file) and
    ``updated_at``. Accepted rows are inserted with ``source_row`` and ``updated_at``.
    ``repeats=False``: see :func:`merge_group`.
    """
    return merge_group(con, kind, [(file_sha, clean)], repeats=repeats)[file_sha]


def incoming_table(
    kind: str,
    parts: list[tuple[str, pd.DataFrame]],
    *,
    together: tuple[pd.DataFrame, np.ndarray] | None = None,
) -> pa.Table:
    """The rows of ``parts`` as one Arrow table for :func:`late_files` and :func:`merge_group`
    (``_f``: position of the file in ``parts``; ``_uid``: position of the row). Build it once
    per group and table kind and hand it to both.

    ``together`` is the parts' rows already in one frame, in order, with each row's file
    position (normalisation of a batch makes that frame; concatenating many small parts again
    costs more than all the rest for small files).
    """
    spec = SPECS[kind]
    if together is not None:
        frame, files = together
        both = frame[[*spec.columns, "updated_at", "_row"]].assign(
            _f=np.asarray(files, dtype=np.int64), _uid=np.arange(len(frame), dtype=np.int64)
        )
        return pa.Table.from_pandas(both, preserve_index=False)
    frames = []
    for i, (sha, clean) in enumerate(parts):
        if "source_file" not in clean:  # the clean Patients schema has no provenance column
            clean = clean.assign(source_file=sha)
        frame = clean[[*spec.columns, "updated_at", "_row"]]
        frames.append(frame.assign(_f=i))
    both = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    both = both.assign(_uid=np.arange(len(both), dtype=np.int64))
    return pa.Table.from_pandas(both, preserve_index=False)


def _subset(table: pa.Table, files: list[int] | None, n_files: int) -> pa.Table:
    if files is None or len(set(files)) == n_files:
        return table
    return table.filter(pc.is_in(table["_f"], pa.array(files, type=table["_f"].type)))


def late_files(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    parts: list[tuple[str, pd.DataFrame]],
    *,
    table: pa.Table | None = None,
    files: list[int] | None = None,
) -> set[int]:
    """Positions in ``parts`` of files sharing a record key (or, for sessions, a patient,
    time, exercise and side, including the stored time of a session an earlier file may move
    by an edit) with an earlier file of ``parts``: such a file must be merged after the
    earlier one is in the store, not in the same :func:`merge_group`.

    ``table`` is :func:`incoming_table` of ``parts`` when the caller built it already;
    ``files`` limits the question to those positions. Keys are compared by their hash (one
    hash aggregation, no sort): a collision can only make a file wait a round needlessly,
    never merge too early.
    """
    spec = SPECS[kind]
    con.register(
        "_incoming",
        _subset(incoming_table(kind, parts) if table is None else table, files, len(parts)),
    )
    try:
        keyed = [f"SELECT _f, hash({spec.partition}) AS h FROM _incoming"]
        if spec.time_unique:
            cols = ", ".join(spec.time_unique)
            moved = " OR ".join(f"s.{c} IS DISTINCT FROM n.{c}" for c in spec.time_unique)
            # A file also holds the stored time of each record it may move by an edit: a later
            # file taking that time must wait until the edit has freed it, as one by one.
            keyed.append(
                f"""SELECT _f, hash({cols}) AS h FROM _incoming UNION ALL
                SELECT n._f, hash({", ".join(f"s.{c}" for c in spec.time_unique)}) AS h
                FROM _incoming n JOIN {spec.table} s ON {spec.same_record}
                WHERE n.updated_at IS NOT NULL AND ({moved})"""
            )
        sql = " UNION ".join(
            f"""SELECT k._f FROM ({q}) k JOIN (
                SELECT h, min(_f) AS f0 FROM ({q}) GROUP BY 1
                HAVING min(_f) < max(_f)) g USING (h) WHERE k._f > g.f0"""
            for q in keyed
        )
        return {int(r[0]) for r in con.execute(sql).fetchall()}
    finally:
        con.unregister("_incoming")


def merge_group(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    parts: list[tuple[str, pd.DataFrame]],
    *,
    table: pa.Table | None = None,
    files: list[int] | None = None,
    repeats: bool = True,
) -> dict[str, MergeResult]:
    """:func:`merge_rows` for several files at once, one result per file SHA-256.

    The same as merging the files one after another when no file shares a record key or a
    session time with another file of ``parts`` (:func:`late_files` finds those); duplicates
    within a file are judged within that file. ``table`` and ``files`` as for
    :func:`late_files` (only the files at positions ``files`` are merged and reported).
    ``repeats=False`` is the caller's promise that no file repeats a record key or a session
    time (normalisation proved it: ``Normalized.repeats``); the in-file passes are skipped.
    """
    spec = SPECS[kind]
    con.register(
        "_incoming",
        _subset(incoming_table(kind, parts) if table is None else table, files, len(parts)),
    )
    try:
        got = _merge(con, spec, kind, repeats)
    finally:
        con.unregister("_incoming")
        con.execute(
            "DROP VIEW IF EXISTS _n; DROP TABLE IF EXISTS _nt; DROP VIEW IF EXISTS _s; "
            "DROP TABLE IF EXISTS _c"
        )
    wanted = range(len(parts)) if files is None else files
    return {parts[i][0]: got.get(i) or _result({}, _empty_rejects(), ()) for i in wanted}


def _merge(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, kind: str, repeats: bool
) -> dict[int, MergeResult]:
    t = spec.table
    content_hash = f"hash({', '.join(spec.content)})"
    # Incoming rows with their rank among rows of the same record key and whether they repeat
    # the first such row exactly (normalisation already refuses same-key rows that differ;
    # this is the safety net). The windows (sorts) run only when a key or time repeats.
    con.execute(
        """CREATE TEMP VIEW _n AS SELECT i.*, 1 AS _rk, 0::UBIGINT AS _h, 0::UBIGINT AS _h1
        FROM _incoming i"""
    )
    time_cols = ", ".join(spec.time_unique)
    key_repeats, time_repeats = (
        con.execute(
            f"""SELECT count(*) - count(DISTINCT hash(_f, {spec.partition})),
            {f"count(*) - count(DISTINCT (_f, {time_cols}))" if time_cols else "0"}
            FROM _n"""
        ).fetchall()[0]
        if repeats
        else (0, 0)
    )
    if key_repeats:
        con.execute(
            f"""CREATE TEMP TABLE _nt AS
            SELECT * REPLACE (row_number() OVER w AS _rk, {content_hash} AS _h,
                              first_value({content_hash}) OVER w AS _h1)
            FROM _n WINDOW w AS (PARTITION BY _f, {spec.partition} ORDER BY _uid)"""
        )
        con.execute("CREATE OR REPLACE TEMP VIEW _n AS SELECT * FROM _nt")
    if time_repeats:  # (sessions) first-of-key rows sharing a time with another record
        if not key_repeats:  # a view cannot be updated: materialise it
            con.execute("CREATE TEMP TABLE _nt AS SELECT * FROM _n")
            con.execute("CREATE OR REPLACE TEMP VIEW _n AS SELECT * FROM _nt")
        con.execute(
            f"""UPDATE _nt SET _rk = -1 WHERE _uid IN (SELECT _uid FROM (
                SELECT _uid, row_number() OVER (PARTITION BY _f, {time_cols}
                ORDER BY _uid) AS r
                FROM _n WHERE _rk = 1) WHERE r > 1)"""
        )
    # Stored rows of the same patients.
    con.execute(
        f"""CREATE TEMP VIEW _s AS SELECT t.rowid AS _rid, t.* FROM {t} t
        WHERE t.patient_id IN (SELECT DISTINCT patient_id FROM _n)"""
    )
    if spec.by_updated_at:
        edit = """WHEN n.updated_at IS NOT NULL AND (s.updated_at IS NULL
                        OR n.updated_at > s.updated_at) THEN 'replace'
                  WHEN n.updated_at IS NOT NULL AND s.updated_at > n.updated_at THEN 'stale'"""
    else:
        edit = "WHEN TRUE THEN 'replace'"
    con.execute(
        f"""CREATE TEMP TABLE _c AS
        SELECT n._uid, n._row, n._f, s._rid, CASE
            WHEN n._rk > 1 AND n._h = n._h1 THEN 'duplicate'
            WHEN n._rk > 1 THEN 'duplicate_in_file'
            WHEN n._rk = -1 THEN 'same_time_in_file'
            WHEN s._rid IS NULL THEN 'insert'
            WHEN {_same(spec.content, "n", "s")} THEN 'duplicate'
            {edit}
            ELSE 'conflict' END AS _status
        FROM _n n LEFT JOIN _s s ON n._rk = 1 AND {spec.same_record}"""
    )
    if spec.time_unique:
        on = " AND ".join(f"s.{c} = n.{c}" for c in spec.time_unique)
        con.execute(
            f"""UPDATE _c SET _status = 'same_time' WHERE _uid IN (
                SELECT c._uid FROM _c c JOIN _n n USING (_uid) JOIN _s s ON {on}
                WHERE c._status IN ('insert', 'replace') AND s._rid IS DISTINCT FROM c._rid)"""
        )
    per_file: dict[int, dict[str, int]] = {}
    for f, status, n in con.execute("SELECT _f, _status, count(*) FROM _c GROUP BY ALL").fetchall():
        per_file.setdefault(int(f), {})[status] = int(n)
    counts: dict[str, int] = {}
    for c in per_file.values():
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
    inserted_ids: tuple[str, ...] = ()
    if kind == "patients":
        inserted_ids = tuple(
            r[0]
            for r in con.execute(
                "SELECT n.patient_id FROM _n n JOIN _c USING (_uid) WHERE _status = 'insert'"
            ).fetchall()
        )
    if counts.get("replace"):
        con.execute(
            f"DELETE FROM {t} WHERE rowid IN (SELECT _rid FROM _c WHERE _status = 'replace')"
        )
    cols = ", ".join(spec.columns)
    if counts.get("insert") or counts.get("replace"):
        con.execute(
            f"""INSERT INTO {t} ({cols}, updated_at, source_row)
            SELECT {", ".join("n." + c for c in spec.columns)}, n.updated_at, n._row
            FROM _n n JOIN _c USING (_uid) WHERE _status IN ('insert', 'replace')"""
        )
    if not any(k not in _KEPT for c in per_file.values() for k in c):  # nothing refused
        return {f: _result(c, _empty_rejects(), inserted_ids) for f, c in per_file.items()}
    rejects = con.sql(
        """SELECT _f, _row AS "row", '(row)' AS "column", CASE _status
              WHEN 'duplicate_in_file' THEN 'duplicate_in_file'
              WHEN 'same_time_in_file' THEN 'duplicate_in_file'
              ELSE 'conflicting_edit' END AS reason,
            CASE _status
              WHEN 'duplicate_in_file' THEN 'same record as an earlier row of this file, '
                   || 'with different content'
              WHEN 'same_time_in_file' THEN 'another record of this file has the same patient, '
                   || 'time, exercise and side'
              WHEN 'stale' THEN 'a newer version of this record (later updated_at) is stored'
              WHEN 'same_time' THEN 'another record with the same patient, time, exercise and '
                   || 'side is stored'
              ELSE 'the stored version differs and neither is marked later by updated_at; '
                   || 'the stored version stays' END AS detail
           FROM _c WHERE _status NOT IN ('insert', 'replace', 'duplicate') ORDER BY _uid"""
    ).to_arrow_table()
    rej = rejects.to_pandas().astype({"_f": "int64", "row": "int64", "column": "str",
                                      "reason": "str", "detail": "str"})  # fmt: skip
    # Sorted by _uid, so by file: each file's rejects are one slice.
    files = rej["_f"].to_numpy()
    out = {}
    for f, c in per_file.items():
        a, b = np.searchsorted(files, [f, f + 1])
        mine = rej.iloc[a:b][REJECT_COLUMNS].reset_index(drop=True) if b > a else _empty_rejects()
        out[f] = _result(c, mine, inserted_ids)
    return out


_KEPT = ("insert", "replace", "duplicate")  # merge statuses that refuse nothing


def _empty_rejects() -> pd.DataFrame:
    """No rejects (one shared frame: results are read, never changed in place)."""
    return _NO_REJECTS


_NO_REJECTS = pd.DataFrame(
    {c: pd.Series(dtype="int64" if c == "row" else "str") for c in REJECT_COLUMNS}
)


def _result(
    counts: dict[str, int], rejects: pd.DataFrame, inserted_ids: tuple[str, ...]
) -> MergeResult:
    return MergeResult(
        accepted=int(counts.get("insert", 0) + counts.get("replace", 0)),
        replaced=int(counts.get("replace", 0)),
        duplicates=int(counts.get("duplicate", 0)),
        rejects=rejects,
        inserted_ids=inserted_ids,
    )
