"""The store when the machine fails it (issue 10, defects 5 and 13, and defect 12's temporary
raw copies): a store file without tables (a creation killed midway) is repaired by the next
write and explained to readers; creation itself is atomic; a full disk, a read-only mount or
a damaged store file give one clear message, valid ``--json`` with the right advice, exit 1,
and lose nothing; temporary raw copies left by a kill are removed at the next start."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from _clinic_store import assert_same_tables, open_store, python, tables, write_files

from backcare_analytics.cli import main
from backcare_analytics.errors import StoreError
from backcare_analytics.io import writer
from backcare_analytics.io.importer import import_paths
from backcare_analytics.store import Store, lock
from backcare_analytics.store.archive import RawArchive


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKCARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BACKCARE_STORE_BUSY_TIMEOUT_S", "2")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The clinic's folder and the tables one clean import of it gives (made once)."""
    base = tmp_path_factory.mktemp("clinic")
    folder = write_files(base / "in")
    reference = open_store(base / "reference.duckdb")
    import_paths([folder], reference)
    return folder, tables(reference)


def _imported(tmp_path: Path, folder: Path) -> Store:
    store = open_store(tmp_path / "clinic.duckdb")
    import_paths([folder], store)
    return store


def _cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert out.count("\n") == 1, out  # exactly one JSON object
    assert "Traceback" not in err
    return code, json.loads(out), err


# -- defect 5: a store without tables ----------------------------------------------------------


