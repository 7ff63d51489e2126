"""Stable digests of metric tables, to hold `backcare metrics` output fixed across refactors.

A table's digest is the sha256 of a canonical text form that does not depend on Parquet or CSV
writing: the columns sorted by name, each with its dtype, then every row in the table's own
order, floats written with 12 significant digits, missing values as ``<NA>``.

Run as a script on a ``backcare metrics --out`` folder to print the digests of its tables:
``python tests/_metric_digests.py DIR``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def _cells(col: pd.Series) -> list[str]:
    """Each value of a column as canonical text."""
    missing = col.isna().to_numpy()
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(dtype="float64", na_value=np.nan)
        text = [f"{v:.12g}" for v in values]
    elif pd.api.types.is_datetime64_any_dtype(col):
        text = [str(v) for v in col.astype("object")]
    else:
        text = [repr(v) for v in col.astype("object")]
    return ["<NA>" if m else t for m, t in zip(missing, text, strict=True)]


def table_digest(table: pd.DataFrame) -> str:
    """sha256 of the canonical text form of ``table`` (see the module docstring)."""
    cols = sorted(table.columns)
    h = hashlib.sha256()
    h.update(("\x1f".join(f"{c}:{table[c].dtype}" for c in cols) + "\n").encode())
    columns = [_cells(table[c]) for c in cols]
    for row in zip(*columns, strict=True):
        h.update(("\x1f".join(row) + "\n").encode())
    return h.hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    """The digest of every Parquet table in a ``backcare metrics --out`` folder, by name."""
    return {p.stem: table_digest(pd.read_parquet(p)) for p in sorted(folder.glob("*.parquet"))}


if __name__ == "__main__":
    for name, digest in folder_digests(Path(sys.argv[1])).items():
        print(f'    "{name}": "{digest}",')
