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
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

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
        frame = daily[daily["exercise_id"].isin(row)]
        y = frame["exercise_id"].map(row).astype(float)
        x = mdates.date2num(pd.to_datetime(frame["day"]).to_numpy())
        handles = []
        for status, style in ADHERENCE_STATUS_STYLE.items():
            sel = (frame["status"] == status).to_numpy()
            ax.bar(
                x[sel],
                0.86,
                bottom=y.to_numpy()[sel] - 0.43,
                width=0.86,
                color=style["color"],
                hatch=style["hatch"],
                edgecolor="#555555",
                linewidth=0.4,
                align="center",
            )
            handles.append(
                Patch(
                    facecolor=style["color"],
                    hatch=style["hatch"],
                    edgecolor="#555555",
                    label=style["label"],
                )
            )
        names = labels or {}
        ax.set_yticks(range(len(order)), [names.get(ex, ex) for ex in order])
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.grid(False)
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a\n%d %b"))
        if len(x):
            ax.set_xlim(x.min() - 0.6, x.max() + 0.6)
            span = x.max() - x.min()
            ax.xaxis.set_major_locator(
                mdates.DayLocator(interval=1 if span <= 10 else 7 if span > 35 else 3)
            )
        ax.set_xlabel("Day (patient's local calendar)")
        ax.set_title("Exercises done, by day")
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.28),
            ncols=4,
            handlelength=2.2,
            handleheight=1.2,
        )
    return ax
