"""Benchmark: the synthetic clinic, 200 patients x 12 weeks (target: under 10 s end to end).

Measures, in one process: the in-memory simulation (:func:`simulate`), the same plus writing
every file (:func:`generate_clinic`), and the ``backcare synth`` command as a fresh process
(imports included). CPU time of the simulation is reported too: wall times on a shared machine
move with its load. Prints the figures and writes ``benchmarks/results/synth.json``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PATIENTS, WEEKS, SEED = 200, 12, 7


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> dict[str, object]:
    """Run the benchmark and return its figures."""
    from backcare_analytics.synth import SynthConfig, generate_clinic, simulate

    cfg = SynthConfig(patients=PATIENTS, weeks=WEEKS, seed=SEED)
    simulate(SynthConfig(patients=5, weeks=2, seed=SEED))  # warm imports and caches
    sim_s, sim_cpu, gen_s, cli_s = [], [], [], []
    clinic = None
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        clinic = simulate(cfg)
        sim_s.append(time.perf_counter() - t0)
        sim_cpu.append(time.process_time() - c0)
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(3):
            t0 = time.perf_counter()
            generate_clinic(cfg, Path(tmp) / f"g{k}")
            gen_s.append(time.perf_counter() - t0)
        backcare = Path(sys.executable).with_name("backcare")
        cmd = (
            [str(backcare)]
            if backcare.exists()
            else [sys.executable, "-m", "backcare_analytics.cli"]
        )
        for k in range(2):
            t0 = time.perf_counter()
            subprocess.run(
                [*cmd, "synth", "--patients", str(PATIENTS), "--weeks", str(WEEKS),
                 "--seed", str(SEED), "--out", str(Path(tmp) / f"c{k}")],
                check=True, capture_output=True,
            )  # fmt: skip
            cli_s.append(time.perf_counter() - t0)
        identical = all(
            (Path(tmp) / "c0" / name).read_bytes() == (Path(tmp) / "c1" / name).read_bytes()
            for name in clinic.files
        )
    rows = clinic.summary.session_rows + clinic.summary.pain_rows
    figures = {
        "benchmark": "synth",
        "patients": PATIENTS,
        "weeks": WEEKS,
        "files": clinic.summary.files,
        "rows_written": rows,
        "xlsx_files": sum(name.endswith(".xlsx") for name in clinic.files),
        "bytes_written": sum(len(b) for b in clinic.files.values()),
        "simulate_s_median": round(_median(sim_s), 3),
        "simulate_cpu_s_median": round(_median(sim_cpu), 3),
        "generate_s_median": round(_median(gen_s), 3),
        "cli_s_median": round(_median(cli_s), 3),
        "rows_per_s_generate": round(rows / _median(gen_s)),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "same_seed_identical_bytes": identical,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    for k, v in figures.items():
        print(f"{k:>28}: {v}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "synth.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
