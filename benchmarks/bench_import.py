"""End-to-end import throughput: read + normalise + validate + de-duplicate + store.

The synthetic clinic (:func:`backcare_analytics.synth.simulate`, 100 patients x 26 weeks) is
tiled to about 1M session rows (copies get new patient ids) and exported as clinic-wide CSV
session logs of 50,000 rows each, plus a patients file, a re-export overlapping 5 % of the rows
(duplicates) and ~0.5 % planted bad cells (pain 11, unknown exercise). The import runs in a
fresh subprocess so its peak RSS is its own. Then one 50k-row file is timed stage by stage in
this process (read, normalise, merge + write + commit as one file in its own transaction; the
import itself merges up to four such files per transaction) to show where the time goes, and
the per-file cost is measured on a synthetic clinic of small per-patient weekly files
(``SMALL_CLINIC``: 60 patients x 26 weeks, ~2,300 files), also in a subprocess; the importer
stages such a batch in a worker process by default, large files in a helper thread. Each
subprocess reports its wall time, CPU, peak RSS (``VmHWM``: ``ru_maxrss`` of a child started
by ``subprocess`` counts the parent's memory at fork time) and those of its worker process.

Prints figures and writes ``benchmarks/results/bench_import.json``.
Run: ``python -m benchmarks.bench_import`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET_ROWS = 1_000_000
ROWS_PER_FILE = 50_000
SESSION_COLUMNS = [
    "patient_id", "session_id", "performed_at", "exercise", "side", "sets", "reps", "hold_s",
    "level", "variant", "pain_before", "pain_after", "note",
]  # fmt: skip


def make_clinic(out: Path, target_rows: int = TARGET_ROWS, seed: int = 3) -> dict[str, int]:
    """Write the tiled synthetic clinic as CSV exports under ``out``; return row counts."""
    from backcare_analytics.synth import simulate
    from backcare_analytics.synth.config import SynthConfig

    clinic = simulate(SynthConfig(patients=100, weeks=26, seed=seed))
    base, pts = clinic.sessions, clinic.patients
    copies = -(-target_rows // len(base))
    rng = np.random.default_rng(seed)
    frames, patients = [], []
    for c in range(copies):
        prefix = f"C{c:02d}-"
        s = base.assign(patient_id=prefix + base["patient_id"],
                        session_id=prefix + base["session_id"])  # fmt: skip
        frames.append(s)
        patients.append(pts.assign(patient_id=prefix + pts["patient_id"]))
    sessions = pd.concat(frames, ignore_index=True).iloc[:target_rows]
    text = (
        pd.DataFrame(
            {
                "patient_id": sessions["patient_id"],
                "session_id": sessions["session_id"],
                "performed_at": sessions["performed_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "exercise": sessions["exercise_id"],
                "side": sessions["side"],
                "sets": sessions["sets"],
                "reps": sessions["reps"],
                "hold_s": sessions["hold_s"],
                "level": sessions["level"],
                "variant": sessions["variant"],
                "pain_before": sessions["pain_before"],
                "pain_after": sessions["pain_after"],
                "note": sessions["note"],
            }
        )
        .astype("str")
        .replace({"<NA>": "", "nan": "", "NaT": ""})
    )
    bad = rng.random(len(text)) < 0.005
    half = rng.random(len(text)) < 0.5
    text.loc[bad & half, "pain_before"] = "11"
    text.loc[bad & ~half, "exercise"] = "jumping jacks"
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(patients).assign(
        programme_start=lambda d: d["programme_start"].dt.strftime("%Y-%m-%d")
    ).to_csv(out / "patients.csv", index=False)
    n_files = 0
    for i, start in enumerate(range(0, len(text), ROWS_PER_FILE)):
        text.iloc[start : start + ROWS_PER_FILE].to_csv(out / f"sessions_{i:03d}.csv", index=False)
        n_files += 1
    overlap = text.sample(frac=0.05, random_state=seed).sort_index()
    overlap.to_csv(out / "sessions_reexport.csv", index=False)
    return {"session_rows": len(text) + len(overlap), "files": n_files + 2,
            "planted_bad": int(bad.sum()), "patients": sum(len(p) for p in patients)}  # fmt: skip


_CHILD = """
import json, os, resource, sys, time
from pathlib import Path
from backcare_analytics.config import Settings
from backcare_analytics.io import importer
from backcare_analytics.store import Store
folder, store = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(data_dir=store.parent)
load0 = os.getloadavg()[0]
t0 = time.perf_counter()
rep = importer.import_paths([folder], Store(store, settings=settings), settings=settings)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "totals": rep.totals, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "peak_rss_mib": importer._vm_hwm_mib(), "workers": importer.LAST_WORKER_USAGE,
                  "load_before": load0, "load_after": os.getloadavg()[0]}))
