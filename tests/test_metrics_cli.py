"""`backcare metrics` end to end on a small store, and formula neutralisation of CSV output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _adherence_frames import full_routine, pain, patients, sessions

from backcare_analytics import metrics as m
from backcare_analytics.cli import main
from backcare_analytics.metrics import run
from backcare_analytics.safety import FORMULA_TRIGGERS, neutralise_formulas, write_csv
from backcare_analytics.store import Store, merge_rows

SHA = "b" * 64
WEEK = [f"2026-03-0{i}" for i in range(2, 9)]


def _with_rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["_row"] = np.arange(2, len(out) + 2)
    out["updated_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    path = tmp_path_factory.mktemp("store") / "clinic.duckdb"
    pts = patients({"P1": "2026-03-02", "P2": "2026-03-04"}, tz="Europe/Amsterdam")
    rows = full_routine("P1", WEEK[:5]) + full_routine("P2", ["2026-03-04", "2026-03-09"])
    ses = sessions(rows)
    diary = pain({"P1": WEEK, "P2": ["2026-03-05"]})
    st = Store(path)
    with st.transaction() as con:
        for kind, frame in (("patients", pts), ("sessions", ses), ("pain", diary)):
            res = merge_rows(con, kind, _with_rows(frame.drop(columns=[], errors="ignore")), SHA)
            assert res.accepted == len(frame)
        con.execute(
            "INSERT INTO rejects VALUES (?, 'sessions', 7, 'reps', 'bad_number', NULL, ?)",
            [SHA, '{"patient_id": "P1", "reps": "lots"}'],
        )
    return path, {"sessions": ses, "pain": diary, "patients": pts}


def test_metrics_command_writes_every_table(store, tmp_path: Path) -> None:
    path, frames = store
    out = tmp_path / "out"
    assert main(["metrics", "--store", str(path), "--out", str(out), "--week", "2026-W10"]) == 0
    for name in ("adherence_daily", "adherence_summary", "adherence_weekly", "adherence_rolling",
                 "adherence_streaks", "persistence", "gap_histogram", "first_session_times",
                 "timing_consistency", "quality_flags"):  # fmt: skip
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    # Parquet holds exactly what the function returns on the same frames.
    st = Store(path)
    expected = m.adherence_daily(
        st.sessions(), st.prescriptions(), st.patients(), window=m.Window.iso_week("2026-W10")
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out / "adherence_daily.parquet"), expected)
    summary = pd.read_csv(out / "adherence_summary.csv")
    routine = summary[(summary.patient_id == "P1") & (summary.exercise_id == m.ROUTINE)].iloc[0]
    assert (routine.days, routine.days_met, routine.period) == (7, 5, "2026-W10")
    flags = pd.read_parquet(out / "quality_flags.parquet")
    q = flags[flags.flag == "quarantined_rows"]
    assert q.patient_id.tolist() == ["P1"]
    assert "sessions_after_window" in set(flags[flags.patient_id == "P2"].flag)


def test_metrics_command_one_patient(store, tmp_path: Path) -> None:
    path, _ = store
    out = tmp_path / "one"
    assert main(["metrics", "--store", str(path), "--out", str(out), "--patient", "P2"]) == 0
    daily = pd.read_parquet(out / "adherence_daily.parquet")
    assert set(daily.patient_id) == {"P2"}
    assert set(pd.read_parquet(out / "persistence.parquet").patient_id) == {"P2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2026-10"], "--week"),
        (["--patient", "NOBODY"], "not registered"),
    ],
)
def test_metrics_command_refuses_bad_arguments(store, tmp_path, capsys, args, message) -> None:
    path, _ = store
    assert main(["metrics", "--store", str(path), "--out", str(tmp_path / "x"), *args]) == 1
    assert message in capsys.readouterr().err


def test_metrics_command_without_store(tmp_path: Path, capsys) -> None:
    code = main(["metrics", "--store", str(tmp_path / "none.duckdb"), "--out", str(tmp_path)])
    assert code == 1 and "no store there" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# whole-patient partitions in worker processes (backcare_analytics.metrics.run)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clinic() -> dict[str, pd.DataFrame]:
    from backcare_analytics.synth import SynthConfig, simulate

    c = simulate(SynthConfig(patients=24, weeks=6, seed=11))
    return {n: getattr(c, n) for n in run.FRAMES}


def _assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert list(a) == list(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_partitions_in_two_processes_equal_the_single_process_run(clinic) -> None:
    f = clinic
    # Patients stop logging on different days, so the cohort's as-of day is not every
    # partition's last day (persistence and gap_histogram must still agree).
    ids = sorted(f["patients"]["patient_id"])
    early = f["sessions"]["patient_id"].isin(ids[:8]) & (
        f["sessions"]["day"] > f["sessions"]["day"].min() + pd.Timedelta(days=15)
    )
    f = {**f, "sessions": f["sessions"][~early].reset_index(drop=True)}
    rejects = pd.DataFrame({"patient_id": pd.Series([ids[3]], dtype="str"), "n_rejected": [2]})
    whole = run.metric_tables(*(f[n] for n in run.FRAMES), rejects=rejects)
    assert {"adherence_daily", "persistence", "gap_histogram", "weekly_verdict"} <= set(whole)
    as_of = f["sessions"]["day"].max()
    loaders = [run.FramesPartition(f, tuple(r)) for r in run.patient_ranges(ids, 3)]
    assert len(loaders) == 3
    par = run.metric_tables_parallel(loaders, jobs=2, rejects=rejects, as_of=as_of)
    assert isinstance(par, dict)
    _assert_same_tables(whole, par)
    week = m.Window.iso_week("2026-W04")  # with a window, as_of is not needed
    serial = run.metric_tables_parallel(loaders, jobs=1, window=week)
    _assert_same_tables(run.metric_tables(*(f[n] for n in run.FRAMES), window=week), serial)


def test_partitions_read_from_the_store_equal_the_single_process_run(store) -> None:
    path, _ = store
    st = Store(path)
    one = run.metric_tables_from_store(st, jobs=1)
    two = run.metric_tables_from_store(st, jobs=2, partitions=2)
    _assert_same_tables(one, two)


def test_metrics_command_with_two_jobs(store, tmp_path: Path) -> None:
    path, _ = store
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["metrics", "--store", str(path), "--out", str(a), "--jobs", "1"]) == 0
    assert main(["metrics", "--store", str(path), "--out", str(b), "--jobs", "2"]) == 0
    for name in ("adherence_daily", "persistence", "gap_histogram", "quality_flags"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(a / f"{name}.parquet"), pd.read_parquet(b / f"{name}.parquet")
        )


# --------------------------------------------------------------------------------------------
# formula neutralisation (backcare_analytics.safety)
# --------------------------------------------------------------------------------------------


def test_every_trigger_is_neutralised_and_nothing_else() -> None:
    cells = [f"{t}cmd" for t in FORMULA_TRIGGERS] + ["ok", "a=b", "", None, "'quoted"]
    df = pd.DataFrame(
        {
            "text": pd.Series(cells, dtype="str"),
            "obj": pd.Series([*cells[:-2], 3, -4], dtype=object),
            "num": np.arange(len(cells)) - 5,
        }
    )
    before = df.copy()
    out = neutralise_formulas(df)
    pd.testing.assert_frame_equal(df, before)  # input unchanged
    expect = ["'" + c for c in cells[: len(FORMULA_TRIGGERS)]]
    assert out["text"].tolist()[: len(FORMULA_TRIGGERS)] == expect
    assert out["text"].tolist()[len(FORMULA_TRIGGERS) : -2] == ["ok", "a=b", ""]
    assert out["obj"].tolist()[-2:] == [3, -4]  # non-text cells in object columns untouched
    assert out["num"].tolist() == df["num"].tolist()
    assert out["text"].dtype == df["text"].dtype


def test_write_csv_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame({"detail": ['=HYPERLINK("http://x")', "+1", "fine"], "n": [-1, 0, 1]})
    back = pd.read_csv(write_csv(df, tmp_path / "t.csv"), dtype=str, keep_default_na=False)
    assert back["detail"].tolist() == ['\'=HYPERLINK("http://x")', "'+1", "fine"]
    assert back["n"].tolist() == ["-1", "0", "1"]
