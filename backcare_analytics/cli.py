"""The ``backcare`` command: a thin face over the package's functions.

Exit codes: 0 done and everything accepted; 2 finished but some input was refused; 1 could not
run (bad arguments, store busy, a broken protocol). Errors are printed as one plain message
(what, what was received, how to fix it), never as a traceback, and never carry patient values.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from backcare_analytics.errors import BackcareError

app = typer.Typer(
    name="backcare",
    help="Import home-exercise logs for low back pain, compute adherence and pain trends, "
    "and render clinic reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
    """The main job on the synthetic demo clinic: check its exports against the schemas."""
    from backcare_analytics.config import get_settings
    from backcare_analytics.synth import check_clinic

    examples = get_settings().examples_dir / "clinic"
    if not examples.exists():
        raise _fail(f"{examples} is missing; fix: run `backcare synth --out {examples}`")
    result = check_clinic(examples)
    typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(EXIT_REJECTED)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``backcare`` console script."""
    try:
        app(args=argv, standalone_mode=False)
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
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
