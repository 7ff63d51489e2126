"""Small builders of clean frames for the pain/tolerance/progression/verdict tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

HASH = "0" * 64


def pain_frame(
    patient: str,
    start: str,
    back: Sequence[float | None],
    leg: Sequence[float | None] | None = None,
    flare: Sequence[bool | None] | None = None,
    *,
    hour: int = 8,
) -> pd.DataFrame:
    """One diary entry per day from ``start``; ``None`` in ``back`` skips the day."""
    n = len(back)
    days = pd.date_range(start, periods=n, freq="D").astype("datetime64[us]")
    leg = [None] * n if leg is None else list(leg)
    flare = [None] * n if flare is None else list(flare)
    keep = [b is not None for b in back]
    df = pd.DataFrame(
        {
            "patient_id": pd.Series([patient] * n, dtype="str"),
            "recorded_at": (days + pd.Timedelta(hours=hour)).tz_localize("UTC"),
            "day": days,
            "back_pain": pd.array(list(back), dtype="Int64"),
            "leg_pain": pd.array(leg, dtype="Int64"),
            "flare": pd.array(flare, dtype="boolean"),
            "note": pd.Series([None] * n, dtype="str"),
            "source_file": pd.Series([HASH] * n, dtype="str"),
        }
    )
    return df[np.array(keep)].reset_index(drop=True)


def patients_frame(starts: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pd.Series(list(starts), dtype="str"),
            "timezone": pd.Series(["Europe/Amsterdam"] * len(starts), dtype="str"),
            "programme_start": pd.to_datetime(list(starts.values())).astype("datetime64[us]"),
            "clinician": pd.Series([None] * len(starts), dtype="str"),
        }
    )


def sessions_frame(rows: list[dict]) -> pd.DataFrame:
    """Clean sessions from dicts with at least patient_id, day, exercise_id; hour optional."""
    out = []
    for i, r in enumerate(rows):
        day = pd.Timestamp(r["day"])
        out.append(
            {
                "patient_id": r["patient_id"],
                "session_id": r.get("session_id", f"s{i}"),
                "performed_at": (day + pd.Timedelta(hours=r.get("hour", 7), minutes=i % 60)),
                "day": day,
                "exercise_id": r["exercise_id"],
                "side": r.get("side", "none"),
                "sets": r.get("sets", 1),
                "reps": r.get("reps"),
                "hold_s": r.get("hold_s"),
                "level": r.get("level"),
                "variant": r.get("variant"),
                "pain_before": r.get("pain_before"),
                "pain_after": r.get("pain_after"),
                "note": None,
                "source_file": HASH,
            }
        )
    df = pd.DataFrame(out)
    df["performed_at"] = (
        pd.to_datetime(df["performed_at"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    )
    df["day"] = pd.to_datetime(df["day"]).astype("datetime64[us]")
    for c in ("sets", "reps", "pain_before", "pain_after"):
        df[c] = pd.array(df[c].tolist(), dtype="Int64")
    df["hold_s"] = pd.array(df["hold_s"].tolist(), dtype="Float64")
    for c in ("patient_id", "session_id", "exercise_id", "side", "level", "variant", "note",
              "source_file"):  # fmt: skip
        df[c] = df[c].astype("str")
    return df


def synthetic_cohort(patients: int, weeks: int, seed: int):
    """Clean (sessions, pain, patients) of the benchmark's seeded cohort builder (benchmarks/
    is not a package on the test path, so it is loaded from its file)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "bench_pain_progression.py"
    spec = importlib.util.spec_from_file_location("_bench_pain_progression", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(patients, weeks=weeks, seed=seed)
