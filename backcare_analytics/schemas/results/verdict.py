"""Output schema of the weekly verdict (``backcare_analytics.metrics.verdict``); definitions in
docs/metrics.md. Each row judges a patient's programme from its first week through ``week``.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from backcare_analytics.vocabulary import VERDICTS

__all__ = ["VERDICTS", "WeeklyVerdict"]


class _Result(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = False


class WeeklyVerdict(_Result):
    """One row per patient x ISO week, judged on that week and every week before it."""

    patient_id: Series[str]
    week: Series[str] = pa.Field(str_matches=r"^\d{4}-W\d{2}$")
    week_start: Series[pa.DateTime]
    weeks: Series[int] = pa.Field(ge=1)
    pain_weeks: Series[int] = pa.Field(ge=0)
    capacity_weeks: Series[int] = pa.Field(ge=0)
    both_weeks: Series[int] = pa.Field(ge=0)
    pain_mean: Series[float] = pa.Field(nullable=True, ge=0, le=10)
    capacity_index: Series[float] = pa.Field(nullable=True, ge=0)
    pain_slope_per_week: Series[float] = pa.Field(nullable=True)
    pain_p: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    capacity_slope_per_week: Series[float] = pa.Field(nullable=True)
    capacity_p: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    push_up_p: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    push_up_s: Series[float] = pa.Field(nullable=True)
    push_up_level_steps: Series[float] = pa.Field(nullable=True)
    kendall_tau: Series[float] = pa.Field(nullable=True, ge=-1, le=1)
    verdict: Series[str] = pa.Field(isin=VERDICTS)
    reason: Series[str]

    class Config:
        unique = ["patient_id", "week"]
