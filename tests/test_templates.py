"""Report templates and exploration notebooks: one ``parameters`` cell, only package calls,
committed ``.ipynb`` without outputs and in sync with the jupytext ``.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = {
    "weekly_patient_report": {"patient_id", "week", "store"},
    "clinic_overview": {"week", "store"},
}
PAIRED = [ROOT / "notebooks" / "templates" / f"{n}.py" for n in TEMPLATES] + [
    ROOT / "notebooks" / "getting_started.py"
]


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_matches_its_py(py: Path) -> None:
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb} missing; fix: jupytext --to ipynb {py}"
    nb = nbformat.read(ipynb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{ipynb.name} holds outputs; clear them before committing"
            assert cell.execution_count is None
    assert _cells(nb) == _cells(jupytext.read(py)), f"fix: jupytext --sync {py}"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_has_one_parameters_cell_with_the_parameters(name: str) -> None:
    nb = jupytext.read(ROOT / "notebooks" / "templates" / f"{name}.py")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code is tagged[0]
    assigned = {
        t.id
        for node in ast.parse(tagged[0].source).body
        for t in node.targets  # type: ignore[attr-defined]
    }
    assert assigned == TEMPLATES[name]


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
def test_notebooks_define_nothing(py: Path) -> None:
    """Notebooks only call the package: a function or class belongs in the package."""
    nb = jupytext.read(py)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            ), f"{py.name} defines {type(node).__name__}; move it into the package"
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").startswith("backcare_analytics"), node.module
