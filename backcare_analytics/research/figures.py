"""Cohort figures: each takes the frames of :mod:`~backcare_analytics.research.cohort` and
:mod:`~backcare_analytics.research.models`, accepts ``ax=None``, returns the ``Axes`` and
computes nothing (the report style of :mod:`backcare_analytics.plots.style`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from backcare_analytics.plots.style import OKABE_ITO, new_axes, report_style

__all__ = [
    "plot_adherence_distribution",
    "plot_effects",
    "plot_exercise_pdc",
    "plot_kaplan_meier",
    "plot_responders",
    "plot_timelines",
]

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def plot_adherence_distribution(summary: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Histogram of routine adherence (proportion of days covered), dropouts stacked apart."""
    with report_style():
        _, ax = new_axes(ax, "small")
        bins = np.linspace(0, 1, 21)
        groups = [summary.loc[~summary["dropout"], "adherence"].astype(float),
                  summary.loc[summary["dropout"], "adherence"].astype(float)]  # fmt: skip
        _, _, bars = ax.hist(groups, bins=bins, stacked=True, label=["completers", "dropouts"],
                             color=[OKABE_ITO["blue"], OKABE_ITO["orange"]], edgecolor="white")  # fmt: skip
        for bar in bars[1]:  # dropouts hatched, for greyscale
            bar.set_hatch("//")
        ax.set_xlabel("routine adherence (proportion of days covered)")
        ax.set_ylabel("patients")
        ax.set_title("Adherence across the cohort")
        ax.legend()
    return ax


def plot_exercise_pdc(pdc: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Box plot of per-exercise proportion of days covered (one box per exercise)."""
    with report_style():
        _, ax = new_axes(ax, "wide")
        order = list(dict.fromkeys(pdc["exercise_id"]))
        data = [pdc.loc[pdc["exercise_id"] == e, "pdc"].dropna().astype(float) for e in order]
        ax.boxplot(data, tick_labels=order, vert=False, widths=0.6, patch_artist=False)
        ax.set_xlim(0, 1)
        ax.set_xlabel("proportion of days covered")
        ax.set_title("Per-exercise adherence")
    return ax


def plot_timelines(events: pd.DataFrame, gaps: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """One row per patient: session days (dots) and diary days (ticks), gaps shaded."""
    with report_style():
        _, ax = new_axes(ax, "tall")
        ids = list(dict.fromkeys(events["patient_id"]))
        row = {p: i for i, p in enumerate(ids)}
        for g in gaps.itertuples(index=False):  # one patch per gap of the patients shown
            if g.patient_id in row:
                y = row[g.patient_id]
                ax.fill_betweenx([y - 0.4, y + 0.4], g.start_day - 0.5, g.end_day + 0.5,
                                 color=OKABE_ITO["vermillion"], alpha=0.25, hatch="///", lw=0)  # fmt: skip
        s = events[events["kind"] == "session"]
        d = events[events["kind"] == "diary"]
        ax.scatter(s["study_day"], s["patient_id"].map(row), s=6, marker="o",
                   color=OKABE_ITO["blue"], label="session")  # fmt: skip
        ax.scatter(d["study_day"], d["patient_id"].map(row) + 0.3, s=6, marker="|",
                   color=OKABE_ITO["black"], label="diary")  # fmt: skip
        ax.set_yticks(range(len(ids)), ids)
        ax.invert_yaxis()
        ax.set_xlabel("study day")
        ax.set_title("Event timelines (shaded: gaps of more than 3 days without a session)")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(facecolor=OKABE_ITO["vermillion"], alpha=0.25, hatch="///"))
        labels.append("gap")
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3)
    return ax


def plot_kaplan_meier(km: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Kaplan-Meier curves of staying in the programme, one per group, with 95 % bands."""
    with report_style():
        _, ax = new_axes(ax, "small")
        for i, (group, g) in enumerate(km.groupby("group", sort=False)):
            ls = _LINESTYLES[i % len(_LINESTYLES)]
            ax.step(g["weeks"], g["survival"], where="post", ls=ls, label=str(group))
            ax.fill_between(g["weeks"], g["ci_low"], g["ci_high"], step="post", alpha=0.15)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("weeks since programme start")
        ax.set_ylabel("share still in the programme")
        ax.set_title("Time to dropout (Kaplan-Meier)")
        ax.legend()
    return ax


def plot_responders(rates: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Responder rate per group, completers and all enrolled side by side, Wilson 95 % CIs."""
    with report_style():
        _, ax = new_axes(ax, "small")
        groups = list(dict.fromkeys(rates["group"]))
        x = np.arange(len(groups))
        for j, (den, hatch, colour) in enumerate(
            (("completers", None, OKABE_ITO["blue"]), ("all_enrolled", "//", OKABE_ITO["sky"]))
        ):
            r = rates[rates["denominator"] == den].set_index("group").reindex(groups)
            pos = x + (j - 0.5) * 0.38
            ax.bar(pos, r["rate"], width=0.36, color=colour, hatch=hatch, edgecolor="#333333",
                   label=den.replace("_", " "))  # fmt: skip
            ax.errorbar(pos, r["rate"], yerr=[r["rate"] - r["ci_low"], r["ci_high"] - r["rate"]],
                        fmt="none", ecolor="black", capsize=3)  # fmt: skip
        ax.set_xticks(x, groups)
        ax.set_ylim(0, 1)
        ax.set_xlabel("adherence tertile")
        ax.set_ylabel("responders (share)")
        ax.set_title("Responders (≥ 2 points or ≥ 30 %)")
        ax.legend()
    return ax


def plot_effects(comparison: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Recovered effects with 95 % CIs beside the planted values, each on its own scale
    (estimate / planted, so every effect reads against 1)."""
    with report_style():
        _, ax = new_axes(ax, "wide")
        y = np.arange(len(comparison))
        scale = comparison["planted"].abs().to_numpy(float)
        est = comparison["estimate"].to_numpy(float) / scale
        lo = comparison["ci_low"].to_numpy(float) / scale
        hi = comparison["ci_high"].to_numpy(float) / scale
        ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color=OKABE_ITO["blue"],
                    capsize=3, label="estimate, 95 % CI")  # fmt: skip
        planted = np.sign(comparison["planted"].to_numpy(float))
        ax.scatter(planted, y, marker="D", color=OKABE_ITO["vermillion"], zorder=3,
                   label="planted")  # fmt: skip
        ax.set_yticks(y, comparison["effect"])
        ax.invert_yaxis()
        ax.set_xlabel("estimate relative to the planted value")
        ax.set_title("Planted effects recovered")
        ax.legend(loc="center")
    return ax
