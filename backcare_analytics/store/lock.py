"""One writer at a time per store: an exclusive advisory lock on ``<store>.lock``.

``backcare import`` and ``backcare rebuild`` hold this lock for their whole batch, taken before
they read anything from the store (the registered patients, the ledger), so no writer ever
works from another writer's stale snapshot. A second writer waits, says so once, and gives up
after ``Settings.store_lock_timeout_s`` with :class:`StoreBusyError`, having changed nothing.
Readers (reports, metrics, notebooks) never take it: they use DuckDB's short read-only
connections.

The lock is ``fcntl.flock`` on a file beside the store, created ``0o600`` and never opened
through a symbolic link (``O_NOFOLLOW``). The operating system releases it when the holder
exits, however it exits (SIGKILL included), so a crash never leaves a stale lock; the file
itself stays (deleting a lock file races with a waiter that has it open) and records the
holder's process id for the waiting message. The descriptor is close-on-exec, so no child
process (a worker, a kernel) can keep the lock alive after the command ends.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.safety import create_private_folders
from backcare_analytics.store.db import environment_error

__all__ = ["lock_path", "write_lock"]

try:  # pragma: no cover - always there on POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: DuckDB's own file lock is the only guard
    fcntl = None  # type: ignore[assignment]


def lock_path(store: Path) -> Path:
    """The lock file of the store file ``store``: ``<store>.lock`` beside it."""
    store = Path(store).resolve()  # one lock per store file, whatever link names it
    return store.with_name(store.name + ".lock")


def _open_lock_file(path: Path) -> int:
    """Open (or create, owner-only) the lock file without following a symbolic link."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        create_private_folders(path.parent)  # 0o700 whatever the umask
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(
                f"{path} is a symbolic link; the store's lock file is never followed through "
                "one. Fix: remove the link (the lock file is recreated owner-only)."
            ) from None
        raise environment_error(exc, path) from None
    try:
        os.fchmod(fd, 0o600)
    except OSError:  # pragma: no cover - a lock file owned by someone else
        pass
    return fd


def _holder(fd: int) -> str:
    """The process id the holder wrote into the lock file, as text ('' when unknown)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:  # pragma: no cover
        return ""
    return text if text.isdigit() else ""


@contextmanager
def write_lock(
    store: Path,
    timeout_s: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the store's writer lock for the ``with`` block.

    Parameters
    ----------
    store
        The store file; the lock is :func:`lock_path` of it.
    timeout_s
        How long to wait for another writer before giving up.
    on_wait
        Called once, with a message naming the holder's pid, when the lock is held by another
        process and this one starts waiting.

    Raises
    ------
    StoreBusyError
        Another writer held the lock for more than ``timeout_s``; nothing was changed.
    StoreError
        The lock file cannot be created (read-only or full disk, a symbolic link).
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = lock_path(Path(store))
    fd = _open_lock_file(path)
    try:
        _acquire(fd, path, Path(store), timeout_s, on_wait)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # the pid is only for the waiting message
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(
    fd: int,
    path: Path,
    store: Path,
    timeout_s: float,
    on_wait: Callable[[str], None] | None,
) -> None:
    deadline = time.monotonic() + max(timeout_s, 0.0)
    delay, told = 0.02, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        pid = _holder(fd)
        who = f"another import or rebuild (pid {pid})" if pid else "another import or rebuild"
        if not told and on_wait is not None:
            on_wait(f"store busy: {who} is writing to {store}; waiting up to {timeout_s:g} s")
            told = True
        if time.monotonic() + delay > deadline:
            raise StoreBusyError(
                f"store busy: {who} has been writing to {store} for more than {timeout_s:g} s; "
                "nothing was changed. Fix: wait for it to finish, then run the command again "
                f"(BACKCARE_STORE_LOCK_TIMEOUT_S sets the wait; the lock is {path})."
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
