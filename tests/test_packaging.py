"""The package works from a regular install, not only from the checkout.

The protocol (``data/protocols/``) and the report templates (``notebooks/templates/``) live
outside the package folder; setup.py's build step copies them into the wheel as
``backcare_analytics/_bundled/``. The slow test builds an sdist from a copy of the work tree, a
wheel from that sdist (offline, no build isolation), installs it with ``pip --target`` and runs
``backcare`` from a folder that is no checkout: the protocol loads and a weekly report renders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from backcare_analytics import config
from backcare_analytics.config import Settings, shipped_dir

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "data" / "protocols" / "early_phase_low_back.yaml"
TEMPLATES = sorted((ROOT / "notebooks" / "templates").glob("*.py"))
BUNDLED = "backcare_analytics/_bundled"


# ---------------------------------------------------------------------------------------------
# where the shipped files are looked up
# ---------------------------------------------------------------------------------------------


def test_a_checkout_reads_the_repository_copies():
    from backcare_analytics.reports.render import TEMPLATES_DIR

    assert config.CHECKOUT_ROOT == ROOT == config.PROJECT_ROOT
    assert shipped_dir("protocols") == ROOT / "data" / "protocols"
    assert TEMPLATES_DIR == ROOT / "notebooks" / "templates"
    assert Settings.from_env({}).protocol == PROTOCOL


def test_an_explicit_protocol_setting_wins(tmp_path):
    mine = tmp_path / "later_phase.yaml"
    assert Settings.from_env({"BACKCARE_PROTOCOL": str(mine)}).protocol == mine
    assert Settings(protocol=mine).protocol == mine


def test_without_a_checkout_copy_the_package_copy_is_used(monkeypatch, tmp_path):
    bundled = ROOT / "backcare_analytics" / "_bundled"
    # Installed: no checkout at all.
    monkeypatch.setattr(config, "CHECKOUT_ROOT", None)
    assert shipped_dir("protocols") == bundled / "protocols"
    assert shipped_dir("templates") == bundled / "templates"
    assert Settings.from_env({}).protocol == bundled / "protocols" / "early_phase_low_back.yaml"
    # A folder that looks like a checkout but lacks the files falls back as well.
    monkeypatch.setattr(config, "CHECKOUT_ROOT", tmp_path)
    assert shipped_dir("templates") == bundled / "templates"


# ---------------------------------------------------------------------------------------------
# a real wheel, installed and run elsewhere
# ---------------------------------------------------------------------------------------------


def _can_build_wheels() -> bool:
    """setuptools >= 70.1 builds wheels itself; older ones need the ``wheel`` package."""
    try:
        import setuptools.command.bdist_wheel  # noqa: F401
    except ImportError:
        try:
            import wheel  # noqa: F401
        except ImportError:
            return False
    return True


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args[:4]} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _work_tree_copy(dest: Path) -> Path:
    """The files of the work tree git would see (tracked and not ignored), copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():  # deleted but still tracked files are skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An sdist built from a copy of the work tree, and a wheel built from that sdist."""
    if not _can_build_wheels():
        pytest.skip(
            "setuptools in this environment cannot build wheels: pip install 'setuptools>=70.1'"
        )
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git work tree")
    base = tmp_path_factory.mktemp("packaging")
    src = _work_tree_copy(base / "src")
    dist = base / "dist"
    hook = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    name = _run([sys.executable, "-c", hook, str(dist)], cwd=src).stdout.strip().splitlines()[-1]
    with tarfile.open(dist / name) as tar:
        tar.extractall(base / "sdist", filter="data")
        sdist_names = tar.getnames()
    (unpacked,) = (base / "sdist").iterdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(dist), str(unpacked)], cwd=base)  # fmt: skip
    (whl,) = dist.glob("*.whl")
    return {"base": base, "sdist": sdist_names, "wheel": whl, "pip": pip}


