"""The pandera models are the one definition of every stored clean table (issue 11, item 1).

The DDL, the pandas dtypes of the typed queries and the merge's column lists are derived from
``schemas.clean``; these tests hold the derived forms to stores made before the derivation
existed, and to each other.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from backcare_analytics.schemas.clean import Pain, Patients
from backcare_analytics.store import CLEAN_DTYPES, SPECS, Store
from backcare_analytics.store.db import DDL

#: The literal DDL of the clean tables as written before it was generated (schema version 1,
#: commit f309c0d). A store created from it must open unchanged.
V1_CLEAN_DDL = """
CREATE TABLE patients (
    patient_id VARCHAR NOT NULL, timezone VARCHAR NOT NULL, programme_start TIMESTAMP NOT NULL,
    clinician VARCHAR, source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ, source_row BIGINT);
CREATE TABLE sessions (
    patient_id VARCHAR NOT NULL, session_id VARCHAR, performed_at TIMESTAMPTZ NOT NULL,
    day TIMESTAMP NOT NULL, exercise_id VARCHAR NOT NULL, side VARCHAR NOT NULL, sets BIGINT,
    reps BIGINT, hold_s DOUBLE, level VARCHAR, variant VARCHAR, pain_before BIGINT,
    pain_after BIGINT, note VARCHAR, source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ,
    source_row BIGINT);
CREATE TABLE pain (
    patient_id VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL, day TIMESTAMP NOT NULL,
    back_pain BIGINT NOT NULL, leg_pain BIGINT, flare BOOLEAN, note VARCHAR,
    source_file VARCHAR NOT NULL, updated_at TIMESTAMPTZ, source_row BIGINT);
"""

CLEAN_TABLES = ("patients", "sessions", "pain")

#: The v1 literal ``CLEAN_DTYPES`` and merge column lists (commit f309c0d).
V1_DTYPES = {
    "sessions": {
        "patient_id": "str", "session_id": "str", "performed_at": "datetime64[us, UTC]",
        "day": "datetime64[us]", "exercise_id": "str", "side": "str", "sets": "Int64",
        "reps": "Int64", "hold_s": "Float64", "level": "str", "variant": "str",
        "pain_before": "Int64", "pain_after": "Int64", "note": "str", "source_file": "str",
    },
    "pain": {
        "patient_id": "str", "recorded_at": "datetime64[us, UTC]", "day": "datetime64[us]",
        "back_pain": "Int64", "leg_pain": "Int64", "flare": "boolean", "note": "str",
        "source_file": "str",
    },
    "patients": {
        "patient_id": "str", "timezone": "str", "programme_start": "datetime64[us]",
        "clinician": "str",
    },
}  # fmt: skip
V1_MERGE_COLUMNS = {
    "sessions": tuple(V1_DTYPES["sessions"]),
    "pain": tuple(V1_DTYPES["pain"]),
    "patients": (*V1_DTYPES["patients"], "source_file"),
}


def catalogue(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    """Each clean table's columns as DuckDB records them: position, name, type, nullability."""
    return con.execute(
        """SELECT table_name, column_index, column_name, data_type, is_nullable
        FROM duckdb_columns() WHERE table_name IN ('patients', 'sessions', 'pain')
        ORDER BY table_name, column_index"""
    ).fetchall()


def test_generated_ddl_means_what_the_v1_literal_ddl_meant(tmp_path: Path) -> None:
    old = duckdb.connect(str(tmp_path / "v1.duckdb"))
    new = duckdb.connect(str(tmp_path / "generated.duckdb"))
    try:
        old.execute(V1_CLEAN_DDL)
        new.execute(DDL)
        want = catalogue(old)
        assert {t for t, *_ in want} == set(CLEAN_TABLES)
        assert catalogue(new) == want
    finally:
        old.close()
        new.close()


def test_derived_dtypes_and_merge_columns_equal_the_v1_literals() -> None:
    assert {t: list(d.items()) for t, d in CLEAN_DTYPES.items()} == {
        t: list(d.items()) for t, d in V1_DTYPES.items()
    }
    assert {t: s.columns for t, s in SPECS.items()} == V1_MERGE_COLUMNS
    assert SPECS["sessions"].time_unique == ("patient_id", "performed_at", "exercise_id", "side")


def test_a_v1_store_opens_and_reads_back_typed_rows(tmp_path: Path) -> None:
    """A store whose clean tables came from the v1 DDL (no meta, rejects or imports yet) is
    completed by the store and its rows come back with exactly the derived dtypes."""
    path = tmp_path / "v1.duckdb"
    sha = "a" * 64
    con = duckdb.connect(str(path))
    try:
        con.execute(V1_CLEAN_DDL)
        con.execute(
            "INSERT INTO patients VALUES ('P1', 'Europe/Amsterdam', '2026-03-02', NULL, ?, "
            "NULL, 1)",
            [sha],
        )
        con.execute(
            "INSERT INTO pain VALUES ('P1', '2026-03-02 07:30:00+00', '2026-03-02', 4, NULL, "
            "true, NULL, ?, NULL, 2)",
            [sha],
        )
        before = catalogue(con)
    finally:
        con.close()
    store = Store(path)
    pain, patients = store.pain(), store.patients()
    assert dict(pain.dtypes.astype(str)) == V1_DTYPES["pain"]
    assert dict(patients.dtypes.astype(str)) == V1_DTYPES["patients"]
    Pain.validate(pain)
    Patients.validate(patients)
    assert pain[Pain.back_pain].tolist() == [4]
    assert pain[Pain.recorded_at].tolist() == [pd.Timestamp("2026-03-02 07:30", tz="UTC")]
    assert patients[Patients.programme_start].tolist() == [pd.Timestamp("2026-03-02")]
    with duckdb.connect(str(path), read_only=True) as con:
        assert catalogue(con) == before
