"""The weekly verdict: golden cases for each class, edges, references and the synthetic clinic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymannkendall as pmk
import pytest
from _metric_frames import pain_frame, patients_frame, sessions_frame
from scipy import stats as sps

from backcare_analytics.metrics.verdict import VerdictPolicy, weekly_verdict


def _case(pid: str, start: str, week_pain: list[float], week_reps: list[int],
          hold: float = 15.0, push: list[tuple[str, int]] | None = None):  # fmt: skip
    n = 7 * len(week_pain)
    pain = pain_frame(pid, start, list(np.repeat(week_pain, 7).astype(int)))
    rows = []
    for i, day in enumerate(pd.date_range(start, periods=n)):
        w = i // 7
        rows.append({"patient_id": pid, "day": str(day.date()), "exercise_id": "bridge",
                     "reps": int(week_reps[w]), "hold_s": hold})  # fmt: skip
        if push is not None:
            lv, reps = push[w]
            rows.append({"patient_id": pid, "day": str(day.date()), "exercise_id": "mini_push_up",
                         "reps": reps, "level": lv, "hour": 8})  # fmt: skip
    return pain, sessions_frame(rows)


def _last(pain, ses, patients=None, **kw) -> pd.Series:
    v = weekly_verdict(pain, ses, patients, all_weeks=False, **kw)
    assert len(v) == 1
    return v.iloc[0]


def test_progressing_golden_and_references() -> None:
    pain_w, reps_w = [7, 6, 6, 5, 4, 3], [3, 3, 4, 4, 5, 5]
    pain, ses = _case("P", "2026-01-05", pain_w, reps_w)
    v = _last(pain, ses)
    assert v.verdict == "progressing" and v.weeks == 6 and v.week == "2026-W07"
    # Sen slope of 7,6,6,5,4,3 at weeks 0..5: the 8th of 15 sorted pairwise slopes = -0.8.
    assert v.pain_slope_per_week == pytest.approx(-0.8)
    mk = pmk.original_test(np.array(pain_w, float))
    assert v.pain_p == pytest.approx(mk.p, abs=1e-9)
    index = np.array(reps_w) / 3
    assert v.capacity_slope_per_week == pytest.approx(sps.theilslopes(index, np.arange(6)).slope)
    assert v.kendall_tau == pytest.approx(sps.kendalltau(pain_w, index).statistic, abs=1e-9)
    assert v.capacity_index == pytest.approx(5 / 3) and v.pain_mean == 3
    assert v.reason.startswith("Back pain fell by 0.80 points a week")
    assert "bridge and press-up capacity rose 16.7 % a week" in v.reason


def test_each_class() -> None:
    flat = [5, 5, 5, 5, 5, 5]
    cases = {
        "stalled": ([7, 6, 6, 5, 4, 3], [4] * 6, "pain_improving_strength_stalled"),
        "loading": ([3, 4, 4, 5, 6, 7], [3, 3, 4, 4, 5, 5], "loading_ahead_of_symptoms"),
        "review": (flat, [4] * 6, "review"),
        "cap_only": (flat, [3, 3, 4, 4, 5, 5], "review"),  # capacity up, pain level: review
        "worse": ([3, 4, 4, 5, 6, 7], [4] * 6, "review"),
    }
    for pid, (pw, rw, expected) in cases.items():
        pain, ses = _case(pid, "2026-01-05", pw, rw)
        v = _last(pain, ses)
        assert v.verdict == expected, (pid, v.reason)
    v = _last(*_case("cap_only", "2026-01-05", flat, [3, 3, 4, 4, 5, 5]))
    assert v.reason.startswith("Back pain did not change clearly (+0.00 points a week, p = 1.00)")


def test_insufficient_data_says_why_and_all_weeks() -> None:
    pain, ses = _case("P", "2026-01-05", [6, 5, 4], [3, 4, 5])
    v = _last(pain, ses)
    assert v.verdict == "insufficient_data"
    assert v.reason == (
        "Not enough data: 3 week(s) with pain and 3 with capacity; at least 4 of each are needed."
    )
    pain, ses = _case("P", "2026-01-05", [7, 6, 6, 5, 4, 3], [3, 3, 4, 4, 5, 5])
    allw = weekly_verdict(pain, ses)
    assert allw.weeks.tolist() == [1, 2, 3, 4, 5, 6]
    assert allw.verdict.tolist()[:3] == ["insufficient_data"] * 3
    assert (allw.verdict.iloc[3:] != "insufficient_data").all()
    # each row is judged on the weeks up to it: week 4 equals a 4-week-only run
    four = _last(*_case("P", "2026-01-05", [7, 6, 6, 5], [3, 3, 4, 4]))
    assert allw.iloc[3].pain_slope_per_week == pytest.approx(four.pain_slope_per_week)


def test_mid_week_start_dst_and_patients_without_data() -> None:
    # Starts Wednesday 2026-03-04; the European DST change (2026-03-29) falls in week 4.
    pain, ses = _case("P", "2026-03-04", [7, 6, 6, 5, 4, 3], [3, 3, 4, 4, 5, 5])
    pts = patients_frame({"P": "2026-03-04", "EMPTY": "2026-03-02"})
    v = weekly_verdict(pain, ses, pts)
    assert set(v.patient_id) == {"P"}  # a patient without data has no weeks to judge
    first = v.iloc[0]
    assert first.week == "2026-W10" and first.week_start == pd.Timestamp("2026-03-02")
    # 42 days from a Wednesday span 7 ISO weeks: a partial first and last week.
    assert len(v) == 7 and v.iloc[-1].verdict == "progressing"


def test_push_up_levels_count_without_conversion() -> None:
    push = [("wall", 10), ("wall", 14), ("counter", 8), ("counter", 10), ("knees", 6), ("knees", 8)]
    pain, ses = _case("P", "2026-01-05", [7, 6, 6, 5, 4, 3], [4] * 6, push=push)
    v = _last(pain, ses)
    assert v.push_up_level_steps == 2
    assert v.verdict == "progressing" and "but the push-up rose 2 ladder step(s)" in v.reason
    assert v.capacity_slope_per_week == 0  # bridge flat; reps were never mixed with levels
    # push-up order falls back (regression down the ladder) while the index is flat: no rise
    down = list(reversed(push))
    pain2, ses2 = _case("Q", "2026-01-05", [7, 6, 6, 5, 4, 3], [4] * 6, push=down)
    assert _last(pain2, ses2).verdict == "pain_improving_strength_stalled"


def test_policy_thresholds_are_used() -> None:
    pain, ses = _case("P", "2026-01-05", [7, 6, 6, 5, 4, 3], [3, 3, 4, 4, 5, 5])
    strict = _last(pain, ses, policy=VerdictPolicy(pain_slope_min=1.0))
    assert strict.verdict == "review"
    assert _last(pain, ses, policy=VerdictPolicy(min_weeks=7)).verdict == "insufficient_data"


def test_synthetic_clinic_recovers_planted_truth() -> None:
    from backcare_analytics.metrics.pain import PainPolicy, pain_summary
    from backcare_analytics.synth import SynthConfig, simulate

    clinic = simulate(SynthConfig(patients=100, weeks=12, seed=1))
    truth = pd.DataFrame(
        [{"patient_id": p["patient_id"], "responder_true": p["pain"]["responder"],
          "expected": p["verdict"]["expected"], "active_days": p["adherence"]["active_days"]}
         for p in clinic.truth["patients"]]
    )  # fmt: skip
    # The synth's responder is computed like ours (diary means, first 7 days from the first
    # entry vs the last 7 to the last entry) but without a minimum of diary days per period.
    s = pain_summary(clinic.pain, clinic.patients, policy=PainPolicy(min_period_days=1))
    back = s[s.measure == "back_pain"].merge(truth, on="patient_id")
    known = back.responder.notna()
    agree = (back.responder[known].astype(bool) == back.responder_true[known]).mean()
    assert agree >= 0.95
    v = weekly_verdict(clinic.pain, clinic.sessions, clinic.patients, all_weeks=False)
    m = v.merge(truth, on="patient_id")
    m = m[m.active_days >= 42]
    grew_fell = m[m.expected == "progressing"]
    assert len(grew_fell) >= 30
    # Measured 0.889 here (0.84-0.94 over seeds 1-3): the truth is labelled on the latent
    # weekly pain with thresholds at the edge of what noisy diaries resolve (see the report).
    assert (grew_fell.verdict == "progressing").mean() >= 0.85
    assert (m.verdict == m.expected).mean() >= 0.80


@pytest.mark.parametrize("seed", [1, 2])
def test_prefix_statistics_equal_trend_arrays_on_every_prefix(seed: int) -> None:
    """The incremental per-week statistics equal trend_arrays run on each prefix of weeks (the
    previous implementation), with gaps, ties and series of 0 to 30 weeks."""
    from backcare_analytics.metrics.stats import trend_arrays
    from backcare_analytics.metrics.verdict import (
        _prefix_kendall,
        _prefix_pairs,
        _prefix_sen,
        _prefix_sum,
    )

    rng = np.random.default_rng(seed)
    n_weeks = rng.integers(0, 31, 300)
    base = np.cumsum(n_weeks) - n_weeks
    total = int(n_weeks.sum())
    wpat = np.repeat(np.arange(n_weeks.size), n_weeks)
    widx = np.arange(total) - base[wpat]
    y = np.round(rng.normal(5, 2, total) - 0.1 * widx)  # integer values: many ties
    y[rng.random(total) < 0.2] = np.nan
    x2 = np.round(rng.normal(1, 0.1, total), 1)
    x2[rng.random(total) < 0.2] = np.nan
    pairs, first = _prefix_pairs(widx), base[wpat]
    mk = _prefix_kendall(pairs, first, y, None, 4)
    tau = _prefix_kendall(pairs, first, x2, y, 4)
    sen = _prefix_sen(pairs, widx, base, n_weeks, y, last_only=False)
    last = _prefix_sen(pairs, widx, base, n_weeks, y, last_only=True)
    # Reference: every prefix (patient, week e) as its own group.
    ev = np.arange(total)
    ev_len = widx + 1
    row_ev = np.repeat(ev, ev_len)
    row_w = np.arange(int(ev_len.sum())) - np.repeat(np.cumsum(ev_len) - ev_len, ev_len)
    pos = base[wpat][row_ev] + row_w
    ref = trend_arrays(row_ev, row_w.astype(float), y[pos], n_groups=total, min_n=4)
    both = ~np.isnan(y[pos]) & ~np.isnan(x2[pos])
    rtau = trend_arrays(row_ev[both], y[pos][both], x2[pos][both], n_groups=total, min_n=4,
                        sen=False)  # fmt: skip
    np.testing.assert_array_equal(mk["n"], ref["n"])
    np.testing.assert_array_equal(mk["mk_s"], ref["mk_s"])
    np.testing.assert_array_equal(mk["mk_p"], ref["mk_p"])
    np.testing.assert_array_equal(tau["kendall_tau"], rtau["kendall_tau"])
    np.testing.assert_array_equal(tau["n"], rtau["n"])
    enough = ref["n"] >= 4
    np.testing.assert_array_equal(np.where(enough, sen, np.nan), ref["sen_slope"])
    ends = (base + n_weeks - 1)[n_weeks > 1]
    np.testing.assert_array_equal(last[ends], sen[ends])
    assert np.isnan(np.delete(last, ends)).all()
    np.testing.assert_array_equal(_prefix_sum(np.ones(total), first), widx + 1.0)
