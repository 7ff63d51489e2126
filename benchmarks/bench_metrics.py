"""Benchmark: every metric for 10,000 patients x 26 weeks (issue 4).

Clean frames are generated with vectorised numpy (about 12 M session rows and 1.8 M diary rows;
not via the export files) in a child process and written to Parquet under
``benchmarks/results/cache/`` (reused by later runs), so the generator's temporaries do not count
in this process's peak memory; they are loaded as a store query would return them. Then every
metric runs once, warm (a small run first), through the metric registry's steps
(:func:`backcare_analytics.metrics.registry.plan_steps`, the same calls ``backcare metrics`` makes), keeping only the tables a later metric needs, as
the CLI writes each table and lets it go. Prints wall and CPU (user + system) time per metric,
the totals, peak RSS (and the RSS of the loaded frames alone), the load average, and writes JSON
to ``benchmarks/results/bench_metrics.json``.

The parallel mode (``--jobs 2``) runs :func:`backcare_analytics.metrics.run.metric_tables_parallel`
as ``backcare metrics --jobs 2`` does: each worker process reads one patient range from the
Parquet cache, computes every table and returns row counts (the tables are let go in the worker,
as the single-process mode lets go of those no later metric needs); it reports wall and CPU time
of the whole run (parent plus each worker's own ``getrusage``: workers are children of the
fork server, so ``RUSAGE_CHILDREN`` would not see them) and each worker's peak RSS (VmHWM).

Run: ``python -m benchmarks.bench_metrics [--patients N] [--weeks W] [--jobs J] [--partitions P..]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from backcare_analytics.metrics.registry import METRICS, MetricInputs, plan_steps, run_step
from backcare_analytics.metrics.run import metric_tables_parallel
from backcare_analytics.protocol import build_prescriptions, load_protocol

RESULTS = Path(__file__).resolve().parent / "results"
FRAMES = ("sessions", "pain", "patients", "prescriptions")
ZONES = ("Europe/Amsterdam", "Europe/London", "America/New_York", "Asia/Kolkata")
#: (exercise, side, reps, hold_s or nan) of the rows of one full session.
SLOTS = (
    ("breathing", "none", 10, np.nan),
    ("knee_to_chest", "left", 10, np.nan),
    ("knee_to_chest", "right", 10, np.nan),
    ("bridge", "none", 4, 15.0),
    ("sciatic_floss", "both", 10, 3.0),
    ("low_back_roll", "both", 10, np.nan),
    ("prone_press_up", "none", 3, 30.0),
    ("mini_push_up", "none", 10, np.nan),
)


def _file_hashes(patient: np.ndarray, day: np.ndarray, weeks: int) -> pd.Series:
    """A 64-hex "sha256" per patient-week (one export file a week), as the store holds."""
    names = pd.array([f"{i:064x}" for i in range((patient.max() + 1) * weeks)], dtype="str")
    return pd.Series(names.take(patient * weeks + day // 7))


def make_frames(patients: int = 10_000, weeks: int = 26, seed: int = 1) -> dict[str, pd.DataFrame]:
    """Clean sessions, pain, patients and prescriptions frames, fast (vectorised numpy)."""
    rng = np.random.default_rng(seed)
    n_days = weeks * 7
    pids = np.array([f"P{i:06d}" for i in range(patients)])
    start = pd.Timestamp("2026-01-05") + pd.to_timedelta(rng.integers(0, 7, patients), unit="D")
    zone = rng.integers(0, len(ZONES), patients)
    pts = pd.DataFrame(
        {
            "patient_id": pd.Series(pids, dtype="str"),
            "timezone": pd.Series(np.array(ZONES)[zone], dtype="str"),
            "programme_start": start.as_unit("us"),
            "clinician": pd.Series([None] * patients, dtype="str"),
        }
    )
    p_done = rng.beta(8, 1.5, patients)
    done = rng.random((patients, n_days)) < p_done[:, None]
    pp, dd = np.nonzero(done)
    day = start.to_numpy()[pp] + (dd * 86_400_000_000).astype("timedelta64[us]")
    hour = np.clip(rng.normal(7.0 + 10 * (zone[pp] == 1), 0.7), 0, 23.9)
    wall = day + (hour * 3.6e9).astype("timedelta64[us]")
    utc = np.empty(len(wall), dtype="datetime64[us]")
    for z, name in enumerate(ZONES):  # one conversion per zone
        sel = zone[pp] == z
        idx = pd.DatetimeIndex(wall[sel]).tz_localize(
            name, nonexistent="shift_forward", ambiguous=False
        )
        utc[sel] = idx.tz_convert("UTC").tz_localize(None).to_numpy()
    k = len(SLOTS)
    rows = np.repeat(np.arange(len(pp)), k)
    slot = np.tile(np.arange(k), len(pp))
    ex = np.array([s[0] for s in SLOTS])[slot]
    reps = np.array([s[2] for s in SLOTS])[slot] + rng.integers(-2, 3, len(rows))
    hold = np.array([s[3] for s in SLOTS])[slot]
    hold = hold + np.where(np.isnan(hold), 0, rng.normal(0, 2, len(rows)))
    performed = utc[rows] + (slot * 120_000_000).astype("timedelta64[us]")
    pain_b = rng.integers(0, 8, len(rows))
    sessions = pd.DataFrame(
        {
            "patient_id": pd.Series(pd.array(pids, dtype="str").take(pp[rows])),
            "session_id": pd.Series([None] * len(rows), dtype="str"),
            "performed_at": pd.DatetimeIndex(performed).tz_localize("UTC"),
            "day": day[rows],
            "exercise_id": pd.Series(ex, dtype="str"),
            "side": pd.Series(np.array([s[1] for s in SLOTS])[slot], dtype="str"),
            "sets": pd.array(np.ones(len(rows), dtype=np.int64), dtype="Int64"),
            "reps": pd.array(np.clip(reps, 0, None), dtype="Int64"),
            "hold_s": pd.array(np.clip(hold, 0, None), dtype="Float64"),
            "level": pd.Series(np.where(ex == "mini_push_up", "wall", None), dtype="str"),
            "variant": pd.Series(np.where(ex == "prone_press_up", "prone", None), dtype="str"),
            "pain_before": pd.array(pain_b, dtype="Int64"),
            "pain_after": pd.array(
                np.clip(pain_b + rng.integers(-2, 2, len(rows)), 0, 10), dtype="Int64"
            ),  # fmt: skip
            "note": pd.Series([None] * len(rows), dtype="str"),
            "source_file": _file_hashes(pp[rows], dd[rows], weeks),
        }
    )
    diary = rng.random((patients, n_days)) < 0.99
    qp, qd = np.nonzero(diary)
    dday = start.to_numpy()[qp] + (qd * 86_400_000_000).astype("timedelta64[us]")
    trend = 6 - 3 * qd / n_days
    pain = pd.DataFrame(
        {
            "patient_id": pd.Series(pd.array(pids, dtype="str").take(qp)),
            "recorded_at": pd.DatetimeIndex(dday + np.timedelta64(20, "h")).tz_localize("UTC"),
            "day": dday,
            "back_pain": pd.array(
                np.clip(np.rint(trend + rng.normal(0, 1, len(qp))), 0, 10).astype(np.int64),
                dtype="Int64",
            ),  # fmt: skip
            "leg_pain": pd.array(rng.integers(0, 5, len(qp)), dtype="Int64"),
            "flare": pd.array(np.zeros(len(qp), dtype=bool), dtype="boolean"),
            "note": pd.Series([None] * len(qp), dtype="str"),
            "source_file": _file_hashes(qp, qd, weeks),
        }
    )
    rx = build_prescriptions(pts, load_protocol())
    return {"sessions": sessions, "pain": pain, "patients": pts, "prescriptions": rx}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux ``clear_refs``); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    """This process's RSS high-water mark since the last reset (Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mib()


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cache(patients: int, weeks: int) -> Path:
    """The Parquet cache of the frames, generated in a child process when missing."""
    folder = RESULTS / "cache" / f"metrics_{patients}x{weeks}"
    if not all((folder / f"{n}.parquet").is_file() for n in FRAMES):
        subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_metrics", "--generate", str(folder),
             "--patients", str(patients), "--weeks", str(weeks)],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
    return folder


