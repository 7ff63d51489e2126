"""pandera schemas: raw (as exported), clean (canonical tables) and results (metric outputs).

Validation here fails closed: if pandera's data checks are switched off by its environment
variables (``PANDERA_VALIDATION_ENABLED=False`` or ``PANDERA_VALIDATION_DEPTH=SCHEMA_ONLY``), every
validating function raises :class:`~backcare_analytics.errors.ValidationDisabledError` instead of
passing unchecked data on.
"""

from __future__ import annotations

import os

import pandas as pd
import pandera.pandas as pa
from pandera.config import ValidationDepth, get_config_context
from pandera.errors import SchemaErrors

from backcare_analytics.errors import SchemaValidationError, ValidationDisabledError
from backcare_analytics.protocol import Protocol, load_protocol
from backcare_analytics.schemas.clean import (
    PATIENT_ID_PATTERN,
    SIDES,
    Pain,
    Patients,
    Prescriptions,
    Sessions,
)
from backcare_analytics.schemas.raw import RawPain, RawPatients, RawSessions, required_columns

__all__ = [
    "PATIENT_ID_PATTERN",
    "SIDES",
    "Pain",
    "Patients",
    "Prescriptions",
    "RawPain",
    "RawPatients",
    "RawSessions",
    "Sessions",
    "ensure_validation_enabled",
    "failure_table",
    "find_failures",
    "required_columns",
    "sessions_schema",
    "validate",
]

#: The ``column`` of a failure found by a check across the whole row.
ROW_CHECK = "(row)"

#: Sides allowed for each sidedness of the protocol.
ALLOWED_SIDES = {
    "none": ("none",),
    "single_or_both": ("both", "left", "right"),
    "per_side": ("both", "left", "right"),
    "alternating": ("both", "none"),
}


def ensure_validation_enabled() -> None:
    """Refuse to go on when pandera's data-level checks are switched off.

    >>> ensure_validation_enabled()  # silent when checks are on
    """
    cfg = get_config_context()
    env_enabled = os.environ.get("PANDERA_VALIDATION_ENABLED", "True").lower()
    env_depth = os.environ.get("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA").upper()
    depth = cfg.validation_depth
    if (
        not cfg.validation_enabled
        or env_enabled not in ("true", "1", "yes")
        or depth == ValidationDepth.SCHEMA_ONLY
        or env_depth == "SCHEMA_ONLY"
    ):
        raise ValidationDisabledError(
            "pandera's data checks are switched off in this environment "
            "(PANDERA_VALIDATION_ENABLED / PANDERA_VALIDATION_DEPTH), so patient data cannot be "
            "checked. Fix: unset both variables, or set PANDERA_VALIDATION_ENABLED=True and "
            "PANDERA_VALIDATION_DEPTH=SCHEMA_AND_DATA."
        )


def _pairs(exercise: pd.Series, value: pd.Series) -> pd.Series:
    return exercise.astype("str") + "\x1f" + value.astype("str")


def sessions_schema(protocol: Protocol | None = None) -> pa.DataFrameSchema:
    """The :class:`Sessions` schema plus the checks the programme defines: exercise ids,
    sides for each exercise's sidedness, and levels and variants of each exercise."""
    protocol = protocol or load_protocol()
    ids = list(protocol.exercise_ids)
    level_pairs = {f"{ex.id}\x1f{lv}" for ex in protocol.exercises for lv in ex.ladder}
    variant_pairs = {f"{ex.id}\x1f{v}" for ex in protocol.exercises for v in ex.variants}
    side_pairs = {
        f"{ex.id}\x1f{side}" for ex in protocol.exercises for side in ALLOWED_SIDES[ex.sidedness]
    }
    schema = Sessions.to_schema()
    schema = schema.update_column(
        Sessions.exercise_id, checks=[pa.Check(lambda s: s.isin(ids), name="exercise_in_protocol")]
    )

    def level_ok(df: pd.DataFrame) -> pd.Series:
        return df[Sessions.level].isna() | _pairs(
            df[Sessions.exercise_id], df[Sessions.level]
        ).isin(level_pairs)

    def variant_ok(df: pd.DataFrame) -> pd.Series:
        return df[Sessions.variant].isna() | _pairs(
            df[Sessions.exercise_id], df[Sessions.variant]
        ).isin(variant_pairs)

    def side_ok(df: pd.DataFrame) -> pd.Series:
        return _pairs(df[Sessions.exercise_id], df[Sessions.side]).isin(side_pairs)

    schema.checks = [
        *schema.checks,
        pa.Check(level_ok, name="level_of_exercise"),
        pa.Check(variant_ok, name="variant_of_exercise"),
        pa.Check(side_ok, name="side_of_exercise"),
    ]
    return schema


