"""Output schemas of the pain metrics (``backcare_analytics.metrics.pain``); definitions in
docs/metrics.md. Pain is on the NRS (0 no pain - 10 worst imaginable); values are daily means,
so they are real numbers. Back and leg pain are rows of their own (``measure``).
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

__all__ = ["MEASURES", "PainDaily", "PainSummary"]

#: The diary measures, each analysed on its own.
MEASURES = ("back_pain", "leg_pain")
CRITERIA = ("points", "percent", "both", "none")
BANDS = ("none", "minimal", "moderate", "substantial")


class _Result(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = False


class PainDaily(_Result):
    """One row per patient x measure x patient-local day with at least one diary value."""

    patient_id: Series[str]
    measure: Series[str] = pa.Field(isin=MEASURES)
    day: Series[pa.DateTime]
    day_index: Series[int]
    pain: Series[float] = pa.Field(ge=0, le=10)
    entries: Series[int] = pa.Field(ge=1)
    trailing_mean: Series[float] = pa.Field(nullable=True, ge=0, le=10)
    trailing_days: Series[int] = pa.Field(ge=0)
    flare_day: Series[bool]
    flare_episode: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=1)
    # (patient_id, measure, day) is unique by construction; not re-checked here because the
    # multi-column uniqueness check dominates validation time on millions of rows.


class PainSummary(_Result):
    """One row per patient x measure."""

    patient_id: Series[str]
    measure: Series[str] = pa.Field(isin=MEASURES)
    programme_start: Series[pa.DateTime] = pa.Field(nullable=True)
    first_day: Series[pa.DateTime] = pa.Field(nullable=True)
    last_day: Series[pa.DateTime] = pa.Field(nullable=True)
    n_days: Series[int] = pa.Field(ge=0)
    baseline_pain: Series[float] = pa.Field(nullable=True, ge=0, le=10)
    baseline_days: Series[int] = pa.Field(ge=0)
    current_pain: Series[float] = pa.Field(nullable=True, ge=0, le=10)
    current_days: Series[int] = pa.Field(ge=0)
    change_points: Series[float] = pa.Field(nullable=True, ge=-10, le=10)
    change_pct: Series[float] = pa.Field(nullable=True)
    responder: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    responder_criterion: Series[str] = pa.Field(nullable=True, isin=CRITERIA)
    immpact_band: Series[str] = pa.Field(nullable=True, isin=BANDS)
    trend_days: Series[int] = pa.Field(ge=0)
    mk_s: Series[float] = pa.Field(nullable=True)
    mk_var_s: Series[float] = pa.Field(nullable=True, ge=0)
    mk_z: Series[float] = pa.Field(nullable=True)
    mk_p: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    kendall_tau: Series[float] = pa.Field(nullable=True, ge=-1, le=1)
    slope_per_week: Series[float] = pa.Field(nullable=True)
    slope_ci_low: Series[float] = pa.Field(nullable=True)
    slope_ci_high: Series[float] = pa.Field(nullable=True)
    insufficient_data: Series[bool]
    flare_days: Series[int] = pa.Field(ge=0)
    flare_episodes: Series[int] = pa.Field(ge=0)
    reported_flare_days: Series[int] = pa.Field(ge=0)
    time_to_response_days: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    time_to_recovery_days: Series[pd.Int64Dtype] = pa.Field(nullable=True)

    class Config:
        unique = ["patient_id", "measure"]
