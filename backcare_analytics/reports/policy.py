"""The report's own thresholds: when a weekly flag is raised and how far back the pictures look.

The metric families keep their thresholds in their own policies (``AdherencePolicy``,
``PainPolicy``, ...); this module holds only the report's. It sits below the modules that
orchestrate a report (``context``, ``flags``, ``weekly``, ``overview``) and imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReportPolicy"]


@dataclass(frozen=True)
class ReportPolicy:
    """Thresholds of the report's own flags (the metric families keep theirs).

    Attributes
    ----------
    history_days
        Days shown in the daily pictures (heatmap, pain, timing), ending on the week's Sunday.
    missed_days
        Flag "missed days" when no session was logged on at least this many days of the week.
    dropout_risk_days
        Flag "dropout risk" after this many days without any logged session (the dropout
        metric itself says "dropped out" at 21 days).
    pain_rise_points
        Flag "pain rise" when this week's mean back pain is at least this many NRS points above
        the previous week's mean (the minimal important change, Ostelo 2008).
    """

    history_days: int = 28
    missed_days: int = 2
    dropout_risk_days: int = 7
    pain_rise_points: float = 2.0
