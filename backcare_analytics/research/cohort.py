"""Cohort tables: one row per patient and one per patient-week, from the clean tables.

Everything here is per patient (no output row mixes two patients), vectorised, and depends only on
the clean frames and a :class:`CohortPolicy`, so :func:`cohort_metrics` gives the same rows on a
whole cohort and on any set of whole-patient buckets (see
:mod:`backcare_analytics.research.distributed`). The models and tests built on these tables are in
:mod:`backcare_analytics.research.models`.

Definitions (all days are study days: local calendar day minus programme start, day 0 first):

* **observed days** ``T_i``: the programme length for a patient still logging, else the days up to
  and including the last log (session or diary) of a patient who dropped out.
* **dropout**: no log at all during the last ``dropout_gap_days`` (21) days of the programme.
* **routine adherence** (proportion of days covered, PDC): days with at least one logged exercise
  divided by ``T_i``. Per-exercise PDC: days with that exercise divided by ``T_i``.
* **baseline / final pain**: mean diary back pain over study days 0-6 / over the last 7 observed
  days; responder: a fall of at least 2 points or at least 30 % (Ostelo 2008; Farrar 2001).
* **weekly strength capacity**: mean bridge hold that week divided by the prescribed 15 s hold
  (the bridge hold is the dose the programme progresses; reps are capped at 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.errors import InputDataError
from backcare_analytics.protocol import load_protocol
from backcare_analytics.schemas.clean import Pain, Patients, Sessions

__all__ = [
    "CohortPolicy",
    "cohort_metrics",
    "event_timeline",
    "exercise_pdc",
    "patient_summary",
    "patient_weeks",
]

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class CohortPolicy:
    """Windows and thresholds of the cohort tables.

    ``programme_days`` is the length of every patient's programme; it must be given explicitly
    when the cohort is processed in buckets (an inferred length could differ between buckets).
    """

    programme_days: int | None = None
    dropout_gap_days: int = 21
    baseline_days: int = 7
    responder_points: float = 2.0
    responder_pct: float = 30.0
    capacity_exercise: str = "bridge"
    capacity_reference_hold_s: float = 15.0
    gap_days: int = 3  # a gap is more than this many days without a session (persistence rule)


def _study_day(df: pd.DataFrame, starts: pd.Series, column: str) -> np.ndarray:
    start = df[Sessions.patient_id].map(starts)
    if start.isna().any():
        raise InputDataError(
            f"{int(start.isna().sum())} row(s) belong to patients missing from the patients "
            "table. Fix: import the patients file first."
        )
    return ((df[column] - start) // DAY).to_numpy("int64")


def _programme_days(policy: CohortPolicy, *day_arrays: np.ndarray) -> int:
    if policy.programme_days is not None:
        return policy.programme_days
    return int(max((a.max() for a in day_arrays if len(a)), default=0)) + 1


def _starts(patients: pd.DataFrame) -> pd.Series:
    return patients.set_index(Patients.patient_id)[Patients.programme_start]


def patient_summary(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    policy: CohortPolicy = CohortPolicy(),
) -> pd.DataFrame:
    """One row per patient: adherence, dropout, baseline and final pain, responder.

    Notes
    -----
    ``adherence = session_days / observed_days``; ``pain_change = final_pain - baseline_pain``;
    ``responder = (-pain_change >= 2) | (-pain_change / baseline_pain >= 0.30)``. A patient with
    no diary entry in the baseline or final window has missing pain columns and
    ``responder = <NA>``. ``time_to_dropout_days`` is the observed days of a patient who dropped out
    and ``programme_days - dropout_gap_days`` (the last day a dropout could still be seen) for the
    others (censored).

    Returns
    -------
    pandas.DataFrame
        ``patient_id, clinician, timezone, observed_days, session_days, adherence,
        last_log_day, dropout, time_to_dropout_days, baseline_pain, final_pain, pain_change,
        pain_change_pct, responder, completer, leg_pain_reported``, sorted by patient.
    """
    starts = _starts(patients)
    s_day = _study_day(sessions, starts, Sessions.day)
    p_day = _study_day(pain, starts, Pain.day)
    length = _programme_days(policy, s_day, p_day)
    ids = patients[Patients.patient_id]

    s_keys = pd.DataFrame({"patient_id": sessions[Sessions.patient_id].to_numpy(), "d": s_day})
    p_keys = pd.DataFrame({"patient_id": pain[Pain.patient_id].to_numpy(), "d": p_day})
    session_days = s_keys.drop_duplicates().groupby("patient_id")["d"].size()
    last_log = pd.concat([s_keys, p_keys]).groupby("patient_id")["d"].max()

    out = pd.DataFrame({"patient_id": ids.to_numpy()})
    out["clinician"] = patients[Patients.clinician].to_numpy()
    out["timezone"] = patients[Patients.timezone].to_numpy()
    last = out["patient_id"].map(last_log).astype("Float64")
    out["last_log_day"] = last.astype("Int64")
    dropout = (last.isna() | (length - 1 - last >= policy.dropout_gap_days)).astype(bool)
    out["dropout"] = dropout.to_numpy(bool)
    observed = np.where(out["dropout"], last.fillna(-1).to_numpy(float) + 1, length)
    out["observed_days"] = observed.astype("int64")
    out["session_days"] = out["patient_id"].map(session_days).fillna(0).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["adherence"] = out["session_days"] / out["observed_days"].where(
            out["observed_days"] > 0
        )
    out["time_to_dropout_days"] = np.where(
        out["dropout"], observed, length - policy.dropout_gap_days
    ).astype("int64")

    # Pain: baseline = first days, final = last days observed (per patient).
    back = pain[Pain.back_pain].astype("float64").to_numpy()
    obs_days = out.set_index("patient_id")["observed_days"]
    end = pain[Pain.patient_id].map(obs_days).to_numpy("int64")
    p = pd.DataFrame({"patient_id": pain[Pain.patient_id].to_numpy(), "v": back})
    base = p[p_day < policy.baseline_days].groupby("patient_id")["v"].mean()
    final = (
        p[(p_day >= end - policy.baseline_days) & (p_day < end)].groupby("patient_id")["v"].mean()
    )
    out["baseline_pain"] = out["patient_id"].map(base).astype("Float64")
    out["final_pain"] = out["patient_id"].map(final).astype("Float64")
    out["pain_change"] = out["final_pain"] - out["baseline_pain"]
    out["pain_change_pct"] = (100 * out["pain_change"] / out["baseline_pain"]).where(
        out["baseline_pain"] > 0
    )
    fall_pts = -out["pain_change"] >= policy.responder_points - 1e-9
    fall_pct = -out["pain_change_pct"] >= policy.responder_pct - 1e-9
    responder = (fall_pts | fall_pct.fillna(False)).astype("boolean")
    out["responder"] = responder.mask(out["pain_change"].isna())
    out["completer"] = ~out["dropout"]
    leg = pain[Pain.leg_pain].astype("Float64")
    leg_any = (leg.fillna(0) > 0).groupby(pain[Pain.patient_id].to_numpy()).any()
    out["leg_pain_reported"] = out["patient_id"].map(leg_any).fillna(False).astype(bool)
    return out.sort_values("patient_id", ignore_index=True)


def exercise_pdc(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    exercises: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Per-exercise proportion of days covered, one row per patient and exercise.

    Notes
    -----
    ``pdc = days with a logged row of the exercise / observed_days`` (``observed_days`` from
    :func:`patient_summary`). Exercises never logged by a patient count 0.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, exercise_id, days_done, pdc``.
    """
    starts = _starts(patients)
    d = _study_day(sessions, starts, Sessions.day)
    keys = pd.DataFrame(
        {"patient_id": sessions[Sessions.patient_id].to_numpy(), "exercise_id": sessions[Sessions.exercise_id].to_numpy(), "d": d}
    ).drop_duplicates()  # fmt: skip
    done = keys.groupby(["patient_id", "exercise_id"]).size().rename("days_done")
    ex = exercises if exercises is not None else load_protocol().exercise_ids
    grid = pd.MultiIndex.from_product(
        [summary["patient_id"].to_numpy(), list(ex)], names=["patient_id", "exercise_id"]
    )
    out = done.reindex(grid, fill_value=0).reset_index()
    out["days_done"] = out["days_done"].astype("int64")
    obs = out["patient_id"].map(summary.set_index("patient_id")["observed_days"])
    out["pdc"] = out["days_done"] / obs.where(obs > 0)
    out["patient_id"] = out["patient_id"].astype("str")
    out["exercise_id"] = out["exercise_id"].astype("str")
    return out


