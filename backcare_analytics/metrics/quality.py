"""Data-quality flags: what limits the interpretation of a patient's numbers (docs/metrics.md).

Flags are a tidy frame ``patient_id, flag, detail`` that a report prints as numbered remarks
under its tables. ``detail`` is a plain sentence holding counts and dates only, never a
patient's values or notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.metrics import grid as g
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.persistence import gap_runs
from backcare_analytics.schemas.clean import Pain, Prescriptions, Sessions
from backcare_analytics.schemas.results.quality import QUALITY_FLAGS, QualityFlags

__all__ = ["QUALITY_FLAGS", "QualityPolicy", "quality_flags", "reject_counts"]


@dataclass(frozen=True)
class QualityPolicy:
    """When a data-quality flag is raised.

    Attributes
    ----------
    min_diary_share
        ``few_diary_entries`` when the pain diary covers fewer than this share of the days (0.5).
    diary_gap_days
        ``long_diary_gap`` when the diary has a run of at least this many days without an
        entry (7: a whole week of pain trend missing).
    """

    min_diary_share: float = 0.5
    diary_gap_days: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.min_diary_share <= 1:
            raise ValueError(f"min_diary_share must be in [0, 1]; received {self.min_diary_share}")
        if self.diary_gap_days < 1:
            raise ValueError(f"diary_gap_days must be >= 1; received {self.diary_gap_days}")


def _date(day_numbers: np.ndarray) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(g.as_days(day_numbers)).strftime("%Y-%m-%d"), dtype="str")


def _num(values: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.int64)).astype("str")


def _flag(pids: pd.Index, codes: np.ndarray, flag: str, detail: pd.Series) -> pd.DataFrame:
    return g.frame(
        {
            "patient_id": g.take_str(pids, codes),
            "flag": pd.Series([flag] * len(codes), dtype="str"),
            "detail": detail.astype("str").reset_index(drop=True),
        }
    )


def _reject_counts(rejects: pd.DataFrame, pids: pd.Index) -> np.ndarray:
    counts = np.zeros(len(pids), dtype=np.int64)
    if rejects is None or "patient_id" not in rejects.columns:
        return counts
    codes = g.map_codes(rejects["patient_id"].astype("str"), pids)
    ok = codes >= 0
    if "n_rejected" in rejects.columns:
        n = rejects["n_rejected"].to_numpy(dtype=np.int64, na_value=0)
        np.add.at(counts, codes[ok], n[ok])
    else:
        counts += np.bincount(codes[ok], minlength=len(pids))
    return counts


_RAW_PATIENT = r'"patient[ _-]?id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_-]{0,63})"'


def reject_counts(rejects: pd.DataFrame) -> pd.DataFrame:
    """Refused rows per patient from the store's quarantine (``file_sha, row, raw, ...``).

    The quarantine has no patient column (the id itself may be what was refused); the id is
    read from each refused row's ``raw`` JSON when it is there and well-formed. Rows without
    one are not attributed to anybody.

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``n_rejected`` (distinct refused rows), for :func:`quality_flags`.

    Examples
    --------
    >>> rej = pd.DataFrame({"file_sha": ["f", "f", "f"], "row": [2, 2, 3],
    ...     "raw": ['{"patient_id": "P1", "reps": "x"}', '{"patient_id": "P1", "reps": "x"}',
    ...             '{"patient_id": "../x"}']})
    >>> reject_counts(rej).to_numpy().tolist()
    [['P1', 1]]
    """
    cols = ["patient_id", "n_rejected"]
    if rejects is None or rejects.empty or "raw" not in rejects.columns:
        return pd.DataFrame(
            {"patient_id": pd.Series(dtype="str"), "n_rejected": pd.Series(dtype="int64")}
        )[cols]
    keys = [c for c in ("file_sha", "row") if c in rejects.columns]
    rows = rejects.drop_duplicates(keys) if keys else rejects
    ids = rows["raw"].astype("str").str.extract(_RAW_PATIENT, flags=re.IGNORECASE)[0].dropna()
    counts = ids.astype("str").value_counts().sort_index()
    return pd.DataFrame(
        {
            "patient_id": pd.Series(counts.index, dtype="str"),
            "n_rejected": counts.to_numpy(dtype="int64"),
        }
    )


def _no_prescription(
    sp: np.ndarray, sessions: pd.DataFrame, sd: np.ndarray, prescriptions: pd.DataFrame,
    pids: pd.Index,
) -> np.ndarray:  # fmt: skip
    """Whether each session row has no prescription in force for its exercise that day."""
    exes = pd.Index(prescriptions[Prescriptions.exercise_id].unique(), dtype="str")
    n_ex = max(len(exes), 1)
    rp = g.map_codes(prescriptions[Prescriptions.patient_id], pids)
    re = g.map_codes(prescriptions[Prescriptions.exercise_id], exes)
    vf = g.days(prescriptions[Prescriptions.valid_from])
    vt = g.days(prescriptions[Prescriptions.valid_to])
    keep = (rp >= 0) & (re >= 0)
    rkey = (rp * n_ex + re)[keep] * (1 << 32) + vf[keep]
    order = np.argsort(rkey, kind="stable")
    rkey, rto = rkey[order], np.where(vt == g.NO_DAY, g.FAR_DAY, vt)[keep][order]
    se = g.map_codes(sessions[Sessions.exercise_id], exes)
    q_pe = np.where((sp >= 0) & (se >= 0), sp * n_ex + se, -1)
    q = q_pe * (1 << 32) + sd
    idx = np.searchsorted(rkey, q, side="right") - 1
    idx_c = np.clip(idx, 0, max(len(rkey) - 1, 0))
    found = (
        (idx >= 0) & (q_pe >= 0) & (rkey[idx_c] >> 32 == q_pe) & (sd < rto[idx_c])
        if len(rkey)
        else np.zeros(len(sp), dtype=bool)
    )
    return (sp >= 0) & ~found


def quality_flags(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    *,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
    policy: QualityPolicy | None = None,
) -> pd.DataFrame:
    """Caveats that limit the interpretation of each patient's metrics.

    Parameters
    ----------
    sessions, pain, patients, prescriptions
        Clean frames holding any number of patients.
    rejects
        Quarantined rows with a ``patient_id`` column (one row per refused row), or per-patient
        counts ``patient_id, n_rejected``; rows whose patient is unknown are not attributed.
        The store's quarantine has no patient column: pass counts derived from it.
    window
        The days being reported; ``None``: each programme start to the last day with any data.
    policy
        Thresholds (:class:`QualityPolicy`).

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.QualityFlags`: ``patient_id``,
        ``flag`` (one of ``QUALITY_FLAGS``), ``detail``; sorted by patient then flag.

    Notes
    -----
    Over the days ``[max(programme start, window start), window end]``:
    ``no_data`` (no session and no diary entry), ``few_diary_entries`` (diary days / days
    ``< min_diary_share``), ``long_diary_gap`` (a run of ``>= diary_gap_days`` days without a
    diary entry, counted from the first day), ``quarantined_rows`` (rows refused at import),
    ``sessions_after_window``, ``sessions_before_start`` (session rows not counted),
    ``no_prescription`` (session rows for an exercise with no prescription in force that day),
    ``unregistered_patient`` (rows for an id not in ``patients``).

    References
    ----------
    Frost R et al. (2017), Arch Phys Med Rehabil 98:1241-1256 (diary completeness as a limit of
    self-reported adherence).

    Examples
    --------
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "programme_start": [pd.Timestamp("2026-03-02")]})
    >>> rx = pd.DataFrame({"patient_id": ["P1"], "exercise_id": ["bridge"],
    ...     "valid_from": [pd.Timestamp("2026-03-02")], "valid_to": [pd.NaT]})
    >>> ses = pd.DataFrame({"patient_id": ["P1", "P1"], "exercise_id": ["bridge", "bridge"],
    ...     "day": pd.to_datetime(["2026-03-01", "2026-03-03"])})
    >>> pain = pd.DataFrame({"patient_id": ["P1"], "day": [pd.Timestamp("2026-03-03")]})
    >>> f = quality_flags(ses, pain, pts, rx, window=Window.iso_week("2026-W10"),
    ...                   policy=QualityPolicy(diary_gap_days=5))
    >>> for row in f.itertuples():
    ...     print(row.flag, "|", row.detail)
    few_diary_entries | Pain diary on 1 of 7 days (2026-03-02 to 2026-03-08).
    long_diary_gap | 5 days in a row without a pain-diary entry, from 2026-03-04.
    sessions_before_start | 1 session row(s) dated before the programme start (2026-03-02) are not counted.
    """
    policy = policy or QualityPolicy()
    pids, start = g.patients_index(patients)
    n_pat = len(pids)
    sp = g.map_codes(sessions[Sessions.patient_id], pids)
    sd = g.days(sessions[Sessions.day])
    pp = g.map_codes(pain[Pain.patient_id], pids)
    pdays = g.days(pain[Pain.day])
    if window is not None:
        first = np.maximum(start, g.day_number(window.start))
        last = np.full(n_pat, g.day_number(window.end), dtype=np.int64)
    else:
        ends = np.r_[sd[(sp >= 0) & (sd != g.NO_DAY)], pdays[(pp >= 0) & (pdays != g.NO_DAY)]]
        end = int(ends.max()) if len(ends) else (int(start.max()) if n_pat else 0)
        first, last = start, np.full(n_pat, end, dtype=np.int64)
    span = np.maximum(last - first + 1, 0)
    frames: list[pd.DataFrame] = []
    sc = np.where(sp >= 0, sp, 0)
    s_in = (sp >= 0) & (sd >= first[sc]) & (sd <= last[sc]) if n_pat else sp >= 0
    diary = gap_runs(pp, pdays, first, last)
    n_diary = diary["logged"]
    n_sess_days = gap_runs(np.where(s_in, sp, -1), sd, first, last)["logged"]

    active = span > 0
    none = active & (n_diary == 0) & (n_sess_days == 0)
    c = np.flatnonzero(none)
    frames.append(_flag(pids, c, "no_data", "No sessions and no pain-diary entries from "
                        + _date(first[c]) + " to " + _date(last[c]) + "."))  # fmt: skip
    few = active & ~none & (n_diary < policy.min_diary_share * span)
    c = np.flatnonzero(few)
    frames.append(_flag(pids, c, "few_diary_entries", "Pain diary on " + _num(n_diary[c])
                        + " of " + _num(span[c]) + " days (" + _date(first[c]) + " to "
                        + _date(last[c]) + ")."))  # fmt: skip
    long_gap = (diary["length"] >= policy.diary_gap_days) & ~none[diary["patient"]]
    gp_, first_idx = np.unique(diary["patient"][long_gap], return_index=True)
    gap_first = diary["first"][long_gap][first_idx]
    frames.append(_flag(pids, gp_, "long_diary_gap", _num(diary["length"][long_gap][first_idx])
                        + " days in a row without a pain-diary entry, from "
                        + _date(gap_first) + "."))  # fmt: skip
    n_rej = _reject_counts(rejects, pids)
    c = np.flatnonzero(n_rej > 0)
    frames.append(_flag(pids, c, "quarantined_rows", _num(n_rej[c])
                        + " row(s) from this patient's files were refused at import;"
                        " see the import ledger."))  # fmt: skip
    if window is not None:
        after = np.bincount(sp[(sp >= 0) & (sd > last[sc])], minlength=n_pat)
        c = np.flatnonzero(after > 0)
        frames.append(_flag(pids, c, "sessions_after_window", _num(after[c])
                            + " session row(s) after the window end (" + _date(last[c])
                            + ") are not counted."))  # fmt: skip
    before = np.bincount(sp[(sp >= 0) & (sd < start[sc])], minlength=n_pat)
    c = np.flatnonzero(before > 0)
    frames.append(_flag(pids, c, "sessions_before_start", _num(before[c])
                        + " session row(s) dated before the programme start ("
                        + _date(start[c]) + ") are not counted."))  # fmt: skip
    no_rx = _no_prescription(sp, sessions, sd, prescriptions, pids) & s_in & (sd >= start[sc])
    n_no_rx = np.bincount(sp[no_rx], minlength=n_pat)
    c = np.flatnonzero(n_no_rx > 0)
    frames.append(_flag(pids, c, "no_prescription", _num(n_no_rx[c])
                        + " session row(s) for an exercise with no prescription in force"
                        " that day are not counted."))  # fmt: skip
    # Rows for ids not registered: the id is all we can name.
    unreg = pd.concat(
        [sessions.loc[sp < 0, Sessions.patient_id], pain.loc[pp < 0, Pain.patient_id]]
    ).astype("str")
    counts = unreg.value_counts().sort_index()
    frames.append(
        pd.DataFrame(
            {
                "patient_id": pd.Series(counts.index, dtype="str"),
                "flag": pd.Series(["unregistered_patient"] * len(counts), dtype="str"),
                "detail": (
                    _num(counts.to_numpy())
                    + " session or diary row(s) for this id, which is not registered."
                ).astype("str"),
            }
        )
    )
    out = pd.concat(frames, ignore_index=True)
    order = {f: i for i, f in enumerate(QUALITY_FLAGS)}
    rank = out["flag"].map(order).to_numpy()
    idx = np.lexsort((rank, out["patient_id"].to_numpy(dtype=object)))
    out = out.iloc[idx].reset_index(drop=True)
    for col in ("patient_id", "flag", "detail"):
        out[col] = out[col].astype("str")
    return g.checked(out, QualityFlags, "quality_flags output")
