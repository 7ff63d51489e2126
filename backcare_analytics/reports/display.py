"""What a report notebook displays: escaped HTML fragments and lean, closed figures.

Notebook templates only call the package; the objects returned here carry their own rich
representation, so a cell's output is exactly one ``text/html`` or ``image/png`` bundle that the
renderer (:mod:`backcare_analytics.reports.render`) embeds in the report page.

>>> frag = html_fragment("<p>{{ note }}</p>", note="<script>alert(1)</script>")
>>> frag._repr_html_()
'<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>'
"""

from __future__ import annotations

import base64
import io
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from backcare_analytics.config import package_version

__all__ = [
    "FIGURE_DPI",
    "FigureOutput",
    "HtmlFragment",
    "environment",
    "html_fragment",
    "package_version",
    "render_fragment",
    "show",
]

#: Resolution of report figures: sharp on screen and legible in print, small in an e-mail.
FIGURE_DPI = 110


@cache
def environment() -> jinja2.Environment:
    """The package's Jinja environment: templates from ``reports/templates``, autoescape always on
    (patient text is data, never markup), undefined names raise instead of printing nothing."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("backcare_analytics.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class HtmlFragment:
    """A piece of report HTML made by an autoescaping template; shows itself in a notebook."""

    def __init__(self, markup: str, text: str = "") -> None:
        self.markup = Markup(markup)
        self.text = text

    def _repr_html_(self) -> str:
        return str(self.markup)

    def __repr__(self) -> str:
        return self.text or "<HtmlFragment>"


def html_fragment(source: str, /, **values: Any) -> HtmlFragment:
    """Render a small template string with autoescaping (for fragments not worth a file)."""
    return HtmlFragment(environment().from_string(source).render(**values))


def render_fragment(template: str, /, text: str = "", **values: Any) -> HtmlFragment:
    """Render ``reports/templates/<template>`` with autoescaping into a fragment."""
    return HtmlFragment(environment().get_template(template).render(**values), text=text)


class FigureOutput:
    """A finished figure: PNG bytes, an alternative text and its size on the page in CSS pixels
    (1/96 in: the figure's own size, so a 7.2 in figure fits an A4 text width and two small
    ones sit side by side); the matplotlib figure is closed."""

    def __init__(self, png: bytes, alt: str, width_px: int | None = None) -> None:
        self.png = png
        self.alt = alt
        self.width_px = width_px

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        data = {"image/png": base64.b64encode(self.png).decode("ascii"), "text/plain": self.alt}
        meta = {"image/png": {"width": self.width_px}} if self.width_px else {}
        return data, meta

    def __repr__(self) -> str:
        return self.alt


def show(ax_or_fig: Any, alt: str) -> FigureOutput:
    """Save the figure of ``ax_or_fig`` as a PNG, close it, and return it for display.

    Closing keeps a long-running kernel lean; the inline backend then shows nothing twice.
    """
    import matplotlib.pyplot as plt

    fig = getattr(ax_or_fig, "figure", ax_or_fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, facecolor="white")
    width_px = round(float(fig.get_figwidth()) * 96)
    plt.close(fig)
    return FigureOutput(buf.getvalue(), alt, width_px)
