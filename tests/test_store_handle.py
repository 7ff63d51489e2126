"""One ``Store`` handle: every public entry point takes a :class:`Store`, its file's path, or a
path string, with the same result; and a store of schema 1 (with the retired
``prescriptions`` table) still opens, reads, and is migrated by its first write.

The tiny clinic: two patients, three sessions and two diary entries in ISO week 2026-W10.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from _schema_v1 import SCHEMA_1

from backcare_analytics.io.importer import import_paths
from backcare_analytics.metrics.run import metric_tables_from_store
from backcare_analytics.reports.batch import render_week, week_patients
from backcare_analytics.reports.context import load_week, resolve_week
from backcare_analytics.reports.overview import load_clinic_week
from backcare_analytics.research.export import export_research_from_store
from backcare_analytics.store import Store
from backcare_analytics.store.db import SCHEMA_VERSION, TABLES

FILES = {
    "patients.csv": (
        "patient_id,timezone,programme_start,clinician\n"
        "P1,Europe/Amsterdam,2026-03-02,AB\n"
        "P2,Europe/Amsterdam,2026-03-02,AB\n"
    ),
    "sessions.csv": (
        "patient_id,performed_at,exercise,side,reps,hold_s,level,pain_before,pain_after,note\n"
        "P1,2026-03-03 07:15,Bridge,,5,15,,3,2,\n"
        "P1,2026-03-04 07:15,Bridge,,6,15,,3,2,\n"
        "P2,2026-03-05 08:00,Bridge,,4,10,,5,5,\n"
    ),
    "pain.csv": (
        "patient_id,recorded_at,back_pain,leg_pain\nP1,2026-03-03 20:00,4,1\nP2,2026-03-05 20:00,6,2\n"
    ),
}
WEEK = "2026-W10"


def _inbox(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("handle")
    path = root / "store.duckdb"
    report = import_paths([_inbox(root / "inbox")], Store(path))
    assert report.exit_code == 0, report.summary()
    return path


def _forms(path: Path) -> dict[str, Store | Path | str]:
    return {"Store": Store(path), "Path": path, "str": str(path)}


def test_store_of_converts_once_and_keeps_a_store(store_file: Path) -> None:
    store = Store(store_file)
    assert Store.of(store) is store
    assert Store.of(store_file).path == Store.of(str(store_file)).path == store_file
    assert Store.of(None).path == Store.from_settings().path


def test_week_entry_points_take_a_store_or_a_path_alike(store_file: Path) -> None:
    got = {
        name: (
            resolve_week(s, "latest"),
            week_patients(s, WEEK),
            load_week(s, WEEK).frame("sessions"),
            load_clinic_week(s, WEEK).table,
        )
        for name, s in _forms(store_file).items()
    }
    assert got["Store"][:2] == (WEEK, ["P1", "P2"])  # the last logged day is Thursday
    assert len(got["Store"][2]) == 3 and set(got["Store"][3]["patient_id"]) == {"P1", "P2"}
    for name in ("Path", "str"):
        assert got[name][:2] == got["Store"][:2], name
        pd.testing.assert_frame_equal(got[name][2], got["Store"][2])
        pd.testing.assert_frame_equal(got[name][3], got["Store"][3])


def test_render_week_takes_a_store_or_a_path_alike(store_file: Path, tmp_path: Path) -> None:
    """Without reports to render (no kernel started): the week resolved and the folder made."""
    for name, s in _forms(store_file).items():
        summary = render_week(s, "latest", out=tmp_path / name, weekly=False, clinic=False)
        assert (summary.week, summary.out_dir, summary.results) == (
            WEEK,
            tmp_path / name / WEEK,
            (),
        ), name


def test_metric_tables_take_a_store_or_a_path_alike(store_file: Path) -> None:
    got = {n: metric_tables_from_store(s, jobs=1) for n, s in _forms(store_file).items()}
    assert got["Store"]["adherence_daily"].shape[0] > 0
    for name in ("Path", "str"):
        assert got[name].keys() == got["Store"].keys()
        for table in got["Store"]:
            pd.testing.assert_frame_equal(got[name][table], got["Store"][table], obj=table)


def test_research_export_takes_a_store_or_a_path_alike(
    store_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = tmp_path_factory.mktemp("keys")
    outs = tmp_path_factory.mktemp("exports")
    got = {}
    for i, (name, s) in enumerate(_forms(store_file).items()):
        result = export_research_from_store(s, outs / name, keys / "study.key", create_key=i == 0)
        got[name] = result.tables
    assert len(got["Store"]["sessions"]) == 3  # the same key: the same pseudonyms
    for name in ("Path", "str"):
        for table in got["Store"]:
            pd.testing.assert_frame_equal(got[name][table], got["Store"][table], obj=table)


def test_import_takes_a_store_or_a_path_alike(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path / "inbox")
    counts = {}
    for name, s in _forms(tmp_path / "new.duckdb").items():
        report = import_paths([inbox], s, dry_run=True)  # writes nothing: the same each time
        counts[name] = [(f.path, f.status, f.rows_read, f.accepted) for f in report.files]
    assert counts["Store"] and counts["Path"] == counts["str"] == counts["Store"]
    assert sum(c[3] for c in counts["Store"]) == 2 + 3 + 2


# -- migration from schema 1 -------------------------------------------------------------------

#: Schema 1 as an older version created it, frozen here on purpose (not derived from today's
#: DDL): the tables and the ``prescriptions`` table that importer rewrote on every import.
#: A schema-1 store holding one patient and one prescription row.
SCHEMA_1_STORE = (
    SCHEMA_1
    + """
INSERT INTO patients VALUES ('P1', 'Europe/Amsterdam', '2026-03-02', 'AB', 'sha', NULL, 1);
INSERT INTO prescriptions VALUES ('P1', 'bridge', '2026-03-02', NULL, 1, 3, 5, 15.0, false,
    NULL, NULL, 'protocol');
"""
)


#: The tables of schema 2, written out by hand (schema 1 had ``prescriptions`` as well).
SCHEMA_2_TABLES = {"meta", "patients", "sessions", "pain", "rejects", "imports"}


def _tables_and_version(path: Path) -> tuple[set[str], str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        q = "SELECT value FROM meta WHERE key = 'schema_version'"
        return names, con.execute(q).fetchall()[0][0]
    finally:
        con.close()


def test_a_schema_1_store_opens_reads_and_its_first_write_migrates_it(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA_1_STORE)
    con.close()
    store = Store(path)
    # Read as it is: the retired table is still there and in nobody's way.
    assert list(store.patients()["patient_id"]) == ["P1"]
    assert store.sessions().empty
    assert set(store.prescriptions()["exercise_id"]) >= {"bridge"}  # from the protocol
    assert _tables_and_version(path) == ({*SCHEMA_2_TABLES, "prescriptions"}, "1")
    # The first write migrates: the retired table dropped, the version recorded, data kept.
    report = import_paths([_inbox(tmp_path / "inbox")], store)
    assert report.exit_code == 0, report.summary()
    assert _tables_and_version(path) == (SCHEMA_2_TABLES, "2")
    assert list(store.patients()["patient_id"]) == ["P1", "P2"] and len(store.sessions()) == 3


def test_a_new_store_has_exactly_the_listed_tables(tmp_path: Path) -> None:
    store = Store(tmp_path / "new.duckdb")
    store.initialise()
    store.initialise()  # a second write changes nothing
    assert _tables_and_version(store.path) == (set(TABLES), SCHEMA_VERSION)
