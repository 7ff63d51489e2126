"""Benchmark of the pain, tolerance, progression and verdict metrics on a large synthetic cohort.

``python -m benchmarks.bench_pain_progression`` builds (seeded, in numpy) 10,000 patients x 26
weeks of clean sessions (~11 M rows) and diary (~1.8 M rows), then times each function once,
warm, in one process. Prints wall and CPU time (CPU time is less sensitive to other work on a shared machine), rows/s
and peak RSS; writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
SLOTS = [  # (exercise, side, reps, hold, level, variant)
    ("breathing", "none", 10, np.nan, None, None),
    ("knee_to_chest", "left", 10, np.nan, None, None),
    ("knee_to_chest", "right", 10, np.nan, None, None),
    ("bridge", "none", 4, 15.0, None, None),
    ("sciatic_floss", "left", 10, 3.0, None, None),
    ("sciatic_floss", "right", 10, 3.0, None, None),
    ("low_back_roll", "both", 10, np.nan, None, None),
    ("prone_press_up", "none", 3, 30.0, None, "prone"),
    ("mini_push_up", "none", 10, np.nan, "wall", None),
]


def build(patients: int = 10_000, weeks: int = 26, seed: int = 1):
    rng = np.random.default_rng(seed)
    days = weeks * 7
    start = np.datetime64("2026-01-05") + rng.integers(0, 7, patients).astype("timedelta64[D]")
    ids = np.array([f"P{i:06d}" for i in range(patients)], dtype=object)
    # Sessions: a day is done with probability 0.87; every exercise slot on a done day.
    done = rng.random((patients, days)) < 0.87
    pi, di = np.nonzero(done)
    k = len(SLOTS)
    rp, rd = np.repeat(pi, k), np.repeat(di, k)
    slot = np.tile(np.arange(k), pi.size)
    day = (start[rp] + rd.astype("timedelta64[D]")).astype("datetime64[us]")
    at = day + ((7 * 60 + 2 * slot + rng.integers(0, 40, rp.size)) * 60_000_000).astype(
        "timedelta64[us]"
    )
    gain = 1 + rd / days * rng.uniform(0, 1, patients)[rp]
    reps = np.array([s[2] for s in SLOTS])[slot] * np.where(np.isin(slot, [3, 7]), 1, 1)
    hold = np.array([s[3] for s in SLOTS])[slot] * np.where(slot == 3, gain, 1.0)
    pain_b = np.clip(np.rint(5 - 3 * rd / days + rng.normal(0, 1, rp.size)), 0, 10)
    pain_a = np.clip(pain_b + rng.integers(-1, 2, rp.size), 0, 10)
    sessions = pd.DataFrame(
        {
            "patient_id": pd.Series(ids[rp], dtype="str"),
            "session_id": pd.Series(None, index=range(rp.size), dtype="str"),
            "performed_at": pd.Series(at).dt.tz_localize("UTC"),
            "day": day,
            "exercise_id": pd.Series(
                np.array([s[0] for s in SLOTS], dtype=object)[slot], dtype="str"
            ),
            "side": pd.Series(np.array([s[1] for s in SLOTS], dtype=object)[slot], dtype="str"),
            "sets": pd.array(np.ones(rp.size, dtype=np.int64), dtype="Int64"),
            "reps": pd.array(reps.astype(np.int64), dtype="Int64"),
            "hold_s": pd.array(np.round(hold, 1), dtype="Float64"),
            "level": pd.Series(np.array([s[4] for s in SLOTS], dtype=object)[slot], dtype="str"),
            "variant": pd.Series(np.array([s[5] for s in SLOTS], dtype=object)[slot], dtype="str"),
            "pain_before": pd.array(pain_b.astype(np.int64), dtype="Int64"),
            "pain_after": pd.array(pain_a.astype(np.int64), dtype="Int64"),
            "note": pd.Series(None, index=range(rp.size), dtype="str"),
            "source_file": pd.Series("0" * 64, index=range(rp.size), dtype="str"),
        }
    )
    # Diary: one entry on 99 % of days.
    present = rng.random((patients, days)) < 0.99
    qi, qd = np.nonzero(present)
    dday = (start[qi] + qd.astype("timedelta64[D]")).astype("datetime64[us]")
    back = np.clip(
        np.rint(
            6 - 3 * qd / days * rng.uniform(0, 1.5, patients)[qi] + rng.normal(0, 0.8, qi.size)
        ),
        0,
        10,
    )
    leg = np.clip(back - 2 + rng.integers(-1, 2, qi.size), 0, 10)
    pain = pd.DataFrame(
        {
            "patient_id": pd.Series(ids[qi], dtype="str"),
            "recorded_at": pd.Series(dday + np.timedelta64(20, "h")).dt.tz_localize("UTC"),
            "day": dday,
            "back_pain": pd.array(back.astype(np.int64), dtype="Int64"),
            "leg_pain": pd.array(leg.astype(np.int64), dtype="Int64"),
            "flare": pd.array(np.zeros(qi.size, dtype=bool), dtype="boolean"),
            "note": pd.Series(None, index=range(qi.size), dtype="str"),
            "source_file": pd.Series("0" * 64, index=range(qi.size), dtype="str"),
        }
    )
    patients_df = pd.DataFrame(
        {
            "patient_id": pd.Series(ids, dtype="str"),
            "timezone": pd.Series("Europe/Amsterdam", index=range(patients), dtype="str"),
            "programme_start": start.astype("datetime64[us]"),
            "clinician": pd.Series(None, index=range(patients), dtype="str"),
        }
    )
    return sessions, pain, patients_df


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float | None:
    """VmHWM / VmRSS of this process from /proc (Linux), MiB; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so each function's own peak can be read."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(patients: int | None = None) -> dict:
    from backcare_analytics.metrics.pain import pain_daily, pain_summary
    from backcare_analytics.metrics.progression import (
        capacity_daily,
        capacity_weekly,
        progression_events,
        progression_flags,
    )
    from backcare_analytics.metrics.tolerance import session_tolerance
    from backcare_analytics.metrics.verdict import weekly_verdict

    n = patients or int(os.environ.get("BACKCARE_BENCH_PATIENTS", "10000"))
    t0 = time.perf_counter()
    sessions, pain, pts = build(n)
    built = time.perf_counter() - t0
    inputs_mib = sum(f.memory_usage(deep=False).sum() for f in (sessions, pain, pts)) / 2**20
    print(f"inputs {inputs_mib:,.0f} MiB; RSS after building {_status_mib('VmRSS') or 0:,.0f} MiB")
    print(f"built {len(sessions):,} session rows, {len(pain):,} diary rows in {built:.1f} s")
    figures: dict[str, dict] = {}

    def run(name: str, fn, rows: int):
        import gc

        gc.collect()
        base = _status_mib("VmRSS") or 0.0
        own_peak = _reset_peak()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        # The function's own peak above the RSS before it (inputs and earlier results).
        extra = (_status_mib("VmHWM") or 0.0) - base if own_peak else float("nan")
        out_mib = out.memory_usage(deep=False).sum() / 2**20
        figures[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rows_in": rows,
                         "rows_per_s": round(rows / wall), "rows_out": len(out),
                         "out_mib": round(out_mib), "peak_above_start_mib": round(extra),
                         "peak_rss_mib": round(_peak_rss_mib())}  # fmt: skip
        print(f"{name:<22} {wall:7.2f} s (cpu {cpu:6.2f} s) {rows / wall:>11,.0f} rows/s  out {len(out):>10,} rows "
              f"{out_mib:7,.0f} MiB  peak +{extra:6,.0f} MiB over {base:,.0f}")  # fmt: skip
        return out

    run("pain_summary", lambda: pain_summary(pain, pts), len(pain))
    run("pain_daily", lambda: pain_daily(pain, pts), len(pain))
    tol = run("session_tolerance", lambda: session_tolerance(sessions, pain), len(sessions))
    del tol  # the largest output: not kept while the rest run
    daily = run("capacity_daily", lambda: capacity_daily(sessions), len(sessions))
    weekly = run("capacity_weekly", lambda: capacity_weekly(daily), len(daily))
    run("progression_events", lambda: progression_events(weekly), len(weekly))
    run("progression_flags", lambda: progression_flags(sessions, pain), len(sessions))
    run("weekly_verdict", lambda: weekly_verdict(pain, sessions, pts), len(sessions) + len(pain))
    total = sum(f["wall_s"] for f in figures.values())
    total_cpu = sum(f["cpu_s"] for f in figures.values())
    load = os.getloadavg()
    result = {"patients": n, "session_rows": len(sessions), "diary_rows": len(pain),
              "inputs_mib": round(inputs_mib), "total_wall_s": round(total, 2), "total_cpu_s": round(total_cpu, 2), "peak_rss_mib": round(_peak_rss_mib()),
              "loadavg": load, "functions": figures}  # fmt: skip
    print(
        f"total {total:.1f} s wall, {total_cpu:.1f} s cpu; peak RSS {_peak_rss_mib():,.0f} MiB; load {load}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_pain_progression.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
