"""Safe outputs (issue 10, defects 14 and 15): every CSV is formula-safe however a reader splits
it, and every output is written owner-only, by temporary file and rename, never through a link.

The commands run for real (``backcare metrics``, ``backcare export research``, ``backcare
report``) on real DuckDB stores in ``tmp_path``; CSV files are parsed back with Python's csv.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _adherence_frames import full_routine, pain, patients, sessions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backcare_analytics import safety
from backcare_analytics.cli import main
from backcare_analytics.errors import UnsafeOutputError
from backcare_analytics.research import export as ex
from backcare_analytics.store import Store, merge_rows

SHA = "c" * 64
WEEK = [f"2026-03-0{i}" for i in range(2, 9)]
CR_PAYLOAD = "S1\r=2+5"  # the reproduction of defect 14
STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Where a lenient reader may start a cell: after a line break or a guessed delimiter.
BREAK = re.compile(r"[\r\n,;\t]")
NUMBER = re.compile(r"-?(\d+(\.\d*)?(e[-+]?\d+)?|inf)")


def _with_rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["_row"] = np.arange(2, len(out) + 2)
    out["updated_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two patients; P1's sessions carry hostile session ids, one of them the CR payload."""
    path = tmp_path_factory.mktemp("store") / "clinic.duckdb"
    pts = patients({"P1": "2026-03-02", "P2": "2026-03-04"}, tz="Europe/Amsterdam")
    rows = full_routine("P1", WEEK[:3]) + full_routine("P2", ["2026-03-04"])
    for r in rows:
        r.update(pain_before=2, pain_after=3)
    ses = sessions(rows)
    hostile = [CR_PAYLOAD, "a;=1+2", "b\n@SUM(A1)", "c,-3", "\t=x", "ok"]
    ses["session_id"] = pd.Series([hostile[i % len(hostile)] for i in range(len(ses))], dtype="str")
    diary = pain({"P1": WEEK, "P2": ["2026-03-05"]})
    with Store(path).transaction() as con:
        for kind, frame in (("patients", pts), ("sessions", ses), ("pain", diary)):
            assert merge_rows(con, kind, _with_rows(frame), SHA).accepted == len(frame)
    return path


