"""Adherence: dose ratio per exercise and day, and its roll-ups (see docs/metrics.md).

The daily table (:func:`adherence_daily`) is the base; every roll-up takes it:
:func:`adherence_summary` (PDC and component adherence over a window or per ISO week, with
diary completeness kept apart), :func:`adherence_rolling` (trailing 7- and 28-day PDC) and
:func:`adherence_streaks`. Logging gaps, persistence and dropout are per patient and take the
session log directly (:mod:`backcare_analytics.metrics.persistence`); start-time consistency
is in :mod:`backcare_analytics.metrics.timing`.

All of it is vectorised across patients: ids become integer codes once, days become integer day
numbers, and sums run as ``np.bincount`` over a (key, day) grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from backcare_analytics.metrics import _grid as g
from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.schemas import validate
from backcare_analytics.schemas.clean import Pain, Patients, Prescriptions, Sessions
from backcare_analytics.schemas.results.adherence import (
    ROUTINE,
    AdherenceDaily,
    AdherenceRolling,
    AdherenceStreaks,
    AdherenceSummary,
)

__all__ = [
    "ROUTINE",
    "AdherencePolicy",
    "adherence_daily",
    "adherence_rolling",
    "adherence_streaks",
    "adherence_summary",
]


@dataclass(frozen=True)
class AdherencePolicy:
    """Thresholds of the adherence metrics.

    Attributes
    ----------
    dose_met_ratio
        A day is met when performed / prescribed minimum >= this (protocol ``rules``; 0.8).
    persistence_gap_days
        Persistence lasts until the first gap in logging longer than this many days (3).
    dropout_days
        A patient has dropped out after this many days without a logged session (21).
    timing_window_min
        A session is "on time" within this many minutes of the patient's circular median
        start time (protocol ``frequency``; 60).
    """

    dose_met_ratio: float = 0.8
    persistence_gap_days: int = 3
    dropout_days: int = 21
    timing_window_min: int = 60

    def __post_init__(self) -> None:
        if not 0 < self.dose_met_ratio <= 1:
            raise ValueError(f"dose_met_ratio must be in (0, 1]; received {self.dose_met_ratio}")
        for name in ("persistence_gap_days", "dropout_days", "timing_window_min"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; received {getattr(self, name)}")

    @classmethod
    def from_protocol(cls, protocol: Protocol | None = None) -> AdherencePolicy:
        """The policy a protocol's ``rules`` and ``frequency`` imply (defaults elsewhere)."""
        protocol = protocol or load_protocol()
        return cls(
            dose_met_ratio=protocol.rules.dose_met_ratio,
            timing_window_min=protocol.frequency.timing_window_min,
        )


