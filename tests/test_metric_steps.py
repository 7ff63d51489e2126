"""The shared metric steps and helpers made public by issue 11 (metrics/grid.py, metrics/steps.py),
checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _metric_frames import pain_frame, patients_frame, sessions_frame

from backcare_analytics.metrics import grid
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.steps import best_daily, build_pain_grid, flare_cells
from backcare_analytics.protocol import load_protocol


def _day(text: str) -> int:
    return grid.day_number(pd.Timestamp(text))


def test_day_numbers_mondays_and_iso_weeks_by_hand() -> None:
    # 1970-01-01 is day 0 (a Thursday); 2026-01-01 is a Thursday of ISO week 2026-W01, whose
    # Monday is 2025-12-29; 2027-01-01 is a Friday of 2026-W53; 2024-12-30 a Monday of 2025-W01.
    assert _day("1970-01-01") == 0 and _day("1970-01-05") == 4
    days = np.array([_day(d) for d in ("2026-01-01", "2027-01-01", "2024-12-30", "2026-03-08")])
    mondays = grid.monday(days)
    expected = ["2025-12-29", "2026-12-28", "2024-12-30", "2026-03-02"]
    assert mondays.tolist() == [_day(d) for d in expected]
    labels = grid.iso_week_labels(np.r_[days, days[:1]])
    assert labels.dtype == "str"
    assert labels.tolist() == ["2026-W01", "2026-W53", "2025-W01", "2026-W10", "2026-W01"]
    assert grid.iso_week_labels(np.zeros(0, dtype=np.int64)).tolist() == []
    # round trip, with NaT <-> NO_DAY
    back = grid.as_days(np.r_[days, grid.NO_DAY])
    assert grid.days(back).tolist() == [*days.tolist(), grid.NO_DAY]


def test_patients_index_sorted_distinct_with_start_days() -> None:
    pts = patients_frame({"P2": "2026-03-04", "P1": "2026-03-02"})
    pts = pd.concat([pts, pts.iloc[[0]]], ignore_index=True)  # P2 twice
    pts.loc[2, "programme_start"] = pd.Timestamp("2026-05-01")  # the first P2 row wins
    ids, start = grid.patients_index(pts)
    assert ids.tolist() == ["P1", "P2"]
    assert start.tolist() == [_day("2026-03-02"), _day("2026-03-04")]


def test_pain_grid_daily_means_windows_and_programme_start() -> None:
    # P1: back 4, (no entry), 6 + a second entry of 3 on day 3 -> mean 4.5; leg on day 1 only.
    p1 = pain_frame("P1", "2026-03-02", [4, None, 6], leg=[2, None, None])
    extra = pain_frame("P1", "2026-03-04", [3], hour=20)
    pts = patients_frame({"P1": "2026-03-01", "P0": "2026-02-01"})  # P0: no diary
    g = build_pain_grid(pd.concat([p1, extra], ignore_index=True), pts, None)
    assert g.ids.tolist() == ["P0", "P1"]
    # keys: P0 back 0, P0 leg 1, P1 back 2, P1 leg 3
    assert g.length.tolist() == [0, 0, 3, 1]
    assert g.key.tolist() == [2, 2, 2, 3] and g.t.tolist() == [0, 1, 2, 0]
    np.testing.assert_array_equal(g.value, [4.0, np.nan, 4.5, 2.0])
    assert g.entries.tolist() == [1, 0, 2, 1]
    assert g.origin.tolist() == [_day("2026-02-01"), _day("2026-03-01")]
    s, n = g.window(np.array([2, 2, 3]), np.array([0, 1, -5]), np.array([2, 1, 9]))
    assert s.tolist() == [8.5, 0.0, 2.0] and n.tolist() == [2, 0, 1]
    # A window ending on day 2 leaves day 3 out.
    w = build_pain_grid(pd.concat([p1, extra]), pts, Window(end=pd.Timestamp("2026-03-03")))
    assert w.length.tolist() == [0, 0, 1, 1]


def test_flare_cells_by_hand() -> None:
    # Seven days at 2, then 4 (exactly 2 above the trailing mean of 2 with 7 trailing days: a
    # flare, the boundary counts), 5 (trailing mean 18/8 = 2.25: same episode), 2, then 6
    # (trailing mean 25/10 = 2.5: a second episode).
    g = build_pain_grid(pain_frame("P1", "2026-01-01", [2] * 7 + [4, 5, 2, 6]), None, None)
    trailing, days, flare, episode = flare_cells(g, baseline_days=28, min_days=7, points=2.0)
    back = g.key == 0
    assert days[back].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert trailing[back][7] == 2.0 and trailing[back][8] == 18 / 8
    assert trailing[back][10] == 25 / 10
    assert flare[back].tolist() == [False] * 7 + [True, True, False, True]
    assert episode[back].tolist() == [0] * 7 + [1, 1, 0, 2]
    # Six trailing days are too few: the same jump on day 6 is no flare.
    g6 = build_pain_grid(pain_frame("P1", "2026-01-01", [2] * 6 + [5]), None, None)
    assert not flare_cells(g6, baseline_days=28, min_days=7, points=2.0)[2].any()


def test_best_daily_picks_the_best_row_of_each_day() -> None:
    s = sessions_frame(
        [
            {"patient_id": "P2", "day": "2026-01-05", "exercise_id": "bridge", "reps": 3,
             "hold_s": 10.0},  # 30 s
            {"patient_id": "P2", "day": "2026-01-05", "exercise_id": "bridge", "reps": 2,
             "hold_s": 20.0, "hour": 9},  # 40 s: the best
            {"patient_id": "P1", "day": "2026-01-06", "exercise_id": "mini_push_up", "reps": 12,
             "level": "wall"},
            {"patient_id": "P1", "day": "2026-01-06", "exercise_id": "mini_push_up", "reps": 5,
             "level": "counter", "hour": 9},  # a higher rung beats more reps
            {"patient_id": "P1", "day": "2026-01-06", "exercise_id": "breathing", "reps": 10},
        ]
    )  # fmt: skip
    b = best_daily(s, load_protocol(), None)
    c = b.rows
    assert c.patient_names(b.pick).tolist() == ["P1", "P2"]  # output order: patient first
    assert [c.ex_names[e] for e in b.ex[b.pick]] == ["mini_push_up", "bridge"]
    assert b.n_rows.tolist() == [2, 2]
    assert b.reps[b.pick].tolist() == [5.0, 2.0]
    np.testing.assert_array_equal(b.cap[b.pick], [np.nan, 40.0])
    assert [c.levels[lv] for lv in b.lcode[b.pick][:1]] == ["counter"]
    assert b.rank[b.pick][0] == 1.0  # wall 0, counter 1
