"""Every template executed for real (warm Jupyter kernels) on the demo clinic in a temp store:
the HTML holds the verdict, the flags, embedded images, no code, the CSP, no network loads and
the payload note as text; the PDF holds the verdict; a failing patient does not stop the batch."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import _report_clinic as clinic
import pytest

from backcare_analytics.reports.batch import BatchSummary, render_week
from backcare_analytics.reports.context import load_week
from backcare_analytics.vocabulary import FLAG_LABELS, VERDICT_LABELS

pytestmark = pytest.mark.slow
PATIENTS = [f"DEMO-{i:03d}" for i in range(1, 13)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BatchSummary]:
    tmp = tmp_path_factory.mktemp("reports")
    store = clinic.demo_store(tmp / "store.duckdb")
    summary = render_week(
        store,
        "latest",
        patients=[*PATIENTS, "NOT-ENROLLED"],
        formats=("html", "pdf"),
        out=tmp / "out",
        jobs=2,
        progress=False,
    )
    return store, summary


def _html(summary: BatchSummary, name: str) -> str:
    return (summary.out_dir / name).read_text(encoding="utf-8")


def test_every_report_rendered_and_the_failure_reported(rendered) -> None:
    _, summary = rendered
    ok = {r.label for r in summary.results if r.ok}
    assert ok == {f"patient {p}" for p in PATIENTS} | {"clinic overview"}
    (failed,) = summary.failed
    assert failed.label == "patient NOT-ENROLLED"
    assert failed.cell == 1 and "LookupError" in failed.error  # the cell that loads the week
    assert "FAILED in cell 1" in failed.describe()
    assert re.fullmatch(r"\d{4}-W\d{2}", summary.week)


def test_files_are_owner_only(rendered) -> None:
    _, summary = rendered
    files = sorted(summary.out_dir.iterdir())
    assert {f.name for f in files} >= {
        "patient-DEMO-001.html",
        "patient-DEMO-001.pdf",
        "clinic-overview.html",
        "clinic-overview.pdf",
    }
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


@pytest.mark.parametrize("pid", PATIENTS)
def test_weekly_html_shows_verdict_flags_images_and_no_code(rendered, pid: str) -> None:
    store, summary = rendered
    html = _html(summary, f"patient-{pid}.html")
    data = load_week(store, summary.week)
    row = data.overview.set_index("patient_id").loc[pid]
    assert VERDICT_LABELS[row["verdict"]] in html
    for flag in data.flags.loc[data.flags["patient_id"] == pid, "flag"]:
        assert FLAG_LABELS[flag] in html
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 5
    # Each figure shows at its size in inches (96 CSS px an inch): 3 wide (7.2 in), 2 small.
    widths = sorted(
        int(w)
        for w in re.findall(r'<img src="data:image/png;[^"]*" alt="[^"]*" width="(\d+)"', html)
    )
    assert widths == [336, 336, 691, 691, 691]
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    for code in ("load_patient_week", "from backcare", "show(", "pw.", "tags=", "In&nbsp;["):
        assert code not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html)
    assert "<script" not in html and "require.js" not in html and "MathJax" not in html
    assert "Appendix" in html and "dose_met_ratio" in html


def test_flags_reach_the_report(rendered) -> None:
    store, summary = rendered
    flags = load_week(store, summary.week).flags
    assert len(flags)  # the demo clinic plants flares, gaps and dropouts
    for row in flags.itertuples(index=False):
        html = _html(summary, f"patient-{row.patient_id}.html")
        assert FLAG_LABELS[row.flag] in html and row.detail in html


def test_payload_note_renders_as_text(rendered) -> None:
    _, summary = rendered
    html = _html(summary, "patient-DEMO-001.html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "{{7*7}}" in html and "=HYPERLINK(" in html
    assert "<img src=x" not in html and 'href="javascript' not in html


def test_overview_links_every_patient_in_attention_order(rendered) -> None:
    store, summary = rendered
    html = _html(summary, "clinic-overview.html")
    links = re.findall(r'<a href="(patient-[A-Za-z0-9_-]+\.html)">', html)
    order = load_week(store, summary.week).overview["patient_id"].tolist()
    assert links == [f"patient-{p}.html" for p in order]
    assert all((summary.out_dir / link).is_file() for link in links)


def test_pdf_has_pages_and_the_verdict(rendered) -> None:
    import pypdf

    store, summary = rendered
    reader = pypdf.PdfReader(summary.out_dir / "patient-DEMO-001.pdf")
    assert 2 <= len(reader.pages) <= 8
    text = " ".join(page.extract_text() for page in reader.pages)
    verdict = load_week(store, summary.week).overview.set_index("patient_id").loc["DEMO-001"]
    assert VERDICT_LABELS[verdict["verdict"]] in text
    assert "DEMO-001" in text
    assert reader.pages[0].mediabox.width == pytest.approx(595.28, abs=1)  # A4 portrait


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2026-13"], "week must be"),
        (["--format", "docx"], "--format takes"),
        (["--patient", "../etc"], "patient id must match"),
    ],
)
def test_cli_refuses_bad_arguments_before_rendering(rendered, capsys, args, message) -> None:
    from backcare_analytics.cli import main

    store, _ = rendered
    assert main(["report", "weekly", "--store", str(store), *args]) == 1
    assert message in capsys.readouterr().err


def test_getting_started_notebook_runs_on_the_store(rendered) -> None:
    import jupytext

    from backcare_analytics.reports.render import WarmKernel, parameterize

    store, _ = rendered
    root = Path(__file__).resolve().parents[1]
    nb = parameterize(
        jupytext.read(root / "notebooks" / "getting_started.py"),
        {"patient_id": "DEMO-001", "week": "latest", "store": str(store)},
    )
    kernel = WarmKernel(cwd=root / "notebooks")
    try:
        kernel.execute(nb)  # raises on the first failing cell
    finally:
        kernel.close()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
