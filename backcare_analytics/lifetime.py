"""Helper processes that end with the command that started them, and the temporary folders
they leave when they cannot.

A ``backcare`` command starts helper processes: the import's staging worker (forked by a
``forkserver``), the report's workers and their Jupyter kernels, and the metrics' partition
workers. When the command is killed (``SIGKILL``, the out-of-memory killer), nothing runs in
it any more, so the helpers must notice by themselves:

- :func:`end_with` is the initializer of every worker pool: the worker ends as soon as the
  owner process ends. A watchdog thread waits on the owner (a Linux ``pidfd``, else a poll of
  its pid), because a forkserver's worker is the *owner's grandchild*: the parent-death signal
  would only tell it that the forkserver died. Where the owner is the direct parent, the Linux
  parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) is set as well: the kernel sends
  it even while the worker's Python code holds the interpreter lock. (It fires when the
  *thread* that started the worker ends; our pools are made and shut down by one call in one
  thread, so that thread outlives its workers.)
- Jupyter kernels poll their parent themselves (``ipykernel``'s parent poller, armed by the
  ``JPY_PARENT_PID`` that ``jupyter_client`` sets): a kernel ends within a second of the
  worker that started it.
- The multiprocessing ``forkserver`` and ``resource_tracker`` end by themselves once every
  process holding their pipes (the owner and its workers) has ended.

A killed command cannot remove its temporary folders (the kernels' sockets and connection
files). :func:`owned_temp_dir` names each folder after the process that owns it, and
:func:`remove_stale_temp_dirs` removes, at the next start, those whose owner process is gone:
only folders of this user, never through a symlink, and never one whose owner still runs.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = [
    "end_with",
    "owned_temp_dir",
    "process_running",
    "remove_stale_temp_dirs",
    "set_parent_death_signal",
]

#: ``prctl`` option: the signal this process gets when its parent thread ends (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: How often the watchdog looks at the owner where a ``pidfd`` is not available.
POLL_S = 0.5
#: Exit status of a helper whose owner has gone.
EXIT_OWNER_GONE = 1


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``signum`` to this process when its parent ends.

    Returns whether it is set (``False`` off Linux or without ``prctl``).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie, ended but not yet
    reaped by its parent, counts as ended).

    >>> process_running(os.getpid())
    True
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _wait_for_end(pid: int) -> None:
    """Return once process ``pid`` has ended (at once if it already has)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (not Linux, or a kernel before 5.3): poll
        while process_running(pid):
            time.sleep(POLL_S)
        return
    try:
        select.select([fd], [], [])  # readable once the process has ended
    finally:
        os.close(fd)


def _exit_when_ended(owner_pid: int) -> None:
    _wait_for_end(owner_pid)
    os._exit(EXIT_OWNER_GONE)


def end_with(owner_pid: int) -> None:
    """Make this process end as soon as process ``owner_pid`` ends.

    Meant as the initializer of a worker pool, run in each worker:
    ``ProcessPoolExecutor(..., initializer=end_with, initargs=(os.getpid(),))``. Sets the
    parent-death signal when the owner is this process's parent, and starts a daemon
    watchdog thread that ends the process (``os._exit``) when the owner has gone, whether
    it is the parent or a grandparent. Ends the process at once if the owner is already gone.
    """
    if os.getppid() == owner_pid:
        set_parent_death_signal(signal.SIGKILL)
    if not process_running(owner_pid):  # gone before the signal was armed
        os._exit(EXIT_OWNER_GONE)
    threading.Thread(
        target=_exit_when_ended, args=(owner_pid,), name="backcare-end-with", daemon=True
    ).start()


def owned_temp_dir(prefix: str) -> Path:
    """A new owner-only temporary folder named ``<prefix><pid>-<random>``, ``pid`` being this
    process: :func:`remove_stale_temp_dirs` can tell, after a kill, that its owner is gone."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_stale_temp_dirs(prefix: str, parent: Path | None = None) -> list[Path]:
    """Remove the folders :func:`owned_temp_dir` made with ``prefix`` whose owner has ended.

    Only folders in ``parent`` (default: the temporary folder), owned by this user, named
    ``<prefix><pid>-...`` with ``pid`` no longer running are removed; a symlink is never
    followed. Returns the folders removed.
    """
    parent = Path(tempfile.gettempdir()) if parent is None else Path(parent)
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if process_running(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed
