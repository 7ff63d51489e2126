"""Peak memory of importing hostile files, per input byte (issue 10, defect 11).

Each shape is written at the same size (``SIZE_MIB``, default 2 MiB; ``BACKCARE_BENCH_MIB``
overrides it) and imported by a fresh ``backcare import --json`` subprocess into a copy of a
store that already knows the patients. The child reports its own peak RSS (``VmHWM``, so the
parent's memory at fork time does not count). Shapes, measured in turn (round robin) ``ROUNDS``
times, medians reported:

- ``normal``: valid session rows (the anchor: what a real export of that size costs);
- ``empty_cells``: rows of empty cells only (``,,,,``), as a spreadsheet writes empty rows;
- ``one_cell_rows``: rows holding one short cell and empty ones (every row refused);
- ``wide_header``: a header of a million empty columns;
- ``wide_rows``: a header at the column limit and rows of empty cells but one;
- ``long_lines``: rows whose note is far over the cell limit;
- ``jsonl_garbage``: JSON Lines of one record, then lines that are not JSON.

For each: the outcome (status, reason), peak RSS in MiB, peak per input byte, and the peak
above an import of a one-row file (the interpreter and its libraries) per input byte.

Prints figures and writes ``benchmarks/results/bench_memory.json``.
Run: ``python -m benchmarks memory`` (about a minute on 2 cores at 2 MiB a shape).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZE_MIB = float(os.environ.get("BACKCARE_BENCH_MIB", "2"))
ROUNDS = 3
SESSION_HEADER = (
    "patient_id,session_id,performed_at,exercise,side,sets,reps,hold_s,level,variant,"
    "pain_before,pain_after,note"
)
PATIENTS = b"patient_id,timezone,programme_start\nP001,Europe/Amsterdam,2026-01-05\n"

_CHILD = """
import json, sys
from backcare_analytics.cli import main
import contextlib, io
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(["import", sys.argv[1], "--store", sys.argv[2], "--json"])
report = json.loads(out.getvalue())
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
peak_kib = int(status["VmHWM"].split()[0])
f = report["files"][0] if report.get("files") else {}
print(json.dumps({"rc": rc, "status": f.get("status"), "reason": f.get("reason"),
                  "rows_read": f.get("rows_read"), "peak_mib": peak_kib / 1024}))
"""


def _repeat_to(size: int, head: bytes, line: Callable[[int], bytes]) -> bytes:
    """``head`` followed by ``line(i)`` for i = 0, 1, ... up to ``size`` bytes."""
    parts, total, i = [head], len(head), 0
    while total < size:
        part = line(i)
        parts.append(part)
        total += len(part)
        i += 1
    return b"".join(parts)


def shapes(size: int) -> dict[str, tuple[str, bytes]]:
    """File name and bytes of every shape, each about ``size`` bytes."""
    head = (SESSION_HEADER + "\n").encode()
    width = SESSION_HEADER.count(",")

    def normal(i: int) -> bytes:
        day, minute = divmod(i, 600)
        stamp = f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{6 + minute // 60:02d}:{minute % 60:02d}"
        return f"P001,S{i},{stamp}:00Z,bridge,,1,5,15,,,2,2,ok\n".encode()

    extra = ",".join(f"x{i}" for i in range(980))  # 993 columns: under the limit
    wide_head = f"{SESSION_HEADER},{extra}\n".encode()
    note = b"n" * 100_000
    # one good record, so the kind is known and each later line is refused on its own
    first = b'{"patient_id": "P001", "recorded_at": "2026-03-02T07:15:00Z", "back_pain": 3}\n'
    return {
        "normal": ("normal.csv", _repeat_to(size, head, normal)),
        "empty_cells": ("empty_cells.csv", _repeat_to(size, head, lambda i: b"," * width + b"\n")),
        "one_cell_rows": (
            "one_cell_rows.csv", _repeat_to(size, head, lambda i: b"x" + b"," * width + b"\n")
        ),
        "wide_header": ("wide_header.csv", b"patient_id,performed_at,exercise" + b"," * size),
        "wide_rows": (
            "wide_rows.csv", _repeat_to(size, wide_head, lambda i: b"x" + b"," * 992 + b"\n")
        ),
        "long_lines": (
            "long_lines.csv",
            _repeat_to(size, head, lambda i: b"P001,,2026-03-02 07:15,bridge,,,5,,,,,," + note + b"\n"),
        ),
        "jsonl_garbage": ("garbage.jsonl", _repeat_to(size, first, lambda i: b"not json\n")),
    }  # fmt: skip


def import_peak(path: Path, store: Path) -> dict:
    """Import ``path`` into ``store`` in a fresh ``backcare import --json`` subprocess: its exit
    code, the file's status, reason and rows read, and its peak RSS in MiB (``VmHWM``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(store)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=900,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    if not lines:
        return {"rc": out.returncode, "status": "crashed", "reason": out.stderr[-300:],
                "rows_read": None, "peak_mib": float("nan")}  # fmt: skip
    return json.loads(lines[-1])


