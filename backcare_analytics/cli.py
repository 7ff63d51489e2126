"""The ``backcare`` command: a thin face over the package's functions.

Exit codes: 0 done and everything accepted; 2 finished but some input was refused; 1 could not
run (bad arguments, store busy, a broken protocol, a full or read-only disk). Errors are printed
as one plain message (what, what was received, how to fix it), never as a traceback, and never
carry patient values; with ``--json`` stdout holds ``{"error": ..., "reason": ...}``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backcare_analytics.errors import BackcareError

if TYPE_CHECKING:
    from backcare_analytics.store import Store

app = typer.Typer(
    name="backcare",
    help="Import home-exercise logs for low back pain, compute adherence and pain trends, "
    "and render clinic reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 2

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", help="DuckDB store file (default: data/backcare.duckdb or $BACKCARE_STORE)."
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"backcare: error: {message}", err=True)
    return typer.Exit(EXIT_FAILED)


# ---------------------------------------------------------------------------------------------
# synthetic clinic (issue: foundation)
# ---------------------------------------------------------------------------------------------


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the exports into.")],
    patients: Annotated[int, typer.Option("--patients", min=1, max=1_000_000)] = 12,
    weeks: Annotated[int, typer.Option("--weeks", min=1, max=104)] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    bad_share: Annotated[
        float, typer.Option("--bad-share", min=0.0, max=0.5, help="Share of rows planted bad.")
    ] = 0.01,
    start: Annotated[
        str, typer.Option("--start", help="First programme start day, YYYY-MM-DD.")
    ] = "2026-01-05",
) -> None:
    """Write a synthetic clinic's exports with planted ground truth (same seed, same bytes)."""
    from datetime import date

    from backcare_analytics.synth import SynthConfig, generate_clinic

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise _fail(f"--start expects YYYY-MM-DD; received {start!r}") from None
    cfg = SynthConfig(patients=patients, weeks=weeks, seed=seed, bad_share=bad_share, start=first)
    summary = generate_clinic(cfg, out)
    typer.echo(
        f"wrote {summary.files} files for {patients} patients x {weeks} weeks to {out} "
        f"({summary.session_rows} session rows, {summary.pain_rows} diary rows, "
        f"{summary.bad_rows} planted bad rows)"
    )


# ---------------------------------------------------------------------------------------------
# the main job
# ---------------------------------------------------------------------------------------------


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Working folder for the demo.")] = Path(
        "build/demo"
    ),
) -> None:
    """The main job on the synthetic demo clinic: import it into a store under --out, render
    every weekly report of its latest week and the clinic overview (HTML; PDFs with
    ``backcare report weekly --format html,pdf``)."""
    from backcare_analytics.reports.batch import run_demo

    lines = run_demo(out)
    for line in lines:
        typer.echo(line)
    if any("FAILED" in line for line in lines):
        raise typer.Exit(EXIT_FAILED)


# ---------------------------------------------------------------------------------------------
# import, validate, rejects, rebuild (issue 3; see docs/import.md)
# ---------------------------------------------------------------------------------------------

PathsArg = Annotated[list[Path], typer.Argument(help="Export files or folders (recursive).")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def _open_store(store: Path | None) -> Store:
    """The store the ``--store`` option names, else the configured one: the one resolver
    every command uses (:meth:`Store.of`)."""
    from backcare_analytics.store import Store

    return Store.of(store)


def _say(message: str) -> None:
    """A note on stderr (e.g. waiting for another writer of the store)."""
    typer.echo(f"backcare: {message}", err=True)


def _json_error(exc: BackcareError, **extra: object) -> str:
    """``{"error": message, "reason": code?, ...}``: what a --json command prints instead of
    its result when it cannot run."""
    import json

    reason = getattr(exc, "reason", None)
    return json.dumps({"error": str(exc), **({"reason": reason} if reason else {}), **extra})


def _import_command(paths: list[Path], store: Path | None, as_json: bool, dry_run: bool) -> None:
    import json

    from backcare_analytics.io.import_report import progress_bar
    from backcare_analytics.io.importer import import_paths

    bar = sys.stdout.isatty() and sys.stderr.isatty() and not as_json
    try:
        with progress_bar(bar, "validating" if dry_run else "importing") as progress:
            report = import_paths(
                paths, _open_store(store), dry_run=dry_run, progress=progress, on_wait=_say
            )
    except BackcareError as exc:
        partial = getattr(exc, "report", None)  # files done before the batch was stopped
        if as_json:
            typer.echo(_json_error(exc, **(partial.to_json() if partial else {})))
        elif partial is not None:
            typer.echo(partial.summary())
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(report.to_json()) if as_json else report.summary())
    raise typer.Exit(report.exit_code)


