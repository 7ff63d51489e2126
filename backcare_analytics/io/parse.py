"""Cell parsers of the importer: text cells in, typed values and per-cell reasons out.

Each parser takes a column of raw text (pandas ``str`` dtype, ``""`` for blank) and returns a
:class:`Parsed` holding the typed values (missing where the cell was blank or refused) and, for
every refused cell, a reason code of ``docs/export-format.md`` and a detail that never repeats
the cell's value. Parsers never raise on bad input.

Speed: number and vocabulary columns repeat few distinct values, so each distinct value is
parsed once (:func:`pandas.factorize`) and the results are spread back with ``numpy.take``.
Times are parsed with :func:`pandas.to_datetime` on whole columns of distinct values, format
by format, leaving only the rare leftovers refused.

>>> p = parse_integer(pd.Series(["7", "7/10", "severe", "11", "-1", "7.5", ""], dtype="str"),
...                   lo=0, hi=10, units=PAIN_UNITS)
>>> p.values.tolist()
[7, 7, <NA>, <NA>, <NA>, <NA>, <NA>]
>>> p.reason.tolist()
['', '', 'bad_number', 'out_of_range', 'out_of_range', 'not_an_integer', '']
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "HOLD_UNITS",
    "PAIN_UNITS",
    "REPS_UNITS",
    "Parsed",
    "localize",
    "parse_float",
    "parse_integer",
    "parse_times",
    "parse_vocabulary",
    "raw_cells",
    "take_text",
]

# ASCII digits only (re.ASCII): ``٥`` or a full-width ``５`` is not a number here.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?$", re.ASCII)
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$", re.ASCII)
#: Unit suffixes stripped where unambiguous: ``"10 reps"``, ``"10 breaths"``.
REPS_UNITS = re.compile(r"^(.*?)\s*(?:reps?|repetitions?|breaths?|times|x)$", re.IGNORECASE)
#: ``"7/10"`` is an NRS score out of 10.
PAIN_UNITS = re.compile(r"^(.*?)\s*/\s*10$")
#: Seconds and minutes: ``"30s"``, ``"30 sec"``, ``"1 min"``.
HOLD_UNITS = re.compile(
    r"^(.*?)\s*(s|sec|secs|second|seconds|min|mins|minute|minutes)\.?$", re.IGNORECASE
)
_MSS = re.compile(r"^(\d{1,2}):([0-5]\d)$", re.ASCII)
_MAX_DIGITS = 30  # longer digit runs are out of any range here; never handed to int()


@dataclass(frozen=True)
class Parsed:
    """Typed values of one column and, per cell, a reason code (``""`` when the cell is fine)
    and a detail for people (never the cell's value).

    Reasons are kept per distinct cell value (``reason_u``, ``detail_u``) with each cell's
    ``codes`` into them, so a million cells cost no million-element object arrays.
    """

    values: pd.Series
    codes: np.ndarray
    reason_u: np.ndarray
    detail_u: np.ndarray

    @property
    def failed(self) -> np.ndarray:
        return (self.reason_u != "").astype(bool)[self.codes]

    @property
    def reason(self) -> np.ndarray:
        return self.reason_u[self.codes]

    @property
    def detail(self) -> np.ndarray:
        return self.detail_u[self.codes]


def take_text(uniques: object, codes: np.ndarray) -> pd.Series:
    """``uniques[codes]`` as a pandas ``str`` Series (missing where a unique is missing or a
    code is negative), taken in Arrow: several times faster than building the column from a
    NumPy object array.

    >>> take_text(["a", None], np.array([1, 0, -1, 0])).tolist()
    [nan, 'a', nan, 'a']
    """
    values = pa.array(np.asarray(uniques, dtype=object), type=pa.large_string(), from_pandas=True)
    codes = np.asarray(codes, dtype=np.int64)
    return pd.Series(pc.take(values, pa.array(codes, mask=codes < 0)), dtype="str")


def raw_cells(frame: pd.DataFrame, positions: np.ndarray, limit: int) -> pa.Array:
    """The raw cells of the rows at ``positions`` as JSON objects, cut to ``limit`` characters.

    Blank cells are left out (``{"patient_id": "x", "reps": "11"}``): a refused row is kept
    with what it holds, and a row of a few short cells stays a few bytes, however many empty
    columns it has. Built in Arrow from each column's distinct cells, once per row (a row
    refused for several reasons shares it).

    >>> f = pd.DataFrame({"a": ["1", "", "2"], "b": ["", "", "x"]}, dtype="str")
    >>> raw_cells(f, np.array([0, 1, 2]), 4000).to_pylist()
    ['{"a": "1"}', '{}', '{"a": "2", "b": "x"}']
    """
    empty = pa.scalar("", type=pa.large_string())
    pieces = []
    for column in frame.columns:
        codes, uniques = pd.factorize(frame[column].take(positions), use_na_sentinel=False)
        key = json.dumps(str(column), ensure_ascii=False) + ": "
        encoded = [
            key + json.dumps(u, ensure_ascii=False) + ", " if isinstance(u, str) and u else ""
            for u in uniques
        ]
        values = pa.array(encoded, type=pa.large_string())
        pieces.append(pc.take(values, pa.array(codes.astype(np.int64))))
    if not pieces or not len(positions):
        return pa.array(["{}"] * len(positions), type=pa.large_string())
    joined = pc.binary_join_element_wise(*pieces, empty)  # each piece ends in ", "
    brace, end = pa.scalar("{", pa.large_string()), pa.scalar("}", pa.large_string())
    whole = pc.binary_join_element_wise(brace, pc.utf8_slice_codeunits(joined, 0, -2), end, empty)
    return pc.utf8_slice_codeunits(whole, 0, limit)


def _by_distinct(
    cells: pd.Series, parse_one: Callable[[str], tuple[object, str, str]], dtype: str
) -> Parsed:
    codes, uniques = pd.factorize(cells, use_na_sentinel=False)
    results = [parse_one(u) for u in uniques]
    vals = pd.array([r[0] for r in results], dtype=dtype)
    reason = np.array([r[1] for r in results], dtype=object)
    detail = np.array([r[2] for r in results], dtype=object)
    return Parsed(pd.Series(vals.take(codes), index=cells.index), codes, reason, detail)


def _number(text: str, decimal_comma: bool) -> tuple[float | None, str, str]:
    if _DECIMAL_COMMA.match(text):
        if not decimal_comma:
            return None, "bad_number", "a decimal comma is ambiguous in a comma-separated file"
        text = text.replace(",", ".")
    if not _NUMBER.match(text):
        return None, "bad_number", "not a number (digits 0-9)"
    if len(text) > _MAX_DIGITS:
        return None, "out_of_range", "far too many digits"
    value = float(text)
    if not math.isfinite(value):
        return None, "out_of_range", "too large"
    if value == 0 and text.lower().partition("e")[0].strip("+-.0"):  # 1e-400 underflows to 0
        return None, "out_of_range", "too close to zero to be stored"
    return value, "", ""


def parse_integer(
    cells: pd.Series,
    *,
    lo: int,
    hi: int,
    units: re.Pattern[str] | None = None,
    decimal_comma: bool = False,
    what: str = "an integer",
) -> Parsed:
    """Integers in ``[lo, hi]``; ``"10.0"`` is 10, ``"10.5"`` is ``not_an_integer``;
    ``NaN``, ``inf``, ``true`` and words are ``bad_number``. Blank cells give ``<NA>``."""

    def one(raw: str) -> tuple[object, str, str]:
        text = raw.strip()
        if not text:
            return None, "", ""
        if units is not None and (m := units.match(text)):
            text = m.group(1).strip()
        value, reason, detail = _number(text, decimal_comma)
        if value is None:
            return None, reason, f"{detail}; expected {what} from {lo} to {hi}"
        if value != int(value):
            return None, "not_an_integer", f"a fraction; expected {what} from {lo} to {hi}"
        if not lo <= value <= hi:
            return None, "out_of_range", f"expected {what} from {lo} to {hi}"
        return int(value), "", ""

    return _by_distinct(cells, one, "Int64")


def parse_float(
    cells: pd.Series, *, lo: float, hi: float, decimal_comma: bool = False, seconds: bool = True
) -> Parsed:
    """Numbers in ``[lo, hi]``; with ``seconds=True`` also ``"30s"``, ``"30 sec"``, ``"1 min"``
    and ``"0:30"`` (m:ss). Blank cells give ``<NA>``."""

    def one(raw: str) -> tuple[object, str, str]:
        text = raw.strip()
        if not text:
            return None, "", ""
        factor = 1.0
        if seconds:
            if m := _MSS.match(text):
                value = int(m.group(1)) * 60.0 + int(m.group(2))
                ok = lo <= value <= hi
                return (value, "", "") if ok else (None, "out_of_range", f"expected {lo}-{hi} s")
            if m := HOLD_UNITS.match(text):
                factor = 60.0 if m.group(2).lower().startswith("m") else 1.0
                text = m.group(1).strip()
        value, reason, detail = _number(text, decimal_comma)
        if value is None:
            return None, reason, f"{detail}; expected seconds from {lo:g} to {hi:g}"
        value *= factor
        if not lo <= value <= hi:
            return None, "out_of_range", f"expected seconds from {lo:g} to {hi:g}"
        return value, "", ""

    return _by_distinct(cells, one, "Float64")


def parse_vocabulary(cells: pd.Series, mapping: Mapping[str, str], *, what: str) -> Parsed:
    """Map case-insensitive, trimmed spellings to canonical values; others are
    ``bad_vocabulary``. Blank cells give ``<NA>``."""
    allowed = ", ".join(sorted(set(mapping.values())))

    def one(raw: str) -> tuple[object, str, str]:
        text = raw.strip().casefold()
        if not text:
            return None, "", ""
        if text in mapping:
            return mapping[text], "", ""
        return None, "bad_vocabulary", f"not a known {what}; expected one of {allowed}"

    return _by_distinct(cells, one, "str")


# --------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------

_ISO_OFFSET = r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d(?::?\d\d)?)$"
_ISO_NAIVE = r"^\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?)?$"
_SLASH = r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})(?:[ T](\d{1,2}):(\d\d)(?::(\d\d))?)?$"


@dataclass(frozen=True)
class ParsedTimes:
    """``utc`` holds times that carried an offset; ``naive`` the wall-clock times without one
    (to be read in the patient's zone by :func:`localize`); ``reason`` is ``bad_datetime`` for
    unreadable non-blank cells."""

    utc: pd.Series
    naive: pd.Series
    has_offset: np.ndarray
    blank: np.ndarray
    reason: np.ndarray
    detail: np.ndarray


def parse_times(cells: pd.Series, *, date_order: str = "DMY") -> ParsedTimes:
    """Parse ISO 8601 times with or without an offset, and slash or dot dates (day first, or
    month first with ``date_order="MDY"``), never swapping an impossible day and month.

    Whole columns at a time: one pyarrow regex pass tells offsets from naive times, then
    :func:`pandas.to_datetime` reads each group; only slash/dot dates take a slower path. A
    column that repeats its values (a session's exercises share its time) is parsed once per
    distinct value.
    """
    codes, uniques = pd.factorize(cells, use_na_sentinel=False)
    if 2 * len(uniques) <= len(cells):
        d = _parse_times(pd.Series(uniques, dtype="str"), date_order)
        return ParsedTimes(
            utc=d.utc.take(codes).set_axis(cells.index),
            naive=d.naive.take(codes).set_axis(cells.index),
            has_offset=d.has_offset.take(codes),
            blank=d.blank.take(codes),
            reason=d.reason.take(codes),
            detail=d.detail.take(codes),
        )
    return _parse_times(cells, date_order)


def _parse_times(cells: pd.Series, date_order: str) -> ParsedTimes:
    u = cells.str.strip().reset_index(drop=True)
    n = len(u)
    blank = (u == "").to_numpy(dtype=bool)
    if blank.all():  # an optional column left empty: nothing to parse
        nat = np.full(n, np.datetime64("NaT", "us"), dtype="datetime64[us]")
        empty = np.full(n, "", dtype=object)
        return ParsedTimes(
            utc=pd.Series(nat, index=cells.index).dt.tz_localize("UTC"),
            naive=pd.Series(nat, index=cells.index),
            has_offset=np.zeros(n, dtype=bool),
            blank=blank,
            reason=empty,
            detail=empty.copy(),
        )
    utc = np.full(n, np.datetime64("NaT", "us"), dtype="datetime64[us]")
    naive = np.full(n, np.datetime64("NaT", "us"), dtype="datetime64[us]")
    is_off = u.str.match(_ISO_OFFSET).to_numpy(dtype=bool, na_value=False).copy()
    other = ~is_off & ~blank  # (a cell matching _ISO_OFFSET has nothing to tidy below)
    if other.any():
        v = u[other]
        spaced = v.str.contains(r" [+\-Zz]", regex=True).to_numpy(dtype=bool, na_value=False)
        if spaced.any():  # "07:15 +01:00": drop the space before the offset
            v[spaced] = v[spaced].str.replace(
                r"\s+(?=(?:Z|z|[+-]\d\d(?::?\d\d)?)$)", "", regex=True
            )
        lower_z = v.str.endswith("z").to_numpy(dtype=bool, na_value=False)
        if lower_z.any():
            v[lower_z] = v[lower_z].str.slice(0, -1) + "Z"
        u[other] = v
        is_off[other] = v.str.match(_ISO_OFFSET).to_numpy(dtype=bool, na_value=False)
    is_iso = np.zeros(n, dtype=bool)
    other &= ~is_off
    if other.any():
        is_iso[other] = u[other].str.match(_ISO_NAIVE).to_numpy(dtype=bool, na_value=False)
    if is_off.any():
        parsed = pd.to_datetime(u[is_off], format="ISO8601", utc=True, errors="coerce")
        utc[is_off] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    if is_iso.any():
        parsed = pd.to_datetime(u[is_iso], format="ISO8601", errors="coerce")
        naive[is_iso] = parsed.to_numpy(dtype="datetime64[us]")
    rest = ~(is_off | is_iso | blank)
    if rest.any():
        parts = u[rest].str.extract(_SLASH)
        first, second = (1, 0) if date_order.upper() == "MDY" else (0, 1)
        iso = (
            parts[2] + "-" + parts[second].str.zfill(2) + "-" + parts[first].str.zfill(2)
            + " " + parts[3].fillna("0").str.zfill(2) + ":" + parts[4].fillna("00")
            + ":" + parts[5].fillna("00")
        )  # fmt: skip
        parsed = pd.to_datetime(iso, format="%Y-%m-%d %H:%M:%S", errors="coerce")
        naive[rest] = parsed.to_numpy(dtype="datetime64[us]")
    bad = ~blank & np.isnat(utc) & np.isnat(naive)
    reason = np.full(n, "", dtype=object)
    reason[bad] = "bad_datetime"
    detail = np.full(n, "", dtype=object)
    detail[bad] = "not a readable time; expected e.g. 2026-03-02T07:15:00+01:00 or 2026-03-02 07:15"
    return ParsedTimes(
        utc=pd.Series(utc, index=cells.index).dt.tz_localize("UTC"),
        naive=pd.Series(naive, index=cells.index),
        has_offset=is_off,
        blank=blank,
        reason=reason,
        detail=detail,
    )


@dataclass(frozen=True)
class Localized:
    """UTC times of naive wall-clock times; ``nonexistent`` marks times skipped by a DST gap,
    ``ambiguous`` those that occur twice (the first, DST, occurrence was taken)."""

    utc: pd.Series
    nonexistent: np.ndarray
    ambiguous: np.ndarray


def localize(naive: pd.Series, zones: pd.Series) -> Localized:
    """Read naive times as wall-clock times in each row's zone, vectorised per zone.

    Rows whose zone is missing stay ``NaT`` (and are not flagged).
    """
    values = naive.to_numpy(dtype="datetime64[us]")
    out = np.full(len(values), np.datetime64("NaT", "us"), dtype="datetime64[us]")
    nonexistent = np.zeros(len(values), dtype=bool)
    ambiguous = np.zeros(len(values), dtype=bool)
    has_time = ~np.isnat(values)
    for zone, mask in _zone_masks(zones, has_time):
        sub = pd.DatetimeIndex(values[mask])
        first = sub.tz_localize(zone, nonexistent="NaT", ambiguous=np.ones(len(sub), bool))
        second = sub.tz_localize(zone, nonexistent="NaT", ambiguous=np.zeros(len(sub), bool))
        first_utc = first.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[us]")
        second_utc = second.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[us]")
        out[mask] = first_utc
        nonexistent[mask] = np.isnat(first_utc)
        ambiguous[mask] = ~np.isnat(first_utc) & (first_utc != second_utc)
    utc = pd.Series(out, index=naive.index).dt.tz_localize("UTC")
    return Localized(utc=utc, nonexistent=nonexistent, ambiguous=ambiguous)


def _zone_masks(zones: pd.Series, rows: np.ndarray) -> list[tuple[str, np.ndarray]]:
    codes, uniques = pd.factorize(zones)
    present = np.unique(codes[rows & (codes >= 0)])
    return [(str(uniques[c]), rows & (codes == c)) for c in present]


def local_day(utc: pd.Series, zones: pd.Series) -> pd.Series:
    """The local calendar day (naive midnight) of each UTC time in its row's zone."""
    values = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    out = np.full(len(values), np.datetime64("NaT", "us"), dtype="datetime64[us]")
    for zone, mask in _zone_masks(zones, ~np.isnat(values)):
        local = pd.DatetimeIndex(values[mask]).tz_localize("UTC").tz_convert(zone)
        out[mask] = local.tz_localize(None).normalize().to_numpy(dtype="datetime64[us]")
    return pd.Series(out, index=utc.index)
