"""Benchmark: cohort metrics for 10,000 patients x 26 weeks, local pandas against Dask (issue 6).

The cohort (about 12 M session rows; the vectorised generator of ``bench_metrics``) is written
once as Parquet in whole-patient buckets. Then, warm and in separate processes so peak memory is
each one's own:

* **local**: one process reads every table (pyarrow) and runs the metric functions on the whole
  cohort in memory;
* **dask**: a ``distributed`` local cluster of 2 worker processes (1 thread each) runs the same
  functions per bucket (``dask.delayed`` per bucket file, no shuffle), each worker writing its
  results as Parquet beside the input.

Printed and written to ``benchmarks/results/bench_research.json``: wall time, rows/s, peak RSS of
the local process, of each worker and of the Dask client; row counts of both runs (they must
match); a linear projection to 10^5 patients; the machine's load average.

Run: ``python -m benchmarks.bench_research [--patients N] [--weeks W] [--buckets B]
[--metrics research|all]``. ``research`` (default): adherence summary, persistence, pain summary
and the cohort tables; ``all``: every metric table of ``metrics.run`` as well (much longer).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
TABLES = ("sessions", "pain", "patients", "prescriptions")


def _maxrss_mib() -> float:
    """Peak resident memory of this process since it started (``VmHWM``; unlike ``ru_maxrss``
    it is not inherited from the parent across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_job(folder: str, patients: int, weeks: int, buckets: int) -> dict[str, Any]:
    """In a fresh process: generate the cohort and write it as whole-patient buckets."""
    from backcare_analytics.research import distributed as dist
    from benchmarks.bench_metrics import make_frames

    t0 = time.perf_counter()
    frames = make_frames(patients, weeks)
    gen_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    dist.write_buckets(frames, folder, buckets)
    return {
        "generate_s": gen_s,
        "write_buckets_s": time.perf_counter() - t1,
        "window": dist.cohort_window(frames),
        "session_rows": len(frames["sessions"]),
        "diary_rows": len(frames["pain"]),
    }


def _local_job(folder: str, window: Any, programme_days: int, which: str) -> dict[str, Any]:
    """In a fresh process: read the whole cohort, run the metrics, report time and memory."""
    from backcare_analytics.research import distributed as dist
    from backcare_analytics.research.cohort import CohortPolicy

    fn = dist.metrics_fn(window, CohortPolicy(programme_days=programme_days), which)
    t0 = time.perf_counter()
    tables = {t: pd.read_parquet(Path(folder) / t) for t in TABLES}
    read_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = fn(tables)
    compute_s = time.perf_counter() - t1
    return {
        "read_s": read_s,
        "compute_s": compute_s,
        "wall_s": read_s + compute_s,
        "peak_rss_mib": _maxrss_mib(),
        "rows_out": {k: len(v) for k, v in out.items()},
    }


def _dask_job(
    folder: str, out: str, window: Any, programme_days: int, which: str, workers: int
) -> dict[str, Any]:
    """In a fresh process: a local cluster of worker processes runs the buckets."""
    from distributed import Client, LocalCluster

    from backcare_analytics.research import distributed as dist
    from backcare_analytics.research.cohort import CohortPolicy

    fn = dist.metrics_fn(window, CohortPolicy(programme_days=programme_days), which)
    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        start_s = time.perf_counter() - t0
        # Warm the workers: import the package and the metric modules once.
        client.run(lambda: __import__("backcare_analytics.research.distributed"))
        client.run(lambda: __import__("backcare_analytics.metrics.run"))
        t1 = time.perf_counter()
        rows = dist.run_buckets(folder, fn, client=client, out=out)
        wall_s = time.perf_counter() - t1
        worker_rss = client.run(_maxrss_mib)
    return {
        "cluster_start_s": start_s,
        "wall_s": wall_s,
        "worker_peak_rss_mib": sorted(worker_rss.values()),
        "client_peak_rss_mib": _maxrss_mib(),  # includes reading the row counts only
        "rows_out": rows,
    }


def _in_fresh_process(fn, *args) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run(patients: int, weeks: int, buckets: int, which: str, workers: int = 2) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench_research_"))
    try:
        # Every step in its own fresh process, so each peak-memory figure is that step's own.
        made = _in_fresh_process(_write_job, str(work / "cohort"), patients, weeks, buckets)
        window, gen_s, write_s = made["window"], made["generate_s"], made["write_buckets_s"]
        session_rows, diary_rows = made["session_rows"], made["diary_rows"]
        bytes_in = sum(f.stat().st_size for f in (work / "cohort").rglob("*.parquet"))
        days = weeks * 7
        local = _in_fresh_process(_local_job, str(work / "cohort"), window, days, which)
        remote = _in_fresh_process(
            _dask_job, str(work / "cohort"), str(work / "results"), window, days, which, workers
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = session_rows + diary_rows
    ratio = remote["wall_s"] / local["wall_s"]
    scale = 100_000 / patients
    return {
        "patients": patients,
        "weeks": weeks,
        "buckets": buckets,
        "workers": workers,
        "metrics": which,
        "session_rows": session_rows,
        "diary_rows": diary_rows,
        "generate_s": gen_s,
        "write_buckets_s": write_s,
        "parquet_mib": bytes_in / 2**20,
        "local": local,
        "dask": remote,
        "rows_per_s_local": rows / local["wall_s"],
        "rows_per_s_dask": rows / remote["wall_s"],
        "dask_over_local_wall": ratio,
        "rows_out_agree": local["rows_out"] == remote["rows_out"],
        "projection_1e5_patients": {
            "assumes": "linear in rows; buckets scaled to keep ~patients/buckets per bucket",
            "local_wall_s": local["wall_s"] * scale,
            "local_peak_rss_mib": local["peak_rss_mib"] * scale,
            "dask_2_workers_wall_s": remote["wall_s"] * scale,
            "dask_worker_peak_rss_mib": max(remote["worker_peak_rss_mib"]),
            "buckets": int(buckets * scale),
        },
        "load_avg": list(os.getloadavg()),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--buckets", type=int, default=20)
    parser.add_argument("--metrics", choices=("research", "all"), default="research")
    args = parser.parse_args(argv if argv is not None else [])
    from backcare_analytics.research.distributed import dask_available

    if not dask_available():
        print("bench_research: skipped, the Dask extra is not installed (pip install .[dask])")
        return {}
    result = run(args.patients, args.weeks, args.buckets, args.metrics)
    loc, dk = result["local"], result["dask"]
    print(
        f"{result['patients']} patients x {result['weeks']} weeks: {result['session_rows']:,} "
        f"session + {result['diary_rows']:,} diary rows; {result['buckets']} buckets "
        f"({result['parquet_mib']:.0f} MiB Parquet, written in {result['write_buckets_s']:.1f} s)"
    )
    print(
        f"local pandas : {loc['wall_s']:.1f} s (read {loc['read_s']:.1f} s), "
        f"{result['rows_per_s_local']:,.0f} rows/s, peak {loc['peak_rss_mib']:,.0f} MiB"
    )
    print(
        f"dask 2 procs : {dk['wall_s']:.1f} s (cluster start {dk['cluster_start_s']:.1f} s), "
        f"{result['rows_per_s_dask']:,.0f} rows/s, worker peaks "
        f"{', '.join(f'{m:,.0f}' for m in dk['worker_peak_rss_mib'])} MiB, client "
        f"{dk['client_peak_rss_mib']:,.0f} MiB"
    )
    print(
        f"dask / local wall: {result['dask_over_local_wall']:.2f}; row counts agree: "
        f"{result['rows_out_agree']}; load average {result['load_avg']}"
    )
    proj = result["projection_1e5_patients"]
    print(
        f"projected for 1e5 patients: local {proj['local_wall_s'] / 60:.0f} min at "
        f"~{proj['local_peak_rss_mib'] / 1024:.0f} GiB; dask (2 workers) "
        f"{proj['dask_2_workers_wall_s'] / 60:.0f} min at ~{proj['dask_worker_peak_rss_mib']:,.0f} "
        f"MiB per worker with {proj['buckets']} buckets"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_research.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
