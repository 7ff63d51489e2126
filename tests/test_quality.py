"""Data-quality flags: a golden clinic with one problem per patient."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from _adherence_frames import full_routine, pain, patients, prescriptions, sessions

from backcare_analytics.metrics import QualityPolicy, Window, quality_flags
from backcare_analytics.schemas.results import QUALITY_FLAGS

W10 = Window.iso_week("2026-W10")
WEEK = [f"2026-03-0{i}" for i in range(2, 9)]


def _clinic():
    pts = patients({p: "2026-03-02" for p in ("GOOD", "QUIET", "FEWDIARY", "GAPPY", "LATE")})
    rows = full_routine("GOOD", WEEK) + full_routine("FEWDIARY", WEEK) + full_routine("GAPPY", WEEK)
    rows += full_routine("LATE", ["2026-02-27", "2026-03-03", "2026-03-10", "2026-03-11"])
    rows += [{"patient_id": "GHOST", "day": "2026-03-03", "exercise_id": "breathing", "reps": 10,
              "note": "=HYPERLINK(\"x\")"}]  # fmt: skip
    diary = pain(
        {
            "GOOD": WEEK,
            "FEWDIARY": ["2026-03-02", "2026-03-05"],
            "GAPPY": ["2026-03-02", "2026-03-08"],  # 5 days in a row without an entry
            "LATE": WEEK,
        }
    )
    rx = prescriptions(pts)
    # FEWDIARY has no prescription for the mini push-up
    rx = rx[~((rx.patient_id == "FEWDIARY") & (rx.exercise_id == "mini_push_up"))]
    return sessions(rows), diary, pts, rx.reset_index(drop=True)


def test_golden_flags() -> None:
    ses, diary, pts, rx = _clinic()
    rejects = pd.DataFrame(
        {
            "file_sha": ["a" * 64] * 3,
            "row": [2, 3, 4],
            "reason": ["bad_number"] * 3,
            "patient_id": pd.Series(["GOOD", "GOOD", None], dtype="str"),
        }
    )
    f = quality_flags(ses, diary, pts, rx, rejects=rejects, window=W10,
                      policy=QualityPolicy(diary_gap_days=5))  # fmt: skip
    got = {(p, fl): d for p, fl, d in f.itertuples(index=False)}
    assert set(got) == {
        ("GOOD", "quarantined_rows"),
        ("QUIET", "no_data"),
        ("FEWDIARY", "few_diary_entries"),
        ("FEWDIARY", "no_prescription"),
        ("GAPPY", "few_diary_entries"),
        ("GAPPY", "long_diary_gap"),
        ("LATE", "sessions_after_window"),
        ("LATE", "sessions_before_start"),
        ("GHOST", "unregistered_patient"),
    }
    assert got[("GOOD", "quarantined_rows")].startswith("2 row(s)")
    assert got[("QUIET", "no_data")] == (
        "No sessions and no pain-diary entries from 2026-03-02 to 2026-03-08."
    )
    assert got[("FEWDIARY", "few_diary_entries")] == (
        "Pain diary on 2 of 7 days (2026-03-02 to 2026-03-08)."
    )
    assert got[("FEWDIARY", "no_prescription")].startswith("7 session row(s)")
    assert got[("GAPPY", "long_diary_gap")] == (
        "5 days in a row without a pain-diary entry, from 2026-03-03."
    )
    assert got[("LATE", "sessions_after_window")].startswith("14 session row(s) after")
    assert got[("LATE", "sessions_before_start")].startswith("7 session row(s) dated before")
    assert got[("GHOST", "unregistered_patient")].startswith("1 session or diary row(s)")
    # details hold counts and dates only, never notes or values
    for detail in f.detail:
        assert "HYPERLINK" not in detail
        assert re.fullmatch(r"[A-Za-z0-9 ,.;()'\-]+", detail), detail
    # sorted by patient, then in the order of QUALITY_FLAGS
    assert f.patient_id.is_monotonic_increasing
    assert set(f.flag) <= set(QUALITY_FLAGS)


def test_reject_counts_frame_and_default_gap() -> None:
    ses, diary, pts, rx = _clinic()
    counts = pd.DataFrame({"patient_id": ["LATE", "NOBODY"], "n_rejected": [5, 9]})
    f = quality_flags(ses, diary, pts, rx, rejects=counts, window=W10)
    q = f[f.flag == "quarantined_rows"]
    assert q.patient_id.tolist() == ["LATE"] and q.detail.iloc[0].startswith("5 row(s)")
    assert "long_diary_gap" not in set(f.flag)  # the default is 7 days


def test_without_window_and_clean_clinic() -> None:
    pts = patients({"P1": "2026-03-02"})
    ses = sessions(full_routine("P1", WEEK))
    f = quality_flags(ses, pain({"P1": WEEK}), pts, prescriptions(pts))
    assert f.empty
    assert list(f.columns) == ["patient_id", "flag", "detail"]


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="min_diary_share"):
        QualityPolicy(min_diary_share=2)
