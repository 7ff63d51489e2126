"""Adherence: dose ratio per exercise and day, and its roll-ups (see docs/metrics.md).

The daily table (:func:`adherence_daily`) is the base; every roll-up takes it
(:mod:`backcare_analytics.metrics.rollups`: PDC and component adherence over a window or per
ISO week with diary completeness kept apart, trailing 7- and 28-day PDC, streaks). Logging gaps, persistence and dropout are per patient and take the
session log directly (:mod:`backcare_analytics.metrics.persistence`); start-time consistency
is in :mod:`backcare_analytics.metrics.timing`.

All of it is vectorised across patients: ids become integer codes once, days become integer day
numbers, and sums run as ``np.bincount`` over a (key, day) grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.metrics import grid as g
from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.schemas.clean import Prescriptions, Sessions
from backcare_analytics.schemas.results.adherence import ROUTINE, AdherenceDaily

__all__ = ["ROUTINE", "AdherencePolicy", "adherence_daily"]


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
    pids, start = g.patients_index(patients)
    sp = g.map_codes(sessions[Sessions.patient_id], pids)
    sd = g.days(sessions[Sessions.day])
    gstart, gend = _grid_bounds(start, sp, sd, window)
    rx = _prescribed_days(prescriptions, pids, gstart, gend)
    dose = _dose_columns(sessions, sp, sd, prescriptions, rx, policy.dose_met_ratio - g.EPS)
    logged = _logged(sp, sd, gstart, gend, rx)
    out = g.frame(
        {
            AdherenceDaily.patient_id: g.take_str(pids, rx.patient),
            AdherenceDaily.exercise_id: g.take_str(rx.exes, rx.exercise),
            AdherenceDaily.day: g.as_days(rx.day),
            AdherenceDaily.logged: logged,
            **dose,
        }
    )
    return g.checked(out, AdherenceDaily, "adherence_daily output")


def _grid_bounds(
    start: np.ndarray, sp: np.ndarray, sd: np.ndarray, window: Window | None
) -> tuple[np.ndarray, np.ndarray]:
    """First and last day of each patient's grid: [max(start, window start), window end or
    last logged day] (``NO_DAY`` for a patient without a programme start)."""
    n_pat = start.size
    gstart = start.copy()
    if window is not None:
        gstart = np.maximum(gstart, g.day_number(window.start))
        gend = np.full(n_pat, g.day_number(window.end), dtype=np.int64)
    else:
        gend = np.full(n_pat + 1, g.NO_DAY, dtype=np.int64)  # last slot: unknown patients
        np.maximum.at(gend, sp, sd)
        gend = gend[:n_pat]
    gend[start == g.NO_DAY] = g.NO_DAY
    return gstart, gend


@dataclass(frozen=True)
class _PrescribedDays:
    """One row per (patient, exercise, day) with a prescription in force on the grid."""

    exes: pd.Index  # prescribed exercise ids, sorted (codes index it)
    rows: np.ndarray  # per grid row: the prescription row in force
    patient: np.ndarray  # per grid row: patient code
    exercise: np.ndarray  # per grid row: exercise code
    day: np.ndarray  # per grid row: day number
    grid: g.DayGrid  # the (patient x exercise, day) grid


def _prescribed_days(
    prescriptions: pd.DataFrame, pids: pd.Index, gstart: np.ndarray, gend: np.ndarray
) -> _PrescribedDays:
    """Prescription segments clipped to each patient's grid days, one row per day."""
    n_pat = len(pids)
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
    return _PrescribedDays(exes=exes, rows=rows, patient=rp[rows], exercise=re[rows], day=gday,
                           grid=g.DayGrid(gpe, gday, n_pat * n_ex))  # fmt: skip


