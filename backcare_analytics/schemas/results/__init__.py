"""Output schemas of the metric functions, one module per metric family.

(DESIGN.md names a single ``results.py``; it is a package so each metric family keeps its
output models next to each other in a module of reasonable size.) Each module's models are
re-exported here.
"""

from __future__ import annotations

from backcare_analytics.schemas.results.adherence import (
    ROUTINE,
    AdherenceDaily,
    AdherenceRolling,
    AdherenceStreaks,
    AdherenceSummary,
    FirstSessionTimes,
    GapHistogram,
    Persistence,
    TimingConsistency,
)
from backcare_analytics.schemas.results.pain import MEASURES, PainDaily, PainSummary
from backcare_analytics.schemas.results.progression import (
    CapacityDaily,
    CapacityWeekly,
    ProgressionEvents,
    ProgressionFlags,
)
from backcare_analytics.schemas.results.quality import QUALITY_FLAGS, QualityFlags
from backcare_analytics.schemas.results.report import (
    FLAG_SEVERITIES,
    WEEK_FLAGS,
    AttentionTable,
    WeekFlags,
)
from backcare_analytics.schemas.results.tolerance import LIGHTS, SessionTolerance
from backcare_analytics.schemas.results.verdict import VERDICTS, WeeklyVerdict

__all__: list[str] = [
    "FLAG_SEVERITIES",
    "WEEK_FLAGS",
    "AttentionTable",
    "WeekFlags",
    "LIGHTS",
    "MEASURES",
    "VERDICTS",
    "CapacityDaily",
    "CapacityWeekly",
    "PainDaily",
    "PainSummary",
    "ProgressionEvents",
    "ProgressionFlags",
    "SessionTolerance",
    "WeeklyVerdict",
    "QUALITY_FLAGS",
    "ROUTINE",
    "AdherenceDaily",
    "AdherenceRolling",
    "AdherenceStreaks",
    "AdherenceSummary",
    "FirstSessionTimes",
    "GapHistogram",
    "Persistence",
    "QualityFlags",
    "TimingConsistency",
]
