"""Metrics: pure functions, clean frames in, tidy frames out (see docs/metrics.md).

Each function takes frames holding many patients and returns one row per key with the keys
as columns; nothing is rounded or printed and inputs are never mutated.
"""

from __future__ import annotations

from backcare_analytics.metrics.params import Window

__all__ = ["Window"]
