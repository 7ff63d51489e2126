"""Adherence pictures: the exercise x day heatmap.

>>> import matplotlib.pyplot as plt
>>> import pandas as pd
>>> days = pd.to_datetime(["2026-03-02", "2026-03-03", "2026-03-02", "2026-03-03"])
>>> daily = pd.DataFrame({"exercise_id": ["bridge", "bridge", "breathing", "breathing"],
...                       "day": days, "status": ["met", "partial", "missed", "no_log"]})
>>> ax = adherence_heatmap(daily)
>>> [t.get_text() for t in ax.get_yticklabels()]
['bridge', 'breathing']
>>> plt.close(ax.figure)
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D

from backcare_analytics.plots.style import ADHERENCE_STATUS_STYLE, new_axes, report_style

__all__ = ["adherence_heatmap"]


def adherence_heatmap(
    daily: pd.DataFrame,
    *,
    exercise_order: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Exercise x day grid of one patient: met, partial, missed and no-log days drawn apart.

    Parameters
    ----------
    daily
        One row per exercise and day with columns ``exercise_id``, ``day`` (naive midnight) and
        ``status`` in ``{"met", "partial", "missed", "no_log"}`` (the report context derives it
        from the adherence metrics: a day without any log is ``no_log``, not ``missed``).
    exercise_order
        Row order, top to bottom (default: order of first appearance).
    labels
        Display names per exercise id (default: the ids).
    ax
        Axes to draw on; a new wide figure when missing.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on. Each status has its own colour and hatch, so the grid reads in
        greyscale print.
    """
    with report_style():
        fig, ax = new_axes(ax, "tall")
        order = (
            list(exercise_order)
            if exercise_order is not None
            else list(dict.fromkeys(daily["exercise_id"]))
        )
        row = {ex: i for i, ex in enumerate(order)}
        statuses = list(ADHERENCE_STATUS_STYLE)
        frame = daily[daily["exercise_id"].isin(row)]
        days = pd.to_datetime(frame["day"])
        first = days.min() if len(days) else pd.Timestamp("2000-01-01")
        n_days = int((days.max() - first).days) + 1 if len(days) else 1
        yi = frame["exercise_id"].map(row).to_numpy(dtype="int64")
        xi = (days - first).dt.days.to_numpy(dtype="int64")
        code = frame["status"].map({s: i for i, s in enumerate(statuses)}).to_numpy()
        grid = np.full((len(order), n_days), np.nan)
        grid[yi, xi] = code
        x0 = mdates.date2num(first.to_datetime64())
        cmap = ListedColormap([ADHERENCE_STATUS_STYLE[s]["color"] for s in statuses])
        ax.imshow(
            grid,
            cmap=cmap,
            vmin=-0.5,
            vmax=len(statuses) - 0.5,
            aspect="auto",
            interpolation="nearest",
            extent=(x0 - 0.5, x0 + n_days - 0.5, len(order) - 0.5, -0.5),
        )
        # Shapes repeat the colours so the grid reads in greyscale print.
        handles = []
        for i, status in enumerate(statuses):
            style = ADHERENCE_STATUS_STYLE[status]
            sel = code == i
            ax.scatter(
                x0 + xi[sel],
                yi[sel],
                marker=style["marker"],
                s=22,
                c=style["ink"],
                linewidths=1.0,
            )
            handles.append(
                Line2D(
                    [], [], linestyle="none", marker=style["marker"], markersize=7,
                    markerfacecolor=style["color"], markeredgecolor=style["ink"],
                    color=style["ink"], label=style["label"],
                )
            )  # fmt: skip
        names = labels or {}
        ax.set_yticks(range(len(order)), [names.get(ex, ex) for ex in order])
        ax.set_xticks(np.arange(n_days + 1) - 0.5 + x0, minor=True)
        ax.set_yticks(np.arange(len(order) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.2)
        ax.grid(which="major", visible=False)
        ax.tick_params(which="minor", length=0)
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a\n%d %b"))
        ax.xaxis.set_major_locator(
            mdates.DayLocator(interval=1 if n_days <= 10 else 7 if n_days > 35 else 3)
        )
        ax.set_xlabel("Day (patient's local calendar)")
        ax.set_ylabel("Exercise (prescribed)")
        ax.set_title("Exercises done, by day")
        ax.legend(
            handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=4,
        )  # fmt: skip
    return ax
