"""Progression pictures: capacity against pain on one time axis (the verdict's picture) and the
push-up ladder.

>>> import matplotlib.pyplot as plt
>>> import pandas as pd
>>> weeks = pd.to_datetime(["2026-02-23", "2026-03-02"])
>>> cap = pd.DataFrame({"week_start": list(weeks) * 2, "exercise_id": ["bridge"] * 2 + ["mini_push_up"] * 2,
...                     "capacity_pct": [100.0, 120.0, 100.0, 100.0]})
>>> pain = pd.DataFrame({"week_start": weeks, "back_pain": [5.0, 4.0]})
>>> ax = capacity_vs_pain(cap, pain)
>>> ax.get_ylabel()
'Capacity (% of first week)'
>>> plt.close(ax.figure)
>>> lad = pd.DataFrame({"day": pd.date_range("2026-03-02", periods=3), "level": ["wall", "wall", "counter"],
...                     "reps": pd.array([10, 12, 8], dtype="Int64")})
>>> ax = pushup_ladder(lad, ladder=["wall", "counter", "knees", "floor"])
>>> [t.get_text() for t in ax.get_yticklabels()]
['wall', 'counter', 'knees', 'floor']
>>> plt.close(ax.figure)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from backcare_analytics.plots.style import (
    LEGEND_ROW_IN,
    OKABE_ITO,
    SIZES,
    Margins,
    legend_width_in,
    new_axes,
    report_style,
    text_width_in,
)

__all__ = ["capacity_vs_pain", "pushup_ladder"]

_MARKERS = ("o", "s", "^", "D", "v")
_LINES = ("-", "--", "-.", ":", "-")


def capacity_vs_pain(
    capacity: pd.DataFrame,
    pain_weekly: pd.DataFrame,
    *,
    labels: dict[str, str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Weekly strength capacity (left axis) and weekly back pain (right axis) on one time axis.

    Parameters
    ----------
    capacity
        One row per strength exercise and week of one patient: ``week_start`` (Monday),
        ``exercise_id`` and ``capacity_pct`` (capacity as % of the patient's first week with
        one: bridge reps x hold, press-up reps x hold, push-up reps at the level).
    pain_weekly
        One row per week: ``week_start`` and ``back_pain`` (weekly mean, NRS 0-10).
    labels
        Display names per exercise id.
    ax
        Axes to draw on; a new wide figure when missing.

    Returns
    -------
    matplotlib.axes.Axes
        The capacity axes; the pain axes is its twin (``ax.right_ax``-like, reachable via
        ``ax.figure.axes``). Capacity rising while pain falls is what *progressing* looks like.
    """
    names = labels or {}
    legend_labels = [
        f"{names.get(str(ex), ex)} capacity" for ex in sorted(set(capacity["exercise_id"]))
    ]
    legend_labels.append("back pain, weekly mean")
    # The legend goes below the axes, in two columns when two fit across the figure.
    column = legend_width_in(legend_labels)
    ncols = 2 if 2 * column <= SIZES["tall"][0] - 0.2 else 1
    rows = -(-len(legend_labels) // ncols)
    margins = Margins(right=0.65, bottom=0.55 + rows * LEGEND_ROW_IN + 0.1)
    with report_style():
        fig, ax = new_axes(ax, "tall", margins)
        for i, (ex, part) in enumerate(capacity.groupby("exercise_id", sort=True)):
            part = part.sort_values("week_start")
            ax.plot(
                pd.to_datetime(part["week_start"]).to_numpy(),
                pd.to_numeric(part["capacity_pct"], errors="coerce").to_numpy(
                    dtype="float64", na_value=np.nan
                ),
                marker=_MARKERS[i % len(_MARKERS)],
                linestyle=_LINES[i % len(_LINES)],
                label=f"{names.get(str(ex), ex)} capacity",
            )
        ax.axhline(100, color="#888888", linewidth=0.8)
        ax.set_ylabel("Capacity (% of first week)")
        ax.set_xlabel("Week starting")
        ax.set_ylim(bottom=0)
        right = ax.twinx()
        right.plot(
            pd.to_datetime(pain_weekly["week_start"]).to_numpy(),
            pd.to_numeric(pain_weekly["back_pain"], errors="coerce").to_numpy(
                dtype="float64", na_value=np.nan
            ),
            color=OKABE_ITO["black"],
            linestyle="-",
            linewidth=2.2,
            marker="X",
            label="back pain, weekly mean",
        )
        right.set_ylim(0, 10)
        right.set_ylabel("Back pain (NRS 0-10)")
        right.grid(False)
        right.spines["right"].set_visible(True)
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        ax.set_title("Strength capacity and pain, week by week")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = right.get_legend_handles_labels()
        ax.legend(
            h1 + h2, l1 + l2, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=ncols,
            bbox_transform=fig.transFigure, borderaxespad=0.2,
        )  # fmt: skip
    return ax


def pushup_ladder(
    steps: pd.DataFrame,
    *,
    ladder: Sequence[str],
    ax: Axes | None = None,
) -> Axes:
    """The mini push-up ladder level of each session, as steps, with the reps done.

    Parameters
    ----------
    steps
        One row per mini push-up session of one patient: ``day``, ``level`` (a rung of
        ``ladder``) and ``reps``.
    ladder
        The rungs, easier to harder (the protocol's ``ladder``: wall, counter, knees, floor).
    ax
        Axes to draw on; a new small figure when missing.

    Returns
    -------
    matplotlib.axes.Axes
        Level steps over time, each session labelled with its reps.
    """
    rung = {name: i for i, name in enumerate(ladder)}
    widest = max((text_width_in(str(name)) for name in ladder), default=0.0)
    with report_style():
        fig, ax = new_axes(ax, "small", Margins(left=widest + 0.45))
        part = steps.sort_values("day")
        x = pd.to_datetime(part["day"]).to_numpy()
        y = part["level"].map(rung).astype("float64").to_numpy()
        ax.step(x, y, where="post", color=OKABE_ITO["green"])
        ax.plot(x, y, linestyle="none", marker="o", color=OKABE_ITO["green"])
        reps = pd.to_numeric(part["reps"], errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
        # Label the reps at each change of level and at the last session (labelling every
        # session would overlap on a month of days).
        prev_y = np.r_[np.nan, y[:-1]]
        changed = y != prev_y
        if len(changed):
            changed[-1] = True
        for xi, yi, r, show in zip(x, y, reps, changed, strict=True):
            if show and np.isfinite(yi) and np.isfinite(r):
                ax.annotate(
                    f"{r:.0f}",
                    (xi, yi),
                    textcoords="offset points",
                    xytext=(0, 5),
                    ha="center",
                    fontsize=7,
                )
        ax.set_yticks(range(len(ladder)), list(ladder))
        ax.set_ylim(-0.5, len(ladder) - 0.3)
        ax.set_ylabel("Ladder level (easier → harder)")
        ax.set_xlabel("Day (numbers: reps done)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=5))
        ax.set_title("Mini push-up ladder")
    return ax
