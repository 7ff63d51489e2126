"""Pain metrics: hand-computed golden cases, edges, and references for the trend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymannkendall as pmk
import pytest
from _metric_frames import pain_frame, patients_frame
from scipy import stats as sps

from backcare_analytics.metrics.pain import PainPolicy, pain_daily, pain_summary
from backcare_analytics.metrics.params import Window
from backcare_analytics.schemas import Pain, validate


def _row(summary: pd.DataFrame, patient: str, measure: str = "back_pain") -> pd.Series:
    sel = summary[(summary.patient_id == patient) & (summary.measure == measure)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_frames_are_clean() -> None:
    validate(pain_frame("P1", "2026-01-05", [3, 4, None, 5], leg=[1, None, None, 2]), Pain)


def test_golden_three_plateaus() -> None:
    pain = pain_frame("P1", "2026-01-05", [6] * 7 + [5] * 7 + [3] * 7)
    before = pain.copy()
    r = _row(pain_summary(pain), "P1")
    pd.testing.assert_frame_equal(pain, before)  # input untouched
    assert (r.baseline_pain, r.current_pain, r.change_points) == (6.0, 3.0, -3.0)
    assert r.change_pct == pytest.approx(-50.0)
    assert r.responder and r.responder_criterion == "both" and r.immpact_band == "substantial"
    # Rolling 7-day means after the baseline week: day 16 (days 10-16: 4x5 + 3x3 = 29/7)
    # is the first at >= 30 % below 6 (4.14 is 31 % below; day 15's 31/7 = 4.43 is 26 %).
    assert r.time_to_response_days == 16
    assert pd.isna(r.time_to_recovery_days)
    # S: every later plateau is lower: -(49 * 3) = -147; ties 3 x 7*6*19 = 2394.
    assert r.mk_s == -147
    assert r.mk_var_s == pytest.approx((21 * 20 * 47 - 2394) / 18)
    assert not r.insufficient_data and r.trend_days == 21
    leg = _row(pain_summary(pain), "P1", "leg_pain")
    assert leg.n_days == 0 and leg.insufficient_data and pd.isna(leg.responder)


def test_trend_matches_references_on_real_day_offsets() -> None:
    rng = np.random.default_rng(5)
    values = [int(v) if rng.random() > 0.3 else None for v in rng.integers(0, 10, 60)]
    pain = pain_frame("P1", "2026-02-02", values)
    pts = patients_frame({"P1": "2026-01-30"})
    r = _row(pain_summary(pain, pts), "P1")
    x = (pain["day"] - pd.Timestamp("2026-01-30")).dt.days.to_numpy(float)
    y = pain["back_pain"].to_numpy(float)
    mk = pmk.original_test(y)
    assert (r.mk_s, r.mk_var_s) == (pytest.approx(mk.s), pytest.approx(mk.var_s))
    assert r.mk_z == pytest.approx(mk.z, abs=1e-9) and r.mk_p == pytest.approx(mk.p, abs=1e-9)
    assert r.kendall_tau == pytest.approx(sps.kendalltau(x, y).statistic, abs=1e-9)
    ts = sps.theilslopes(y, x)
    assert r.slope_per_week == pytest.approx(7 * ts.slope, abs=1e-9)
    assert r.slope_ci_low == pytest.approx(7 * ts.low_slope, abs=1e-9)
    assert r.slope_ci_high == pytest.approx(7 * ts.high_slope, abs=1e-9)


def test_points_only_percent_only_and_none() -> None:
    pain = pd.concat(
        [
            pain_frame("PTS", "2026-01-05", [9] * 7 + [7] * 7),  # -2 points, 22 %
            pain_frame("PCT", "2026-01-05", [3] * 7 + [2] * 6 + [1]),  # 2 -> (6*2+1)/7: -1.14, 38 %
            pain_frame("NONE", "2026-01-05", [5] * 7 + [4] * 7),  # -1, 20 %: minimal band
            pain_frame("ZERO", "2026-01-05", [0] * 14),  # baseline 0: no percent, no band
        ]
    )
    s = pain_summary(pain)
    assert _row(s, "PTS").responder_criterion == "points"
    assert _row(s, "PTS").immpact_band == "minimal"
    pct = _row(s, "PCT")
    assert pct.responder_criterion == "percent" and pct.immpact_band == "moderate"
    assert pct.current_pain == pytest.approx(13 / 7)
    none = _row(s, "NONE")
    assert none.responder_criterion == "none" and not none.responder
    assert none.immpact_band == "minimal"
    zero = _row(s, "ZERO")
    assert zero.responder_criterion == "none" and pd.isna(zero.immpact_band)
    assert pd.isna(zero.change_pct) and zero.time_to_recovery_days == 0


def test_exactly_thirty_percent_counts() -> None:
    # baseline 43/7, current 30.1/7 would be float-fragile; use 5 -> 3.5 (exactly 30 %).
    pain = pain_frame("P", "2026-01-05", [5] * 7 + [4, 3] * 3 + [4], leg=None)
    r = _row(pain_summary(pain, policy=PainPolicy(current_days=6)), "P")
    assert r.current_pain == pytest.approx(3.5)
    assert r.responder_criterion == "percent"


def test_edges_no_data_one_day_and_overlap() -> None:
    pts = patients_frame({"EMPTY": "2026-01-05", "ONE": "2026-01-05", "SHORT": "2026-01-05"})
    pain = pd.concat(
        [pain_frame("ONE", "2026-01-06", [4]), pain_frame("SHORT", "2026-01-05", [4] * 10)]
    )
    s = pain_summary(pain, pts)
    assert len(s) == 6  # every patient x both measures
    empty = _row(s, "EMPTY")
    assert empty.n_days == 0 and pd.isna(empty.baseline_pain) and empty.insufficient_data
    assert empty.programme_start == pd.Timestamp("2026-01-05") and pd.isna(empty.first_day)
    one = _row(s, "ONE")
    assert one.n_days == 1 and pd.isna(one.baseline_pain)  # 1 day < min_period_days
    assert one.insufficient_data and np.isnan(one.mk_s)
    short = _row(s, "SHORT")  # current week (days 4-10) overlaps the baseline week (1-7)
    assert short.baseline_pain == 4 and pd.isna(short.current_pain) and pd.isna(short.responder)


def test_all_ties_trend() -> None:
    r = _row(pain_summary(pain_frame("P", "2026-01-05", [4] * 14)), "P")
    assert r.mk_s == 0 and r.mk_p == 1.0 and r.slope_per_week == 0.0
    assert np.isnan(r.kendall_tau) and not r.insufficient_data


def test_flares_and_episodes() -> None:
    # 10 days at 2, then 5, 5 (one episode of two days), 2, then 6 (second episode), 2.
    back = [2] * 10 + [5, 5, 2, 6, 2]
    d = pain_daily(pain_frame("P", "2026-01-05", back))
    back_d = d[d.measure == "back_pain"].reset_index(drop=True)
    assert back_d.flare_day.tolist() == [False] * 10 + [True, True, False, True, False]
    # day 12's trailing mean includes day 11's 5: (10*2 + 5) / 11 = 2.27; 5 - 2.27 >= 2.
    assert back_d.trailing_mean[11] == pytest.approx(25 / 11)
    assert back_d.flare_episode.tolist()[10:] == [1, 1, pd.NA, 2, pd.NA]
    s = _row(pain_summary(pain_frame("P", "2026-01-05", back)), "P")
    assert (s.flare_days, s.flare_episodes) == (3, 2)
    # Fewer than flare_min_days of history: no flare on day 3.
    d2 = pain_daily(pain_frame("Q", "2026-01-05", [1, 1, 8]))
    assert not d2.flare_day.any()


def test_recovery_and_patient_starting_mid_week_across_dst() -> None:
    # Programme starts on a Wednesday; diary begins on Thursday 2026-03-26; the clocks go
    # forward on Sunday 2026-03-29 in Europe. Days 0..6 at 6, one missing day, then <= 1.
    back = [6] * 7 + [None] + [1, 0, 1, 1, 2] + [1] * 7
    pts = patients_frame({"P": "2026-03-25"})
    pain = pain_frame("P", "2026-03-26", back, hour=23)  # late entries: UTC is the same day
    s = _row(pain_summary(pain, pts), "P")
    # first run of 7 diary days <= 1 starts on local day 13 from the diary start (2026-04-08).
    assert s.time_to_recovery_days == (pd.Timestamp("2026-04-08") - pd.Timestamp("2026-03-25")).days
    assert s.first_day == pd.Timestamp("2026-03-26")
    d = pain_daily(pain, pts)
    assert d.day_index.iloc[0] == 1


def test_window_cuts_and_defines_current() -> None:
    pain = pain_frame("P", "2026-01-05", [6] * 7 + [4] * 7 + [0] * 7)
    w = Window(end=pd.Timestamp("2026-01-18"), days=14)
    r = _row(pain_summary(pain, window=w), "P")
    assert r.current_pain == 4 and r.last_day == pd.Timestamp("2026-01-18")
    assert r.n_days == 14 and r.trend_days == 14
    d = pain_daily(pain, window=Window(end=pd.Timestamp("2026-01-18"), days=7))
    assert d.day.min() == pd.Timestamp("2026-01-12") and len(d) == 7


def test_back_and_leg_apart_and_daily_mean_of_entries() -> None:
    a = pain_frame("P", "2026-01-05", [4] * 8, leg=[2] * 8)
    b = pain_frame("P", "2026-01-05", [6], leg=[None], hour=20)
    d = pain_daily(pd.concat([a, b], ignore_index=True))
    first = d[(d.measure == "back_pain")].iloc[0]
    assert first.pain == 5.0 and first.entries == 2
    leg_first = d[(d.measure == "leg_pain")].iloc[0]
    assert leg_first.pain == 2.0 and leg_first.entries == 1


def test_many_patients_equal_one_at_a_time() -> None:
    rng = np.random.default_rng(9)
    frames = [
        pain_frame(f"P{i}", "2026-01-05", [int(v) for v in rng.integers(0, 10, 40)],
                   leg=[int(v) for v in rng.integers(0, 10, 40)])
        for i in range(6)
    ]  # fmt: skip
    together = pain_summary(pd.concat(frames, ignore_index=True))
    apart = pd.concat([pain_summary(f) for f in frames], ignore_index=True)
    pd.testing.assert_frame_equal(together, apart)


def test_weekly_window_keeps_programme_trend_and_trend_days_shortens_it() -> None:
    pain = pain_frame("P", "2026-01-05", [6] * 7 + [4] * 7 + [2] * 7)
    w = Window.iso_week("2026-W04")  # 2026-01-19 .. 2026-01-25: the third week
    r = _row(pain_summary(pain, window=w), "P")
    assert r.trend_days == 21 and not r.insufficient_data  # programme to date
    assert r.current_pain == 2 and r.flare_days == 0
    short = _row(pain_summary(pain, window=w, policy=PainPolicy(trend_days=10)), "P")
    assert short.trend_days == 10


@pytest.mark.parametrize("week", ["2025-W50", "2026-W01", "2026-W02", "2026-W03", "2026-W10"])
def test_windows_before_at_start_and_after_the_data(week: str) -> None:
    """Regression: a window ending before every diary day crashed (IndexError) in the grid."""
    from _metric_frames import sessions_frame

    from backcare_analytics.metrics.verdict import weekly_verdict

    # P1 keeps a diary from Wed 2026-01-07 (ISO 2026-W02) for 21 days; P2 has none at all.
    pain = pain_frame("P1", "2026-01-07", [5] * 7 + [4] * 7 + [3] * 7)
    pts = patients_frame({"P1": "2026-01-07", "P2": "2026-01-07"})
    ses = sessions_frame(
        [{"patient_id": "P1", "day": d, "exercise_id": "bridge", "reps": 4, "hold_s": 15.0}
         for d in pd.date_range("2026-01-07", periods=21)]
    )  # fmt: skip
    w = Window.iso_week(week)
    s = pain_summary(pain, pts, window=w)
    assert len(s) == 4  # 2 patients x 2 measures, also with no data before the window end
    p2 = s[s.patient_id == "P2"]
    assert (p2.n_days == 0).all() and p2.baseline_pain.isna().all() and p2.first_day.isna().all()
    r = _row(s, "P1")
    expected_days = {"2025-W50": 0, "2026-W01": 0, "2026-W02": 5, "2026-W03": 12, "2026-W10": 21}
    assert r.n_days == expected_days[week]
    assert r.programme_start == pd.Timestamp("2026-01-07")
    if expected_days[week] == 0:
        assert pd.isna(r.first_day) and pd.isna(r.baseline_pain) and r.insufficient_data
    d = pain_daily(pain, pts, window=w)
    in_week = {"2025-W50": 0, "2026-W01": 0, "2026-W02": 5, "2026-W03": 7, "2026-W10": 0}
    assert len(d) == in_week[week]  # back pain only (leg pain is empty)
    v = weekly_verdict(pain, ses, pts, window=w)
    if expected_days[week] == 0:
        assert len(v) == 0
    else:
        assert set(v.patient_id) == {"P1"}
        assert v.week.iloc[-1] == week
        # Data in ISO weeks 02-05: fewer than 4 weeks until the window holds all of them.
        assert (v.verdict == "insufficient_data").all() == (week != "2026-W10")
