"""Timing consistency: does the patient exercise at the same time each day? (docs/metrics.md)

The programme asks for the routine "preferably at the same time of the day". For each patient
and local day, the first session's start in the patient's local clock time (DST-aware: UTC is
converted per time zone, vectorised) is a point on a 24-hour circle; circular statistics
summarise how tightly those points cluster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backcare_analytics.metrics import grid as g
from backcare_analytics.metrics.adherence import AdherencePolicy
from backcare_analytics.metrics.params import Window
from backcare_analytics.schemas.clean import Patients, Sessions
from backcare_analytics.schemas.results.adherence import FirstSessionTimes, TimingConsistency

__all__ = ["circular_median", "first_session_times", "timing_consistency", "timing_tables"]

TWO_PI = 2.0 * np.pi
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
#: Patients x days x days elements of the pairwise distance block computed at once.
_BLOCK = 8_000_000


def circular_median(angles: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """The circular median (radians) of the angles of each group, vectorised over groups.

    Notes
    -----
    The sample point minimising the mean circular distance
    ``d(a, b) = pi - |pi - |a - b||`` to the other points (Mardia & Jupp 2000, section 2.2.2;
    Fisher 1993, section 2.3.2); when several points tie (an even count), the circular mean of
    the tied points, i.e. the midpoint of the two central ones. Groups are processed in blocks
    of similar size (a loop over blocks, not over patients). ``groups`` must be sorted.

    >>> a = np.deg2rad([350.0, 10.0, 20.0, 30.0, 200.0])
    >>> round(float(np.rad2deg(circular_median(a, np.zeros(5, dtype=int), 1)[0])), 9)
    10.0
    """
    out = np.full(n_groups, np.nan)
    if len(angles) == 0:
        return out
    starts = g.segment_starts(groups)
    counts = np.diff(np.r_[starts, len(groups)])
    gid = groups[starts]
    order = np.argsort(counts, kind="stable")
    buf = np.empty(max(_BLOCK, int(counts.max()) ** 2))
    i = 0
    while i < len(order):
        m = int(counts[order[i]])
        c = max(1, _BLOCK // max(m * m, 1))
        # grow the block while its largest group still fits
        chunk = order[i : i + c]
        m = int(counts[chunk].max())
        chunk = chunk[: max(1, _BLOCK // (m * m))]
        i += len(chunk)
        n = counts[chunk]
        col = np.arange(m)
        valid = col[None, :] < n[:, None]
        idx = np.where(valid, starts[chunk][:, None] + col[None, :], 0)
        a = angles[idx]
        # d = pi - |pi - |a_i - a_j||, computed in one reused buffer (no fresh block per chunk)
        dist = buf[: len(chunk) * m * m].reshape(len(chunk), m, m)
        np.subtract(a[:, :, None], a[:, None, :], out=dist)
        np.abs(dist, out=dist)
        np.subtract(np.pi, dist, out=dist)
        np.abs(dist, out=dist)
        np.subtract(np.pi, dist, out=dist)
        dist *= valid[:, None, :]
        total = dist.sum(axis=2)
        total[~valid] = np.inf
        best = total.min(axis=1, keepdims=True)
        tied = valid & (total <= best + 1e-9 * np.maximum(best, 1.0))
        med = np.arctan2((np.sin(a) * tied).sum(axis=1), (np.cos(a) * tied).sum(axis=1))
        out[gid[chunk]] = np.mod(med, TWO_PI)
    return out


def _first_starts(
    sessions: pd.DataFrame, patients: pd.DataFrame, window: Window | None
) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray]:
    """Patient codes, day numbers and local clock hours of each patient-day's first session."""
    pids, _start = g.patients_index(patients)
    n_pat = len(pids)
    sp = g.map_codes(sessions[Sessions.patient_id], pids)
    sd = g.days(sessions[Sessions.day])
    times = sessions[Sessions.performed_at]
    t = times.array.as_unit("us").asi8  # int64 microseconds since the epoch, UTC; NaT = min
    ok = (sp >= 0) & (sd != g.NO_DAY) & (t != g.NO_DAY)
    if window is not None:
        ok &= (sd >= g.day_number(window.start)) & (sd <= g.day_number(window.end))
    if not ok.all():
        sp, sd, t = sp[ok], sd[ok], t[ok]
    big = np.iinfo(np.int64).max
    first = np.full(n_pat + 1, big)
    last = np.full(n_pat + 1, g.NO_DAY)
    np.minimum.at(first, sp, sd)
    np.maximum.at(last, sp, sd)
    first, last = first[:n_pat], last[:n_pat]
    none = last == g.NO_DAY
    first[none], last[none] = 0, -1
    grid = g.DayGrid(*g.expand_ranges(first, last), n_pat)
    pos = grid.locate(sp, sd)
    earliest = np.full(len(grid), big)
    np.minimum.at(earliest, pos, t)
    present = earliest != big
    p, d, t_first = grid.key[present], grid.day[present], earliest[present]
    # UTC -> local wall clock, one conversion per time zone (not per patient).
    zones = patients.drop_duplicates(Patients.patient_id).set_index(Patients.patient_id)
    zone_of = zones[Patients.timezone].reindex(pids).astype("str").to_numpy()
    zone_codes, zone_names = pd.factorize(zone_of[p])
    local = np.empty(len(p), dtype=np.int64)
    for z, name in enumerate(zone_names):
        sel = zone_codes == z
        utc = pd.DatetimeIndex(t_first[sel].astype("datetime64[us]"), tz="UTC")
        wall = utc.tz_convert(name).tz_localize(None)
        local[sel] = np.asarray(wall, dtype="datetime64[us]").astype(np.int64)
    hours = np.mod(local, DAY_US) / HOUR_US
    return pids, p, d, hours


