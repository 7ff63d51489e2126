"""The second half of normalisation: in-file duplicates, the schema check, the rejects table.

:class:`Issues` collects every refused cell (table position, column, reason code, detail) as
the cell parsers of :mod:`backcare_analytics.io.normalize` find them; :func:`stage_two`
validates the typed rows with the pandera clean schema (lazy) and maps what remains to reason
codes; :func:`rejects_frame` turns the issues into the rejects table with each row's raw cells.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow.compute as pc

from backcare_analytics.config import Settings
from backcare_analytics.io.parse import Parsed, raw_cells
from backcare_analytics.protocol import Protocol
from backcare_analytics.schemas import (
    ALLOWED_SIDES,
    Pain,
    Patients,
    Sessions,
    find_failures,
    sessions_schema,
)

__all__ = [
    "REJECT_COLUMNS",
    "Issues",
    "column_codes",
    "in_file_conflicts",
    "mask",
    "pairs_ok",
    "rejects_frame",
    "share_verdicts",
    "split_rejects",
    "stage_two",
    "stage_two_schema",
]

REJECT_COLUMNS = ("row", "column", "reason", "detail", "raw")

_CHECK_REASONS = (
    ("greater_than", "out_of_range"), ("less_than", "out_of_range"), ("in_range", "out_of_range"),
    ("isin", "bad_vocabulary"), ("patient_id_format", "bad_patient_id"),
    ("str_length", "field_too_long"), ("not_nullable", "missing_value"),
    ("some_dose_recorded", "no_dose"), ("exercise_in_protocol", "unknown_exercise"),
    ("level_of_exercise", "bad_vocabulary"), ("variant_of_exercise", "bad_vocabulary"),
    ("side_of_exercise", "bad_vocabulary"), ("iana_timezone", "bad_vocabulary"),
    ("uniqueness", "duplicate_in_file"), ("unique", "duplicate_in_file"),
    ("day_is_a_calendar_day", "bad_datetime"),
)  # fmt: skip


class Issues:
    """Per-cell refusals collected column by column: positions, column, reason, detail."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: np.ndarray, column: str, reason: object, detail: object) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        pos = np.flatnonzero(mask)

        def pick(v: object) -> object:
            return np.asarray(v, dtype=object)[pos] if isinstance(v, np.ndarray) else v

        self.parts.append(
            pd.DataFrame({"pos": pos, "column": column, "reason": pick(reason),
                          "detail": pick(detail)})
        )  # fmt: skip

    def add_parsed(self, parsed: Parsed, column: str) -> None:
        pos = np.flatnonzero(parsed.failed)
        if len(pos):
            codes = parsed.codes[pos]
            self.parts.append(
                pd.DataFrame({"pos": pos, "column": column, "reason": parsed.reason_u[codes],
                              "detail": parsed.detail_u[codes]})
            )  # fmt: skip

    def bad_rows(self) -> np.ndarray:
        bad = np.zeros(self.n, dtype=bool)
        for part in self.parts:
            bad[part["pos"].to_numpy()] = True
        return bad

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({"pos": pd.Series(dtype="int64"), "column": pd.Series(dtype="str"),
                                 "reason": pd.Series(dtype="str"),
                                 "detail": pd.Series(dtype="str")})  # fmt: skip
        return pd.concat(self.parts, ignore_index=True)


def column_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a column (missing values get their own code)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or values.dtype.kind == "M":
        return pd.DatetimeIndex(values).asi8
    return pd.factorize(values, use_na_sentinel=False)[0]


def in_file_conflicts(
    good: pd.DataFrame, keys: list[list[str]], content: list[str], issues: Issues
) -> np.ndarray:
    """Same record key twice with different content: the later rows are
    ``duplicate_in_file``. Identical repeats stay (the store counts them as duplicates).

    ``good`` holds the rows that parsed, indexed by table position. Returns, over all table
    rows, the position of the first occurrence of each identical repeat (``-1`` elsewhere), so
    that stage two validates each record once and a repeat shares its first's verdict.
    """
    repeat_of = np.full(issues.n, -1, dtype=np.int64)
    if good.empty:
        return repeat_of
    positions = good.index.to_numpy()
    key_codes: dict[str, np.ndarray] = {}
    for key in keys:
        has_key = good[key].notna().all(axis=1).to_numpy()
        if not has_key.any():
            continue
        for col in key:
            if col not in key_codes:
                key_codes[col] = column_codes(good[col])
        repeated = _repeated(np.column_stack([key_codes[c] for c in key])) & has_key
        if not repeated.any():
            continue
        sub = good.loc[repeated, content]
        where = positions[repeated]
        frame = pd.DataFrame(
            {
                "k": pd.util.hash_pandas_object(sub[key], index=False).to_numpy(),
                "c": pd.util.hash_pandas_object(sub, index=False).to_numpy(),
                "p": where,
            }
        )
        first = frame.groupby("k", sort=False)[["c", "p"]].transform("first")
        same = (first["c"] == frame["c"]).to_numpy()
        issues.add(
            mask(issues.n, where[~same]), key[-1], "duplicate_in_file",
            "an earlier row of this file holds the same record with different content",
        )  # fmt: skip
        later = same & frame.duplicated(["k"]).to_numpy()
        repeat_of[where[later]] = first["p"].to_numpy()[later]
    return repeat_of


