"""Trend statistics for many short series at once: Mann-Kendall, Kendall's tau-b, Theil-Sen.

Every function here takes one long frame holding many series (one per group key) and computes
the statistic for all groups together in numpy: the series are sorted by group, padded into a
2-D block of groups of similar length, and every within-group pair ``(i, j), i < j`` is formed by
index arithmetic on that block. Blocks are processed in chunks of at most ``max_pairs`` pair
cells so memory stays bounded whatever the number of groups. No Python loop runs per group.

>>> df = pd.DataFrame({"g": ["a"] * 8, "t": np.arange(8.0), "y": [5, 5, 4, 4, 3, 3, 2, 1]})
>>> r = trend_tests(df, by="g", x="t", y="y")
>>> r[["g", "n", "mk_s", "kendall_tau", "sen_slope", "insufficient_data"]].to_string(index=False)
'g  n  mk_s  kendall_tau  sen_slope  insufficient_data\\na  8 -25.0    -0.944911       -0.5              False'
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["TREND_COLUMNS", "kendall_tau_by", "trend_arrays", "trend_tests"]

#: Columns :func:`trend_tests` adds after the group keys.
TREND_COLUMNS = (
    "n",
    "mk_s",
    "mk_var_s",
    "mk_z",
    "mk_p",
    "kendall_tau",
    "sen_slope",
    "sen_intercept",
    "sen_ci_low",
    "sen_ci_high",
    "insufficient_data",
)

_MAX_PAIRS = 2_000_000


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i < j, of every pair of ``n`` positions (cached per ``n``)."""
    i, j = np.triu_indices(n, 1)
    return i.astype(np.intp), j.astype(np.intp)


