"""The week's batch: which patients, which files, a progress bar, and a summary for people.

The ``backcare report`` and ``backcare demo`` commands are thin faces over :func:`render_week`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backcare_analytics.reports.render import (
    FORMATS,
    RenderResult,
    RenderTask,
    clinic_task,
    patient_file_name,
    render_tasks,
    weekly_task,
)
from backcare_analytics.safety import private_folder

if TYPE_CHECKING:
    from backcare_analytics.store import Store

__all__ = ["BatchSummary", "parse_formats", "render_week", "run_demo", "week_patients"]


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did: the week, the output folder, every result, and the wall time."""

    week: str
    out_dir: Path
    results: tuple[RenderResult, ...]
    seconds: float

    @property
    def failed(self) -> tuple[RenderResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def rendered(self) -> int:
        return sum(r.ok for r in self.results)

    def lines(self) -> list[str]:
        """Human summary: counts, time, where the files are, then each failure."""
        out = [
            f"week {self.week}: {self.rendered} report(s) rendered, {len(self.failed)} failed, "
            f"in {self.seconds:.1f} s -> {self.out_dir}"
        ]
        out += [r.describe() for r in self.failed]
        return out


def parse_formats(text: str) -> tuple[str, ...]:
    """``"html,pdf"`` -> ``("html", "pdf")``; refuses anything else.

    >>> parse_formats("pdf, html")
    ('html', 'pdf')
    """
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = wanted - set(FORMATS)
    if not wanted or unknown:
        raise ValueError(f"--format takes html, pdf or html,pdf; received {text!r}")
    return tuple(f for f in FORMATS if f in wanted)


def week_patients(store: Store | Path | str, week: str) -> list[str]:
    """Ids of the patients enrolled by the end of ``week`` (the batch of a clinic week)."""
    from backcare_analytics.metrics.params import Window
    from backcare_analytics.store import Store

    end = Window.iso_week(week).end
    pts = Store.of(store).patients()
    return sorted(pts.loc[pts["programme_start"] <= end, "patient_id"].astype(str))


def render_week(
    store: Store | Path | str,
    week: str = "latest",
    *,
    patients: Sequence[str] | None = None,
    formats: Sequence[str] = ("html",),
    out: Path = Path("reports"),
    jobs: int | None = None,
    weekly: bool = True,
    clinic: bool = True,
    progress: bool | None = None,
) -> BatchSummary:
    """Render the week's weekly reports and/or the clinic overview into ``out/<week>/``.

    Parameters
    ----------
    store
        The store, or its DuckDB file (opened with :meth:`Store.of`). Report kernels get its
        path.
    week
        ``YYYY-Www`` or ``"latest"``.
    patients
        Only these patient ids (default: every patient enrolled by the week's end).
    formats
        ``("html",)``, ``("pdf",)`` or both.
    out
        Parent folder; files go to ``out/<week>/`` (created owner-only; a symlink or a folder
        others may write is refused, see :func:`backcare_analytics.safety.private_folder`).
    jobs
        Warm kernels side by side (default: one per core).
    weekly, clinic
        Which reports to render.
    progress
        Show a progress bar (default: only when standard error is a terminal).
    """
    from backcare_analytics.reports.context import resolve_week
    from backcare_analytics.store import Store

    st = Store.of(store)
    path = st.path.resolve()  # what crosses into the report kernels
    if not path.is_file():
        raise FileNotFoundError(f"store {path} not found; fix: import exports or pass --store")
    label = resolve_week(st, week)
    ids = list(patients) if patients else (week_patients(st, label) if weekly else [])
    for pid in ids:
        patient_file_name(pid)  # refuses a malformed id before anything runs
    for folder in (Path(out), Path(out) / label):  # owner-only, never through a link
        private_folder(folder)  # refused before anything runs
    tasks: list[RenderTask] = []
    if weekly:
        tasks += [weekly_task(pid, label, path, out, formats) for pid in ids]
    if clinic:
        tasks.append(clinic_task(label, path, out, formats))
    show = sys.stderr.isatty() if progress is None else progress
    t0 = time.perf_counter()
    if show and tasks:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            job = bar.add_task(f"rendering {label}", total=len(tasks))
            results = render_tasks(tasks, jobs=jobs, on_result=lambda r: bar.advance(job))
    else:
        results = render_tasks(tasks, jobs=jobs)
    return BatchSummary(label, Path(out) / label, tuple(results), time.perf_counter() - t0)


def run_demo(out: Path = Path("build/demo"), *, formats: Sequence[str] = ("html",)) -> list[str]:
    """The main job on the synthetic demo clinic: take (or generate) it, import it into a fresh
    store under ``out``, render every weekly report of its latest week and the clinic overview.

    Returns the lines to print: what was imported, where the reports are, any failure.
    """
    import shutil

    from backcare_analytics.config import get_settings
    from backcare_analytics.io.importer import import_paths
    from backcare_analytics.store import Store

    out = private_folder(out)
    clinic = get_settings().examples_dir / "clinic"
    lines: list[str] = []
    if not (clinic / "exports").is_dir():
        from backcare_analytics.synth import SynthConfig, generate_clinic

        clinic = out / "clinic"
        generate_clinic(SynthConfig(), clinic)
        lines.append(f"generated the demo clinic in {clinic}")
    store_path = out / "backcare.duckdb"
    for old in (store_path, store_path.with_name(store_path.name + ".wal")):
        old.unlink(missing_ok=True)
    shutil.rmtree(store_path.with_name(store_path.name + ".raw"), ignore_errors=True)
    t0 = time.perf_counter()
    store = Store(store_path)
    report = import_paths([clinic / "exports"], store)
    totals = next(
        (ln for ln in reversed(report.summary().splitlines()) if ln.startswith("imported")), ""
    )
    lines.append(f"{totals} ({time.perf_counter() - t0:.1f} s) -> {store_path}")
    if report.totals.get("rejected"):
        lines.append(
            f"refused rows are planted on purpose; see why: backcare rejects --store {store_path}"
        )
    summary = render_week(store, "latest", formats=formats, out=out / "reports")
    lines += summary.lines()
    index = summary.out_dir / "clinic-overview.html"
    if index.is_file():
        lines.append(f"open {index.resolve()} (links to every patient's report)")
    return lines
