"""A week's data, loaded and computed once per process, then sliced per patient.

A report kernel renders many patients of the same week. :func:`load_week` reads the store once
(short-lived read-only connections), computes the metric tables the reports show from the metric
registry (each over the span :func:`week_windows` names) vectorised over all patients, and
memoises the result keyed by the store file, its modification time and the week, so the
second patient's notebook only slices
(:meth:`~backcare_analytics.reports.weekly.PatientWeek.from_week`), draws and exports.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.metrics.adherence import AdherencePolicy
from backcare_analytics.metrics.pain import PainPolicy
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.quality import QualityPolicy, reject_counts
from backcare_analytics.metrics.registry import MetricInputs, compute
from backcare_analytics.metrics.tolerance import TolerancePolicy
from backcare_analytics.metrics.verdict import VerdictPolicy
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.reports.flags import attention_table, week_flags
from backcare_analytics.reports.policy import ReportPolicy
from backcare_analytics.store import Store

__all__ = [
    "ALL_HISTORY_DAYS",
    "WEEK_OPTIONS",
    "ReportPolicy",
    "WeekData",
    "all_history",
    "load_week",
    "resolve_week",
    "week_windows",
]

_WEEK = re.compile(r"^\d{4}-W\d{2}$")

#: Days of the "all history" window: every day up to the week's Sunday (about 27 years, longer
#: than any programme), for the metrics whose baselines and trends look back to the start.
ALL_HISTORY_DAYS = 10_000
#: Per-table options of the week's metric run: the verdict of the week itself only.
WEEK_OPTIONS: dict[str, dict[str, Any]] = {"weekly_verdict": {"all_weeks": False}}


def all_history(end: pd.Timestamp) -> Window:
    """Every day up to ``end`` (:data:`ALL_HISTORY_DAYS` days)."""
    return Window(end=end, days=ALL_HISTORY_DAYS)


def week_windows(week: Window, policy: ReportPolicy) -> dict[str, Window | None]:
    """The metric tables the week's reports show, each with the span its picture needs.

    Adherence by day, persistence, pain and capacity over all history up to the week's Sunday
    (baselines and trends need it), per-ISO-week adherence over all history too, the timing
    pictures over the last ``policy.history_days`` days, and the week's adherence summary,
    tolerance, progression flags, the verdict and the quality remarks over the week itself.
    ``capacity_weekly`` takes no window (it rolls up ``capacity_daily``).
    """
    history = all_history(week.end)
    recent = Window(end=week.end, days=policy.history_days)
    return {
        "adherence_daily": history,
        "adherence_summary": week,
        "adherence_weekly": history,
        "persistence": history,
        "first_session_times": recent,
        "timing_consistency": recent,
        "pain_daily": history,
        "pain_summary": history,
        "session_tolerance": week,
        "capacity_daily": history,
        "capacity_weekly": None,
        "progression_flags": week,
        "weekly_verdict": week,
        "quality_flags": week,
    }


def resolve_week(store: Store | Path | str, week: str = "latest") -> str:
    """``week`` itself when it is ``YYYY-Www``; for ``"latest"``, the last complete ISO week
    of the store's data: the week ending on the last day with any session or diary entry if
    that day is a Sunday, else the week before it (a clinic reviews last week on Monday).
    With less than a week of data, the week of the last day."""
    if week != "latest":
        if not _WEEK.match(week):
            raise ValueError(f"week must be 'latest' or look like 2026-W10; received {week!r}")
        Window.iso_week(week)  # checks the week exists
        return week
    st = Store.of(store)
    table = st.query(
        "SELECT max(d) AS last, min(d) AS first FROM (SELECT max(day) AS d FROM sessions "
        "UNION ALL SELECT max(day) FROM pain UNION ALL SELECT min(day) FROM sessions "
        "UNION ALL SELECT min(day) FROM pain)"
    )
    last, first = table.column("last")[0].as_py(), table.column("first")[0].as_py()
    if last is None:
        raise ValueError(f"the store {st.path} holds no sessions or diary entries; import first")
    last = pd.Timestamp(last)
    end = last if last.day_of_week == 6 else last - pd.Timedelta(days=last.day_of_week + 1)
    if end < pd.Timestamp(first):
        end = last
    iso = end.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


@dataclass
class WeekData:
    """Everything the week's reports show, for every patient of the clinic at once."""

    store: Path
    week: Window
    history: Window
    protocol: Protocol
    policy: ReportPolicy
    patients: pd.DataFrame
    frames: dict[str, pd.DataFrame]
    policies: dict[str, Any]
    flags: pd.DataFrame
    overview: pd.DataFrame
    provenance: dict[str, Any]

    @property
    def label(self) -> str:
        return self.week.label

    def frame(self, name: str) -> pd.DataFrame:
        """A clinic-wide frame by name: a metric table of :func:`week_windows`, or the
        ``sessions``, ``pain`` or ``reject_counts`` input.

        Raises
        ------
        KeyError
            No frame of that name (a misspelt or renamed table is never an empty table).
        """
        try:
            return self.frames[name]
        except KeyError:
            raise KeyError(
                f"the week data has no frame {name!r}; it has: {', '.join(self.frames)}"
            ) from None