@pytest.mark.slow
def test_the_sdist_carries_the_canonical_files(built):
    names = {n.split("/", 1)[1] for n in built["sdist"] if "/" in n}
    assert "setup.py" in names
    assert "data/protocols/early_phase_low_back.yaml" in names
    assert {f"notebooks/templates/{t.name}" for t in TEMPLATES} <= names
    assert not any(n.startswith("data/examples/") for n in names)


@pytest.mark.slow
def test_the_wheel_carries_the_protocol_and_the_templates(built):
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = set(whl.namelist())
        assert whl.read(f"{BUNDLED}/protocols/{PROTOCOL.name}") == PROTOCOL.read_bytes()
        for template in TEMPLATES:
            assert whl.read(f"{BUNDLED}/templates/{template.name}") == template.read_bytes()
    assert "backcare_analytics/reports/templates/page.html.j2" in names
    assert "backcare_analytics/py.typed" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"backcare_analytics", built["wheel"].name.split("-py3")[0] + ".dist-info"}


@pytest.mark.slow
def test_the_installed_package_runs_outside_the_checkout(built):
    base = built["base"]
    site = base / "site"
    _run([*built["pip"], "install", "-q", "--no-deps", "--no-index", "--no-compile",
          "--target", str(site), str(built["wheel"])], cwd=base)  # fmt: skip
    work = base / "clinic"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCARE_")}
    env["PYTHONPATH"] = str(site)  # ahead of the checkout's editable install

    probe = (
        "import json, backcare_analytics as b, backcare_analytics.config as c\n"
        "from backcare_analytics.protocol import load_protocol\n"
        "from backcare_analytics.reports.render import TEMPLATES_DIR, load_template\n"
        "s = c.get_settings()\n"
        "print(json.dumps({'package': b.__file__, 'checkout': c.CHECKOUT_ROOT and str(c.CHECKOUT_ROOT),\n"
        "  'root': str(c.PROJECT_ROOT), 'protocol': str(s.protocol), 'store': str(s.store),\n"
        "  'exercises': list(load_protocol().exercise_ids), 'templates': str(TEMPLATES_DIR),\n"
        "  'cells': len(load_template('weekly_patient_report').cells)}))"
    )
    got = json.loads(_run([sys.executable, "-c", probe], cwd=work, env=env).stdout)
    installed = site / "backcare_analytics"
    assert Path(got["package"]) == installed / "__init__.py"
    assert got["checkout"] is None
    assert Path(got["root"]) == work.resolve()
    assert Path(got["protocol"]) == installed / "_bundled" / "protocols" / PROTOCOL.name
    assert Path(got["store"]) == work.resolve() / "data" / "backcare.duckdb"
    assert "bridge" in got["exercises"]
    assert Path(got["templates"]) == installed / "_bundled" / "templates"
    assert got["cells"] > 1

    # An explicit protocol still wins over the installed copy.
    mine = work / "mine.yaml"
    shutil.copy(PROTOCOL, mine)
    show = "import backcare_analytics.config as c; print(c.get_settings().protocol)"
    out = _run([sys.executable, "-c", show], cwd=work, env={**env, "BACKCARE_PROTOCOL": str(mine)})
    assert Path(out.stdout.strip()) == mine

    # The console script pip wrote: synthetic exports, import, one weekly report.
    backcare = [sys.executable, str(site / "bin" / "backcare")]
    _run([*backcare, "synth", "--out", "synth", "--patients", "2", "--weeks", "2",
          "--bad-share", "0", "--seed", "3"], cwd=work, env=env)  # fmt: skip
    _run([*backcare, "import", "synth/exports"], cwd=work, env=env)
    assert (work / "data" / "backcare.duckdb").is_file()
    _run([*backcare, "report", "weekly", "--patient", "DEMO-001", "--jobs", "1"], cwd=work, env=env)
    (html,) = (work / "reports").glob("*/patient-DEMO-001.html")
    assert "DEMO-001" in html.read_text(encoding="utf-8")
