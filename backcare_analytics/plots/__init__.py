"""Plots: functions that take metric frames, accept ``ax=None``, return the ``Axes`` and compute
nothing. One report style (:mod:`backcare_analytics.plots.style`): colour-blind-safe, legible
in greyscale, units on every axis. Nothing here calls ``plt.show()`` or saves a file."""

from __future__ import annotations

from backcare_analytics.plots.adherence import adherence_heatmap
from backcare_analytics.plots.pain import pain_trend
from backcare_analytics.plots.progression import capacity_vs_pain, pushup_ladder
from backcare_analytics.plots.style import OKABE_ITO, report_style
from backcare_analytics.plots.timing import session_timing

__all__ = [
    "OKABE_ITO",
    "adherence_heatmap",
    "capacity_vs_pain",
    "pain_trend",
    "pushup_ladder",
    "report_style",
    "session_timing",
]
