"""Output schema of the tolerance metric (``backcare_analytics.metrics.tolerance``);
definitions in docs/metrics.md. Session pain (``pain_before``/``pain_after``) is back pain on
the NRS; the next-morning values come from the pain diary.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from backcare_analytics.schemas.clean import UtcTimestamp

__all__ = ["LIGHTS", "LIGHT_DTYPE", "REFERENCE_SOURCES", "SOURCE_DTYPE", "SessionTolerance"]

#: Traffic lights on pain after the exercise, mildest first.
LIGHTS = ("green", "amber", "red")
#: Where the back-pain reference of a session row comes from.
REFERENCE_SOURCES = ("session", "diary")
# Categoricals: one byte per row instead of a string (the table has a row per session row,
# ~14 M at cohort scale); the fixed categories are the allowed values.
LIGHT_DTYPE = pd.CategoricalDtype(list(LIGHTS), ordered=True)
SOURCE_DTYPE = pd.CategoricalDtype(list(REFERENCE_SOURCES))


class _Result(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = False


class SessionTolerance(_Result):
    """One row per session row (patient x performed_at x exercise x side).

    Ranges are one ``in_range`` check each (not ``ge`` and ``le``): half the passes over ~14 M
    rows at cohort scale.
    """

    patient_id: Series[str]
    session_id: Series[str] = pa.Field(nullable=True)
    performed_at: Series[UtcTimestamp]
    day: Series[pa.DateTime]
    exercise_id: Series[str]
    side: Series[str]
    pain_before: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 10}
    )
    pain_after: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 10}
    )
    pain_delta: Series[pd.Int64Dtype] = pa.Field(
        nullable=True, in_range={"min_value": -10, "max_value": 10}
    )
    light: Series[pd.CategoricalDtype] = pa.Field(
        nullable=True, dtype_kwargs={"categories": list(LIGHTS), "ordered": True}
    )
    worse_in_session: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    back_reference: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 10}
    )
    back_reference_source: Series[pd.CategoricalDtype] = pa.Field(
        nullable=True, dtype_kwargs={"categories": list(REFERENCE_SOURCES), "ordered": False}
    )
    next_morning_back: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 10}
    )
    next_morning_back_worse: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    leg_reference: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 10}
    )
    next_morning_leg: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 10}
    )
    next_morning_leg_worse: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    leg_symptoms_expected: Series[bool]
    tolerated: Series[pd.BooleanDtype] = pa.Field(nullable=True)
