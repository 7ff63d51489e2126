"""The importer: row accounting, one transaction per file, re-imports, edits, the
unknown-patient retry, order independence, dry runs, rebuild and crash safety (SIGKILL).

They run through the real readers and normalisation, so what they check (row accounting,
privacy of messages, crash safety) holds for the importer as users run it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backcare_analytics.config import Settings
from backcare_analytics.errors import StoreError, ValidationDisabledError
from backcare_analytics.io import importer, writer
from backcare_analytics.io.importer import import_paths, rebuild
from backcare_analytics.schemas import Pain, Patients, Sessions, validate
from backcare_analytics.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
NOW = pd.Timestamp("2026-03-20T12:00:00Z")

PATIENTS = "patient_id,timezone,programme_start\nP001,Europe/Amsterdam,2026-03-01\n"
PATIENTS_2 = "patient_id,timezone,programme_start\nP002,America/New_York,2026-03-01\n"
HEAD = "patient_id,performed_at,exercise,session_id,reps,hold_s,pain_before,updated_at\n"
S_WEEK1 = HEAD + (
    "P001,2026-03-02T07:15:00+01:00,bridge,,5,15,3,\n"
    "P001,2026-03-02T07:20:00+01:00,mini_push_up,,10,,3,\n"
    "P002,2026-03-02T07:15:00-05:00,bridge,,4,15,5,\n"
    "P001,2026-03-03T07:15:00+01:00,bridge,S3,5,15,11,\n"  # pain 11: refused
)
S_WEEK1_2 = S_WEEK1 + (  # an overlapping re-export: week 1 again plus two new rows
    "P001,2026-03-09T07:15:00+01:00,bridge,,5,15,2,\n"
    "P002,2026-03-09T07:15:00-05:00,bridge,,6,15,4,\n"
)
S_EDIT = HEAD + "P001,2026-03-02T07:15:00+01:00,bridge,,7,15,3,2026-03-05T10:00:00Z\n"
PAIN = "patient_id,recorded_at,back_pain,flare\n" + (
    "P001,2026-03-02T20:00:00+01:00,4,true\nP002,2026-03-02T20:00:00-05:00,5,\n"
    "P001,2026-03-03T20:00:00+01:00,12,\n"
)
FILES = {
    "patients.csv": PATIENTS, "patients2.csv": PATIENTS_2, "s_week1.csv": S_WEEK1,
    "s_week1_2.csv": S_WEEK1_2, "s_edit.csv": S_EDIT, "pain.csv": PAIN,
}  # fmt: skip


def _store(tmp_path: Path, name: str = "clinic.duckdb", timeout: float = 2.0) -> Store:
    settings = Settings(data_dir=tmp_path / "data", store_busy_timeout_s=timeout)
    return Store(tmp_path / name, settings=settings)


def _write(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        (folder / n).write_text(FILES[n])
        out.append(folder / n)
    return out


def _contents(store: Store) -> dict[str, pd.DataFrame]:
    """The data, without provenance (which file first delivered a row)."""
    return {
        "sessions": store.sessions().drop(columns="source_file"),
        "pain": store.pain().drop(columns="source_file"),
        "patients": store.patients(),
    }


def _snapshot(store: Store) -> dict[str, pd.DataFrame]:
    return {
        "sessions": store.sessions(), "pain": store.pain(), "patients": store.patients(),
        "rejects": store.rejects(), "imports": store.imports(),
    }  # fmt: skip


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k], obj=k)


def _balanced(store: Store) -> None:
    led = store.imports()
    assert (led["rows_read"] == led["accepted"] + led["rejected"] + led["duplicates"]).all()


def test_counts_balance_in_report_and_ledger(tmp_path: Path) -> None:
    s = _store(tmp_path)
    paths = _write(tmp_path / "in", ["patients.csv", "patients2.csv", "s_week1.csv", "pain.csv"])
    rep = import_paths([tmp_path / "in"], s, now=NOW)
    by = {f.path: f for f in rep.files}
    assert [f.path for f in rep.files][:2] == ["patients.csv", "patients2.csv"]  # first
    assert (by["s_week1.csv"].accepted, by["s_week1.csv"].rejected) == (3, 1)
    assert by["s_week1.csv"].reject_reasons == {"out_of_range": 1}
    assert (by["pain.csv"].accepted, by["pain.csv"].rejected) == (2, 1)
    assert all(f.balanced for f in rep.files) and rep.exit_code == 2
    led = s.imports().set_index("path")
    assert led.loc["s_week1.csv", "sha256"] == hashlib.sha256(paths[2].read_bytes()).hexdigest()
    assert led.loc["s_week1.csv", "rejected"] == 1
    _balanced(s)
    rej = s.rejects()
    assert set(zip(rej["kind"], rej["row"], rej["column"], rej["reason"], strict=True)) == {
        ("sessions", 5, "pain_before", "out_of_range"),
        ("pain", 4, "back_pain", "out_of_range"),
    }
    validate(s.sessions(), Sessions)
    validate(s.pain(), Pain)
    validate(s.patients(), Patients)
    assert "1 value out of range" in rep.summary()


def test_reimporting_the_same_bytes_changes_nothing(tmp_path: Path) -> None:
    s = _store(tmp_path)
    folder = tmp_path / "in"
    _write(folder, ["patients.csv", "patients2.csv", "s_week1.csv"])
    import_paths([folder], s, now=NOW)
    before = _snapshot(s)
    rep = import_paths([folder], s, now=NOW + pd.Timedelta(days=1))
    assert {f.status for f in rep.files} == {"already_imported"}
    assert all(f.balanced for f in rep.files) and rep.exit_code == 0
    _assert_same(before, _snapshot(s))
    # the same bytes under another name are the same file
    (tmp_path / "copy.csv").write_text(S_WEEK1)
    assert import_paths([tmp_path / "copy.csv"], s).files[0].status == "already_imported"


def test_overlapping_reexport_adds_only_new_rows(tmp_path: Path) -> None:
    s = _store(tmp_path)
    folder = tmp_path / "in"
    _write(folder, ["patients.csv", "patients2.csv", "s_week1.csv"])
    import_paths([folder], s, now=NOW)
    (p,) = _write(tmp_path / "later", ["s_week1_2.csv"])
    f = import_paths([p], s, now=NOW).files[0]
    assert (f.rows_read, f.accepted, f.duplicates, f.rejected) == (6, 2, 3, 1)
    assert len(s.sessions()) == 5
    _balanced(s)


def test_an_edit_with_later_updated_at_replaces_the_stored_row(tmp_path: Path) -> None:
    s = _store(tmp_path)
    _write(tmp_path / "in", ["patients.csv", "patients2.csv", "s_week1.csv"])
    import_paths([tmp_path / "in"], s, now=NOW)
    (p,) = _write(tmp_path / "edit", ["s_edit.csv"])
    f = import_paths([p], s, now=NOW).files[0]
    assert (f.accepted, f.replaced) == (1, 1)
    got = s.sessions()
    row = got[(got["exercise_id"] == "bridge") & (got["performed_at"].dt.day == 2)
              & (got["patient_id"] == "P001")]  # fmt: skip
    assert list(row["reps"]) == [7]
    assert len(got) == 3


def test_unknown_patients_are_retried_when_registered(tmp_path: Path) -> None:
    s = _store(tmp_path)
    _write(tmp_path / "in", list(FILES))
    first = import_paths([tmp_path / "in" / "s_week1.csv"], s, now=NOW).files[0]
    assert first.reject_reasons == {"unknown_patient": 4, "out_of_range": 1}
    assert first.rejected == 4
    import_paths([tmp_path / "in" / "patients.csv"], s, now=NOW)
    led = s.imports().set_index("path").loc["s_week1.csv"]
    assert (led["accepted"], led["rejected"]) == (2, 2)  # P001's rows; P002 still unknown
    rep = import_paths([tmp_path / "in" / "patients2.csv"], s, now=NOW)
    assert [(r.path, r.accepted) for r in rep.retried] == [("s_week1.csv", 1)]
    led = s.imports().set_index("path").loc["s_week1.csv"]
    assert (led["accepted"], led["rejected"], led["duplicates"]) == (3, 1, 0)
    assert list(s.rejects()["reason"]) == ["out_of_range"]
    _balanced(s)
    # the same contents as importing patients first
    t = _store(tmp_path, "other.duckdb")
    import_paths([tmp_path / "in" / n for n in ("patients.csv", "patients2.csv", "s_week1.csv")],
                 t, now=NOW)  # fmt: skip
    _assert_same(_contents(s), _contents(t))


_REFERENCE: dict[str, dict[str, pd.DataFrame]] = {}


@pytest.mark.slow
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(list(FILES)))
def test_import_order_does_not_change_the_store(tmp_path_factory, order: list[str]) -> None:
    base = tmp_path_factory.mktemp("order")
    _write(base / "files", list(FILES))

    def run(batch: list[str], name: str) -> dict[str, pd.DataFrame]:
        s = _store(base, name)
        for f in batch:  # one file per run: the worst case for order
            import_paths([base / "files" / f], s, now=NOW)
        _balanced(s)
        return _contents(s)

    if "ref" not in _REFERENCE:
        _REFERENCE["ref"] = run(list(FILES), "ref.duckdb")
    _assert_same(_REFERENCE["ref"], run(order, "perm.duckdb"))


def test_a_failure_mid_file_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _store(tmp_path)
    _write(tmp_path / "in", ["patients.csv", "patients2.csv"])
    import_paths([tmp_path / "in"], s, now=NOW)
    before = _snapshot(s)
    archived = sorted(p.name for p in s.archive.root.iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(writer, "_insert_ledger", boom)  # after the rows were inserted
    (p,) = _write(tmp_path / "more", ["s_week1.csv"])
    with pytest.raises(OSError, match="injected"):
        import_paths([p], s, now=NOW)
    _assert_same(before, _snapshot(s))
    assert sorted(p.name for p in s.archive.root.iterdir()) == archived


def test_refuses_to_run_with_validation_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANDERA_VALIDATION_ENABLED", "False")
    s = _store(tmp_path)
    _write(tmp_path / "in", ["patients.csv"])
    with pytest.raises(ValidationDisabledError):
        import_paths([tmp_path / "in"], s)
    assert not s.path.exists()


def test_a_refused_file_gets_a_ledger_row(tmp_path: Path) -> None:
    s = _store(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    f = import_paths([tmp_path / "empty.csv"], s, now=NOW).files[0]
    assert (f.status, f.reason, f.balanced) == ("refused", "empty_file", True)
    led = s.imports()
    assert list(led["status"]) == ["refused"] and list(led["reason"]) == ["empty_file"]
    assert not s.archive.has(f.sha256)


def test_hidden_files_are_skipped_and_missing_paths_refused(tmp_path: Path) -> None:
    _write(tmp_path / "in", ["patients.csv"])
    (tmp_path / "in" / ".DS_Store").write_text("x")
    (tmp_path / "in" / ".git").mkdir()
    (tmp_path / "in" / ".git" / "x.csv").write_text(PATIENTS)
    assert [p.name for p in importer.expand_paths([tmp_path / "in"])] == ["patients.csv"]
    with pytest.raises(Exception, match="no such file"):
        importer.expand_paths([tmp_path / "missing"])


def test_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    s = _store(tmp_path)
    _write(tmp_path / "in", ["patients.csv", "patients2.csv"])
    import_paths([tmp_path / "in"], s, now=NOW)
    digest = hashlib.sha256(s.path.read_bytes()).hexdigest()
    _write(tmp_path / "new", ["s_week1.csv", "s_week1_2.csv"])
    rep = import_paths([tmp_path / "new"], s, dry_run=True, now=NOW)
    by = {f.path: f for f in rep.files}
    assert by["s_week1.csv"].status == "validated" and by["s_week1.csv"].accepted == 3
    assert by["s_week1_2.csv"].duplicates == 3  # sees the batch's earlier file
    assert hashlib.sha256(s.path.read_bytes()).hexdigest() == digest
    assert len(s.imports()) == 2
    # with no store at all, a dry run creates none
    t = _store(tmp_path, "none.duckdb")
    import_paths([tmp_path / "in"], t, dry_run=True)
    assert not t.path.exists() and not t.archive.root.exists()


def test_rebuild_from_the_raw_archive_gives_the_same_contents(tmp_path: Path) -> None:
    s = _store(tmp_path)
    _write(tmp_path / "in", list(FILES))
    for name in ["s_week1.csv", "patients.csv", "pain.csv", "patients2.csv", "s_edit.csv"]:
        import_paths([tmp_path / "in" / name], s, now=NOW)
    before = _contents(s)
    led = s.imports()
    rebuild(s)
    _assert_same(before, _contents(s))
    after = s.imports()
    assert list(after["path"]) == list(led["path"])
    pd.testing.assert_frame_equal(
        after[["accepted", "rejected", "duplicates"]], led[["accepted", "rejected", "duplicates"]]
    )
    assert s.path.with_name(s.path.name + ".bak").exists()


# -- crash safety ------------------------------------------------------------------------------

_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from backcare_analytics.config import Settings
from backcare_analytics.io import importer, writer
from backcare_analytics.store import Store
if {pause}:
    real = writer._insert_ledger
    def pausing(*a, **k):
        out = real(*a, **k)
        print("in-transaction", flush=True)
        time.sleep(60)
        return out
    writer._insert_ledger = pausing
print("start", flush=True)
store = Store({store!r}, settings=Settings(data_dir=Path({data!r})))
importer.import_paths([{path!r}], store)
print("done", flush=True)
"""