def _fresh_store(work: Path, seed: Path, name: str) -> Path:
    store = work / f"{name}.duckdb"
    for suffix in ("", ".raw"):
        target = Path(str(store) + suffix)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    shutil.copy2(seed, store)
    return store


def measure(size: int, rounds: int = ROUNDS) -> dict[str, dict]:
    """Median peak RSS of ``rounds`` imports of every shape, round robin; plus the baseline."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "patients.csv").write_bytes(PATIENTS)
        seed = work / "seed.duckdb"
        import_peak(work / "patients.csv", seed)
        files = {}
        for name, (fname, data) in {**shapes(size), "baseline": ("tiny.csv", b"")}.items():
            if name == "baseline":
                data = (
                    SESSION_HEADER + "\nP001,S0,2026-03-02T07:15:00Z,bridge,,1,5,15,,,2,2,\n"
                ).encode()
            (work / fname).write_bytes(data)
            files[name] = (work / fname, len(data))
        runs: dict[str, list[dict]] = {name: [] for name in files}
        for _ in range(rounds):
            for name, (path, _size) in files.items():
                runs[name].append(import_peak(path, _fresh_store(work, seed, name)))
    base = statistics.median(r["peak_mib"] for r in runs["baseline"])
    result = {}
    for name, (_path, nbytes) in files.items():
        peak = statistics.median(r["peak_mib"] for r in runs[name])
        last = runs[name][-1]
        result[name] = {
            "bytes": nbytes, "status": last["status"], "reason": last["reason"],
            "rows_read": last["rows_read"], "peak_mib": peak,
            "peaks_mib": [r["peak_mib"] for r in runs[name]],
            "peak_per_byte": peak * 2**20 / nbytes,
            "above_baseline_per_byte": (peak - base) * 2**20 / nbytes,
        }  # fmt: skip
    return result


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def main() -> dict:
    load = os.getloadavg()
    print("uptime:", _uptime(), flush=True)
    size = int(SIZE_MIB * 2**20)
    result = measure(size)
    for name, r in result.items():
        print(
            f"{name:>14}: {r['bytes'] / 2**20:5.2f} MiB, {r['status']} {r['reason'] or ''} "
            f"rows_read={r['rows_read']}; peak RSS median {r['peak_mib']:.0f} MiB "
            f"({', '.join(f'{p:.0f}' for p in r['peaks_mib'])}); "
            f"{r['peak_per_byte']:.0f} x the file, {r['above_baseline_per_byte']:.0f} x above "
            "the baseline",
            flush=True,
        )
    out = {"size_bytes": size, "rounds": ROUNDS, "shapes": result, "load_before": load,
           "load_after": os.getloadavg(), "cpus": os.cpu_count()}  # fmt: skip
    print(f"load average before {load}, after {out['load_after']}")
    print("uptime:", _uptime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_memory.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