def _sha_short(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def _policies(protocol: Protocol, policy: ReportPolicy) -> dict[str, Any]:
    """The report's policy and each metric family's, by the name the registry knows them by."""
    return {
        "report": policy,
        "adherence": AdherencePolicy.from_protocol(protocol),
        "pain": PainPolicy(),
        "tolerance": TolerancePolicy(),
        "verdict": VerdictPolicy(),
        "quality": QualityPolicy(),
    }


def _compute(store: Store, label: str, policy: ReportPolicy) -> WeekData:
    """Every metric the week's reports show, for all patients at once, each table over the
    span of :func:`week_windows`."""
    store_path = store.path
    week = Window.iso_week(label)
    protocol = load_protocol()
    patients = store.patients()
    patients = patients[patients["programme_start"] <= week.end].reset_index(drop=True)
    inputs = MetricInputs(
        sessions=store.sessions(end=week.end),
        pain=store.pain(end=week.end),
        patients=patients,
        prescriptions=store.prescriptions(protocol=protocol),
        rejects=reject_counts(store.rejects()),
        protocol=protocol,
    )
    policies = _policies(protocol, policy)
    windows = week_windows(week, policy)
    frames: dict[str, pd.DataFrame] = {
        "sessions": inputs.sessions,
        "pain": inputs.pain,
        "reject_counts": inputs.rejects,
        **compute(inputs, windows.keys(), windows=windows, policies=policies, options=WEEK_OPTIONS),
    }
    flags = week_flags(frames, patients, week, policy)
    overview = attention_table(frames, patients, flags, week)
    provenance = {
        "store": str(store_path),
        "store_id": _sha_short(store_path.resolve()),
        "imports": store.imports(),
        "computed_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return WeekData(
        store=store_path,
        week=week,
        history=Window(end=week.end, days=policy.history_days),
        protocol=protocol,
        policy=policy,
        patients=patients,
        frames=frames,
        policies=policies,
        flags=flags,
        overview=overview,
        provenance=provenance,
    )


@lru_cache(maxsize=2)  # a kernel keeps at most two weeks' data in memory
def _memo(
    store: str, settings: Settings, mtime_ns: int, label: str, policy: ReportPolicy
) -> WeekData:
    return _compute(Store(store, settings=settings), label, policy)


def load_week(
    store: Store | Path | str, week: str = "latest", policy: ReportPolicy | None = None
) -> WeekData:
    """The week's data for every patient, computed once per process and store version.

    Parameters
    ----------
    store
        The store, or its DuckDB file (opened with :meth:`Store.of`).
    week
        ``YYYY-Www`` or ``"latest"`` (the week of the last logged day).
    policy
        The report's own flag thresholds.
    """
    st = Store.of(store)
    path = st.path.resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"store {path} not found; fix: import exports first (backcare import) or pass --store"
        )
    label = resolve_week(st, week)
    return _memo(str(path), st.settings, path.stat().st_mtime_ns, label, policy or ReportPolicy())
