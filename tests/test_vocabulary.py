"""The vocabulary (backcare_analytics.vocabulary) is the one home of the result words: complete,
at the bottom of the package, read by the schemas, and not typed again elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

from backcare_analytics import vocabulary as v
from backcare_analytics.schemas.results import AttentionTable, WeekFlags, WeeklyVerdict

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "backcare_analytics"


def _allowed(model: type, column: str) -> set[str]:
    (check,) = model.to_schema().columns[column].checks
    return set(check.statistics["allowed_values"])


def test_every_word_has_its_label_severity_and_rank() -> None:
    assert set(v.VERDICT_LABELS) == set(v.VERDICTS) == set(v.VERDICT_PRIORITY)
    assert sorted(v.VERDICT_PRIORITY.values()) == list(range(len(v.VERDICTS)))
    assert v.ATTENTION_VERDICTS < set(v.VERDICTS) and v.NO_VERDICT in v.VERDICTS
    assert tuple(v.FLAG_LABELS) == v.WEEK_FLAGS == tuple(v.FLAG_SEVERITY)
    assert set(v.FLAG_SEVERITY.values()) <= set(v.FLAG_SEVERITIES)
    assert tuple(v.DAY_STATUS_LABELS) == v.DAY_STATUSES
    assert not v.ROUTINE[0].isalpha()  # protocol exercise ids start with a letter


def test_the_result_schemas_check_the_vocabulary() -> None:
    assert _allowed(WeeklyVerdict, "verdict") == set(v.VERDICTS)
    assert _allowed(AttentionTable, "verdict") == set(v.VERDICTS)
    assert _allowed(WeekFlags, "flag") == set(v.WEEK_FLAGS)
    assert _allowed(WeekFlags, "severity") == set(v.FLAG_SEVERITIES)


def test_the_vocabulary_imports_nothing_of_the_package() -> None:
    tree = ast.parse((PACKAGE / "vocabulary.py").read_text(encoding="utf-8"))
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert not [m for m in imported if m and m.startswith("backcare_analytics")]


#: Modules that still spell verdict classes themselves: the verdict's own body (being split
#: into steps by another item of issue 11) and the synthetic clinic's planted truth.
KNOWN = {"metrics/verdict.py", "synth/truth.py"}


def _string_literals(path: Path) -> set[str]:
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    }


def test_no_module_types_the_words_again() -> None:
    # Words that are nothing but vocabulary (``insufficient_data``, ``met`` and ``flare`` are
    # also column names, and flag codes are written where each flag is raised).
    words = (set(v.VERDICTS) - {"insufficient_data"}) | {v.ROUTINE, v.ROUTINE_LABEL, v.DAY_NO_LOG}
    words |= set(v.VERDICT_LABELS.values()) | set(v.FLAG_LABELS.values())
    words |= set(v.DAY_STATUS_LABELS.values()) - {"partial", "missed"}
    found = {
        str(p.relative_to(PACKAGE)): sorted(_string_literals(p) & words)
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "vocabulary.py"
    }
    assert {k: w for k, w in found.items() if w and k not in KNOWN} == {}


def test_the_report_docs_name_every_verdict_and_flag() -> None:
    text = " ".join((ROOT / "docs" / "reports.md").read_text(encoding="utf-8").split()).lower()
    for label in [*v.VERDICT_LABELS.values(), *v.FLAG_LABELS.values()]:
        assert label.lower() in text, label
