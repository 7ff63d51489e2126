"""One writer at a time per store (issue 10, defect 1): imports started together into one
store, by real child processes of the CLI, end with exactly the store one sequential import
makes; so does an import racing a patients file.

Before the writer lock, a second import worked from a stale list of patients and its
``unknown_patient`` rows were never retried: rows were lost for good.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _clinic_store import (
    CHILD_ROOT,
    LARGER,
    assert_same_tables,
    child_env,
    cli,
    log_names,
    open_store,
    tables,
    write_files,
)

from backcare_analytics.io.importer import import_paths

#: Who imports what in each scenario: folders of the clinic's files (they overlap).
SCENARIOS = {
    "twice": ["all", "all"],  # the same folder twice at once
    "three": ["all", "first", "second"],  # three overlapping batches at once
    "race": ["logs", "patients"],  # the logs, and a patients file once they are being written
}


def _folders(base: Path) -> dict[str, Path]:
    logs = log_names(LARGER)
    half = len(logs) // 2
    return {
        "all": write_files(base / "all", size=LARGER),
        "logs": write_files(base / "logs", logs, size=LARGER),
        "patients": write_files(base / "patients", ["patients.csv"], size=LARGER),
        "first": write_files(base / "first", ["patients.csv", *logs[: half + 4]], size=LARGER),
        "second": write_files(base / "second", logs[half - 4 :], size=LARGER),
    }


def _env(base: Path) -> dict[str, str]:
    return child_env(
        BACKCARE_DATA_DIR=str(base / "data"),
        BACKCARE_STORE_BUSY_TIMEOUT_S="60",
        BACKCARE_STORE_LOCK_TIMEOUT_S="120",
    )


#: A child process running the CLI's ``main`` once per line of arguments it is sent.
_WORKER = r"""
import contextlib, io, json, sys
from backcare_analytics.cli import main
print("ready", flush=True)
for line in sys.stdin:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(json.loads(line))
    print(json.dumps([code, out.getvalue()]), flush=True)
"""


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict]:
    """The larger clinic's folders, and the tables one sequential import of it gives."""
    base = tmp_path_factory.mktemp("larger")
    folders = _folders(base)
    reference = open_store(base / "reference.duckdb")
    import_paths([folders["all"]], reference)
    want = tables(reference)
    assert len(want["sessions"]) > 500 and len(want["rejects"]) > 0
    return folders, want


def _race(base: Path, larger: tuple[dict[str, Path], dict], runs: list[str], seed: int) -> None:
    """Run each scenario of ``runs`` into a fresh store with CLI imports in child processes
    at once (random start offsets), and check each store against one sequential import.

    The importers are child processes kept alive between runs, each running the CLI's
    ``main`` once per run: starting a Python with pandas, pandera and DuckDB costs ~3 s of
    CPU here, and its jitter would decide the race instead of the offsets. In ``race`` the
    patients file is sent once the logs import has written its first group.
    """
    folders, want = larger
    rng = random.Random(seed)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=CHILD_ROOT,
            env=_env(base),
        )  # fmt: skip
        for _ in range(3)
    ]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        for run, scenario in enumerate(runs):
            store = base / f"run{run}.duckdb"
            batch = SCENARIOS[scenario]
            for i, (w, folder) in enumerate(zip(workers, batch, strict=False)):
                if scenario == "race" and i:
                    _wait_for(store)
                time.sleep(rng.uniform(0, 0.2))
                args = ["import", str(folders[folder]), "--store", str(store), "--json"]
                w.stdin.write(json.dumps(args) + "\n")
                w.stdin.flush()
            for w in workers[: len(batch)]:
                code, out = json.loads(w.stdout.readline())
                assert code in (0, 2)  # 2: the clinic's planted bad rows
                doc = json.loads(out)
                assert all(f["rows_read"] == f["accepted"] + f["rejected"] + f["duplicates"]
                           for f in doc["files"])  # fmt: skip
            assert_same_tables(tables(open_store(store)), want)
    finally:
        for w in workers:
            w.stdin.close()
            w.wait(timeout=60)
    for w in workers:
        assert "Traceback" not in w.stderr.read()


def _wait_for(path: Path) -> None:
    end = time.monotonic() + 60
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.01)


def test_concurrent_cli_imports_end_with_the_clean_store(tmp_path: Path, larger) -> None:
    """One run of each: the same folder twice at once, three overlapping imports at once,
    and the logs racing a patients file."""
    _race(tmp_path, larger, list(SCENARIOS), seed=1)


@pytest.mark.slow
def test_concurrent_imports_in_a_loop_end_with_the_clean_store(tmp_path: Path, larger) -> None:
    """21 runs, seven of each scenario, with random start offsets."""
    _race(tmp_path, larger, [list(SCENARIOS)[i % 3] for i in range(21)], seed=20261202)


#: The logs import, paused after its first group is committed until a line arrives on stdin.
_PAUSED_LOGS = r"""
import sys
from backcare_analytics.io import importer
from backcare_analytics.cli import main

real, groups = importer._write_staged_group, []
def pausing(*args, **kwargs):
    out = real(*args, **kwargs)
    groups.append(1)
    if len(groups) == 1:
        print("first-group", flush=True)
        sys.stdin.readline()
    return out
importer._write_staged_group = pausing
sys.exit(main(["import", sys.argv[1], "--store", sys.argv[2], "--json"]))
"""


