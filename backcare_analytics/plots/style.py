"""The one report style: a colour-blind-safe palette, greyscale-legible patterns, lean figures.

Every plot function draws inside :func:`report_style`, so figures look the same in a notebook,
a rendered report and a printed page. Colours are Okabe and Ito's palette (distinguishable with
the common colour-vision deficiencies); wherever colour carries meaning a hatch, marker or line
style carries it too, so a greyscale print still reads.

References
----------
Okabe M, Ito K. Color Universal Design (CUD): how to make figures and presentations that are
friendly to colorblind people. 2008. https://jfly.uni-koeln.de/color/

>>> OKABE_ITO["blue"]
'#0072B2'
>>> with report_style():
...     fig, ax = new_axes(None, size="wide")
>>> float(fig.get_figwidth())
7.2
>>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from backcare_analytics.vocabulary import (
    DAY_MET,
    DAY_MISSED,
    DAY_NO_LOG,
    DAY_PARTIAL,
    DAY_STATUS_LABELS,
)

__all__ = [
    "ADHERENCE_STATUS_STYLE",
    "LEGEND_ROW_IN",
    "MARGINS",
    "OKABE_ITO",
    "REPORT_RC",
    "SIZES",
    "Margins",
    "new_axes",
    "legend_width_in",
    "report_style",
    "text_width_in",
]

#: Okabe-Ito colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}

#: How each adherence status of a day is drawn: fill colour, a marker (so the grid reads in
#: greyscale), the marker's ink and the legend label. "No log" is pale grey with a "?": a day
#: without any log is not a missed day.
ADHERENCE_STATUS_STYLE: dict[str, dict[str, str]] = {
    DAY_MET: {
        "color": OKABE_ITO["blue"],
        "marker": "o",
        "ink": "white",
        "label": DAY_STATUS_LABELS[DAY_MET],
    },
    DAY_PARTIAL: {
        "color": OKABE_ITO["sky"],
        "marker": "$½$",
        "ink": "black",
        "label": DAY_STATUS_LABELS[DAY_PARTIAL],
    },
    DAY_MISSED: {
        "color": OKABE_ITO["vermillion"],
        "marker": "x",
        "ink": "black",
        "label": DAY_STATUS_LABELS[DAY_MISSED],
    },
    DAY_NO_LOG: {
        "color": "#F2F2F2",
        "marker": "$?$",
        "ink": "#555555",
        "label": DAY_STATUS_LABELS[DAY_NO_LOG],
    },
}

#: Figure sizes in inches (A4 text width is about 7.2 in at our margins).
SIZES: dict[str, tuple[float, float]] = {
    "wide": (7.2, 2.6),
    "tall": (7.2, 3.2),
    "small": (3.5, 2.4),
}

#: The matplotlib rc settings of every report figure.
REPORT_RC: dict[str, Any] = {
    "figure.dpi": 96,
    "savefig.dpi": 96,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "#333333",
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.size": 9,
    "font.family": "DejaVu Sans",
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "hatch.linewidth": 0.6,
    "hatch.color": "#333333",
    "axes.prop_cycle": mpl.cycler(
        color=[OKABE_ITO[k] for k in ("blue", "orange", "green", "vermillion", "purple", "sky")]
    ),
    # Text stays text in SVG output: smaller files, selectable and searchable in the report.
    "svg.fonttype": "none",
    # Fixed margins (:data:`MARGINS`), not constrained layout: a layout engine draws every
    # figure twice when it is saved, and that was 40 % of a report's plotting time.
    "figure.constrained_layout.use": False,
}


@dataclass(frozen=True)
class Margins:
    """Space around the axes of a new figure, in inches (so it does not scale with the figure).

    Legends and twin axes sit in these margins; each plot asks for the room it needs.
    """

    left: float = 0.65
    right: float = 0.15
    bottom: float = 0.55
    top: float = 0.3

    def apply(self, fig: Figure) -> None:
        """Place the figure's subplots inside these margins."""
        w, h = fig.get_size_inches()
        fig.subplots_adjust(
            left=self.left / w,
            right=1 - self.right / w,
            bottom=self.bottom / h,
            top=1 - self.top / h,
        )


#: Default margins: room for tick labels, an axis label and a title.
MARGINS = Margins()

#: Height of one legend row below the axes, in inches (8 pt text and its spacing).
LEGEND_ROW_IN = 0.2


def text_width_in(text: str, size_pt: float = 8.0) -> float:
    """Width of ``text`` in inches at ``size_pt`` in the report font, measured from the glyph
    outlines (no figure and no drawing needed; about 0.5 ms a string)."""
    prop = FontProperties(family=REPORT_RC["font.family"], size=size_pt)
    width, _, _ = _TEXT_TO_PATH.get_text_width_height_descent(text, prop, ismath=False)
    return float(width) / 72.0


_TEXT_TO_PATH = TextToPath()


def legend_width_in(labels: list[str], size_pt: float = 8.0) -> float:
    """Width of a one-column legend of ``labels`` in inches: the widest label plus the handle,
    the gap to the text and the legend's padding (matplotlib's defaults, 3.3 em in all)."""
    widest = max((text_width_in(t, size_pt) for t in labels), default=0.0)
    return widest + 3.3 * size_pt / 72.0


@contextmanager
def report_style() -> Iterator[None]:
    """Draw inside this context to get the report look (restores the caller's rc on exit)."""
    with mpl.rc_context(REPORT_RC):
        yield


def new_axes(
    ax: Axes | None,
    size: Literal["wide", "tall", "small"] = "wide",
    margins: Margins = MARGINS,
) -> tuple[Figure, Axes]:
    """The axes to draw on: ``ax`` itself, or a new figure of a report size with ``margins``.

    Call inside :func:`report_style` so the new figure picks up the report's rc settings. A
    caller's own ``ax`` keeps the caller's layout.
    """
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new = plt.subplots(figsize=SIZES[size])
    margins.apply(fig)
    return fig, new
