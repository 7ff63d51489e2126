"""House rules that protect patient data and keep the checkout usable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return out.splitlines()


def test_committed_notebooks_have_no_outputs():
    for name in tracked_files():
        if not name.endswith(".ipynb"):
            continue
        nb = json.loads((ROOT / name).read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                assert not cell.get("outputs"), f"{name} is committed with outputs"
                assert cell.get("execution_count") is None, f"{name} has execution counts"


def test_data_holds_only_protocols_and_synthetic_examples():
    for name in tracked_files():
        if name.startswith("data/"):
            assert name.startswith(("data/protocols/", "data/examples/")), name
        assert not name.endswith((".duckdb", ".duckdb.wal")), name
        if name.startswith("reports/"):
            assert name == "reports/.gitkeep", name


def test_example_patients_are_visibly_synthetic():
    for name in tracked_files():
        if name.startswith("data/examples/") and name.endswith(".csv") and "patients" in name:
            text = (ROOT / name).read_text(encoding="utf-8-sig")
            rows = [line for line in text.splitlines()[1:] if line.strip()]
            assert rows and all(r.upper().startswith("DEMO") for r in rows), name


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