def _repeated(codes: np.ndarray) -> np.ndarray:
    """Rows whose code tuple (a row of ``codes``) may occur more than once: the tuples are
    mixed into one 64-bit number per row, so equal tuples are always caught and a rare
    collision only adds a candidate (the caller compares candidates' real keys)."""
    mixed = np.zeros(len(codes), dtype=np.uint64)
    for j in range(codes.shape[1]):  # wraps around modulo 2**64, on purpose
        mixed = mixed * np.uint64(0x9E3779B97F4A7C15) + codes[:, j].astype(np.uint64)
    return pd.Series(mixed).duplicated(keep=False).to_numpy()


def share_verdicts(repeat_of: np.ndarray, issues: Issues) -> None:
    """An identical repeat is refused for whatever refused its first occurrence."""
    repeats = np.flatnonzero(repeat_of >= 0)
    if not len(repeats):
        return
    bad = issues.bad_rows()
    firsts = repeat_of[repeats]
    hit = bad[firsts]
    if not hit.any():
        return
    found = issues.frame()
    for pos, first in zip(repeats[hit], firsts[hit], strict=True):
        issues.parts.append(found.loc[found["pos"] == first].assign(pos=pos))


def mask(n: int, positions: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask


@lru_cache(maxsize=16)
def _cached_schema(kind: str, protocol: Protocol) -> object:
    built = {
        "sessions": lambda: sessions_schema(protocol),
        "pain": Pain.to_schema,
        "patients": Patients.to_schema,
    }[kind]()
    # pandera caches a model's schema: change a copy, never the shared one
    schema = copy.deepcopy(built)
    # Uniqueness is judged per file by in_file_conflicts (stage one), and a batch may hold
    # overlapping re-exports of one record from several files: the schema's own uniqueness
    # checks would wrongly refuse those, so the stage-two copy leaves them out.
    schema.unique = None
    for name, column in schema.columns.items():
        if column.unique:
            schema = schema.update_column(name, unique=False)
        # The same pattern, matched once per distinct value (a batch holds few files).
        checks = [_matches_per_distinct(c) if c.name == "str_matches" else c for c in column.checks]
        if any(a is not b for a, b in zip(checks, column.checks, strict=True)):
            schema = schema.update_column(name, checks=checks)
    if kind == "sessions":  # the same pair checks, once per distinct (exercise, value) pair
        schema.checks = [
            _pairs_per_distinct(c, protocol) if c.name in _PAIR_CHECKS else c for c in schema.checks
        ]
    return schema


#: The programme's pair checks of the Sessions schema: check name -> (column, blank allowed).
_PAIR_CHECKS = {
    "side_of_exercise": (Sessions.side, False),
    "level_of_exercise": (Sessions.level, True),
    "variant_of_exercise": (Sessions.variant, True),
}


def _pairs_per_distinct(check: pa.Check, protocol: Protocol) -> pa.Check:
    """A pair check of :func:`~backcare_analytics.schemas.sessions_schema` (exercise and
    side, level or variant allowed together) with the same allowed pairs, evaluated once per
    distinct pair instead of joining two strings per row."""
    column, blank_ok = _PAIR_CHECKS[check.name]
    allowed = {
        Sessions.side: {(e.id, v) for e in protocol.exercises for v in ALLOWED_SIDES[e.sidedness]},
        Sessions.level: {(e.id, v) for e in protocol.exercises for v in e.ladder},
        Sessions.variant: {(e.id, v) for e in protocol.exercises for v in e.variants},
    }[column]

    def check_pairs(df: pd.DataFrame) -> pd.Series:
        ok = pairs_ok(df[Sessions.exercise_id], df[column], allowed)
        if blank_ok:
            ok = ok | df[column].isna().to_numpy()
        return pd.Series(ok, index=df.index, dtype=bool)

    return pa.Check(check_pairs, name=check.name, error=check.error)


def _matches_per_distinct(check: pa.Check) -> pa.Check:
    """pandera's ``str_matches`` (``Series.str.match``) evaluated once per distinct value."""
    pattern = check.statistics["pattern"]

    def matches(cells: pd.Series) -> pd.Series:
        codes, uniques = pd.factorize(cells, use_na_sentinel=False)
        ok = pd.Series(uniques, dtype="str").str.match(pattern).to_numpy(bool, na_value=False)
        return pd.Series(ok[codes] if len(uniques) else [], index=cells.index, dtype=bool)

    return pa.Check(matches, name="str_matches", error=check.error)


def stage_two_schema(kind: str, protocol: Protocol) -> object:
    """The clean schema of ``kind`` (``sessions``, ``pain``, ``patients``) as stage two runs
    it, built once per protocol (a frozen model): without its uniqueness checks (judged per
    file in stage one by :func:`in_file_conflicts`), and with its pattern and programme pair
    checks evaluated once per distinct value or pair (the same checks and allowed values)."""
    try:
        return _cached_schema(kind, protocol)
    except TypeError:  # an unhashable protocol: build it each time
        return _cached_schema.__wrapped__(kind, protocol)


def pairs_ok(exercise: pd.Series, value: pd.Series, allowed: set[tuple[str, str]]) -> np.ndarray:
    """Whether each row's ``(exercise, value)`` pair is allowed, checked once per distinct pair."""
    e_codes, e_uniq = pd.factorize(exercise, use_na_sentinel=False)
    v_codes, v_uniq = pd.factorize(value, use_na_sentinel=False)
    pair = e_codes.astype(np.int64) * (len(v_uniq) + 1) + v_codes
    distinct, inverse = np.unique(pair, return_inverse=True)
    width = len(v_uniq) + 1
    ok = np.array(
        [(e_uniq[d // width], v_uniq[d % width]) in allowed for d in distinct], dtype=bool
    )
    return ok[inverse] if len(pair) else np.zeros(0, dtype=bool)


def stage_two(
    typed: pd.DataFrame, model: object, protocol: Protocol, issues: Issues, repeat: np.ndarray
) -> None:
    """Validate the parsed rows with the clean schema (lazy) and map failures to reasons.

    Identical repeats (``repeat``) are left out, so the schema's uniqueness check sees each
    record once; they share the verdict of their first occurrence through the store's dedup.
    """
    positions = typed.index.to_numpy()
    ok = ~issues.bad_rows()[positions] & ~repeat[positions]
    if not ok.any():
        return
    good = (typed if ok.all() else typed.loc[ok]).drop(columns=["_row", "updated_at"])
    failures = find_failures(good, model, protocol=protocol)  # type: ignore[arg-type]
    if failures.empty:
        return
    whole = failures["row"].isna()
    if whole.any():
        issues.add(mask(issues.n, positions[ok]), "", "bad_record", "failed a whole-column check")
    for check, group in failures.loc[~whole].groupby("check", sort=False):
        reason = next((r for k, r in _CHECK_REASONS if k in str(check)), "bad_record")
        for column, sub in group.groupby("column", sort=False):
            rows = sub["row"].astype("int64").to_numpy()  # index labels = table positions
            issues.add(mask(issues.n, rows), str(column), reason, f"failed the check {check}")


def rejects_frame(
    found: pd.DataFrame,
    frame: pd.DataFrame,
    rows: np.ndarray,
    row_errors: pd.DataFrame | None,
    settings: Settings,
    file_of: np.ndarray | None = None,
) -> pd.DataFrame:
    """The rejects table (``row, column, reason, detail, raw``) of the issues found, with the
    reader's ``row_errors``, sorted by row and column. With ``file_of`` (the file index of each
    batch position) a ``_file`` column is added and the sort is by file first."""
    found = found.drop_duplicates(["pos", "column", "reason"])
    pos = found["pos"].to_numpy(dtype=np.int64)
    distinct, which = np.unique(pos, return_inverse=True)
    raw = raw_cells(frame, distinct, settings.max_field_chars)
    out = pd.DataFrame(
        {
            "row": rows[pos] if len(pos) else np.array([], dtype=np.int64),
            "column": found["column"].astype("str").to_numpy(),
            "reason": found["reason"].astype("str").to_numpy(),
            "detail": found["detail"].astype("str").to_numpy(),
            "raw": pd.Series(pc.take(raw, which.astype(np.int64)), dtype="str"),
        }
    )
    order = ["row", "column"]
    if file_of is not None:
        out["_file"] = file_of[pos] if len(pos) else np.array([], dtype=np.int64)
        order = ["_file", *order]
    if row_errors is not None and len(row_errors):
        out = pd.concat([out, row_errors[list(REJECT_COLUMNS)]], ignore_index=True)
    out = out.sort_values(order, kind="stable").reset_index(drop=True)
    return out.astype(REJECT_DTYPES)


#: dtypes of the rejects table.
REJECT_DTYPES = {"row": "int64", "column": "str", "reason": "str", "detail": "str", "raw": "str"}


def split_rejects(
    batch: pd.DataFrame, n_files: int, row_errors: list[pd.DataFrame]
) -> list[pd.DataFrame]:
    """Per file, its rejects from a batch table made with ``file_of``, plus its own reader
    ``row_errors``, in the order :func:`rejects_frame` gives a single file."""
    files = batch["_file"].to_numpy()
    batch = batch.drop(columns="_file")
    at = np.searchsorted(files, np.arange(n_files + 1))
    out = []
    for j in range(n_files):
        part = batch.iloc[at[j] : at[j + 1]]
        if len(row_errors[j]):
            part = pd.concat([part, row_errors[j][list(REJECT_COLUMNS)]], ignore_index=True)
            part = part.sort_values(["row", "column"], kind="stable").astype(REJECT_DTYPES)
        out.append(part.reset_index(drop=True))
    return out
