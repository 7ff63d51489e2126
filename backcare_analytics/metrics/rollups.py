"""Roll-ups of the daily adherence table: PDC and component adherence over a window or per ISO
week (with diary completeness kept apart), trailing 7- and 28-day PDC, and streaks.

Every function takes the output of :func:`~backcare_analytics.metrics.adherence_daily`.
:func:`adherence_rollups` computes all four from one pass over it (the daily table's ids are
factorised once); the single functions are conveniences over the same code. The full routine
appears as the pseudo exercise ``"_routine"`` (``ROUTINE``): a routine day is met (done, volume
met) when every exercise in force that day is, and its dose ratio is the mean of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from backcare_analytics.metrics import grid as g
from backcare_analytics.metrics.params import Window
from backcare_analytics.schemas.clean import Pain
from backcare_analytics.schemas.results.adherence import (
    ROUTINE,
    AdherenceDaily,
    AdherenceRolling,
    AdherenceStreaks,
    AdherenceSummary,
)

__all__ = ["adherence_rolling", "adherence_rollups", "adherence_streaks", "adherence_summary"]

_FLAGS = ("met", "done", "volume_met", "hold_has", "hold_met", "logged")


@dataclass
class _Long:
    """The daily table as arrays, exercises plus the routine, sorted by (key, day);
    key = patient * len(exes) + exercise, the routine being the last exercise code."""

    pids: pd.Index
    exes: pd.Index
    key: np.ndarray
    day: np.ndarray
    cols: dict[str, np.ndarray]
    pgrid: g.DayGrid  # one row per (patient, day) present
    prow: np.ndarray  # each row's pgrid row

    @property
    def grid(self) -> g.DayGrid:
        return g.DayGrid(self.key, self.day, len(self.pids) * len(self.exes))


def _sorted_by_key_day(key: np.ndarray, day: np.ndarray) -> bool:
    """Whether the rows are strictly sorted by (key, day)."""
    if len(key) < 2:
        return True
    dk = np.diff(key)
    return bool(np.all((dk > 0) | ((dk == 0) & (np.diff(day) > 0))))


def _long(daily: pd.DataFrame) -> _Long:
    """Codes, arrays and the routine rows of a daily table, without a global sort when the
    table is in the order :func:`adherence_daily` returns it."""
    pids, exes, pc, key, day, cols = _daily_arrays(daily)
    n_ex, n_pat = len(exes), len(pids)
    pgrid, prow_d, routine = _routine_rows(pc, day, cols, n_pat)
    r = len(pgrid)
    # Merge: each patient's exercise rows, then its routine rows (both already in order).
    n_d = np.bincount(pc, minlength=n_pat)
    n_r = np.bincount(pgrid.key, minlength=n_pat)
    block = np.cumsum(n_d + n_r) - (n_d + n_r)
    d_start = np.cumsum(n_d) - n_d
    r_start = np.cumsum(n_r) - n_r
    dest_d = block[pc] + (np.arange(len(pc)) - d_start[pc])
    rk = pgrid.key
    dest_r = block[rk] + n_d[rk] + (np.arange(r) - r_start[rk])
    total = len(pc) + r

    def merged(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty(total, dtype=np.result_type(a, b))
        out[dest_d] = a
        out[dest_r] = b
        return out

    return _Long(
        pids=pids,
        exes=exes,
        key=merged(key, rk * n_ex + (n_ex - 1)),
        day=merged(day, pgrid.day),
        cols={k: merged(cols[k], routine[k]) for k in cols},
        pgrid=pgrid,
        prow=merged(prow_d, np.arange(r)),
    )


def _daily_arrays(
    daily: pd.DataFrame,
) -> tuple[pd.Index, pd.Index, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Patient and exercise ids (the routine last), and per daily row, sorted by (key, day):
    patient code, key (patient x exercise), day number and the columns the roll-ups read."""
    pc, pids = g.factorize_sorted(daily[AdherenceDaily.patient_id])
    ec, exes = g.factorize_sorted(daily[AdherenceDaily.exercise_id])
    exes = pd.Index([*exes, ROUTINE], dtype="str")
    day = g.days(daily[AdherenceDaily.day])
    key = pc * len(exes) + ec
    cols = {
        "met": daily[AdherenceDaily.met].to_numpy(dtype=bool),
        "done": daily[AdherenceDaily.done].to_numpy(dtype=bool),
        "volume_met": daily[AdherenceDaily.volume_met].to_numpy(dtype=bool),
        "hold_has": daily[AdherenceDaily.hold_prescribed_s].notna().to_numpy(dtype=bool),
        "hold_met": daily[AdherenceDaily.hold_met].to_numpy(dtype=bool, na_value=False),
        "logged": daily[AdherenceDaily.logged].to_numpy(dtype=bool),
        "ratio": daily[AdherenceDaily.dose_ratio].to_numpy(dtype="float64"),
        "ratio_raw": daily[AdherenceDaily.dose_ratio_raw].to_numpy(dtype="float64"),
    }
    if not _sorted_by_key_day(key, day):
        order = np.lexsort((day, key))
        key, day, pc = key[order], day[order], pc[order]
        cols = {k: v[order] for k, v in cols.items()}
    return pids, exes, pc, key, day, cols


