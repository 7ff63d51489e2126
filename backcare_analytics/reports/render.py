"""Batch execution of report templates in warm kernels, and export to HTML and PDF.

Why it is shaped like this: starting a kernel and importing pandas, matplotlib and the package
costs seconds, and the papermill + nbconvert command lines pay that for every patient (about
10.8 s a report on our machines, FIELD-NOTES). Here each worker process starts one Jupyter
kernel once and keeps it warm; every notebook of the batch runs in it after a namespace reset,
so imports and the week's clinic-wide metrics (memoised in the kernel by
:mod:`backcare_analytics.reports.context`) are paid once per worker, not once per patient. The
outputs are assembled into our own autoescaping page (:mod:`~backcare_analytics.reports.export`),
so nbconvert is never imported. ``jobs`` workers run side by side (default: one per core).

A patient whose notebook fails is reported with the cell and the error, and the batch goes on.
Output files are readable by their owner only (``0o600``), written by temporary file and atomic
rename, never through a symlink (:mod:`backcare_analytics.safety`), and named from validated ids
only.
"""

from __future__ import annotations

import atexit
import copy
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from backcare_analytics.config import PROJECT_ROOT, shipped_dir
from backcare_analytics.lifetime import end_with, owned_temp_dir, remove_stale_temp_dirs
from backcare_analytics.safety import write_private_bytes, write_private_text
from backcare_analytics.schemas.clean import PATIENT_ID_PATTERN

__all__ = [
    "FORMATS",
    "KERNEL_DIR_PREFIX",
    "TEMPLATES_DIR",
    "RenderResult",
    "RenderTask",
    "WarmKernel",
    "clinic_task",
    "overview_file_name",
    "patient_file_name",
    "render_tasks",
    "weekly_task",
]

#: Where the report templates live (jupytext percent ``.py`` files; the paired ``.ipynb`` are
#: for JupyterLab users).
TEMPLATES_DIR = shipped_dir("templates")  # the checkout's, else the installed package's
FORMATS = ("html", "pdf")
_WEEK = re.compile(r"^\d{4}-W\d{2}$")
_PATIENT = re.compile(PATIENT_ID_PATTERN)
_CELL_TIMEOUT_S = 300
#: Name prefix of a kernel's socket folder in the temporary folder (the owner's pid follows).
KERNEL_DIR_PREFIX = "backcare-kernel-"


def patient_file_name(patient_id: str, ext: str = "html") -> str:
    """File name of a patient's weekly report, from a validated id only.

    >>> patient_file_name("P-007")
    'patient-P-007.html'
    >>> patient_file_name("../etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: a patient id must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$; received an id of 13 characters that does not
    """
    if not isinstance(patient_id, str) or not _PATIENT.fullmatch(patient_id):
        n = len(patient_id) if isinstance(patient_id, str) else 0
        raise ValueError(
            f"a patient id must match {PATIENT_ID_PATTERN}; received an id of {n} characters "
            "that does not"
        )
    if ext not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; received {ext!r}")
    return f"patient-{patient_id}.{ext}"


def overview_file_name(ext: str = "html") -> str:
    """File name of the clinic overview (cannot collide with ``patient-*`` names)."""
    return f"clinic-overview.{ext}"


@dataclass(frozen=True)
class RenderTask:
    """One notebook to execute and export: template, parameters and where the files go."""

    template: str
    parameters: dict[str, str]
    out_dir: str
    stem: str
    title: str
    formats: tuple[str, ...] = ("html",)
    label: str = ""


@dataclass(frozen=True)
class RenderResult:
    """What happened to one task: the files written, or the failing cell and the error."""

    label: str
    ok: bool
    paths: tuple[str, ...] = ()
    seconds: float = 0.0
    cell: int | None = None
    cell_source: str = ""
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people: where the report is, or which cell failed and why."""
        if self.ok:
            return f"{self.label}: " + ", ".join(self.paths)
        where = f"cell {self.cell} ({self.cell_source})" if self.cell is not None else "setup"
        return f"{self.label}: FAILED in {where}: {self.error}"


def _check_week(week: str) -> str:
    if not _WEEK.match(week):
        raise ValueError(f"week must look like 2026-W10; received {week!r}")
    return week


def weekly_task(
    patient_id: str, week: str, store: Path, out: Path, formats: Sequence[str] = ("html",)
) -> RenderTask:
    """The task rendering one patient's weekly report into ``out/<week>/``."""
    stem = patient_file_name(patient_id).removesuffix(".html")
    return RenderTask(
        template="weekly_patient_report",
        parameters={"patient_id": patient_id, "week": _check_week(week), "store": str(store)},
        out_dir=str(Path(out) / week),
        stem=stem,
        title=f"Weekly report {week} - patient {patient_id}",
        formats=tuple(formats),
        label=f"patient {patient_id}",
    )


