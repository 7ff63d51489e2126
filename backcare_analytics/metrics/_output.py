"""Output helpers of the pain, tolerance, progression and verdict metrics (private).

``text_from_codes``: turning millions of codes into pandas ``str`` values through Python objects
costs about a second per 3 M rows; an Arrow ``take`` on the few distinct names a tenth of that.
``checked`` (from ``_grid``): validate an output frame against its schema without pandera's
defensive copy.

>>> import numpy as np
>>> text_from_codes(np.array([1, -1, 0]), ["green", "amber"]).tolist()
['amber', nan, 'green']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from backcare_analytics.metrics._grid import checked

__all__ = ["checked", "text_from_codes"]


def text_from_codes(codes: np.ndarray, names: Sequence[str | None]) -> pd.Series:
    """``names[code]`` for each code as a pandas ``str`` Series; code -1 (or a missing name)
    gives a missing value."""
    codes = np.asarray(codes)
    table = pa.array([None if n is None else str(n) for n in names], type=pa.string())
    idx = pa.array(np.maximum(codes, 0).astype(np.int64), mask=codes < 0)
    if len(table) == 0:
        return pd.Series([None] * codes.size, dtype="str")
    return pd.Series(pd.arrays.ArrowStringArray(table.take(idx)), dtype="str")
