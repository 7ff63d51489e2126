"""Output schemas of the strength-progression metrics (``backcare_analytics.metrics.progression``);
definitions in docs/metrics.md. Capacity is kept per exercise: bridge and press-up as seconds under
tension (reps x hold x sets), the press-up per variant (prone and standing are different loads),
the mini push-up as its ladder level and the reps at that level, never converted between levels.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

__all__ = ["CapacityDaily", "CapacityWeekly", "ProgressionEvents", "ProgressionFlags"]

EVENTS = ("level_up", "level_down", "reps_up", "reps_down", "hold_up", "hold_down")


class _Result(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = False


class CapacityDaily(_Result):
    """One row per patient x strength exercise x variant x local day with a session: the day's
    best session."""

    patient_id: Series[str]
    exercise_id: Series[str]
    variant: Series[str] = pa.Field(nullable=True)
    day: Series[pa.DateTime]
    sessions: Series[int] = pa.Field(ge=1)
    level: Series[str] = pa.Field(nullable=True)
    level_rank: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0)
    reps: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0)
    hold_s: Series[float] = pa.Field(nullable=True, ge=0)
    capacity_s: Series[float] = pa.Field(nullable=True, ge=0)


class CapacityWeekly(_Result):
    """One row per patient x strength exercise x variant x ISO week with a session."""

    patient_id: Series[str]
    exercise_id: Series[str]
    variant: Series[str] = pa.Field(nullable=True)
    week: Series[str] = pa.Field(str_matches=r"^\d{4}-W\d{2}$")
    week_start: Series[pa.DateTime]
    days: Series[int] = pa.Field(ge=1, le=7)
    level: Series[str] = pa.Field(nullable=True)
    level_rank: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0)
    reps: Series[float] = pa.Field(nullable=True, ge=0)
    hold_s: Series[float] = pa.Field(nullable=True, ge=0)
    capacity_s: Series[float] = pa.Field(nullable=True, ge=0)


class ProgressionEvents(_Result):
    """One row per change of level, reps or hold between consecutive logged days."""

    patient_id: Series[str]
    exercise_id: Series[str]
    variant: Series[str] = pa.Field(nullable=True)
    day: Series[pa.DateTime]
    previous_day: Series[pa.DateTime]
    event: Series[str] = pa.Field(isin=EVENTS)
    before: Series[float]
    after: Series[float]
    level_before: Series[str] = pa.Field(nullable=True)
    level_after: Series[str] = pa.Field(nullable=True)


class ProgressionFlags(_Result):
    """One row per patient x strength exercise, as of the end of the window."""

    patient_id: Series[str]
    exercise_id: Series[str]
    as_of: Series[pa.DateTime]
    days_met: Series[int] = pa.Field(ge=0)
    sessions: Series[int] = pa.Field(ge=0)
    sessions_over_pain: Series[int] = pa.Field(ge=0)
    flare_in_window: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    ready_to_progress: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    regression_sessions: Series[int] = pa.Field(ge=0)
    consider_regression: Series[bool]
