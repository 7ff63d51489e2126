"""backcare_analytics: adherence and pain-trend analytics for home exercise programmes for
low back pain.

Import it as ``import backcare_analytics as bca``. The surface is kept short: the programme
(:func:`load_protocol`), the schemas (``bca.schemas``), settings (:func:`get_settings`), and the
metric, store and report functions listed in ``__all__``. Heavy modules are imported on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from backcare_analytics import errors, schemas
from backcare_analytics.config import Settings, get_settings
from backcare_analytics.protocol import Protocol, build_prescriptions, load_protocol

try:
    __version__ = version("backcare_analytics")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"

#: Public names that live in submodules, imported lazily on first access so that
#: ``import backcare_analytics`` stays fast for the CLI. name -> module
_LAZY: dict[str, str] = {
    "generate_clinic": "backcare_analytics.synth",
    "SynthConfig": "backcare_analytics.synth",
    # import and store (docs/import.md)
    "Store": "backcare_analytics.store",
    "import_paths": "backcare_analytics.io.importer",
    # reports (docs/reports.md)
    "render_week": "backcare_analytics.reports.batch",
    "load_week": "backcare_analytics.reports.context",
    # adherence, timing and data quality (docs/metrics.md)
    "Window": "backcare_analytics.metrics",
    "AdherencePolicy": "backcare_analytics.metrics",
    "QualityPolicy": "backcare_analytics.metrics",
    "adherence_daily": "backcare_analytics.metrics",
    "adherence_summary": "backcare_analytics.metrics",
    "adherence_rolling": "backcare_analytics.metrics",
    "adherence_rollups": "backcare_analytics.metrics",
    "adherence_streaks": "backcare_analytics.metrics",
    "persistence": "backcare_analytics.metrics",
    "gap_histogram": "backcare_analytics.metrics",
    "first_session_times": "backcare_analytics.metrics",
    "timing_consistency": "backcare_analytics.metrics",
    "timing_tables": "backcare_analytics.metrics",
    "quality_flags": "backcare_analytics.metrics",
    # pain, tolerance, strength progression and the weekly verdict (docs/metrics.md)
    "PainPolicy": "backcare_analytics.metrics.pain",
    "pain_daily": "backcare_analytics.metrics.pain",
    "pain_summary": "backcare_analytics.metrics.pain",
    "TolerancePolicy": "backcare_analytics.metrics.tolerance",
    "session_tolerance": "backcare_analytics.metrics.tolerance",
    "capacity_daily": "backcare_analytics.metrics.progression",
    "capacity_weekly": "backcare_analytics.metrics.progression",
    "progression_events": "backcare_analytics.metrics.progression",
    "progression_flags": "backcare_analytics.metrics.progression",
    "VerdictPolicy": "backcare_analytics.metrics.verdict",
    "weekly_verdict": "backcare_analytics.metrics.verdict",
    "trend_tests": "backcare_analytics.metrics.stats",
    # research: cohorts, de-identified exports, buckets (docs/research.md, docs/scaling.md)
    "CohortPolicy": "backcare_analytics.research.cohort",
    "cohort_metrics": "backcare_analytics.research.cohort",
    "export_research": "backcare_analytics.research.export",
    "write_buckets": "backcare_analytics.research.distributed",
    "run_buckets": "backcare_analytics.research.distributed",
}

__all__ = [
    "Protocol",
    "Settings",
    "__version__",
    "build_prescriptions",
    "errors",
    "get_settings",
    "load_protocol",
    "schemas",
    *sorted(_LAZY),
]


#: Subpackages reachable as attributes (``bca.metrics.ROUTINE``) without importing them first.
_SUBMODULES = frozenset(
    {"io", "metrics", "plots", "protocol", "reports", "research", "safety", "store", "synth"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"backcare_analytics.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'backcare_analytics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
