"""Tolerance per session row: golden cases for the light, deltas, next morning and exemptions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _metric_frames import pain_frame, sessions_frame, synthetic_cohort

from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.tolerance import TolerancePolicy, session_tolerance
from backcare_analytics.schemas import Sessions, validate


def _s(**kw) -> dict:
    return {"patient_id": "P1", "day": "2026-03-27", "exercise_id": "bridge", "reps": 3,
            "hold_s": 15.0, **kw}  # fmt: skip


def test_frames_are_clean() -> None:
    validate(sessions_frame([_s(pain_before=1, pain_after=2)]), Sessions)


def test_lights_and_session_delta() -> None:
    s = sessions_frame(
        [
            _s(pain_before=3, pain_after=3),  # green, tolerated
            _s(pain_before=4, pain_after=5),  # amber, +1: tolerated
            _s(pain_before=2, pain_after=4),  # amber, +2: made worse
            _s(pain_before=6, pain_after=6),  # red
            _s(pain_before=None, pain_after=None),  # nothing known
            _s(pain_before=None, pain_after=2),  # green, delta unknown: tolerated
        ]
    )
    before = s.copy()
    t = session_tolerance(s)
    pd.testing.assert_frame_equal(s, before)
    assert t.light.isna().tolist() == [False, False, False, False, True, False]
    assert t.light.iloc[:4].tolist() == ["green", "amber", "amber", "red"]
    assert t.pain_delta.tolist()[:4] == [0, 1, 2, 0]
    assert t.worse_in_session.tolist() == [False, False, True, False, pd.NA, pd.NA]
    assert t.tolerated.tolist() == [True, True, False, False, pd.NA, True]
    assert t.back_reference_source.iloc[0] == "session"
    strict = session_tolerance(s, policy=TolerancePolicy(green_max=2, amber_max=3))
    assert strict.light.iloc[:2].tolist() == ["amber", "red"]


def test_next_morning_and_diary_reference_across_dst() -> None:
    # Sessions on Saturday 2026-03-28; Europe's clocks go forward that night.
    s = sessions_frame(
        [
            _s(day="2026-03-28", pain_before=3, pain_after=3),
            _s(day="2026-03-28", exercise_id="sciatic_floss", side="left", reps=10, hold_s=3.0,
               pain_before=3, pain_after=3),
            _s(day="2026-03-28", exercise_id="prone_press_up", reps=3, hold_s=30.0,
               pain_before=None, pain_after=3, hour=9),
        ]
    )  # fmt: skip
    # Diary: Friday evening 4 (leg 1), Saturday 08:00 back 3 (leg 1), Sunday morning back 5 (+2),
    # leg 4 (+3), Sunday evening back 9 (not the morning entry).
    diary = pd.concat(
        [
            pain_frame("P1", "2026-03-27", [4], leg=[1], hour=20),
            pain_frame("P1", "2026-03-28", [3], leg=[1], hour=8),
            pain_frame("P1", "2026-03-29", [5], leg=[4], hour=7),
            pain_frame("P1", "2026-03-29", [9], leg=[9], hour=19),
        ],
        ignore_index=True,
    )
    t = session_tolerance(s, diary)
    assert t.next_morning_back.tolist() == [5.0, 5.0, 5.0]
    assert t.next_morning_leg.tolist() == [4.0, 4.0, 4.0]
    # bridge: before 3 -> 5 next morning (+2): not tolerated; leg +3 also counts against it.
    assert t.next_morning_back_worse.tolist() == [True, True, True]
    # press-up had no pain_before: reference is the diary entry at 08:00 that day (3).
    assert t.back_reference.iloc[2] == 3.0 and t.back_reference_source.iloc[2] == "diary"
    # leg reference: the latest diary leg pain before 07:00 Saturday is Friday 20:00 (1).
    assert t.leg_reference.iloc[0] == 1.0
    assert t.leg_symptoms_expected.tolist() == [False, True, False]
    assert t.tolerated.tolist() == [False, False, False]  # back worse counts for everyone

    calm = diary.copy()
    calm.loc[calm.day == pd.Timestamp("2026-03-29"), "back_pain"] = pd.array([3, 3], dtype="Int64")
    t2 = session_tolerance(s, calm)
    # Only the leg got worse: the floss is exempt, the bridge and press-up are not.
    assert t2.next_morning_leg_worse.tolist() == [True, True, True]
    assert t2.tolerated.tolist() == [False, True, False]


def test_reference_too_old_and_no_diary() -> None:
    s = sessions_frame([_s(day="2026-03-28", pain_before=None, pain_after=2)])
    old = pain_frame("P1", "2026-03-25", [4], hour=8)  # three days before: too old
    t = session_tolerance(s, old)
    assert pd.isna(t.back_reference.iloc[0]) and pd.isna(t.back_reference_source.iloc[0])
    assert t.tolerated.iloc[0]
    t_none = session_tolerance(s)
    assert pd.isna(t_none.next_morning_back.iloc[0]) and t_none.tolerated.iloc[0]


def test_many_patients_and_window() -> None:
    s = sessions_frame(
        [_s(patient_id="A", day="2026-03-02", pain_before=2, pain_after=2),
         _s(patient_id="B", day="2026-03-02", pain_before=2, pain_after=2),
         _s(patient_id="B", day="2026-03-09", pain_before=2, pain_after=7)]
    )  # fmt: skip
    # A's next morning is bad, B's is fine: keys must not leak between patients.
    diary = pd.concat([pain_frame("A", "2026-03-03", [8]), pain_frame("B", "2026-03-03", [2])])
    t = session_tolerance(s, diary)
    assert t.tolerated.tolist() == [False, True, False]
    w = session_tolerance(s, diary, window=Window.iso_week("2026-W10"))
    assert len(w) == 2 and set(w.patient_id) == {"A", "B"}
    assert len(session_tolerance(s.iloc[:0], diary)) == 0


def test_diary_of_other_patients_only() -> None:
    s = sessions_frame([_s(pain_before=2, pain_after=2)])
    t = session_tolerance(s, pain_frame("OTHER", "2026-03-28", [9]))
    assert pd.isna(t.next_morning_back.iloc[0]) and t.tolerated.iloc[0]


def test_diary_lookups_match_merge_asof_on_a_synthetic_clinic() -> None:
    """The searchsorted lookups agree with an independent pandas merge_asof / merge reference
    (latest diary entry within 36 h before the session, per measure, skipping missing values;
    the first entry of the next local day) on a seeded clinic with gaps and missing values."""
    ses, pain, _ = synthetic_cohort(40, weeks=8, seed=7)
    rng = np.random.default_rng(7)
    pain = pain[rng.random(len(pain)) < 0.8].reset_index(drop=True)  # diary gaps
    pain.loc[rng.random(len(pain)) < 0.15, "back_pain"] = pd.NA
    pain.loc[rng.random(len(pain)) < 0.15, "leg_pain"] = pd.NA
    # Diary times spread over the day, so some precede the session of their own day.
    shift = pd.to_timedelta(rng.integers(-20, 4, len(pain)), unit="h")
    pain["recorded_at"] = (pain["recorded_at"] + shift).astype("datetime64[us, UTC]")
    ses.loc[rng.random(len(ses)) < 0.2, "pain_before"] = pd.NA
    t = session_tolerance(ses, pain)

    left = ses[["patient_id", "performed_at"]].assign(row=np.arange(len(ses)))
    left = left.sort_values("performed_at")
    for measure in ("back_pain", "leg_pain"):
        right = pain.loc[pain[measure].notna(), ["patient_id", "recorded_at", measure]]
        m = pd.merge_asof(left, right.sort_values("recorded_at"), left_on="performed_at",
                          right_on="recorded_at", by="patient_id", direction="backward",
                          tolerance=pd.Timedelta(hours=36), allow_exact_matches=True)  # fmt: skip
        ref = m.sort_values("row")[measure].astype("Float64").to_numpy(np.float64, na_value=np.nan)
        if measure == "leg_pain":
            np.testing.assert_array_equal(t["leg_reference"].to_numpy(), ref)
        else:
            before = ses["pain_before"].to_numpy(np.float64, na_value=np.nan)
            expect = np.where(np.isnan(before), ref, before)
            np.testing.assert_array_equal(t["back_reference"].to_numpy(), expect)
            src = np.where(~np.isnan(before), "session", np.where(np.isnan(ref), None, "diary"))
            assert (
                t["back_reference_source"]
                .astype(object)
                .where(t["back_reference_source"].notna(), None)
                .tolist()
                == src.tolist()
            )
    first = pain.sort_values("recorded_at").drop_duplicates(["patient_id", "day"])
    first = first.assign(day=first["day"] - pd.Timedelta(days=1))
    nm = ses[["patient_id", "day"]].merge(first, on=["patient_id", "day"], how="left")
    for measure, col in (("back_pain", "next_morning_back"), ("leg_pain", "next_morning_leg")):
        expect = nm[measure].astype("Float64").to_numpy(np.float64, na_value=np.nan)
        np.testing.assert_array_equal(t[col].to_numpy(), expect)
    assert t["light"].dtype == pd.CategoricalDtype(["green", "amber", "red"], ordered=True)