"""


def _import_in_subprocess(folder: Path, store: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(store)],
        capture_output=True, text=True, check=True, cwd=ROOT, env=env,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _stages(folder: Path, work: Path) -> dict[str, float]:
    """Time one 50k-row file stage by stage, warm, in this process."""
    from backcare_analytics.config import Settings
    from backcare_analytics.io.normalize import normalize
    from backcare_analytics.io.readers import read_export
    from backcare_analytics.protocol import load_protocol
    from backcare_analytics.store import Store, merge_rows, sha256_bytes

    settings = Settings(data_dir=work)
    store = Store(work / "stages.duckdb", settings=settings)
    protocol = load_protocol()
    pts_raw = read_export(folder / "patients.csv", settings).tables[0]
    pts = normalize(pts_raw, source_file="0" * 64, patients=None, protocol=protocol).clean
    with store.transaction() as con:
        merge_rows(con, "patients", pts, "0" * 64)
    path = folder / "sessions_000.csv"
    data = path.read_bytes()
    patients = store.patients()
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    sha = sha256_bytes(data)
    out["hash_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = read_export(path, settings, data=data)
    out["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    norm = normalize(raw.tables[0], source_file=sha, patients=patients, protocol=protocol)
    out["normalize_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with store.transaction() as con:
        merge_rows(con, "sessions", norm.clean, sha, repeats=norm.repeats)
    out["merge_write_commit_s"] = time.perf_counter() - t0
    out["rows"] = raw.tables[0].rows_read
    return out


SMALL_CLINIC = {"patients": 60, "weeks": 26, "seed": 7}


def _small_files(work: Path) -> dict:
    """The synthetic clinic's own per-patient weekly files (one small file each)."""
    from backcare_analytics.synth import generate_clinic
    from backcare_analytics.synth.config import SynthConfig

    summary = generate_clinic(SynthConfig(**SMALL_CLINIC), work / "small")
    out = _import_in_subprocess(work / "small" / "exports", work / "small.duckdb")
    out["files"] = summary.files
    out["ms_per_file"] = out["wall_s"] / summary.files * 1000
    return out


def _line(name: str, r: dict) -> str:
    t = r["totals"]
    workers = (
        "; ".join(
            f"worker CPU {w['cpu_s']:.1f} s, peak RSS {w['peak_rss_mib']:.0f} MiB"
            for w in r["workers"]
        )
        or "no worker process"
    )
    return (
        f"{name}: {t['rows_read']:,} rows in {t['files']:,} files, {r['wall_s']:.1f} s = "
        f"{t['rows_read'] / r['wall_s']:,.0f} rows/s; accepted {t['accepted']:,}, refused "
        f"{t['rejected']:,}, duplicates {t['duplicates']:,}; main CPU {r['cpu_s']:.1f} s, peak "
        f"RSS {r['peak_rss_mib']:.0f} MiB; {workers}; load {r['load_before']:.2f} -> "
        f"{r['load_after']:.2f}"
    )


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def main() -> dict:
    load = os.getloadavg()[0]
    print("uptime:", _uptime(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        made = make_clinic(work / "exports")
        gen_s = time.perf_counter() - t0
        print(f"generated {made['session_rows']:,} session rows in {made['files']} files "
              f"({gen_s:.1f} s)", flush=True)  # fmt: skip
        end2end = _import_in_subprocess(work / "exports", work / "bench.duckdb")
        rate = end2end["totals"]["rows_read"] / end2end["wall_s"]
        print(_line("(a) large exports, end to end", end2end), flush=True)
        stages = _stages(work / "exports", work)
        print("one 50k-row file: " + ", ".join(
            f"{k} {v:.3f}" for k, v in stages.items() if k.endswith("_s")), flush=True)  # fmt: skip
        small = _small_files(work)
        print(_line("(b) small weekly files, end to end", small)
              + f" ({small['ms_per_file']:.1f} ms per file)", flush=True)  # fmt: skip
    result = {
        "generated": made, "generate_s": gen_s, "end_to_end": end2end,
        "rows_per_s": rate, "stages_50k_file": stages, "small_files": small,
        "load_1min_before": load, "load_1min_after": os.getloadavg()[0], "cpus": os.cpu_count(),
    }  # fmt: skip
    print(f"load average (1 min) before {load:.2f}, after {result['load_1min_after']:.2f}")
    print("uptime:", _uptime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_import.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
