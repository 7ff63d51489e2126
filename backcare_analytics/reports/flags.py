"""The week's flags for every patient, and the clinic's attention order.

Flags are a tidy frame ``patient_id, flag, detail, severity`` computed once for the whole
clinic (vectorised; no per-patient loop), checked against
:class:`~backcare_analytics.schemas.results.WeekFlags`. ``detail`` holds counts, dates and
exercise names only. Severity is ``warn`` (needs the clinician) or ``good`` (ready to
progress).

The flags, their labels and severities are the vocabulary's
(:mod:`backcare_analytics.vocabulary`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import load_protocol
from backcare_analytics.reports.policy import ReportPolicy
from backcare_analytics.schemas import validate
from backcare_analytics.schemas.results import AttentionTable, WeekFlags
from backcare_analytics.vocabulary import (
    FLAG_SEVERITY,
    NO_VERDICT,
    ROUTINE,
    VERDICT_PRIORITY,
    WARN,
    WEEK_FLAGS,
)

__all__ = ["attention_table", "week_flags"]

_COLUMNS = ["patient_id", "flag", "detail", "severity"]


def _frame(ids: pd.Series, flag: str, detail: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ids.astype("str").to_numpy(),
            "flag": flag,
            "detail": detail.astype("str").to_numpy(),
            "severity": FLAG_SEVERITY[flag],
        }
    )


def _back_pain_daily(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    daily = frames.get("pain_daily")
    if daily is None or daily.empty:
        return pd.DataFrame(columns=["patient_id", "day", "pain", "flare_day"])
    return daily[daily["measure"] == "back_pain"]


def week_flags(
    frames: dict[str, pd.DataFrame], patients: pd.DataFrame, week: Window, policy: ReportPolicy
) -> pd.DataFrame:
    """Every flag of every patient for ``week`` (see ``vocabulary.WEEK_FLAGS``).

    Notes
    -----
    - *missed days*: no session at all was logged on ``>= policy.missed_days`` days of the week
      (the programme says never skip a day; partly done days show in the heatmap and table).
    - *dropout risk*: no session for ``>= policy.dropout_risk_days`` days up to the week's end.
    - *flare*: a flare day (back pain >= 2 points above the trailing 28-day mean) in the week.
    - *pain rise*: the week's mean back pain >= ``policy.pain_rise_points`` above last week's.
    - *ready to progress* / *consider regression*: from the progression metrics, when present.
    """
    parts: list[pd.DataFrame] = []
    adh = frames.get("adherence_summary")
    if adh is not None and not adh.empty:
        r = adh[adh["exercise_id"] == ROUTINE]
        missed = r["days"] - r["days_logged"]
        hit = missed >= policy.missed_days
        detail = (
            "no session logged on "
            + missed[hit].astype(str)
            + " of "
            + r["days"][hit].astype(str)
            + " days"
        )
        parts.append(_frame(r.loc[hit, "patient_id"], "missed_days", detail))

    sessions = frames.get("sessions")
    if sessions is not None and len(patients):
        last = sessions.groupby("patient_id", sort=False)["day"].max()
        last = last.reindex(patients["patient_id"].to_numpy())
        start = pd.Series(patients["programme_start"].to_numpy(), index=last.index)
        ref = last.fillna(start - pd.Timedelta(days=1))
        idle = (week.end - ref).dt.days
        hit = idle >= policy.dropout_risk_days
        detail = "no session logged for " + idle[hit].astype(str) + " days"
        parts.append(_frame(pd.Series(idle.index[hit]), "dropout_risk", detail))

    back = _back_pain_daily(frames)
    if not back.empty:
        in_week = back[week.contains(back["day"])]
        flares = in_week[in_week["flare_day"]].groupby("patient_id").size()
        parts.append(
            _frame(
                pd.Series(flares.index),
                "flare",
                "flare on " + flares.astype(str).reset_index(drop=True) + " day(s) this week",
            )
        )
        prev = Window(end=week.start - pd.Timedelta(days=1), days=7)
        now_mean = in_week.groupby("patient_id")["pain"].mean()
        prev_mean = back[prev.contains(back["day"])].groupby("patient_id")["pain"].mean()
        rise = (now_mean - prev_mean).dropna()
        hit = rise >= policy.pain_rise_points
        detail = "back pain up " + rise[hit].round(1).astype(str) + " points on last week"
        parts.append(_frame(pd.Series(rise.index[hit]), "pain_rise", detail.reset_index(drop=True)))

    prog = frames.get("progression_flags")
    if prog is not None and not prog.empty:
        names = {ex.id: ex.name for ex in load_protocol().exercises}
        for flag in ("ready_to_progress", "consider_regression"):
            if flag in prog:
                sel = prog[prog[flag].fillna(False).astype(bool)]
                shown = sel["exercise_id"].map(names).fillna(sel["exercise_id"])
                grouped = (
                    sel.assign(exercise_id=shown)
                    .groupby("patient_id")["exercise_id"]
                    .agg(lambda s: ", ".join(sorted(s)))
                )
                parts.append(_frame(pd.Series(grouped.index), flag, grouped.reset_index(drop=True)))

    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in _COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    order = {f: i for i, f in enumerate(WEEK_FLAGS)}
    out["_o"] = out["flag"].map(order)
    out = (
        out.sort_values(["patient_id", "_o"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )
    return validate(out, WeekFlags, what="the week's flags", inplace=True)


def attention_table(
    frames: dict[str, pd.DataFrame],
    patients: pd.DataFrame,
    flags: pd.DataFrame,
    week: Window,
) -> pd.DataFrame:
    """One row per patient of the week, sorted by who needs attention first.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, clinician, verdict, reason, flags (list of codes), n_warn, pdc_week,
        back_pain_week, priority`` sorted by verdict priority (review first), then the number
        of warning flags (more first), then patient id.
    """
    out = patients[["patient_id", "clinician"]].copy()
    verdicts = frames.get("weekly_verdict")
    if verdicts is not None and not verdicts.empty:
        v = verdicts[verdicts["week"] == week.label] if "week" in verdicts else verdicts
        out = out.merge(v[["patient_id", "verdict", "reason"]], on="patient_id", how="left")
    else:
        out["verdict"] = pd.NA
        out["reason"] = pd.NA
    out["verdict"] = out["verdict"].fillna(NO_VERDICT).astype("str")
    out["reason"] = out["reason"].fillna("No verdict was computed for this week.").astype("str")
    grouped = flags.groupby("patient_id")
    codes = grouped["flag"].agg(list)
    warn = flags[flags["severity"] == WARN].groupby("patient_id").size()
    out["flags"] = out["patient_id"].map(codes)
    out["flags"] = out["flags"].apply(lambda v: v if isinstance(v, list) else [])
    out["n_warn"] = out["patient_id"].map(warn).fillna(0).astype("int64")
    adh = frames.get("adherence_summary")
    if adh is not None and not adh.empty:
        r = adh[adh["exercise_id"] == ROUTINE].set_index("patient_id")
        out["pdc_week"] = out["patient_id"].map(r["pdc"]).astype("float64")
    else:
        out["pdc_week"] = np.nan
    back = _back_pain_daily(frames)
    if not back.empty:
        mean = back[week.contains(back["day"])].groupby("patient_id")["pain"].mean()
        out["back_pain_week"] = out["patient_id"].map(mean).astype("float64")
    else:
        out["back_pain_week"] = np.nan
    out["priority"] = out["verdict"].map(VERDICT_PRIORITY).fillna(9).astype("int64")
    out = out.sort_values(
        ["priority", "n_warn", "patient_id"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)
    return validate(out, AttentionTable, what="the attention table", inplace=True)
