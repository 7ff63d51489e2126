"""The pandera models are the one definition of every stored clean table (issue 11, item 1).

The DDL, the pandas dtypes of the typed queries and the merge's column lists are derived from
``schemas.clean``; these tests hold the derived forms to stores made before the derivation
existed, and to each other.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pandera.pandas as pa
import pytest
from _schema_v1 import V1_CLEAN_DDL

from backcare_analytics.schemas.clean import Pain, Patients
from backcare_analytics.schemas.raw import RawPain, RawPatients, RawSessions
from backcare_analytics.store import CLEAN_DTYPES, SPECS, Store
from backcare_analytics.store.db import (
    CLEAN_MODELS,
    COLUMN_TYPES,
    DDL,
    EDIT_COLUMNS,
    PROVENANCE_COLUMNS,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


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


# --- one place changed and not the others -------------------------------------------------------
# Adding a column, dtype or bound to a model, the DDL, the dtypes or the docs alone fails one of
# the tests below (the DDL and dtypes are derived, so a change to the model alone also fails the
# v1 comparisons above: a schema change needs a migration and a new SCHEMA_VERSION).


def markdown_table(path: Path, heading: str) -> list[dict[str, str]]:
    """The first table after the line starting with ``heading``, one dict per body row."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    header, _rule, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def unquoted(cell: str) -> str:
    return cell.strip().strip("`")


def model_bounds(col: pa.Column) -> dict[str, float]:
    """The numeric bounds and text length limit of a model column, by check name."""
    out: dict[str, float] = {}
    for check in col.checks:
        stats = check.statistics
        if check.name == "greater_than_or_equal_to":
            out["ge"] = stats["min_value"]
        elif check.name == "less_than_or_equal_to":
            out["le"] = stats["max_value"]
        elif check.name == "str_length" and stats.get("max_value") is not None:
            out["max_chars"] = stats["max_value"]
    return out


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def doc_bounds(cell: str) -> dict[str, float]:
    """Bounds written in a docs type cell: ``0–10``, ``≥ 1``, ``≤ 4,000 chars``."""
    out: dict[str, float] = {}
    if m := re.search(r"(\d[\d,]*)–(\d[\d,]*)", cell):
        out["ge"], out["le"] = _number(m[1]), _number(m[2])
    if m := re.search(r"≥ (\d[\d,]*)", cell):
        out["ge"] = _number(m[1])
    if m := re.search(r"≤ (\d[\d,]*) chars", cell):
        out["max_chars"] = _number(m[1])
    return out


def doc_kind_of_type(cell: str) -> str:
    """The pandas dtype a docs type cell names: integer, number, boolean, time/date or text."""
    if "integer" in cell:
        return "Int64"
    if "number" in cell:
        return "Float64"
    if "boolean" in cell:
        return "boolean"
    if "time" in cell or "date" in cell:
        return "datetime"
    return "str"


#: Export columns the importer renames (the exercise's name or alias becomes its id) and clean
#: columns it derives (the patient's local day; the delivering file's SHA-256).
EXPORT_TO_CLEAN = {"exercise": "exercise_id"}
DERIVED_AT_IMPORT = {"day", "source_file"}

EXPORT_TABLES = [
    ("### Session log", RawSessions, "sessions"),
    ("### Pain diary", RawPain, "pain"),
    ("### Patients file", RawPatients, "patients"),
]


@pytest.mark.parametrize(("heading", "raw", "table"), EXPORT_TABLES)
def test_export_contract_tables_match_the_models(
    heading: str, raw: type[pa.DataFrameModel], table: str
) -> None:
    doc = {unquoted(r["column"]): r for r in markdown_table(DOCS / "export-format.md", heading)}
    raw_cols = raw.to_schema().columns
    clean_cols = CLEAN_MODELS[table].to_schema().columns
    # The export's columns: the raw model's, then the edit time.
    assert list(doc) == [*raw_cols, "updated_at"]
    assert {c for c in doc if c not in raw_cols} <= set(EDIT_COLUMNS)
    # Every clean column comes from an export column or is derived at import, and back.
    from_export = {EXPORT_TO_CLEAN.get(c, c) for c in raw_cols}
    assert set(clean_cols) - DERIVED_AT_IMPORT == from_export
    for name in raw_cols:
        row, clean = doc[name], clean_cols[EXPORT_TO_CLEAN.get(name, name)]
        required = row["required"] == "yes"
        assert required == raw_cols[name].required, name
        assert not (required and clean.nullable), name  # required means never missing
        dtype = CLEAN_DTYPES[table][clean.name]
        kind = "datetime" if dtype.startswith("datetime") else dtype
        type_cell = next(v for k, v in row.items() if k.startswith("type"))
        assert doc_kind_of_type(type_cell) == kind, name
        assert doc_bounds(type_cell) == model_bounds(clean), name


def test_store_tables_in_the_import_docs_name_the_model_and_the_provenance() -> None:
    rows = {
        unquoted(r["table"]): r["columns"]
        for r in markdown_table(DOCS / "import.md", "## The store")
    }
    for table, model in CLEAN_MODELS.items():
        m = re.fullmatch(r"the clean `(\w+)` columns \+ (.*)", rows[table])
        assert m, table
        assert m[1] == model.__name__
        assert re.findall(r"`(\w+)`", m[2]) == [c.name for c in PROVENANCE_COLUMNS[table]]


def test_the_store_catalogue_is_the_models_plus_the_declared_provenance(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.initialise()
    with duckdb.connect(str(store.path), read_only=True) as con:
        got = catalogue(con)
    want = []
    for table in sorted(CLEAN_MODELS):
        cols = [
            (name, str(duckdb.sqltype(COLUMN_TYPES[str(col.dtype)][0])), col.nullable)
            for name, col in CLEAN_MODELS[table].to_schema().columns.items()
        ]
        cols += [
            (c.name, str(duckdb.sqltype(c.sql_type)), not c.not_null)
            for c in PROVENANCE_COLUMNS[table]
        ]
        want += [(table, i, *col) for i, col in enumerate(cols, start=1)]
    assert got == want


@pytest.mark.parametrize("table", sorted(CLEAN_MODELS))
def test_the_typed_dtypes_satisfy_the_model(table: str) -> None:
    """A frame of exactly ``CLEAN_DTYPES`` passes the strict model: same columns, same dtypes."""
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in CLEAN_DTYPES[table].items()})
    CLEAN_MODELS[table].validate(empty)
    assert list(CLEAN_DTYPES[table]) == list(CLEAN_MODELS[table].to_schema().columns)