def clinic_task(
    week: str, store: Path, out: Path, formats: Sequence[str] = ("html",)
) -> RenderTask:
    """The task rendering the clinic overview of a week into ``out/<week>/``."""
    return RenderTask(
        template="clinic_overview",
        parameters={"week": _check_week(week), "store": str(store)},
        out_dir=str(Path(out) / week),
        stem=overview_file_name().removesuffix(".html"),
        title=f"Clinic overview {week}",
        formats=tuple(formats),
        label="clinic overview",
    )


# ---------------------------------------------------------------------------------------------
# notebooks
# ---------------------------------------------------------------------------------------------


@cache
def _template_notebook(path: str, _mtime_ns: int) -> Any:
    import jupytext

    return jupytext.read(path, fmt="py:percent")


def load_template(name: str) -> Any:
    """The template notebook ``notebooks/templates/<name>.py`` (parsed once per process)."""
    path = TEMPLATES_DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"report template {path} is missing; fix: restore it from git")
    return _template_notebook(str(path), path.stat().st_mtime_ns)


#: Run before each notebook: forget the previous notebook's variables (modules stay imported,
#: and the package's memoised week data stays warm). Cheaper than ``%reset -f``, which also
#: collects garbage and clears the history (0.4 s a notebook on a loaded machine).
_RESET = (
    "_ip = get_ipython()\n"
    "for _k in [k for k in _ip.user_ns if not k.startswith('_') and k not in _ip.user_ns_hidden]:\n"
    "    del _ip.user_ns[_k]\n"
    "import matplotlib.pyplot as _plt\n_plt.close('all')\ndel _plt, _ip, _k"
)


def parameterize(template: Any, parameters: dict[str, str]) -> Any:
    """A copy of ``template`` with a namespace reset first and the parameters injected after
    the cell tagged ``parameters`` (papermill's convention; values are written with ``repr``
    of plain strings)."""
    import nbformat

    nb = copy.deepcopy(template)
    lines = [f"{key} = {str(value)!r}" for key, value in parameters.items()]
    injected = nbformat.v4.new_code_cell(
        "# Parameters\n" + "\n".join(lines), metadata={"tags": ["injected-parameters"]}
    )
    at = next(
        (
            i + 1
            for i, c in enumerate(nb.cells)
            if "parameters" in c.get("metadata", {}).get("tags", [])
        ),
        0,
    )
    nb.cells.insert(at, injected)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_RESET, metadata={"tags": ["remove-cell"]}))
    return nb


def _error_text(ename: object, evalue: object) -> str:
    """The error of a failed cell for people. Only our own errors' messages are shown: they are
    written to name files, rows and columns, never patient values; any other exception's message
    (a pandas error quoting a cell, say) may hold a patient's text and is withheld."""
    from backcare_analytics import errors

    if isinstance(ename, str) and ename in errors.__all__:
        return f"{ename}: {evalue}"[:300]
    return f"{ename} (message withheld: it may quote patient data; rerun the notebook to see it)"


def _failed_cell(nb: Any) -> tuple[int | None, str, str]:
    """Index (among the template's code cells), first source line and error of the failed cell."""
    code_index = -1
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code" or tags & {"remove-cell", "injected-parameters"}:
            continue
        code_index += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                return code_index, first[:80], _error_text(out.get("ename"), out.get("evalue"))
    return None, "", ""


