"""Output schemas of the report's own flags and the clinic's attention order
(``backcare_analytics.reports.flags``); the rules are in docs/reports.md.

``detail`` holds counts, dates and exercise names only, never a patient's values or notes.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from backcare_analytics.vocabulary import FLAG_SEVERITIES, VERDICTS, WEEK_FLAGS

__all__ = ["FLAG_SEVERITIES", "WEEK_FLAGS", "AttentionTable", "WeekFlags"]


class WeekFlags(pa.DataFrameModel):
    """One row per patient and flag raised in the week."""

    patient_id: Series[str]
    flag: Series[str] = pa.Field(isin=WEEK_FLAGS)
    detail: Series[str]
    severity: Series[str] = pa.Field(isin=FLAG_SEVERITIES)

    class Config:
        strict = True
        coerce = False
        ordered = False
        unique = ["patient_id", "flag"]


class AttentionTable(pa.DataFrameModel):
    """One row per patient of the week, in the order the clinic overview lists them."""

    patient_id: Series[str] = pa.Field(unique=True)
    clinician: Series[str] = pa.Field(nullable=True)
    verdict: Series[str] = pa.Field(isin=VERDICTS)
    reason: Series[str]
    flags: Series[object]
    n_warn: Series[int] = pa.Field(ge=0)
    pdc_week: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    back_pain_week: Series[float] = pa.Field(nullable=True, ge=0, le=10)
    priority: Series[int] = pa.Field(ge=0)

    class Config:
        strict = True
        coerce = False
        ordered = False
