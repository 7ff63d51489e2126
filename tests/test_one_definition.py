"""The pandera models are the one definition of every stored clean table (issue 11, item 1).

The DDL, the pandas dtypes of the typed queries and the merge's column lists are derived from
``schemas.clean``; these tests hold the derived forms to stores made before the derivation
existed, and to each other.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

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
