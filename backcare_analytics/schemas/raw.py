"""Raw (lenient) tables, as exported: every cell is text, blanks are empty strings.

Only ``backcare_analytics.io`` sees raw frames. A raw schema checks the shape of an export
(the required columns are present, every cell is text) and nothing about values: values are
parsed cell by cell in ``io.normalize`` so that one unparseable cell never hides another row's
out-of-range value. Extra columns are allowed and ignored on import.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

__all__ = [
    "PAIN_COLUMNS",
    "PATIENT_COLUMNS",
    "SESSION_COLUMNS",
    "RawPain",
    "RawPatients",
    "RawSessions",
    "required_columns",
]


class _Raw(pa.DataFrameModel):
    class Config:
        strict = False  # extra columns are reported as warnings by the reader, not rejected
        coerce = False


class RawSessions(_Raw):
    """A session log as exported (``docs/export-format.md``, "Session log")."""

    patient_id: Series[str]
    performed_at: Series[str]
    exercise: Series[str]
    session_id: Series[str] | None
    side: Series[str] | None
    sets: Series[str] | None
    reps: Series[str] | None
    hold_s: Series[str] | None
    level: Series[str] | None
    variant: Series[str] | None
    pain_before: Series[str] | None
    pain_after: Series[str] | None
    note: Series[str] | None


class RawPain(_Raw):
    """A pain diary as exported (``docs/export-format.md``, "Pain diary")."""

    patient_id: Series[str]
    recorded_at: Series[str]
    back_pain: Series[str]
    leg_pain: Series[str] | None
    flare: Series[str] | None
    note: Series[str] | None


class RawPatients(_Raw):
    """A patients file as exported (``docs/export-format.md``, "Patients")."""

    patient_id: Series[str]
    timezone: Series[str]
    programme_start: Series[str]
    clinician: Series[str] | None


def _columns(model: type[_Raw]) -> tuple[str, ...]:
    return tuple(model.to_schema().columns)


def required_columns(model: type[_Raw]) -> tuple[str, ...]:
    """The columns an export of this kind must carry."""
    return tuple(name for name, col in model.to_schema().columns.items() if col.required)


SESSION_COLUMNS = _columns(RawSessions)
PAIN_COLUMNS = _columns(RawPain)
PATIENT_COLUMNS = _columns(RawPatients)