def _routine_rows(
    pc: np.ndarray, day: np.ndarray, cols: dict[str, np.ndarray], n_pat: int
) -> tuple[g.DayGrid, np.ndarray, dict[str, np.ndarray]]:
    """The routine: one row per (patient, day) present (a grid of them), each daily row's
    routine row, and the routine's columns (met when every exercise is met, and so on)."""
    # Routine rows: one per (patient, day) present, on a contiguous (patient, day) grid.
    first = np.full(n_pat + 1, np.iinfo(np.int64).max)
    last = np.full(n_pat + 1, g.NO_DAY)
    np.minimum.at(first, pc, day)
    np.maximum.at(last, pc, day)
    empty = last[:n_pat] == g.NO_DAY
    first, last = first[:n_pat], last[:n_pat]
    first[empty], last[empty] = 0, -1
    full = g.DayGrid(*g.expand_ranges(first, last), n_pat)
    fpos = full.locate(pc, day)
    count = np.bincount(fpos, minlength=len(full))
    present = count > 0
    # Renumber to the present (patient, day) rows only.
    prow_d = (np.cumsum(present) - 1)[fpos]
    pgrid = g.DayGrid(full.key[present], full.day[present], n_pat)
    count = count[present]
    r = len(pgrid)

    def n_true(x: np.ndarray) -> np.ndarray:
        return np.bincount(prow_d[x], minlength=r)

    hold_n = n_true(cols["hold_has"])
    routine = {
        "met": n_true(cols["met"]) == count,
        "done": n_true(cols["done"]) == count,
        "volume_met": n_true(cols["volume_met"]) == count,
        "hold_has": hold_n > 0,
        "hold_met": (hold_n > 0) & (n_true(cols["hold_met"] & cols["hold_has"]) == hold_n),
        "logged": n_true(cols["logged"]) > 0,
        "ratio": np.bincount(prow_d, cols["ratio"], minlength=r) / np.maximum(count, 1),
        "ratio_raw": np.bincount(prow_d, cols["ratio_raw"], minlength=r) / np.maximum(count, 1),
    }
    return pgrid, prow_d, routine


def _diary(long: _Long, pain: pd.DataFrame | None) -> np.ndarray:
    """Whether each row of ``long`` is a day with a pain-diary entry."""
    if pain is None or len(long.key) == 0:
        return np.zeros(len(long.key), dtype=bool)
    pp = g.map_codes(pain[Pain.patient_id], long.pids)
    ppos = long.pgrid.locate(pp, g.days(pain[Pain.day]))
    ppos[ppos < 0] = len(long.pgrid)
    mark = np.zeros(len(long.pgrid) + 1, dtype=bool)
    mark[ppos] = True
    return mark[long.prow]


