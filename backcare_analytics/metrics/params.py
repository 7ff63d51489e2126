"""Windows and policies shared by every metric family.

Each family keeps its own thresholds in a small frozen dataclass in its module
(e.g. ``AdherencePolicy``, ``PainPolicy``); what all of them share lives here.

>>> w = Window.iso_week("2026-W10")
>>> w.start.date(), w.end.date(), w.days
(datetime.date(2026, 3, 2), datetime.date(2026, 3, 8), 7)
>>> Window(end="2026-03-08", days=28).start.date()
datetime.date(2026, 2, 9)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pandas as pd

__all__ = ["Window"]

_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Window:
    """The patient-local calendar days ``[start, end]``, both included: ``days`` days ending on
    ``end``. Days are naive midnight timestamps like the ``day`` column of the clean tables."""

    end: pd.Timestamp
    days: int = 28

    def __post_init__(self) -> None:
        end = pd.Timestamp(self.end)
        if end.tzinfo is not None:
            raise ValueError("Window.end is a local calendar day; received a time-zone-aware time")
        if self.days < 1:
            raise ValueError(f"Window.days must be >= 1; received {self.days}")
        object.__setattr__(self, "end", end.normalize().as_unit("us"))

    @property
    def start(self) -> pd.Timestamp:
        return self.end - pd.Timedelta(days=self.days - 1)

    @classmethod
    def iso_week(cls, week: str) -> Window:
        """The seven days (Monday to Sunday) of an ISO week written ``YYYY-Www``."""
        m = _ISO_WEEK.match(week)
        if not m:
            raise ValueError(f"expected an ISO week like 2026-W10; received {week!r}")
        monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        return cls(end=pd.Timestamp(monday) + pd.Timedelta(days=6), days=7)

    def contains(self, days: pd.Series) -> pd.Series:
        """Whether each day falls inside the window."""
        return (days >= self.start) & (days <= self.end)

    @property
    def label(self) -> str:
        """``YYYY-Www`` for a Monday-to-Sunday week, else ``start..end``."""
        iso = self.end.isocalendar()
        if self.days == 7 and self.end.weekday() == 6:
            return f"{iso.year}-W{iso.week:02d}"
        return f"{self.start.date()}..{self.end.date()}"
