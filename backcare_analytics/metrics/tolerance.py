"""Tolerance of each exercise in each session: did it make the pain worse?

The programme's rule is to move "only as far as is possible without making the pain worse".
Per session row: pain after vs before, a traffic light on pain after, and whether the next
morning's diary pain was worse by 2 or more than before the session. Leg pain during the sciatic
floss is expected ("This is OK") and is not held against it: an exercise's protocol
``expected_symptoms`` exempt that diary measure.

All lookups are vectorised with integer keys and :func:`numpy.searchsorted`; no per-patient loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.errors import InputDataError
from backcare_analytics.metrics import grid
from backcare_analytics.metrics.grid import checked
from backcare_analytics.metrics.params import Window
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.schemas.clean import Pain, Sessions
from backcare_analytics.schemas.results.tolerance import LIGHT_DTYPE, SOURCE_DTYPE, SessionTolerance

__all__ = ["TolerancePolicy", "session_tolerance"]


@dataclass(frozen=True)
class TolerancePolicy:
    """Thresholds of the tolerance metric; sources in docs/metrics.md.

    ``green_max``/``amber_max``: the traffic-light ("pain-monitoring") model of Thomeé (1997):
    0-3 safe, 4-5 acceptable, above 5 high risk (pain during/after exercise, NRS). ``session_worse``
    and ``next_morning_worse``: 2 NRS points, the minimal important change (Ostelo 2008) and the
    protocol's ``rules.regression.pain_increase_at_least``. ``reference_max_hours``: how old a
    diary entry may be to stand in for a missing ``pain_before`` (house choice).
    """

    green_max: int = 3
    amber_max: int = 5
    session_worse: int = 2
    next_morning_worse: int = 2
    reference_max_hours: float = 36.0


def _seconds(values: pd.Series) -> np.ndarray:
    """Seconds since the epoch of time-zone-aware times (no intermediate copies)."""
    return pd.DatetimeIndex(values).as_unit("s").asi8


def _lookup(table_keys: np.ndarray, table_vals: list[np.ndarray], keys: np.ndarray) -> list:
    """Exact-match lookup of each key in a sorted unique key table: one array per value array
    (NaN where the key is absent)."""
    if table_keys.size == 0:
        return [np.full(keys.size, np.nan) for _ in table_vals]
    pos = np.searchsorted(table_keys, keys)
    np.minimum(pos, table_keys.size - 1, out=pos)
    hit = table_keys[pos] == keys
    return [np.where(hit, v[pos], np.nan) for v in table_vals]


_BLOCK = 1 << 18  # query rows per block of the diary lookups


def _latest_before(
    keys: np.ndarray,
    owner: np.ndarray,
    vals: list[np.ndarray],
    query: np.ndarray,
    qowner: np.ndarray,
    limit: int,
) -> list[np.ndarray]:
    """For each query time, the value of the latest sorted table entry at or before it of the
    same owner (patient), at most ``limit`` older, skipping missing values: one array per value
    array (NaN where there is none). One search serves every value array."""
    out = [np.full(query.size, np.nan) for _ in vals]
    if keys.size == 0:
        return out
    idx = np.arange(keys.size)
    # last_ok[i]: the last entry at or before i with a value (-1: none); shared when equal.
    last_ok = []
    for v in vals:
        ok = ~np.isnan(v)
        last_ok.append(idx if ok.all() else np.maximum.accumulate(np.where(ok, idx, -1)))
    # Blocks of queries: the temporaries stay small and their memory is reused.
    for lo in range(0, query.size, _BLOCK):
        q = query[lo : lo + _BLOCK]
        qo = qowner[lo : lo + _BLOCK]
        pos = np.searchsorted(keys, q, side="right") - 1
        np.maximum(pos, 0, out=pos)  # pos -1 (nothing before): entry 0 fails the checks below
        for v, lok, dest in zip(vals, last_ok, out, strict=True):
            j = lok[pos]
            jc = np.maximum(j, 0)
            hit = (j >= 0) & (owner[jc] == qo) & (keys[jc] <= q) & (q - keys[jc] <= limit)
            dest[lo : lo + q.size] = np.where(hit, v[jc], np.nan)
    return out


def session_tolerance(
    sessions: pd.DataFrame,
    pain: pd.DataFrame | None = None,
    *,
    protocol: Protocol | None = None,
    window: Window | None = None,
    policy: TolerancePolicy = TolerancePolicy(),
) -> pd.DataFrame:
    """Whether each exercise in each session was tolerated.

    A session row is *tolerated* unless its pain after is in the red band, it raised pain by
    ``session_worse`` or more, or the next morning's diary pain was ``next_morning_worse`` or
    more above the reference (a measure listed in the exercise's ``expected_symptoms`` exempt).

    Parameters
    ----------
    sessions : DataFrame
        Clean sessions (:class:`~backcare_analytics.schemas.Sessions`), many patients.
    pain : DataFrame, optional
        Clean pain diary; without it the next-morning columns are missing.
    protocol : Protocol, optional
        Gives each exercise's ``expected_symptoms`` (default: :func:`load_protocol`).
    window : Window, optional
        Keep sessions on the window's days (the diary day after the window is still read).
    policy : TolerancePolicy

    Returns
    -------
    DataFrame
        :class:`~backcare_analytics.schemas.results.SessionTolerance`, one row per session row:
        the session keys (``patient_id, session_id, performed_at, day, exercise_id, side``),
        ``pain_before, pain_after, pain_delta`` (after - before), ``light`` (green / amber /
        red on pain after), ``worse_in_session`` (delta >= 2), ``back_reference`` and
        ``back_reference_source`` (``session`` = pain_before; ``diary`` = the latest diary
        back pain within 36 h before the session), ``next_morning_back`` (the first diary
        entry of the next calendar day), ``next_morning_back_worse``, ``leg_reference`` (the
        latest diary leg pain within 36 h before), ``next_morning_leg``,
        ``next_morning_leg_worse``, ``leg_symptoms_expected``, ``tolerated``.

    Notes
    -----
    light = green if after <= 3, amber if after <= 5, red otherwise.
    next_morning_worse = next_morning - reference >= 2.
    tolerated = not (red or worse_in_session or back worse or leg worse), leaving out the
    measures the exercise expects; False as soon as one known part fails, True when the light
    is known and no known part fails, missing otherwise. Missing diary days never fail a
    session.

    References
    ----------
    Thomeé R (1997) Phys Ther 77:1690-1703 (pain-monitoring model).
    Ostelo RWJG et al. (2008) Spine 33:90-94 (2-point minimal important change).

    Examples
    --------
    >>> hx = "0" * 64
    >>> s = pd.DataFrame({"patient_id": ["P1", "P1"], "session_id": ["a", "a"],
    ...     "performed_at": pd.to_datetime(["2026-01-05 07:00", "2026-01-05 07:05"], utc=True
    ...         ).astype("datetime64[us, UTC]"),
    ...     "day": pd.to_datetime(["2026-01-05"] * 2).astype("datetime64[us]"),
    ...     "exercise_id": ["bridge", "sciatic_floss"], "side": ["none", "both"],
    ...     "pain_before": pd.array([3, 3], dtype="Int64"),
    ...     "pain_after": pd.array([6, 3], dtype="Int64")})
    >>> t = session_tolerance(s)
    >>> t[["exercise_id", "pain_delta", "light", "tolerated"]].to_string(index=False)
    '  exercise_id  pain_delta light  tolerated\\n       bridge           3   red      False\\nsciatic_floss           0 green       True'
    """
    protocol = protocol or load_protocol()
    p = policy
    s = _session_rows(sessions, window)
    before = s[Sessions.pain_before].to_numpy(dtype=np.float64, na_value=np.nan)
    after = s[Sessions.pain_after].to_numpy(dtype=np.float64, na_value=np.nan)
    delta = after - before
    nodelta = np.isnan(delta)
    # Light as codes into LIGHTS (-1 = unknown): text is made once, through a categorical.
    light = np.select(
        [np.isnan(after), after <= p.green_max, after <= p.amber_max], [-1, 0, 1], 2
    ).astype(np.int8)
    worse_session = delta >= p.session_worse
    ex_ids = s[Sessions.exercise_id].astype("str")
    expects = {ex.id: set(ex.expected_symptoms) for ex in protocol.exercises}
    leg_exempt = ex_ids.isin([e for e, v in expects.items() if "leg_pain" in v]).to_numpy()
    back_exempt = ex_ids.isin([e for e, v in expects.items() if "back_pain" in v]).to_numpy()

    found, leg_ref, nm_back, nm_leg = _diary_lookups(s, pain, p.reference_max_hours)
    fill = np.isnan(before) & ~np.isnan(found)  # pain_before, else the diary's
    back_ref = np.where(fill, found, before)
    ref_src = np.where(np.isnan(before), -1, 0).astype(np.int8)  # 0 session, 1 diary
    ref_src[fill] = 1
    nm_back_worse = nm_back - back_ref >= p.next_morning_worse
    nm_leg_worse = nm_leg - leg_ref >= p.next_morning_worse
    unknown_back = np.isnan(nm_back) | np.isnan(back_ref)
    unknown_leg = np.isnan(nm_leg) | np.isnan(leg_ref)
    fails = (
        (light == 2)
        | (~nodelta & worse_session)
        | (~unknown_back & nm_back_worse & ~back_exempt)
        | (~unknown_leg & nm_leg_worse & ~leg_exempt)
    )
    computed = {
        "pain_delta": pd.arrays.IntegerArray(np.where(nodelta, 0, delta).astype(np.int64), nodelta),
        "light": pd.Categorical.from_codes(light, dtype=LIGHT_DTYPE),
        "worse_in_session": _bool(worse_session, nodelta),
        "back_reference": back_ref,
        "back_reference_source": pd.Categorical.from_codes(ref_src, dtype=SOURCE_DTYPE),
        "next_morning_back": nm_back,
        "next_morning_back_worse": _bool(nm_back_worse, unknown_back),
        "leg_reference": leg_ref,
        "next_morning_leg": nm_leg,
        "next_morning_leg_worse": _bool(nm_leg_worse, unknown_leg),
        "leg_symptoms_expected": leg_exempt,
        "tolerated": pd.arrays.BooleanArray(~fails, ~fails & (light < 0)),
    }
    return checked(
        _tolerance_frame(s, ex_ids, computed), SessionTolerance, "session_tolerance output"
    )


def _session_rows(sessions: pd.DataFrame, window: Window | None) -> pd.DataFrame:
    """The session rows on the window's days, with a fresh 0..n-1 index (refusing a frame
    that lacks a column the metric reads)."""
    need = [Sessions.patient_id, Sessions.performed_at, Sessions.day, Sessions.exercise_id,
            Sessions.side, Sessions.pain_before, Sessions.pain_after]  # fmt: skip
    missing = [c for c in need if c not in sessions.columns]
    if missing:
        raise InputDataError(
            f"sessions frame: missing column(s) {missing}; fix: pass the clean sessions table"
        )
    s = sessions
    if window is not None:
        s = s[window.contains(s[Sessions.day]).to_numpy()]
    return s.reset_index(drop=True)


def _diary_lookups(
    s: pd.DataFrame, pain: pd.DataFrame | None, reference_max_hours: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per session row: the latest diary back pain and leg pain recorded within
    ``reference_max_hours`` before it, and the next morning's first diary back and leg pain
    (NaN where there is none)."""
    n = len(s)
    found, leg_ref, nm_back, nm_leg = (np.full(n, np.nan) for _ in range(4))
    if pain is None or not len(pain) or not n:
        return found, leg_ref, nm_back, nm_leg
    # Patient codes from the sessions (diary rows of other patients are dropped).
    sp, uniques = pd.factorize(s[Sessions.patient_id])
    sp = sp.astype(np.int64)
    dp = pd.Index(uniques).get_indexer(pain[Pain.patient_id]).astype(np.int64)
    mine = dp >= 0
    pain = pain[mine] if not mine.all() else pain
    dp = dp[mine]
    if not len(pain):
        return found, leg_ref, nm_back, nm_leg
    dday = grid.days(pain[Pain.day])
    sday_col = s[Sessions.day].to_numpy()  # datetime64: converted block by block below
    dsec = _seconds(pain[Pain.recorded_at])
    ssec = _seconds(s[Sessions.performed_at])
    dback = pain[Pain.back_pain].to_numpy(dtype=np.float64, na_value=np.nan)
    dleg = pain[Pain.leg_pain].to_numpy(dtype=np.float64, na_value=np.nan)
    sday_lo = int(grid.days(np.array([sday_col.min()]))[0])
    sday_hi = int(grid.days(np.array([sday_col.max()]))[0])
    # Next morning: the first diary entry (by time) of the next local day.
    d0 = int(min(dday.min(), sday_lo)) - 2
    span = int(max(dday.max(), sday_hi)) - d0 + 3
    dkey = dp * span + (dday - d0)
    order = np.lexsort((dsec, dkey))
    k_sorted = dkey[order]
    firsts = order[np.r_[True, k_sorted[1:] != k_sorted[:-1]]]
    tk, fback, fleg = dkey[firsts], dback[firsts], dleg[firsts]
    # Reference: the latest diary entry recorded before the session, within the limit.
    t0 = int(min(dsec.min(), ssec.min())) - 1
    tspan = int(max(dsec.max(), ssec.max())) - t0 + 2
    dk = dp * tspan + (dsec - t0)
    limit = int(reference_max_hours * 3600)
    o = np.argsort(dk, kind="stable")
    dk, downer, oback, oleg = dk[o], dp[o], dback[o], dleg[o]
    # Session rows in blocks: the per-row keys and temporaries stay small and are reused.
    for lo in range(0, n, _BLOCK):
        hi = min(lo + _BLOCK, n)
        sp_b = sp[lo:hi]
        skey = sp_b * span + (grid.days(sday_col[lo:hi]) + 1 - d0)
        nm_back[lo:hi], nm_leg[lo:hi] = _lookup(tk, [fback, fleg], skey)
        sk = sp_b * tspan + (ssec[lo:hi] - t0)
        found[lo:hi], leg_ref[lo:hi] = _latest_before(dk, downer, [oback, oleg], sk, sp_b, limit)
    return found, leg_ref, nm_back, nm_leg


def _bool(values: np.ndarray, unknown: np.ndarray) -> pd.arrays.BooleanArray:
    """A nullable boolean column: ``values``, missing where ``unknown``."""
    return pd.arrays.BooleanArray(np.asarray(values, dtype=bool), unknown)


def _tolerance_frame(
    s: pd.DataFrame, ex_ids: pd.Series, computed: dict[str, object]
) -> pd.DataFrame:
    """The output frame: the session keys and pain of ``s``, then the ``computed`` columns."""
    n = len(s)
    return pd.DataFrame(
        {
            Sessions.patient_id: s[Sessions.patient_id].astype("str"),
            Sessions.session_id: s[Sessions.session_id].astype("str")
            if Sessions.session_id in s.columns
            else pd.Series([None] * n, dtype="str"),
            Sessions.performed_at: s[Sessions.performed_at],
            Sessions.day: s[Sessions.day],
            Sessions.exercise_id: ex_ids,
            Sessions.side: s[Sessions.side].astype("str"),
            Sessions.pain_before: s[Sessions.pain_before].astype("Int64"),
            Sessions.pain_after: s[Sessions.pain_after].astype("Int64"),
            **computed,
        },
        copy=False,  # the key columns are the input's, not copies (11 M rows at cohort scale)
    )
