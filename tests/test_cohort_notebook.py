"""The cohort notebook, executed for real on a synthetic clinic: the planted effects must fall
inside the 95 % intervals the notebook reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from backcare_analytics.config import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "cohort_adherence.py"
PAIRED = NOTEBOOK.with_suffix(".ipynb")


def _code(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


def test_paired_notebook_has_no_outputs_and_matches_the_script():
    import jupytext
    import nbformat

    paired = nbformat.read(PAIRED, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in paired.cells
               if c.cell_type == "code")  # fmt: skip
    assert _code(paired) == _code(jupytext.read(NOTEBOOK))
    assert paired.cells[[c.cell_type for c in paired.cells].index("code")].metadata["tags"] == [
        "parameters"
    ]


@pytest.mark.slow
def test_notebook_recovers_the_planted_effects(tmp_path: Path):
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.read(NOTEBOOK)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(f"out_dir = {str(tmp_path)!r}")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(params + 1, injected)
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")

    effects = pd.read_csv(tmp_path / "effects.csv")
    assert set(effects["effect"]) == {
        "pain_slope_per_adherence",
        "capacity_gain_max",
        "capacity_gain_per_pain_point",
        "pain_knee",
        "dropout_hazard_ratio_per_pain_point",
    }
    inside = (effects["ci_low"] <= effects["planted"]) & (effects["planted"] <= effects["ci_high"])
    assert inside.all(), effects.loc[~inside, ["effect", "planted", "ci_low", "ci_high"]]
    # Direction of the premise: more pain, less gain; more adherence, faster falling pain.
    e = effects.set_index("effect")["estimate"]
    assert e["capacity_gain_per_pain_point"] > 0 and e["pain_slope_per_adherence"] < 0
    assert e["dropout_hazard_ratio_per_pain_point"] > 1
