"""Strength progression: capacity per strength exercise, progression and regression events, and
the *ready to progress* and *consider regression* flags of the protocol's rules (CERT 7a/7b).

Capacity is never converted between exercises or ladder levels: the bridge and the press-up are
measured in seconds under tension (sets x reps x hold), the press-up apart for each variant
(prone and standing are different loads), the mini push-up by its ladder level and the reps at
that level. A level change is an event of its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backcare_analytics.metrics import grid
from backcare_analytics.metrics.grid import checked, text_from_codes
from backcare_analytics.metrics.pain import PainPolicy
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.steps import StrengthRows, best_daily, build_pain_grid, flare_cells
from backcare_analytics.protocol import ProgressionRule, Protocol, load_protocol
from backcare_analytics.schemas.clean import Pain, Sessions
from backcare_analytics.schemas.results.progression import (
    CapacityDaily,
    CapacityWeekly,
    ProgressionEvents,
    ProgressionFlags,
)

__all__ = ["capacity_daily", "capacity_weekly", "progression_events", "progression_flags"]

_KEYS = ["patient_id", "exercise_id", "variant"]


def capacity_daily(
    sessions: pd.DataFrame,
    *,
    protocol: Protocol | None = None,
    window: Window | None = None,
) -> pd.DataFrame:
    """The best session of each day for each strength exercise and patient.

    Parameters
    ----------
    sessions : DataFrame
        Clean sessions, many patients; non-strength exercises are ignored.
    protocol : Protocol, optional
        Which exercises are strength work, their ladders, default levels and variants.
    window : Window, optional
        Keep the window's days only.

    Returns
    -------
    DataFrame
        :class:`~backcare_analytics.schemas.results.CapacityDaily`: ``patient_id, exercise_id,
        variant`` (missing for exercises without variants; a missing variant is the protocol's
        default), ``day, sessions`` (rows that day), ``level, level_rank`` (0 = the easiest
        rung; ladder exercises only, a missing level is the default level), ``reps`` (sets x
        reps), ``hold_s`` and ``capacity_s`` (sets x reps x hold, for exercises with a
        prescribed hold) of the day's best row.

    Notes
    -----
    Best row: largest ``capacity_s`` for hold exercises; highest level then most reps for
    ladder exercises. Twice-a-day sessions do not add up: capacity is what the patient can do.

    References
    ----------
    Slade SC et al. (2016) CERT, Br J Sports Med 50:1428-1437 (items 7a/7b, 8).

    Examples
    --------
    >>> s = pd.DataFrame({"patient_id": ["P1"] * 3, "day": pd.to_datetime(["2026-01-05"] * 3),
    ...     "exercise_id": ["bridge", "bridge", "mini_push_up"],
    ...     "sets": pd.array([1, 1, 1], dtype="Int64"), "reps": pd.array([3, 5, 8], dtype="Int64"),
    ...     "hold_s": pd.array([15, 10, None], dtype="Float64"),
    ...     "level": [None, None, "counter"], "variant": [None, None, None]})
    >>> capacity_daily(s)[["exercise_id", "sessions", "level", "reps", "capacity_s"]].to_string(index=False)
    ' exercise_id  sessions   level  reps  capacity_s\\n      bridge         2     NaN     5        50.0\\nmini_push_up         1 counter     8         NaN'
    """
    protocol = protocol or load_protocol()
    b = best_daily(sessions, protocol, window)
    c, pick = b.rows, b.pick
    out = pd.DataFrame(
        {
            "patient_id": c.patient_names(pick),
            "exercise_id": text_from_codes(b.ex[pick], c.ex_names),
            "variant": c.names(c.variants, b.vcode[pick]),
            "day": grid.as_days(c.day[pick]),
            "sessions": b.n_rows.astype(np.int64),
            "level": c.names(c.levels, b.lcode[pick]),
            "level_rank": pd.array(b.rank[pick], dtype="Float64").astype("Int64"),
            "reps": pd.array(b.reps[pick], dtype="Float64").round().astype("Int64"),
            "hold_s": b.hold[pick],
            "capacity_s": b.cap[pick],
        }
    )
    return checked(out.reset_index(drop=True), CapacityDaily, "capacity_daily output")


def capacity_weekly(capacity_daily: pd.DataFrame) -> pd.DataFrame:
    """Weekly capacity per patient, strength exercise and variant, from :func:`capacity_daily`.

    Returns
    -------
    DataFrame
        :class:`~backcare_analytics.schemas.results.CapacityWeekly`: ``patient_id,
        exercise_id, variant, week`` (ISO ``YYYY-Www``), ``week_start`` (Monday), ``days``
        (days with a session), ``level, level_rank`` (the highest rung that week), ``reps``
        (median over the week's days at that rung), ``hold_s`` and ``capacity_s`` (medians of
        the daily best).

    Notes
    -----
    The median of the daily best sessions is robust to one partial or overdone day. Weeks are
    ISO weeks (Monday-Sunday) of the patient-local day, so a DST change never moves a day.

    References
    ----------
    ISO 8601 week dates.

    Examples
    --------
    >>> d = pd.DataFrame({"patient_id": "P1", "exercise_id": "bridge", "variant": None,
    ...     "day": pd.to_datetime(["2026-01-05", "2026-01-06", "2026-01-07"]),
    ...     "sessions": 1, "level": None, "level_rank": pd.array([None] * 3, dtype="Int64"),
    ...     "reps": pd.array([3, 4, 5], dtype="Int64"), "hold_s": [15.0, 15.0, 20.0],
    ...     "capacity_s": [45.0, 60.0, 100.0]})
    >>> capacity_weekly(d)[["week", "days", "reps", "capacity_s"]].to_string(index=False)
    '    week  days  reps  capacity_s\\n2026-W02     3   4.0        60.0'
    """
    daily = capacity_daily
    key, names, (n_e, n_v, n_w, m0) = _week_keys(daily)
    lcode, luni = pd.factorize(daily["level"])
    agg = _weekly_medians(daily, key, lcode)
    k = agg["key"].to_numpy(dtype=np.int64).copy()  # read-only under copy-on-write
    mon = m0 + 7 * (k % n_w)
    k //= n_w
    vv = k % n_v
    k //= n_v
    lnames = np.asarray([*luni, None], dtype=object)
    lv = agg["level"].to_numpy()
    out = pd.DataFrame(
        {
            "patient_id": text_from_codes(k // n_e, list(names["patient_id"])),
            "exercise_id": text_from_codes(k % n_e, list(names["exercise_id"])),
            "variant": text_from_codes(vv, list(names["variant"])),
            "week": grid.iso_week_labels(mon),
            "week_start": grid.as_days(mon),
            "days": agg["days"].astype(np.int64),
            "level": pd.Series(lnames[np.where(lv < 0, len(luni), lv)], dtype="str"),
            "level_rank": pd.array(agg["rank"].to_numpy(), dtype="Float64").astype("Int64"),
            "reps": agg["reps"].astype(np.float64),
            "hold_s": agg["hold_s"].astype(np.float64),
            "capacity_s": agg["capacity_s"].astype(np.float64),
        }
    )
    return checked(out, CapacityWeekly, "capacity_weekly output")


def _week_keys(
    daily: pd.DataFrame,
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, int, int, int]]:
    """One integer key per daily row, (patient, exercise, variant, week) in that sort order
    (names sorted, missing last), the names of each key part, and the key's radices and first
    Monday (exercises, variants, weeks, Monday of week 0)."""
    monday = grid.monday(grid.days(daily["day"]))
    codes, names = {}, {}
    for col in _KEYS:  # integer keys, missing last, in the order of the sorted names
        cc, uu = pd.factorize(daily[col], sort=True)
        codes[col] = np.where(cc < 0, len(uu), cc)
        names[col] = np.asarray([*uu, None], dtype=object)
    # One integer key in the output's sort order: a one-key groupby.
    m0 = int(monday.min()) if monday.size else 0
    n_w = (int(monday.max()) - m0) // 7 + 1 if monday.size else 1
    n_v = len(names["variant"])
    n_e = len(names["exercise_id"])
    key = ((codes["patient_id"].astype(np.int64) * n_e + codes["exercise_id"]) * n_v
           + codes["variant"]) * n_w + (monday - m0) // 7  # fmt: skip
    return key, names, (n_e, n_v, n_w, m0)


def _weekly_medians(daily: pd.DataFrame, key: np.ndarray, lcode: np.ndarray) -> pd.DataFrame:
    """Per key (sorted): the week's highest rung, the medians of reps, hold and capacity over
    the days at it, its level code, and the days with a session."""
    rank = daily["level_rank"].to_numpy(dtype=np.float64, na_value=np.nan)
    f = pd.DataFrame(
        {
            "key": key,
            "rank": rank,
            "reps": daily["reps"].to_numpy(dtype=np.float64, na_value=np.nan),
            "hold_s": daily["hold_s"].to_numpy(dtype=np.float64, na_value=np.nan),
            "capacity_s": daily["capacity_s"].to_numpy(dtype=np.float64, na_value=np.nan),
            "level": lcode,
        }
    )
    g = f.groupby(["key"], sort=True)
    days = g.size()
    top = g["rank"].transform("max").to_numpy()
    at_top = np.isnan(top) | (rank == top)
    agg = (
        f[at_top]
        .groupby(["key"], sort=True)
        .agg(rank=("rank", "max"), reps=("reps", "median"), hold_s=("hold_s", "median"),
             capacity_s=("capacity_s", "median"), level=("level", "max"))
    )  # fmt: skip
    agg["days"] = days.reindex(agg.index).to_numpy()
    return agg.reset_index()


def progression_events(
    capacity_weekly: pd.DataFrame, *, protocol: Protocol | None = None
) -> pd.DataFrame:
    """Level, reps and hold changes between consecutive rows of a capacity frame.

    Pass :func:`capacity_weekly` for the clinician's view (changes of the weekly medians) or
    :func:`capacity_daily` for day-to-day changes of the best session.

    Returns
    -------
    DataFrame
        :class:`~backcare_analytics.schemas.results.ProgressionEvents`: ``patient_id,
        exercise_id, variant, day`` (the day or week start of the change), ``previous_day``,
        ``event`` (``level_up``, ``level_down``, ``reps_up``, ``reps_down``, ``hold_up``,
        ``hold_down``), ``before``, ``after`` (level rank, reps or seconds), ``level_before``,
        ``level_after``.

    Notes
    -----
    A level change is its own event (reps across levels are not compared). Otherwise
    reps_up when reps rise by >= ``reps_step``, hold_up when the hold rises by >=
    ``hold_step_s`` (protocol ``rules.progression``), and the same downwards.

    References
    ----------
    Slade SC et al. (2016) CERT item 7b (progression rule).

    Examples
    --------
    >>> w = pd.DataFrame({"patient_id": "P1", "exercise_id": "mini_push_up", "variant": None,
    ...     "week_start": pd.to_datetime(["2026-01-05", "2026-01-12", "2026-01-19"]),
    ...     "level": ["wall", "wall", "counter"], "level_rank": pd.array([0, 0, 1], dtype="Int64"),
    ...     "reps": [10.0, 14.0, 8.0], "hold_s": float("nan")})
    >>> progression_events(w)[["day", "event", "before", "after"]].to_string(index=False)
    '       day    event  before  after\\n2026-01-12  reps_up    10.0   14.0\\n2026-01-19 level_up     0.0    1.0'
    """
    capacity = capacity_weekly
    protocol = protocol or load_protocol()
    rule = protocol.rules.progression
    dcol = "week_start" if "week_start" in capacity.columns else "day"
    c = capacity.sort_values([*_KEYS, dcol], kind="stable").reset_index(drop=True)
    out = _event_rows(c, dcol, _changes(c, rule))
    out = out.sort_values(["patient_id", "exercise_id", "variant", "day", "event"], kind="stable")
    return checked(out.reset_index(drop=True), ProgressionEvents, "progression_events output")


def _changes(c: pd.DataFrame, rule: ProgressionRule) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(event, rows where it happens, the values compared) for each kind of change between
    consecutive rows of the same patient, exercise and variant of a sorted capacity frame."""
    same = (
        (c["patient_id"] == c["patient_id"].shift())
        & (c["exercise_id"] == c["exercise_id"].shift())
        & (c["variant"].fillna("") == c["variant"].fillna("").shift())
    ).to_numpy()
    rank = c["level_rank"].to_numpy(dtype=np.float64, na_value=np.nan)
    reps = c["reps"].to_numpy(dtype=np.float64, na_value=np.nan)
    hold = c["hold_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    d_rank, d_reps, d_hold = (np.diff(a, prepend=np.nan) for a in (rank, reps, hold))
    level_change = same & ~np.isnan(d_rank) & (d_rank != 0)
    same_level = same & ~level_change
    eps = grid.EPS
    return [
        ("level_up", level_change & (d_rank > 0), rank),
        ("level_down", level_change & (d_rank < 0), rank),
        ("reps_up", same_level & (d_reps >= rule.reps_step - eps), reps),
        ("reps_down", same_level & (d_reps <= -rule.reps_step + eps), reps),
        ("hold_up", same_level & (d_hold >= rule.hold_step_s - eps), hold),
        ("hold_down", same_level & (d_hold <= -rule.hold_step_s + eps), hold),
    ]


def _event_rows(
    c: pd.DataFrame, dcol: str, changes: list[tuple[str, np.ndarray, np.ndarray]]
) -> pd.DataFrame:
    """One row per change: keys, day and previous day, event, values and levels before and
    after (typed as :class:`ProgressionEvents`, unsorted)."""
    day = c[dcol].to_numpy(dtype="datetime64[us]")
    lvl = c["level"].astype("str")
    parts = []
    for name, mask, values in changes:
        idx = np.flatnonzero(mask)
        parts.append(
            pd.DataFrame(
                {
                    "patient_id": c["patient_id"].to_numpy()[idx],
                    "exercise_id": c["exercise_id"].to_numpy()[idx],
                    "variant": c["variant"].to_numpy()[idx],
                    "day": day[idx],
                    "previous_day": day[idx - 1],
                    "event": name,
                    "before": values[idx - 1],
                    "after": values[idx],
                    "level_before": lvl.to_numpy()[idx - 1],
                    "level_after": lvl.to_numpy()[idx],
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    for col in ("patient_id", "exercise_id", "variant", "event", "level_before", "level_after"):
        out[col] = out[col].astype("str")
    for col in ("day", "previous_day"):
        out[col] = out[col].astype("datetime64[us]")
    for col in ("before", "after"):
        out[col] = out[col].astype(np.float64)
    return out


def _doses_on(s: pd.DataFrame, prescriptions: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Prescribed sets, reps and hold in force on each session row's day (NaN where none).

    (``protocol.prescriptions_on`` does the same but currently fails under pandas 3 when it
    blanks the boolean ``per_side`` column, so the numeric columns are looked up here.)
    """
    left = pd.DataFrame(
        {"patient_id": s[Sessions.patient_id].astype("str").to_numpy(),
         "exercise_id": s[Sessions.exercise_id].astype("str").to_numpy(),
         "day": s[Sessions.day].to_numpy(dtype="datetime64[us]"), "_row": np.arange(len(s))}
    ).sort_values("day", kind="stable")  # fmt: skip
    right = pd.DataFrame(
        {"patient_id": prescriptions["patient_id"].astype("str").to_numpy(),
         "exercise_id": prescriptions["exercise_id"].astype("str").to_numpy(),
         "valid_from": prescriptions["valid_from"].to_numpy(dtype="datetime64[us]"),
         "valid_to": prescriptions["valid_to"].to_numpy(dtype="datetime64[us]"),
         "sets": prescriptions["sets"].to_numpy(dtype=np.float64, na_value=np.nan),
         "reps": prescriptions["reps"].to_numpy(dtype=np.float64, na_value=np.nan),
         "hold_s": prescriptions["hold_s"].to_numpy(dtype=np.float64, na_value=np.nan)}
    ).sort_values("valid_from", kind="stable")  # fmt: skip
    m = pd.merge_asof(
        left, right, left_on="day", right_on="valid_from", by=["patient_id", "exercise_id"]
    ).sort_values("_row")
    ended = (m["valid_to"].notna() & (m["day"] >= m["valid_to"])).to_numpy()
    cols = ("sets", "reps", "hold_s")
    return tuple(np.where(ended, np.nan, m[c].to_numpy(dtype=np.float64)) for c in cols)


def progression_flags(
    sessions: pd.DataFrame,
    pain: pd.DataFrame | None = None,
    prescriptions: pd.DataFrame | None = None,
    *,
    adherence_daily: pd.DataFrame | None = None,
    window: Window | None = None,
    protocol: Protocol | None = None,
) -> pd.DataFrame:
    """*Ready to progress* and *consider regression*, per patient and strength exercise.

    Ready to progress (protocol ``rules.progression``, CERT 7b): the dose was met on at least
    ``dose_met_days`` of the last ``window_days`` days, no session of the exercise in those
    days had pain after above ``max_pain_after``, and there was no flare in the last
    ``flare_free_days`` days. Consider regression (``rules.regression``, CERT 7a): at least
    ``sessions`` sessions in the last ``window_days`` days with pain after >=
    ``pain_after_at_least`` or a rise of >= ``pain_increase_at_least`` during the session.

    Parameters
    ----------
    sessions : DataFrame
        Clean sessions, many patients.
    pain : DataFrame, optional
        Clean pain diary: flares are flare days of back pain (:func:`~backcare_analytics.
        metrics.pain.pain_daily`) or days the patient marked ``flare``. Without it
        ``flare_in_window`` and ``ready_to_progress`` are missing where the rest holds.
    prescriptions : DataFrame, optional
        Clean prescriptions for the dose check (default: the protocol's doses).
    adherence_daily : DataFrame, optional
        :func:`~backcare_analytics.metrics.adherence.adherence_daily` output; its ``met``
        column is used instead of the minimal check below.
    window : Window, optional
        ``window.end`` is the day the flags are for; default each patient's last session day.
    protocol : Protocol, optional

    Returns
    -------
    DataFrame
        :class:`~backcare_analytics.schemas.results.ProgressionFlags`: ``patient_id,
        exercise_id, as_of, days_met, sessions`` (rows in the progression window),
        ``sessions_over_pain`` (pain after > ``max_pain_after``), ``flare_in_window``,
        ``ready_to_progress, regression_sessions, consider_regression``.

    Notes
    -----
    Minimal dose check without ``adherence_daily``: a day is met when one row has
    sets x reps >= ``dose_met_ratio`` x prescribed sets x reps and, when a hold is prescribed
    and logged, hold >= ``dose_met_ratio`` x prescribed hold.

    References
    ----------
    Slade SC et al. (2016) CERT, Br J Sports Med 50:1428-1437 (items 7a, 7b).

    Examples
    --------
    >>> s = pd.DataFrame({"patient_id": "P1", "exercise_id": "bridge",
    ...     "day": pd.date_range("2026-01-05", periods=7).astype("datetime64[us]"),
    ...     "sets": pd.array([1] * 7, dtype="Int64"), "reps": pd.array([5] * 7, dtype="Int64"),
    ...     "hold_s": pd.array([15.0] * 7, dtype="Float64"), "level": None, "variant": None,
    ...     "pain_before": pd.array([2] * 7, dtype="Int64"),
    ...     "pain_after": pd.array([2] * 7, dtype="Int64")})
    >>> f = progression_flags(s)
    >>> f[f.exercise_id == "bridge"][["exercise_id", "days_met", "ready_to_progress", "consider_regression"]].to_string(index=False)
    'exercise_id  days_met  ready_to_progress  consider_regression\\n     bridge         7               <NA>                False'
    """
    protocol = protocol or load_protocol()
    prog, reg = protocol.rules.progression, protocol.rules.regression
    c = StrengthRows(sessions, protocol, None)
    n_keys = c.pnames.size * len(c.ex_names)
    as_of = _as_of_days(c, sessions, window)
    key = c.pcode * len(c.ex_names) + c.ex
    end = as_of[c.pcode]
    in_prog = (c.day <= end) & (c.day > end - prog.window_days)
    in_reg = (c.day <= end) & (c.day > end - reg.window_days)
    before, after = c.col(Sessions.pain_before), c.col(Sessions.pain_after)
    over = after > prog.max_pain_after
    bad = (after >= reg.pain_after_at_least) | (after - before >= reg.pain_increase_at_least)
    if adherence_daily is not None:
        days_met = _days_met_from_adherence(adherence_daily, c, as_of, prog.window_days)
    else:
        met = _dose_met_rows(sessions, c, prescriptions, protocol) & in_prog
        days_met = _distinct_days(key[met], c.day[met], n_keys)
    n_sessions = np.bincount(key[in_prog], minlength=n_keys)
    n_over = np.bincount(key[in_prog & over], minlength=n_keys)
    n_bad = np.bincount(key[in_reg & bad], minlength=n_keys)
    flare = _flare_in_window(pain, c, as_of, prog.flare_free_days)
    ready = pd.array(
        (days_met >= prog.dose_met_days) & (n_over == 0) & (n_sessions > 0), dtype="boolean"
    )
    ready = ready & ~flare  # Kleene: missing flare knowledge leaves a would-be True missing
    out = _patient_exercise_frame(
        c,
        {
            "as_of": grid.as_days(np.repeat(as_of, len(c.ex_names))),
            "days_met": days_met,
            "sessions": n_sessions.astype(np.int64),
            "sessions_over_pain": n_over.astype(np.int64),
            "flare_in_window": flare,
            "ready_to_progress": ready,
            "regression_sessions": n_bad.astype(np.int64),
            "consider_regression": n_bad >= reg.sessions,
        },
    )
    return checked(out, ProgressionFlags, "progression_flags output")


def _as_of_days(c: StrengthRows, sessions: pd.DataFrame, window: Window | None) -> np.ndarray:
    """The day the flags are for, per patient: the window's end, else the patient's last
    session day (any exercise)."""
    n_pat = c.pnames.size
    if window is not None:
        return np.full(n_pat, grid.day_number(window.end))
    as_of = np.full(n_pat, np.iinfo(np.int64).min)
    np.maximum.at(as_of, c.pcode_all, grid.days(sessions[Sessions.day]))
    return as_of


def _distinct_days(key: np.ndarray, day: np.ndarray, n_keys: int) -> np.ndarray:
    """The number of distinct days of each key (keys below ``n_keys``; days span < 10^8)."""
    if key.size == 0:
        return np.zeros(n_keys, dtype=np.int64)
    u = np.unique(key * 100_000_000 + (day - day.min()))
    return np.bincount(u // 100_000_000, minlength=n_keys).astype(np.int64)


def _days_met_from_adherence(
    adherence_daily: pd.DataFrame, c: StrengthRows, as_of: np.ndarray, window_days: int
) -> np.ndarray:
    """Per patient x strength exercise: days with the dose met (``adherence_daily.met``) in
    the ``window_days`` days up to the patient's as-of day."""
    n_pat, n_ex = c.pnames.size, len(c.ex_names)
    # Cheap filters first (met, strength exercise, the span of every patient's window),
    # so patient ids are looked up only for the few rows left.
    aday_all = grid.days(adherence_daily["day"])
    lo = (as_of.min() - window_days) if n_pat else 0
    hi = as_of.max() if n_pat else -1
    keep = adherence_daily["met"].to_numpy(dtype=bool) & (aday_all > lo) & (aday_all <= hi)
    keep &= adherence_daily["exercise_id"].isin(c.ex_names).to_numpy()
    a = adherence_daily[keep]
    ap = pd.Index(c.pnames).get_indexer(a["patient_id"])
    ae = pd.Index(c.ex_names).get_indexer(a["exercise_id"])
    aday = grid.days(a["day"])
    ok = (ap >= 0) & (ae >= 0)
    ok &= (aday <= as_of[np.maximum(ap, 0)]) & (aday > as_of[np.maximum(ap, 0)] - window_days)
    return _distinct_days((ap * n_ex + ae)[ok], aday[ok], n_pat * n_ex)


def _dose_met_rows(
    sessions: pd.DataFrame,
    c: StrengthRows,
    prescriptions: pd.DataFrame | None,
    protocol: Protocol,
) -> np.ndarray:
    """Per strength row: whether it meets the prescribed dose in force that day (the minimal
    check of :func:`progression_flags`; the protocol's doses without prescriptions)."""
    ratio = protocol.rules.dose_met_ratio
    if prescriptions is not None:
        rx_sets, rx_reps, rx_hold = _doses_on(sessions.iloc[c.rows], prescriptions)
    else:
        dose = protocol.dose_table().set_index("exercise_id").loc[c.ex_names]
        rx_sets, rx_reps, rx_hold = (
            dose[col].to_numpy(dtype=np.float64, na_value=np.nan)[c.ex]
            for col in ("sets", "reps", "hold_s")
        )
    sets = c.col(Sessions.sets)
    reps = np.where(np.isnan(sets), 1.0, sets) * c.col(Sessions.reps)
    hold = c.col(Sessions.hold_s)
    return (reps >= ratio * rx_sets * rx_reps - grid.EPS) & (
        np.isnan(rx_hold) | np.isnan(hold) | (hold >= ratio * rx_hold - grid.EPS)
    )


def _flare_in_window(
    pain: pd.DataFrame | None, c: StrengthRows, as_of: np.ndarray, flare_free_days: int
) -> pd.arrays.BooleanArray:
    """Per patient x strength exercise: a back-pain flare day or a diary-reported flare in the
    ``flare_free_days`` days up to the as-of day; missing without diary days in them."""
    n_pat, n_ex = c.pnames.size, len(c.ex_names)
    flare = pd.array(np.zeros(n_pat * n_ex, dtype=bool), dtype="boolean")
    flare[:] = pd.NA
    if pain is None:
        return flare
    pnames = pd.Index(c.pnames)
    g = build_pain_grid(pain, None, None)
    policy = PainPolicy()
    _, _, fl, _ = flare_cells(g, baseline_days=policy.flare_baseline_days,
                              min_days=policy.flare_min_days, points=policy.flare_points)  # fmt: skip
    obs = (g.key % 2 == 0) & ~np.isnan(g.value)  # back pain diary days
    rep = pain[Pain.flare].to_numpy(dtype=np.float64, na_value=np.nan) == 1.0
    rp = pnames.get_indexer(pain[Pain.patient_id])[rep]
    fp = np.r_[pnames.get_indexer(g.ids)[g.key[obs] // 2], rp]
    fday = np.r_[(g.first[g.key] + g.t)[obs], grid.days(pain[Pain.day])[rep]]
    fflag = np.r_[fl[obs], np.ones(rp.size, dtype=bool)]
    ok = fp >= 0
    fend = as_of[np.maximum(fp, 0)]
    ok &= (fday <= fend) & (fday > fend - flare_free_days)
    seen = np.bincount(fp[ok], minlength=n_pat) > 0
    any_flare = np.bincount(fp[ok & fflag], minlength=n_pat) > 0
    flare = pd.array(np.repeat(any_flare, n_ex), dtype="boolean")
    flare[~np.repeat(seen, n_ex)] = pd.NA
    return flare


def _patient_exercise_frame(c: StrengthRows, columns: dict[str, object]) -> pd.DataFrame:
    """A frame of one row per patient x strength exercise (``patient_id, exercise_id`` then
    ``columns``, given in patient-code x exercise order), sorted by patient id then the
    protocol's exercise order."""
    pnames, n_ex = c.pnames, len(c.ex_names)
    n_pat = pnames.size
    order = (
        np.argsort(
            np.repeat(np.argsort(np.argsort(pnames)), n_ex) * n_ex
            + np.tile(np.arange(n_ex), n_pat),
            kind="stable",
        )
        if n_pat * n_ex
        else np.zeros(0, int)
    )
    out = pd.DataFrame(
        {
            "patient_id": pd.Series(np.repeat(pnames, n_ex), dtype="str"),
            "exercise_id": pd.Series(
                np.tile(np.asarray(c.ex_names, dtype=object), n_pat), dtype="str"
            ),
            **columns,
        }
    )
    return out.iloc[order].reset_index(drop=True)
