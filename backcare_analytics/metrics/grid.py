"""Array helpers shared by every metric module: day numbers, integer codes, grids, output frames.

Everything here works on integer codes: patients and exercises are turned into codes once per
call (factorising the distinct ids, never looking each row up), local days into integer day
numbers (days since 1970-01-01). Lookups into a (key, day) grid are O(n) arithmetic when each
key's days are contiguous, which is how grids are built here, with a sorted-search fallback.

``text_from_codes``: turning millions of codes into pandas ``str`` values through Python objects
costs about a second per 3 M rows; an Arrow ``take`` on the few distinct names a tenth of that.

>>> text_from_codes(np.array([1, -1, 0]), ["green", "amber"]).tolist()
['amber', nan, 'green']
>>> int(monday(np.array([day_number(pd.Timestamp("2026-03-05"))]))[0]) == day_number(
...     pd.Timestamp("2026-03-02"))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from pandera.pandas import DataFrameModel

from backcare_analytics.schemas import validate
from backcare_analytics.schemas.clean import Patients

#: Day number standing for "no day" (missing dates, open-ended prescriptions).
NO_DAY = np.iinfo(np.int64).min
FAR_DAY = np.iinfo(np.int32).max

#: Floating-point slack for threshold comparisons (8 / 10 >= 0.8 must hold).
EPS = 1e-9


def frame(columns: dict[str, object]) -> pd.DataFrame:
    """A frame over freshly computed arrays, without copying or consolidating them (the
    arrays must not be views of the caller's inputs)."""
    return pd.DataFrame(columns, copy=False)


def checked(df: pd.DataFrame, model: type[DataFrameModel], what: str) -> pd.DataFrame:
    """Validate a metric's output against its schema, lazily and without copying it
    (:func:`backcare_analytics.schemas.validate` with ``inplace=True``: pandera's defensive copy
    of a 12 M-row table costs seconds)."""
    return validate(df, model, what=what, inplace=True)


def days(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Naive day timestamps as int64 day numbers (days since 1970-01-01); NaT -> ``NO_DAY``."""
    arr = np.asarray(values, dtype="datetime64[us]").astype("datetime64[D]")
    return arr.view(np.int64)  # NaT is already int64 min == NO_DAY


def as_days(day_numbers: np.ndarray) -> np.ndarray:
    """Int day numbers back to naive ``datetime64[us]`` midnights (``NO_DAY`` -> NaT)."""
    out = np.asarray(day_numbers, dtype=np.int64).astype("datetime64[D]").astype("datetime64[us]")
    out[np.asarray(day_numbers) == NO_DAY] = np.datetime64("NaT")
    return out


def day_number(ts: pd.Timestamp) -> int:
    """One naive day as a day number."""
    return int(days(np.array([ts.to_datetime64()]))[0])


def monday(day_numbers: np.ndarray) -> np.ndarray:
    """The day number of the Monday starting each day's ISO week."""
    return day_numbers - ((day_numbers + 3) % 7)  # 1970-01-01 was a Thursday


def iso_week_labels(day_numbers: np.ndarray) -> pd.Series:
    """The ISO week (``YYYY-Www``) of each day number as a ``str`` column, formatting each
    distinct day once."""
    uniq, inv = np.unique(day_numbers, return_inverse=True)
    labels = [f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}" for d in as_days(uniq).tolist()]
    return pd.Series(np.asarray(labels, dtype=object)[inv], dtype="str")


def patients_index(patients: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
    """Sorted distinct patient ids and each one's programme start day number."""
    first = patients.drop_duplicates(Patients.patient_id)
    order = np.argsort(first[Patients.patient_id].to_numpy(dtype=object), kind="stable")
    first = first.iloc[order]
    pids = pd.Index(first[Patients.patient_id].astype("str"))
    return pids, days(first[Patients.programme_start])


def map_codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """The position of each value in ``index`` (``-1`` when absent), factorising first so the
    lookup runs once per distinct value."""
    codes, uniques = pd.factorize(values)
    if len(uniques) == 0:
        return np.full(len(codes), -1, dtype=np.int64)
    lookup = index.get_indexer(pd.Index(uniques)).astype(np.int64)
    out = lookup[codes]
    out[codes < 0] = -1
    return out


def factorize_sorted(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes and sorted distinct values of a key column."""
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def take_str(index: pd.Index, codes: np.ndarray) -> pd.Series:
    """A ``str`` column holding ``index[codes]``."""
    arr = pd.array(index, dtype="str")
    return pd.Series(arr.take(codes), dtype="str")


def text_from_codes(codes: np.ndarray, names: Sequence[str | None]) -> pd.Series:
    """``names[code]`` for each code as a pandas ``str`` Series; code -1 (or a missing name)
    gives a missing value."""
    codes = np.asarray(codes)
    table = pa.array([None if n is None else str(n) for n in names], type=pa.string())
    idx = pa.array(np.maximum(codes, 0).astype(np.int64), mask=codes < 0)
    if len(table) == 0:
        return pd.Series([None] * codes.size, dtype="str")
    return pd.Series(pd.arrays.ArrowStringArray(table.take(idx)), dtype="str")


def segment_starts(keys: np.ndarray) -> np.ndarray:
    """Positions where a sorted key array changes value (first row of each run)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def segment_ends(starts: np.ndarray, n: int) -> np.ndarray:
    """Last row of each run, given the runs' first rows and the total length."""
    if len(starts) == 0:
        return starts
    return np.r_[starts[1:], n] - 1


def expand_ranges(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each range ``[first[i], last[i]]`` (empty when ``last < first``) the row ``i``
    repeated once per day and the day numbers, without a Python loop."""
    n = np.clip(last - first + 1, 0, None).astype(np.int64)
    rows = np.repeat(np.arange(len(n)), n)
    starts = np.cumsum(n) - n
    offset = np.arange(n.sum(), dtype=np.int64) - np.repeat(starts, n)
    return rows, first[rows] + offset


class DayGrid:
    """A sorted grid of unique (key, day) rows and O(1)-per-row lookups into it.

    ``key`` and ``day`` must be sorted by key then day, each pair once.
    """

    def __init__(self, key: np.ndarray, day: np.ndarray, n_keys: int) -> None:
        self.key = key
        self.day = day
        self.n_keys = n_keys
        starts = segment_starts(key)
        # One slot more than keys: key -1 (negative indexing) lands on an empty dummy.
        self.count = np.zeros(n_keys + 1, dtype=np.int64)
        self.first = np.zeros(n_keys + 1, dtype=np.int64)
        self.offset = np.zeros(n_keys + 1, dtype=np.int64)
        if len(key):
            counts = np.diff(np.r_[starts, len(key)])
            k = key[starts]
            self.count[k] = counts
            self.first[k] = day[starts]
            self.offset[k] = starts
            last = day[np.r_[starts[1:], len(key)] - 1]
            self.contiguous = bool(np.all(last - day[starts] + 1 == counts))
        else:
            self.contiguous = True
        self._base = self.offset - self.first

    def __len__(self) -> int:
        return len(self.key)

    def locate(self, key: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Row of each (key, day) query in the grid, ``-1`` when absent (key ``-1`` or a day
        outside the key's range). Keys must be ``-1`` or in ``[0, n_keys)``."""
        if not self.contiguous:
            return self._locate_sorted(key, day)
        pos = self._base[key]  # row = offset + (day - first)
        pos += day
        lo = self.offset[key]
        bad = pos < lo
        lo += self.count[key]
        bad |= pos >= lo
        pos[bad] = -1
        return pos

    def _locate_sorted(self, key: np.ndarray, day: np.ndarray) -> np.ndarray:
        """:meth:`locate` by sorted search, for grids whose days are not contiguous."""
        out = np.full(len(key), -1, dtype=np.int64)
        if len(self.key) == 0:
            return out
        known = (key >= 0) & (day != NO_DAY)
        k, d = key[known], day[known]
        base = int(self.day.min())
        gkeys = (self.key << 32) + (self.day - base)
        qkeys = (k << 32) + (d - base)
        order = np.argsort(qkeys, kind="stable")
        found = np.searchsorted(gkeys, qkeys[order])
        found_c = np.minimum(found, len(gkeys) - 1)
        ok = (found < len(gkeys)) & (gkeys[found_c] == qkeys[order])
        pos = np.full(len(k), -1, dtype=np.int64)
        pos[order] = np.where(ok, found, -1)
        out[known] = pos
        return out

    def window_sums(
        self, values: np.ndarray, spans: tuple[int, ...]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each span and grid row: the number of rows, and the sum of ``values`` over the
        rows, of the same key whose day is within the ``span`` days ending on this row's day."""
        n = len(self.key)
        if n == 0:
            return [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=values.dtype))] * len(spans)
        csum = np.empty(n + 1, dtype=values.dtype)
        csum[0] = 0
        np.cumsum(values, out=csum[1:])
        rows = np.arange(n)
        run_start = self.offset[self.key] if self.contiguous else None
        out = []
        for span in spans:
            if run_start is not None:  # contiguous days: the window starts span-1 rows back
                lo = np.maximum(rows - (span - 1), run_start)
            else:
                base = int(self.day.min())
                gkeys = (self.key << 32) + (self.day - base)
                lo = np.searchsorted(gkeys, gkeys - (span - 1), side="left")
            total = csum[lo]
            np.subtract(csum[1:], total, out=total)
            lo -= rows
            np.negative(lo, out=lo)
            lo += 1
            out.append((lo, total))
        return out
