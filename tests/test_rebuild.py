"""``rebuild`` cannot destroy (issue 10, defects 3 and 4): it replays every archived file, not
only the ones the current ledger lists; a missing archive is an error; it never replaces a
store by a smaller one unless forced; it never overwrites a backup; and a kill anywhere in the
swap leaves a whole store under the store's name, from which running it again converges."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from _clinic_store import assert_same_tables, log_names, open_store, python, tables, write_files

from backcare_analytics.cli import main
from backcare_analytics.io.importer import import_paths, rebuild
from backcare_analytics.store import Store
from backcare_analytics.store.backup import backup_paths


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKCARE_DATA_DIR", str(tmp_path / "data"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _imported(tmp_path: Path, name: str = "clinic.duckdb") -> Store:
    store = open_store(tmp_path / name)
    import_paths([write_files(tmp_path / "in")], store)
    return store


def test_rebuild_without_its_archive_is_an_error_and_changes_nothing(tmp_path: Path, capsys):
    """Defect 3: a .duckdb copied without its .raw folder was emptied by rebuild (rc 0)."""
    original = _imported(tmp_path)
    copy = tmp_path / "copied" / "clinic.duckdb"
    copy.parent.mkdir()
    shutil.copy(original.path, copy)
    before = _digest(copy)
    assert main(["rebuild", "--store", str(copy), "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["reason"] == "no_archive" and "no raw archive" in doc["error"]
    assert ".raw folder" in captured.err  # the advice
    assert _digest(copy) == before and not backup_paths(copy)
    assert len(open_store(copy).sessions()) == len(original.sessions()) > 0


def test_rebuild_refuses_a_smaller_store_unless_forced(tmp_path: Path, capsys) -> None:
    store = _imported(tmp_path)
    want = tables(store)
    for f in store.archive.root.iterdir():  # an emptied archive
        f.unlink()
    assert main(["rebuild", "--store", str(store.path), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["reason"] == "smaller_store"
    assert f"sessions {len(want['sessions'])} -> 0" in doc["error"]
    assert_same_tables(tables(store), want)
    assert not backup_paths(store.path) and not Path(f"{store.path}.rebuild").exists()
    # --force: done, and the old store is kept whole as the backup
    assert main(["rebuild", "--store", str(store.path), "--force", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["after"] == {"sessions": 0, "pain": 0, "patients": 0}
    assert len(store.sessions()) == 0
    (bak,) = backup_paths(store.path)
    assert doc["backup"] == str(bak)
    assert_same_tables(tables(open_store(bak)), want)


def test_a_second_rebuild_keeps_the_first_backup(tmp_path: Path) -> None:
    """Defect 3: a second rebuild overwrote .bak, so the last copy of the old store was lost."""
    store = _imported(tmp_path)
    want = tables(store)
    first = rebuild(store)
    assert first.backup == store.path.with_name("clinic.duckdb.bak")
    kept = _digest(first.backup)
    second = rebuild(store)
    assert second.backup == store.path.with_name("clinic.duckdb.bak.1")
    assert _digest(first.backup) == kept
    assert backup_paths(store.path) == [first.backup, second.backup]
    assert_same_tables(tables(store), want)
    assert first.before == first.after == second.after


def test_rebuild_replays_every_archived_file_not_only_the_ledgers(tmp_path: Path) -> None:
    """Defect 4: the store file is lost, a file is imported before `rebuild` (a fresh store
    whose ledger lists that file only): the older archived files must be replayed too."""
    store = _imported(tmp_path)
    want = tables(store)
    store.path.unlink()
    import_paths([write_files(tmp_path / "again", ["patients.csv"])], store)
    assert len(store.imports()) == 1
    rebuild(store)
    assert_same_tables(tables(store), want)


# -- kills in the swap window ------------------------------------------------------------------

#: Rebuild in a child process, SIGKILLed just before its k-th file-system step (link, rename,
#: unlink) after the replay is done: the swap window.
_KILL_IN_SWAP = r"""
import os, signal, sys
from pathlib import Path
from backcare_analytics.config import Settings
from backcare_analytics.io import importer
from backcare_analytics.store import Store

path, k = Path(sys.argv[1]), int(sys.argv[2])
real_run = importer._run

def run_then_count(*args, **kwargs):
    report = real_run(*args, **kwargs)
    count = [0]
    for name in ("link", "replace", "rename", "unlink"):
        def step(*a, _fn=getattr(os, name), **kw):
            count[0] += 1
            if count[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return _fn(*a, **kw)
        setattr(os, name, step)
    return report

importer._run = run_then_count
importer.rebuild(Store(path, settings=Settings(data_dir=path.parent / "data")))
print("finished", flush=True)
"""


def _converges(store: Store, want: dict) -> None:
    """After a kill: the store's name holds a whole store with the clean contents; running
    rebuild again finishes, keeps every backup as it was, and gives the same contents."""
    assert_same_tables(tables(store), want)
    backups = {p: _digest(p) for p in backup_paths(store.path)}
    result = rebuild(store)
    assert_same_tables(tables(store), want)
    assert {p: _digest(p) for p in backups} == backups
    assert result.backup not in backups and result.backup is not None
    assert not Path(f"{store.path}.rebuild").exists()


def _kill_in_swap(store: Store, k: int) -> None:
    proc = python(_KILL_IN_SWAP, str(store.path), str(k))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert "finished" not in out


def test_a_kill_between_the_backup_and_the_rename_leaves_a_whole_store(tmp_path: Path) -> None:
    """Defect 4: a kill between rebuild's two renames left no store at all (the next import
    then started an empty one)."""
    store = _imported(tmp_path)
    want = tables(store)
    _kill_in_swap(store, 2)  # after the old store got its backup, before the new one is in
    _converges(store, want)


@pytest.mark.slow
def test_kills_anywhere_in_a_rebuild_converge(tmp_path: Path) -> None:
    store = _imported(tmp_path)
    want = tables(store)
    for k in (1, 2, 3, 4):  # before the link, before the rename, after it (clean-up)
        _kill_in_swap(store, k)
        _converges(store, want)
    rng = random.Random(10)
    code = (
        "import sys\nfrom pathlib import Path\nfrom backcare_analytics.config import Settings\n"
        "from backcare_analytics.io.importer import rebuild\nfrom backcare_analytics.store "
        "import Store\np = Path(sys.argv[1])\nprint('start', flush=True)\n"
        "rebuild(Store(p, settings=Settings(data_dir=p.parent / 'data')))\n"
    )
    for _ in range(4):  # and at random moments of the whole rebuild
        proc = python(code, str(store.path))
        assert proc.stdout.readline().strip() == "start"
        time.sleep(rng.uniform(0.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _converges(store, want)
    assert len(log_names()) > 0
