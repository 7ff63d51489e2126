"""Output schemas of the adherence and timing metrics (``backcare_analytics.metrics.adherence``
and ``backcare_analytics.metrics.timing``); definitions in docs/metrics.md.

Ratios are plain ``float64`` (never rounded); a ratio that does not apply (no hold prescribed,
no diary day observed) is missing. The full routine appears as the pseudo exercise
``ROUTINE`` (``"_routine"``, from ``backcare_analytics.vocabulary``), which no protocol exercise
id can take (ids start with a letter).
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from backcare_analytics.vocabulary import ROUTINE

__all__ = [
    "ROUTINE",
    "AdherenceDaily",
    "AdherenceRolling",
    "AdherenceStreaks",
    "AdherenceSummary",
    "FirstSessionTimes",
    "GapHistogram",
    "Persistence",
    "TimingConsistency",
]


class _Result(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = False


class AdherenceDaily(_Result):
    """One row per patient x exercise x patient-local day with a prescription in force."""

    patient_id: Series[str]
    exercise_id: Series[str]
    day: Series[pa.DateTime]
    logged: Series[bool]
    done: Series[bool]
    volume_performed: Series[float] = pa.Field(ge=0)
    volume_prescribed: Series[float] = pa.Field(gt=0)
    hold_mean_s: Series[float] = pa.Field(nullable=True, ge=0)
    hold_prescribed_s: Series[float] = pa.Field(nullable=True, gt=0)
    volume_ratio: Series[float] = pa.Field(ge=0)
    hold_ratio: Series[float] = pa.Field(nullable=True, ge=0)
    dose_ratio_raw: Series[float] = pa.Field(ge=0)
    dose_ratio: Series[float] = pa.Field(ge=0, le=1)
    met: Series[bool]
    volume_met: Series[bool]
    hold_met: Series[pd.BooleanDtype] = pa.Field(nullable=True)


class AdherenceSummary(_Result):
    """One row per patient x exercise (or ``ROUTINE``) x period (a window or an ISO week)."""

    patient_id: Series[str]
    exercise_id: Series[str]
    period: Series[str]
    period_start: Series[pa.DateTime]
    period_end: Series[pa.DateTime]
    days: Series[int] = pa.Field(ge=1)
    days_logged: Series[int] = pa.Field(ge=0)
    days_diary: Series[int] = pa.Field(ge=0)
    days_observed: Series[int] = pa.Field(ge=0)
    days_done: Series[int] = pa.Field(ge=0)
    days_met: Series[int] = pa.Field(ge=0)
    days_volume_met: Series[int] = pa.Field(ge=0)
    days_hold: Series[int] = pa.Field(ge=0)
    days_hold_met: Series[int] = pa.Field(ge=0)
    pdc: Series[float] = pa.Field(ge=0, le=1)
    pdc_observed: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    frequency_share: Series[float] = pa.Field(ge=0, le=1)
    volume_share: Series[float] = pa.Field(ge=0, le=1)
    hold_share: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    diary_completeness: Series[float] = pa.Field(ge=0, le=1)
    mean_dose_ratio: Series[float] = pa.Field(ge=0, le=1)
    mean_dose_ratio_raw: Series[float] = pa.Field(ge=0)


class AdherenceRolling(_Result):
    """One row per patient x exercise (or ``ROUTINE``) x day: trailing 7- and 28-day PDC."""

    patient_id: Series[str]
    exercise_id: Series[str]
    day: Series[pa.DateTime]
    days_7d: Series[int] = pa.Field(ge=1, le=7)
    days_met_7d: Series[int] = pa.Field(ge=0, le=7)
    pdc_7d: Series[float] = pa.Field(ge=0, le=1)
    days_28d: Series[int] = pa.Field(ge=1, le=28)
    days_met_28d: Series[int] = pa.Field(ge=0, le=28)
    pdc_28d: Series[float] = pa.Field(ge=0, le=1)


class AdherenceStreaks(_Result):
    """One row per patient x exercise (or ``ROUTINE``): runs of met and missed days."""

    patient_id: Series[str]
    exercise_id: Series[str]
    first_day: Series[pa.DateTime]
    last_day: Series[pa.DateTime]
    days: Series[int] = pa.Field(ge=1)
    days_met: Series[int] = pa.Field(ge=0)
    days_missed: Series[int] = pa.Field(ge=0)
    current_streak_days: Series[int] = pa.Field(ge=0)
    longest_streak_days: Series[int] = pa.Field(ge=0)
    longest_missed_run_days: Series[int] = pa.Field(ge=0)


class Persistence(_Result):
    """One row per patient: persistence until the first long gap in logging, and dropout."""

    patient_id: Series[str]
    programme_start: Series[pa.DateTime]
    as_of: Series[pa.DateTime]
    days_in_programme: Series[int] = pa.Field(ge=0)
    days_logged: Series[int] = pa.Field(ge=0)
    first_log_day: Series[pa.DateTime] = pa.Field(nullable=True)
    last_log_day: Series[pa.DateTime] = pa.Field(nullable=True)
    longest_gap_days: Series[int] = pa.Field(ge=0)
    persistence_days: Series[int] = pa.Field(ge=0)
    persistent: Series[bool]
    days_since_last_log: Series[int] = pa.Field(ge=0)
    dropout: Series[bool]


class GapHistogram(_Result):
    """Tidy histogram of gaps in logging: how many gaps of each length each patient had."""

    patient_id: Series[str]
    gap_days: Series[int] = pa.Field(ge=1)
    count: Series[int] = pa.Field(ge=1)


class FirstSessionTimes(_Result):
    """One row per patient x local day with a session: when the first one started, locally."""

    patient_id: Series[str]
    day: Series[pa.DateTime]
    first_start_local_h: Series[float] = pa.Field(ge=0, lt=24)
    minutes_from_median: Series[float] = pa.Field(ge=0, le=720)
    within_window: Series[bool]


class TimingConsistency(_Result):
    """One row per patient with a session: circular statistics of the daily start time."""

    patient_id: Series[str]
    days: Series[int] = pa.Field(ge=1)
    circular_mean_h: Series[float] = pa.Field(nullable=True, ge=0, lt=24)
    circular_median_h: Series[float] = pa.Field(ge=0, lt=24)
    resultant_length: Series[float] = pa.Field(ge=0, le=1)
    circular_sd_h: Series[float] = pa.Field(ge=0)
    share_within_window: Series[float] = pa.Field(ge=0, le=1)