def _stats(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    window: Window | None,
    policy: AdherencePolicy | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first-session-times table and the per-patient timing consistency table."""
    policy = policy or AdherencePolicy.from_protocol()
    pids, p, d, hours = _first_starts(sessions, patients, window)
    n_pat = len(pids)
    theta = hours * (TWO_PI / 24.0)
    n = np.bincount(p, minlength=n_pat)
    c = np.bincount(p, np.cos(theta), minlength=n_pat)
    s = np.bincount(p, np.sin(theta), minlength=n_pat)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(np.hypot(c, s) / n, 0.0, 1.0)
        mean = np.where(r > 1e-12, np.mod(np.arctan2(s, c), TWO_PI), np.nan)
        sd_h = np.sqrt(-2.0 * np.log(r)) * 24.0 / TWO_PI
    med = circular_median(theta, p, n_pat)
    dist_h = (np.pi - np.abs(np.pi - np.abs(theta - med[p]))) * 24.0 / TWO_PI
    minutes = dist_h * 60.0
    within = minutes <= policy.timing_window_min + g.EPS
    daily = g.frame(
        {
            "patient_id": g.take_str(pids, p),
            "day": g.as_days(d),
            "first_start_local_h": hours,
            "minutes_from_median": minutes,
            "within_window": within,
        }
    )
    has = n > 0
    share = np.bincount(p[within], minlength=n_pat) / np.maximum(n, 1)
    summary = g.frame(
        {
            "patient_id": g.take_str(pids, np.flatnonzero(has)),
            "days": n[has].astype(np.int64),
            "circular_mean_h": np.mod(mean[has] * 24.0 / TWO_PI, 24.0),
            "circular_median_h": np.mod(med[has] * 24.0 / TWO_PI, 24.0),
            "resultant_length": r[has],
            "circular_sd_h": sd_h[has],
            "share_within_window": share[has],
        }
    )
    return daily, summary


def first_session_times(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None = None,
    policy: AdherencePolicy | None = None,
) -> pd.DataFrame:
    """The local clock time of each patient's first session of each day, and its distance
    from the patient's circular median start time.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.FirstSessionTimes`:
        ``patient_id``, ``day``, ``first_start_local_h`` (hours after local midnight, DST-aware),
        ``minutes_from_median`` (circular distance, 0-720), ``within_window``
        (``<= policy.timing_window_min``).

    Notes
    -----
    Local time = ``performed_at`` (UTC) converted to the patient's IANA zone;
    ``h = (local - local midnight) / 1 h``. See :func:`timing_consistency` for the median.

    Examples
    --------
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["Europe/Amsterdam"],
    ...     "programme_start": [pd.Timestamp("2026-03-28")]})
    >>> ses = pd.DataFrame({"patient_id": ["P1", "P1"],
    ...     "day": pd.to_datetime(["2026-03-28", "2026-03-29"]),
    ...     "performed_at": pd.to_datetime(["2026-03-28T06:00Z", "2026-03-29T05:00Z"]).as_unit("us")})
    >>> first_session_times(ses, pts)["first_start_local_h"].tolist()  # 07:00 both days (DST)
    [7.0, 7.0]
    """
    daily = _stats(sessions, patients, window, policy)[0]
    return g.checked(daily, FirstSessionTimes, "first_session_times output")


def timing_consistency(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None = None,
    policy: AdherencePolicy | None = None,
) -> pd.DataFrame:
    """How consistently each patient starts the routine at the same local time of day.

    Parameters
    ----------
    sessions, patients
        Clean frames holding any number of patients (``performed_at`` in UTC, ``timezone``).
    window
        Only days inside it; ``None``: all days.
    policy
        ``timing_window_min`` (60): the half-width of "on time" around the median.

    Returns
    -------
    pandas.DataFrame
        Validated by :class:`~backcare_analytics.schemas.results.TimingConsistency`, one row per
        patient with a session: ``patient_id``, ``days`` (days with a session),
        ``circular_mean_h`` (missing when R = 0), ``circular_median_h``, ``resultant_length``
        (R), ``circular_sd_h``, ``share_within_window``.

    Notes
    -----
    With ``theta_i = 2 pi h_i / 24`` for the first start ``h_i`` of each day:
    ``R = |sum exp(i theta)| / n``, circular mean ``atan2(sum sin, sum cos)``, circular SD in
    hours ``sqrt(-2 ln R) * 24 / (2 pi)`` (the same as ``scipy.stats.circstd(h, high=24,
    low=0)``); the median is :func:`circular_median`; ``share_within_window`` is the share of
    days whose first start lies within ``timing_window_min`` minutes of the median.

    References
    ----------
    Fisher NI (1993). Statistical Analysis of Circular Data. Cambridge University Press.
    Mardia KV, Jupp PE (2000). Directional Statistics. Wiley.

    Examples
    --------
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"] * 3,
    ...     "day": pd.to_datetime(["2026-03-02", "2026-03-03", "2026-03-04"]),
    ...     "performed_at": pd.to_datetime(["2026-03-02T23:30Z", "2026-03-03T00:30Z",
    ...                                     "2026-03-04T23:00Z"]).as_unit("us")})
    >>> t = timing_consistency(ses, pts)
    >>> round(float(t.circular_median_h[0]), 6), float(t.share_within_window[0])
    (23.5, 1.0)
    """
    summary = _stats(sessions, patients, window, policy)[1]
    return g.checked(summary, TimingConsistency, "timing_consistency output")


def timing_tables(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None = None,
    policy: AdherencePolicy | None = None,
) -> dict[str, pd.DataFrame]:
    """:func:`first_session_times` and :func:`timing_consistency` from one pass.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``first_session_times`` and ``timing_consistency``, as the two functions return them.

    Examples
    --------
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")]})
    >>> ses = pd.DataFrame({"patient_id": ["P1"], "day": [pd.Timestamp("2026-03-02")],
    ...     "performed_at": pd.to_datetime(["2026-03-02T07:00Z"]).as_unit("us")})
    >>> sorted(timing_tables(ses, pts))
    ['first_session_times', 'timing_consistency']
    """
    daily, summary = _stats(sessions, patients, window, policy)
    return {
        "first_session_times": g.checked(daily, FirstSessionTimes, "first_session_times output"),
        "timing_consistency": g.checked(summary, TimingConsistency, "timing_consistency output"),
    }