def _patients_index(patients: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
    """Sorted distinct patient ids and each one's programme start day number."""
    first = patients.drop_duplicates(Patients.patient_id)
    order = np.argsort(first[Patients.patient_id].to_numpy(dtype=object), kind="stable")
    first = first.iloc[order]
    pids = pd.Index(first[Patients.patient_id].astype("str"))
    return pids, g.days(first[Patients.programme_start])


def adherence_daily(
    sessions: pd.DataFrame,
    prescriptions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None = None,
    policy: AdherencePolicy | None = None,
) -> pd.DataFrame:
    """Performed volume against the prescribed minimum, per patient, exercise and local day.

    One row for every day on which an exercise is prescribed, from the later of the programme
    start and the window start to the window end (or, without a window, to the patient's last
    logged day): days without a session are rows too (``done`` false, ratios 0).

    Parameters
    ----------
    sessions, prescriptions, patients
        Clean frames (:class:`~backcare_analytics.schemas.Sessions`, ``Prescriptions``,
        ``Patients``) holding any number of patients. Sessions of unregistered patients, of
        exercises without a prescription in force and outside the grid are not counted
        (:func:`~backcare_analytics.metrics.quality_flags` reports them).
    window
        The local days to cover; ``None`` for each patient's whole programme so far.
    policy
        Thresholds; default from the protocol's ``rules``.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.AdherenceDaily`, sorted by
        patient, exercise and day, columns:

        - ``patient_id``, ``exercise_id``, ``day`` — the key.
        - ``logged`` — any session row of this patient that day (any exercise).
        - ``done`` — this exercise performed at all (frequency component).
        - ``volume_performed`` — reps (breaths) performed, the smaller of the two sides.
        - ``volume_prescribed`` — prescribed minimum sets x reps (per side where sided).
        - ``hold_mean_s`` — rep-weighted mean recorded hold; missing when none recorded.
        - ``hold_prescribed_s`` — prescribed hold; missing when the exercise has none.
        - ``volume_ratio`` — ``volume_performed / volume_prescribed`` (uncapped).
        - ``hold_ratio`` — ``hold_mean_s / hold_prescribed_s`` (uncapped; 0 when not done;
          missing without a prescribed hold, or done without a recorded hold).
        - ``dose_ratio_raw`` — ``volume_ratio x hold_ratio`` (uncapped; see Notes).
        - ``dose_ratio`` — ``min(dose_ratio_raw, 1)``.
        - ``met``, ``volume_met``, ``hold_met`` — each ratio >= ``policy.dose_met_ratio``
          (``hold_met`` missing where ``hold_ratio`` is).

    Notes
    -----
    For one patient, exercise and day with prescription sets ``S``, reps ``R`` and hold ``H``:

    - each session row contributes ``v = sets x reps`` (a missing ``sets`` counts 1, a missing
      ``reps`` -- a hold logged alone -- counts one repetition per set) to the **left** side
      unless its side is ``right``, and to the **right** side unless it is ``left``: a ``both``
      (or ``none``) row counts for both sides. ``volume_performed = min(left, right)``, so a
      one-sided exercise (knee to chest one knee at a time, sciatic floss, low back roll) is
      done only when each side is; an exercise without sides has left = right.
    - ``volume_ratio = volume_performed / (S x R)``.
    - ``hold_mean_s = sum(v x hold_s) / sum(v)`` over rows with a recorded hold;
      ``hold_ratio = hold_mean_s / H``.
    - ``dose_ratio_raw = volume_ratio x hold_ratio`` when a hold is prescribed and recorded,
      i.e. seconds held / seconds prescribed (time under load); else ``volume_ratio`` (a hold
      that was not recorded is taken as prescribed, and ``hold_met`` stays missing).
    - ``met = dose_ratio_raw >= 0.8`` (Bollen et al. 2014; components apart: frequency, volume,
      hold).

    References
    ----------
    Bollen JC, Dean SG, Siegert RJ, Howe TE, Goodwin VA (2014). A systematic review of measures
    of self-reported adherence to unsupervised home-based rehabilitation exercise programmes.
    BMJ Open 4:e005044. Frost R, Levati S, McClurg D, Brady M, Williams B (2017). What adherence
    measures should be used in trials of home-based rehabilitation interventions? A systematic
    review. Arch Phys Med Rehabil 98:1241-1256.

    Examples
    --------
    >>> import backcare_analytics as bca
    >>> from backcare_analytics.metrics import adherence_daily
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["Europe/Amsterdam"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")], "clinician": [None]})
    >>> rx = bca.build_prescriptions(pts)
    >>> ses = pd.DataFrame({"patient_id": ["P1", "P1"], "exercise_id": ["bridge", "bridge"],
    ...     "day": pd.to_datetime(["2026-03-02", "2026-03-03"]), "side": ["none", "none"],
    ...     "sets": pd.array([1, 1], dtype="Int64"), "reps": pd.array([5, 2], dtype="Int64"),
    ...     "hold_s": pd.array([15.0, 15.0], dtype="Float64")})
    >>> d = adherence_daily(ses, rx, pts)
    >>> d.loc[d.exercise_id == "bridge", ["day", "dose_ratio_raw", "dose_ratio", "met"]]
    ... # doctest: +NORMALIZE_WHITESPACE
              day  dose_ratio_raw  dose_ratio    met
    2  2026-03-02        1.666667    1.000000   True
    3  2026-03-03        0.666667    0.666667  False
    """
    policy = policy or AdherencePolicy.from_protocol()
    thr = policy.dose_met_ratio - g.EPS
    pids, start = _patients_index(patients)
    n_pat = len(pids)

    sp = g.map_codes(sessions[Sessions.patient_id], pids)
    sd = g.days(sessions[Sessions.day])
    known = (sp >= 0) & (sd != g.NO_DAY)

    # Grid bounds per patient: [max(start, window start), window end or last logged day].
    gstart = start.copy()
    if window is not None:
        gstart = np.maximum(gstart, g.day_number(window.start))
        gend = np.full(n_pat, g.day_number(window.end), dtype=np.int64)
    else:
        gend = np.full(n_pat, g.NO_DAY, dtype=np.int64)
        np.maximum.at(gend, sp[known], sd[known])
    gend[start == g.NO_DAY] = g.NO_DAY

    # Prescription segments clipped to the grid, expanded to one row per day.
    rp = g.map_codes(prescriptions[Prescriptions.patient_id], pids)
    exes = pd.Index(
        prescriptions.loc[rp >= 0, Prescriptions.exercise_id].unique(), dtype="str"
    ).sort_values()
    n_ex = max(len(exes), 1)
    re = g.map_codes(prescriptions[Prescriptions.exercise_id], exes)
    vf = g.days(prescriptions[Prescriptions.valid_from])
    vt = g.days(prescriptions[Prescriptions.valid_to])
    vlast = np.where(vt == g.NO_DAY, g.FAR_DAY, vt - 1)
    ok_rx = (rp >= 0) & (re >= 0)
    rp_safe = np.where(ok_rx, rp, 0)
    seg_first = np.maximum(vf, gstart[rp_safe]) if n_pat else vf
    seg_last = np.minimum(vlast, gend[rp_safe]) if n_pat else vlast
    open_grid = (gend[rp_safe] != g.NO_DAY) if n_pat else np.zeros(len(rp), dtype=bool)
    seg_last = np.where(ok_rx & open_grid & (seg_first != g.NO_DAY), seg_last, seg_first - 1)
    order = np.lexsort((vf, re, rp))
    rows, gday = g.expand_ranges(seg_first[order], seg_last[order])
    rows = order[rows]
    gpe = rp[rows] * n_ex + re[rows]
    # Overlapping prescriptions (not made by build_prescriptions): the later valid_from wins.
    if len(gpe) > 1 and np.any((gpe[1:] == gpe[:-1]) & (gday[1:] <= gday[:-1])):
        o = np.lexsort((vf[rows], gday, gpe))
        rows, gday, gpe = rows[o], gday[o], gpe[o]
        last = np.r_[(gpe[1:] != gpe[:-1]) | (gday[1:] != gday[:-1]), True]
        rows, gday, gpe = rows[last], gday[last], gpe[last]
    grid = g.DayGrid(gpe, gday, n_pat * n_ex)
    n = len(grid)

    # Sessions summed onto the grid, side by side.
    se = g.map_codes(sessions[Sessions.exercise_id], exes)
    spe = np.where(known & (se >= 0), sp * n_ex + se, -1)
    pos = grid.locate(spe, sd)
    hit = pos >= 0
    sets = sessions[Sessions.sets].to_numpy(dtype="float64", na_value=1.0)
    reps = sessions[Sessions.reps].to_numpy(dtype="float64", na_value=1.0)
    vol = sets * reps
    side = sessions[Sessions.side]
    not_right = (side != "right").to_numpy(dtype=bool, na_value=True)
    not_left = (side != "left").to_numpy(dtype=bool, na_value=True)
    hold = sessions[Sessions.hold_s].to_numpy(dtype="float64", na_value=np.nan)
    has_hold = ~np.isnan(hold)
    p = pos[hit]
    left = np.bincount(p, (vol * not_right)[hit], minlength=n)
    right = np.bincount(p, (vol * not_left)[hit], minlength=n)
    hold_w = np.bincount(p, np.where(has_hold, vol, 0.0)[hit], minlength=n)
    hold_vs = np.bincount(p, np.where(has_hold, vol * np.nan_to_num(hold), 0.0)[hit], minlength=n)

    # Logged: any session row of the patient that day.
    gp = rows_p = rp[rows]
    pgrid = g.DayGrid(*_patient_days(gstart, gend), n_pat)
    logged_pd = np.zeros(len(pgrid), dtype=bool)
    ppos = pgrid.locate(np.where(known, sp, -1), sd)
    logged_pd[ppos[ppos >= 0]] = True
    logged = logged_pd[pgrid.locate(rows_p, gday)] if n else np.zeros(0, dtype=bool)

    rx_sets = prescriptions[Prescriptions.sets].to_numpy(dtype="float64", na_value=1.0)[rows]
    rx_reps = prescriptions[Prescriptions.reps].to_numpy(dtype="float64", na_value=1.0)[rows]
    rx_hold = prescriptions[Prescriptions.hold_s].to_numpy(dtype="float64", na_value=np.nan)[rows]
    prescribed = rx_sets * rx_reps
    performed = np.minimum(left, right)
    done = np.maximum(left, right) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        hold_mean = np.where(hold_w > 0, hold_vs / np.where(hold_w > 0, hold_w, 1.0), np.nan)
        volume_ratio = performed / prescribed
        hold_rx = ~np.isnan(rx_hold)
        hold_ratio = np.where(hold_rx, np.where(done, hold_mean / rx_hold, 0.0), np.nan)
    dose_raw = volume_ratio * np.where(np.isnan(hold_ratio), 1.0, hold_ratio)
    hold_met = pd.array(hold_ratio >= thr, dtype="boolean")
    hold_met[np.isnan(hold_ratio)] = pd.NA

    out = pd.DataFrame(
        {
            AdherenceDaily.patient_id: g.take_str(pids, gp),
            AdherenceDaily.exercise_id: g.take_str(exes, re[rows]),
            AdherenceDaily.day: g.as_days(gday),
            AdherenceDaily.logged: logged,
            AdherenceDaily.done: done,
            AdherenceDaily.volume_performed: performed,
            AdherenceDaily.volume_prescribed: prescribed,
            AdherenceDaily.hold_mean_s: hold_mean,
            AdherenceDaily.hold_prescribed_s: rx_hold,
            AdherenceDaily.volume_ratio: volume_ratio,
            AdherenceDaily.hold_ratio: hold_ratio,
            AdherenceDaily.dose_ratio_raw: dose_raw,
            AdherenceDaily.dose_ratio: np.minimum(dose_raw, 1.0),
            AdherenceDaily.met: dose_raw >= thr,
            AdherenceDaily.volume_met: volume_ratio >= thr,
            AdherenceDaily.hold_met: hold_met,
        }
    )
    return validate(out, AdherenceDaily, what="adherence_daily output")


def _patient_days(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(patient code, day) rows covering each patient's ``[first, last]``."""
    last = np.where((first == g.NO_DAY) | (last == g.NO_DAY), first - 1, last)
    return g.expand_ranges(first, last)


# --------------------------------------------------------------------------------------------
# Roll-ups of the daily table
# --------------------------------------------------------------------------------------------


@dataclass
class _Long:
    """The daily table as arrays, exercises plus the routine, sorted by (key, day)."""

    pids: pd.Index
    exes: pd.Index  # exercise ids, ROUTINE last
    grid: g.DayGrid  # key = patient * len(exes) + exercise
    met: np.ndarray
    done: np.ndarray
    volume_met: np.ndarray
    hold_has: np.ndarray
    hold_met: np.ndarray
    ratio: np.ndarray
    ratio_raw: np.ndarray
    logged: np.ndarray

    @property
    def patient(self) -> np.ndarray:
        return self.grid.key // len(self.exes)

    @property
    def exercise(self) -> np.ndarray:
        return self.grid.key % len(self.exes)


def _long(daily: pd.DataFrame) -> _Long:
    """Codes, arrays and the routine rows (every exercise in force that day) of a daily table."""
    pc, pids = g.factorize_sorted(daily[AdherenceDaily.patient_id])
    ec, exes = g.factorize_sorted(daily[AdherenceDaily.exercise_id])
    exes = pd.Index([*exes, ROUTINE], dtype="str")
    n_ex = len(exes)
    day = g.days(daily[AdherenceDaily.day])
    cols = {
        "met": daily[AdherenceDaily.met].to_numpy(dtype=bool),
        "done": daily[AdherenceDaily.done].to_numpy(dtype=bool),
        "volume_met": daily[AdherenceDaily.volume_met].to_numpy(dtype=bool),
        "hold_has": daily[AdherenceDaily.hold_prescribed_s].notna().to_numpy(dtype=bool),
        "hold_met": daily[AdherenceDaily.hold_met].to_numpy(dtype=bool, na_value=False),
        "ratio": daily[AdherenceDaily.dose_ratio].to_numpy(dtype="float64"),
        "ratio_raw": daily[AdherenceDaily.dose_ratio_raw].to_numpy(dtype="float64"),
        "logged": daily[AdherenceDaily.logged].to_numpy(dtype=bool),
    }
    # Routine: one row per (patient, day), via a (patient, day) grid.
    first = np.full(len(pids), g.NO_DAY, dtype=np.int64)
    last = np.full(len(pids), g.NO_DAY, dtype=np.int64)
    if len(day):
        first[:] = np.iinfo(np.int64).max
        np.minimum.at(first, pc, day)
        np.maximum.at(last, pc, day)
    pgrid = g.DayGrid(*_patient_days(first, last), len(pids))
    ppos = pgrid.locate(pc, day)
    m = len(pgrid)
    count = np.bincount(ppos, minlength=m)
    present = count > 0

    def n_true(x: np.ndarray) -> np.ndarray:
        return np.bincount(ppos[x], minlength=m)

    hold_n = n_true(cols["hold_has"])
    routine = {
        "met": n_true(cols["met"]) == count,
        "done": n_true(cols["done"]) == count,
        "volume_met": n_true(cols["volume_met"]) == count,
        "hold_has": hold_n > 0,
        "hold_met": (hold_n > 0) & (n_true(cols["hold_met"] & cols["hold_has"]) == hold_n),
        "ratio": np.bincount(ppos, cols["ratio"], minlength=m) / np.maximum(count, 1),
        "ratio_raw": np.bincount(ppos, cols["ratio_raw"], minlength=m) / np.maximum(count, 1),
        "logged": n_true(cols["logged"]) > 0,
    }
    key = np.r_[pc * n_ex + ec, pgrid.key[present] * n_ex + (n_ex - 1)]
    allday = np.r_[day, pgrid.day[present]]
    order = np.lexsort((allday, key))
    arrays = {k: np.r_[cols[k], routine[k][present]][order] for k in cols}
    grid = g.DayGrid(key[order], allday[order], len(pids) * n_ex)
    return _Long(pids=pids, exes=exes, grid=grid, **arrays)


def _diary_days(long: _Long, pain: pd.DataFrame | None) -> np.ndarray:
    """Whether each row of ``long`` is a day with a pain-diary entry."""
    if pain is None or len(long.grid) == 0:
        return np.zeros(len(long.grid), dtype=bool)
    n_ex = len(long.exes)
    pp = g.map_codes(pain[Pain.patient_id], long.pids)
    pd_ = g.days(pain[Pain.day])
    # Look each diary entry up on the routine rows (one per patient-day in the grid).
    pos = long.grid.locate(np.where(pp >= 0, pp * n_ex + (n_ex - 1), -1), pd_)
    routine_diary = np.zeros(len(long.grid), dtype=bool)
    routine_diary[pos[pos >= 0]] = True
    # Spread to every exercise row of the same patient-day.
    pgrid_pos = long.grid.locate(long.patient * n_ex + (n_ex - 1), long.grid.day)
    return routine_diary[pgrid_pos]


def _keys_frame(long: _Long, key: np.ndarray) -> dict[str, pd.Series]:
    n_ex = len(long.exes)
    return {
        "patient_id": g.take_str(long.pids, key // n_ex),
        "exercise_id": g.take_str(long.exes, key % n_ex),
    }


def adherence_summary(
    daily: pd.DataFrame,
    pain: pd.DataFrame | None = None,
    *,
    window: Window | None = None,
    by: Literal["window", "iso_week"] = "window",
) -> pd.DataFrame:
    """Proportion of days covered and component adherence per patient and exercise (and the
    full routine), over a window or per ISO week, with diary completeness beside it.

    Parameters
    ----------
    daily
        Output of :func:`adherence_daily`.
    pain
        The clean pain diary (:class:`~backcare_analytics.schemas.Pain`), for diary
        completeness and the observed-days view; ``None`` counts no diary day.
    window
        Keep only these days of ``daily``; ``None`` keeps all.
    by
        ``"window"``: one period per patient (``period`` is the window's label, or ``"all"``);
        ``"iso_week"``: one period per ISO week (``"2026-W10"``).

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.AdherenceSummary`, one row per
        patient x exercise (``exercise_id`` ``"_routine"`` for the full routine) x period:
        ``period``, ``period_start``, ``period_end``; day counts ``days`` (days of the period
        in the patient's grid), ``days_logged`` (any session), ``days_diary`` (a diary entry),
        ``days_observed`` (either), ``days_done``, ``days_met``, ``days_volume_met``,
        ``days_hold`` (a hold prescribed), ``days_hold_met``; and ``pdc``, ``pdc_observed``,
        ``frequency_share``, ``volume_share``, ``hold_share``, ``diary_completeness``,
        ``mean_dose_ratio`` (capped), ``mean_dose_ratio_raw``.

    Notes
    -----
    ``pdc = days_met / days`` (a missing log counts as not done);
    ``pdc_observed = days_met / days_observed`` (only days with a session or diary entry;
    missing when there are none); ``frequency_share = days_done / days``;
    ``volume_share = days_volume_met / days``; ``hold_share = days_hold_met / days_hold``;
    ``diary_completeness = days_diary / days``. A routine day is met (done, volume met) when
    every exercise in force that day is; its dose ratio is the mean of the exercises' ratios.

    References
    ----------
    Peterson AM, Nau DP, Cramer JA, et al. (2007). A checklist for medication compliance and
    persistence studies using retrospective databases. Value Health 10:3-12 (ISPOR; PDC).

    Examples
    --------
    >>> import backcare_analytics as bca
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-04")], "clinician": [None]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"], "exercise_id": ["breathing"],
    ...     "day": [pd.Timestamp("2026-03-05")], "side": ["none"],
    ...     "sets": pd.array([1], dtype="Int64"), "reps": pd.array([10], dtype="Int64"),
    ...     "hold_s": pd.array([None], dtype="Float64")})
    >>> d = bca.adherence_daily(ses, bca.build_prescriptions(pts), pts,
    ...                         window=bca.Window.iso_week("2026-W10"))
    >>> s = bca.adherence_summary(d, by="iso_week")
    >>> s.loc[s.exercise_id == "breathing", ["period", "days", "days_met", "pdc"]]
    ... # doctest: +NORMALIZE_WHITESPACE
        period  days  days_met   pdc
    0  2026-W10     5         1   0.2
    """
    if window is not None:
        daily = daily[window.contains(daily[AdherenceDaily.day])]
    long = _long(daily)
    diary = _diary_days(long, pain)
    key, day = long.grid.key, long.grid.day
    base = int(day.min()) - 7 if len(day) else 0
    if by == "iso_week":
        period = day - (day + 3) % 7  # the Monday (1970-01-01 was a Thursday)
    elif by == "window":
        period = np.full_like(day, base)
    else:
        raise ValueError(f"by must be 'window' or 'iso_week'; received {by!r}")
    codes, uniq = pd.factorize(key * 200_000 + (period - base), sort=True)
    gkey = np.asarray(uniq, dtype=np.int64) // 200_000
    k = len(uniq)

    def count(x: np.ndarray) -> np.ndarray:
        return np.bincount(codes[x], minlength=k)

    days = np.bincount(codes, minlength=k)
    observed = long.logged | diary
    d = {
        "days": days,
        "days_logged": count(long.logged),
        "days_diary": count(diary),
        "days_observed": count(observed),
        "days_done": count(long.done),
        "days_met": count(long.met),
        "days_volume_met": count(long.volume_met),
        "days_hold": count(long.hold_has),
        "days_hold_met": count(long.hold_met & long.hold_has),
    }
    first_day = np.full(k, np.iinfo(np.int64).max)
    last_day = np.full(k, np.iinfo(np.int64).min)
    np.minimum.at(first_day, codes, day)
    np.maximum.at(last_day, codes, day)
    if by == "iso_week":
        start = first_day - (first_day + 3) % 7
        end = start + 6
        mondays = pd.Index(g.as_days(start))
        iso = mondays.isocalendar()
        label = pd.Series(
            iso["year"].astype("str").to_numpy() + "-W" + iso["week"].astype("str").str.zfill(2)
        )
    elif window is not None:
        start = np.full(k, g.day_number(window.start))
        end = np.full(k, g.day_number(window.end))
        label = pd.Series([window.label] * k, dtype="str")
    else:
        start, end = first_day, last_day
        label = pd.Series(["all"] * k, dtype="str")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame(
            {
                **_keys_frame(long, gkey),
                "period": label.astype("str").to_numpy(),
                "period_start": g.as_days(start),
                "period_end": g.as_days(end),
                **d,
                "pdc": d["days_met"] / days,
                "pdc_observed": np.where(
                    d["days_observed"] > 0, d["days_met"] / d["days_observed"], np.nan
                ),
                "frequency_share": d["days_done"] / days,
                "volume_share": d["days_volume_met"] / days,
                "hold_share": np.where(
                    d["days_hold"] > 0, d["days_hold_met"] / d["days_hold"], np.nan
                ),
                "diary_completeness": d["days_diary"] / days,
                "mean_dose_ratio": np.bincount(codes, long.ratio, minlength=k) / days,
                "mean_dose_ratio_raw": np.bincount(codes, long.ratio_raw, minlength=k) / days,
            }
        )
    out["period"] = out["period"].astype("str")
    return validate(out, AdherenceSummary, what="adherence_summary output")


def adherence_rolling(daily: pd.DataFrame) -> pd.DataFrame:
    """Trailing 7- and 28-day proportion of days covered, per patient, exercise (and the full
    routine) and day.

    Parameters
    ----------
    daily
        Output of :func:`adherence_daily`.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.AdherenceRolling`, columns
        ``patient_id``, ``exercise_id`` (``"_routine"`` for the routine), ``day``,
        ``days_7d``, ``days_met_7d``, ``pdc_7d``, ``days_28d``, ``days_met_28d``, ``pdc_28d``.

    Notes
    -----
    ``pdc_7d(d) = days met in [d-6, d] / days of [d-6, d] in the patient's grid``; the same
    with 28 days. Early in a programme the denominator is the days so far (at least 1).

    References
    ----------
    Peterson AM et al. (2007), Value Health 10:3-12 (PDC over a fixed window).

    Examples
    --------
    >>> import backcare_analytics as bca
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")], "clinician": [None]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"] * 2, "exercise_id": ["breathing"] * 2,
    ...     "day": pd.to_datetime(["2026-03-02", "2026-03-04"]), "side": ["none"] * 2,
    ...     "sets": pd.array([1, 1], dtype="Int64"), "reps": pd.array([10, 10], dtype="Int64"),
    ...     "hold_s": pd.array([None, None], dtype="Float64")})
    >>> d = bca.adherence_daily(ses, bca.build_prescriptions(pts), pts)
    >>> r = bca.adherence_rolling(d)
    >>> r.loc[r.exercise_id == "breathing", ["day", "days_7d", "pdc_7d"]].to_string(index=False)
    '       day  days_7d   pdc_7d\\n2026-03-02        1 1.000000\\n2026-03-03        2 0.500000\\n2026-03-04        3 0.666667'
    """
    long = _long(daily)
    met = long.met.astype(np.int64)
    n7, m7 = long.grid.window_sum(met, 7)
    n28, m28 = long.grid.window_sum(met, 28)
    out = pd.DataFrame(
        {
            **_keys_frame(long, long.grid.key),
            "day": g.as_days(long.grid.day),
            "days_7d": n7,
            "days_met_7d": m7,
            "pdc_7d": m7 / np.maximum(n7, 1),
            "days_28d": n28,
            "days_met_28d": m28,
            "pdc_28d": m28 / np.maximum(n28, 1),
        }
    )
    return validate(out, AdherenceRolling, what="adherence_rolling output")


def adherence_streaks(daily: pd.DataFrame) -> pd.DataFrame:
    """Runs of met days (streaks) and of missed days per patient and exercise (and routine).

    Parameters
    ----------
    daily
        Output of :func:`adherence_daily`.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.AdherenceStreaks`, columns
        ``patient_id``, ``exercise_id``, ``first_day``, ``last_day``, ``days``, ``days_met``,
        ``days_missed`` (``days - days_met``), ``current_streak_days`` (met days running up to
        ``last_day``; 0 when ``last_day`` was missed), ``longest_streak_days``,
        ``longest_missed_run_days``.

    Notes
    -----
    Run-length encoding on the (key, day) grid: a run breaks where the key changes, a day is
    skipped or ``met`` changes; ``run_id = cumsum(break)``.

    Examples
    --------
    >>> import backcare_analytics as bca
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")], "clinician": [None]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"] * 3, "exercise_id": ["breathing"] * 3,
    ...     "day": pd.to_datetime(["2026-03-02", "2026-03-05", "2026-03-06"]),
    ...     "side": ["none"] * 3, "sets": pd.array([1] * 3, dtype="Int64"),
    ...     "reps": pd.array([10] * 3, dtype="Int64"), "hold_s": pd.array([None] * 3, dtype="Float64")})
    >>> d = bca.adherence_daily(ses, bca.build_prescriptions(pts), pts)
    >>> s = bca.adherence_streaks(d)
    >>> s.loc[s.exercise_id == "breathing", ["days", "days_met", "current_streak_days",
    ...     "longest_streak_days", "longest_missed_run_days"]].to_numpy().tolist()
    [[5, 3, 2, 2, 2]]
    """
    long = _long(daily)
    key, day, met = long.grid.key, long.grid.day, long.met
    n = len(key)
    brk = np.ones(n, dtype=bool)
    if n > 1:
        brk[1:] = (key[1:] != key[:-1]) | (day[1:] != day[:-1] + 1) | (met[1:] != met[:-1])
    run_start = np.flatnonzero(brk)
    run_len = np.diff(np.r_[run_start, n])
    run_met = met[run_start]
    run_key = key[run_start]
    gstart = g.segment_starts(key)  # rows
    grun = g.segment_starts(run_key)  # runs
    gkey = key[gstart]
    days = np.diff(np.r_[gstart, n])
    met_len = np.where(run_met, run_len, 0)
    miss_len = np.where(run_met, 0, run_len)
    last_run = np.r_[grun[1:], len(run_start)] - 1
    out = pd.DataFrame(
        {
            **_keys_frame(long, gkey),
            "first_day": g.as_days(day[gstart]),
            "last_day": g.as_days(day[np.r_[gstart[1:], n] - 1]),
            "days": days,
            "days_met": np.add.reduceat(met.astype(np.int64), gstart) if n else days,
            "current_streak_days": met_len[last_run],
            "longest_streak_days": np.maximum.reduceat(met_len, grun) if n else days,
            "longest_missed_run_days": np.maximum.reduceat(miss_len, grun) if n else days,
        }
    )
    out.insert(6, "days_missed", out["days"] - out["days_met"])
    return validate(out, AdherenceStreaks, what="adherence_streaks output")
