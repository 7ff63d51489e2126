"""Trend statistics against scipy and pymannkendall, and hand-computed golden cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymannkendall as pmk
import pytest
from scipy import stats as sps

from backcare_analytics.metrics.stats import kendall_tau_by, trend_arrays, trend_tests


def _random_groups(seed: int, n_groups: int, ties: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for g in range(n_groups):
        n = int(rng.integers(2, 60))
        x = np.sort(rng.choice(np.arange(300), size=n, replace=False)).astype(float)  # unequal gaps
        y = rng.integers(0, 6, n).astype(float) if ties else rng.normal(5, 2, n) - 0.01 * x
        frames.append(pd.DataFrame({"g": g, "x": x, "y": y}))
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # order must not matter


@pytest.mark.parametrize("ties", [False, True])
def test_reference_mann_kendall_sen_kendall(ties: bool) -> None:
    df = _random_groups(7 + ties, 60, ties)
    res = trend_tests(df, by="g", x="x", y="y", min_n=2, max_pairs=5_000).set_index("g")
    for g, part in df.groupby("g"):
        part = part.sort_values("x")
        x, y = part["x"].to_numpy(), part["y"].to_numpy()
        r = res.loc[g]
        mk = pmk.original_test(y)
        assert r["mk_s"] == pytest.approx(mk.s, abs=1e-9)
        assert r["mk_var_s"] == pytest.approx(mk.var_s, abs=1e-9)
        assert r["mk_z"] == pytest.approx(mk.z, abs=1e-9)
        assert r["mk_p"] == pytest.approx(mk.p, abs=1e-9)
        # pymannkendall's Tau is S / (n(n-1)/2): compare it to S, and τ-b to scipy.
        n = len(y)
        assert r["mk_s"] / (n * (n - 1) / 2) == pytest.approx(mk.Tau, abs=1e-9)
        tau = sps.kendalltau(x, y).statistic
        if np.isnan(tau):
            assert np.isnan(r["kendall_tau"])
        else:
            assert r["kendall_tau"] == pytest.approx(tau, abs=1e-9)
        ts = sps.theilslopes(y, x)
        assert r["sen_slope"] == pytest.approx(ts.slope, abs=1e-9)
        assert r["sen_intercept"] == pytest.approx(ts.intercept, abs=1e-9)
        for ours, theirs in ((r["sen_ci_low"], ts.low_slope), (r["sen_ci_high"], ts.high_slope)):
            if np.isnan(theirs):
                assert np.isnan(ours)
            else:
                assert ours == pytest.approx(theirs, abs=1e-9)


def test_ties_in_x_reach_scipy_theilslopes_and_kendalltau() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 10, 30).astype(float)
    y = rng.integers(0, 4, 30).astype(float)
    df = pd.DataFrame({"g": 0, "x": x, "y": y})
    r = trend_tests(df, by="g", x="x", y="y").iloc[0]
    ts = sps.theilslopes(y, x)
    assert r["sen_slope"] == pytest.approx(ts.slope, abs=1e-9)
    assert r["sen_ci_low"] == pytest.approx(ts.low_slope, abs=1e-9)
    assert r["sen_ci_high"] == pytest.approx(ts.high_slope, abs=1e-9)
    assert r["kendall_tau"] == pytest.approx(sps.kendalltau(x, y).statistic, abs=1e-9)


def test_golden_hand_computed() -> None:
    # y = 1, 3, 2, 4 at x = 0, 1, 2, 3: concordant pairs 5, discordant 1 -> S = 4.
    # Var = 4*3*13/18 = 8.666..., Z = 3/sqrt(8.666) = 1.0190, tau = 4/6.
    # slopes: 2, 0.5, 1, -1, 0.5, 2 -> median 1.0 (sorted -1, .5, .5, 1, 2, 2 -> (0.5+1)/2=0.75)
    df = pd.DataFrame({"g": "a", "x": [0.0, 1, 2, 3], "y": [1.0, 3, 2, 4]})
    r = trend_tests(df, by="g", x="x", y="y", min_n=4).iloc[0]
    assert r["mk_s"] == 4
    assert r["mk_var_s"] == pytest.approx(26 / 3)
    assert r["mk_z"] == pytest.approx(3 / np.sqrt(26 / 3))
    assert r["kendall_tau"] == pytest.approx(4 / 6)
    assert r["sen_slope"] == pytest.approx(0.75)


def test_edges_all_ties_one_point_no_data_and_insufficient() -> None:
    df = pd.DataFrame(
        {"g": ["ties"] * 9 + ["one"] + ["seven"] * 7,
         "x": list(range(9)) + [0] + list(range(7)),
         "y": [4.0] * 9 + [2.0] + list(range(7))}
    )  # fmt: skip
    r = trend_tests(df, by="g", x="x", y="y").set_index("g")
    ties = r.loc["ties"]
    assert ties["mk_s"] == 0 and ties["mk_z"] == 0 and ties["mk_p"] == 1.0
    assert ties["mk_var_s"] == 0  # every value tied: no variance left
    assert ties["sen_slope"] == 0
    assert np.isnan(ties["kendall_tau"])  # undefined for a constant series, as scipy
    assert not ties["insufficient_data"]
    assert r.loc["one", "insufficient_data"] and np.isnan(r.loc["one", "mk_s"])
    assert r.loc["seven", "insufficient_data"] and r.loc["seven", "n"] == 7
    empty = trend_tests(df.iloc[:0], by="g", x="x", y="y")
    assert len(empty) == 0 and "sen_slope" in empty.columns
    out = trend_arrays(np.array([], dtype=int), np.array([]), np.array([]), n_groups=0)
    assert out["n"].size == 0


def test_missing_values_dropped_and_input_untouched() -> None:
    df = pd.DataFrame({"g": 1, "x": np.arange(10.0), "y": [1.0, np.nan, *range(8)]})
    before = df.copy()
    r = trend_tests(df, by="g", x="x", y="y").iloc[0]
    assert r["n"] == 9
    pd.testing.assert_frame_equal(df, before)


def test_kendall_tau_between_two_series_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    df = pd.DataFrame(
        {"p": np.repeat(np.arange(40), 12),
         "a": rng.integers(0, 5, 480).astype(float),
         "b": rng.normal(size=480).round(1)}
    )  # fmt: skip
    res = kendall_tau_by(df, by="p", a="a", b="b").set_index("p")
    for p, part in df.groupby("p"):
        tau = sps.kendalltau(part["a"], part["b"]).statistic
        assert res.loc[p, "kendall_tau"] == pytest.approx(tau, abs=1e-9)


def test_multi_key_groups_keep_key_dtypes() -> None:
    df = pd.DataFrame(
        {"pid": pd.array(["a", "a", "b", "b"] * 3, dtype="str"),
         "m": ["back", "leg"] * 6, "x": np.repeat(np.arange(6.0), 2), "y": np.arange(12.0)}
    )  # fmt: skip
    r = trend_tests(df, by=["pid", "m"], x="x", y="y", min_n=2)
    assert len(r) == 4 and r["pid"].dtype == df["pid"].dtype
    assert (r["n"] == 3).all()


def test_without_sen_slopes_same_mann_kendall() -> None:
    df = _random_groups(21, 30, ties=True)
    codes = df["g"].to_numpy()
    full = trend_arrays(codes, df["x"].to_numpy(), df["y"].to_numpy(), min_n=2)
    fast = trend_arrays(codes, df["x"].to_numpy(), df["y"].to_numpy(), min_n=2, sen=False)
    for name in ("mk_s", "mk_var_s", "mk_z", "mk_p", "kendall_tau"):
        np.testing.assert_array_equal(full[name], fast[name])
    assert np.isnan(fast["sen_slope"]).all()