def _tie_terms(
    codes: np.ndarray, values: np.ndarray, n_groups: int, *, presorted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, over runs of tied values of size t: Σ t(t-1)(2t+5) (the Mann-Kendall variance
    correction) and Σ t(t-1)/2 (the tied pairs of Kendall's τ-b). ``presorted``: the rows are
    already in (code, value) order."""
    if codes.size == 0:
        return np.zeros(n_groups), np.zeros(n_groups)
    if presorted:
        c, v = codes, values
    else:
        order = np.lexsort((values, codes))
        c, v = codes[order], values[order]
    new = np.ones(c.size, dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (v[1:] != v[:-1])
    starts = np.flatnonzero(new)
    t = np.diff(np.append(starts, c.size)).astype(np.float64)
    grp = c[starts]
    var_term = np.bincount(grp, weights=t * (t - 1) * (2 * t + 5), minlength=n_groups)
    pairs = np.bincount(grp, weights=t * (t - 1) / 2, minlength=n_groups)
    return var_term, pairs


def _row_tie_terms(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_tie_terms` for each row of a NaN-padded block (rows are short: sorting them
    costs far less than one global two-key sort)."""
    rows, width = block.shape
    if rows == 0 or width == 0:
        return np.zeros(rows), np.zeros(rows)
    srt = np.sort(block, axis=1)  # NaN padding last; NaN != NaN, so padding never ties
    new = np.ones((rows, width), dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    starts = np.flatnonzero(new.ravel())
    t = np.diff(np.append(starts, rows * width)).astype(np.float64)
    row = starts // width
    var_term = np.bincount(row, weights=t * (t - 1) * (2 * t + 5), minlength=rows)
    pairs = np.bincount(row, weights=t * (t - 1) / 2, minlength=rows)
    return var_term, pairs


def _blocks(counts: np.ndarray, max_pairs: int):
    """Yield (group indices, width) chunks: groups of similar size padded to a common width."""
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    pos = 0
    while pos < order.size:
        width = int(counts[order[pos]])
        n_pairs = max(width * (width - 1) // 2, 1)
        take = max(1, max_pairs // n_pairs)
        yield order[pos : pos + take], width
        pos += take


def _block(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, width: int) -> np.ndarray:
    """A (groups, width) block of each group's values, NaN-padded on the right."""
    out = np.full((starts.size, width), np.nan)
    rows = np.repeat(np.arange(starts.size), counts)
    cols = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out[rows, cols] = values[np.repeat(starts, counts) + cols]
    return out


def _order_stat(sorted_rows: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Element ``k[r]`` of each sorted row; NaN where ``k`` is out of range."""
    if sorted_rows.shape[1] == 0:  # groups of one value: no pairs, no slopes
        return np.full(sorted_rows.shape[0], np.nan)
    ok = (k >= 0) & (k < sorted_rows.shape[1])
    kk = np.where(ok, k, 0)
    vals = np.take_along_axis(sorted_rows, kk[:, None], axis=1)[:, 0]
    return np.where(ok, vals, np.nan)


def trend_arrays(
    codes: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_groups: int | None = None,
    min_n: int = 8,
    alpha: float = 0.95,
    max_pairs: int = _MAX_PAIRS,
    sen: bool = True,
    interval: bool = True,
    intercept: bool = True,
) -> dict[str, np.ndarray]:
    """Mann-Kendall and Theil-Sen statistics of ``y`` against ``x`` for every group code.

    The array form of :func:`trend_tests`: ``codes`` are integer group codes ``0..n_groups-1``
    (any order), rows with a missing ``x`` or ``y`` are dropped. Returns one array per name in
    :data:`TREND_COLUMNS`, indexed by group code. ``sen=False`` skips the Sen slope and its
    interval (left missing), which saves the sort of every pairwise slope; ``interval=False``
    and ``intercept=False`` leave only the interval or the intercept missing (for callers that
    do not report them).
    """
    codes, x, y, counts = _grouped(codes, x, y, n_groups)
    g = counts.size
    starts = np.cumsum(counts) - counts
    tie_x, pairs_tied_x = _tie_terms(codes, x, g, presorted=True)
    acc = {name: np.full(g, np.nan) for name in ("sen_slope", "sen_ci_low", "sen_ci_high",
                                                 "sen_intercept")}  # fmt: skip
    acc |= {"s": np.zeros(g), "tie_y": np.zeros(g), "pairs_tied_y": np.zeros(g)}
    a = 1.0 - alpha if alpha > 0.5 else alpha
    z_crit = norm.ppf(a / 2.0)
    bufs = _pair_buffers(counts, max_pairs)
    for grp, width in _blocks(counts, max_pairs):
        X = _block(x, starts[grp], counts[grp], width)
        Y = _block(y, starts[grp], counts[grp], width)
        acc["tie_y"][grp], acc["pairs_tied_y"][grp] = _row_tie_terms(Y)
        dx, slopes, tmp = _pair_differences(X, Y, bufs)
        # Every pair is later in time (no padding, no tied times): no masking needed.
        plain = counts[grp].min() == width and pairs_tied_x[grp].sum() == 0
        if not sen:
            if plain:
                acc["s"][grp] = np.sign(slopes, out=tmp).sum(axis=1)
            else:
                acc["s"][grp] = np.sum(np.where(dx > 0, np.sign(slopes), 0.0), axis=1)
            continue
        nt = _sorted_slopes(dx, slopes, plain)
        # x sorted: sign(x_j - x_i) is 1 or 0, and sign(slope) = sign(y_j - y_i) where it is 1.
        acc["s"][grp] = np.sum(slopes > 0, axis=1) - np.sum(slopes < 0, axis=1)
        med = (_order_stat(slopes, (nt - 1) // 2) + _order_stat(slopes, nt // 2)) / 2.0
        acc["sen_slope"][grp] = med
        if interval:
            acc["sen_ci_low"][grp], acc["sen_ci_high"][grp] = _sen_interval(
                slopes, nt, counts[grp].astype(np.float64), tie_x[grp], acc["tie_y"][grp], z_crit
            )
        if intercept:
            acc["sen_intercept"][grp] = np.nanmedian(Y, axis=1) - med * np.nanmedian(X, axis=1)
    return _trend_output(counts, acc, pairs_tied_x, min_n)


def _grouped(
    codes: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Codes, x and y without the rows missing x or y, sorted by code then x, and the number
    of rows per group code."""
    codes = np.asarray(codes, dtype=np.intp)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    codes, x, y = codes[keep], x[keep], y[keep]
    g = int(n_groups if n_groups is not None else (codes.max() + 1 if codes.size else 0))
    ordered = codes.size < 2 or bool(
        np.all((np.diff(codes) > 0) | ((np.diff(codes) == 0) & (np.diff(x) >= 0)))
    )
    if not ordered:
        order = np.lexsort((x, codes))
        codes, x, y = codes[order], x[order], y[order]
    return codes, x, y, np.bincount(codes, minlength=g)


def _pair_buffers(counts: np.ndarray, max_pairs: int) -> tuple[np.ndarray, ...]:
    """Three pair buffers large enough for the largest block (reused block after block:
    fresh large allocations are costly on our VMs)."""
    widest = int(counts.max()) if counts.size else 0
    cells = min(max_pairs, max(len(counts), 1) * widest * (widest - 1) // 2)
    cells = max(cells, widest * (widest - 1) // 2, 1)
    return np.empty(cells), np.empty(cells), np.empty(cells)


def _pair_differences(
    X: np.ndarray, Y: np.ndarray, bufs: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pair (i, j), i < j, of each block row: x_j - x_i and y_j - y_i, written into
    the reused buffers (the third is left as scratch space)."""
    i, j = _pairs(X.shape[1])
    shape = (X.shape[0], i.size)
    dx, dy, tmp = (b[: shape[0] * shape[1]].reshape(shape) for b in bufs)
    np.take(X, j, axis=1, out=dx, mode="clip")
    dx -= np.take(X, i, axis=1, out=tmp, mode="clip")
    np.take(Y, j, axis=1, out=dy, mode="clip")
    dy -= np.take(Y, i, axis=1, out=tmp, mode="clip")
    return dx, dy, tmp


def _sorted_slopes(dx: np.ndarray, slopes: np.ndarray, plain: bool) -> np.ndarray:
    """Turn the y differences into pairwise slopes in place, sorted per row (pairs with tied
    x are NaN, sorted last), and return the number of slopes per row."""
    if plain:
        slopes /= dx
        nt = np.full(slopes.shape[0], slopes.shape[1])
    else:
        pos = dx > 0  # x sorted within a group: pairs are either later in time or tied
        np.divide(slopes, dx, out=slopes, where=pos)
        slopes[~pos] = np.nan
        nt = pos.sum(axis=1)
    slopes.sort(axis=1)
    return nt


def _sen_interval(
    slopes: np.ndarray,
    nt: np.ndarray,
    ng: np.ndarray,
    tie_x: np.ndarray,
    tie_y: np.ndarray,
    z_crit: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper confidence limits of Sen's slope from each row's sorted slopes."""
    # Sen (1968) eq. 2.6 as scipy.stats.theilslopes: ties in x and in y both reduce it.
    sen_var = (ng * (ng - 1) * (2 * ng + 5) - tie_x - tie_y) / 18.0
    sigma = np.sqrt(np.where(sen_var >= 0, sen_var, np.nan))
    with np.errstate(invalid="ignore"):
        ru = np.minimum(np.round((nt - z_crit * sigma) / 2.0), nt - 1)
        rl = np.maximum(np.round((nt + z_crit * sigma) / 2.0) - 1, 0)
    bad = np.isnan(sigma) | (nt == 0)
    ru = np.where(bad, -1, ru).astype(np.int64)
    rl = np.where(bad, -1, rl).astype(np.int64)
    return _order_stat(slopes, rl), _order_stat(slopes, ru)


def _trend_output(
    counts: np.ndarray, acc: dict[str, np.ndarray], pairs_tied_x: np.ndarray, min_n: int
) -> dict[str, np.ndarray]:
    """The Mann-Kendall test and Kendall's τ-b from the accumulated S and tie terms, and every
    statistic of :data:`TREND_COLUMNS` masked for groups below ``min_n`` values."""
    n = counts.astype(np.float64)
    s, tie_y = acc["s"], acc["tie_y"]
    # Mann-Kendall (Kendall 1975; as pymannkendall.original_test): variance with tie correction
    # in y, z with continuity correction, two-sided normal p.
    var_s = (n * (n - 1) * (2 * n + 5) - tie_y) / 18.0
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(var_s)
        z = np.where(s > 0, (s - 1) / sd, np.where(s < 0, (s + 1) / sd, 0.0))
        n0 = n * (n - 1) / 2.0
        tau_b = s / np.sqrt((n0 - pairs_tied_x) * (n0 - acc["pairs_tied_y"]))
    p = 2.0 * norm.sf(np.abs(z))
    enough = counts >= max(min_n, 2)
    stats = {"mk_s": s, "mk_var_s": var_s, "mk_z": z, "mk_p": p, "kendall_tau": tau_b}
    stats |= {name: acc[name] for name in ("sen_slope", "sen_intercept", "sen_ci_low",
                                          "sen_ci_high")}  # fmt: skip
    out = {"n": counts.astype(np.int64)}
    out |= {name: np.where(enough, stats[name], np.nan) for name in TREND_COLUMNS[1:-1]}
    out["insufficient_data"] = ~enough
    return out


def _codes(df: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group codes of each row by the ``by`` columns and the sorted group keys (input dtypes)."""
    gb = df.groupby(list(by), sort=True, dropna=False, observed=True)
    codes = gb.ngroup().to_numpy(dtype=np.intp)
    keys = gb.size().reset_index()[list(by)]
    for col in by:  # keep the input dtypes
        keys[col] = keys[col].astype(df[col].dtype)
    return codes, keys


def trend_tests(
    df: pd.DataFrame,
    *,
    by: str | Sequence[str],
    x: str,
    y: str,
    min_n: int = 8,
    alpha: float = 0.95,
    max_pairs: int = _MAX_PAIRS,
) -> pd.DataFrame:
    """Mann-Kendall trend test and Theil-Sen slope of ``y`` against ``x`` for every group.

    The monotonic trend of each series (one per value of ``by``) as Kendall's S and its normal
    approximation, with Sen's median slope on the real ``x`` (e.g. day offsets, not ranks).

    Parameters
    ----------
    df : DataFrame
        Long frame: the group keys, ``x`` and ``y``. Rows with a missing ``x`` or ``y`` are
        dropped. Not modified.
    by : str or sequence of str
        Group key column(s).
    x, y : str
        The time (any real scale; slopes are in ``y`` units per ``x`` unit) and the value.
    min_n : int, default 8
        Groups with fewer points get missing statistics and ``insufficient_data=True``.
    alpha : float, default 0.95
        Confidence degree of the slope interval, as ``scipy.stats.theilslopes``.
    max_pairs : int
        Memory bound: pair cells per chunk.

    Returns
    -------
    DataFrame
        One row per group, the key columns then ``n`` (points used), ``mk_s`` (S =
        Σ_{i<j} sign(x_j-x_i)·sign(y_j-y_i)), ``mk_var_s``, ``mk_z``, ``mk_p`` (two-sided),
        ``kendall_tau`` (τ-b), ``sen_slope``, ``sen_intercept``, ``sen_ci_low``,
        ``sen_ci_high`` and ``insufficient_data``.

    Notes
    -----
    With t_k the sizes of tied groups of y:
    Var(S) = [n(n-1)(2n+5) - Σ t_k(t_k-1)(2t_k+5)] / 18;
    Z = (S-1)/√Var(S) if S > 0, 0 if S = 0, (S+1)/√Var(S) if S < 0; p = 2(1 - Φ(|Z|)).
    τ-b = S / √((n₀-n₁)(n₀-n₂)), n₀ = n(n-1)/2, n₁ and n₂ the pairs tied in x and in y.
    Sen slope = median over pairs with x_j > x_i of (y_j-y_i)/(x_j-x_i); intercept =
    median(y) - slope·median(x). The confidence interval takes the order statistics
    R_u = round((N - z·σ)/2) and R_l = round((N + z·σ)/2) - 1 of the N sorted slopes, with
    z = Φ⁻¹((1-alpha)/2) and σ² = [n(n-1)(2n+5) - Σ_x t(t-1)(2t+5) - Σ_y t(t-1)(2t+5)] / 18
    (Sen 1968, eq. 2.6, exactly as ``scipy.stats.theilslopes``). S equals the Mann-Kendall S
    when the x values of a series are distinct; aggregate repeated times first.

    References
    ----------
    Mann HB (1945) Econometrica 13:245-259. Kendall MG (1975) Rank Correlation Methods, 4th ed.
    Sen PK (1968) J Am Stat Assoc 63:1379-1389. Theil H (1950) Indag Math 12:85-91.
    Hussain & Mahmud (2019) pyMannKendall, J Open Source Softw 4(39):1556.

    Examples
    --------
    >>> df = pd.DataFrame({"g": [1, 1, 1, 2, 2], "t": [0, 2, 3, 0, 1], "y": [3, 2, 2, 1, 1]})
    >>> trend_tests(df, by="g", x="t", y="y", min_n=3)[["g", "n", "mk_s", "sen_slope"]]
       g  n  mk_s  sen_slope
    0  1  3  -2.0  -0.333333
    1  2  2   NaN        NaN
    """
    by = [by] if isinstance(by, str) else list(by)
    codes, keys = _codes(df, by)
    res = trend_arrays(
        codes,
        df[x].to_numpy(dtype=np.float64, na_value=np.nan),
        df[y].to_numpy(dtype=np.float64, na_value=np.nan),
        n_groups=len(keys),
        min_n=min_n,
        alpha=alpha,
        max_pairs=max_pairs,
    )
    for name in TREND_COLUMNS:
        keys[name] = res[name]
    return keys


def kendall_tau_by(
    df: pd.DataFrame,
    *,
    by: str | Sequence[str],
    a: str,
    b: str,
    min_n: int = 2,
    max_pairs: int = _MAX_PAIRS,
) -> pd.DataFrame:
    """Kendall's τ-b between two series ``a`` and ``b`` within every group.

    Returns
    -------
    DataFrame
        One row per group: the key columns, ``n`` (rows with both values) and
        ``kendall_tau`` (missing below ``min_n`` rows or when either series is constant).

    Notes
    -----
    τ-b = Σ_{i<j} sign(a_j-a_i)·sign(b_j-b_i) / √((n₀-n₁)(n₀-n₂)) with n₀ = n(n-1)/2 and n₁,
    n₂ the pairs tied in a and in b; equal to ``scipy.stats.kendalltau`` (variant "b").

    References
    ----------
    Kendall MG (1945) Biometrika 33:239-251.

    Examples
    --------
    >>> df = pd.DataFrame({"g": ["p"] * 4, "a": [1, 2, 3, 4], "b": [4, 3, 3, 1]})
    >>> round(float(kendall_tau_by(df, by="g", a="a", b="b")["kendall_tau"].iloc[0]), 6)
    -0.912871
    """
    by = [by] if isinstance(by, str) else list(by)
    codes, keys = _codes(df, by)
    res = trend_arrays(
        codes,
        df[a].to_numpy(dtype=np.float64, na_value=np.nan),
        df[b].to_numpy(dtype=np.float64, na_value=np.nan),
        n_groups=len(keys),
        min_n=min_n,
        max_pairs=max_pairs,
        sen=False,
    )
    keys["n"] = res["n"]
    keys["kendall_tau"] = res["kendall_tau"]
    return keys
