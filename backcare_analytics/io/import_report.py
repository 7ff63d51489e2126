"""What an import did, per file: counts, outcome and reasons, as JSON and in words.

The JSON shape (``backcare import --json``) is one object::

    {"files": [{"path", "sha256", "format", "kind", "status", "rows_read", "accepted",
                "rejected", "duplicates", "warnings", ...}],
     "totals": {"files", "rows_read", "accepted", "rejected", "duplicates", ...},
     "retried": [...]}

and for every file ``rows_read == accepted + rejected + duplicates`` (blank lines apart, in
``blank_rows``). The human summary names files, counts and reason codes, never a patient's
values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

__all__ = [
    "REASON_WORDS",
    "FileReport",
    "ImportReport",
    "RetryReport",
    "progress_bar",
    "rejects_summary",
    "rejects_text",
]

#: Reason codes of ``docs/export-format.md`` in words a clinic admin understands.
REASON_WORDS: dict[str, str] = {
    "missing_value": "required value missing",
    "bad_number": "not a number",
    "not_an_integer": "fraction where a whole number is needed",
    "out_of_range": "value out of range (e.g. pain outside 0-10)",
    "bad_datetime": "unreadable date or time",
    "implausible_time": "implausible time (before 2000 or in the future)",
    "nonexistent_local_time": "local time skipped by a clock change",
    "bad_patient_id": "malformed patient id",
    "unknown_patient": "patient not registered yet (retried when registered)",
    "unknown_exercise": "unknown exercise",
    "bad_vocabulary": "value not in its list (side, level, variant, flare)",
    "no_dose": "neither reps nor hold given",
    "field_too_long": "cell too long",
    "bad_record": "malformed record",
    "bad_encoding": "bytes that are not UTF-8 in the row",
    "formula_cell": "spreadsheet formula instead of a value",
    "conflicting_edit": "conflicts with a stored version",
    "duplicate_in_file": "same record twice in the file with different content",
}


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


#: Outcomes of one file.
STATUSES = ("imported", "validated", "already_imported", "refused")


@dataclass
class FileReport:
    """The outcome of one offered file."""

    path: str
    sha256: str
    format: str | None = None
    kind: str | None = None
    status: str = "imported"
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    replaced: int = 0
    blank_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None  # why a whole file was refused
    reject_reasons: dict[str, int] = field(default_factory=dict)  # reason -> rows

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.accepted + self.rejected + self.duplicates

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One paragraph in words, e.g. ``12 rows refused: 7 value out of range ...``."""
        if self.status == "refused":
            return f"{self.path}: file refused ({self.reason})"
        if self.status == "already_imported":
            return f"{self.path}: already imported (same bytes), nothing changed"
        verb = "would be accepted" if self.status == "validated" else "accepted"
        parts = [f"{self.path}: {_rows(self.rows_read)} read, {self.accepted} {verb}"]
        if self.replaced:
            parts.append(f"{self.replaced} of them edits replacing stored versions")
        if self.duplicates:
            parts.append(f"{self.duplicates} already stored (duplicates)")
        text = ", ".join(parts)
        if self.rejected:
            why = ", ".join(
                f"{n} {REASON_WORDS.get(r, r)}"
                for r, n in sorted(self.reject_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            )
            text += f"; {_rows(self.rejected)} refused: {why}"
            if len(self.reject_reasons) > 1:
                text += " (a row can have several reasons)"
        return text


@dataclass
class RetryReport:
    """Rows of an earlier file accepted now that their patients are registered."""

    path: str
    sha256: str
    retried: int
    accepted: int
    duplicates: int
    still_rejected: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportReport:
    """Every offered file's outcome, in the order processed."""

    files: list[FileReport] = field(default_factory=list)
    retried: list[RetryReport] = field(default_factory=list)
    dry_run: bool = False

    @property
    def totals(self) -> dict[str, int]:
        keys = ("rows_read", "accepted", "rejected", "duplicates", "replaced", "blank_rows")
        out = {"files": len(self.files)}
        out.update({k: sum(getattr(f, k) for f in self.files) for k in keys})
        for s in STATUSES:
            out[f"files_{s}"] = sum(f.status == s for f in self.files)
        out["retried_accepted"] = sum(r.accepted for r in self.retried)
        return out

    @property
    def ok(self) -> bool:
        """Everything offered was accepted (no refused row or file)."""
        return all(f.rejected == 0 and f.status != "refused" for f in self.files)

    @property
    def exit_code(self) -> int:
        """0 when everything was accepted, 2 when rows or files were refused."""
        return 0 if self.ok else 2

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [f.to_json() for f in self.files],
            "totals": self.totals,
            "retried": [r.to_json() for r in self.retried],
            "dry_run": self.dry_run,
        }

    def summary(self) -> str:
        """Per file, what was accepted and what was refused and why, then the totals."""
        lines = [f.summary() for f in self.files]
        lines += [
            f"{r.path}: {r.accepted} earlier refused rows accepted now that their patients are "
            f"registered ({r.still_rejected} still refused)"
            for r in self.retried
        ]
        t = self.totals
        head = "validated (nothing written)" if self.dry_run else "imported"
        lines.append(
            f"{head}: {t['files']} files, {t['rows_read']} rows read, {t['accepted']} accepted, "
            f"{t['rejected']} refused, {t['duplicates']} duplicates"
            + (f", {t['files_refused']} files refused" if t["files_refused"] else "")
        )
        if t["rejected"] and not self.dry_run:
            lines.append("see why: backcare rejects")
        return "\n".join(lines)