def _session_sums(
    sessions: pd.DataFrame, sp: np.ndarray, sd: np.ndarray, rx: _PrescribedDays
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per grid row: volume on the left side, on the right side, volume with a recorded hold
    and the volume-weighted sum of holds (sessions summed onto the grid, side by side)."""
    n = len(rx.grid)
    # Buffers are reused: on a 10 M-row log every fresh temporary array costs a visible share
    # of the run time.
    key = sp * max(len(rx.exes), 1)
    se = g.map_codes(sessions[Sessions.exercise_id], rx.exes)
    key += se
    key[(se < 0) | (sp < 0)] = -1
    del se
    pos = rx.grid.locate(key, sd)
    del key
    pos[pos < 0] = n  # an extra bin for rows that are not counted
    # np.require copies only a read-only view (a plain float column): inputs are never written
    vol = np.require(sessions[Sessions.sets].to_numpy(dtype="float64", na_value=1.0), None, "W")
    vol *= sessions[Sessions.reps].to_numpy(dtype="float64", na_value=1.0)
    side = sessions[Sessions.side]
    w = np.where((side == "right").to_numpy(dtype=bool, na_value=False), 0.0, vol)
    left = np.bincount(pos, w, minlength=n + 1)[:n]
    np.copyto(w, vol)
    w[(side == "left").to_numpy(dtype=bool, na_value=False)] = 0.0
    right = np.bincount(pos, w, minlength=n + 1)[:n]
    hold = np.require(
        sessions[Sessions.hold_s].to_numpy(dtype="float64", na_value=np.nan), None, "W"
    )
    no_hold = np.isnan(hold)
    np.copyto(w, vol)
    w[no_hold] = 0.0
    hold_w = np.bincount(pos, w, minlength=n + 1)[:n]
    hold[no_hold] = 0.0
    w *= hold
    hold_vs = np.bincount(pos, w, minlength=n + 1)[:n]
    return left, right, hold_w, hold_vs


def _logged(
    sp: np.ndarray, sd: np.ndarray, gstart: np.ndarray, gend: np.ndarray, rx: _PrescribedDays
) -> np.ndarray:
    """Per grid row: whether the patient logged any session row that day."""
    pgrid = g.DayGrid(*_patient_days(gstart, gend), gstart.size)
    ppos = pgrid.locate(sp, sd)
    ppos[ppos < 0] = len(pgrid)
    logged_pd = np.zeros(len(pgrid) + 1, dtype=bool)
    logged_pd[ppos] = True
    del ppos
    if not len(rx.grid):
        return np.zeros(0, dtype=bool)
    return logged_pd[pgrid.locate(rx.patient, rx.day)]


def _dose_columns(
    sessions: pd.DataFrame,
    sp: np.ndarray,
    sd: np.ndarray,
    prescriptions: pd.DataFrame,
    rx: _PrescribedDays,
    thr: float,
) -> dict[str, object]:
    """The performed and prescribed dose of every grid row, their ratios and whether each
    ratio reaches ``thr`` (the output columns from ``done`` to ``hold_met``)."""
    left, right, hold_w, hold_vs = _session_sums(sessions, sp, sd, rx)
    rx_sets = prescriptions[Prescriptions.sets].to_numpy(dtype="float64", na_value=1.0)[rx.rows]
    rx_reps = prescriptions[Prescriptions.reps].to_numpy(dtype="float64", na_value=1.0)[rx.rows]
    rx_hold = prescriptions[Prescriptions.hold_s].to_numpy(dtype="float64", na_value=np.nan)
    rx_hold = rx_hold[rx.rows]
    prescribed = rx_sets * rx_reps
    performed = np.minimum(left, right).astype(np.float64, copy=False)
    done = np.maximum(left, right) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        hold_mean = np.where(hold_w > 0, hold_vs / np.where(hold_w > 0, hold_w, 1.0), np.nan)
        volume_ratio = performed / prescribed
        hold_rx = ~np.isnan(rx_hold)
        hold_ratio = np.where(hold_rx, np.where(done, hold_mean / rx_hold, 0.0), np.nan)
    dose_raw = volume_ratio * np.where(np.isnan(hold_ratio), 1.0, hold_ratio)
    hold_met = pd.array(hold_ratio >= thr, dtype="boolean")
    hold_met[np.isnan(hold_ratio)] = pd.NA
    return {
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


def _patient_days(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(patient code, day) rows covering each patient's ``[first, last]``."""
    last = np.where((first == g.NO_DAY) | (last == g.NO_DAY), first - 1, last)
    return g.expand_ranges(first, last)
