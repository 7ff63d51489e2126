"""Declared dependencies equal imported ones (issue 11, item 8).

Every third-party import of the package's modules (and of the report templates, which run in
the report's kernels) is mapped to its distribution with
``importlib.metadata.packages_distributions()`` and compared with ``[project.dependencies]`` of
pyproject.toml. A dependency that is declared although no module imports it must say why on
its own line (``# not imported: <why>``); an import of an optional engine must come from an
extra.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
NOT_IMPORTED = re.compile(r'^\s*"([A-Za-z0-9._-]+)[^"]*",\s*#\s*not imported:\s*(\S.*)$')


def _norm(name: str) -> str:
    """A distribution name as PEP 503 compares them.

    >>> _norm("Jinja2"), _norm("jupyter_client")
    ('jinja2', 'jupyter-client')
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def _imported_top_names(files: list[Path]) -> dict[str, set[str]]:
    """Top-level names of the absolute, non-stdlib, non-package imports: name -> files."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "backcare_analytics":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution (normalised) -> files importing it, for the package and the templates."""
    files = [*(ROOT / "backcare_analytics").rglob("*.py")]
    files += (ROOT / "notebooks" / "templates").glob("*.py")
    dists = packages_distributions()
    out: dict[str, set[str]] = {}
    for top, where in _imported_top_names(files).items():
        assert top in dists, f"{top} (imported by {sorted(where)}) is installed by no package"
        for dist in dists[top]:
            out.setdefault(_norm(dist), set()).update(where)
    return out


def _declared_not_imported() -> dict[str, str]:
    """The dependency lines of pyproject.toml marked ``# not imported: <why>``: name -> why."""
    text = PYPROJECT.read_text(encoding="utf-8")
    block = text.split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    return {_norm(m.group(1)): m.group(2) for m in map(NOT_IMPORTED.match, block.splitlines()) if m}


PROJECT = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
DECLARED = {_requirement_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {
    extra: {_requirement_name(r) for r in reqs}
    for extra, reqs in PROJECT["optional-dependencies"].items()
}
#: Imported by the optional distributed engine only (``research/distributed.py`` checks that
#: the extra is installed): distribution -> the extra that installs it (``dask[distributed]``
#: installs ``distributed``).
OPTIONAL = {"dask": "dask", "distributed": "dask"}


def test_every_imported_distribution_is_declared() -> None:
    imported = _imported_distributions()
    undeclared = {d: sorted(f) for d, f in imported.items() if d not in DECLARED}
    optional = {d: f for d, f in undeclared.items() if d in OPTIONAL}
    assert undeclared == optional, "imported, not in [project.dependencies]"
    for dist, extra in OPTIONAL.items():
        assert dist not in DECLARED, f"{dist} must stay optional (the {extra!r} extra)"
        assert extra in EXTRAS and "dask" in EXTRAS[extra]


def test_every_declared_dependency_is_imported_or_says_why_not() -> None:
    imported = set(_imported_distributions())
    plugins = _declared_not_imported()
    assert DECLARED - imported == set(plugins), (
        "declared but not imported: import it, move it to an extra, or mark its line "
        "'# not imported: <why>'"
    )
    assert not plugins.keys() & imported, "marked 'not imported' but imported"


def test_benchmark_and_lab_tools_are_extras_that_the_makefile_installs() -> None:
    assert {"papermill", "nbconvert"} <= EXTRAS["bench"] and "jupyterlab" in EXTRAS["lab"]
    assert not {"papermill", "nbconvert", "jupyterlab"} & DECLARED
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"pip install [^\n]*-e '\.\[[^\]]*\blab\b", makefile), "make demo/lab"
    assert re.search(r"pip install [^\n]*-e '\.\[[^\]]*\bbench\b", makefile), "make bench"
