"""Executed notebook -> one self-contained HTML page (and, from it, a PDF).

Only the outputs are kept: code is never shown. Images are embedded as ``data:`` URIs; HTML
outputs pass through an allowlist sanitiser (no scripts, no event attributes, no
``javascript:`` links) on top of being produced by autoescaping templates; the page carries a
Content-Security-Policy that forbids scripts and every network load, so the file opens safely
from disk or an e-mail attachment and calls out to nothing.

>>> import nbformat
>>> nb = nbformat.v4.new_notebook()
>>> nb.cells.append(nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
...     "display_data", data={"text/html": "<p onclick='x()'>hi<script>bad()</script></p>"})]))
>>> page = notebook_to_html(nb, title="t")
>>> "onclick" in page, "<script" in page, CSP in page
(False, False, True)
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import bleach
from markupsafe import Markup

from backcare_analytics.reports.display import environment, package_version

__all__ = ["CSP", "notebook_blocks", "notebook_to_html", "sanitize_html"]

#: No scripts, no network: images only from data URIs, styles only inline.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

_TAGS = frozenset(
    {
        "a", "abbr", "b", "br", "caption", "code", "col", "colgroup", "dd", "details", "div",
        "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "hr", "i",
        "li", "ol", "p", "pre", "section", "small", "span", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_ATTRS = {
    "*": ["class", "id", "title", "lang"],
    "a": ["href", "class", "title"],
    "td": ["class", "colspan", "rowspan"],
    "th": ["class", "colspan", "rowspan", "scope"],
}
#: Links may only be relative (a file name next to the report) or in-page anchors: bleach lets
#: scheme-less URLs through only when "http" is allowed, and ``_SAFE_HREF`` refuses any scheme.
_PROTOCOLS: frozenset[str] = frozenset({"http"})
_SAFE_HREF = re.compile(r"^(#[A-Za-z0-9_-]*|[A-Za-z0-9][A-Za-z0-9_.-]*\.(html|pdf))$")


def _href_filter(tag: str, name: str, value: str) -> bool:
    if name == "href":
        return bool(_SAFE_HREF.match(value))
    return name in _ATTRS.get(tag, []) or name in _ATTRS["*"]


@cache
def _cleaner() -> bleach.sanitizer.Cleaner:
    return bleach.sanitizer.Cleaner(
        tags=_TAGS,
        attributes=_href_filter,
        protocols=_PROTOCOLS,
        strip=True,
        strip_comments=True,
    )


def sanitize_html(markup: str) -> Markup:
    """Keep an allowlist of tags and attributes; drop scripts, styles, events and any link
    that is not a relative ``*.html``/``*.pdf`` file name or an in-page anchor.

    >>> str(sanitize_html('<a href="javascript:alert(1)">x</a><a href="patient-P1.html">y</a>'))
    '<a>x</a><a href="patient-P1.html">y</a>'
    """
    cleaned = _cleaner().clean(markup)
    # bleach keeps the text of stripped <script>/<style> elements; drop their bodies as well.
    return Markup(cleaned)


_SCRIPT_BODY = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


@cache
def _markdown() -> Any:
    import mistune

    return mistune.create_markdown(escape=True)


def notebook_blocks(nb: Any) -> list[dict[str, Any]]:
    """The displayable blocks of an executed notebook, in order, without any code.

    Markdown cells are rendered (raw HTML in them escaped); for each code-cell output the
    richest safe representation is kept: PNG, then HTML, then plain text. Cells tagged
    ``parameters``, ``injected-parameters`` or ``remove-output`` show nothing; streams
    (prints, warnings) are left out of the report.
    """
    blocks: list[dict[str, Any]] = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & {"parameters", "injected-parameters", "remove-output", "remove-cell"}:
            continue
        if cell.cell_type == "markdown":
            blocks.append({"kind": "markdown", "markup": Markup(_markdown()(cell.source))})
            continue
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = out.get("data", {})
            if "image/png" in data:
                width = out.get("metadata", {}).get("image/png", {}).get("width")
                blocks.append(
                    {
                        "kind": "image",
                        "mime": "image/png",
                        "data": "".join(str(data["image/png"]).split()),
                        "alt": str(data.get("text/plain", "figure")),
                        "width": int(width) if isinstance(width, int | float) else None,
                    }
                )
            elif "text/html" in data:
                raw = data["text/html"]
                raw = "".join(raw) if isinstance(raw, list) else str(raw)
                blocks.append({"kind": "html", "markup": sanitize_html(_SCRIPT_BODY.sub("", raw))})
            elif "text/plain" in data:
                blocks.append({"kind": "text", "text": str(data["text/plain"])})
    return blocks


def notebook_to_html(nb: Any, *, title: str, footer: str = "") -> str:
    """One self-contained HTML page (CSP, embedded images, no code) from an executed notebook."""
    page = environment().get_template("page.html.j2")
    return page.render(
        csp=Markup(CSP),  # our constant; quotes stay literal for the browser and for tests
        title=title,
        footer=footer,
        version=package_version(),
        blocks=_figure_rows(notebook_blocks(nb)),
    )


def _figure_rows(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive images as one block that never splits over pages (small ones side by side),
    taking the markdown heading just before them along, so no heading ends a page alone."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block["kind"] != "image":
            out.append(block)
        elif out and out[-1]["kind"] == "figures":
            out[-1]["images"].append(block)
        else:
            lead = out.pop()["markup"] if out and out[-1]["kind"] == "markdown" else None
            out.append({"kind": "figures", "lead": lead, "images": [block]})
    return out
