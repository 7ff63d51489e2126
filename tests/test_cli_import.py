"""`backcare import / validate / rejects / rebuild`: exit codes, the --json shape and the
human views (which never show a patient's values)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_importer import FILES, _write

from backcare_analytics.cli import main

ROOT = Path(__file__).resolve().parents[1]
FILE_KEYS = {"path", "sha256", "format", "kind", "status", "rows_read", "accepted", "rejected",
             "duplicates", "warnings"}  # fmt: skip


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKCARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BACKCARE_STORE_BUSY_TIMEOUT_S", "0.5")


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object, one line
    return json.loads(out)


def test_import_json_shape_and_exit_codes(tmp_path: Path, capsys) -> None:
    store = tmp_path / "c.duckdb"
    _write(tmp_path / "ok", ["patients.csv", "patients2.csv"])
    assert main(["import", str(tmp_path / "ok"), "--store", str(store), "--json"]) == 0
    doc = _json(capsys)
    assert set(doc) >= {"files", "totals"}
    assert all(FILE_KEYS <= set(f) for f in doc["files"])
    assert doc["totals"]["accepted"] == 2 and doc["totals"]["files"] == 2
    _write(tmp_path / "bad", ["s_week1.csv"])
    assert main(["import", str(tmp_path / "bad"), "--store", str(store), "--json"]) == 2
    f = _json(capsys)["files"][0]
    assert f["rows_read"] == f["accepted"] + f["rejected"] + f["duplicates"] == 4
    assert (f["accepted"], f["rejected"], f["status"]) == (3, 1, "imported")
    # again: nothing new, everything fine
    assert main(["import", str(tmp_path / "bad"), "--store", str(store), "--json"]) == 0
    assert _json(capsys)["files"][0]["status"] == "already_imported"


def test_bad_arguments_exit_1(tmp_path: Path, capsys) -> None:
    assert main(["import", str(tmp_path / "missing.csv"), "--store", str(tmp_path / "c")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["import"]) == 1
    assert main(["rejects", "--store", str(tmp_path / "none.duckdb")]) == 1


def test_human_summary_names_reasons_not_values(tmp_path: Path, capsys) -> None:
    store = tmp_path / "c.duckdb"
    _write(tmp_path / "in", ["patients.csv", "patients2.csv", "s_week1.csv", "pain.csv"])
    assert main(["import", str(tmp_path / "in"), "--store", str(store)]) == 2
    out = capsys.readouterr().out
    assert "s_week1.csv: 4 rows read, 3 accepted; 1 row refused: 1 value out of range" in out
    assert main(["rejects", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "sessions row 5: pain_before: out_of_range" in out
    assert "pain row 4: back_pain: out_of_range" in out
    assert "P001" not in out and "11" not in out.replace("row 11", "")  # no values
    assert main(["rejects", "--store", str(store), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total_rows"] == 2
    assert "raw" not in json.dumps(doc)
    sha = doc["files"][0]["sha256"]
    assert main(["rejects", "--store", str(store), "--file", sha[:10], "--json"]) == 0
    assert [f["sha256"] for f in json.loads(capsys.readouterr().out)["files"]] == [sha]


def test_validate_leaves_the_store_untouched(tmp_path: Path, capsys) -> None:
    store = tmp_path / "c.duckdb"
    _write(tmp_path / "in", list(FILES))
    assert main(["validate", str(tmp_path / "in"), "--store", str(store), "--json"]) == 2
    doc = _json(capsys)
    assert {f["status"] for f in doc["files"]} == {"validated"}
    assert not store.exists()


def test_rebuild_command(tmp_path: Path, capsys) -> None:
    store = tmp_path / "c.duckdb"
    _write(tmp_path / "in", ["patients.csv", "patients2.csv", "s_week1.csv"])
    main(["import", str(tmp_path / "in"), "--store", str(store)])
    capsys.readouterr()
    assert main(["rebuild", "--store", str(store)]) == 0
    assert "3 files" in capsys.readouterr().out


@pytest.mark.slow
def test_store_busy_exits_1_and_changes_nothing(tmp_path: Path, capsys) -> None:
    store = tmp_path / "c.duckdb"
    _write(tmp_path / "in", ["patients.csv"])
    assert main(["import", str(tmp_path / "in"), "--store", str(store)]) == 0
    capsys.readouterr()
    size = store.stat().st_size
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(store)!r})
            print("locked", flush=True)
            time.sleep(30)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        _write(tmp_path / "more", ["patients2.csv"])
        code = main(["import", str(tmp_path / "more"), "--store", str(store), "--json"])
        captured = capsys.readouterr()
        assert code == 1
        assert "store busy" in captured.err
        assert "store busy" in json.loads(captured.out)["error"]
    finally:
        holder.kill()
        holder.wait()
    assert store.stat().st_size == size
    assert main(["import", str(tmp_path / "more"), "--store", str(store), "--json"]) == 0
