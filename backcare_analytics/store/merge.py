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
import pandas as pd

__all__ = ["SPECS", "MergeResult", "TableSpec", "merge_rows"]

REJECT_COLUMNS = ["row", "column", "reason", "detail"]


@dataclass(frozen=True)
class TableSpec:
    """How a clean table is keyed and compared."""

    table: str
    columns: tuple[str, ...]  # clean columns, in store order
    key: str  # SQL expression over alias ``{a}`` giving one key string
    by_updated_at: bool  # edit rule: later updated_at wins (else: the newer file wins)
    time_unique: tuple[str, ...] = ()  # a second uniqueness the clean schema demands

    @property
    def content(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c != "source_file")


_SESSION_COLUMNS = (
    "patient_id", "session_id", "performed_at", "day", "exercise_id", "side", "sets", "reps",
    "hold_s", "level", "variant", "pain_before", "pain_after", "note", "source_file",
)  # fmt: skip
_PAIN_COLUMNS = (
    "patient_id", "recorded_at", "day", "back_pain", "leg_pain", "flare", "note", "source_file",
)  # fmt: skip
_PATIENT_COLUMNS = ("patient_id", "timezone", "programme_start", "clinician", "source_file")

SPECS: dict[str, TableSpec] = {
    "sessions": TableSpec(
        "sessions",
        _SESSION_COLUMNS,
        "concat_ws(chr(31), {a}.patient_id, {a}.exercise_id, {a}.side, coalesce('s:' || "
        "{a}.session_id, 't:' || CAST(epoch_us({a}.performed_at) AS VARCHAR)))",
        by_updated_at=True,
        time_unique=("patient_id", "performed_at", "exercise_id", "side"),
    ),
    "pain": TableSpec(
        "pain",
        _PAIN_COLUMNS,
        "concat_ws(chr(31), {a}.patient_id, CAST(epoch_us({a}.recorded_at) AS VARCHAR))",
        by_updated_at=True,
    ),
    "patients": TableSpec("patients", _PATIENT_COLUMNS, "{a}.patient_id", by_updated_at=False),
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
    con: duckdb.DuckDBPyConnection, kind: str, clean: pd.DataFrame, file_sha: str
) -> MergeResult:
    """Classify and write one file's clean rows of ``kind`` (caller holds the transaction).

    ``clean`` holds the clean schema's columns plus ``_row`` (row number in the file) and
    ``updated_at``. Accepted rows are inserted with ``source_row`` and ``updated_at``.
    """
    spec = SPECS[kind]
    if "source_file" not in clean:  # the clean Patients schema has no provenance column
        clean = clean.assign(source_file=file_sha)
    frame = clean[[*spec.columns, "updated_at", "_row"]]
    con.register("_incoming", frame)
    try:
        return _merge(con, spec, kind)
    finally:
        con.unregister("_incoming")
        con.execute("DROP TABLE IF EXISTS _n; DROP TABLE IF EXISTS _s; DROP TABLE IF EXISTS _c")


def _merge(con: duckdb.DuckDBPyConnection, spec: TableSpec, kind: str) -> MergeResult:
    key_n, key_s = spec.key.format(a="i"), spec.key.format(a="t")
    t = spec.table
    # Incoming rows with their key, their rank among rows of the same key, and (sessions) their
    # rank among first-of-key rows at the same time.
    time_rank = (
        f", row_number() OVER (PARTITION BY {', '.join(spec.time_unique)}, _rk = 1 "
        "ORDER BY _row) AS _rt"
        if spec.time_unique
        else ", 1 AS _rt"
    )
    con.execute(
        f"""CREATE TEMP TABLE _n AS
        SELECT *{time_rank} FROM (
            SELECT i.*, {key_n} AS _key,
                   row_number() OVER (PARTITION BY {key_n} ORDER BY i._row) AS _rk
            FROM _incoming i)"""
    )
    # Stored rows of the same patients, with their key.
    con.execute(
        f"""CREATE TEMP TABLE _s AS
        SELECT t.*, {key_s} AS _key FROM {t} t
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
        SELECT n._row, n._key, CASE
            WHEN n._rk > 1 AND {_same(spec.content, "n", "f")} THEN 'duplicate'
            WHEN n._rk > 1 THEN 'duplicate_in_file'
            WHEN n._rt > 1 THEN 'same_time_in_file'
            WHEN s._key IS NULL THEN 'insert'
            WHEN {_same(spec.content, "n", "s")} THEN 'duplicate'
            {edit}
            ELSE 'conflict' END AS _status
        FROM _n n
        JOIN _n f ON f._key = n._key AND f._rk = 1
        LEFT JOIN _s s ON s._key = n._key"""
    )
    if spec.time_unique:
        on = " AND ".join(f"s.{c} = n.{c}" for c in spec.time_unique)
        con.execute(
            f"""UPDATE _c SET _status = 'same_time' WHERE _status IN ('insert', 'replace')
            AND _row IN (SELECT n._row FROM _n n JOIN _s s ON {on} AND s._key <> n._key)"""
        )
    counts = dict(con.execute("SELECT _status, count(*) FROM _c GROUP BY ALL").fetchall())
    inserted_ids: tuple[str, ...] = ()
    if kind == "patients":
        inserted_ids = tuple(
            r[0]
            for r in con.execute(
                "SELECT n.patient_id FROM _n n JOIN _c USING (_row) WHERE _status = 'insert'"
            ).fetchall()
        )
    if counts.get("replace"):
        con.execute(
            f"""DELETE FROM {t} WHERE patient_id IN (SELECT DISTINCT patient_id FROM _n)
            AND {spec.key.format(a=t)} IN (SELECT _key FROM _c WHERE _status = 'replace')"""
        )
    cols = ", ".join(spec.columns)
    if counts.get("insert") or counts.get("replace"):
        con.execute(
            f"""INSERT INTO {t} ({cols}, updated_at, source_row)
            SELECT {", ".join("n." + c for c in spec.columns)}, n.updated_at, n._row
            FROM _n n JOIN _c USING (_row) WHERE _status IN ('insert', 'replace')
            ORDER BY n._row"""
        )
    rejects = con.sql(
        """SELECT _row AS "row", '(row)' AS "column", CASE _status
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
           FROM _c WHERE _status NOT IN ('insert', 'replace', 'duplicate') ORDER BY _row"""
    ).to_arrow_table()
    rej = rejects.to_pandas().astype({"row": "int64", "column": "str", "reason": "str",
                                      "detail": "str"})  # fmt: skip
    return MergeResult(
        accepted=int(counts.get("insert", 0) + counts.get("replace", 0)),
        replaced=int(counts.get("replace", 0)),
        duplicates=int(counts.get("duplicate", 0)),
        rejects=rej,
        inserted_ids=inserted_ids,
    )
