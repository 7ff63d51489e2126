"""Output safety: text that a spreadsheet would run as a formula is neutralised before it is
written to CSV (CSV/formula injection, OWASP).

A cell is a trigger when its text starts with ``=``, ``+``, ``-``, ``@``, a tab, a carriage
return or a line feed; it is written with a leading ``'`` so a spreadsheet shows it as text.
Only text columns are touched: numbers (``-3``) stay numbers, and the input frame is never
changed.

>>> df = pd.DataFrame({"note": ["=1+2", "fine", None, "-x", "@SUM(A1)"], "n": [-1, 2, 3, 4, 5]})
>>> neutralise_formulas(df)["note"].tolist()
["'=1+2", 'fine', nan, "'-x", "'@SUM(A1)"]
>>> neutralise_formulas(df)["n"].tolist()
[-1, 2, 3, 4, 5]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

__all__ = [
    "FORMULA_TRIGGERS",
    "neutralise_formulas",
    "neutralise_formulas_reversibly",
    "private_outputs",
    "restore_formulas",
    "write_csv",
]

#: First characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
ESCAPE = "'"


def _is_text(col: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(col.dtype)
        or col.dtype == object
        or isinstance(col.dtype, pd.CategoricalDtype)
    )


def _as_text(col: pd.Series) -> pd.Series:
    """The column with non-strings masked, categories as their text."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    if col.dtype == object:
        return col.where(col.map(lambda v: isinstance(v, str))).astype("str")
    return col


def _neutralise_name(name: object) -> object:
    return ESCAPE + name if isinstance(name, str) and name.startswith(FORMULA_TRIGGERS) else name


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells starting with a formula trigger carry a leading ``'``.

    Returns
    -------
    pandas.DataFrame
        Same columns, dtypes and index; only text cells that start with one of
        ``FORMULA_TRIGGERS`` change. Object columns are converted cell by cell only where a
        cell is a string.
    """
    out = {}
    for name in df.columns:
        col = df[name]
        if not _is_text(col):
            continue
        text = _as_text(col)
        first = text.str[:1]
        needs = text.notna() & first.isin(FORMULA_TRIGGERS)
        if needs.any():
            base = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
            out[name] = base.mask(needs, ESCAPE + text)
    result = df.copy()
    for name, col in out.items():
        result[name] = col
    # Column headers are cells too.
    return result.rename(columns=_neutralise_name)


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """Write ``df`` as UTF-8 CSV without its index, formulas neutralised, owner-only."""
    path = Path(path)
    with private_outputs(path.parent):
        neutralise_formulas(df).to_csv(path, index=False, encoding="utf-8")
    return path


@contextmanager
def private_outputs(folder: Path | str) -> Iterator[Path]:
    """Create ``folder`` (and missing parents) readable by the owner only, and make every file
    written inside the block owner-only too (``0o700`` folders, ``0o600`` files): metric tables
    and exports hold patient data.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp, private_outputs(Path(tmp) / "out") as out:
    ...     _ = (out / "t.csv").write_text("x")
    ...     oct(out.stat().st_mode & 0o777), oct((out / "t.csv").stat().st_mode & 0o777)
    ('0o700', '0o600')
    """
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in missing:
        created.chmod(0o700)
    before = {p for p in folder.iterdir() if p.is_file()}
    old_umask = os.umask(0o077)
    try:
        yield folder
    finally:
        os.umask(old_umask)
        for p in folder.iterdir():
            if p.is_file() and (p not in before or p.stat().st_mode & 0o077):
                p.chmod(0o600)


def neutralise_formulas_reversibly(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`neutralise_formulas`, and text cells already starting with ``'`` get one more, so
    :func:`restore_formulas` gives back every original cell exactly (research exports).

    >>> df = pd.DataFrame({"t": ["=1", "'quoted", "ok", None]})
    >>> restore_formulas(neutralise_formulas_reversibly(df)).equals(df)
    True
    """
    out = neutralise_formulas(df)
    for name in df.columns:
        col = df[name]
        if _is_text(col):
            text = _as_text(col)
            quoted = text.notna() & text.str.startswith(ESCAPE)
            if quoted.any():
                out[name] = out[name].mask(quoted, ESCAPE + text)
    return out


def restore_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`neutralise_formulas_reversibly`: one leading ``'`` is removed from
    every text cell that has one."""
    out = df.copy()
    for name in df.columns:
        col = df[name]
        if _is_text(col):
            text = col.where(col.map(lambda v: isinstance(v, str))) if col.dtype == object else col
            escaped = text.notna() & text.str.startswith(ESCAPE)
            if escaped.any():
                out[name] = col.mask(escaped, text.str[1:])
    return out
