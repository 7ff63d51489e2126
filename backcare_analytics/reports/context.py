"""A week's data, loaded and computed once per process, then sliced per patient.

A report kernel renders many patients of the same week. :func:`load_week` reads the store once
(short-lived read-only connections), runs every metric family vectorised over all patients, and
memoises the result keyed by the store file, its modification time and the week, so the
second patient's notebook only slices (:meth:`WeekData.patient`), draws and exports.

Metric families that are not installed yet (a module missing from this checkout) are listed in
``WeekData.unavailable`` and printed as a data-quality remark; any other failure raises.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import Protocol, load_protocol

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


def _optional(module: str) -> Any | None:
    """The metric module, or ``None`` when it is not part of this checkout yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


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
    unavailable: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.week.label

    def frame(self, name: str) -> pd.DataFrame:
        """A clinic-wide frame by name (empty when its metric family is unavailable)."""
        return self.frames.get(name, pd.DataFrame())

    def patient(self, patient_id: str) -> Any:
        """The :class:`~backcare_analytics.reports.weekly.PatientWeek` of one patient."""
        from backcare_analytics.reports.weekly import PatientWeek

        return PatientWeek.from_week(self, patient_id)


def _sha_short(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def _compute(store_path: Path, label: str, policy: ReportPolicy) -> WeekData:
    store = _store(store_path)
    week = Window.iso_week(label)
    history = Window(end=week.end, days=policy.history_days)
    protocol = load_protocol()
    patients = store.patients()
    patients = patients[patients["programme_start"] <= week.end].reset_index(drop=True)
    sessions = store.sessions(end=week.end)
    pain = store.pain(end=week.end)
    prescriptions = store.prescriptions(protocol=protocol)
    frames: dict[str, pd.DataFrame] = {
        "sessions": sessions,
        "pain": pain,
        "reject_counts": _reject_counts(store.rejects()),
    }
    policies: dict[str, Any] = {"report": policy}
    unavailable: list[str] = []

    # The package's public surface re-exports the adherence family wherever its modules live.
    adh = _optional("backcare_analytics.metrics")
    if adh is not None and hasattr(adh, "adherence_summary"):
        apol = adh.AdherencePolicy.from_protocol(protocol)
        policies["adherence"] = apol
        daily = adh.adherence_daily(
            sessions, prescriptions, patients, window=Window(end=week.end, days=10_000),
            policy=apol,
        )  # fmt: skip
        frames["adherence_daily"] = daily
        frames["adherence_week"] = adh.adherence_summary(daily, pain, window=week)
        frames["adherence_weekly"] = adh.adherence_summary(daily, pain, by="iso_week")
    else:
        unavailable.append("adherence")

    for name, loader in _FAMILIES.items():
        module = _optional(f"backcare_analytics.metrics.{name}")
        if module is None:
            unavailable.append(name)
            continue
        loader(module, frames, policies, patients, prescriptions, protocol, week)

    from backcare_analytics.reports.flags import attention_table, week_flags

    flags = week_flags(frames, patients, week, policy)
    overview = attention_table(frames, patients, flags, week)
    imports = store.imports()
    provenance = {
        "store": str(store_path),
        "store_id": _sha_short(store_path.resolve()),
        "imports": imports,
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
        unavailable=unavailable,
    )


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a metric function with the keyword arguments it accepts (the metric families'
    optional parameters still move while they are written; required ones must match)."""
    import inspect

    accepted = inspect.signature(fn).parameters
    return fn(*args, **{k: v for k, v in kwargs.items() if k in accepted})


def _persistence(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    frames["persistence"] = _call(module.persistence,
        frames["sessions"], patients, window=Window(end=week.end, days=10_000),
        policy=policies.get("adherence"),
    )  # fmt: skip


def _timing(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    span = Window(end=week.end, days=28)
    pol = policies.get("adherence")
    frames["first_session_times"] = _call(
        module.first_session_times, frames["sessions"], patients, window=span, policy=pol
    )
    frames["timing"] = _call(
        module.timing_consistency, frames["sessions"], patients, window=span, policy=pol
    )


def _pain(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    policy = module.PainPolicy()
    policies["pain"] = policy
    span = Window(end=week.end, days=10_000)
    frames["pain_daily"] = _call(
        module.pain_daily, frames["pain"], patients, window=span, policy=policy
    )
    frames["pain_summary"] = _call(
        module.pain_summary, frames["pain"], patients, window=span, policy=policy
    )


def _tolerance(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    policy = module.TolerancePolicy()
    policies["tolerance"] = policy
    frames["session_tolerance"] = _call(
        module.session_tolerance,
        frames["sessions"],
        frames["pain"],
        protocol=protocol,
        window=week,
        policy=policy,
    )


def _progression(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    history = Window(end=week.end, days=10_000)
    daily = _call(module.capacity_daily, frames["sessions"], protocol=protocol, window=history)
    frames["capacity_weekly"] = _call(module.capacity_weekly, daily)
    frames["progression_flags"] = _call(module.progression_flags,
        frames["sessions"], frames["pain"], prescriptions,
        adherence=frames.get("adherence_daily"), window=week, protocol=protocol,
    )  # fmt: skip


def _verdict(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    policy = module.VerdictPolicy()
    policies["verdict"] = policy
    frames["verdict"] = _call(module.weekly_verdict,
        frames["pain"], frames["sessions"], patients, protocol=protocol, window=week,
        policy=policy, all_weeks=False,
    )  # fmt: skip


def _quality(
    module: Any,
    frames: dict[str, pd.DataFrame],
    policies: dict[str, Any],
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    protocol: Protocol,
    week: Window,
) -> None:
    policy = module.QualityPolicy() if hasattr(module, "QualityPolicy") else None
    if policy is not None:
        policies["quality"] = policy
    frames["quality"] = _call(module.quality_flags,
        frames["sessions"], frames["pain"], patients, prescriptions,
        rejects=frames.get("reject_counts"), window=week, policy=policy,
    )  # fmt: skip


_FAMILIES: dict[str, Any] = {
    "persistence": _persistence,
    "timing": _timing,
    "pain": _pain,
    "tolerance": _tolerance,
    "progression": _progression,
    "verdict": _verdict,
    "quality": _quality,
}


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
