"""The raw archive: every imported file's exact bytes, named by SHA-256, owner-only.

``<archive>/<sha256>`` holds the bytes and ``<sha256>.json`` a small manifest (the file's name as
offered, its ledger sequence number and import time) so that ``backcare rebuild`` can replay the
archive in the original order from the archive alone. The folder is ``0o700``, files ``0o600``.
Writes go to a temporary name, are flushed to disk and renamed (then the folder is flushed),
so a file is either whole or absent. :meth:`RawArchive.put_many` writes a group's files first
and flushes them after, which costs about one flush instead of two per file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backcare_analytics.lifetime import process_running
from backcare_analytics.safety import create_private_folders
from backcare_analytics.store.db import sync_folder

__all__ = ["ArchivedFile", "RawArchive", "is_dead_pid_name", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``.

    >>> sha256_bytes(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def is_dead_pid_name(stem: str) -> bool:
    """Whether ``stem`` ends in ``.<pid>`` of a process that no longer runs (a temporary
    file named ``.<name>.<pid>.tmp`` is then an orphan).

    >>> is_dead_pid_name(f"x.{os.getpid()}"), is_dead_pid_name("x.notapid")
    (False, False)
    """
    pid = stem.rpartition(".")[2]
    return pid.isdigit() and not process_running(int(pid))


@dataclass(frozen=True)
class ArchivedFile:
    """One archived file and its manifest."""

    sha256: str
    path: Path
    name: str
    seq: int
    imported_at: str


class RawArchive:
    """A content-addressed folder of raw exports."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _ensure(self) -> None:
        create_private_folders(self.root)  # and its parents: 0o700 whatever the umask
        os.chmod(self.root, 0o700)

    def file(self, sha: str) -> Path:
        """Where the bytes of ``sha`` live (whether or not they are there)."""
        return self.root / sha

    def has(self, sha: str) -> bool:
        return self.file(sha).is_file()

    def put(self, sha: str, data: bytes, *, name: str, seq: int, imported_at: str) -> bool:
        """Store ``data`` under ``sha`` with its manifest; True when the bytes were new."""
        return self.put_many([(sha, data, name, seq, imported_at)])[0]

    def put_many(self, entries: Sequence[tuple[str, bytes, str, int, str]]) -> list[bool]:
        """:meth:`put` for ``(sha, data, name, seq, imported_at)`` entries: all written to
        temporary names, then flushed to disk, renamed, and the folder flushed once. True for
        each entry whose bytes were new. On an error nothing new is left behind."""
        self._ensure()
        writes: list[tuple[Path, bytes]] = []
        new: list[bool] = []
        for sha, data, name, seq, imported_at in entries:
            fresh = not self.has(sha) and not any(p == self.file(sha) for p, _ in writes)
            if fresh:
                writes.append((self.file(sha), data))
            manifest = {"sha256": sha, "name": name, "seq": seq, "imported_at": imported_at}
            writes.append((self.root / f"{sha}.json", json.dumps(manifest).encode()))
            new.append(fresh)
        tmps: list[Path] = []
        try:
            fds = []
            try:
                for target, data in writes:
                    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    fds.append(fd)
                    tmps.append(tmp)
                    os.fchmod(fd, 0o600)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                for fd in fds:  # after all writes: the first flush carries most of the rest
                    os.fsync(fd)
            finally:
                for fd in fds:
                    os.close(fd)
            for tmp, (target, _) in zip(tmps, writes, strict=True):
                os.replace(tmp, target)
            sync_folder(self.root)
        except BaseException:
            for path in tmps:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            for (sha, *_), fresh in zip(entries, new, strict=True):
                if fresh:
                    self.discard(sha)
            raise
        return new

    def discard(self, sha: str) -> None:
        """Remove ``sha`` and its manifest (used when the import that wrote them rolled back)."""
        for p in (self.file(sha), self.root / f"{sha}.json"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def remove_temporaries(self) -> int:
        """Remove temporary copies (``.<name>.<pid>.tmp``: patient data) that a writer killed
        mid-write left behind, when that process is gone; returns how many. Called at the start
        of every write under the store's lock (:meth:`Store.exclusive`)."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for tmp in self.root.glob(".*.tmp"):
            if not is_dead_pid_name(tmp.name.removesuffix(".tmp")):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
        return removed

    def read(self, sha: str) -> bytes:
        return self.file(sha).read_bytes()

    def files(self) -> list[ArchivedFile]:
        """Archived files with a manifest, in their original import order."""
        if not self.root.is_dir():
            return []
        out = []
        for m in self.root.glob("*.json"):
            try:
                info = json.loads(m.read_text())
            except (OSError, ValueError):
                continue
            sha = str(info.get("sha256", ""))
            if len(sha) == 64 and self.has(sha):
                out.append(
                    ArchivedFile(sha, self.file(sha), str(info.get("name") or sha),
                                 int(info.get("seq", 0)), str(info.get("imported_at", "")))
                )  # fmt: skip
        return sorted(out, key=lambda f: (f.seq, f.imported_at, f.sha256))
