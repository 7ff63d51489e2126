"""Weekly HTML reports for a 200-patient clinic: warm kernels on both cores vs the naive way.

The fast path is ``backcare report weekly`` (:func:`backcare_analytics.reports.batch.render_week`,
``jobs=2``): two worker processes, each with one warm Jupyter kernel, the week's metrics
computed once per kernel. The naive way runs the ``papermill`` command line and then
``jupyter nbconvert --to html --no-input`` per patient, measured on a sample of patients in the
same run (same machine, same load). Target: < 0.5 s a patient amortised, >= 20x faster.

The clinic is :func:`backcare_analytics.synth.simulate` (200 patients x 8 weeks, seed 7); its
clean tables are written straight into a DuckDB store (the importer has its own benchmark), kept
in ``build/bench_reports/`` between runs. Results go to ``benchmarks/results/bench_reports.json``.

Run: ``python -m benchmarks.bench_reports`` (about 3-5 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench_reports"
RESULTS = ROOT / "benchmarks" / "results"
PATIENTS, WEEKS, SEED = 200, 8, 7
NAIVE_SAMPLE = 5


def _write_store(path: Path) -> None:
    """The simulated clinic's clean tables, inserted into a new store in one transaction."""
    from backcare_analytics.store import Store
    from backcare_analytics.synth import SynthConfig, simulate

    clinic = simulate(SynthConfig(patients=PATIENTS, weeks=WEEKS, seed=SEED))
    store = Store(path)
    columns = {
        "patients": "patient_id, timezone, programme_start, clinician",
        "sessions": "patient_id, session_id, performed_at, day, exercise_id, side, sets, reps, "
        "hold_s, level, variant, pain_before, pain_after, note, source_file",
        "pain": "patient_id, recorded_at, day, back_pain, leg_pain, flare, note, source_file",
    }
    with store.transaction() as con:
        for name, cols in columns.items():
            con.register("incoming", getattr(clinic, name))
            extra = ", source_file" if name == "patients" else ""
            value = ", 'synthetic'" if name == "patients" else ""
            con.execute(f"INSERT INTO {name} ({cols}{extra}) SELECT {cols}{value} FROM incoming")
            con.unregister("incoming")


def _store() -> Path:
    path = WORK / f"clinic_{PATIENTS}x{WEEKS}_s{SEED}.duckdb"
    if not path.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        _write_store(path)
    return path


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children (workers and,
    through them, their kernels)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _fast(store: Path, week: str, out: Path) -> dict[str, object]:
    from backcare_analytics.reports.batch import render_week

    t0, c0 = time.perf_counter(), _cpu()
    summary = render_week(store, week, formats=("html",), out=out, jobs=2, clinic=False)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    per = [r.seconds for r in summary.results if r.ok]
    n = max(1, len(summary.results))
    return {
        "cpu_s": round(cpu, 1),
        "cpu_s_per_patient": round(cpu / n, 3),
        "patients": len(summary.results),
        "failed": len(summary.failed),
        "wall_s": round(wall, 2),
        "per_patient_amortised_s": round(wall / max(1, len(summary.results)), 3),
        "per_patient_in_worker_median_s": round(statistics.median(per), 3) if per else None,
        "reports_per_s": round(len(per) / wall, 2),
    }


def _naive(store: Path, week: str, patients: list[str], out: Path) -> dict[str, object]:
    template = ROOT / "notebooks" / "templates" / "weekly_patient_report.ipynb"
    bin_dir = Path(sys.executable).parent
    times = []
    c0 = _cpu()
    for pid in patients:
        executed = out / f"{pid}.ipynb"
        t0 = time.perf_counter()
        subprocess.run(
            [str(bin_dir / "papermill"), str(template), str(executed), "-p", "patient_id", pid,
             "-p", "week", week, "-p", "store", str(store), "--cwd", str(ROOT), "-k", "python3",
             "--no-progress-bar"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [str(bin_dir / "jupyter"), "nbconvert", "--to", "html", "--no-input",
             str(executed)],
            check=True, capture_output=True,
        )  # fmt: skip
        times.append(time.perf_counter() - t0)
    return {
        "patients": len(patients),
        "cpu_s_per_patient": round((_cpu() - c0) / len(patients), 2),
        "per_patient_median_s": round(statistics.median(times), 2),
        "per_patient_s": [round(t, 2) for t in times],
    }


def main() -> dict[str, object]:
    """Build (or reuse) the 200-patient store, time both ways, print and save the figures."""
    from backcare_analytics.reports.batch import week_patients
    from backcare_analytics.reports.context import resolve_week

    store = _store()
    week = resolve_week(store, "latest")
    ids = week_patients(store, week)
    load_before = _load()
    tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    try:
        fast = _fast(store, week, tmp / "fast")
        load_mid = _load()
        naive = _naive(store, week, ids[:NAIVE_SAMPLE], tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rss_mib = (
        max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        / 1024
    )
    speedup = naive["per_patient_median_s"] / fast["per_patient_amortised_s"]  # type: ignore[operator]
    result = {
        "benchmark": "reports",
        "clinic": {"patients": PATIENTS, "weeks": WEEKS, "seed": SEED, "week": week},
        "fast_warm_kernels_2_jobs": fast,
        "naive_papermill_nbconvert_cli": naive,
        "speedup": round(speedup, 1),
        "peak_rss_mib_largest_process": round(rss_mib, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after_fast": load_mid,
        "load_avg_after": _load(),
    }
    print(
        f"reports: {fast['patients']} weekly HTML reports in {fast['wall_s']} s on 2 warm "
        f"kernels = {fast['per_patient_amortised_s']} s a patient amortised "
        f"({fast['failed']} failed; {fast['cpu_s_per_patient']} CPU-s a patient); naive "
        f"papermill+nbconvert CLI {naive['per_patient_median_s']} s a patient (median of "
        f"{naive['patients']}; {naive['cpu_s_per_patient']} CPU-s); "
        f"speed-up {result['speedup']}x; peak RSS {result['peak_rss_mib_largest_process']} MiB; "
        f"load {load_before} -> {result['load_avg_after']}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_reports.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
