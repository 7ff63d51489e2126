"""Steps that more than one metric takes: the pain calendar grid and the day's best strength row.

* :func:`build_pain_grid` lays every patient x measure's daily mean pain end to end on one flat
  calendar grid (:class:`PainGrid`), so rolling and trailing means are differences of one
  global prefix sum; :func:`flare_cells` marks the flare days on it. Pain summaries, the daily
  pain table, the progression flags and the weekly verdict all start from it.
* :func:`best_daily` picks the day's best row of every patient x strength exercise x variant
  from the integer-coded strength rows (:class:`StrengthRows`); the capacity tables and the
  weekly verdict start from it.

>>> pain = pd.DataFrame({"patient_id": "P1",
...     "day": pd.date_range("2026-01-01", periods=3).astype("datetime64[us]"),
...     "back_pain": pd.array([4, 6, 5], dtype="Int64"),
...     "leg_pain": pd.array([None, 2, None], dtype="Int64"), "flare": pd.NA})
>>> g = build_pain_grid(pain, None, None)
>>> g.key.tolist(), g.t.tolist(), g.value.tolist()
([0, 0, 0, 1], [0, 1, 2, 0], [4.0, 6.0, 5.0, 2.0])
>>> g.window(np.array([0]), np.array([1]), np.array([2]))  # days 1-2 of back pain: sum, count
(array([11.]), array([2]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.errors import InputDataError
from backcare_analytics.metrics import grid
from backcare_analytics.metrics.grid import text_from_codes
from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import Protocol
from backcare_analytics.schemas.clean import Pain, Patients, Sessions
from backcare_analytics.schemas.results.pain import MEASURES

__all__ = [
    "BestDaily",
    "PainGrid",
    "StrengthRows",
    "best_daily",
    "build_pain_grid",
    "flare_cells",
]

# ---------------------------------------------------------------------------------------------
# the pain calendar grid
# ---------------------------------------------------------------------------------------------


@dataclass
class PainGrid:
    """Every patient x measure (``key = patient * 2 + measure``) on a flat run of days."""

    ids: pd.Index  # patient ids by patient code
    origin: np.ndarray  # programme start day number per patient
    has_start: np.ndarray  # whether origin came from the patients table
    first: np.ndarray  # first diary day per key (0 where no data)
    length: np.ndarray  # days from first to last diary day per key (0 where no data)
    base: np.ndarray  # offset of each key's run in the flat arrays
    key: np.ndarray  # per grid cell: its key
    t: np.ndarray  # per grid cell: days since the key's first day
    value: np.ndarray  # per grid cell: daily mean pain, NaN when no entry
    entries: np.ndarray  # per grid cell: diary entries that day
    psum: np.ndarray  # exclusive prefix sums of value (0 for NaN), length cells + 1
    pcount: np.ndarray  # exclusive prefix counts of observed cells
    flare_reported: np.ndarray  # per patient: days with a diary flare=True (in the window)

    def window(self, key: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sum and count of observed values over local days ``[lo, hi]`` (clipped) of ``key``."""
        n = self.length[key]
        lo = np.clip(lo, 0, n)
        hi = np.clip(hi + 1, 0, n)
        hi = np.maximum(hi, lo)
        b = self.base[key]
        return self.psum[b + hi] - self.psum[b + lo], self.pcount[b + hi] - self.pcount[b + lo]


def build_pain_grid(
    pain: pd.DataFrame, patients: pd.DataFrame | None, window: Window | None
) -> PainGrid:
    """The diary's daily mean pain of every patient x measure on one flat calendar grid.

    Patients are the diary's and the patients table's, sorted by id; days after
    ``window.end`` are left out; reported flares are counted on the window's days.
    """
    ids = pd.Index(pain[Pain.patient_id].unique())
    if patients is not None:
        ids = ids.union(pd.Index(patients[Patients.patient_id].unique()))
    ids = ids.sort_values()
    days = grid.days(pain[Pain.day])
    keep = np.ones(len(pain), dtype=bool)
    if window is not None:
        keep &= days <= grid.day_number(window.end)
    pcode = ids.get_indexer(pain[Pain.patient_id])
    dkey, dday, dmean, n_entries = _daily_means(pain, pcode, days, keep)
    runs = _lay_out(dkey, dday, dmean, n_entries, len(ids) * len(MEASURES))
    origin, has_start = _programme_origin(ids, patients, runs["first"], runs["length"])
    flare_reported = _reported_flare_days(pain, pcode, days, keep, window, len(ids))
    return PainGrid(ids=ids, origin=origin, has_start=has_start, flare_reported=flare_reported,
                    **runs)  # fmt: skip


