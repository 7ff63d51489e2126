"""Metrics: pure functions, clean frames in, tidy frames out (see docs/metrics.md).

Each function takes frames holding many patients and returns one row per key with the keys
as columns; nothing is rounded or printed and inputs are never mutated.
"""

from __future__ import annotations

from backcare_analytics.metrics.adherence import ROUTINE, AdherencePolicy, adherence_daily
from backcare_analytics.metrics.pain import PainPolicy, pain_daily, pain_summary
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.persistence import gap_histogram, persistence
from backcare_analytics.metrics.progression import (
    capacity_daily,
    capacity_weekly,
    progression_events,
    progression_flags,
)
from backcare_analytics.metrics.quality import QualityPolicy, quality_flags
from backcare_analytics.metrics.rollups import (
    adherence_rolling,
    adherence_rollups,
    adherence_streaks,
    adherence_summary,
)
from backcare_analytics.metrics.stats import kendall_tau_by, trend_tests
from backcare_analytics.metrics.timing import (
    circular_median,
    first_session_times,
    timing_consistency,
    timing_tables,
)
from backcare_analytics.metrics.tolerance import TolerancePolicy, session_tolerance
from backcare_analytics.metrics.verdict import VerdictPolicy, weekly_verdict

__all__ = [
    "ROUTINE",
    "AdherencePolicy",
    "QualityPolicy",
    "Window",
    "adherence_daily",
    "adherence_rolling",
    "adherence_rollups",
    "adherence_streaks",
    "adherence_summary",
    "circular_median",
    "first_session_times",
    "gap_histogram",
    "persistence",
    "quality_flags",
    "timing_consistency",
    "timing_tables",
    # pain, tolerance, progression and the verdict
    "PainPolicy",
    "TolerancePolicy",
    "VerdictPolicy",
    "capacity_daily",
    "capacity_weekly",
    "kendall_tau_by",
    "pain_daily",
    "pain_summary",
    "progression_events",
    "progression_flags",
    "session_tolerance",
    "trend_tests",
    "weekly_verdict",
]
