"""Adherence: golden hand-computed cases, edges, and independent references for the roll-ups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _adherence_frames import full_routine, pain, patients, prescriptions, sessions

import backcare_analytics as bca
from backcare_analytics.metrics import (
    ROUTINE,
    AdherencePolicy,
    Window,
    adherence_daily,
    adherence_rolling,
    adherence_rollups,
    adherence_streaks,
    adherence_summary,
)
from backcare_analytics.protocol import PrescriptionOverride

W10 = Window.iso_week("2026-W10")  # Mon 2026-03-02 .. Sun 2026-03-08


def _row(daily: pd.DataFrame, ex: str, day: str, pid: str = "P1") -> pd.Series:
    hit = daily[
        (daily.patient_id == pid) & (daily.exercise_id == ex) & (daily.day == pd.Timestamp(day))
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def _daily(rows: list[dict], start: str = "2026-03-02", window: Window | None = W10):
    pts = patients({"P1": start})
    return adherence_daily(sessions(rows), prescriptions(pts), pts, window=window)


# --------------------------------------------------------------------------------------------
# dose ratio, golden cases
# --------------------------------------------------------------------------------------------


def test_bridge_overdone_and_short() -> None:
    d = _daily(
        [
            {"day": "2026-03-02", "exercise_id": "bridge", "reps": 5, "hold_s": 15.0},
            {"day": "2026-03-03", "exercise_id": "bridge", "reps": 2, "hold_s": 15.0},
        ]
    )
    over, short = _row(d, "bridge", "2026-03-02"), _row(d, "bridge", "2026-03-03")
    assert over.dose_ratio_raw == pytest.approx(5 / 3, abs=1e-12)  # overdoing stays visible
    assert over.dose_ratio == 1.0 and over.met
    assert short.dose_ratio_raw == pytest.approx(2 / 3, abs=1e-12) and not short.met
    assert short.volume_prescribed == 3 and short.hold_prescribed_s == 15


def test_hold_and_reps_combine_as_time_under_load() -> None:
    d = _daily(
        [
            {"day": "2026-03-02", "exercise_id": "prone_press_up", "reps": 3, "hold_s": 15.0},
            {"day": "2026-03-03", "exercise_id": "prone_press_up", "reps": 6, "hold_s": 15.0},
            {"day": "2026-03-04", "exercise_id": "prone_press_up", "reps": 3},  # hold not logged
            # two rows: 2 x 30 s and 2 x 15 s -> mean hold (60 + 30) / 4 = 22.5 s
            {"day": "2026-03-05", "exercise_id": "prone_press_up", "reps": 2, "hold_s": 30.0,
             "at": "2026-03-05T07:00Z"},
            {"day": "2026-03-05", "exercise_id": "prone_press_up", "reps": 2, "hold_s": 15.0,
             "at": "2026-03-05T07:05Z"},
        ]
    )  # fmt: skip
    a = _row(d, "prone_press_up", "2026-03-02")
    assert (a.volume_ratio, a.hold_ratio, a.dose_ratio_raw) == (1.0, 0.5, 0.5)
    assert a.volume_met and a.hold_met == False and not a.met  # noqa: E712
    b = _row(d, "prone_press_up", "2026-03-03")
    assert (b.volume_ratio, b.hold_ratio, b.dose_ratio_raw, b.met) == (2.0, 0.5, 1.0, True)
    c = _row(d, "prone_press_up", "2026-03-04")
    assert pd.isna(c.hold_ratio) and pd.isna(c.hold_met) and c.dose_ratio_raw == 1.0 and c.met
    e = _row(d, "prone_press_up", "2026-03-05")
    assert e.hold_mean_s == 22.5
    assert e.dose_ratio_raw == pytest.approx((4 / 3) * (22.5 / 30), abs=1e-12)


def test_sides_count_for_one_sided_exercises() -> None:
    d = _daily(
        [
            # floss: left only -> done but not met; next day left + right -> met
            {"day": "2026-03-02", "exercise_id": "sciatic_floss", "side": "left", "reps": 10},
            {"day": "2026-03-03", "exercise_id": "sciatic_floss", "side": "left", "reps": 10},
            {"day": "2026-03-03", "exercise_id": "sciatic_floss", "side": "right", "reps": 10},
            # knee to chest one knee at a time, each side 10 breaths -> met
            {"day": "2026-03-02", "exercise_id": "knee_to_chest", "side": "left", "reps": 10},
            {"day": "2026-03-02", "exercise_id": "knee_to_chest", "side": "right", "reps": 10},
            # a both row counts for both sides; 8 of 10 is exactly the threshold
            {"day": "2026-03-03", "exercise_id": "low_back_roll", "side": "both", "reps": 8},
            # a left row plus a both row: left 10 + 5 = 15, right 5
            {"day": "2026-03-04", "exercise_id": "knee_to_chest", "side": "left", "reps": 10},
            {"day": "2026-03-04", "exercise_id": "knee_to_chest", "side": "both", "reps": 5},
        ]
    )
    f1 = _row(d, "sciatic_floss", "2026-03-02")
    assert f1.done and f1.volume_performed == 0 and not f1.met
    assert _row(d, "sciatic_floss", "2026-03-03").met
    assert _row(d, "knee_to_chest", "2026-03-02").met
    roll = _row(d, "low_back_roll", "2026-03-03")
    assert roll.dose_ratio_raw == pytest.approx(0.8) and roll.met
    k = _row(d, "knee_to_chest", "2026-03-04")
    assert k.volume_performed == 5 and k.dose_ratio_raw == 0.5


def test_sets_multiply_reps_and_missing_reps_count_one() -> None:
    d = _daily(
        [
            {"day": "2026-03-02", "exercise_id": "breathing", "sets": 2, "reps": 5},
            {"day": "2026-03-03", "exercise_id": "bridge", "hold_s": 15.0},  # one hold, no reps
        ]
    )
    assert _row(d, "breathing", "2026-03-02").dose_ratio_raw == 1.0
    assert _row(d, "bridge", "2026-03-03").volume_performed == 1


def test_logged_is_kept_apart_from_done() -> None:
    d = _daily([{"day": "2026-03-02", "exercise_id": "bridge", "reps": 3, "hold_s": 15.0}])
    b = _row(d, "breathing", "2026-03-02")
    assert b.logged and not b.done and b.dose_ratio == 0
    assert not _row(d, "breathing", "2026-03-03").logged


def test_policy_threshold_and_protocol_default() -> None:
    rows = [{"day": "2026-03-02", "exercise_id": "breathing", "reps": 7}]
    pts = patients({"P1": "2026-03-02"})
    strict = adherence_daily(
        sessions(rows), prescriptions(pts), pts, window=W10, policy=AdherencePolicy(0.7)
    )
    assert _row(strict, "breathing", "2026-03-02").met
    assert not _row(_daily(rows), "breathing", "2026-03-02").met
    assert AdherencePolicy.from_protocol() == AdherencePolicy()
    with pytest.raises(ValueError, match="dose_met_ratio"):
        AdherencePolicy(dose_met_ratio=1.5)


# --------------------------------------------------------------------------------------------
# the grid: edges
# --------------------------------------------------------------------------------------------


def test_no_data() -> None:
    pts = patients({"P1": "2026-03-02"})
    empty = sessions([])
    assert adherence_daily(empty, prescriptions(pts), pts).empty  # no window: nothing logged
    d = adherence_daily(empty, prescriptions(pts), pts, window=W10)
    assert len(d) == 7 * 7 and not d.done.any() and not d.logged.any()
    s = adherence_summary(d)
    assert (s.pdc == 0).all() and s.pdc_observed.isna().all()
    empty_daily = adherence_daily(empty, prescriptions(pts), pts)
    for table in adherence_rollups(empty_daily).values():
        assert table.empty


def test_one_day() -> None:
    d = _daily(full_routine("P1", ["2026-03-02"]), window=None)
    assert len(d) == 7 and d.met.all()
    s = adherence_summary(d)
    r = s[s.exercise_id == ROUTINE].iloc[0]
    assert (r.days, r.days_met, r.pdc, r.period) == (1, 1, 1.0, "all")


def test_patient_starting_mid_week() -> None:
    d = _daily(full_routine("P1", ["2026-03-04", "2026-03-05"]), start="2026-03-04")
    assert d.day.min() == pd.Timestamp("2026-03-04")
    w = adherence_summary(d, by="iso_week")
    r = w[w.exercise_id == ROUTINE].iloc[0]
    assert (r.period, r.days, r.days_met) == ("2026-W10", 5, 2)
    assert r.pdc == pytest.approx(2 / 5)
    assert (r.period_start, r.period_end) == (
        pd.Timestamp("2026-03-02"),
        pd.Timestamp("2026-03-08"),
    )


def test_all_days_missed() -> None:
    pts = patients({"P1": "2026-03-02"})
    d = adherence_daily(sessions([]), prescriptions(pts), pts, window=W10)
    st = adherence_streaks(d)
    assert (st.current_streak_days == 0).all() and (st.longest_streak_days == 0).all()
    assert (st.longest_missed_run_days == 7).all() and (st.days_missed == 7).all()


def test_sessions_outside_programme_and_window_are_not_counted() -> None:
    rows = full_routine("P1", ["2026-03-01", "2026-03-03", "2026-03-09"])  # before, in, after
    d = _daily(rows)
    assert d.day.min() == pd.Timestamp("2026-03-02") and d.day.max() == pd.Timestamp("2026-03-08")
    assert d.groupby("day").met.all().sum() == 1


def test_prescription_override_changes_the_target() -> None:
    pts = patients({"P1": "2026-03-02"})
    ov = PrescriptionOverride.model_validate(
        {"patient_id": "P1", "exercise": "bridge", "from": "2026-03-05", "reps": 5}
    )
    rx = bca.build_prescriptions(pts, overrides=[ov])
    rows = [
        {"day": day, "exercise_id": "bridge", "reps": 4, "hold_s": 15.0}
        for day in ("2026-03-04", "2026-03-05")
    ]
    d = adherence_daily(sessions(rows), rx, pts, window=W10)
    assert _row(d, "bridge", "2026-03-04").volume_prescribed == 3
    five = _row(d, "bridge", "2026-03-05")
    assert five.volume_prescribed == 5 and five.dose_ratio_raw == pytest.approx(0.8) and five.met


def test_inputs_not_mutated_and_order_independent() -> None:
    rng = np.random.default_rng(3)
    rows = full_routine("P1", [f"2026-03-0{i}" for i in range(2, 9)])
    rows += full_routine("P2", ["2026-03-03", "2026-03-06"])
    ses = sessions(rows)
    ses["reps"] = pd.array(rng.integers(0, 12, len(ses)), dtype="Int64")
    pts = patients({"P1": "2026-03-02", "P2": "2026-03-03"})
    rx = prescriptions(pts)
    before = (ses.copy(), pts.copy(), rx.copy())
    a = adherence_daily(ses, rx, pts, window=W10)
    for orig, now in zip(before, (ses, pts, rx), strict=True):
        pd.testing.assert_frame_equal(orig, now)
    shuffled = adherence_daily(
        ses.sample(frac=1, random_state=1), rx.sample(frac=1, random_state=2), pts[::-1], window=W10
    )
    pd.testing.assert_frame_equal(a, shuffled)
    assert isinstance(a.index, pd.RangeIndex)


# --------------------------------------------------------------------------------------------
# roll-ups against hand counts and independent pandas references
# --------------------------------------------------------------------------------------------


def test_summary_views_side_by_side() -> None:
    # P1: full routine Mon, Tue; only breathing Wed; diary Tue, Thu, Fri.
    rows = full_routine("P1", ["2026-03-02", "2026-03-03"])
    rows.append({"day": "2026-03-04", "exercise_id": "breathing", "reps": 10})
    d = _daily(rows)
    s = adherence_summary(d, pain({"P1": ["2026-03-03", "2026-03-05", "2026-03-06"]}), window=W10)
    br = s[s.exercise_id == "breathing"].iloc[0]
    assert (br.period, br.days, br.days_met, br.days_logged) == ("2026-W10", 7, 3, 3)
    assert (br.days_diary, br.days_observed) == (3, 5)  # Mon, Tue, Wed logged; Thu, Fri diary
    assert br.pdc == pytest.approx(3 / 7) and br.pdc_observed == pytest.approx(3 / 5)
    assert br.diary_completeness == pytest.approx(3 / 7)
    r = s[s.exercise_id == ROUTINE].iloc[0]
    assert (r.days_met, r.days_done) == (2, 2)  # Wed: only one exercise
    assert r.mean_dose_ratio == pytest.approx((1 + 1 + 1 / 7) / 7)
    pr = s[s.exercise_id == "prone_press_up"].iloc[0]
    assert (pr.days_hold, pr.days_hold_met, pr.hold_share) == (7, 2, pytest.approx(2 / 7))
    assert pd.isna(s[s.exercise_id == "breathing"].hold_share.iloc[0])


def _random_daily(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    starts = {f"P{i}": str((pd.Timestamp("2026-01-05") + pd.Timedelta(days=int(d))).date())
              for i, d in enumerate(rng.integers(0, 10, 12))}  # fmt: skip
    pts = patients(starts)
    rows = []
    for pid, st in starts.items():
        for k in range(int(rng.integers(5, 60))):
            day = pd.Timestamp(st) + pd.Timedelta(days=int(rng.integers(0, 70)))
            for ex, side, reps, hold in [
                ("breathing", "none", 10, None),
                ("bridge", "none", 3, 15.0),
            ]:
                if rng.random() < 0.8:
                    rows.append({"patient_id": pid, "day": day, "exercise_id": ex, "side": side,
                                 "reps": int(rng.integers(0, reps * 2)), "hold_s": hold,
                                 "at": day + pd.Timedelta(hours=7, minutes=k % 7)})  # fmt: skip
    ses = sessions(rows).drop_duplicates(["patient_id", "performed_at", "exercise_id", "side"])
    diary_days = {p: [str(d.date()) for d in pd.Timestamp(s) + pd.to_timedelta(
        rng.choice(70, 30, replace=False), unit="D")] for p, s in starts.items()}  # fmt: skip
    d = adherence_daily(ses, prescriptions(pts), pts, window=Window(end="2026-03-20", days=75))
    return d, pain(diary_days)


def _with_routine(d: pd.DataFrame) -> pd.DataFrame:
    r = d.groupby(["patient_id", "day"], as_index=False).agg(met=("met", "all"))
    r["exercise_id"] = ROUTINE
    return pd.concat([d[["patient_id", "exercise_id", "day", "met"]], r], ignore_index=True)


def test_weekly_summary_matches_pandas_groupby() -> None:
    d, diary = _random_daily()
    got = adherence_summary(d, diary, by="iso_week")
    ref = _with_routine(d)
    iso = ref.day.dt.isocalendar()
    ref["period"] = iso.year.astype(str) + "-W" + iso.week.astype(str).str.zfill(2)
    exp = ref.groupby(["patient_id", "exercise_id", "period"]).met.agg(["size", "sum"])
    merged = got.set_index(["patient_id", "exercise_id", "period"]).join(exp, how="outer")
    assert len(merged) == len(got) == len(exp)
    assert (merged["days"] == merged["size"]).all() and (merged["days_met"] == merged["sum"]).all()


def test_rolling_matches_pandas_rolling() -> None:
    d, _ = _random_daily()
    got = adherence_rolling(d)
    ref = _with_routine(d).sort_values(["patient_id", "exercise_id", "day"])
    ref["met"] = ref.met.astype(float)
    for span in (7, 28):
        roll = (
            ref.set_index("day").groupby(["patient_id", "exercise_id"]).met
            .rolling(f"{span}D").agg(["sum", "count"]).reset_index()
        )  # fmt: skip
        m = got.merge(roll, on=["patient_id", "exercise_id", "day"], validate="1:1")
        assert len(m) == len(got)
        np.testing.assert_array_equal(m[f"days_met_{span}d"], m["sum"])
        np.testing.assert_array_equal(m[f"days_{span}d"], m["count"])
        np.testing.assert_allclose(m[f"pdc_{span}d"], m["sum"] / m["count"], rtol=0, atol=1e-12)


def _runs(values: list[bool]) -> tuple[int, int, int]:
    """(current streak, longest streak, longest missed run) by a plain loop."""
    longest = miss = cur = cur_miss = 0
    for v in values:
        cur, cur_miss = (cur + 1, 0) if v else (0, cur_miss + 1)
        longest, miss = max(longest, cur), max(miss, cur_miss)
    return cur, longest, miss


def test_streaks_match_a_plain_loop() -> None:
    d, _ = _random_daily(seed=11)
    got = adherence_streaks(d).set_index(["patient_id", "exercise_id"])
    ref = _with_routine(d).sort_values(["patient_id", "exercise_id", "day"])
    for (pid, ex), grp in ref.groupby(["patient_id", "exercise_id"]):
        cur, longest, miss = _runs(grp.met.tolist())
        row = got.loc[(pid, ex)]
        assert (row.current_streak_days, row.longest_streak_days) == (cur, longest)
        assert row.longest_missed_run_days == miss and row.days == len(grp)


def test_rollups_equal_the_single_functions() -> None:
    d, diary = _random_daily(seed=2)
    all_ = adherence_rollups(d, diary)
    pd.testing.assert_frame_equal(all_["adherence_summary"], adherence_summary(d, diary))
    weekly = adherence_summary(d, diary, by="iso_week")
    pd.testing.assert_frame_equal(all_["adherence_weekly"], weekly)
    pd.testing.assert_frame_equal(all_["adherence_rolling"], adherence_rolling(d))
    pd.testing.assert_frame_equal(all_["adherence_streaks"], adherence_streaks(d))
    # a shuffled daily table gives the same roll-ups
    pd.testing.assert_frame_equal(
        adherence_streaks(d.sample(frac=1, random_state=3)), adherence_streaks(d)
    )


# --------------------------------------------------------------------------------------------
# persistence, dropout and gaps
# --------------------------------------------------------------------------------------------


def _log(days_by_patient: dict[str, list[str]]) -> pd.DataFrame:
    return sessions(
        [
            {"patient_id": p, "day": d, "exercise_id": "breathing", "reps": 10}
            for p, days in days_by_patient.items()
            for d in days
        ]
    )


def test_persistence_and_dropout_golden() -> None:
    pts = patients({"P1": "2026-03-02", "P2": "2026-03-02", "P3": "2026-03-10", "P4": "2026-03-25"})
    log = _log(
        {
            "P1": ["2026-03-02", "2026-03-03", "2026-03-08"],  # gap 03-04..07 (4 days > 3)
            "P2": ["2026-03-02", "2026-03-05", "2026-03-09", "2026-03-30"],  # gaps of 2, 3, 20
            # P3 never logs; P4 starts 6 days before the as-of day and never logs
        }
    )
    w = Window(end="2026-03-31", days=30)
    p = bca.persistence(log, pts, window=w).set_index("patient_id")
    assert p.loc["P1", "persistence_days"] == 2 and not p.loc["P1", "persistent"]
    assert p.loc["P1", "longest_gap_days"] == 23 and p.loc["P1", "days_since_last_log"] == 23
    assert p.loc["P1", "dropout"] and p.loc["P1", "last_log_day"] == pd.Timestamp("2026-03-08")
    assert p.loc["P2", "persistence_days"] == 8  # first gap > 3 starts on 03-10
    assert p.loc["P2", "longest_gap_days"] == 20 and not p.loc["P2", "dropout"]
    assert p.loc["P3", "persistence_days"] == 0 and p.loc["P3", "dropout"]
    assert p.loc["P3", "days_since_last_log"] == 22 and pd.isna(p.loc["P3", "last_log_day"])
    assert p.loc["P4", "days_in_programme"] == 7 and not p.loc["P4", "dropout"]
    h = bca.gap_histogram(log, pts, window=w)
    p2 = h[h.patient_id == "P2"]
    assert p2[["gap_days", "count"]].to_numpy().tolist() == [[1, 1], [2, 1], [3, 1], [20, 1]]
    assert h[h.patient_id == "P3"][["gap_days", "count"]].to_numpy().tolist() == [[22, 1]]
    # the window clips gaps: only the days inside it count
    wk = bca.gap_histogram(log, pts, window=Window(end="2026-03-08", days=5))
    assert wk[wk.patient_id == "P1"][["gap_days", "count"]].to_numpy().tolist() == [[4, 1]]


def test_persistence_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(8)
    starts = {f"P{i}": "2026-01-05" for i in range(25)}
    days = {
        p: sorted({str((pd.Timestamp("2026-01-05") + pd.Timedelta(days=int(d))).date())
                   for d in rng.choice(60, int(rng.integers(0, 40)), replace=False)})
        for p in starts
    }  # fmt: skip
    log, pts = _log(days), patients(starts)
    as_of = pd.Timestamp("2026-03-05")
    got = bca.persistence(log, pts, window=Window(end=as_of, days=7)).set_index("patient_id")
    for pid, ds in days.items():
        grid = pd.date_range("2026-01-05", as_of)
        on = grid.isin(pd.to_datetime(ds))
        gaps, run, first_long = [], 0, None
        for i, v in enumerate(on):
            run = 0 if v else run + 1
            if not v and (i + 1 == len(on) or on[i + 1]):
                gaps.append(run)
                if run > 3 and first_long is None:
                    first_long = i - run + 1
        row = got.loc[pid]
        assert row.longest_gap_days == max(gaps, default=0)
        assert row.persistence_days == (len(grid) if first_long is None else first_long)
        last = max(ds) if ds else None
        since = (as_of - pd.Timestamp(last)).days if last else len(grid)
        assert row.days_since_last_log == since and row.dropout == (since >= 21)


# --------------------------------------------------------------------------------------------
# the synthetic clinic: planted habits are recovered
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clinic():
    from backcare_analytics.synth import SynthConfig, simulate

    c = simulate(SynthConfig(patients=120, weeks=8, seed=7))
    days = c.config.weeks * 7
    start = c.patients.set_index("patient_id").programme_start
    end = (start + pd.Timedelta(days=days - 1)).max()
    window = Window(end=end, days=(end - start.min()).days + 1)
    d = adherence_daily(c.sessions, c.prescriptions, c.patients, window=window)
    d = d[d.day < d.patient_id.map(start) + pd.Timedelta(days=days)]  # each own programme
    return c, d, window


@pytest.mark.slow
def test_synthetic_clinic_adherence_habits_recovered(clinic) -> None:
    c, d, window = clinic
    s = adherence_summary(d, c.pain).set_index(["patient_id", "exercise_id"])
    per = bca.persistence(c.sessions, c.patients, window=window).set_index("patient_id")
    br = d[d.exercise_id == "breathing"]
    weekend = br[br.day.dt.day_of_week >= 5].groupby("patient_id").logged.mean()
    weekday = br[br.day.dt.day_of_week < 5].groupby("patient_id").logged.mean()
    logged_ok, freq_ok, dropout_ok, rows = 0, 0, 0, []
    for t in c.truth["patients"]:
        pid, a = t["patient_id"], t["adherence"]
        r = s.loc[(pid, ROUTINE)]
        logged_ok += abs(r.days_logged / r.days - a["routine_share"]) <= 0.02
        freq = s.loc[(pid, "breathing"), "frequency_share"]
        freq_ok += abs(freq - a["exercise_share"]["breathing"]) <= 0.02
        dropout_ok += bool(per.loc[pid, "dropout"]) == (a["habit"] == "dropout")
        rows.append((a["habit"], weekend[pid], weekday[pid], s.loc[(pid, "breathing"), "pdc"]))
    n = len(c.truth["patients"])
    # measured 120/120, 119/120 and 120/120 on seed 7 (bad rows are quarantined, so a day can
    # lose its only breathing row)
    assert logged_ok / n >= 0.95 and freq_ok / n >= 0.95 and dropout_ok / n >= 0.95
    by = pd.DataFrame(rows, columns=["habit", "weekend", "weekday", "pdc"]).groupby("habit").mean()
    assert by.loc["weekdays_only", "weekend"] == 0 and by.loc["weekdays_only", "weekday"] > 0.8
    assert by.loc["most_days", "pdc"] >= 0.75  # breathing met on >= 75 % of days (0.80 here)


def test_plain_float_columns_are_not_written_to() -> None:
    pts = patients({"P1": "2026-03-02"})
    ses = sessions(full_routine("P1", ["2026-03-02"]))
    ses["sets"] = np.ones(len(ses))  # plain float64 instead of Int64: to_numpy gives a view
    ses["hold_s"] = ses["hold_s"].astype("float64")
    before = ses.copy()
    d = adherence_daily(ses, prescriptions(pts), pts)
    pd.testing.assert_frame_equal(ses, before)
    assert d.met.all()


def test_dst_week_counts_on_the_local_day() -> None:
    # Amsterdam, week of Sunday 2026-03-29 (clocks forward): a session at 00:30 local on the
    # Sunday is 23:30 UTC on Saturday; it belongs to the local day the import derived.
    pts = patients({"P1": "2026-03-23"}, tz="Europe/Amsterdam")
    at = pd.Timestamp("2026-03-29 00:30").tz_localize("Europe/Amsterdam")
    assert at.tz_convert("UTC").day == 28
    rows = [{"day": "2026-03-29", "exercise_id": "breathing", "reps": 10, "at": at}]
    d = adherence_daily(sessions(rows), prescriptions(pts), pts, window=Window.iso_week("2026-W13"))
    br = d[d.exercise_id == "breathing"].set_index("day")
    assert len(br) == 7 and br.met.sum() == 1 and br.loc[pd.Timestamp("2026-03-29"), "met"]
