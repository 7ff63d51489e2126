"""Benchmark: every metric for 10,000 patients x 26 weeks (issue 4).

Clean frames are generated with vectorised numpy (about 12 M session rows and 1.8 M diary rows;
not via the export files) in a child process and written to Parquet under
``benchmarks/results/cache/`` (reused by later runs), so the generator's temporaries do not count
in this process's peak memory; they are loaded as a store query would return them. Then every
metric runs once, warm (a small run first), through :func:`backcare_analytics.metrics.run.metric_calls`
(the same calls ``backcare metrics`` makes), keeping only the tables a later metric needs, as
the CLI writes each table and lets it go. Prints wall and CPU (user + system) time per metric,
the totals, peak RSS (and the RSS of the loaded frames alone), the load average, and writes JSON
to ``benchmarks/results/bench_metrics.json``. The pain/tolerance/progression/verdict families
are included when their modules import; the output says which ran.

Run: ``python -m benchmarks.bench_metrics [--patients N] [--weeks W]``.
"""

from __future__ import annotations

import argparse
import gc
import inspect
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

from backcare_analytics.metrics.run import metric_calls
from backcare_analytics.protocol import build_prescriptions, load_protocol

RESULTS = Path(__file__).resolve().parent / "results"
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


def _cached_frames(patients: int, weeks: int) -> dict[str, pd.DataFrame]:
    """Load the frames from the Parquet cache, generating them in a child process first."""
    folder = RESULTS / "cache" / f"metrics_{patients}x{weeks}"
    names = ("sessions", "pain", "patients", "prescriptions")
    if not all((folder / f"{n}.parquet").is_file() for n in names):
        subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_metrics", "--generate", str(folder),
             "--patients", str(patients), "--weeks", str(weeks)],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
    return {n: pd.read_parquet(folder / f"{n}.parquet") for n in names}


def _generate(folder: Path, patients: int, weeks: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in make_frames(patients, weeks).items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)


def _needed_later(calls: list[tuple[str, Any]]) -> set[str]:
    """Table names that a later call takes as a parameter (kept; the rest are let go)."""
    from backcare_analytics.metrics import run as runner

    names = {"adherence_daily"}
    for family in runner.OTHER_FAMILIES:
        try:
            module = __import__(f"backcare_analytics.metrics.{family}", fromlist=["_"])
        except Exception:  # a missing family needs nothing
            continue
        for fname in getattr(module, "__all__", ()):
            fn = getattr(module, fname, None)
            if inspect.isfunction(fn):
                names |= set(inspect.signature(fn).parameters)
    return names


def run(patients: int, weeks: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    frames = _cached_frames(patients, weeks)
    load_s = time.perf_counter() - t0
    rss_frames = _rss_mib()
    calls, missing = metric_calls(
        frames["sessions"], frames["pain"], frames["patients"], frames["prescriptions"]
    )
    keep = _needed_later(calls)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    sizes: dict[str, int] = {}
    peaks: dict[str, float] = {}
    tables: dict[str, Any] = {}
    failed: list[str] = []
    t_all, c_all = time.perf_counter(), _cpu_s()
    for name, call in calls:
        _reset_peak()
        t, c = time.perf_counter(), _cpu_s()
        try:
            out = call(tables)
        except Exception as exc:  # report, keep timing the others
            failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        wall[name], cpu[name] = time.perf_counter() - t, _cpu_s() - c
        peaks[name] = _peak_mib()
        produced = out if isinstance(out, dict) else {name: out}
        sizes[name] = sum(len(v) for v in produced.values())
        tables.update({k: v for k, v in produced.items() if k in keep})
        del out, produced
        gc.collect()
        print(f"  {name:<24} wall {wall[name]:6.2f} s  cpu {cpu[name]:6.2f} s  "
              f"peak {peaks[name]:6.0f} MiB  {sizes[name]:>11,} rows", flush=True)  # fmt: skip
    total, total_cpu = time.perf_counter() - t_all, _cpu_s() - c_all
    return {
        "patients": patients,
        "weeks": weeks,
        "session_rows": len(frames["sessions"]),
        "diary_rows": len(frames["pain"]),
        "load_s": load_s,
        "metrics_wall_s": total,
        "metrics_cpu_s": total_cpu,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_out": sizes,
        "peak_rss_during_mib": peaks,
        "peak_rss_mib": max([_rss_mib() if not peaks else 0.0, *peaks.values(), rss_frames]),
        "rss_after_frames_mib": rss_frames,
        "not_included": missing,
        "failed": failed,
        "load_avg": os.getloadavg(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Warm up on 200 patients, then time every metric on the full cohort; print and save."""
    ap = argparse.ArgumentParser(prog="bench_metrics")
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv if argv is not None else [])
    if args.generate is not None:
        _generate(args.generate, args.patients, args.weeks)
        return {}
    print("warm-up (200 patients x 4 weeks)")
    run(200, 4)
    print(f"benchmark: {args.patients} patients x {args.weeks} weeks (load {os.getloadavg()})")
    res = run(args.patients, args.weeks)
    print(
        f"{res['session_rows']:,} session rows, {res['diary_rows']:,} diary rows; all metrics "
        f"wall {res['metrics_wall_s']:.1f} s, cpu {res['metrics_cpu_s']:.1f} s; peak RSS "
        f"{res['peak_rss_mib']:.0f} MiB (frames alone {res['rss_after_frames_mib']:.0f} MiB); "
        f"load {tuple(round(x, 2) for x in res['load_avg'])} on {res['cpus']} cpus"
    )
    for line in res["failed"]:
        print("failed:", line)
    if res["not_included"]:
        print("not included (module missing or failed to import):", ", ".join(res["not_included"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_metrics.json").write_text(json.dumps(res, indent=2, default=str))
    return res


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
