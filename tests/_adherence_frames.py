"""Small builders of clean frames for the adherence, timing and quality tests."""

from __future__ import annotations

import pandas as pd

from backcare_analytics.protocol import build_prescriptions

HASH = "0" * 64


def patients(starts: dict[str, str], tz: str | dict[str, str] = "UTC") -> pd.DataFrame:
    zones = [tz[p] if isinstance(tz, dict) else tz for p in starts]
    return pd.DataFrame(
        {
            "patient_id": pd.Series(list(starts), dtype="str"),
            "timezone": pd.Series(zones, dtype="str"),
            "programme_start": pd.to_datetime(list(starts.values())).astype("datetime64[us]"),
            "clinician": pd.Series([None] * len(starts), dtype="str"),
        }
    )


def sessions(rows: list[dict]) -> pd.DataFrame:
    """Clean sessions from dicts: patient_id, day, exercise_id and optionally side, sets, reps,
    hold_s, at (UTC time; default 07:00 UTC on the day) and pain_before/after."""
    recs = []
    for r in rows:
        day = pd.Timestamp(r["day"])
        at = pd.Timestamp(r["at"]) if "at" in r else day + pd.Timedelta(hours=7)
        if at.tzinfo is None:
            at = at.tz_localize("UTC")
        recs.append(
            {
                "patient_id": r.get("patient_id", "P1"),
                "session_id": None,
                "performed_at": at.tz_convert("UTC"),
                "day": day,
                "exercise_id": r["exercise_id"],
                "side": r.get("side", "none"),
                "sets": r.get("sets"),
                "reps": r.get("reps"),
                "hold_s": r.get("hold_s"),
                "level": None,
                "variant": None,
                "pain_before": r.get("pain_before"),
                "pain_after": r.get("pain_after"),
                "note": r.get("note"),
                "source_file": HASH,
            }
        )
    cols = {
        "patient_id": "str", "session_id": "str", "performed_at": "datetime64[us, UTC]",
        "day": "datetime64[us]", "exercise_id": "str", "side": "str", "sets": "Int64",
        "reps": "Int64", "hold_s": "Float64", "level": "str", "variant": "str",
        "pain_before": "Int64", "pain_after": "Int64", "note": "str", "source_file": "str",
    }  # fmt: skip
    if not recs:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    df = pd.DataFrame(recs)
    return df.astype(cols)


def pain(entries: dict[str, list[str]]) -> pd.DataFrame:
    """Diary entries (back pain 3) for each patient on the given days."""
    pid = [p for p, days in entries.items() for _ in days]
    days = pd.to_datetime([d for ds in entries.values() for d in ds]).astype("datetime64[us]")
    n = len(pid)
    return pd.DataFrame(
        {
            "patient_id": pd.Series(pid, dtype="str"),
            "recorded_at": (days + pd.Timedelta(hours=20)).tz_localize("UTC"),
            "day": days,
            "back_pain": pd.array([3] * n, dtype="Int64"),
            "leg_pain": pd.array([None] * n, dtype="Int64"),
            "flare": pd.array([None] * n, dtype="boolean"),
            "note": pd.Series([None] * n, dtype="str"),
            "source_file": pd.Series([HASH] * n, dtype="str"),
        }
    )


FULL = [
    ("breathing", "none", 10, None),
    ("knee_to_chest", "both", 10, None),
    ("bridge", "none", 3, 15.0),
    ("sciatic_floss", "both", 10, 3.0),
    ("low_back_roll", "both", 10, None),
    ("prone_press_up", "none", 3, 30.0),
    ("mini_push_up", "none", 10, None),
]


def full_routine(patient: str, days: list[str]) -> list[dict]:
    """Rows of the whole routine at exactly the prescribed dose on each day."""
    return [
        {"patient_id": patient, "day": d, "exercise_id": e, "side": s, "reps": r, "hold_s": h}
        for d in days
        for e, s, r, h in FULL
    ]


def prescriptions(pts: pd.DataFrame) -> pd.DataFrame:
    return build_prescriptions(pts)
