"""Pain pictures: the daily pain trend with its baseline, responder band and flares.

>>> import matplotlib.pyplot as plt
>>> import pandas as pd
>>> d = pd.DataFrame({"day": pd.date_range("2026-03-02", periods=3),
...                   "back_pain": pd.array([6, 5, 4], dtype="Int64"),
...                   "leg_pain": pd.array([3, None, 2], dtype="Int64"),
...                   "back_pain_7d": [6.0, 5.5, 5.0], "flare": [False, True, False]})
>>> ax = pain_trend(d, baseline=6.0, responder_level=4.0)
>>> ax.get_ylabel()
'Pain (NRS 0-10)'
>>> plt.close(ax.figure)
"""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from backcare_analytics.plots.style import (
    OKABE_ITO,
    Margins,
    legend_width_in,
    new_axes,
    report_style,
)

__all__ = ["pain_trend"]


def _values(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


#: The longest label the pain legend can show (it sets the right margin).
_LEGEND_WIDEST = "back pain, 7-day mean"


def pain_trend(
    pain_daily: pd.DataFrame,
    *,
    baseline: float | None = None,
    responder_level: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Daily back and leg pain with the 7-day mean, the baseline, the responder band and flares.

    Parameters
    ----------
    pain_daily
        One row per day of one patient: ``day``, ``back_pain`` and ``leg_pain`` (NRS 0-10,
        nullable), ``back_pain_7d`` (trailing 7-day mean of back pain) and ``flare`` (bool).
    baseline
        Baseline back pain (mean of the first 7 diary days), drawn as a dashed line.
    responder_level
        Back pain at or below which the patient counts as a responder (baseline minus the
        larger of 2 points and 30 %), drawn as a shaded band down to 0.
    ax
        Axes to draw on; a new wide figure when missing.

    Returns
    -------
    matplotlib.axes.Axes
        Back pain in blue circles and a solid line, leg pain in orange squares and a dotted
        line; flares as black triangles at the top.
    """
    # The legend sits right of the axes; its widest possible label decides the margin.
    right = legend_width_in([_LEGEND_WIDEST]) + 0.1
    with report_style():
        fig, ax = new_axes(ax, "wide", Margins(right=right))
        x = pd.to_datetime(pain_daily["day"]).to_numpy()
        if responder_level is not None and np.isfinite(responder_level):
            ax.axhspan(
                0,
                max(responder_level, 0.0),
                facecolor=OKABE_ITO["green"],
                alpha=0.15,
                hatch="..",
                edgecolor=OKABE_ITO["green"],
                linewidth=0,
                label="responder band",
            )
        if baseline is not None and np.isfinite(baseline):
            ax.axhline(baseline, color="#444444", linestyle="--", linewidth=1, label="baseline")
        ax.plot(
            x,
            _values(pain_daily["back_pain"]),
            linestyle="none",
            marker="o",
            color=OKABE_ITO["blue"],
            alpha=0.7,
            label="back pain, daily",
        )
        if "back_pain_7d" in pain_daily:
            ax.plot(
                x,
                _values(pain_daily["back_pain_7d"]),
                color=OKABE_ITO["blue"],
                label="back pain, 7-day mean",
            )
        if "leg_pain" in pain_daily:
            leg = _values(pain_daily["leg_pain"])
            if np.isfinite(leg).any():
                ax.plot(
                    x,
                    leg,
                    linestyle=":",
                    marker="s",
                    markersize=3,
                    color=OKABE_ITO["orange"],
                    label="leg pain, daily",
                )
        if "flare" in pain_daily:
            flare = pain_daily["flare"].fillna(False).astype(bool).to_numpy()
            if flare.any():
                ax.plot(
                    x[flare],
                    np.full(flare.sum(), 10.3),
                    linestyle="none",
                    marker="v",
                    markersize=7,
                    color=OKABE_ITO["black"],
                    label="flare",
                    clip_on=False,
                )
        ax.set_ylim(0, 10.6)
        ax.set_yticks(range(0, 11, 2))
        ax.set_ylabel("Pain (NRS 0-10)")
        ax.set_xlabel("Day (patient's local calendar)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        ax.set_title("Pain, day by day")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