def _big_file(path: Path, rows: int) -> None:
    t = pd.date_range("2026-03-02T06:00Z", periods=rows, freq="min")
    df = pd.DataFrame({"patient_id": "P001", "performed_at": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "exercise": "bridge", "reps": 5, "hold_s": 15})  # fmt: skip
    df.to_csv(path, index=False)


def _child(tmp_path: Path, store: Store, path: Path, pause: bool) -> subprocess.Popen:
    code = _CHILD.format(tests=str(TESTS), pause=pause, store=str(store.path),
                         data=str(tmp_path / "data"), path=str(path))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_transaction_leaves_all_or_none(tmp_path: Path) -> None:
    s = _store(tmp_path, timeout=10)
    _write(tmp_path / "in", ["patients.csv"])
    import_paths([tmp_path / "in"], s, now=NOW)
    big = tmp_path / "big.csv"
    _big_file(big, 60_000)
    # 1. killed after the rows and rejects were written, before COMMIT: none of them
    proc = _child(tmp_path, s, big, pause=True)
    while (line := proc.stdout.readline().strip()) != "in-transaction":
        assert line, "child ended early"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(s.sessions()) == 0
    assert list(s.imports()["path"]) == ["patients.csv"]
    # 2. killed at arbitrary moments: all or none, and the store always opens
    counts = set()
    for delay in (0.3, 0.8, 1.5, 3.0):
        proc = _child(tmp_path, s, big, pause=False)
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        n = len(s.sessions())
        counts.add(n)
        assert n in (0, 60_000)
        assert (len(s.imports()) == 2) == (n == 60_000)
    # 3. the file imports whole afterwards (or was already in)
    import_paths([big], s)
    assert len(s.sessions()) == 60_000
    _balanced(s)