def _schema_for(model: type[pa.DataFrameModel] | pa.DataFrameSchema, protocol: Protocol | None):
    if model is Sessions:
        return sessions_schema(protocol)
    if isinstance(model, pa.DataFrameSchema):
        return model
    return model.to_schema()


def failure_table(exc: SchemaErrors) -> pd.DataFrame:
    """pandera's failure cases as one tidy frame: ``row, column, check, failure_case``.

    ``row`` is the frame's index label (missing for whole-column failures such as a missing
    column or a wrong dtype). A row-wide check yields one entry per row, not one per column.
    """
    fc = exc.failure_cases
    wide = (fc["schema_context"] == "DataFrameSchema").to_numpy()
    out = pd.DataFrame(
        {
            "row": fc["index"],
            "column": fc["column"].astype("str").where(~wide, ROW_CHECK),
            "check": fc["check"].astype("str"),
            "failure_case": fc["failure_case"].astype("str"),
        }
    )
    # A row-wide check reports each column of each failing row: keep one entry per row.
    out.loc[wide & fc["index"].notna().to_numpy(), "failure_case"] = pd.NA
    return out.drop_duplicates(["row", "column", "check"]).reset_index(drop=True)


def find_failures(
    df: pd.DataFrame,
    model: type[pa.DataFrameModel] | pa.DataFrameSchema,
    *,
    protocol: Protocol | None = None,
    inplace: bool = False,
) -> pd.DataFrame:
    """Validate lazily and return the tidy failure table (empty when ``df`` is valid).

    Nothing is dropped or changed: the caller decides what to do with failing rows.
    ``inplace=True`` skips pandera's defensive copy (seconds for a table of millions of rows);
    our schemas never coerce, so the frame is not changed either way.
    """
    ensure_validation_enabled()
    try:
        _schema_for(model, protocol).validate(df, lazy=True, inplace=inplace)
    except SchemaErrors as exc:
        return failure_table(exc)
    return pd.DataFrame(
        {"row": pd.Series(dtype="object"), "column": pd.Series(dtype="str"),
         "check": pd.Series(dtype="str"), "failure_case": pd.Series(dtype="str")}
    )  # fmt: skip


def validate(
    df: pd.DataFrame,
    model: type[pa.DataFrameModel] | pa.DataFrameSchema,
    *,
    protocol: Protocol | None = None,
    what: str = "frame",
    inplace: bool = False,
) -> pd.DataFrame:
    """Validate ``df`` against a clean or results schema, lazily, and return it unchanged.

    Raises
    ------
    SchemaValidationError
        Listing up to ten failures by row, column and check (never the values); the whole tidy
        table is on ``.failures``.
    """
    failures = find_failures(df, model, protocol=protocol, inplace=inplace)
    if failures.empty:
        return df
    name = getattr(model, "__name__", None) or getattr(model, "name", None) or "schema"
    head = failures.head(10)
    lines = [
        f"  - row {r}: column {c}: check {k}"
        for r, c, k in zip(head["row"], head["column"], head["check"], strict=True)
    ]
    more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
    raise SchemaValidationError(
        f"{what} does not match the {name} schema ({len(failures)} failure(s)):\n"
        + "\n".join(lines)
        + more,
        failures=failures,
    )
