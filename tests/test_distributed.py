"""Whole-patient buckets: stable bucketing, and the Dask run agrees with the local pandas run."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from backcare_analytics.research import distributed as dist

needs_dask = pytest.mark.skipif(
    not dist.dask_available(),
    reason="the Dask engine is an optional extra: pip install 'backcare_analytics[dask]'",
)


def _toy_cohort(n_patients: int = 40, days: int = 30, seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.array([f"T{i:04d}" for i in range(n_patients)])
    pid = np.repeat(ids, days)
    day = np.tile(np.arange(days), n_patients)
    keep = rng.random(len(pid)) < 0.7
    sessions = pd.DataFrame(
        {
            "patient_id": pd.Series(pid[keep], dtype="str"),
            "day": pd.Timestamp("2026-01-05") + pd.to_timedelta(day[keep], unit="D"),
            "reps": pd.array(rng.integers(1, 12, keep.sum()), dtype="Int64"),
        }
    )
    pain = pd.DataFrame(
        {
            "patient_id": pd.Series(pid, dtype="str"),
            "day": pd.Timestamp("2026-01-05") + pd.to_timedelta(day, unit="D"),
            "back_pain": pd.array(rng.integers(0, 11, len(pid)), dtype="Int64"),
        }
    )
    return {"sessions": sessions, "pain": pain}


def _per_patient(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A vectorised per-patient computation standing in for the metric functions."""
    s, p = tables["sessions"], tables["pain"]
    week = (s["day"] - pd.Timestamp("2026-01-05")).dt.days // 7
    weekly = (
        s.assign(week=week)
        .groupby(["patient_id", "week"], as_index=False)
        .agg(days=("day", "nunique"), reps=("reps", "sum"))
    )
    pain = p.groupby("patient_id", as_index=False).agg(mean_pain=("back_pain", "mean"))
    return {"weekly": weekly, "pain": pain}


def test_bucket_is_stable_across_processes_and_whole_patient():
    ids = pd.Series([f"P{i:03d}" for i in range(200)])
    here = dist.patient_bucket(ids, 7).tolist()
    code = (
        "import pandas as pd; from backcare_analytics.research.distributed import patient_bucket;"
        "print(patient_bucket(pd.Series([f'P{i:03d}' for i in range(200)]), 7).tolist())"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert str(here) == there
    assert set(here) == set(range(7))


def test_buckets_hold_whole_patients(tmp_path):
    tables = _toy_cohort()
    dist.write_buckets(tables, tmp_path, 5)
    seen: dict[str, int] = {}
    total = 0
    for k in range(5):
        part = dist.read_bucket(tmp_path, k)
        for pid in part["sessions"]["patient_id"].unique():
            assert seen.setdefault(pid, k) == k
        assert set(part["sessions"]["patient_id"]) <= set(part["pain"]["patient_id"])
        total += len(part["sessions"])
    assert total == len(tables["sessions"])


def test_serial_buckets_agree_with_local(tmp_path):
    tables = _toy_cohort()
    dist.write_buckets(tables, tmp_path, 4)
    local = dist.run_local(tables, _per_patient)
    assert dist.same_results(local, dist.run_buckets(tmp_path, _per_patient, engine="serial")) == []
    # and the comparison does notice a difference
    broken = dict(local, pain=local["pain"].assign(mean_pain=local["pain"]["mean_pain"] + 0.01))
    assert dist.same_results(local, broken) == ["pain"]


@needs_dask
def test_dask_cluster_agrees_with_local(tmp_path):
    from distributed import Client, LocalCluster

    tables = _toy_cohort()
    dist.write_buckets(tables, tmp_path, 6)
    local = dist.run_local(tables, _per_patient)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = dist.run_buckets(tmp_path, _per_patient, client=client)
    assert dist.same_results(local, remote) == []


@pytest.fixture(scope="module")
def synthetic_clinic():
    from backcare_analytics import synth
    from backcare_analytics.synth.config import SynthConfig

    clinic = synth.simulate(SynthConfig(patients=30, weeks=6, seed=3))
    return clinic, {
        "sessions": clinic.sessions,
        "pain": clinic.pain,
        "patients": clinic.patients,
        "prescriptions": clinic.prescriptions,
    }


@pytest.mark.slow
@needs_dask
def test_synthetic_clinic_every_metric_agrees_on_dask(synthetic_clinic, tmp_path):
    from distributed import Client, LocalCluster

    from backcare_analytics.research.cohort import CohortPolicy

    clinic, tables = synthetic_clinic
    fn = dist.metrics_fn(
        dist.cohort_window(tables), CohortPolicy(programme_days=clinic.config.days)
    )
    pickle.loads(pickle.dumps(fn))  # shippable to worker processes of a real cluster
    local = dist.run_local(tables, fn)
    assert {"adherence_daily", "persistence", "cohort_summary"} <= set(local)
    dist.write_buckets(tables, tmp_path, 4)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = dist.run_buckets(tmp_path, fn, client=client)
    assert set(remote) == set(local)
    assert dist.same_results(local, remote) == []
    for name, frame in local.items():
        assert len(remote[name]) == len(frame), name
    # The research subset (what the benchmark runs) agrees too, written where it ran.
    research = dist.metrics_fn(fn.keywords["window"], fn.keywords["policy"], "research")
    counts = dist.run_buckets(tmp_path, research, engine="serial", out=tmp_path / "res")
    local_r = dist.run_local(tables, research)
    assert counts == {name: len(frame) for name, frame in local_r.items()}
    back = {name: pd.read_parquet(tmp_path / "res" / name) for name in local_r}
    assert dist.same_results(local_r, back) == []


def test_results_written_per_bucket_read_back_equal(tmp_path):
    tables = _toy_cohort()
    dist.write_buckets(tables, tmp_path / "in", 3)
    counts = dist.run_buckets(tmp_path / "in", _per_patient, engine="serial", out=tmp_path / "out")
    local = dist.run_local(tables, _per_patient)
    assert counts == {name: len(frame) for name, frame in local.items()}
    back = {name: pd.concat([dist.read_bucket(tmp_path / "out", k)[name] for k in range(3)])
            for name in local}  # fmt: skip
    assert dist.same_results(local, back) == []
