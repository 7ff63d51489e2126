"""The raw archive: every imported file's exact bytes, named by SHA-256, owner-only.

``<archive>/<sha256>`` holds the bytes and ``<sha256>.json`` a small manifest (the file's name as
offered, its ledger sequence number and import time) so that ``backcare rebuild`` can replay the
archive in the original order from the archive alone. The folder is ``0o700``, files ``0o600``.
Writes go to a temporary name, are flushed to disk and renamed, so a file is either whole or
absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ArchivedFile", "RawArchive", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``.

    >>> sha256_bytes(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


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
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def file(self, sha: str) -> Path:
        """Where the bytes of ``sha`` live (whether or not they are there)."""
        return self.root / sha

    def has(self, sha: str) -> bool:
        return self.file(sha).is_file()

    def _write_atomic(self, target: Path, data: bytes) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)

    def put(self, sha: str, data: bytes, *, name: str, seq: int, imported_at: str) -> bool:
        """Store ``data`` under ``sha`` with its manifest; True when the bytes were new."""
        self._ensure()
        new = not self.has(sha)
        if new:
            self._write_atomic(self.file(sha), data)
        manifest = {"sha256": sha, "name": name, "seq": seq, "imported_at": imported_at}
        self._write_atomic(self.root / f"{sha}.json", json.dumps(manifest).encode())
        return new

    def discard(self, sha: str) -> None:
        """Remove ``sha`` and its manifest (used when the import that wrote them rolled back)."""
        for p in (self.file(sha), self.root / f"{sha}.json"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

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