@pytest.mark.slow
def test_a_notebook_reader_does_not_block_an_import(tmp_path: Path) -> None:
    s = _store(tmp_path, timeout=20)
    _write(tmp_path / "in", ["patients.csv"])
    import_paths([tmp_path / "in"], s, now=NOW)
    reader = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from backcare_analytics.config import Settings
        from backcare_analytics.store import Store
        s = Store({str(s.path)!r}, settings=Settings(data_dir=Path({str(tmp_path / "data")!r}),
                  store_busy_timeout_s=20))
        seen = set()
        end = time.monotonic() + 4
        print("reading", flush=True)
        while time.monotonic() < end:
            seen.add(len(s.sessions()))  # one short read-only connection per call
        print(sorted(seen), flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.stdout.readline().strip() == "reading"
    big = tmp_path / "big.csv"
    _big_file(big, 20_000)
    f = import_paths([big], s).files[0]
    assert f.accepted == 20_000
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert set(eval(out.strip())) <= {0, 20_000}  # all or none, never half a file


def test_store_errors_are_not_swallowed(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.path.write_bytes(b"not a duckdb file")
    _write(tmp_path / "in", ["patients.csv"])
    with pytest.raises(StoreError, match="cannot open"):
        import_paths([tmp_path / "in"], s)


# -- the synthetic clinic, through the real readers and normalisation ------------------------


@pytest.mark.slow
def test_synthetic_clinic_quarantines_exactly_the_planted_rows(tmp_path: Path) -> None:
    from backcare_analytics.synth import simulate
    from backcare_analytics.synth.config import SynthConfig

    clinic = simulate(SynthConfig(patients=4, weeks=3, seed=11, bad_share=0.03))
    for name, data in clinic.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    truth = clinic.truth
    s = _store(tmp_path)
    rep = import_paths([tmp_path / n for n in clinic.files], s)  # in the truth's order
    assert all(f.balanced for f in rep.files)
    by_sha = {f["sha256"]: f for f in truth["files"]}
    led = s.imports()
    assert len(led) == len(truth["files"])
    for r in led.itertuples():
        want = by_sha[r.sha256]
        assert (r.rows_read, r.accepted, r.rejected, r.duplicates) == (
            want["rows_read"], want["accepted"], want["rejected"], want["duplicates"],
        ), r.path  # fmt: skip
    names = dict(zip(led["sha256"], led["path"], strict=True))
    rej = s.rejects()
    got = set(zip(rej["file_sha"].map(names), rej["row"].astype(int), rej["reason"], strict=True))
    want = {(b["file"].split("/")[-1], b["row"], b["reason"]) for b in truth["bad_rows"]}
    assert got == want and len(want) > 0
    # the store holds exactly what an ideal import stores
    for kind, key in (("sessions", ["patient_id", "performed_at", "exercise_id", "side"]),
                      ("pain", ["patient_id", "recorded_at"])):  # fmt: skip
        stored = getattr(s, kind)()
        expected = getattr(clinic, kind)[list(stored.columns)]
        pd.testing.assert_frame_equal(
            stored.sort_values(key).reset_index(drop=True),
            expected.sort_values(key).reset_index(drop=True),
        )
    pd.testing.assert_frame_equal(
        s.patients(), clinic.patients.sort_values("patient_id").reset_index(drop=True)
    )
    # reversed order, one file at a time: the same data (provenance aside)
    t = _store(tmp_path, "reversed.duckdb")
    for name in reversed(list(clinic.files)):
        import_paths([tmp_path / name], t)
    _balanced(t)
    _assert_same(_contents(s), _contents(t))


def test_a_patients_file_named_otherwise_still_registers_its_batch(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _write(folder, ["s_week1.csv"])
    (folder / "zz_registry.csv").write_text(PATIENTS + PATIENTS_2.splitlines()[1] + "\n")
    for dry in (True, False):
        s = _store(tmp_path, f"dry{dry}.duckdb")
        rep = import_paths([folder], s, dry_run=dry, now=NOW)
        f = {r.path: r for r in rep.files}["s_week1.csv"]
        assert (f.accepted, f.rejected, f.reject_reasons) == (3, 1, {"out_of_range": 1})
        assert f.balanced
    _balanced(s)
    assert len(s.sessions()) == 3


def test_the_store_and_its_archive_are_not_imported_as_exports(tmp_path: Path) -> None:
    _write(tmp_path, ["patients.csv"])
    s = Store(tmp_path / "clinic.duckdb", settings=Settings(data_dir=tmp_path / "data"))
    import_paths([tmp_path], s, now=NOW)
    rep = import_paths([tmp_path], s, now=NOW)  # the folder now holds the store and archive
    assert [(f.path, f.status) for f in rep.files] == [("patients.csv", "already_imported")]


def test_a_busy_store_mid_batch_says_which_files_were_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backcare_analytics.errors import StoreBusyError

    s = _store(tmp_path)
    _write(tmp_path / "in", ["patients.csv", "patients2.csv", "s_week1.csv"])
    real = writer._write_file

    def busy_on_sessions(ctx, prep):
        if prep.item.name == "s_week1.csv":
            raise StoreBusyError("store busy: held (injected)")
        return real(ctx, prep)

    monkeypatch.setattr(writer, "_write_file", busy_on_sessions)
    with pytest.raises(StoreBusyError, match="s_week1.csv and 0 later") as info:
        import_paths([tmp_path / "in"], s, now=NOW)
    assert [f.path for f in info.value.report.files] == ["patients.csv", "patients2.csv"]
    assert list(s.imports()["path"]) == ["patients.csv", "patients2.csv"]


# -- group commit ------------------------------------------------------------------------------


def test_a_failure_in_a_group_is_retried_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["patients.csv", "s_week1.csv", "pain.csv", "s_week1_2.csv", "s_edit.csv"]
    ref = _store(tmp_path, "ref.duckdb")
    import_paths(_write(tmp_path / "ref", names), ref, now=NOW)
    real, seen = writer._write_in, []

    def fails_in_a_group(ctx, con, prep, merged=None):
        seen.append((prep.item.name, merged is not None))
        if merged is not None and prep.item.name == "pain.csv":
            raise OSError("disk full (injected)")
        return real(ctx, con, prep, merged)

    monkeypatch.setattr(writer, "_write_in", fails_in_a_group)
    s = _store(tmp_path)
    rep = import_paths(_write(tmp_path / "in", names), s, now=NOW)
    assert ("s_week1.csv", True) in seen and ("s_week1.csv", False) in seen  # grouped, retried
    assert [f.status for f in rep.files] == ["imported"] * len(names)
    _assert_same(_snapshot(ref), _snapshot(s))
    assert sorted(p.name for p in s.archive.root.iterdir()) == sorted(
        p.name for p in ref.archive.root.iterdir()
    )
    _balanced(s)


@pytest.mark.slow
def test_synthetic_clinic_in_groups_equals_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import asdict

    from backcare_analytics.synth import generate_clinic
    from backcare_analytics.synth.config import SynthConfig

    generate_clinic(SynthConfig(patients=4, weeks=8, seed=11), tmp_path / "c")
    grouped, single = _store(tmp_path, "a.duckdb"), _store(tmp_path, "b.duckdb")
    ra = import_paths([tmp_path / "c" / "exports"], grouped, now=NOW)
    monkeypatch.setattr(importer, "GROUP_MAX_FILES", 1)
    rb = import_paths([tmp_path / "c" / "exports"], single, now=NOW)
    assert rb.totals["duplicates"] > 0  # re-exports overlap earlier files of the group
    assert [asdict(f) for f in ra.files] == [asdict(f) for f in rb.files]
    _assert_same(_snapshot(grouped), _snapshot(single))


@pytest.mark.slow
def test_synthetic_clinic_staged_in_a_worker_process_equals_in_process(tmp_path: Path) -> None:
    from dataclasses import asdict

    from backcare_analytics.synth import generate_clinic
    from backcare_analytics.synth.config import SynthConfig

    generate_clinic(SynthConfig(patients=3, weeks=4, seed=5), tmp_path / "c")
    worker, local = _store(tmp_path, "a.duckdb"), _store(tmp_path, "b.duckdb")
    ra = import_paths([tmp_path / "c" / "exports"], worker, now=NOW, workers=1)
    assert len(importer.LAST_WORKER_USAGE) == 1  # staged in one worker process
    rb = import_paths([tmp_path / "c" / "exports"], local, now=NOW, workers=0)
    assert len(importer.LAST_WORKER_USAGE) == 0  # the last run had no worker process
    assert [asdict(f) for f in ra.files] == [asdict(f) for f in rb.files]
    _assert_same(_snapshot(worker), _snapshot(local))


def test_a_group_writes_the_ledger_as_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit collects ledger rows and rejects and writes them once: the same ledger
    (sequence numbers included) and quarantine as one transaction per file, also when a
    file of the group was refused before (its old ledger row is replaced)."""
    names = ["patients.csv", "s_week1.csv", "pain.csv", "s_week1_2.csv", "s_edit.csv"]

    def run(name: str) -> Store:
        s = _store(tmp_path, name)
        files = _write(tmp_path / name.replace(".", "_"), names)
        tight = Settings(data_dir=tmp_path / "data", max_file_bytes=len(PAIN) - 1)
        refused = import_paths([files[2]], s, now=NOW, settings=tight).files[0]
        assert refused.status == "refused"
        import_paths(files, s, now=NOW)
        return s

    grouped = run("a.duckdb")
    monkeypatch.setattr(importer, "GROUP_MAX_FILES", 1)
    single = run("b.duckdb")
    _assert_same(_snapshot(grouped), _snapshot(single))
    led = grouped.imports()
    assert list(led["seq"]) == [2, 3, 4, 5, 6] and (led["status"] == "imported").all()
    assert len(grouped.rejects()) > 0


@pytest.mark.slow
def test_a_refused_file_staged_in_a_worker_process(tmp_path: Path) -> None:
    """A reader's refusal comes back from a worker process with its reason (the exception
    itself may not survive pickling)."""
    files = _write(tmp_path / "in", ["patients.csv", "patients2.csv", "s_week1.csv"])
    (tmp_path / "in" / "z_empty.csv").write_text("")
    rep = import_paths([tmp_path / "in"], _store(tmp_path), now=NOW, workers=1)
    assert len(importer.LAST_WORKER_USAGE) == 1
    by = {f.path: f for f in rep.files}
    assert (by["z_empty.csv"].status, by["z_empty.csv"].reason) == ("refused", "empty_file")
    assert by[files[2].name].accepted == 3


def test_a_worker_that_cannot_start_falls_back_to_staging_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import Executor, Future
    from concurrent.futures.process import BrokenProcessPool

    class Broken(Executor):
        def submit(self, fn, /, *args, **kwargs):
            fut: Future = Future()
            fut.set_exception(BrokenProcessPool("injected"))
            return fut

    names = ["patients.csv", "s_week1.csv", "pain.csv", "s_week1_2.csv", "s_edit.csv"]
    ref = _store(tmp_path, "ref.duckdb")
    import_paths(_write(tmp_path / "ref", names), ref, now=NOW, workers=0)
    real = importer._make_pool
    monkeypatch.setattr(importer, "_make_pool", lambda ctx, n: Broken() if n else real(ctx, n))
    monkeypatch.setattr(importer, "_pool_workers", lambda workers, items: 1)
    s = _store(tmp_path)
    rep = import_paths(_write(tmp_path / "in", names), s, now=NOW, workers=1)
    assert [f.status for f in rep.files] == ["imported"] * len(names)
    _assert_same(_snapshot(ref), _snapshot(s))


def test_a_worker_whose_process_cannot_be_spawned_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real pool, failing when it starts its process (as with an over-long socket path or
    in a sandbox): the import goes on in this process instead of ending with a traceback."""
    from concurrent.futures import ProcessPoolExecutor

    def refuse(self, *args, **kwargs):
        raise OSError("AF_UNIX path too long")

    monkeypatch.setattr(ProcessPoolExecutor, "_adjust_process_count", refuse)
    names = ["patients.csv", "s_week1.csv", "pain.csv"]
    ref = _store(tmp_path, "ref.duckdb")
    import_paths(_write(tmp_path / "ref", names), ref, now=NOW, workers=0)
    s = _store(tmp_path)
    rep = import_paths(_write(tmp_path / "in", names), s, now=NOW, workers=1)
    assert [f.status for f in rep.files] == ["imported"] * len(names)
    _assert_same(_snapshot(ref), _snapshot(s))


def test_a_time_freed_by_an_edit_in_the_group_is_free_for_a_later_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File a moves stored session S1 from 07:15 to 08:00 (a later updated_at); file b, later
    in the same batch, logs a new session at 07:15 for the same exercise. One by one, b sees
    the time freed; in one group it must too (b waits a round), not be refused same_time."""
    seed = HEAD + "P001,2026-03-02T07:15:00+01:00,bridge,S1,5,15,3,2026-03-03T10:00:00Z\n"
    a_edit = HEAD + "P001,2026-03-02T08:00:00+01:00,bridge,S1,6,15,3,2026-03-04T10:00:00Z\n"
    b_new = HEAD + "P001,2026-03-02T07:15:00+01:00,bridge,S2,5,15,3,\n"

    def run(name: str) -> tuple[Store, list[tuple[str, int, int]]]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "patients.csv").write_text(PATIENTS)
        (folder / "seed.csv").write_text(seed)
        store = _store(tmp_path, f"{name}.duckdb")
        import_paths([folder / "patients.csv", folder / "seed.csv"], store, now=NOW)
        (folder / "a_edit.csv").write_text(a_edit)
        (folder / "b_new.csv").write_text(b_new)
        rep = import_paths([folder / "a_edit.csv", folder / "b_new.csv"], store, now=NOW)
        return store, [(f.path, f.accepted, f.rejected) for f in rep.files]

    grouped, got = run("grouped")
    monkeypatch.setattr(importer, "GROUP_MAX_FILES", 1)
    single, want = run("single")
    assert want == [("a_edit.csv", 1, 0), ("b_new.csv", 1, 0)]
    assert got == want
    assert sorted(grouped.sessions()["session_id"]) == ["S1", "S2"]
    _assert_same(_snapshot(grouped), _snapshot(single))
