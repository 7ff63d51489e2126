"""Helpers for the store-integrity tests: a small synthetic clinic on disk, the store's tables
in a comparable form, and the CLI (or a function) in a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.store import Store

ROOT = Path(__file__).resolve().parents[1]
#: Where child processes import the package from: this checkout, or the copy of the package at
#: ``$STORE_TESTS_CHILD_PATH`` (to check that a test fails on an older version).
CHILD_ROOT = Path(os.environ.get("STORE_TESTS_CHILD_PATH") or ROOT)


#: The small clinic (4 patients x 2 weeks: 17 files) and a larger one (6 x 4: 49 files, more
#: than one group of an import, so that a racing writer can land between two groups).
SMALL, LARGER = (4, 2), (6, 4)


@cache
def clinic_files(size: tuple[int, int] = SMALL) -> dict[str, bytes]:
    """A synthetic clinic's exports by file name (``size`` = patients, weeks; CSV, XLSX, JSON
    and JSON Lines, some planted bad rows)."""
    from backcare_analytics.synth import simulate
    from backcare_analytics.synth.config import SynthConfig

    patients, weeks = size
    clinic = simulate(SynthConfig(patients=patients, weeks=weeks, seed=3, bad_share=0.02))
    return {Path(name).name: data for name, data in clinic.files.items()}


def write_files(
    folder: Path, names: list[str] | None = None, size: tuple[int, int] = SMALL
) -> Path:
    """Write the clinic's files ``names`` (default: all) into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = clinic_files(size)
    for name in names if names is not None else list(files):
        (folder / name).write_bytes(files[name])
    return folder


def log_names(size: tuple[int, int] = SMALL) -> list[str]:
    """The clinic's session and diary files (everything but the patients file)."""
    return [n for n in clinic_files(size) if "patient" not in n]


def open_store(path: Path, timeout: float = 30.0) -> Store:
    settings = Settings(
        data_dir=path.parent / "data", store_busy_timeout_s=timeout, store_lock_timeout_s=timeout
    )
    return Store(path, settings=settings)


def tables(store: Store) -> dict[str, pd.DataFrame]:
    """What a clean import is judged by: the data (without provenance: which of two identical
    files delivered a row first), every quarantined row and reason, and each file's ledger
    counts; sorted so that the order of concurrent writers does not matter."""
    rejects = store.rejects().drop(columns="raw")
    ledger = store.imports()[
        ["sha256", "path", "status", "rows_read", "accepted", "rejected", "duplicates", "replaced"]
    ]
    return {
        "sessions": store.sessions().drop(columns="source_file"),
        "pain": store.pain().drop(columns="source_file"),
        "patients": store.patients(),
        "rejects": rejects.sort_values(list(rejects.columns)).reset_index(drop=True),
        "imports": ledger.sort_values("sha256").reset_index(drop=True),
    }


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process (run in :data:`CHILD_ROOT`): the package importable
    from :data:`CHILD_ROOT`."""
    return {**os.environ, "PYTHONPATH": str(CHILD_ROOT), **extra}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m backcare_analytics.cli ARGS`` in a child process (pipes for both outputs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "backcare_analytics.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=CHILD_ROOT,
        env=env or child_env(),
    )  # fmt: skip


def python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -c CODE ARGS`` in a child process (pipes for both outputs)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=CHILD_ROOT,
        env=env or child_env(),
    )  # fmt: skip
