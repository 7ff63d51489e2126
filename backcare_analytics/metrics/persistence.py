"""Persistence, dropout and gaps in logging, per patient (see docs/metrics.md).

A *log* here is any session row on a local day; a *gap* is a run of consecutive programme days
without one. Diary entries do not count as logs (diary completeness is reported apart, in
:func:`~backcare_analytics.metrics.adherence_summary`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backcare_analytics.metrics import grid as g
from backcare_analytics.metrics.adherence import AdherencePolicy
from backcare_analytics.metrics.params import Window
from backcare_analytics.schemas.clean import Sessions
from backcare_analytics.schemas.results.adherence import GapHistogram, Persistence

__all__ = ["gap_histogram", "gap_runs", "persistence"]


def _gaps(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    window: Window | None,
    as_of: pd.Timestamp | None = None,
) -> tuple[pd.Index, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every gap of every patient between programme start and the as-of day.

    Returns the patient ids, their start days, the as-of day numbers, and the gaps as arrays
    ``patient``, ``first`` (first day without a log), ``length`` (days), in patient then day
    order; plus per patient ``logged`` (distinct days), ``first_log`` and ``last_log``.
    """
    pids, start = g.patients_index(patients)
    n_pat = len(pids)
    sp = g.map_codes(sessions[Sessions.patient_id], pids)
    sd = g.days(sessions[Sessions.day])
    known = (sp >= 0) & (sd != g.NO_DAY)
    if window is not None:
        as_of_day = g.day_number(window.end)
    elif as_of is not None:
        as_of_day = g.day_number(pd.Timestamp(as_of))
    elif known.any():
        as_of_day = int(sd[known].max())
    else:
        as_of_day = int(start.max()) if n_pat else 0
    as_of = np.full(n_pat, as_of_day, dtype=np.int64)
    gaps = gap_runs(np.where(known, sp, -1), sd, start, as_of)
    return pids, start, as_of, gaps


def gap_runs(
    patient: np.ndarray, day: np.ndarray, start: np.ndarray, as_of: np.ndarray
) -> dict[str, np.ndarray]:
    """Runs of days without an event, per patient, between ``start`` and ``as_of`` (inclusive).

    ``patient`` holds codes (``-1`` ignored) and ``day`` day numbers of the events. Returns
    ``patient``, ``first`` and ``length`` of each gap (patient then day order), and per patient
    ``logged`` (distinct event days), ``first_log`` and ``last_log`` (``NO_DAY`` when none).
    """
    n_pat = len(start)
    grid = g.DayGrid(*g.expand_ranges(start, as_of), n_pat)  # contiguous: O(1) lookups
    pos = grid.locate(patient, day)
    pos[pos < 0] = len(grid)
    mark = np.zeros(len(grid) + 1, dtype=bool)
    mark[pos] = True
    mark = mark[:-1]
    key, gday = grid.key, grid.day
    logged = np.bincount(key[mark], minlength=n_pat)
    hit = np.flatnonzero(mark)
    first_log = np.full(n_pat, g.NO_DAY, dtype=np.int64)
    last_log = np.full(n_pat, g.NO_DAY, dtype=np.int64)
    if len(hit):
        hk = key[hit]
        starts = g.segment_starts(hk)
        ends = np.r_[starts[1:], len(hk)] - 1
        first_log[hk[starts]] = gday[hit[starts]]
        last_log[hk[ends]] = gday[hit[ends]]
    # Gaps: maximal runs of unmarked days within a patient.
    n = len(key)
    begin = ~mark
    if n > 1:
        begin[1:] &= mark[:-1] | (key[1:] != key[:-1])
    run_first = np.flatnonzero(begin)
    run_id = np.cumsum(begin) - 1
    lengths = np.bincount(run_id[~mark], minlength=len(run_first))
    return {
        "patient": key[run_first],
        "first": gday[run_first],
        "length": lengths.astype(np.int64),
        "logged": logged,
        "first_log": first_log,
        "last_log": last_log,
    }


