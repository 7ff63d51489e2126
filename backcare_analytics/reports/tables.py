"""Formatting for people: long metric tables become short labelled display tables.

Metrics return unrounded numbers with identifier column names; here they are rounded, given
labels and units ("5/7 days", "82 %"), and rendered as escaped HTML. Missing values show as an
en dash. Nothing here computes a metric.

>>> days_of(5, 7)
'5/7 days'
>>> percent(0.8234)
'82 %'
>>> percent(float("nan"))
'–'
>>> nrs(3.04)
'3.0/10'
>>> html_table(pd.DataFrame({"Note": ["<b>x</b>"]}))._repr_html_().count("&lt;b&gt;")
1
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.reports.display import HtmlFragment, environment

__all__ = [
    "DASH",
    "days_of",
    "html_table",
    "nrs",
    "number",
    "percent",
    "seconds",
    "styled",
]

DASH = "–"


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def days_of(n: Any, d: Any) -> str:
    """``"n/d days"``; a dash when either is missing."""
    if _missing(n) or _missing(d):
        return DASH
    return f"{int(n)}/{int(d)} days"


def percent(share: Any, digits: int = 0) -> str:
    """A share in [0, 1] as ``"82 %"`` (a thin space before the sign, as the SI brochure asks)."""
    if _missing(share):
        return DASH
    return f"{100 * float(share):.{digits}f} %"


def number(value: Any, digits: int = 0, unit: str = "") -> str:
    """A rounded number with an optional unit; a dash when missing."""
    if _missing(value):
        return DASH
    text = f"{float(value):.{digits}f}"
    return f"{text} {unit}".strip()


def seconds(value: Any) -> str:
    """A duration in seconds as ``"15 s"``."""
    return number(value, 0, "s")


def nrs(value: Any) -> str:
    """Pain on the 0-10 numeric rating scale, one decimal: ``"3.0/10"``."""
    if _missing(value):
        return DASH
    return f"{float(value):.1f}/10"


def html_table(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    row_classes: Iterable[str] | None = None,
    caption: str | None = None,
) -> HtmlFragment:
    """An escaped HTML table of a display frame (strings already formatted).

    Every cell and header is escaped by the autoescaping Jinja environment, so a note holding
    ``<script>`` or ``{{7*7}}`` is shown as those characters.
    """
    macro = environment().get_template("fragments.html.j2").module.table  # type: ignore[attr-defined]
    markup = macro(
        frame,
        numeric=tuple(numeric),
        row_classes=list(row_classes) if row_classes is not None else None,
        caption=caption,
    )
    return HtmlFragment(str(markup), text=frame.to_string(index=False))


def styled(frame: pd.DataFrame) -> Any:
    """A pandas Styler of a display frame that escapes HTML (for exploring in JupyterLab)."""
    return frame.style.format(escape="html").hide(axis="index")