def test_a_store_without_tables_is_explained_to_readers_and_repaired_by_import(
    tmp_path: Path, clinic: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    """What a kill during creation left before: a DuckDB file with no tables, on which every
    command died with a CatalogException."""
    folder, want = clinic
    path = tmp_path / "clinic.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(StoreError, match="no imports") as info:
        open_store(path).imports()
    assert info.value.reason == "missing_tables" and "backcare import" in str(info.value)
    for command in (["rejects"], ["validate", str(folder)]):
        code, doc, _ = _cli_json(capsys, *command, "--store", str(path))
        assert code == 1 and doc["reason"] == "missing_tables", command
    code, doc, _ = _cli_json(capsys, "import", str(folder), "--store", str(path))
    assert code == 2 and doc["totals"]["files"] == len(want["imports"])
    assert_same_tables(tables(open_store(path)), want)


def test_rebuild_recovers_a_store_without_tables(
    tmp_path: Path, clinic: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, want = clinic
    store = _imported(tmp_path, folder)
    store.path.unlink()
    duckdb.connect(str(store.path)).close()  # the archive is intact, the store file is not
    code, doc, _ = _cli_json(capsys, "rebuild", "--store", str(store.path))
    assert code == 0 and doc["before"] == {"sessions": 0, "pain": 0, "patients": 0}
    assert_same_tables(tables(store), want)


_KILL_AT = r"""
import os, signal, sys
from pathlib import Path
from backcare_analytics.config import Settings
from backcare_analytics.io.importer import import_paths
from backcare_analytics.store import Store

store, step, where, folder = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
real = getattr(os, step)
def kill(*args, **kwargs):
    if where in str(args[-1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, step, kill)
import_paths([folder], Store(store, settings=Settings(data_dir=store.parent / "data")))
print("finished", flush=True)
"""


def _killed_at(step: str, where: str, store: Path, folder: Path) -> None:
    """Import ``folder`` in a child process SIGKILLed at its first call of ``os.<step>``
    whose last argument (the target path) contains ``where``."""
    proc = python(_KILL_AT, str(store), step, where, str(folder))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    assert "finished" not in out


def test_a_store_creation_killed_midway_leaves_no_half_made_store(
    tmp_path: Path, clinic: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after the new file got its tables, just before it is linked under its name:
    no store appears; the next import creates it whole and removes the leftover."""
    folder, want = clinic
    path = tmp_path / "clinic.duckdb"
    _killed_at("link", "clinic.duckdb", path, folder)
    assert not path.exists()
    leftovers = list(tmp_path.glob(".clinic.duckdb.*.creating*"))
    assert leftovers
    code, _, _ = _cli_json(capsys, "import", str(folder), "--store", str(path))
    assert code == 2
    assert_same_tables(tables(open_store(path)), want)
    assert not any(p.exists() for p in leftovers)


def test_temporary_raw_copies_left_by_a_kill_are_removed_at_the_next_start(
    tmp_path: Path, clinic: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect 12 (its files part): killed while writing raw copies into the archive (after
    the bytes, before the renames), an import left patient data in ``.<sha>.<pid>.tmp``."""
    folder, want = clinic
    path = tmp_path / "clinic.duckdb"
    _killed_at("replace", ".raw", path, folder)
    archive = RawArchive(tmp_path / "clinic.duckdb.raw")
    left = list(archive.root.glob(".*.tmp"))
    assert left  # patient data, under a temporary name
    code, _, _ = _cli_json(capsys, "import", str(folder), "--store", str(path))
    assert code == 2
    assert not any(p.exists() for p in left)
    assert_same_tables(tables(open_store(path)), want)


# -- defect 13: full disk, read-only mount, damaged store -------------------------------------


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "clinic.duckdb.raw/.x.tmp")


@pytest.mark.parametrize(
    "where, failure",
    [
        ("archive", _no_space),
        ("store", duckdb.FatalException(
            'FATAL Error: database has been invalidated because of a previous fatal error: '
            'Could not write file "clinic.duckdb.wal": No space left on device')),
    ],
)  # fmt: skip
def test_a_full_disk_is_a_clear_error_with_json_and_loses_nothing(
    tmp_path: Path,
    clinic: tuple[Path, dict],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    failure: object,
) -> None:
    """Injected: OSError 28 while archiving, a DuckDB FatalException while writing rows."""
    folder, want = clinic
    path = tmp_path / "clinic.duckdb"
    if where == "archive":
        monkeypatch.setattr(RawArchive, "put_many", _no_space)
    else:

        def fatal(*args: object, **kwargs: object) -> None:
            raise failure  # type: ignore[misc]

        monkeypatch.setattr(writer, "_insert_ledger", fatal)
        monkeypatch.setattr(writer._GroupWrite, "flush", fatal)
    code, doc, err = _cli_json(capsys, "import", str(folder), "--store", str(path))
    assert code == 1 and doc["reason"] == "disk_full"
    assert "disk is full" in doc["error"] and "free some space" in doc["error"]
    assert "rebuild" not in doc["error"] and "disk is full" in err
    assert doc["files"] == []  # nothing was committed
    monkeypatch.undo()
    monkeypatch.setenv("BACKCARE_DATA_DIR", str(tmp_path / "data"))
    assert main(["import", str(folder), "--store", str(path)]) == 2  # space again: all in
    assert_same_tables(tables(open_store(path)), want)


def test_a_read_only_disk_is_a_clear_error_not_advice_to_rebuild(
    tmp_path: Path,
    clinic: tuple[Path, dict],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Injected: the lock file (the first thing an import writes) cannot be created."""
    folder, _ = clinic

    def read_only(path: object, *args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(lock, "os", types.SimpleNamespace(**{**vars(os), "open": read_only}))
    code, doc, _ = _cli_json(capsys, "import", str(folder), "--store", str(tmp_path / "c.duckdb"))
    assert code == 1 and doc["reason"] == "read_only"
    assert "read-only" in doc["error"] and "rebuild" not in doc["error"]


def test_a_truncated_store_is_a_clear_error_and_rebuild_restores_it(
    tmp_path: Path, clinic: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, want = clinic
    store = _imported(tmp_path, folder)
    size = store.path.stat().st_size
    with open(store.path, "r+b") as f:
        f.truncate(size // 2)
    for command in (["import", str(folder)], ["rejects"]):
        code, doc, _ = _cli_json(capsys, *command, "--store", str(store.path))
        assert code == 1 and doc["reason"] == "damaged_store", command
        assert "backcare rebuild" in doc["error"]
    code, doc, _ = _cli_json(capsys, "rebuild", "--store", str(store.path))
    assert code == 0
    assert_same_tables(tables(store), want)
    assert Path(doc["backup"]).stat().st_size == size // 2  # the damaged file, kept


# -- the same on real mounts (root only) -------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test (skipped where mounting is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=700", "tmpfs", str(disk)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()}); the "
                    "injected failures above cover the same code paths")  # fmt: skip
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _remount(disk: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(disk)], check=True)


def test_a_real_full_disk_and_read_only_mount(
    tmpfs: Path, clinic: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, want = clinic
    path = tmpfs / "clinic.duckdb"
    filler = tmpfs / "filler"
    free = os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize
    filler.write_bytes(b"\0" * (free - (300 << 10)))  # leave 300 KiB
    code, doc, _ = _cli_json(capsys, "import", str(folder), "--store", str(path))
    assert code == 1 and doc["reason"] == "disk_full", doc
    filler.unlink()
    _remount(tmpfs, "size=64m")
    assert main(["import", str(folder), "--store", str(path)]) == 2
    capsys.readouterr()
    assert_same_tables(tables(open_store(path)), want)
    _remount(tmpfs, "ro")
    code, doc, _ = _cli_json(capsys, "import", str(folder), "--store", str(path))
    assert code == 1 and doc["reason"] == "read_only" and "rebuild" not in doc["error"]
    code, doc, _ = _cli_json(capsys, "rejects", "--store", str(path))
    assert code == 0  # reading still works


def test_any_command_turns_a_failure_of_the_disk_into_one_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The top-level handler: a DuckDB I/O error escaping a command (here ``rejects``) is one
    message, JSON with ``--json``, exit 1; an unexpected error stays a traceback (a bug)."""
    store = _imported(tmp_path, write_files(tmp_path / "in", ["patients.csv"]))

    def full(*args: object, **kwargs: object) -> None:
        raise duckdb.IOException('Could not write file "x.tmp": No space left on device')

    monkeypatch.setattr(Store, "rejects", full)
    code, doc, err = _cli_json(capsys, "rejects", "--store", str(store.path))
    assert code == 1 and doc["reason"] == "disk_full" and "disk is full" in err

    def bug(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(Store, "rejects", bug)
    with pytest.raises(ZeroDivisionError):
        main(["rejects", "--store", str(store.path)])