def patient_weeks(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    policy: CohortPolicy = CohortPolicy(),
) -> pd.DataFrame:
    """One row per patient and programme week observed: training, pain and capacity.

    Notes
    -----
    ``week = study_day // 7``. ``session_share`` = days with a session / 7; ``pain_mean`` = mean
    diary back pain (NRS); ``capacity`` = mean ``hold_s`` of the capacity exercise (bridge) / the
    reference hold (15 s). Weeks after a dropout's last observed day are left out; weeks with no
    diary entry have missing ``pain_mean``.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, week, session_days, session_share, pain_mean, pain_entries, capacity,
        capacity_rows``.
    """
    starts = _starts(patients)
    obs = summary.set_index("patient_id")["observed_days"]
    n_weeks = ((obs + 6) // 7).astype("int64")
    grid = pd.DataFrame(
        {
            "patient_id": np.repeat(n_weeks.index.to_numpy(), n_weeks.to_numpy()),
            "week": np.concatenate([np.arange(k) for k in n_weeks.to_numpy()]).astype("int64")
            if len(n_weeks)
            else np.array([], dtype="int64"),
        }
    )
    s_day = _study_day(sessions, starts, Sessions.day)
    sk = pd.DataFrame({"patient_id": sessions[Sessions.patient_id].to_numpy(), "d": s_day})
    sk = sk.drop_duplicates()
    sd = sk.assign(week=sk["d"] // 7).groupby(["patient_id", "week"]).size().rename("session_days")

    p_day = _study_day(pain, starts, Pain.day)
    pk = pd.DataFrame(
        {"patient_id": pain[Pain.patient_id].to_numpy(), "week": p_day // 7,
         "v": pain[Pain.back_pain].astype("float64").to_numpy()}
    )  # fmt: skip
    pw = pk.groupby(["patient_id", "week"])["v"].agg(pain_mean="mean", pain_entries="size")

    cap_rows = sessions[Sessions.exercise_id] == policy.capacity_exercise
    ck = pd.DataFrame(
        {"patient_id": sessions.loc[cap_rows, Sessions.patient_id].to_numpy(),
         "week": s_day[cap_rows.to_numpy()] // 7,
         "v": sessions.loc[cap_rows, Sessions.hold_s].astype("float64").to_numpy()}
    ).dropna()  # fmt: skip
    cw = ck.groupby(["patient_id", "week"])["v"].agg(capacity="mean", capacity_rows="size")
    cw["capacity"] = cw["capacity"] / policy.capacity_reference_hold_s

    out = grid.join(sd, on=["patient_id", "week"]).join(pw, on=["patient_id", "week"])
    out = out.join(cw, on=["patient_id", "week"])
    out["session_days"] = out["session_days"].fillna(0).astype("int64")
    out["session_share"] = out["session_days"] / 7.0
    out["pain_entries"] = out["pain_entries"].fillna(0).astype("int64")
    out["capacity_rows"] = out["capacity_rows"].fillna(0).astype("int64")
    out["pain_mean"] = out["pain_mean"].astype("Float64")
    out["capacity"] = out["capacity"].astype("Float64")
    out["patient_id"] = out["patient_id"].astype("str")
    cols = ["patient_id", "week", "session_days", "session_share", "pain_mean", "pain_entries",
            "capacity", "capacity_rows"]  # fmt: skip
    return out[cols].sort_values(["patient_id", "week"], ignore_index=True)


def event_timeline(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    policy: CohortPolicy = CohortPolicy(),
    summary: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient events by study day, and the gaps between sessions.

    With ``summary`` (:func:`patient_summary`) the gap after a patient's last session, up to the
    end of their observed days, counts too.

    Returns
    -------
    (events, gaps)
        ``events``: ``patient_id, study_day, kind`` (``session`` or ``diary``), one row per
        patient, day and kind. ``gaps``: ``patient_id, start_day, end_day, length_days`` for each
        run of more than ``policy.gap_days`` days without a session (inclusive bounds).
    """
    starts = _starts(patients)
    s = pd.DataFrame(
        {"patient_id": sessions[Sessions.patient_id].to_numpy(), "study_day": _study_day(sessions, starts, Sessions.day), "kind": "session"}
    )  # fmt: skip
    d = pd.DataFrame(
        {"patient_id": pain[Pain.patient_id].to_numpy(), "study_day": _study_day(pain, starts, Pain.day), "kind": "diary"}
    )  # fmt: skip
    events = pd.concat([s, d], ignore_index=True).drop_duplicates()
    events = events.sort_values(["patient_id", "study_day", "kind"], ignore_index=True)
    events["kind"] = events["kind"].astype("str")

    sd = s[["patient_id", "study_day"]].drop_duplicates().sort_values(["patient_id", "study_day"])
    prev = sd.groupby("patient_id")["study_day"].shift(1)
    first = prev.isna()
    start_day = np.where(first, 0, prev.fillna(-1).to_numpy() + 1)
    end_day = sd["study_day"].to_numpy() - 1
    gaps = pd.DataFrame(
        {"patient_id": sd["patient_id"].to_numpy(), "start_day": start_day, "end_day": end_day}
    )
    if summary is not None:
        last = sd.groupby("patient_id")["study_day"].max()
        after = summary["patient_id"].map(last).fillna(-1).to_numpy("int64") + 1
        tail = pd.DataFrame(
            {"patient_id": summary["patient_id"].to_numpy(), "start_day": after,
             "end_day": summary["observed_days"].to_numpy("int64") - 1}
        )  # fmt: skip
        gaps = pd.concat([gaps, tail], ignore_index=True)
    gaps["length_days"] = gaps["end_day"] - gaps["start_day"] + 1
    gaps = gaps[gaps["length_days"] > policy.gap_days]
    gaps = gaps.sort_values(["patient_id", "start_day"], kind="stable")
    return events, gaps.astype({"start_day": "int64", "end_day": "int64"}).reset_index(drop=True)


def cohort_metrics(
    tables: Mapping[str, pd.DataFrame], *, policy: CohortPolicy = CohortPolicy()
) -> dict[str, pd.DataFrame]:
    """All per-patient cohort tables from the clean ``sessions``, ``pain`` and ``patients``.

    The function the distributed engine runs on each whole-patient bucket.

    Returns
    -------
    dict
        ``summary`` (:func:`patient_summary`), ``weeks`` (:func:`patient_weeks`) and
        ``exercise_pdc`` (:func:`exercise_pdc`).
    """
    sessions, pain, patients = tables["sessions"], tables["pain"], tables["patients"]
    summary = patient_summary(sessions, pain, patients, policy=policy)
    return {
        "summary": summary,
        "weeks": patient_weeks(sessions, pain, patients, summary, policy=policy),
        "exercise_pdc": exercise_pdc(sessions, patients, summary),
    }
