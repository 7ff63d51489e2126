"""Plot functions: they draw on the axes given, return them, label every axis with a unit,
keep the four adherence states apart in colour *and* shape, and leave no figure open."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from backcare_analytics import plots
from backcare_analytics.plots.style import ADHERENCE_STATUS_STYLE, OKABE_ITO


@pytest.fixture(autouse=True)
def _no_figures_left():
    plt.close("all")
    yield
    plt.close("all")


DAYS = pd.date_range("2026-03-02", periods=14)


def _heat() -> pd.DataFrame:
    ex = ["breathing", "bridge", "mini_push_up"]
    status = np.array(["met", "partial", "missed", "no_log"])[np.arange(42) % 4]
    return pd.DataFrame(
        {"exercise_id": np.repeat(ex, 14), "day": np.tile(DAYS, 3), "status": status}
    )


def _pain() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": DAYS,
            "back_pain": pd.array(np.arange(14) % 7 + 2, dtype="Int64"),
            "leg_pain": pd.array([None] * 7 + [2] * 7, dtype="Int64"),
            "back_pain_7d": np.linspace(6, 4, 14),
            "flare": [False] * 13 + [True],
        }
    )


CASES = {
    "heatmap": lambda ax: plots.adherence_heatmap(_heat(), ax=ax),
    "pain": lambda ax: plots.pain_trend(_pain(), baseline=6.0, responder_level=4.0, ax=ax),
    "capacity": lambda ax: plots.capacity_vs_pain(
        pd.DataFrame(
            {"week_start": DAYS[[0, 7]], "exercise_id": "bridge", "capacity_pct": [100.0, 130.0]}
        ),
        pd.DataFrame({"week_start": DAYS[[0, 7]], "back_pain": [6.0, 4.5]}),
        ax=ax,
    ),
    "ladder": lambda ax: plots.pushup_ladder(
        pd.DataFrame({"day": DAYS[:3], "level": ["wall", "wall", "counter"], "reps": [10, 12, 8]}),
        ladder=["wall", "counter", "knees", "floor"],
        ax=ax,
    ),
    "timing": lambda ax: plots.session_timing(
        pd.DataFrame({"day": DAYS[:3], "start_hour": [7.0, 7.2, 21.0]}), usual_hour=7.1, ax=ax
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_draws_on_given_axes_and_returns_them(name: str) -> None:
    fig, ax = plt.subplots()
    before = plt.get_fignums()
    got = CASES[name](ax)
    assert got is ax
    assert plt.get_fignums() == before  # no new figure when ax is given
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(loc="left")
    plt.close(fig)


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_figure_when_no_axes(name: str) -> None:
    ax = CASES[name](None)
    assert ax.figure is not None
    plt.close(ax.figure)
    assert plt.get_fignums() == []


def test_units_on_value_axes() -> None:
    ax = CASES["pain"](None)
    assert "NRS 0-10" in ax.get_ylabel()
    plt.close(ax.figure)
    ax = CASES["capacity"](None)
    twin = [a for a in ax.figure.axes if a is not ax][0]
    assert "%" in ax.get_ylabel() and "NRS 0-10" in twin.get_ylabel()
    plt.close(ax.figure)


def test_adherence_states_differ_in_colour_and_shape_and_grey() -> None:
    styles = ADHERENCE_STATUS_STYLE
    assert len({s["color"] for s in styles.values()}) == 4
    assert len({s["marker"] for s in styles.values()}) == 4  # survives greyscale print
    grey = [np.dot(to_rgb(s["color"]), [0.299, 0.587, 0.114]) for s in styles.values()]
    assert len({round(g, 1) for g in grey}) == 4  # distinct lightness too


def test_heatmap_grid_holds_each_status_in_its_cell() -> None:
    ax = CASES["heatmap"](None)
    image = ax.images[0].get_array()
    # Row 0 = breathing; statuses cycle met, partial, missed, no_log along the 14 days.
    assert list(np.asarray(image[0, :4])) == [0, 1, 2, 3]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["breathing", "bridge", "mini_push_up"]
    plt.close(ax.figure)


def test_pain_trend_marks_flares_and_band() -> None:
    ax = CASES["pain"](None)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for want in ("responder band", "baseline", "back pain, daily", "leg pain, daily", "flare"):
        assert want in labels
    plt.close(ax.figure)


def test_palette_is_okabe_ito() -> None:
    assert OKABE_ITO["vermillion"] == "#D55E00" and OKABE_ITO["sky"] == "#56B4E9"
