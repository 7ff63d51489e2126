"""Read + normalise throughput of the importer's front half (readers and normalisation).

Generates a 1M-row session-log CSV (58 MiB) with a vectorised generator in a child process
(300 patients in two time zones, the seven exercises, ~1 % planted bad cells), then times
:func:`read_export` and :func:`normalize` on it, warm, in this process. Peak memory is this
process's ``ru_maxrss`` (the generator's memory is not in it). Then, for the many-small-files
case, reads and normalises every export of a 60-patient synthetic clinic, file by file and
batched with ``normalize_many``. Prints the figures
and writes JSON to ``benchmarks/results/bench_normalize.json``.

Run: ``python -m benchmarks.bench_normalize`` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from backcare_analytics.config import get_settings
from backcare_analytics.io.normalize import normalize, normalize_many
from backcare_analytics.io.readers import read_export

N_ROWS = 1_000_000
N_PATIENTS = 300
EXERCISES = np.array(
    ["breathing", "Low Back Stretch", "Bridge", "sciatic_floss", "Low Back Roll",
     "Prone press up", "Mini Push Up"]
)  # fmt: skip
SIDES = np.array(["none", "both", "none", "left", "both", "none", "none"])


def write_sessions_csv(path: Path, n_rows: int = N_ROWS, seed: int = 7) -> None:
    """Write a session log of ``n_rows`` rows (7 exercises per session, ~1 % bad reps)."""
    rng = np.random.default_rng(seed)
    n_sessions = n_rows // 7 + 1
    patient = rng.integers(0, N_PATIENTS, n_sessions)
    day = rng.integers(0, 300, n_sessions)
    minute = rng.integers(6 * 60, 21 * 60, n_sessions)
    start = (
        pd.Timestamp("2026-01-05").to_datetime64()
        + day.astype("timedelta64[D]")
        + minute.astype("timedelta64[m]")
    )
    ex = np.tile(np.arange(7), n_sessions)[:n_rows]
    sess = np.repeat(np.arange(n_sessions), 7)[:n_rows]
    when = pd.Series(start[sess] + (ex * 2).astype("timedelta64[m]"))
    reps = rng.integers(3, 15, n_rows).astype(str).astype(object)
    reps[rng.random(n_rows) < 0.01] = "lots"
    frame = pd.DataFrame(
        {
            "patient_id": pd.Series(patient[sess]).map(lambda i: f"P{i:04d}"),
            "performed_at": when.dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "exercise": EXERCISES[ex],
            "session_id": pd.Series(sess).astype(str),
            "side": SIDES[ex],
            "reps": reps,
            "hold_s": np.where(np.isin(ex, [2, 5]), "15", ""),
            "level": np.where(ex == 6, "wall", ""),
            "pain_before": rng.integers(0, 8, n_rows).astype(str),
            "pain_after": rng.integers(0, 8, n_rows).astype(str),
            "note": "",
        }
    )
    frame.to_csv(path, index=False)


def registered_patients() -> pd.DataFrame:
    """The clean patients frame of the generated log (two time zones)."""
    zones = ["Europe/Amsterdam" if i % 2 else "America/New_York" for i in range(N_PATIENTS)]
    return pd.DataFrame(
        {
            "patient_id": pd.Series([f"P{i:04d}" for i in range(N_PATIENTS)], dtype="str"),
            "timezone": pd.Series(zones, dtype="str"),
            "programme_start": pd.Series([pd.Timestamp("2026-01-05")] * N_PATIENTS).astype(
                "datetime64[us]"
            ),
            "clinician": pd.Series([None] * N_PATIENTS, dtype="str"),
        }
    )


def _synthetic_clinic() -> dict[str, float]:
    """Many small files: read and normalise every export of a 60-patient synthetic clinic,
    file by file (:func:`normalize`) and in one batch (:func:`normalize_many`)."""
    try:
        from backcare_analytics.synth import SynthConfig, simulate
    except ImportError:  # pragma: no cover - synth not installed
        return {}
    clinic = simulate(SynthConfig(patients=60, weeks=8, seed=7))
    now = pd.Timestamp("2026-12-31", tz="UTC")
    start = time.perf_counter()
    exports = [read_export(Path(name), data=data) for name, data in clinic.files.items()]
    read_s = time.perf_counter() - start
    patients = normalize(exports[0].tables[0], source_file=exports[0].sha256, patients=None)
    tables = [t for e in exports[1:] for t in e.tables]
    shas = [e.sha256 for e in exports[1:] for _ in e.tables]
    rows = sum(t.rows_read for t in tables)
    start = time.perf_counter()
    for table, sha in zip(tables, shas, strict=True):
        normalize(table, source_file=sha, patients=patients.clean, now=now)
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    normalize_many(tables, source_files=shas, patients=patients.clean, now=now)
    many_s = time.perf_counter() - start
    return {
        "clinic_files": len(tables),
        "clinic_rows": rows,
        "clinic_read_ms_per_file": 1000 * read_s / len(exports),
        "clinic_normalize_ms_per_file": 1000 * one_s / len(tables),
        "clinic_normalize_many_s": many_s,
        "clinic_rows_per_s_read_and_normalize_many": rows / (read_s + many_s),
    }


def main() -> dict[str, float]:
    settings = replace(get_settings(), max_file_bytes=1 << 30)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sessions.csv"
        t0 = time.perf_counter()
        # generated in a child process so that its memory is not in this process's peak
        child = multiprocessing.get_context("fork").Process(target=write_sessions_csv, args=(path,))
        child.start()
        child.join()
        gen_s = time.perf_counter() - t0
        patients = registered_patients()
        size = path.stat().st_size
        # warm-up on a small file so imports and caches are not timed
        small = Path(tmp) / "small.csv"
        small.write_bytes(b"".join(path.open("rb").readlines()[:2000]))
        normalize(read_export(small, settings).tables[0], source_file="0" * 64, patients=patients)
        t0 = time.perf_counter()
        export = read_export(path, settings)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = normalize(
            export.tables[0], source_file=export.sha256, patients=patients,
            now=pd.Timestamp("2026-12-31", tz="UTC"),
        )  # fmt: skip
        norm_s = time.perf_counter() - t0
    rows = export.tables[0].rows_read
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    accepted, rejected = len(result.clean), int(result.rejects["row"].nunique())
    del export, result
    load = os.getloadavg()[0]
    clinic = _synthetic_clinic()
    figures = {
        "rows": rows,
        "file_mib": size / 2**20,
        "generate_s": gen_s,
        "read_s": read_s,
        "normalize_s": norm_s,
        "rows_per_s": rows / (read_s + norm_s),
        "read_rows_per_s": rows / read_s,
        "normalize_rows_per_s": rows / norm_s,
        "accepted": accepted,
        "rejected_rows": rejected,
        "peak_rss_mib": peak_mib,
        "load_1min": load,
        **clinic,
    }
    for key, value in figures.items():
        print(f"{key:>22}: {value:,.2f}" if isinstance(value, float) else f"{key:>22}: {value:,}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_normalize.json").write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
