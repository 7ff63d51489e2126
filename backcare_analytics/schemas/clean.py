"""Clean (canonical, strict, typed) tables: what the store holds and every metric takes.

The classes are the one source of truth for column names: write ``df[Sessions.hold_s]``.
Checks that depend on the programme (exercise ids, ladder levels, variants, sides) are added by
:func:`backcare_analytics.schemas.sessions_schema` from a :class:`~backcare_analytics.protocol.Protocol`.

Conventions: times are ``datetime64[us, UTC]``; ``day`` is the patient's local calendar day as a
naive ``datetime64`` at midnight; integers that may be missing are nullable ``Int64``; NRS pain is
an integer 0-10.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

__all__ = [
    "PATIENT_ID_PATTERN",
    "SIDES",
    "Pain",
    "Patients",
    "Prescriptions",
    "Sessions",
    "UtcTimestamp",
]

PATIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SIDES = ("both", "left", "right", "none")
NOTE_MAX_CHARS = 4_000

UtcTimestamp = Annotated[pd.DatetimeTZDtype, "us", "UTC"]


def _patient_ids_ok(ids: pd.Series) -> pd.Series:
    """Check the id pattern once per distinct id, not once per row (a year of logs repeats
    each id thousands of times)."""
    distinct = ids.drop_duplicates()
    good = distinct[distinct.str.fullmatch(PATIENT_ID_PATTERN, na=False)]
    return ids.isin(good)


def _is_midnight(days: pd.Series) -> pd.Series:
    return days.isna() | (days == days.dt.normalize())


class _Base(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False
        ordered = False


class Sessions(_Base):
    """One row per exercise performed in a session."""

    patient_id: Series[str]
    session_id: Series[str] = pa.Field(nullable=True, str_length={"max_value": 128})
    performed_at: Series[UtcTimestamp]
    day: Series[pa.DateTime]
    exercise_id: Series[str]
    side: Series[str] = pa.Field(isin=SIDES)
    sets: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=1, le=20)
    reps: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=500)
    hold_s: Series[pd.Float64Dtype] = pa.Field(nullable=True, ge=0, le=600)
    level: Series[str] = pa.Field(nullable=True)
    variant: Series[str] = pa.Field(nullable=True)
    pain_before: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=10)
    pain_after: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=10)
    note: Series[str] = pa.Field(nullable=True, str_length={"max_value": NOTE_MAX_CHARS})
    source_file: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{64}$")

    class Config:
        unique = ["patient_id", "performed_at", "exercise_id", "side"]

    @pa.check("patient_id", name="patient_id_format")
    def _patient_id(cls, ids: Series[str]) -> Series[bool]:
        return _patient_ids_ok(ids)

    @pa.check("day", name="day_is_a_calendar_day")
    def _day(cls, days: Series[pd.Timestamp]) -> Series[bool]:
        return _is_midnight(days)

    @pa.dataframe_check(name="some_dose_recorded")
    def _dose(cls, df: pd.DataFrame) -> Series[bool]:
        # A row with neither reps nor a hold says nothing was performed.
        return df["reps"].notna() | df["hold_s"].notna()


class Pain(_Base):
    """One row per pain-diary entry. NRS 0 (no pain) to 10 (worst imaginable)."""

    patient_id: Series[str]
    recorded_at: Series[UtcTimestamp]
    day: Series[pa.DateTime]
    back_pain: Series[pd.Int64Dtype] = pa.Field(ge=0, le=10)
    leg_pain: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=10)
    flare: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    note: Series[str] = pa.Field(nullable=True, str_length={"max_value": NOTE_MAX_CHARS})
    source_file: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{64}$")

    class Config:
        unique = ["patient_id", "recorded_at"]

    @pa.check("patient_id", name="patient_id_format")
    def _patient_id(cls, ids: Series[str]) -> Series[bool]:
        return _patient_ids_ok(ids)

    @pa.check("day", name="day_is_a_calendar_day")
    def _day(cls, days: Series[pd.Timestamp]) -> Series[bool]:
        return _is_midnight(days)


def _known_timezone(zones: pd.Series) -> pd.Series:
    from zoneinfo import available_timezones

    return zones.isin(available_timezones())


class Patients(_Base):
    """One row per patient. No names, no birth dates: the id is the only link to a person."""

    patient_id: Series[str] = pa.Field(unique=True)
    timezone: Series[str]
    programme_start: Series[pa.DateTime]
    clinician: Series[str] = pa.Field(nullable=True, str_length={"max_value": 128})

    @pa.check("patient_id", name="patient_id_format")
    def _patient_id(cls, ids: Series[str]) -> Series[bool]:
        return _patient_ids_ok(ids)

    @pa.check("timezone", name="iana_timezone")
    def _tz(cls, zones: Series[str]) -> Series[bool]:
        return _known_timezone(zones)

    @pa.check("programme_start", name="day_is_a_calendar_day")
    def _day(cls, days: Series[pd.Timestamp]) -> Series[bool]:
        return _is_midnight(days)


class Prescriptions(_Base):
    """Per patient and exercise, the dose in force from ``valid_from`` until ``valid_to``
    (exclusive; missing for the current prescription)."""

    patient_id: Series[str]
    exercise_id: Series[str]
    valid_from: Series[pa.DateTime]
    valid_to: Series[pa.DateTime] = pa.Field(nullable=True)
    sets: Series[pd.Int64Dtype] = pa.Field(ge=1, le=10)
    reps: Series[pd.Int64Dtype] = pa.Field(ge=1, le=100)
    reps_max: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=1, le=100)
    hold_s: Series[pd.Float64Dtype] = pa.Field(nullable=True, gt=0, le=300)
    per_side: Series[bool]
    level: Series[str] = pa.Field(nullable=True)
    variant: Series[str] = pa.Field(nullable=True)
    source: Series[str] = pa.Field(isin=("protocol", "override"))

    class Config:
        unique = ["patient_id", "exercise_id", "valid_from"]

    @pa.check("patient_id", name="patient_id_format")
    def _patient_id(cls, ids: Series[str]) -> Series[bool]:
        return _patient_ids_ok(ids)

    @pa.dataframe_check(name="valid_to_after_valid_from")
    def _interval(cls, df: pd.DataFrame) -> Series[bool]:
        return df["valid_to"].isna() | (df["valid_to"] > df["valid_from"])
