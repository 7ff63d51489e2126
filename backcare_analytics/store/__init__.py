"""The embedded store: a DuckDB file with the canonical tables, the import ledger and the
quarantine, plus the raw archive that can rebuild it. See ``docs/import.md``."""

from __future__ import annotations

from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.store.archive import RawArchive, sha256_bytes
from backcare_analytics.store.core import CLEAN_DTYPES, Store, to_frame
from backcare_analytics.store.merge import SPECS, MergeResult, merge_rows

__all__ = [
    "CLEAN_DTYPES",
    "SPECS",
    "MergeResult",
    "RawArchive",
    "Store",
    "StoreBusyError",
    "StoreError",
    "merge_rows",
    "sha256_bytes",
    "to_frame",
]