@app.command("import")
def import_(paths: PathsArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Import exports into the store: every row accepted, counted as a duplicate, or
    quarantined with its reason; each file all or nothing. Exit 0 all accepted, 2 some refused."""
    _import_command(paths, store, as_json, dry_run=False)


@app.command()
def validate(paths: PathsArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Check exports as `import` would, against the store's patients, without writing."""
    _import_command(paths, store, as_json, dry_run=True)


@app.command()
def rejects(
    store: StoreOption = None,
    file: Annotated[
        str | None, typer.Option("--file", help="One file's SHA-256 (or its first 8+ chars).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """What was quarantined and why: reasons per file and column, and the rows (no values)."""
    import json

    from backcare_analytics.io.import_report import rejects_summary, rejects_text

    if file is not None and len(file) < 8:
        raise _fail(f"--file expects a SHA-256 or its first 8+ characters; received {file!r}")
    st = _open_store(store)
    try:
        summary = rejects_summary(st.rejects(), st.imports(), file)
    except BackcareError as exc:
        if as_json:
            typer.echo(_json_error(exc))
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(summary) if as_json else rejects_text(summary))


@app.command()
def rebuild(
    store: StoreOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the store even if the rebuilt one has fewer rows."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recreate the store from every file in the raw archive; the old file is kept as a
    numbered backup (.bak, .bak.1, ...). Refuses to shrink the store unless --force."""
    import json

    from backcare_analytics.io.importer import rebuild as rebuild_store

    try:
        result = rebuild_store(_open_store(store), force=force, on_wait=_say)
    except BackcareError as exc:
        if as_json:
            typer.echo(_json_error(exc))
        raise _fail(str(exc)) from None
    if as_json:
        doc = {**result.report.to_json(), "backup": str(result.backup) if result.backup else None,
               "before": result.before, "after": result.after}  # fmt: skip
        typer.echo(json.dumps(doc))
    else:
        typer.echo(result.summary())


# ---------------------------------------------------------------------------------------------
# research exports (issue 6; see docs/research.md)
# ---------------------------------------------------------------------------------------------

export_app = typer.Typer(help="De-identified research exports.", no_args_is_help=True)
app.add_typer(export_app, name="export")
KeyFileOption = Annotated[
    Path,
    typer.Option("--key-file", help="The study's secret key: outside the repo and the store."),
]


@export_app.command("research")
def export_research(
    out: Annotated[Path, typer.Option("--out", help="Folder for the Parquet and CSV files.")],
    key_file: KeyFileOption,
    store: StoreOption = None,
    new_key: Annotated[
        bool, typer.Option("--new-key", help="Create the key file first (refused if it exists).")
    ] = False,
) -> None:
    """Write de-identified Parquet and CSV: keyed pseudonyms, study days, no free text."""
    from backcare_analytics.research.export import export_research_from_store

    result = export_research_from_store(_open_store(store), out, key_file, create_key=new_key)
    rows = ", ".join(f"{len(df)} {name}" for name, df in result.tables.items())
    typer.echo(f"wrote {out}: {rows} (key fingerprint {result.key_fingerprint})")


@export_app.command("new-key")
def export_new_key(
    key_file: Annotated[Path, typer.Argument(help="Where to create the key (mode 0600).")],
) -> None:
    """Create a per-study secret key: 32 random bytes, readable by you only."""
    from backcare_analytics.research.export import key_fingerprint, load_key, new_key

    path = new_key(key_file)
    typer.echo(f"created {path} (fingerprint {key_fingerprint(load_key(path))}); keep it safe")


# ---------------------------------------------------------------------------------------------
# reports (issue 5; see docs/reports.md)
# ---------------------------------------------------------------------------------------------

report_app = typer.Typer(
    help="Render weekly patient reports and the clinic overview (HTML, PDF).",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")
WeekOption = Annotated[str, typer.Option("--week", help="YYYY-Www, or 'latest' (default).")]
FormatOption = Annotated[str, typer.Option("--format", help="html, pdf or html,pdf.")]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Parent folder (default: reports/); files in a folder named after the week (2026-W15/).",
    ),
]
JobsOption = Annotated[
    int | None, typer.Option("--jobs", min=1, max=64, help="Warm kernels (default: one per core).")
]


def _report_command(
    store: Path | None,
    week: str,
    patients: list[str] | None,
    fmt: str,
    out: Path | None,
    jobs: int | None,
    *,
    weekly: bool,
    clinic: bool,
) -> None:
    from backcare_analytics.config import get_settings
    from backcare_analytics.reports.batch import parse_formats, render_week

    settings = get_settings()
    try:
        summary = render_week(
            _open_store(store),
            week,
            patients=patients or None,
            formats=parse_formats(fmt),
            out=out or settings.reports_dir,
            jobs=jobs,
            weekly=weekly,
            clinic=clinic,
        )
    except (ValueError, LookupError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    for line in summary.lines():
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


@report_app.command("weekly")
def report_weekly(
    store: StoreOption = None,
    week: WeekOption = "latest",
    patient: Annotated[
        list[str] | None, typer.Option("--patient", help="Only this patient (repeatable).")
    ] = None,
    fmt: FormatOption = "html",
    out: OutOption = None,
    jobs: JobsOption = None,
) -> None:
    """Weekly patient reports of a week, one per patient, in warm kernels on every core."""
    _report_command(store, week, patient, fmt, out, jobs, weekly=True, clinic=False)


@report_app.command("clinic")
def report_clinic(
    store: StoreOption = None,
    week: WeekOption = "latest",
    fmt: FormatOption = "html",
    out: OutOption = None,
) -> None:
    """The clinic overview of a week: every patient, who needs attention first."""
    _report_command(store, week, None, fmt, out, 1, weekly=False, clinic=True)


# ---------------------------------------------------------------------------------------------
# metric tables (issue 4; see docs/metrics.md)
# ---------------------------------------------------------------------------------------------


@app.command("metrics")
def metrics_(
    out: Annotated[Path, typer.Option("--out", help="Folder for the tables (created).")],
    store: StoreOption = None,
    patient: Annotated[
        list[str] | None, typer.Option("--patient", help="Only this patient (repeatable).")
    ] = None,
    week: Annotated[
        str | None, typer.Option("--week", help="YYYY-Www: that ISO week (default: all days).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", min=1, help="Worker processes over patient partitions (default: cores)."
        ),
    ] = None,
) -> None:
    """Compute every metric table from the store; write each as CSV and Parquet."""
    from backcare_analytics.metrics.params import Window
    from backcare_analytics.metrics.quality import reject_counts
    from backcare_analytics.metrics.run import metric_tables_from_store
    from backcare_analytics.safety import open_private, private_folder, write_csv

    try:
        window = Window.iso_week(week) if week else None
    except ValueError as exc:
        raise _fail(f"--week: {exc}") from None
    st = _open_store(store)
    if not st.exists():
        raise _fail(f"{st.path}: no store there; fix: run `backcare import` first or pass --store")
    private_folder(out)  # metric tables hold patient data: owner-only, never through a link
    ids = list(dict.fromkeys(patient)) if patient else None
    patients = st.patients()
    if ids is not None:
        unknown = sorted(set(ids) - set(patients["patient_id"]))
        if unknown:
            raise _fail(f"--patient: {len(unknown)} id(s) not registered in the store")
        patients = patients[patients["patient_id"].isin(ids)].reset_index(drop=True)
    tables = metric_tables_from_store(
        st, ids, jobs=jobs, rejects=reject_counts(st.rejects()), window=window
    )
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
        with open_private(out / f"{name}.parquet") as fh:
            table.to_parquet(fh, index=False)
    typer.echo(
        f"wrote {len(tables)} tables for {len(patients)} patients"
        f"{' (' + window.label + ')' if window else ''} to {out} as CSV and Parquet: "
        + ", ".join(tables)
    )


def _environment_failure(exc: Exception) -> BackcareError | None:
    """A failure of the machine rather than of the program (a DuckDB I/O or fatal error, a
    full or read-only disk) as a :class:`StoreError` with advice; None for anything else,
    which stays a traceback (a bug to report)."""
    import errno

    import duckdb

    from backcare_analytics.store.db import environment_error

    disk = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
    if isinstance(exc, duckdb.IOException | duckdb.FatalException) or (
        isinstance(exc, OSError) and exc.errno in disk
    ):
        where = getattr(exc, "filename", None) or "a file of the store or an output"
        return environment_error(exc, where)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``backcare`` console script."""
    try:
        # standalone_mode=False makes click *return* a typer.Exit's code instead of raising
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code != EXIT_OK:
            return code
    except typer.Exit as exc:
        return exc.exit_code
    except BackcareError as exc:
        typer.echo(f"backcare: error: {exc}", err=True)
        return EXIT_FAILED
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("backcare: interrupted", err=True)
        return EXIT_FAILED
    except typer.TyperException as exc:  # usage errors: bad or missing arguments
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return EXIT_FAILED
    except Exception as exc:
        error = _environment_failure(exc)
        if error is None:
            raise
        if "--json" in (sys.argv[1:] if argv is None else argv):
            typer.echo(_json_error(error))
        typer.echo(f"backcare: error: {error}", err=True)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
