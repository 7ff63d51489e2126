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

from backcare_analytics.plots.style import (
    ADHERENCE_STATUS_STYLE,
    LEGEND_ROW_IN,
    Margins,
    new_axes,
    report_style,
    text_width_in,
)

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
    order = (
        list(exercise_order)
        if exercise_order is not None
        else list(dict.fromkeys(daily["exercise_id"]))
    )
    names = labels or {}
    tick_labels = [names.get(ex, ex) for ex in order]
    widest = max((text_width_in(t) for t in tick_labels), default=0.0)
    # Room for the exercise names and the axis label at the left; two-line dates, the axis
    # label and the legend's row below.
    margins = Margins(left=widest + 0.45, right=0.15, bottom=0.75 + LEGEND_ROW_IN)
    with report_style():
        fig, ax = new_axes(ax, "tall", margins)
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
        ax.set_yticks(range(len(order)), tick_labels)
        # White lines between the cells, as two line collections: minor ticks would build a
        # tick artist per day, which was a third of this figure's drawing time.
        ax.vlines(np.arange(n_days + 1) - 0.5 + x0, -0.5, len(order) - 0.5, colors="white",
                  linewidths=1.2)  # fmt: skip
        ax.hlines(np.arange(len(order) + 1) - 0.5, x0 - 0.5, x0 + n_days - 0.5, colors="white",
                  linewidths=1.2)  # fmt: skip
        ax.grid(False)
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a\n%d %b"))
        ax.xaxis.set_major_locator(
            mdates.DayLocator(interval=1 if n_days <= 10 else 7 if n_days > 35 else 3)
        )
        ax.set_xlabel("Day (patient's local calendar)")
        ax.set_ylabel("Exercise (prescribed)")
        ax.set_title("Exercises done, by day")
        ax.legend(
            handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=4,
            bbox_transform=fig.transFigure, borderaxespad=0.2,
        )  # fmt: skip
    return ax