def test_a_patients_file_imported_during_a_logs_import_loses_nothing(
    tmp_path: Path, larger: tuple[dict[str, Path], dict]
) -> None:
    """Defect 1, deterministically: the patients file is imported while the logs import is
    between two groups. Before the lock it went straight in, retried the logs committed so
    far, and the logs import then wrote its later groups with its stale (empty) patients:
    those rows stayed ``unknown_patient`` for good. Now the patients import waits."""
    folders, want = larger
    store = tmp_path / "clinic.duckdb"
    env = _env(tmp_path)
    logs = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_LOGS, str(folders["logs"]), str(store)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=CHILD_ROOT, env=env,
    )  # fmt: skip
    try:
        assert logs.stdout.readline().strip() == "first-group"
        patients = cli("import", str(folders["patients"]), "--store", str(store), "--json",
                       env=env)  # fmt: skip
        said = patients.stderr.readline()  # "waiting ..." now; before: it ended at once
    finally:
        logs.stdin.write("\n")
        logs.stdin.close()
    assert logs.wait(timeout=300) in (0, 2)
    assert patients.wait(timeout=300) == 0
    assert_same_tables(tables(open_store(store)), want)
    assert "waiting" in said


def test_a_second_writer_waits_says_so_then_gives_up_having_changed_nothing(
    tmp_path: Path,
) -> None:
    """The lock is held by a live process: a second import says who holds it (once), waits
    for the set time, and exits 1 with "store busy" and valid JSON; nothing was written."""
    from _clinic_store import python

    store = tmp_path / "clinic.duckdb"
    holder = python(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from backcare_analytics.store.lock import write_lock\n"
        "with write_lock(Path(sys.argv[1]), 5):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n",
        str(store),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        folder = write_files(tmp_path / "in", ["patients.csv"])
        env = child_env(BACKCARE_DATA_DIR=str(tmp_path / "data"),
                        BACKCARE_STORE_LOCK_TIMEOUT_S="1")  # fmt: skip
        proc = cli("import", str(folder), "--store", str(store), "--json", env=env)
        out, err = proc.communicate(timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    doc = json.loads(out)
    assert doc["reason"] == "store_busy" and "store busy" in doc["error"]
    assert err.count("waiting up to 1 s") == 1 and f"pid {holder.pid}" in err
    assert "Traceback" not in err
    assert not store.exists()  # nothing was changed
    lock = tmp_path / "clinic.duckdb.lock"
    assert lock.stat().st_mode & 0o777 == 0o600
    # the holder is gone (killed): the lock went with it (in this process: no new CLI start)
    rep = import_paths([folder], open_store(store, timeout=1))
    assert [f.status for f in rep.files] == ["imported"]


def test_the_lock_file_is_never_followed_through_a_symlink(tmp_path: Path) -> None:
    from backcare_analytics.errors import StoreError

    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours")
    mode = target.stat().st_mode
    (tmp_path / "clinic.duckdb.lock").symlink_to(target)
    folder = write_files(tmp_path / "in", ["patients.csv"])
    with pytest.raises(StoreError, match="symbolic link"):
        import_paths([folder], open_store(tmp_path / "clinic.duckdb"))
    assert target.read_text() == "not yours" and target.stat().st_mode == mode
    assert not (tmp_path / "clinic.duckdb").exists()


def test_rows_left_unknown_by_an_earlier_import_are_retried_by_any_later_import(
    tmp_path: Path,
) -> None:
    """A store where patients are registered but rows of theirs are still quarantined
    ``unknown_patient`` (what a lost race left behind, before the lock): the next import of
    anything repairs it, and the result equals the clean store."""
    folders = {
        "all": write_files(tmp_path / "all"),
        "logs": write_files(tmp_path / "logs", log_names()),
        "patients": write_files(tmp_path / "patients", ["patients.csv"]),
    }
    reference = open_store(tmp_path / "reference.duckdb")
    import_paths([folders["all"]], reference)
    want = tables(reference)
    store = open_store(tmp_path / "clinic.duckdb")
    import_paths([folders["logs"]], store)  # every row: unknown_patient
    # Register the patients behind the retry's back, as a writer with a stale view did.
    patients = open_store(tmp_path / "patients_only.duckdb")
    import_paths([folders["patients"]], patients)
    with store.writer() as con:
        con.execute(f"ATTACH '{patients.path}' AS p (READ_ONLY)")
        for table in ("patients", "prescriptions", "imports"):
            con.execute(f"INSERT INTO {table} SELECT * FROM p.{table}")
        con.execute("DETACH p")
    assert len(store.sessions()) == 0 and len(store.patients()) == 4
    rep = import_paths([folders["patients"]], store)  # nothing new in it
    assert [f.status for f in rep.files] == ["already_imported"]
    assert {r.path for r in rep.retried} == set(log_names())
    assert_same_tables(tables(store), want)


def test_one_lock_for_a_store_reached_through_a_link(tmp_path: Path) -> None:
    """Two names of one store file (a symbolic link) share one writer lock, so two writers
    cannot each take 'their' lock and import from stale snapshots."""
    from backcare_analytics.store.lock import lock_path

    real = tmp_path / "real" / "clinic.duckdb"
    real.parent.mkdir()
    real.write_bytes(b"")
    link = tmp_path / "clinic.duckdb"
    link.symlink_to(real)
    assert lock_path(link) == lock_path(real) == real.with_name("clinic.duckdb.lock")