def persistence(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None = None,
    policy: AdherencePolicy | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """How long each patient kept logging before a long gap, and whether they dropped out.

    Parameters
    ----------
    sessions, patients
        Clean frames holding any number of patients.
    window
        Its end is the as-of day; ``None``: ``as_of``.
    policy
        ``persistence_gap_days`` (3) and ``dropout_days`` (21).
    as_of
        The as-of day (a naive local day) when there is no window; ``None``: the last day
        logged by anyone in ``sessions``. A run over patient partitions passes the cohort's
        last day so that every partition counts to the same day.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.Persistence`, one row per
        registered patient: ``patient_id``, ``programme_start``, ``as_of``,
        ``days_in_programme`` (start to as-of, inclusive), ``days_logged``, ``first_log_day``,
        ``last_log_day``, ``longest_gap_days``, ``persistence_days``, ``persistent``,
        ``days_since_last_log``, ``dropout``.

    Notes
    -----
    ``persistence_days`` = days from the programme start to the first day of the first gap
    longer than ``persistence_gap_days`` (0 when the programme started with one); when there
    is none, ``persistent`` is true and ``persistence_days = days_in_programme`` (censored).
    ``days_since_last_log = as_of - last_log_day`` (``days_in_programme`` without any log);
    ``dropout = days_since_last_log >= dropout_days``.

    References
    ----------
    Cramer JA, Roy A, Burrell A, et al. (2008). Medication compliance and persistence:
    terminology and definitions. Value Health 11:44-47 (persistence until a permissible gap is
    exceeded). Peterson AM et al. (2007), Value Health 10:3-12.

    Examples
    --------
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "programme_start": [pd.Timestamp("2026-03-02")]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"] * 3,
    ...     "day": pd.to_datetime(["2026-03-02", "2026-03-03", "2026-03-08"])})
    >>> p = persistence(ses, pts, window=Window(end="2026-03-31", days=30))
    >>> p[["persistence_days", "longest_gap_days", "days_since_last_log", "dropout"]].to_numpy().tolist()
    [[2, 23, 23, True]]
    """
    policy = policy or AdherencePolicy.from_protocol()
    pids, start, as_of_d, gp = _gaps(sessions, patients, window, as_of)
    n_pat = len(pids)
    span = np.maximum(as_of_d - start + 1, 0)
    longest = np.zeros(n_pat, dtype=np.int64)
    np.maximum.at(longest, gp["patient"], gp["length"])
    long_gap = gp["length"] > policy.persistence_gap_days
    lp, first_idx = np.unique(gp["patient"][long_gap], return_index=True)
    persist = span.copy()
    persist[lp] = gp["first"][long_gap][first_idx] - start[lp]
    persistent = np.ones(n_pat, dtype=bool)
    persistent[lp] = False
    has = gp["logged"] > 0
    since = np.where(has, as_of_d - gp["last_log"], span)
    since = np.maximum(since, 0)
    out = g.frame(
        {
            "patient_id": pd.Series(pids, dtype="str"),
            "programme_start": g.as_days(start),
            "as_of": g.as_days(as_of_d),
            "days_in_programme": span,
            "days_logged": gp["logged"].astype(np.int64),
            "first_log_day": g.as_days(gp["first_log"]),
            "last_log_day": g.as_days(gp["last_log"]),
            "longest_gap_days": longest,
            "persistence_days": np.maximum(persist, 0),
            "persistent": persistent,
            "days_since_last_log": since,
            "dropout": since >= policy.dropout_days,
        }
    )
    return g.checked(out, Persistence, "persistence output")


def gap_histogram(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """How many gaps in logging of each length each patient had.

    Parameters
    ----------
    sessions, patients
        Clean frames holding any number of patients.
    window
        Count the part of each gap inside the window; ``None``: from each programme start to
        ``as_of``.
    as_of
        The as-of day without a window; ``None``: the last day logged by anyone.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.GapHistogram`:
        ``patient_id``, ``gap_days``, ``count`` (patients without gaps have no rows).

    Notes
    -----
    A gap is a maximal run of programme days without a logged session, including one still
    open at the as-of day.

    Examples
    --------
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "programme_start": [pd.Timestamp("2026-03-02")]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"] * 4,
    ...     "day": pd.to_datetime(["2026-03-02", "2026-03-04", "2026-03-06", "2026-03-10"])})
    >>> gap_histogram(ses, pts).to_string(index=False)
    'patient_id  gap_days  count\\n        P1         1      2\\n        P1         3      1'
    """
    pids, _start, _as_of, gp = _gaps(sessions, patients, window, as_of)
    first, length, patient = gp["first"], gp["length"], gp["patient"]
    if window is not None:
        w0 = g.day_number(window.start)
        clipped = np.maximum(first, w0)
        length = length - (clipped - first)
        keep = length > 0
        patient, length = patient[keep], length[keep]
    key = np.unique(patient * (1 << 32) + length, return_counts=True)
    out = g.frame(
        {
            "patient_id": g.take_str(pids, key[0] >> 32),
            "gap_days": (key[0] & ((1 << 32) - 1)).astype(np.int64),
            "count": key[1].astype(np.int64),
        }
    )
    return g.checked(out, GapHistogram, "gap_histogram output")