def _keys(long: _Long, key: np.ndarray) -> dict[str, pd.Series]:
    """The ``patient_id`` and ``exercise_id`` columns of patient x exercise keys."""
    n_ex = len(long.exes)
    return {
        "patient_id": g.take_str(long.pids, key // n_ex),
        "exercise_id": g.take_str(long.exes, key % n_ex),
    }


def _restrict(daily: pd.DataFrame, window: Window | None) -> pd.DataFrame:
    """The daily rows on the window's days (all rows without a window)."""
    return daily if window is None else daily[window.contains(daily[AdherenceDaily.day])]


def _summary(
    long: _Long, diary: np.ndarray, window: Window | None, by: Literal["window", "iso_week"]
) -> pd.DataFrame:
    """One summary row per patient x exercise (routine included) and period (the window, or
    each ISO week): day counts, PDC, component shares and mean dose ratios."""
    key, day, c = long.key, long.day, long.cols
    if by == "iso_week":
        monday = g.monday(day)
        group = key * 100_000 + (monday - (int(monday.min()) if len(day) else 0)) // 7
    elif by == "window":
        group = key
    else:
        raise ValueError(f"by must be 'window' or 'iso_week'; received {by!r}")
    starts = g.segment_starts(group)  # rows are sorted by (key, day), so groups are runs
    days = np.diff(np.r_[starts, len(group)]).astype(np.int64)
    n = _day_counts(c, diary, starts, days)
    start, end, label = _periods(day[starts], day[g.segment_ends(starts, len(group))], window, by)
    sums = {
        name: np.add.reduceat(c[col], starts) if len(starts) else np.zeros(0)
        for name, col in (("ratio", "ratio"), ("raw", "ratio_raw"))
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        out = g.frame(
            {
                **_keys(long, key[starts]),
                "period": label,
                "period_start": g.as_days(start),
                "period_end": g.as_days(end),
                **n,
                "pdc": n["days_met"] / days,
                "pdc_observed": np.where(
                    n["days_observed"] > 0, n["days_met"] / n["days_observed"], np.nan
                ),
                "frequency_share": n["days_done"] / days,
                "volume_share": n["days_volume_met"] / days,
                "hold_share": np.where(
                    n["days_hold"] > 0, n["days_hold_met"] / n["days_hold"], np.nan
                ),
                "diary_completeness": n["days_diary"] / days,
                "mean_dose_ratio": sums["ratio"] / days,
                "mean_dose_ratio_raw": sums["raw"] / days,
            }
        )
    return g.checked(out, AdherenceSummary, "adherence_summary output")


def _day_counts(
    c: dict[str, np.ndarray], diary: np.ndarray, starts: np.ndarray, days: np.ndarray
) -> dict[str, np.ndarray]:
    """Per group (runs of rows from ``starts``): days, and days logged, with a diary entry,
    observed, done, met, volume met, with a prescribed hold and with the hold met."""

    def count(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, starts, dtype=np.int64) if len(starts) else np.zeros(0, np.int64)

    return {
        "days": days,
        "days_logged": count(c["logged"]),
        "days_diary": count(diary),
        "days_observed": count(c["logged"] | diary),
        "days_done": count(c["done"]),
        "days_met": count(c["met"]),
        "days_volume_met": count(c["volume_met"]),
        "days_hold": count(c["hold_has"]),
        "days_hold_met": count(c["hold_met"] & c["hold_has"]),
    }


def _periods(
    first_day: np.ndarray,
    last_day: np.ndarray,
    window: Window | None,
    by: Literal["window", "iso_week"],
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """First and last day and label of each group's period: its ISO week, the window, or
    (no window) the group's own first to last day, labelled ``all``."""
    k = len(first_day)
    if by == "iso_week":
        start = g.monday(first_day)
        return start, start + 6, g.iso_week_labels(start)
    if window is not None:
        start = np.full(k, g.day_number(window.start))
        end = np.full(k, g.day_number(window.end))
        return start, end, pd.Series(np.full(k, window.label, dtype=object), dtype="str")
    return first_day, last_day, pd.Series(np.full(k, "all", dtype=object), dtype="str")


def _rolling(long: _Long) -> pd.DataFrame:
    """Trailing 7- and 28-day days, days met and PDC on every row of ``long``."""
    grid = long.grid
    met = long.cols["met"].astype(np.int64)
    (n7, m7), (n28, m28) = grid.window_sums(met, (7, 28))
    out = g.frame(
        {
            **_keys(long, long.key),
            "day": g.as_days(long.day),
            "days_7d": n7,
            "days_met_7d": m7,
            "pdc_7d": m7 / np.maximum(n7, 1),
            "days_28d": n28,
            "days_met_28d": m28,
            "pdc_28d": m28 / np.maximum(n28, 1),
        }
    )
    return g.checked(out, AdherenceRolling, "adherence_rolling output")


def _streaks(long: _Long) -> pd.DataFrame:
    """Per patient x exercise: days, days met and missed, current and longest met streak and
    longest missed run (run-length encoding of ``met`` over consecutive days)."""
    key, day, met = long.key, long.day, long.cols["met"]
    n = len(key)
    brk = np.ones(n, dtype=bool)
    if n > 1:
        brk[1:] = (key[1:] != key[:-1]) | (day[1:] != day[:-1] + 1) | (met[1:] != met[:-1])
    run_start = np.flatnonzero(brk)
    run_len = np.diff(np.r_[run_start, n])
    run_met = met[run_start]
    gstart = g.segment_starts(key)
    grun = g.segment_starts(key[run_start])
    days = np.diff(np.r_[gstart, n]).astype(np.int64)
    met_len = np.where(run_met, run_len, 0)
    miss_len = np.where(run_met, 0, run_len)
    last_run = g.segment_ends(grun, len(run_start))
    if n:
        days_met = np.add.reduceat(met, gstart, dtype=np.int64)
        longest = np.maximum.reduceat(met_len, grun)
        longest_miss = np.maximum.reduceat(miss_len, grun)
    else:
        days_met = longest = longest_miss = days
    out = g.frame(
        {
            **_keys(long, key[gstart]),
            "first_day": g.as_days(day[gstart]),
            "last_day": g.as_days(day[g.segment_ends(gstart, n)]),
            "days": days,
            "days_met": days_met,
            "days_missed": days - days_met,
            "current_streak_days": met_len[last_run].astype(np.int64),
            "longest_streak_days": longest.astype(np.int64),
            "longest_missed_run_days": longest_miss.astype(np.int64),
        }
    )
    return g.checked(out, AdherenceStreaks, "adherence_streaks output")


def adherence_rollups(
    daily: pd.DataFrame, pain: pd.DataFrame | None = None, *, window: Window | None = None
) -> dict[str, pd.DataFrame]:
    """Every roll-up of the daily table from one pass over it.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``adherence_summary`` (over ``window``, or all days), ``adherence_weekly`` (per ISO
        week), ``adherence_rolling`` and ``adherence_streaks``: the outputs of
        :func:`adherence_summary` (``by="window"`` and ``by="iso_week"``),
        :func:`adherence_rolling` and :func:`adherence_streaks` on the days in ``window``.

    Examples
    --------
    >>> import backcare_analytics as bca
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")], "clinician": [None]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"], "exercise_id": ["breathing"],
    ...     "day": [pd.Timestamp("2026-03-03")], "side": ["none"],
    ...     "sets": pd.array([1], dtype="Int64"), "reps": pd.array([10], dtype="Int64"),
    ...     "hold_s": pd.array([None], dtype="Float64")})
    >>> d = bca.adherence_daily(ses, bca.build_prescriptions(pts), pts)
    >>> sorted(bca.adherence_rollups(d))
    ['adherence_rolling', 'adherence_streaks', 'adherence_summary', 'adherence_weekly']
    """
    long = _long(_restrict(daily, window))
    diary = _diary(long, pain)
    return {
        "adherence_summary": _summary(long, diary, window, "window"),
        "adherence_weekly": _summary(long, diary, window, "iso_week"),
        "adherence_rolling": _rolling(long),
        "adherence_streaks": _streaks(long),
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
    long = _long(_restrict(daily, window))
    return _summary(long, _diary(long, pain), window, by)


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
    return _rolling(_long(daily))


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
    return _streaks(_long(daily))
