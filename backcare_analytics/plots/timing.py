"""Session timing: when in the day each session started (the programme asks for the same time).

>>> import matplotlib.pyplot as plt
>>> import pandas as pd
>>> t = pd.DataFrame({"day": pd.date_range("2026-03-02", periods=3),
...                   "start_hour": [7.0, 7.5, 21.25]})
>>> ax = session_timing(t, usual_hour=7.25)
>>> ax.get_ylabel()
'Start time (local clock)'
>>> plt.close(ax.figure)
"""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from backcare_analytics.plots.style import LEGEND_ROW_IN, OKABE_ITO, Margins, new_axes, report_style

__all__ = ["session_timing"]


def _clock(hours: float, _pos: object = None) -> str:
    h = int(hours) % 24
    return f"{h:02d}:00"


def session_timing(
    starts: pd.DataFrame,
    *,
    usual_hour: float | None = None,
    window_min: float = 60.0,
    ax: Axes | None = None,
) -> Axes:
    """Strip of session start times (local clock) by day, with the usual time and its window.

    Parameters
    ----------
    starts
        One row per session of one patient: ``day`` (naive midnight) and ``start_hour``
        (local time of day in decimal hours, 0-24).
    usual_hour
        The patient's usual start time (circular mean, decimal hours), drawn as a line with a
        band of +/- ``window_min`` minutes.
    window_min
        Half-width of the on-time band, minutes.
    ax
        Axes to draw on; a new wide figure when missing.

    Returns
    -------
    matplotlib.axes.Axes
        Sessions inside the band are filled circles, outside it open diamonds.
    """
    with report_style():
        fig, ax = new_axes(ax, "small", Margins(bottom=0.55 + LEGEND_ROW_IN + 0.05))
        x = pd.to_datetime(starts["day"]).to_numpy()
        y = pd.to_numeric(starts["start_hour"], errors="coerce").astype("float64").to_numpy()
        inside = np.ones(len(y), dtype=bool)
        if usual_hour is not None and np.isfinite(usual_hour):
            w = window_min / 60.0
            ax.axhspan(
                usual_hour - w,
                usual_hour + w,
                color=OKABE_ITO["sky"],
                alpha=0.25,
                linewidth=0,
                label=f"usual time ± {window_min:.0f} min",
            )
            ax.axhline(usual_hour, color=OKABE_ITO["blue"], linewidth=1)
            diff = np.abs((y - usual_hour + 12.0) % 24.0 - 12.0)
            inside = diff <= w
        ax.plot(
            x[inside],
            y[inside],
            linestyle="none",
            marker="o",
            color=OKABE_ITO["blue"],
            label="on time",
        )
        ax.plot(
            x[~inside],
            y[~inside],
            linestyle="none",
            marker="D",
            markerfacecolor="white",
            color=OKABE_ITO["vermillion"],
            label="off time",
        )
        ax.set_ylim(24, 0)
        ax.set_yticks(range(0, 25, 6))
        ax.yaxis.set_major_formatter(FuncFormatter(_clock))
        ax.set_ylabel("Start time (local clock)")
        ax.set_xlabel("Day")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=5))
        ax.set_title("When sessions started")
        ax.legend(
            loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=3, fontsize=7,
            bbox_transform=fig.transFigure, borderaxespad=0.2,
        )  # fmt: skip
    return ax