def _daily_means(
    pain: pd.DataFrame, pcode: np.ndarray, days: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Key, day, mean pain and number of entries of each (key, day) with an entry, sorted."""
    keys, dvals, ddays = [], [], []
    for m, measure in enumerate(MEASURES):
        v = pain[measure].to_numpy(dtype=np.float64, na_value=np.nan)
        ok = keep & ~np.isnan(v)
        keys.append(pcode[ok] * 2 + m)
        dvals.append(v[ok])
        ddays.append(days[ok])
    key = np.concatenate(keys)
    val = np.concatenate(dvals)
    day = np.concatenate(ddays)
    # One stable sort on a (key, day) integer: the diary comes nearly in that order already.
    d0 = int(day.min()) if day.size else 0
    order = np.argsort(
        key * (int(day.max()) - d0 + 1 if day.size else 1) + (day - d0), kind="stable"
    )
    key, val, day = key[order], val[order], day[order]
    new = np.ones(key.size, dtype=bool)
    new[1:] = (key[1:] != key[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new)
    n_entries = np.diff(np.append(starts, key.size))
    dsum = np.add.reduceat(val, starts) if starts.size else np.zeros(0)
    return key[starts], day[starts], dsum / np.maximum(n_entries, 1), n_entries


def _lay_out(
    dkey: np.ndarray, dday: np.ndarray, dmean: np.ndarray, n_entries: np.ndarray, k_all: int
) -> dict[str, np.ndarray]:
    """Each key's run of days from its first to its last diary day, end to end, with the
    values, entry counts and exclusive prefix sums of the grid (the :class:`PainGrid` arrays)."""
    first = np.zeros(k_all, dtype=np.int64)
    last = np.full(k_all, -1, dtype=np.int64)
    # No diary day up to the window end (a window before the data): every key stays empty.
    kstart = np.flatnonzero(np.r_[True, dkey[1:] != dkey[:-1]]) if dkey.size else np.zeros(0, int)
    kend = np.append(kstart[1:], dkey.size)[: kstart.size] - 1
    first[dkey[kstart]] = dday[kstart]
    last[dkey[kstart]] = dday[kend]
    length = np.where(last >= 0, last - first + 1, 0)
    base = np.cumsum(length) - length
    total = int(length.sum())
    gkey = np.repeat(np.arange(k_all), length)
    gt = np.arange(total) - base[gkey]
    value = np.full(total, np.nan)
    entries = np.zeros(total, dtype=np.int64)
    pos = base[dkey] + dday - first[dkey]
    value[pos] = dmean
    entries[pos] = n_entries
    obs = ~np.isnan(value)
    psum = np.r_[0.0, np.cumsum(np.where(obs, value, 0.0))]
    pcount = np.r_[0, np.cumsum(obs)]
    return {"first": first, "length": length, "base": base, "key": gkey, "t": gt,
            "value": value, "entries": entries, "psum": psum, "pcount": pcount}  # fmt: skip


def _programme_origin(
    ids: pd.Index, patients: pd.DataFrame | None, first: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Programme start day per patient (from the patients table, else the first diary day)
    and whether it came from the table."""
    n_pat = len(ids)
    origin = np.full(n_pat, np.iinfo(np.int64).max)
    has_start = np.zeros(n_pat, dtype=bool)
    if patients is not None and len(patients):
        pc = ids.get_indexer(patients[Patients.patient_id])
        st = patients[Patients.programme_start]
        ok = st.notna().to_numpy()
        origin[pc[ok]] = grid.days(st[ok])
        has_start[pc[ok]] = True
    with_data = length > 0
    fallback = np.full(n_pat, np.iinfo(np.int64).max)
    np.minimum.at(fallback, np.flatnonzero(with_data) // 2, first[with_data])
    return np.where(has_start, origin, fallback), has_start


def _reported_flare_days(
    pain: pd.DataFrame,
    pcode: np.ndarray,
    days: np.ndarray,
    keep: np.ndarray,
    window: Window | None,
    n_pat: int,
) -> np.ndarray:
    """Per patient: distinct days in the window with a diary ``flare`` = True."""
    flag = pain[Pain.flare].to_numpy(dtype=np.float64, na_value=np.nan) == 1.0
    flag &= keep
    if window is not None:
        flag &= days >= grid.day_number(window.start)
    pd_pairs = np.unique(np.stack([pcode[flag], days[flag]]), axis=1)
    counts = np.bincount(pd_pairs[0], minlength=n_pat) if flag.any() else np.zeros(n_pat)
    return counts.astype(np.int64)


def flare_cells(
    g: PainGrid, *, baseline_days: int, min_days: int, points: float
) -> tuple[np.ndarray, ...]:
    """Per grid cell: trailing mean, trailing days, flare day, flare episode number (0 = none).

    A flare day's pain is at least ``points`` above the mean of the ``baseline_days`` days
    before it, counted when at least ``min_days`` of them have an entry.
    """
    s, c = g.window(g.key, g.t - baseline_days, g.t - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        trailing = np.where(c > 0, s / c, np.nan)
        flare = ~np.isnan(g.value) & (c >= min_days) & (g.value - trailing >= points - grid.EPS)
    prev = np.r_[False, flare[:-1]] & (g.t > 0)
    start = flare & ~prev
    cs = np.cumsum(start)
    before = np.r_[0, cs][g.base[g.key]]
    episode = np.where(flare, cs - before, 0)
    return trailing, c, flare, episode


# ---------------------------------------------------------------------------------------------
# the day's best strength row
# ---------------------------------------------------------------------------------------------


class StrengthRows:
    """Strength rows of a sessions frame as integer codes (strings are factorised once and only
    the output rows are turned back into strings).

    ``rows`` index the frame; ``ex`` (position in ``ex_names``), ``day`` (day number),
    ``pcode`` (position in ``pnames``), ``vcode``/``lcode`` (positions in ``variants`` and
    ``levels``, -1 when missing) run along them. ``pcode_all`` codes every row of the frame
    (``all_patients``), else it is None and only patients with strength rows are coded.
    """

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
        self.day = grid.days(sessions[Sessions.day].to_numpy()[self.rows])
        self._frame = sessions
        self.pcode_all: np.ndarray | None
        if all_patients:  # every patient with a session (codes of all rows in pcode_all)
            pcode, puni = pd.factorize(sessions[Sessions.patient_id])
            self.pcode_all = pcode
            self.pcode = pcode[self.rows]
        else:  # only patients with strength rows: a third of the strings to hash
            self.pcode_all = None
            self.pcode, puni = pd.factorize(sessions[Sessions.patient_id].array.take(self.rows))
        self.pnames = np.asarray(puni, dtype=object)
        ranks = np.argsort(np.argsort(self.pnames)) if self.pnames.size else np.zeros(0, int)
        self.prank = ranks[self.pcode] if self.rows.size else np.zeros(0, dtype=np.int64)
        vcode, vuni = pd.factorize(sessions[Sessions.variant].array.take(self.rows))
        lcode, luni = pd.factorize(sessions[Sessions.level].array.take(self.rows))
        self.vcode, self.variants = vcode, [str(v) for v in vuni]
        self.lcode, self.levels = lcode, [str(v) for v in luni]

    def col(self, name: str) -> np.ndarray:
        """A numeric column of the strength rows as float64 (NaN for missing)."""
        taken = self._frame[name].array.take(self.rows)
        return taken.to_numpy(dtype=np.float64, na_value=np.nan)

    def variant_code(self, name: str | None) -> int:
        """The code of a variant name (added when new); -1 for None."""
        return _code_of(self.variants, name)

    def level_code(self, name: str | None) -> int:
        """The code of a level name (added when new); -1 for None."""
        return _code_of(self.levels, name)

    def sorted_variant_rank(self, vcode: np.ndarray) -> np.ndarray:
        """Each variant code's rank among the sorted variant names (missing last)."""
        ranks = np.argsort(np.argsort(np.array(self.variants, dtype=object)))
        return np.where(vcode >= 0, ranks[np.maximum(vcode, 0)] if ranks.size else 0, len(ranks))

    def patient_names(self, pick: np.ndarray) -> pd.Series:
        """Patient ids of the picked strength rows as a ``str`` column."""
        return text_from_codes(self.pcode[pick], list(self.pnames))

    @staticmethod
    def names(uniques: list[str], codes: np.ndarray) -> pd.Series:
        """``uniques[code]`` per code as a ``str`` column (missing for -1)."""
        return text_from_codes(codes, uniques)


def _code_of(names: list[str], name: str | None) -> int:
    """The position of ``name`` in ``names``, appending it when new; -1 for None."""
    if name is None:
        return -1
    if name not in names:
        names.append(name)
    return names.index(name)


@dataclass(frozen=True)
class BestDaily:
    """The day's best strength rows: ``pick`` indexes the arrays, which run along
    ``rows.rows`` (see :func:`best_daily`)."""

    rows: StrengthRows
    pick: np.ndarray  # the best row of each (patient, exercise, variant, day), in output order
    ex: np.ndarray  # exercise code
    vcode: np.ndarray  # variant code (the protocol's default for a missing variant)
    lcode: np.ndarray  # level code (the protocol's default for a missing level)
    rank: np.ndarray  # ladder rung (0 = easiest; NaN off the ladder)
    reps: np.ndarray  # sets x reps (a missing ``sets`` counts 1)
    hold: np.ndarray  # hold in seconds
    cap: np.ndarray  # sets x reps x hold for exercises with a prescribed hold, else NaN
    n_rows: np.ndarray  # rows of each picked (patient, exercise, variant, day)


def best_daily(sessions: pd.DataFrame, protocol: Protocol, window: Window | None) -> BestDaily:
    """The day's best row per patient x strength exercise x variant, as arrays (see
    :func:`~backcare_analytics.metrics.progression.capacity_daily`)."""
    c = StrengthRows(sessions, protocol, window, all_patients=False)
    vcode, lcode, rank, hold_ex = _protocol_codes(c, protocol)
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
    key = (c.prank * len(c.ex_names) + c.ex_sorted_rank[c.ex]) * (len(c.variants) + 1) + vrank
    pick, n_rows = _last_best_per_day(key, c.day, score)
    return BestDaily(rows=c, pick=pick, ex=c.ex, vcode=vcode, lcode=lcode, rank=rank, reps=reps,
                     hold=hold, cap=cap, n_rows=n_rows)  # fmt: skip


def _protocol_codes(
    c: StrengthRows, protocol: Protocol
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Variant and level codes with the protocol's defaults filled in, ladder rank, and
    whether each row's exercise has a prescribed hold."""
    e, by_id = c.ex, protocol.by_id
    vcode, lcode = c.vcode.copy(), c.lcode.copy()
    rank = np.full(e.size, np.nan)
    hold_ex = np.zeros(e.size, dtype=bool)
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
    return vcode, lcode, rank, hold_ex


def _last_best_per_day(
    key: np.ndarray, day: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per (key, day), in that order: the row with the highest score (the last such row) and
    the number of rows."""
    if not key.size:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64)
    # One stable sort on a single (key, day) integer (rows usually come nearly in that order,
    # which a stable sort exploits), then the best score of each run: the last of the rows with
    # the run's highest score, as a three-key lexsort on (key, day, score) would pick.
    d0 = int(day.min())
    kd = key.astype(np.int64) * (int(day.max()) - d0 + 1) + (day - d0)
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
    return pick, np.diff(np.r_[-1, ends])