def _cells(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _assert_formula_safe(path: Path) -> None:
    """No cell, and no part of a cell after a line break or delimiter, starts a formula."""
    for row in _cells(path):
        for cell in row:
            if NUMBER.fullmatch(cell):
                continue  # a number (-3, -0.5) is a value, not a formula
            assert not cell.startswith(STARTS), (path.name, cell)
            for m in BREAK.finditer(cell):
                assert cell[m.end() : m.end() + 1] not in ("=", "+", "-", "@"), (path.name, cell)


# ---------------------------------------------------------------------------------------------
# defect 14: a bare CR in a cell (reproduction: `backcare metrics` on a session_id "S1\r=2+5")
# ---------------------------------------------------------------------------------------------


def test_metrics_csv_with_a_bare_cr_keeps_its_rows_and_starts_no_formula(store, tmp_path):
    out = tmp_path / "m"
    assert main(["metrics", "--store", str(store), "--out", str(out)]) == 0
    written = sorted(out.glob("*.csv"))
    assert written
    for path in written:
        _assert_formula_safe(path)
        rows = _cells(path)
        # Every row has the header's width: nothing was split by the CR.
        assert {len(r) for r in rows} == {len(rows[0])}, path.name
        # The same number of rows as the Parquet table written beside it.
        assert len(rows) - 1 == len(pd.read_parquet(path.with_suffix(".parquet"))), path.name
    tolerance = _cells(out / "session_tolerance.csv")
    ids = {r[tolerance[0].index("session_id")] for r in tolerance[1:]}
    assert "S1\r'=2+5" in ids  # quoted, whole, and neutralised after the CR
    assert "a;'=1+2" in ids and "b\n'@SUM(A1)" in ids and "'\t'=x" in ids


# ---------------------------------------------------------------------------------------------
# the property: hostile text through every CSV writer
# ---------------------------------------------------------------------------------------------

HOSTILE = "=+-@\t\r\n,;\"'ab"
hostile_cells = st.one_of(st.none(), st.text(alphabet=HOSTILE, max_size=8))


def _frame(rows: list[tuple[str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": pd.Series([r[0] for r in rows], dtype="str"),
            "clinician_code": pd.Series([r[1] for r in rows], dtype="str"),
            "n": np.arange(len(rows)) - 1,
        }
    )


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(st.tuples(hostile_cells, hostile_cells), min_size=1, max_size=6))
def test_every_csv_writer_is_formula_safe_and_research_csv_round_trips(tmp_path, rows):
    df = _frame(rows)
    # The package's CSV writers: the one in safety (metric tables) and its reversible form
    # (research exports, read back by read_research's reader).
    for reversible in (False, True):
        path = safety.write_csv(df, tmp_path / f"t{int(reversible)}.csv", reversible=reversible)
        _assert_formula_safe(path)
        parsed = _cells(path)
        assert len(parsed) == len(df) + 1 and all(len(r) == 3 for r in parsed)
        assert [r[2] for r in parsed[1:]] == [str(v) for v in df["n"]]  # numbers untouched
    back = ex._read_csv(tmp_path / "t1.csv", {"subject_id": "str", "clinician_code": "str"})
    pd.testing.assert_frame_equal(back, df[["subject_id", "clinician_code"]])


def test_there_is_one_csv_writer() -> None:
    """Every CSV of the package goes through safety.write_csv: no other writer exists."""
    package = Path(safety.__file__).parent
    writers = re.compile(r"\.to_csv\(|csv\.writer\(|csv\.DictWriter\(")
    offenders = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name != "safety.py"
        and not p.is_relative_to(package / "synth")  # writes the synthetic clinic's *inputs*
        and writers.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_research_export_with_hostile_text_round_trips(tmp_path):
    key = bytes(range(32))
    pts = patients({"P1": "2026-03-02"})
    pts["clinician"] = pd.Series(["dr"], dtype="str")
    ses = sessions(full_routine("P1", WEEK[:2]))
    ses["variant"] = pd.Series(
        [CR_PAYLOAD, "x;@y", "", None, "'q", "a\r\n-b", "+"] * 2, dtype="str"
    )
    out = tmp_path / "r"
    ex.export_research(
        patients=pts, sessions=ses, pain=pain({"P1": WEEK[:2]}), prescriptions=None, key=key,
        out=out,
    )  # fmt: skip
    for name in ("patients", "sessions", "pain"):
        _assert_formula_safe(out / f"{name}.csv")
    back = ex.read_research(out, "sessions")
    pd.testing.assert_frame_equal(back, ex.read_research(out, "sessions", fmt="parquet"))
    assert sorted(back["variant"].dropna()) == sorted(ses["variant"].dropna())


# ---------------------------------------------------------------------------------------------
# defect 15: symlinks in the output folder, the folder as a symlink, folder modes
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def victim(tmp_path: Path) -> Path:
    """A file outside every output folder that a planted link points at."""
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_text("do not touch\n")
    path.chmod(0o644)
    return path


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(path.stat().st_mode)


def _plant_links(folder: Path, names: list[str], target: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in names:
        (folder / name).symlink_to(target)


def _assert_replaced(folder: Path, names: list[str]) -> None:
    for name in names:
        p = folder / name
        assert not p.is_symlink() and p.is_file(), name
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, name


METRIC_NAMES = ["adherence_daily.csv", "adherence_daily.parquet", "session_tolerance.csv"]


def test_metrics_replaces_links_at_output_names_and_leaves_their_targets(store, tmp_path, victim):
    before = _digest(victim)
    out = tmp_path / "m"
    _plant_links(out, METRIC_NAMES, victim)
    assert main(["metrics", "--store", str(store), "--out", str(out)]) == 0
    assert _digest(victim) == before
    _assert_replaced(out, METRIC_NAMES)
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


RESEARCH_NAMES = ["patients.csv", "sessions.parquet", "manifest.json"]


def test_export_research_replaces_links_and_refuses_a_linked_folder(
    store, tmp_path, victim, capsys
):
    keys = tmp_path / "keys"
    key = ex.new_key(keys / "study.key")
    before = _digest(victim)
    out = tmp_path / "r"
    _plant_links(out, RESEARCH_NAMES, victim)
    args = ["export", "research", "--store", str(store), "--key-file", str(key), "--out"]
    assert main([*args, str(out)]) == 0
    assert _digest(victim) == before
    _assert_replaced(out, RESEARCH_NAMES)
    # The output folder itself a link to a folder elsewhere: refused, nothing written there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert main([*args, str(tmp_path / "linked")]) == 1
    assert "is a symlink" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_metrics_refuses_a_linked_output_folder(store, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (tmp_path / "out").symlink_to(elsewhere, target_is_directory=True)
    assert main(["metrics", "--store", str(store), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "is a symlink" in err and "Fix:" in err
    assert list(elsewhere.iterdir()) == []
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755  # never chmodded through the link


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_folders_0700_and_files_0600_under_umask_000(store, tmp_path):
    out = tmp_path / "a" / "b" / "m"
    store_dir = tmp_path / "data" / "store"
    with _umask(0):
        assert main(["metrics", "--store", str(store), "--out", str(out)]) == 0
        with Store(store_dir / "new.duckdb").transaction():  # creates its folder, as data/
            pass
    for folder in (tmp_path / "a", tmp_path / "a" / "b", out, tmp_path / "data", store_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = list(out.iterdir())
    assert files and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_world_writable_output_folder_is_tightened_if_ours_refused_if_not(store, tmp_path):
    ours = tmp_path / "ours"
    ours.mkdir()
    ours.chmod(0o777)
    assert main(["metrics", "--store", str(store), "--out", str(ours)]) == 0
    assert stat.S_IMODE(ours.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    os.chown(theirs, 65534, 65534)  # nobody's folder, writable by all
    with pytest.raises(UnsafeOutputError, match="not yours"):
        safety.write_private_text(theirs / "t.txt", "x")
    assert list(theirs.iterdir()) == []


def test_a_folder_anyone_may_write_above_the_output_is_refused(tmp_path):
    open_above = tmp_path / "open"
    open_above.mkdir()
    open_above.chmod(0o777)  # no sticky bit: anyone could rename the folders inside
    with pytest.raises(UnsafeOutputError, match="may be written by anyone"):
        safety.private_folder(open_above / "out")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: others cannot rename what is ours
    assert safety.private_folder(sticky / "out").is_dir()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = safety.write_private_text(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError), safety.open_private(path) as fh:
        fh.write(b"half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


@pytest.mark.slow  # one real render: a kernel start (about 10-30 s on a loaded machine)
def test_report_replaces_a_link_at_its_name_and_leaves_its_target(store, tmp_path, victim):
    before = _digest(victim)
    out = tmp_path / "reports"
    _plant_links(out / "2026-W10", ["clinic-overview.html"], victim)
    args = ["report", "clinic", "--store", str(store), "--week", "2026-W10", "--out", str(out)]
    assert main(args) == 0
    assert _digest(victim) == before
    _assert_replaced(out / "2026-W10", ["clinic-overview.html"])
    assert "Clinic overview" in (out / "2026-W10" / "clinic-overview.html").read_text()


@pytest.mark.parametrize("linked", ["reports", "reports/2026-W10"])
def test_report_refuses_a_linked_folder_before_rendering(store, tmp_path, capsys, linked):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    out = tmp_path / "reports"
    args = ["report", "clinic", "--store", str(store), "--week", "2026-W10", "--out", str(out)]
    assert main(args) == 1
    assert "is a symlink" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_an_output_path_through_a_file_or_a_dangling_link_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    for out in (tmp_path / "file" / "m", tmp_path / "dangling" / "m", tmp_path / "dangling"):
        with pytest.raises(UnsafeOutputError, match="Fix:"):
            safety.private_folder(out)
    assert not (tmp_path / "missing").exists()


def _ended_pid() -> int:
    """The pid of a process that has ended (a child started and reaped here)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_a_killed_writer_are_removed_when_the_folder_is_next_used(tmp_path):
    """A writer killed between its temporary file and the rename leaves patient data under a
    hidden name; the next command that uses the folder removes it, and only it."""
    out = safety.private_folder(tmp_path / "out")
    orphan = out / f".patient-P1.html.{_ended_pid()}.0a1b2c3d.tmp"
    live = out / f".patient-P2.html.{os.getpid()}.0a1b2c3d.tmp"
    other = out / ".notes.tmp"
    for p in (orphan, live, other):
        p.write_bytes(b"x")
    safety.private_folder(out)
    assert not orphan.exists()
    assert live.exists() and other.exists()


def test_a_failed_write_leaves_no_temporary_and_closes_its_file(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(RuntimeError), safety.open_private(tmp_path / "t.bin") as fh:
        fh.write(b"partial")
        raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == []
    assert len(os.listdir("/proc/self/fd")) == before
