"""Patient text is data, never markup: escaping, sanitising, links, file names, CSP."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from backcare_analytics.reports import tables
from backcare_analytics.reports.display import html_fragment, render_fragment
from backcare_analytics.reports.export import CSP, notebook_to_html, sanitize_html
from backcare_analytics.reports.render import overview_file_name, patient_file_name

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "{{7*7}}",
    '=HYPERLINK("http://evil.example","x")',
    "{% for x in range(3) %}loop{% endfor %}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_table_cells_are_escaped_text(payload: str) -> None:
    html = str(tables.html_table(pd.DataFrame({"Note": [payload], payload: ["x"]}))._repr_html_())
    assert "<script" not in html
    assert "<img" not in html and 'href="javascript' not in html
    assert "49" not in html and "looploop" not in html  # template syntax is not evaluated
    if "{{" in payload:
        assert "{{7*7}}" in html


@pytest.mark.parametrize("payload", PAYLOADS)
def test_fragments_escape_values(payload: str) -> None:
    notes = [{"day": "Mon 02 Mar", "source": "diary", "text": payload}]
    html = render_fragment("notes.html.j2", notes=notes)._repr_html_()
    assert "<script" not in html and "<img" not in html and "<a " not in html
    assert "49" not in html


def test_styler_escapes() -> None:
    html = tables.styled(pd.DataFrame({"n": ["<b>x</b>"]})).to_html()
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_sanitizer_drops_scripts_events_and_foreign_links() -> None:
    dirty = (
        '<p onclick="x()">ok</p><script>alert(1)</script><style>p{}</style>'
        '<a href="javascript:alert(1)">a</a><a href="https://evil.example/">b</a>'
        '<a href="patient-P1.html">c</a><img src="http://evil.example/x.png">'
        '<iframe src="x"></iframe>'
    )
    clean = str(sanitize_html(dirty))
    for bad in ("onclick", "<script", "<style", "javascript:", "https://", "<img", "<iframe"):
        assert bad not in clean
    assert '<a href="patient-P1.html">c</a>' in clean


def test_page_has_csp_no_code_and_no_network_loads() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("patient_id = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "secret_code()",
            outputs=[
                nbformat.v4.new_output(
                    "display_data",
                    data={
                        "text/html": "<p>" + "".join(PAYLOADS) + "</p>",
                        "text/plain": "x",
                    },
                ),
                nbformat.v4.new_output("stream", name="stdout", text="printed"),
            ],
        ),
        nbformat.v4.new_markdown_cell("## Title <script>bad()</script>"),
    ]
    page = notebook_to_html(nb, title="<t>")
    assert f'content="{CSP}"' in page
    assert "default-src 'none'" in CSP and "img-src data:" in CSP
    assert "secret_code" not in page and "patient_id = " not in page and "printed" not in page
    assert "<script" not in page
    assert not _active_markup(page)
    assert "<title>&lt;t&gt;</title>" in page
    for attr in ('src="http', "src='http", 'href="http', "url(http", "@import"):
        assert attr not in page


def test_file_names_come_from_validated_ids_only() -> None:
    assert patient_file_name("DEMO-001") == "patient-DEMO-001.html"
    assert patient_file_name("DEMO-001", "pdf") == "patient-DEMO-001.pdf"
    for bad in ("../x", "a/b", "", "x" * 65, "<script>", "-lead", "a b", "é"):
        with pytest.raises(ValueError):
            patient_file_name(bad)
    assert not overview_file_name().startswith("patient-")


def test_fragment_from_string_escapes() -> None:
    assert html_fragment("{{ v }}", v="<b>").markup == "&lt;b&gt;"


def _active_markup(page: str) -> list[str]:
    """Elements a browser would run: script/iframe/object tags, ``on*`` event attributes and
    ``javascript:`` URLs, found by parsing the page (not by searching its text)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Finder(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in ("script", "iframe", "object", "embed"):
                found.append(tag)
            for name, value in attrs:
                if name.lower().startswith("on"):
                    found.append(f"{tag}[{name}]")
                if value and value.strip().lower().startswith(("javascript:", "vbscript:")):
                    found.append(f"{tag}[{name}={value[:20]}]")

    Finder().feed(page)
    return found


def test_active_markup_finder_finds_what_it_looks_for() -> None:
    assert _active_markup('<img src=x onerror="alert(1)">') == ["img[onerror]"]
    assert _active_markup('<a href="javascript:alert(1)">x</a>') == ["a[href=javascript:alert(1)]"]
    assert _active_markup("<p>&lt;img onerror=alert(1)&gt;</p>") == []