def _load(folder: Path, ids: tuple[str, str] | None) -> dict[str, pd.DataFrame]:
    """The frames, or only patients ``ids[0] <= patient_id <= ids[1]`` (row groups are in
    patient order, so a range reads only its own row groups)."""
    filters = None if ids is None else [("patient_id", ">=", ids[0]), ("patient_id", "<=", ids[1])]
    return {n: pd.read_parquet(folder / f"{n}.parquet", filters=filters) for n in FRAMES}


def _generate(folder: Path, patients: int, weeks: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in make_frames(patients, weeks).items():
        frame = frame.sort_values("patient_id", kind="stable")
        frame.to_parquet(folder / f"{name}.parquet", index=False, row_group_size=250_000)


def _needed_later() -> set[str]:
    """Table names that a later metric needs (kept; the rest are let go)."""
    return {need for spec in METRICS for need in spec.needs}


def _run_once(frames: dict[str, pd.DataFrame], acc: dict[str, Any]) -> None:
    """Every metric on one set of frames, adding wall/CPU/rows and the peak to ``acc``."""
    inputs = MetricInputs(**{n: frames[n] for n in FRAMES}, protocol=load_protocol())
    keep = _needed_later()
    tables: dict[str, Any] = {}
    for step in plan_steps():
        name = step.name
        _reset_peak()
        t, c = time.perf_counter(), _cpu_s()
        try:
            produced = run_step(step, inputs, tables)
        except Exception as exc:  # report, keep timing the others
            acc["failed"].append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        acc["wall_s"][name] = acc["wall_s"].get(name, 0.0) + time.perf_counter() - t
        acc["cpu_s"][name] = acc["cpu_s"].get(name, 0.0) + _cpu_s() - c
        acc["peak_rss_during_mib"][name] = max(
            acc["peak_rss_during_mib"].get(name, 0.0), _peak_mib()
        )
        rows = sum(len(v) for v in produced.values())
        acc["rows_out"][name] = acc["rows_out"].get(name, 0) + rows
        tables.update({k: v for k, v in produced.items() if k in keep})
        del produced
        gc.collect()


def run(patients: int, weeks: int, partitions: int = 1, *, verbose: bool = True) -> dict[str, Any]:
    """Time every metric on the cohort, whole (``partitions=1``) or one patient range at a
    time (the frames of a range loaded, computed, and let go before the next)."""
    folder = _cache(patients, weeks)
    ids = pd.read_parquet(folder / "patients.parquet", columns=["patient_id"])["patient_id"]
    ids = np.sort(ids.to_numpy(dtype=object))
    bounds = [(chunk[0], chunk[-1]) for chunk in np.array_split(ids, partitions) if len(chunk)]
    acc: dict[str, Any] = {"wall_s": {}, "cpu_s": {}, "rows_out": {}, "peak_rss_during_mib": {},
                           "failed": []}  # fmt: skip
    load_s, session_rows, diary_rows, rss_frames = 0.0, 0, 0, 0.0
    t_all, c_all = time.perf_counter(), _cpu_s()
    for bound in bounds:
        _reset_peak()
        t0 = time.perf_counter()
        frames = _load(folder, None if partitions == 1 else bound)
        load_s += time.perf_counter() - t0
        rss_frames = max(rss_frames, _peak_mib())
        session_rows += len(frames["sessions"])
        diary_rows += len(frames["pain"])
        _run_once(frames, acc)
        del frames
        gc.collect()
    total, total_cpu = time.perf_counter() - t_all, _cpu_s() - c_all
    if verbose:
        for name in acc["wall_s"]:
            print(f"  {name:<24} wall {acc['wall_s'][name]:6.2f} s  cpu {acc['cpu_s'][name]:6.2f} s"
                  f"  peak {acc['peak_rss_during_mib'][name]:6.0f} MiB"
                  f"  {acc['rows_out'][name]:>11,} rows", flush=True)  # fmt: skip
    peak = max([rss_frames, *acc["peak_rss_during_mib"].values()])
    return {
        "patients": patients,
        "weeks": weeks,
        "partitions": len(bounds),
        "session_rows": session_rows,
        "diary_rows": diary_rows,
        "load_s": load_s,
        "metrics_wall_s": total - load_s,
        "metrics_cpu_s": total_cpu,
        **acc,
        "peak_rss_mib": peak,
        "rss_after_frames_mib": rss_frames,
        "load_avg": os.getloadavg(),
        "cpus": os.cpu_count(),
    }


class ParquetRange:
    """A partition loader: the cached frames of patients ``lo <= patient_id <= hi``."""

    def __init__(self, folder: Path, lo: str, hi: str) -> None:
        self.folder, self.lo, self.hi = folder, lo, hi

    def __call__(self) -> dict[str, pd.DataFrame]:
        return _load(self.folder, (self.lo, self.hi))


def _worker_stats(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """In the worker: row counts of its tables, its CPU time and its peak RSS (VmHWM)."""
    return {
        "pid": os.getpid(),
        "rows_out": {name: len(frame) for name, frame in tables.items()},
        "cpu_s": _cpu_s(),
        "peak_rss_mib": _peak_mib(),
    }


def run_parallel(
    patients: int, weeks: int, jobs: int, partitions: int, tasks_per_worker: int | None = 1
) -> dict[str, Any]:
    """Every metric in ``jobs`` worker processes over ``partitions`` patient ranges, each
    worker reading its own range from the Parquet cache."""
    folder = _cache(patients, weeks)
    ids = pd.read_parquet(folder / "patients.parquet", columns=["patient_id"])["patient_id"]
    ids = np.sort(ids.to_numpy(dtype=object))
    chunks = [c for c in np.array_split(ids, partitions) if len(c)]
    loaders = [ParquetRange(folder, c[0], c[-1]) for c in chunks]
    load_before = os.getloadavg()
    t0, c0 = time.perf_counter(), _cpu_s()
    as_of = pd.read_parquet(folder / "sessions.parquet", columns=["day"])["day"].max()
    stats = metric_tables_parallel(
        loaders,
        jobs=jobs,
        as_of=as_of,
        reduce=_worker_stats,
        tasks_per_worker=tasks_per_worker,
    )
    wall = time.perf_counter() - t0
    assert isinstance(stats, list)
    # Workers are the fork server's children, not ours: RUSAGE_CHILDREN does not see them, so
    # each worker reports its own CPU time when its tables are done.
    children_cpu = sum(s["cpu_s"] for s in stats)
    rows: dict[str, int] = {}
    for s in stats:
        for name, n in s["rows_out"].items():
            rows[name] = rows.get(name, 0) + n
    return {
        "patients": patients,
        "weeks": weeks,
        "jobs": jobs,
        "partitions": len(loaders),
        "tasks_per_worker": tasks_per_worker,
        "session_rows": pq.ParquetFile(folder / "sessions.parquet").metadata.num_rows,
        "wall_s": wall,
        "parent_cpu_s": _cpu_s() - c0,
        "workers_cpu_s": children_cpu,
        "cpu_s": _cpu_s() - c0 + children_cpu,
        "parent_peak_rss_mib": _peak_mib(),
        "worker_peak_rss_mib": [round(s["peak_rss_mib"], 1) for s in stats],
        "worker_cpu_s": [round(s["cpu_s"], 2) for s in stats],
        "rows_out": rows,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
    }


def _summary_parallel(res: dict[str, Any]) -> str:
    return (
        f"{res['session_rows']:,} session rows, {res['jobs']} worker processes over "
        f"{res['partitions']} partitions (load + all metrics): wall {res['wall_s']:.1f} s, "
        f"cpu {res['cpu_s']:.1f} s (workers {res['workers_cpu_s']:.1f} s); peak RSS per worker "
        f"{max(res['worker_peak_rss_mib']):.0f} MiB (all: {res['worker_peak_rss_mib']}), parent "
        f"{res['parent_peak_rss_mib']:.0f} MiB; load before "
        f"{tuple(round(x, 2) for x in res['load_avg_before'])}, after "
        f"{tuple(round(x, 2) for x in res['load_avg_after'])} on {res['cpus']} cpus"
    )


def _summary(res: dict[str, Any]) -> str:
    return (
        f"{res['session_rows']:,} session rows, {res['diary_rows']:,} diary rows, "
        f"{res['partitions']} partition(s): all metrics wall {res['metrics_wall_s']:.1f} s "
        f"(+ {res['load_s']:.1f} s loading), cpu {res['metrics_cpu_s']:.1f} s; peak RSS "
        f"{res['peak_rss_mib']:.0f} MiB (frames loaded {res['rss_after_frames_mib']:.0f} MiB); "
        f"load {tuple(round(x, 2) for x in res['load_avg'])} on {res['cpus']} cpus"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time every metric on the full cohort, whole and in patient partitions, each mode in a
    fresh child process (so one mode's retained memory does not count in the next one's peak);
    print and save."""
    ap = argparse.ArgumentParser(prog="bench_metrics")
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--partitions", type=int, nargs="*", default=[1])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (0: no parallel run)")
    ap.add_argument("--jobs-partitions", type=int, default=8)
    ap.add_argument("--tasks-per-worker", type=int, default=1, help="0: no limit")
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv if argv is not None else [])
    if args.generate is not None:
        _generate(args.generate, args.patients, args.weeks)
        return {}
    if args.child is not None and args.jobs > 0:  # the parallel mode, from this process
        tasks = args.tasks_per_worker or None
        res = run_parallel(args.patients, args.weeks, args.jobs, args.jobs_partitions, tasks)
        args.child.write_text(json.dumps(res, default=str))
        return res
    if args.child is not None:  # one mode, warm, in this process
        run(200, 4, verbose=False)
        res = run(args.patients, args.weeks, args.partitions[0])
        args.child.write_text(json.dumps(res, default=str))
        return res
    _cache(args.patients, args.weeks)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.jobs > 0:
        print(f"{args.patients} patients x {args.weeks} weeks, {args.jobs} processes over "
              f"{args.jobs_partitions} partitions; load {os.getloadavg()}", flush=True)  # fmt: skip
        out = RESULTS / f"bench_metrics_jobs{args.jobs}.json"
        subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_metrics", "--patients", str(args.patients),
             "--weeks", str(args.weeks), "--jobs", str(args.jobs), "--jobs-partitions",
             str(args.jobs_partitions), "--tasks-per-worker", str(args.tasks_per_worker),
             "--child", str(out)],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        res = json.loads(out.read_text())
        print(_summary_parallel(res))
        results[f"jobs_{args.jobs}"] = res
    for parts in args.partitions:
        print(f"{args.patients} patients x {args.weeks} weeks, {parts} partition(s); "
              f"load {os.getloadavg()}", flush=True)  # fmt: skip
        out = RESULTS / f"bench_metrics_{parts}.json"
        subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_metrics", "--patients", str(args.patients),
             "--weeks", str(args.weeks), "--partitions", str(parts), "--jobs", "0",
             "--child", str(out)],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        res = json.loads(out.read_text())
        print(_summary(res))
        for line in res["failed"]:
            print("failed:", line)
        results[f"partitions_{parts}"] = res
    (RESULTS / "bench_metrics.json").write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
