"""Output helpers of the pain, tolerance, progression and verdict metrics (private).

``text_from_codes``: turning millions of codes into pandas ``str`` values through Python objects
costs about a second per 3 M rows; an Arrow ``take`` on the few distinct names a tenth of that.
``checked``: validate an output frame against its schema without pandera's defensive copy.

>>> import numpy as np
>>> text_from_codes(np.array([1, -1, 0]), ["green", "amber"]).tolist()
['amber', nan, 'green']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa_
import pyarrow as pa
from pandera.errors import SchemaErrors

from backcare_analytics.errors import SchemaValidationError
from backcare_analytics.schemas import ensure_validation_enabled, failure_table

__all__ = ["checked", "text_from_codes"]


def checked(df: pd.DataFrame, model: type[pa_.DataFrameModel], what: str) -> pd.DataFrame:
    """Validate ``df`` lazily against ``model`` in place (the result schemas never coerce, so
    nothing changes) and return it; raise :class:`SchemaValidationError` naming rows, columns
    and checks, never values, as :func:`backcare_analytics.schemas.validate` does."""
    ensure_validation_enabled()
    try:
        model.validate(df, lazy=True, inplace=True)
    except SchemaErrors as exc:
        failures = failure_table(exc)
        head = failures.head(10)
        lines = [
            f"  - row {r}: column {c}: check {k}"
            for r, c, k in zip(head["row"], head["column"], head["check"], strict=True)
        ]
        raise SchemaValidationError(
            f"{what} does not match the {model.__name__} schema ({len(failures)} failure(s)):\n"
            + "\n".join(lines),
            failures=failures,
        ) from None
    return df


def text_from_codes(codes: np.ndarray, names: Sequence[str | None]) -> pd.Series:
    """``names[code]`` for each code as a pandas ``str`` Series; code -1 (or a missing name)
    gives a missing value."""
    codes = np.asarray(codes)
    table = pa.array([None if n is None else str(n) for n in names], type=pa.string())
    idx = pa.array(np.maximum(codes, 0).astype(np.int64), mask=codes < 0)
    if len(table) == 0:
        return pd.Series([None] * codes.size, dtype="str")
    return pd.Series(pd.arrays.ArrowStringArray(table.take(idx)), dtype="str")