# -- what was quarantined (``backcare rejects``) -------------------------------------------------


def rejects_summary(
    rejects: pd.DataFrame, imports: pd.DataFrame, file: str | None = None
) -> dict[str, Any]:
    """Quarantined rows per file: reason and column counts and the rows (never raw values).

    ``file`` selects one file by its SHA-256 or a unique prefix of it (8 characters or more).
    """
    names = dict(zip(imports["sha256"], imports["path"], strict=True))
    rej = rejects
    if file:
        rej = rej[rej["file_sha"].str.startswith(file.lower())]
    out = []
    for sha, g in rej.groupby("file_sha", sort=False):
        out.append(
            {
                "sha256": sha,
                "path": names.get(sha, ""),
                "rejected_rows": int(g.drop_duplicates(["kind", "row"]).shape[0]),
                "reasons": _counts(g.drop_duplicates(["kind", "row", "reason"])["reason"]),
                "columns": _counts(g["column"]),
                "rows": [
                    {"kind": k, "row": None if pd.isna(r) else int(r), "column": c,
                     "reason": why, "detail": d}
                    for k, r, c, why, d in zip(g["kind"], g["row"], g["column"], g["reason"],
                                               g["detail"], strict=True)
                ],
            }
        )  # fmt: skip
    return {"files": out, "total_rows": sum(f["rejected_rows"] for f in out)}


def _counts(s: pd.Series) -> dict[str, int]:
    vc = s.astype("str").value_counts()
    return {str(k): int(v) for k, v in vc.items()}


def rejects_text(summary: dict[str, Any], limit: int = 50) -> str:
    """The human view of :func:`rejects_summary`: row, column, reason and detail only."""
    if not summary["files"]:
        return "nothing quarantined"
    lines = []
    for f in summary["files"]:
        why = ", ".join(f"{n} {REASON_WORDS.get(r, r)} ({r})" for r, n in f["reasons"].items())
        cols = ", ".join(f"{c}: {n}" for c, n in f["columns"].items())
        lines.append(f"{f['path'] or '(unknown file)'}  [{f['sha256'][:12]}]")
        lines.append(f"  {_rows(f['rejected_rows'])} refused: {why}")
        lines.append(f"  by column: {cols}")
        for r in f["rows"][:limit]:
            lines.append(
                f"  {r['kind']} row {r['row']}: {r['column']}: {r['reason']} - {r['detail']}"
            )
        if len(f["rows"]) > limit:
            lines.append(
                f"  ... and {len(f['rows']) - limit} more (--file {f['sha256'][:12]} --json)"
            )
    return "\n".join(lines)


@contextmanager
def progress_bar(enabled: bool, description: str = "importing") -> Iterator[Any]:
    """A rich progress bar on the terminal's stderr, or a no-op callback."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[name]}"), console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(description, total=None, name="")

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, name=name)

        yield update
