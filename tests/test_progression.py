"""Strength progression: capacity, weekly roll-up, events and the progression/regression flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _metric_frames import pain_frame, patients_frame, sessions_frame

from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.progression import (
    capacity_daily,
    capacity_weekly,
    progression_events,
    progression_flags,
)
from backcare_analytics.protocol import build_prescriptions
from backcare_analytics.schemas import Sessions, validate


def _bridge(day: str, reps: int = 5, hold: float = 15.0, **kw) -> dict:
    return {"patient_id": "P1", "day": day, "exercise_id": "bridge", "reps": reps, "hold_s": hold,
            "pain_before": 2, "pain_after": 2, **kw}  # fmt: skip


def test_capacity_daily_best_session_variants_and_levels() -> None:
    s = sessions_frame(
        [
            _bridge("2026-01-05", reps=3, hold=10.0, sets=2),  # 2 x 3 x 10 = 60 s
            _bridge("2026-01-05", reps=5, hold=10.0, hour=18),  # 50 s
            {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "prone_press_up", "reps": 3,
             "hold_s": 30.0, "variant": None},
            {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "prone_press_up", "reps": 3,
             "hold_s": 20.0, "variant": "standing", "hour": 19},
            {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "mini_push_up", "reps": 15,
             "level": None},
            {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "mini_push_up", "reps": 6,
             "level": "counter", "hour": 20},
            {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "breathing", "reps": 10},
        ]
    )  # fmt: skip
    validate(s, Sessions)
    before = s.copy()
    d = capacity_daily(s)
    pd.testing.assert_frame_equal(s, before)
    assert len(d) == 4  # bridge, press-up prone, press-up standing, push-up; no breathing
    bridge = d[d.exercise_id == "bridge"].iloc[0]
    assert bridge.capacity_s == 60.0 and bridge.reps == 6 and bridge.sessions == 2
    press = d[d.exercise_id == "prone_press_up"].set_index("variant")
    assert press.loc["prone", "capacity_s"] == 90.0  # missing variant = the default (prone)
    assert press.loc["standing", "capacity_s"] == 60.0
    push = d[d.exercise_id == "mini_push_up"].iloc[0]
    # the higher rung wins even with fewer reps; reps are never converted across levels
    assert push.level == "counter" and push.level_rank == 1 and push.reps == 6
    assert pd.isna(push.capacity_s)


def test_capacity_weekly_median_iso_weeks_mid_week_start_and_dst() -> None:
    # Starts Wednesday 2025-12-31 (ISO week 2026-W01 begins Monday 2025-12-29).
    rows = [
        _bridge(str(day.date()), reps=r)
        for day, r in zip(pd.date_range("2025-12-31", periods=5), [3, 5, 4, 5, 5], strict=True)
    ]
    # DST week in Europe: 2026-03-23 .. 2026-03-29 (clocks go forward on Sunday).
    rows += [
        _bridge(str(day.date()), reps=5, hold=20.0)
        for day in pd.date_range("2026-03-23", periods=7)
    ]
    w = capacity_weekly(capacity_daily(sessions_frame(rows)))
    first = w.iloc[0]
    assert first.week == "2026-W01" and first.week_start == pd.Timestamp("2025-12-29")
    assert first.days == 5 and first.reps == 5.0 and first.capacity_s == 75.0
    dst = w[w.week == "2026-W13"].iloc[0]
    assert dst.days == 7 and dst.capacity_s == 100.0


def test_weekly_push_up_top_level_and_reps_at_it() -> None:
    rows = [
        {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "mini_push_up", "reps": 18, "level": "wall"},
        {"patient_id": "P1", "day": "2026-01-06", "exercise_id": "mini_push_up", "reps": 8, "level": "counter"},
        {"patient_id": "P1", "day": "2026-01-07", "exercise_id": "mini_push_up", "reps": 10, "level": "counter"},
    ]  # fmt: skip
    w = capacity_weekly(capacity_daily(sessions_frame(rows))).iloc[0]
    assert w.level == "counter" and w.level_rank == 1 and w.reps == 9.0 and w.days == 3


def test_events_steps_and_level_changes() -> None:
    rows = [_bridge("2026-01-05", reps=3, hold=15.0), _bridge("2026-01-06", reps=4, hold=15.0),
            _bridge("2026-01-07", reps=6, hold=15.0), _bridge("2026-01-08", reps=6, hold=20.0),
            _bridge("2026-01-09", reps=3, hold=10.0)]  # fmt: skip
    rows += [
        {"patient_id": "P1", "day": "2026-01-05", "exercise_id": "mini_push_up", "reps": 15, "level": "wall"},
        {"patient_id": "P1", "day": "2026-01-06", "exercise_id": "mini_push_up", "reps": 6, "level": "counter"},
        {"patient_id": "P1", "day": "2026-01-07", "exercise_id": "mini_push_up", "reps": 20, "level": "wall"},
    ]  # fmt: skip
    ev = progression_events(capacity_daily(sessions_frame(rows)))
    got = list(zip(ev.exercise_id, ev.day.dt.day, ev.event, strict=True))
    assert got == [
        ("bridge", 7, "reps_up"),  # 4 -> 6 (+2); 3 -> 4 is below the step
        ("bridge", 8, "hold_up"),
        ("bridge", 9, "hold_down"),
        ("bridge", 9, "reps_down"),
        ("mini_push_up", 6, "level_up"),  # 15 -> 6 reps is not a reps_down: new level
        ("mini_push_up", 7, "level_down"),
    ]
    lvl = ev[ev.event == "level_up"].iloc[0]
    assert (lvl.level_before, lvl.level_after, lvl.before, lvl.after) == ("wall", "counter", 0, 1)


def _week(days_met: int, pain_after: int = 2, start: str = "2026-02-02") -> list[dict]:
    out = []
    for i, day in enumerate(pd.date_range(start, periods=7)):
        reps = 5 if i < days_met else 1  # 1 rep: far below 0.8 x 3
        out.append(_bridge(str(day.date()), reps=reps, pain_after=pain_after))
    return out


def test_ready_to_progress_rules() -> None:
    calm = pain_frame("P1", "2026-01-20", [3] * 20)
    s = sessions_frame(_week(5))
    f = progression_flags(s, calm).set_index("exercise_id").loc["bridge"]
    assert f.days_met == 5 and f.flare_in_window == False and f.ready_to_progress  # noqa: E712
    assert f.as_of == pd.Timestamp("2026-02-08")
    # 4 of 7 days met: not ready.
    f4 = progression_flags(sessions_frame(_week(4)), calm).set_index("exercise_id").loc["bridge"]
    assert f4.days_met == 4 and not f4.ready_to_progress
    # One session at pain after 4 (> 3): not ready.
    rows = _week(7)
    rows[3]["pain_after"] = 4
    f_over = progression_flags(sessions_frame(rows), calm).set_index("exercise_id").loc["bridge"]
    assert f_over.sessions_over_pain == 1 and not f_over.ready_to_progress
    # A diary flare three days before the end: not ready.
    flared = pain_frame("P1", "2026-01-20", [3] * 16 + [8] + [3] * 3)
    f_fl = progression_flags(s, flared).set_index("exercise_id").loc["bridge"]
    assert f_fl.flare_in_window and not f_fl.ready_to_progress
    # Prescription override to a larger dose: 5 reps no longer meets 8 x 0.8.
    pts = patients_frame({"P1": "2026-01-01"})
    from backcare_analytics.protocol import PrescriptionOverride

    ov = PrescriptionOverride.model_validate(
        {"patient_id": "P1", "exercise": "bridge", "from": "2026-01-01", "reps": 8}
    )
    rx = build_prescriptions(pts, overrides=[ov])
    f_rx = progression_flags(s, calm, rx).set_index("exercise_id").loc["bridge"]
    assert f_rx.days_met == 0 and not f_rx.ready_to_progress


def test_adherence_frame_is_used_when_given() -> None:
    s = sessions_frame(_week(0))
    adh = pd.DataFrame({"patient_id": "P1", "exercise_id": "bridge",
                        "day": pd.date_range("2026-02-02", periods=7), "met": [True] * 6 + [False]})  # fmt: skip
    f = progression_flags(s, pain_frame("P1", "2026-01-20", [3] * 20), adherence_daily=adh)
    assert f.set_index("exercise_id").loc["bridge", "days_met"] == 6


def test_consider_regression_and_window() -> None:
    rows = _week(7)
    rows[1]["pain_after"] = 6  # red
    rows[4]["pain_before"], rows[4]["pain_after"] = 1, 3  # +2 in session
    f = progression_flags(sessions_frame(rows)).set_index("exercise_id").loc["bridge"]
    assert f.regression_sessions == 2 and f.consider_regression
    # As of an earlier day only the first red session is in the window.
    w = Window(end=pd.Timestamp("2026-02-04"), days=7)
    fw = progression_flags(sessions_frame(rows), window=w).set_index("exercise_id").loc["bridge"]
    assert fw.regression_sessions == 1 and not fw.consider_regression
    assert fw.sessions == 3


def test_many_patients_flags_do_not_mix() -> None:
    a = _week(7)
    b = [dict(r, patient_id="P2", pain_after=7) for r in _week(7)]
    f = progression_flags(sessions_frame(a + b))
    f = f[f.exercise_id == "bridge"].set_index("patient_id")
    assert not f.loc["P1", "consider_regression"] and f.loc["P2", "consider_regression"]
    assert f.loc["P2", "sessions_over_pain"] == 7 and np.all(f.days_met == 7)
