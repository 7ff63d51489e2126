"""Output schema of the data-quality flags (``backcare_analytics.metrics.quality``).

A flag is a caveat that travels with the results: a report prints each as a numbered remark
under its tables. ``detail`` is a plain sentence with counts and dates only, never a patient's
values or notes.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

__all__ = ["QUALITY_FLAGS", "QualityFlags"]

#: Every flag code :func:`~backcare_analytics.metrics.quality.quality_flags` can raise.
QUALITY_FLAGS = (
    "no_data",
    "few_diary_entries",
    "long_diary_gap",
    "quarantined_rows",
    "sessions_after_window",
    "sessions_before_start",
    "no_prescription",
    "unregistered_patient",
)


class QualityFlags(pa.DataFrameModel):
    """One row per patient and flag."""

    patient_id: Series[str]
    flag: Series[str] = pa.Field(isin=QUALITY_FLAGS)
    detail: Series[str]

    class Config:
        strict = True
        coerce = False
        ordered = False
        unique = ["patient_id", "flag"]
