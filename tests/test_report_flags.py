"""The report's own flags and the clinic's attention order, on hand-made frames whose answers
are counted by hand (docs/reports.md states the rules)."""

from __future__ import annotations

import pandas as pd
import pytest

from backcare_analytics.errors import SchemaValidationError
from backcare_analytics.metrics.params import Window
from backcare_analytics.reports.flags import attention_table, week_flags
from backcare_analytics.reports.policy import ReportPolicy
from backcare_analytics.schemas import validate
from backcare_analytics.schemas.results import WEEK_FLAGS, WeekFlags
from backcare_analytics.vocabulary import FLAG_LABELS

WEEK = Window.iso_week("2026-W15")  # Mon 6 Apr - Sun 12 Apr 2026
DAY = pd.Timestamp("2026-04-06")


def _patients(*ids: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pd.Series(ids, dtype="str"),
            "timezone": "UTC",
            "programme_start": pd.Series([pd.Timestamp("2026-03-01")] * len(ids)).astype(
                "datetime64[us]"
            ),
            "clinician": pd.Series(["C1"] * len(ids), dtype="str"),
        }
    )


def _routine(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    ids, days, logged, pdc = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "patient_id": pd.Series(ids, dtype="str"),
            "exercise_id": "_routine",
            "days": list(days),
            "days_logged": list(logged),
            "pdc": list(pdc),
        }
    )


def _pain_daily(series: dict[str, list[float]], flares: dict[str, list[int]]) -> pd.DataFrame:
    """Back pain per day for the 14 days up to the week's Sunday (two weeks)."""
    rows = []
    for pid, values in series.items():
        for i, v in enumerate(values):
            rows.append((pid, WEEK.end - pd.Timedelta(days=13 - i), v, i in flares.get(pid, [])))
    pid, day, pain, flare = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "patient_id": pd.Series(pid, dtype="str"),
            "day": pd.Series(day).astype("datetime64[us]"),
            "measure": "back_pain",
            "pain": list(pain),
            "flare_day": list(flare),
        }
    )


def _sessions(last_day: dict[str, pd.Timestamp]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pd.Series(list(last_day), dtype="str"),
            "day": pd.Series(list(last_day.values())).astype("datetime64[us]"),
        }
    )


def test_flag_codes_match_the_schema() -> None:
    assert tuple(FLAG_LABELS) == WEEK_FLAGS


def test_each_rule_on_hand_counted_cases() -> None:
    patients = _patients("A", "B", "C")
    frames = {
        # A logged 6 of 7 days (1 missed: below the threshold of 2); B 4 of 7 (3 missed).
        "adherence_summary": _routine([("A", 7, 6, 6 / 7), ("B", 7, 4, 4 / 7), ("C", 7, 0, 0.0)]),
        # C's last session was 9 days before the week's Sunday: dropout risk (>= 7).
        "sessions": _sessions(
            {"A": WEEK.end, "B": WEEK.end - pd.Timedelta(days=6), "C": DAY - pd.Timedelta(days=3)}
        ),
        # A: week means 4 then 6.5 (a rise of 2.5 >= 2) with two flare days;
        # B: 5 then 6 (+1, no flag).
        "pain_daily": _pain_daily(
            {"A": [4] * 7 + [6, 6, 7, 7, 6, 7, 6.5], "B": [5] * 7 + [6] * 7},
            {"A": [9, 10]},
        ),
    }
    flags = week_flags(frames, patients, WEEK, ReportPolicy())
    got = {(r.patient_id, r.flag): r.detail for r in flags.itertuples()}
    assert got == {
        ("A", "flare"): "flare on 2 day(s) this week",
        ("A", "pain_rise"): "back pain up 2.5 points on last week",
        ("B", "missed_days"): "no session logged on 3 of 7 days",
        ("C", "missed_days"): "no session logged on 7 of 7 days",
        ("C", "dropout_risk"): "no session logged for 9 days",
    }
    assert set(flags["severity"]) == {"warn"}
    # Stricter thresholds flag more, looser ones fewer.
    strict = week_flags(frames, patients, WEEK, ReportPolicy(missed_days=1, pain_rise_points=1))
    raised = set(zip(strict["patient_id"], strict["flag"], strict=True))
    assert {("A", "missed_days"), ("B", "pain_rise")} <= raised


def test_attention_order_review_first_then_more_warnings() -> None:
    patients = _patients("P1", "P2", "P3", "P4")
    verdict = pd.DataFrame(
        {
            "patient_id": pd.Series(["P1", "P2", "P3"], dtype="str"),
            "week": "2026-W15",
            "verdict": ["progressing", "review", "review"],
            "reason": pd.Series(["r1", "r2", "r3"], dtype="str"),
        }
    )
    flags = pd.DataFrame(
        {
            "patient_id": pd.Series(["P3", "P3", "P1"], dtype="str"),
            "flag": pd.Series(["flare", "missed_days", "ready_to_progress"], dtype="str"),
            "detail": pd.Series(["x", "y", "z"], dtype="str"),
            "severity": pd.Series(["warn", "warn", "good"], dtype="str"),
        }
    )
    table = attention_table({"weekly_verdict": verdict}, patients, flags, WEEK)
    # review with 2 warnings, review with none, no verdict (insufficient data), progressing.
    assert table["patient_id"].tolist() == ["P3", "P2", "P4", "P1"]
    assert table["n_warn"].tolist() == [2, 0, 0, 0]
    assert table.loc[2, "verdict"] == "insufficient_data"


def test_a_flag_outside_the_schema_is_refused() -> None:
    bad = pd.DataFrame(
        {
            "patient_id": pd.Series(["P1"], dtype="str"),
            "flag": pd.Series(["made_up"], dtype="str"),
            "detail": pd.Series(["x"], dtype="str"),
            "severity": pd.Series(["warn"], dtype="str"),
        }
    )
    with pytest.raises(SchemaValidationError, match="WeekFlags"):
        validate(bad, WeekFlags)
