"""A week's data, loaded and computed once per process, then sliced per patient.

A report kernel renders many patients of the same week. :func:`load_week` reads the store once
(short-lived read-only connections), runs every metric family vectorised over all patients, and
memoises the result keyed by the store file, its modification time and the week, so the
second patient's notebook only slices (:meth:`WeekData.patient`), draws and exports.
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

from backcare_analytics.metrics.adherence import AdherencePolicy, adherence_daily
from backcare_analytics.metrics.pain import PainPolicy, pain_daily, pain_summary
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.persistence import persistence
from backcare_analytics.metrics.progression import (
    capacity_daily,
    capacity_weekly,
    progression_flags,
)
from backcare_analytics.metrics.quality import QualityPolicy, quality_flags
from backcare_analytics.metrics.rollups import adherence_summary
from backcare_analytics.metrics.timing import first_session_times, timing_consistency
from backcare_analytics.metrics.tolerance import TolerancePolicy, session_tolerance
from backcare_analytics.metrics.verdict import VerdictPolicy, weekly_verdict
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.reports.flags import attention_table, week_flags

__all__ = [
    "VERDICT_LABELS",
    "VERDICT_PRIORITY",
    "ReportPolicy",
    "WeekData",
    "load_week",
    "resolve_week",
]

_WEEK = re.compile(r"^\d{4}-W\d{2}$")

#: Verdicts in order of who needs attention first.
VERDICT_PRIORITY: dict[str, int] = {
    "review": 0,
    "loading_ahead_of_symptoms": 1,
    "pain_improving_strength_stalled": 2,
    "insufficient_data": 3,
    "progressing": 4,
}
VERDICT_LABELS: dict[str, str] = {
    "review": "Review",
    "loading_ahead_of_symptoms": "Loading ahead of symptoms",
    "pain_improving_strength_stalled": "Pain improving, strength stalled",
    "insufficient_data": "Insufficient data",
    "progressing": "Progressing",
}


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


def _store(path: Path | str) -> Any:
    from backcare_analytics.store import Store

    return Store(Path(path))


def resolve_week(store: Path | str, week: str = "latest") -> str:
    """``week`` itself when it is ``YYYY-Www``; for ``"latest"``, the last complete ISO week
    of the store's data: the week ending on the last day with any session or diary entry if
    that day is a Sunday, else the week before it (a clinic reviews last week on Monday).
    With less than a week of data, the week of the last day."""
    if week != "latest":
        if not _WEEK.match(week):
            raise ValueError(f"week must be 'latest' or look like 2026-W10; received {week!r}")
        Window.iso_week(week)  # checks the week exists
        return week
    table = _store(store).query(
        "SELECT max(d) AS last, min(d) AS first FROM (SELECT max(day) AS d FROM sessions "
        "UNION ALL SELECT max(day) FROM pain UNION ALL SELECT min(day) FROM sessions "
        "UNION ALL SELECT min(day) FROM pain)"
    )
    last, first = table.column("last")[0].as_py(), table.column("first")[0].as_py()
    if last is None:
        raise ValueError(f"the store {store} holds no sessions or diary entries; import first")
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
        """A clinic-wide frame by name (empty when the week has no such frame)."""
        return self.frames.get(name, pd.DataFrame())

    def patient(self, patient_id: str) -> Any:
        """The :class:`~backcare_analytics.reports.weekly.PatientWeek` of one patient."""
        from backcare_analytics.reports.weekly import PatientWeek

        return PatientWeek.from_week(self, patient_id)


def _sha_short(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def _compute(store_path: Path, label: str, policy: ReportPolicy) -> WeekData:
    """Every metric the week's reports show, for all patients at once.

    Each family runs over the span its picture needs: adherence, persistence, pain and
    capacity over the whole history up to the week's Sunday (baselines and trends need it),
    timing over the last four weeks, and tolerance, progression flags, the verdict and the
    quality remarks over the week itself.
    """
    store = _store(store_path)
    week = Window.iso_week(label)
    history = Window(end=week.end, days=policy.history_days)
    everything = Window(end=week.end, days=10_000)
    protocol = load_protocol()
    patients = store.patients()
    patients = patients[patients["programme_start"] <= week.end].reset_index(drop=True)
    sessions = store.sessions(end=week.end)
    pain = store.pain(end=week.end)
    prescriptions = store.prescriptions(protocol=protocol)
    reject_counts = _reject_counts(store.rejects())

    adherence = AdherencePolicy.from_protocol(protocol)
    pain_policy, tolerance = PainPolicy(), TolerancePolicy()
    verdict, quality = VerdictPolicy(), QualityPolicy()
    daily = adherence_daily(sessions, prescriptions, patients, window=everything, policy=adherence)
    last_28 = Window(end=week.end, days=28)
    frames: dict[str, pd.DataFrame] = {
        "sessions": sessions,
        "pain": pain,
        "reject_counts": reject_counts,
        "adherence_daily": daily,
        "adherence_week": adherence_summary(daily, pain, window=week),
        "adherence_weekly": adherence_summary(daily, pain, by="iso_week"),
        "persistence": persistence(sessions, patients, window=everything, policy=adherence),
        "first_session_times": first_session_times(
            sessions, patients, window=last_28, policy=adherence
        ),
        "timing": timing_consistency(sessions, patients, window=last_28, policy=adherence),
        "pain_daily": pain_daily(pain, patients, window=everything, policy=pain_policy),
        "pain_summary": pain_summary(pain, patients, window=everything, policy=pain_policy),
        "session_tolerance": session_tolerance(
            sessions, pain, protocol=protocol, window=week, policy=tolerance
        ),
        "capacity_weekly": capacity_weekly(
            capacity_daily(sessions, protocol=protocol, window=everything)
        ),
        "progression_flags": progression_flags(
            sessions, pain, prescriptions, adherence_daily=daily, window=week, protocol=protocol
        ),
        "verdict": weekly_verdict(
            pain, sessions, patients, protocol=protocol, window=week, policy=verdict,
            all_weeks=False,
        ),
        "quality": quality_flags(
            sessions, pain, patients, prescriptions, rejects=reject_counts, window=week,
            policy=quality,
        ),
    }  # fmt: skip
    policies: dict[str, Any] = {
        "report": policy,
        "adherence": adherence,
        "pain": pain_policy,
        "tolerance": tolerance,
        "verdict": verdict,
        "quality": quality,
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
        history=history,
        protocol=protocol,
        policy=policy,
        patients=patients,
        frames=frames,
        policies=policies,
        flags=flags,
        overview=overview,
        provenance=provenance,
    )


def _reject_counts(rejects: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows per patient, from the ids inside the refused rows' raw values (the
    quarantine itself has no patient column); rows without a readable id are not attributed."""
    if rejects.empty:
        return pd.DataFrame({"patient_id": pd.Series(dtype="str"), "n_rejected": []})
    rows = rejects.drop_duplicates(["file_sha", "row"])
    ids = rows["raw"].str.extract(r'"patient_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_-]{0,63})"')[0]
    counts = ids.dropna().value_counts()
    return pd.DataFrame(
        {"patient_id": counts.index.astype("str"), "n_rejected": counts.to_numpy("int64")}
    )


@lru_cache(maxsize=2)  # a kernel keeps at most two weeks' data in memory
def _memo(store: str, mtime_ns: int, label: str, policy: ReportPolicy) -> WeekData:
    return _compute(Path(store), label, policy)


def load_week(
    store: Path | str, week: str = "latest", policy: ReportPolicy | None = None
) -> WeekData:
    """The week's data for every patient, computed once per process and store version.

    Parameters
    ----------
    store
        The DuckDB store file.
    week
        ``YYYY-Www`` or ``"latest"`` (the week of the last logged day).
    policy
        The report's own flag thresholds.
    """
    path = Path(store).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"store {path} not found; fix: import exports first (backcare import) or pass --store"
        )
    label = resolve_week(path, week)
    return _memo(str(path), path.stat().st_mtime_ns, label, policy or ReportPolicy())