class WarmKernel:
    """One Jupyter kernel kept alive across notebooks (Agg backend, package pre-imported)."""

    def __init__(self, cwd: Path | None = None) -> None:
        import nbformat
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient

        env = {**os.environ, "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        # Unix sockets in an owner-only folder, not localhost TCP: report data never crosses
        # a network interface, even the loopback one. The connection file goes there too, and
        # the folder is named after this process, so one left by a kill is removed at the next
        # batch (:func:`render_tasks`). The kernel ends with this process by itself (ipykernel
        # polls the parent named by ``JPY_PARENT_PID``, which jupyter_client sets).
        self._sockets = str(owned_temp_dir(KERNEL_DIR_PREFIX))
        self.km = KernelManager(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(self._sockets, "k"),
            connection_file=os.path.join(self._sockets, "kernel.json"),
        )
        self.km.start_kernel(env=env, cwd=str(cwd or PROJECT_ROOT))
        self.client = NotebookClient(
            nbformat.v4.new_notebook(),
            km=self.km,
            timeout=_CELL_TIMEOUT_S,
            startup_timeout=120,
            kernel_name="python3",
            allow_errors=False,
        )
        warm = nbformat.v4.new_notebook()
        warm.cells.append(
            nbformat.v4.new_code_cell(
                "import backcare_analytics.reports.context, backcare_analytics.plots"
            )
        )
        self.execute(warm)

    def execute(self, nb: Any) -> Any:
        """Execute ``nb`` in place in the warm kernel; raises nbclient's errors."""
        self.client.nb = nb
        self.client.execute()
        return nb

    def alive(self) -> bool:
        return bool(self.km.is_alive())

    def close(self) -> None:
        try:
            if self.client.kc is not None:
                self.client.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        except Exception:  # pragma: no cover - best effort at exit
            pass
        shutil.rmtree(self._sockets, ignore_errors=True)


def run_task(kernel: WarmKernel, task: RenderTask) -> RenderResult:
    """Execute one task's notebook in ``kernel`` and write its files; never raises for a
    failing notebook (the result carries the cell and the error)."""
    from backcare_analytics.reports.export import notebook_to_html

    t0 = time.perf_counter()
    try:
        nb = parameterize(load_template(task.template), task.parameters)
    except Exception as exc:
        return RenderResult(task.label, False, error=f"{type(exc).__name__}: {exc}"[:300])
    try:
        kernel.execute(nb)
    except Exception as exc:
        cell, source, error = _failed_cell(nb)
        return RenderResult(
            task.label,
            False,
            seconds=time.perf_counter() - t0,
            cell=cell,
            cell_source=source,
            error=error or f"{type(exc).__name__}: {str(exc)[:200]}",
        )
    t1 = time.perf_counter()
    footer = task.title
    html = notebook_to_html(nb, title=task.title, footer=footer)
    out = Path(task.out_dir)
    paths = []
    if "html" in task.formats:
        path = out / f"{task.stem}.html"
        write_private_text(path, html)
        paths.append(str(path))
    t2 = time.perf_counter()
    if "pdf" in task.formats:
        from backcare_analytics.reports.pdf import html_to_pdf

        path = out / f"{task.stem}.pdf"
        write_private_bytes(path, html_to_pdf(html))
        paths.append(str(path))
    t3 = time.perf_counter()
    return RenderResult(
        task.label,
        True,
        paths=tuple(paths),
        seconds=t3 - t0,
        timings={"execute_s": t1 - t0, "html_s": t2 - t1, "pdf_s": t3 - t2},
    )


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------

_KERNEL: WarmKernel | None = None


def _start_worker_kernel() -> None:
    global _KERNEL
    _KERNEL = WarmKernel()
    atexit.register(_KERNEL.close)


def _worker_init(owner_pid: int) -> None:
    end_with(owner_pid)  # the worker, and so its kernel, ends when the batch's process does
    _start_worker_kernel()


def _worker_run(task: RenderTask) -> RenderResult:
    if _KERNEL is None or not _KERNEL.alive():
        _start_worker_kernel()
    assert _KERNEL is not None  # for the type checker; set just above
    return run_task(_KERNEL, task)


def render_tasks(
    tasks: Iterable[RenderTask],
    *,
    jobs: int | None = None,
    on_result: Callable[[RenderResult], None] | None = None,
) -> list[RenderResult]:
    """Execute and export every task on ``jobs`` warm kernels (default: one per core).

    Results come back in completion order; ``on_result`` is called as each one finishes (the
    CLI's progress bar). A failing task never stops the others.
    """
    todo = list(tasks)
    if not todo:
        return []
    remove_stale_temp_dirs(KERNEL_DIR_PREFIX)  # kernel sockets left by a killed batch
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    results: list[RenderResult] = []
    if jobs == 1:
        kernel = WarmKernel()
        try:
            for task in todo:
                result = run_task(kernel, task)
                if not kernel.alive():
                    kernel.close()
                    kernel = WarmKernel()
                results.append(result)
                if on_result:
                    on_result(result)
        finally:
            kernel.close()
        return results
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    ) as pool:
        futures = {pool.submit(_worker_run, task): task for task in todo}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a worker died: report and go on
                result = RenderResult(
                    futures[future].label, False, error=f"worker failed: {type(exc).__name__}"
                )
            results.append(result)
            if on_result:
                on_result(result)
    return results
