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

from backcare_analytics.errors import InputDataError
from backcare_analytics.metrics._output import checked, text_from_codes
from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.schemas.clean import Pain, Sessions
from backcare_analytics.schemas.results.progression import (
    CapacityDaily,
    CapacityWeekly,
    ProgressionEvents,
    ProgressionFlags,
)

__all__ = ["capacity_daily", "capacity_weekly", "progression_events", "progression_flags"]

_KEYS = ["patient_id", "exercise_id", "variant"]


def _day_numbers(values: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[us]").astype("datetime64[D]").astype(np.int64)


def _to_days(numbers: np.ndarray) -> np.ndarray:
    return np.asarray(numbers, dtype=np.int64).astype("datetime64[D]").astype("datetime64[us]")


class _Coded:
    """Strength rows of a sessions frame as integer codes (strings are factorised once and only
    the output rows are turned back into strings)."""

    def __init__(
        self,
        sessions: pd.DataFrame,
        protocol: Protocol,
        window: Window | None,
        all_patients: bool = True,
    ) -> None:
        need = [Sessions.patient_id, Sessions.day, Sessions.exercise_id, Sessions.sets,
                Sessions.reps, Sessions.hold_s, Sessions.level, Sessions.variant]  # fmt: skip
        missing = [c for c in need if c not in sessions.columns]
        if missing:
            raise InputDataError(
                f"sessions frame: missing column(s) {missing}; fix: pass the clean sessions table"
            )
        self.ex_names = [ex.id for ex in protocol.exercises if ex.is_strength]
        self.ex_sorted_rank = np.argsort(np.argsort(np.array(self.ex_names, dtype=object)))
        ecode, euni = pd.factorize(sessions[Sessions.exercise_id])
        emap = np.array([self.ex_names.index(u) if u in self.ex_names else -1 for u in euni] + [-1])
        e = emap[ecode]  # code -1 (missing) indexes the trailing -1
        keep = e >= 0
        if window is not None:
            keep &= window.contains(sessions[Sessions.day]).to_numpy()
        self.rows = np.flatnonzero(keep)
        self.ex = e[self.rows]
        # Only the strength rows are converted and factorised (a third of a typical table).
        self.day = _day_numbers(sessions[Sessions.day].to_numpy()[self.rows])
        self._frame = sessions
        if all_patients:  # every patient with a session (codes of all rows in pcode_all)
            pcode, puni = pd.factorize(sessions[Sessions.patient_id])
            self.pcode_all = pcode
            self._pcode = pcode[self.rows]
        else:  # only patients with strength rows: a third of the strings to hash
            self.pcode_all = None
            self._pcode, puni = pd.factorize(sessions[Sessions.patient_id].array.take(self.rows))
        self._pnames = np.asarray(puni, dtype=object)
        ranks = np.argsort(np.argsort(self._pnames)) if self._pnames.size else np.zeros(0, int)
        self.prank = ranks[self._pcode] if self.rows.size else np.zeros(0, dtype=np.int64)
        vcode, vuni = pd.factorize(sessions[Sessions.variant].array.take(self.rows))
        lcode, luni = pd.factorize(sessions[Sessions.level].array.take(self.rows))
        self.vcode, self.variants = vcode, [str(v) for v in vuni]
        self.lcode, self.levels = lcode, [str(v) for v in luni]

    def col(self, name: str) -> np.ndarray:
        taken = self._frame[name].array.take(self.rows)
        return taken.to_numpy(dtype=np.float64, na_value=np.nan)

    def variant_code(self, name: str | None) -> int:
        if name is None:
            return -1
        if name not in self.variants:
            self.variants.append(name)
        return self.variants.index(name)

    def level_code(self, name: str | None) -> int:
        if name is None:
            return -1
        if name not in self.levels:
            self.levels.append(name)
        return self.levels.index(name)

    def sorted_variant_rank(self, vcode: np.ndarray) -> np.ndarray:
        ranks = np.argsort(np.argsort(np.array(self.variants, dtype=object)))
        return np.where(vcode >= 0, ranks[np.maximum(vcode, 0)] if ranks.size else 0, len(ranks))

    def patient_names(self, pick: np.ndarray) -> pd.Series:
        return text_from_codes(self._pcode[pick], list(self._pnames))

    @staticmethod
    def names(uniques: list[str], codes: np.ndarray) -> pd.Series:
        return text_from_codes(codes, uniques)


def _coded(
    sessions: pd.DataFrame, protocol: Protocol, window: Window | None, all_patients: bool = True
) -> _Coded:
    return _Coded(sessions, protocol, window, all_patients)


def _best_daily(sessions: pd.DataFrame, protocol: Protocol, window: Window | None) -> dict:
    """The day's best row per patient x strength exercise x variant, as arrays (see
    :func:`capacity_daily`); ``pick`` indexes the coded strength rows."""
    c = _coded(sessions, protocol, window, all_patients=False)
    rows, e, by_id = c.rows, c.ex, protocol.by_id
    vcode, lcode = c.vcode.copy(), c.lcode.copy()
    rank = np.full(rows.size, np.nan)
    hold_ex = np.zeros(rows.size, dtype=bool)
    for k, ex_id in enumerate(c.ex_names):
        ex = by_id[ex_id]
        m = e == k
        if not m.any():
            continue
        if ex.variants:
            vcode[m & (vcode < 0)] = c.variant_code(ex.default_variant)
        else:
            vcode[m] = -1
        if ex.ladder:
            lcode[m & (lcode < 0)] = c.level_code(ex.default_level)
            table = np.array([ex.ladder.index(lv) if lv in ex.ladder else np.nan
                              for lv in c.levels], dtype=np.float64)  # fmt: skip
            lc = lcode[m]
            rank[m] = np.where(lc >= 0, table[np.maximum(lc, 0)] if table.size else np.nan, np.nan)
        else:
            lcode[m] = -1
        hold_ex[m] = ex.dose.hold_s is not None
    sets = c.col(Sessions.sets)
    reps = np.where(np.isnan(sets), 1.0, sets) * c.col(Sessions.reps)
    hold = c.col(Sessions.hold_s)
    cap = np.where(hold_ex, reps * hold, np.nan)
    score = np.where(
        ~np.isnan(rank),
        rank * 1e4 + np.nan_to_num(reps, nan=-1.0),
        np.where(np.isnan(cap), np.nan_to_num(reps, nan=-1.0) - 1e9, cap),
    )
    # Sort keys in the output order: patient, exercise, variant (missing last), day.
    vrank = c.sorted_variant_rank(vcode)
    key = (c.prank * len(c.ex_names) + c.ex_sorted_rank[e]) * (len(c.variants) + 1) + vrank
    # One stable sort on a single (key, day) integer (rows usually come nearly in that order,
    # which a stable sort exploits), then the best score of each run: the last of the rows with
    # the run's highest score, as a three-key lexsort on (key, day, score) would pick.
    if key.size:
        d0 = int(c.day.min())
        kd = key.astype(np.int64) * (int(c.day.max()) - d0 + 1) + (c.day - d0)
        order = np.argsort(kd, kind="stable")
        kd = kd[order]
        last = np.r_[kd[1:] != kd[:-1], True]
        ends = np.flatnonzero(last)
        starts = np.r_[0, ends[:-1] + 1]
        sc = score[order]
        best = np.maximum.reduceat(sc, starts)
        run = np.repeat(np.arange(ends.size), np.diff(np.r_[starts, sc.size]))
        at = np.flatnonzero(sc == best[run])  # every run has at least one
        ra = run[at]
        pick = order[at[np.r_[ra[1:] != ra[:-1], True]]]  # the last best row of each run
        n_rows = np.diff(np.r_[-1, ends])
    else:
        pick = np.zeros(0, dtype=np.intp)
        n_rows = np.zeros(0, dtype=np.int64)
    return {"c": c, "pick": pick, "ex": e, "vcode": vcode, "lcode": lcode, "rank": rank,
            "reps": reps, "hold": hold, "cap": cap, "n_rows": n_rows}  # fmt: skip


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
    b = _best_daily(sessions, protocol, window)
    c, pick, e, vcode, lcode = b["c"], b["pick"], b["ex"], b["vcode"], b["lcode"]
    rank, reps, hold, cap, n_rows = b["rank"], b["reps"], b["hold"], b["cap"], b["n_rows"]
    out = pd.DataFrame(
        {
            "patient_id": c.patient_names(pick),
            "exercise_id": text_from_codes(e[pick], c.ex_names),
            "variant": c.names(c.variants, vcode[pick]),
            "day": _to_days(c.day[pick]),
            "sessions": n_rows.astype(np.int64),
            "level": c.names(c.levels, lcode[pick]),
            "level_rank": pd.array(rank[pick], dtype="Float64").astype("Int64"),
            "reps": pd.array(reps[pick], dtype="Float64").round().astype("Int64"),
            "hold_s": hold[pick],
            "capacity_s": cap[pick],
        }
    )
    return checked(out.reset_index(drop=True), CapacityDaily, "capacity_daily output")


def _iso_labels(mondays: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(mondays, return_inverse=True)
    labels = np.array(
        [f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}" for d in _to_days(uniq).astype(object)],
        dtype=object,
    )
    return labels[inv]


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
    day = _day_numbers(daily["day"])
    monday = day - ((day + 3) % 7)  # 1970-01-01 was a Thursday
    rank = daily["level_rank"].to_numpy(dtype=np.float64, na_value=np.nan)
    codes, names = {}, {}
    for col in _KEYS:  # integer keys, missing last, in the order of the sorted names
        cc, uu = pd.factorize(daily[col], sort=True)
        codes[col] = np.where(cc < 0, len(uu), cc)
        names[col] = np.asarray([*uu, None], dtype=object)
    lcode, luni = pd.factorize(daily["level"])
    # One integer key (patient, exercise, variant, week) in that sort order: a one-key groupby.
    m0 = int(monday.min()) if monday.size else 0
    n_w = (int(monday.max()) - m0) // 7 + 1 if monday.size else 1
    n_v = len(names["variant"])
    n_e = len(names["exercise_id"])
    key = ((codes["patient_id"].astype(np.int64) * n_e + codes["exercise_id"]) * n_v
           + codes["variant"]) * n_w + (monday - m0) // 7  # fmt: skip
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
    keys = ["key"]
    g = f.groupby(keys, sort=True)
    days = g.size()
    top = g["rank"].transform("max").to_numpy()
    at_top = np.isnan(top) | (rank == top)
    agg = (
        f[at_top]
        .groupby(keys, sort=True)
        .agg(rank=("rank", "max"), reps=("reps", "median"), hold_s=("hold_s", "median"),
             capacity_s=("capacity_s", "median"), level=("level", "max"))
    )  # fmt: skip
    agg["days"] = days.reindex(agg.index).to_numpy()
    agg = agg.reset_index()
    k = agg["key"].to_numpy(dtype=np.int64).copy()  # read-only under copy-on-write
    mon = m0 + 7 * (k % n_w)
    k //= n_w
    agg["v"] = k % n_v
    k //= n_v
    agg["e"] = k % n_e
    agg["p"] = k // n_e
    lnames = np.asarray([*luni, None], dtype=object)
    lv = agg["level"].to_numpy()
    out = pd.DataFrame(
        {
            "patient_id": text_from_codes(agg["p"].to_numpy(), list(names["patient_id"])),
            "exercise_id": text_from_codes(agg["e"].to_numpy(), list(names["exercise_id"])),
            "variant": text_from_codes(agg["v"].to_numpy(), list(names["variant"])),
            "week": pd.Series(_iso_labels(mon), dtype="str"),
            "week_start": _to_days(mon),
            "days": agg["days"].astype(np.int64),
            "level": pd.Series(lnames[np.where(lv < 0, len(luni), lv)], dtype="str"),
            "level_rank": pd.array(agg["rank"].to_numpy(), dtype="Float64").astype("Int64"),
            "reps": agg["reps"].astype(np.float64),
            "hold_s": agg["hold_s"].astype(np.float64),
            "capacity_s": agg["capacity_s"].astype(np.float64),
        }
    )
    return checked(out, CapacityWeekly, "capacity_weekly output")


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
    same = (
        (c["patient_id"] == c["patient_id"].shift())
        & (c["exercise_id"] == c["exercise_id"].shift())
        & (c["variant"].fillna("") == c["variant"].fillna("").shift())
    ).to_numpy()
    rank = c["level_rank"].to_numpy(dtype=np.float64, na_value=np.nan)
    reps = c["reps"].to_numpy(dtype=np.float64, na_value=np.nan)
    hold = c["hold_s"].to_numpy(dtype=np.float64, na_value=np.nan)

    def prev(a: np.ndarray) -> np.ndarray:
        return np.r_[np.nan, a[:-1]]

    d_rank = rank - prev(rank)
    d_reps = reps - prev(reps)
    d_hold = hold - prev(hold)
    level_change = same & ~np.isnan(d_rank) & (d_rank != 0)
    same_level = same & ~level_change
    eps = 1e-9
    specs = [
        ("level_up", level_change & (d_rank > 0), rank),
        ("level_down", level_change & (d_rank < 0), rank),
        ("reps_up", same_level & (d_reps >= rule.reps_step - eps), reps),
        ("reps_down", same_level & (d_reps <= -rule.reps_step + eps), reps),
        ("hold_up", same_level & (d_hold >= rule.hold_step_s - eps), hold),
        ("hold_down", same_level & (d_hold <= -rule.hold_step_s + eps), hold),
    ]
    day = c[dcol].to_numpy(dtype="datetime64[us]")
    lvl = c["level"].astype("str")
    parts = []
    for name, mask, values in specs:
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
    out = out.sort_values(["patient_id", "exercise_id", "variant", "day", "event"], kind="stable")
    return checked(out.reset_index(drop=True), ProgressionEvents, "progression_events output")


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
    ratio = protocol.rules.dose_met_ratio
    c = _coded(sessions, protocol, None)
    n_ex = len(c.ex_names)
    pnames = c._pnames
    n_pat = pnames.size
    # As of: the window's end, else each patient's last session day (any exercise).
    if window is not None:
        as_of = np.full(n_pat, int(_day_numbers(np.array([window.end.to_datetime64()]))[0]))
    else:
        as_of = np.full(n_pat, np.iinfo(np.int64).min)
        np.maximum.at(as_of, c.pcode_all, _day_numbers(sessions[Sessions.day]))
    p, e, day = c._pcode, c.ex, c.day
    key = p * n_ex + e
    n_keys = n_pat * n_ex
    end = as_of[p]
    in_prog = (day <= end) & (day > end - prog.window_days)
    in_reg = (day <= end) & (day > end - reg.window_days)
    before, after = c.col(Sessions.pain_before), c.col(Sessions.pain_after)
    over = after > prog.max_pain_after
    bad = (after >= reg.pain_after_at_least) | (after - before >= reg.pain_increase_at_least)

    def distinct_days(k: np.ndarray, d: np.ndarray) -> np.ndarray:
        if k.size == 0:
            return np.zeros(n_keys, dtype=np.int64)
        u = np.unique(k * 100_000_000 + (d - d.min()))
        return np.bincount(u // 100_000_000, minlength=n_keys).astype(np.int64)

    if adherence_daily is not None:
        # Cheap filters first (met, strength exercise, the span of every patient's window),
        # so patient ids are looked up only for the few rows left.
        aday_all = _day_numbers(adherence_daily["day"])
        lo = (as_of.min() - prog.window_days) if n_pat else 0
        hi = as_of.max() if n_pat else -1
        keep = adherence_daily["met"].to_numpy(dtype=bool) & (aday_all > lo) & (aday_all <= hi)
        keep &= adherence_daily["exercise_id"].isin(c.ex_names).to_numpy()
        a = adherence_daily[keep]
        ap = pd.Index(pnames).get_indexer(a["patient_id"])
        ae = pd.Index(c.ex_names).get_indexer(a["exercise_id"])
        aday = _day_numbers(a["day"])
        ok = (ap >= 0) & (ae >= 0)
        ok &= (aday <= as_of[np.maximum(ap, 0)]) & (
            aday > as_of[np.maximum(ap, 0)] - prog.window_days
        )
        days_met = distinct_days((ap * n_ex + ae)[ok], aday[ok])
    else:
        if prescriptions is not None:
            sub = sessions.iloc[c.rows]
            rx_sets, rx_reps, rx_hold = _doses_on(sub, prescriptions)
        else:
            dose = protocol.dose_table().set_index("exercise_id").loc[c.ex_names]
            rx_sets = dose["sets"].to_numpy(dtype=np.float64, na_value=np.nan)[e]
            rx_reps = dose["reps"].to_numpy(dtype=np.float64, na_value=np.nan)[e]
            rx_hold = dose["hold_s"].to_numpy(dtype=np.float64, na_value=np.nan)[e]
        sets = c.col(Sessions.sets)
        reps = np.where(np.isnan(sets), 1.0, sets) * c.col(Sessions.reps)
        hold = c.col(Sessions.hold_s)
        met = (reps >= ratio * rx_sets * rx_reps - 1e-9) & (
            np.isnan(rx_hold) | np.isnan(hold) | (hold >= ratio * rx_hold - 1e-9)
        )
        days_met = distinct_days(key[met & in_prog], day[met & in_prog])

    n_sessions = np.bincount(key[in_prog], minlength=n_keys)
    n_over = np.bincount(key[in_prog & over], minlength=n_keys)
    n_bad = np.bincount(key[in_reg & bad], minlength=n_keys)

    flare = pd.array(np.zeros(n_keys, dtype=bool), dtype="boolean")
    flare[:] = pd.NA
    if pain is not None:
        from backcare_analytics.metrics.pain import PainPolicy, _build_grid, _flares

        g = _build_grid(pain, None, None)
        _, _, fl, _ = _flares(g, PainPolicy())
        obs = (g.key % 2 == 0) & ~np.isnan(g.value)  # back pain diary days
        gp = pd.Index(pnames).get_indexer(g.ids)[g.key[obs] // 2]
        gday = (g.first[g.key] + g.t)[obs]
        gfl = fl[obs]
        rep = pain[Pain.flare].to_numpy(dtype=np.float64, na_value=np.nan) == 1.0
        rp = pd.Index(pnames).get_indexer(pain[Pain.patient_id])[rep]
        rday = _day_numbers(pain[Pain.day])[rep]
        fp = np.r_[gp, rp]
        fday = np.r_[gday, rday]
        fflag = np.r_[gfl, np.ones(rp.size, dtype=bool)]
        ok = fp >= 0
        fend = as_of[np.maximum(fp, 0)]
        ok &= (fday <= fend) & (fday > fend - prog.flare_free_days)
        seen = np.bincount(fp[ok], minlength=n_pat) > 0
        any_flare = np.bincount(fp[ok & fflag], minlength=n_pat) > 0
        per_key_seen = np.repeat(seen, n_ex)
        flare = pd.array(np.repeat(any_flare, n_ex), dtype="boolean")
        flare[~per_key_seen] = pd.NA

    ready = pd.array(
        (days_met >= prog.dose_met_days) & (n_over == 0) & (n_sessions > 0), dtype="boolean"
    )
    ready = ready & ~flare  # Kleene: missing flare knowledge leaves a would-be True missing
    order = (
        np.argsort(
            np.repeat(np.argsort(np.argsort(pnames)), n_ex) * n_ex
            + np.tile(np.arange(n_ex), n_pat),
            kind="stable",
        )
        if n_keys
        else np.zeros(0, int)
    )
    out = (
        pd.DataFrame(
            {
                "patient_id": pd.Series(np.repeat(pnames, n_ex), dtype="str"),
                "exercise_id": pd.Series(
                    np.tile(np.asarray(c.ex_names, dtype=object), n_pat), dtype="str"
                ),
                "as_of": _to_days(np.repeat(as_of, n_ex)),
                "days_met": days_met,
                "sessions": n_sessions.astype(np.int64),
                "sessions_over_pain": n_over.astype(np.int64),
                "flare_in_window": flare,
                "ready_to_progress": ready,
                "regression_sessions": n_bad.astype(np.int64),
                "consider_regression": n_bad >= reg.sessions,
            }
        )
        .iloc[order]
        .reset_index(drop=True)
    )
    return checked(out, ProgressionFlags, "progression_flags output")
