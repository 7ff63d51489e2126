"""Helper processes end with the command that started them (issue 10, defect 12).

Real commands in their own session, killed with SIGKILL once their helpers run; every process
carrying the test's environment marker must then be gone within seconds. The helpers are
found by walking /proc for that marker (it is inherited by every descendant: forkserver,
resource tracker, workers, Jupyter kernels).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backcare_analytics.lifetime import process_running, remove_stale_temp_dirs
from backcare_analytics.reports.render import KERNEL_DIR_PREFIX

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="walks /proc")

MARK = "BACKCARE_LIFETIME_TEST"
#: How long helpers may outlive their killed command.
GRACE_S = 8.0
CLI = "import sys; from backcare_analytics.cli import main; sys.exit(main())"

Procs = dict[int, str]


def _marked(marker: str) -> Procs:
    """Running processes (zombies excluded) whose environment holds ``MARK=marker``: cmdlines."""
    found: Procs = {}
    needle = f"{MARK}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if process_running(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short TMPDIR for the command (Unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bclt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _kill_once_started(
    argv: list[str], env: dict[str, str], started: Callable[[Procs], bool], timeout: float = 180
) -> tuple[str, Procs]:
    """Run ``argv`` in its own session; SIGKILL it as soon as ``started`` holds for its
    helpers. Returns the marker and the helpers seen just before the kill."""
    marker = uuid.uuid4().hex
    env = {**os.environ, **env, MARK: marker}
    proc = subprocess.Popen(
        argv,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    helpers: Procs = {}
    seen = False
    try:
        while time.monotonic() < deadline:
            helpers = {p: c for p, c in _marked(marker).items() if p != proc.pid}
            if started(helpers):
                seen = True
                break
            if proc.poll() is not None:
                pytest.fail(
                    f"the command ended (rc {proc.returncode}) before its helpers were seen; "
                    f"give it more work. stderr: {proc.stderr.read()[-400:]!r}"
                )
            time.sleep(0.05)
        else:
            pytest.fail(f"helpers not seen within {timeout} s: {sorted(helpers.values())}")
    finally:
        proc.kill()  # SIGKILL: nothing runs in the command any more
        proc.wait()  # reaped, so that it is gone (not a zombie) for its helpers too
        proc.stderr.close()
        if not seen:
            _end_marked(marker)
    return marker, helpers


def _assert_all_end(marker: str, seconds: float = GRACE_S) -> None:
    """Every process with the marker ends within ``seconds``; ends the rest and fails if not."""
    deadline = time.monotonic() + seconds
    while (left := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    _end_marked(marker)
    assert not left, f"still running {seconds:.0f} s after the kill: {sorted(left.values())}"


def _end_marked(marker: str) -> None:
    """SIGKILL what is left of the test's own processes (found by their marker)."""
    for pid in _marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _forkserver_children(helpers: Procs) -> int:
    """How many of the helpers a forkserver among them has forked (workers)."""
    servers = [p for p, c in helpers.items() if "forkserver" in c]
    return sum(_parent(p) in servers for p in helpers)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


# ---------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------


def _inbox(folder: Path, n: int) -> Path:
    """``n`` small pain diaries of ``n`` patients and their patients file: a batch that the
    import stages in a worker process (``AUTO_WORKER_FILES``)."""
    folder.mkdir(parents=True)
    rows = "".join(f"P{i:03d},UTC,2026-01-01,C1\n" for i in range(n))
    (folder / "patients.csv").write_text("patient_id,timezone,programme_start,clinician\n" + rows)
    for i in range(n):
        days = "".join(
            f"P{i:03d},2026-02-{d:02d}T08:00:00+00:00,{(i + d) % 11},0\n" for d in range(1, 29)
        )
        (folder / f"P{i:03d}_pain.csv").write_text(
            "patient_id,recorded_at,back_pain,leg_pain\n" + days
        )
    return folder


@pytest.mark.slow
def test_import_workers_end_when_the_import_is_killed(tmp_path: Path, short_tmp: Path) -> None:
    from backcare_analytics.io.staging import AUTO_WORKER_FILES

    inbox = _inbox(tmp_path / "inbox", AUTO_WORKER_FILES + 40)
    env = {"BACKCARE_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(short_tmp)}
    argv = [sys.executable, "-c", CLI, "import", str(inbox), "--store", str(tmp_path / "s.db")]
    marker, helpers = _kill_once_started(argv, env, lambda h: _forkserver_children(h) >= 1)
    assert any("resource_tracker" in c for c in helpers.values()), helpers
    _assert_all_end(marker)


@pytest.mark.slow
def test_report_workers_and_kernels_end_when_the_report_is_killed(
    tmp_path: Path, short_tmp: Path
) -> None:
    import _report_clinic as clinic

    store = clinic.demo_store(tmp_path / "store.duckdb")
    env = {"BACKCARE_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(short_tmp)}
    argv = [sys.executable, "-c", CLI, "report", "weekly", "--store", str(store),
            "--out", str(tmp_path / "out"), "--jobs", "2"]  # fmt: skip
    marker, helpers = _kill_once_started(
        argv, env, lambda h: any("ipykernel" in c for c in h.values())
    )
    workers = [p for p, c in helpers.items() if "spawn_main" in c]
    assert len(workers) == 2, helpers
    _assert_all_end(marker)
    # The kill left the kernels' socket folders; the next batch removes them (their owners,
    # the workers, are gone) -- and only them.
    left = sorted(short_tmp.glob(KERNEL_DIR_PREFIX + "*"))
    assert left and all(int(p.name.split("-")[2]) in workers for p in left), left
    assert sorted(remove_stale_temp_dirs(KERNEL_DIR_PREFIX, short_tmp)) == left
    assert not list(short_tmp.glob(KERNEL_DIR_PREFIX + "*"))


@pytest.mark.slow
def test_metrics_workers_end_when_their_owner_is_killed(tmp_path: Path, short_tmp: Path) -> None:
    """``metric_tables_parallel`` (``backcare metrics --jobs``) with partitions that take a
    minute to load: its forkserver workers must not wait that minute once the owner is gone."""
    script = textwrap.dedent("""
        import functools, time
        from backcare_analytics.metrics.run import metric_tables_parallel
        metric_tables_parallel([functools.partial(time.sleep, 60)] * 2, jobs=2)
    """)
    marker, _ = _kill_once_started(
        [sys.executable, "-c", script],
        {"TMPDIR": str(short_tmp)},
        lambda h: _forkserver_children(h) == 2,
    )
    _assert_all_end(marker)


# ---------------------------------------------------------------------------------------------
# the pieces
# ---------------------------------------------------------------------------------------------


def test_a_zombie_is_not_running() -> None:
    """An ended child not yet reaped still has a pid (``kill(pid, 0)`` succeeds) but has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while process_running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(child.pid, 0)  # still there, as a zombie
        assert not process_running(child.pid)
    finally:
        child.wait()
    assert process_running(os.getpid())


def test_end_with_ends_a_grandchild_when_its_owner_is_killed(tmp_path: Path) -> None:
    """The forkserver case: the owner is a grandparent, so only the watchdog can tell."""
    pid_file = tmp_path / "grandchild.pid"
    grandchild = textwrap.dedent(f"""
        import os, sys, time
        from backcare_analytics.lifetime import end_with
        end_with(int(sys.argv[1]))
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    owner = textwrap.dedent(f"""
        import os, subprocess, sys, time
        middle = ("import subprocess, sys; "
                  "subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]])")
        subprocess.run([sys.executable, "-c", middle, {grandchild!r}, str(os.getpid())])
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", owner], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        assert _parent(pid) != proc.pid  # not the owner's child: its parent has already ended
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + GRACE_S
    while process_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_running(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the grandchild outlived its owner")


def test_only_stale_folders_of_this_user_are_removed(tmp_path: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid now names no process (reaped)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        prefix = "bc-test-"
        stale = tmp_path / f"{prefix}{ended.pid}-a"
        (stale / "sub").mkdir(parents=True)
        (stale / "sub" / "kernel.json").write_text("{}")
        kept = [tmp_path / f"{prefix}{alive.pid}-b", tmp_path / f"{prefix}{os.getpid()}-c",
                tmp_path / f"other-{ended.pid}-d", tmp_path / f"{prefix}x-e"]  # fmt: skip
        for folder in kept:
            folder.mkdir()
        target = tmp_path / "elsewhere"
        target.mkdir()
        (target / "data.csv").write_text("x")
        link = tmp_path / f"{prefix}{ended.pid}-f"
        link.symlink_to(target, target_is_directory=True)
        (tmp_path / f"{prefix}{ended.pid}-g").write_text("a file, not a folder")
        assert remove_stale_temp_dirs(prefix, tmp_path) == [stale]
        assert not stale.exists()
        assert all(f.is_dir() for f in kept) and link.is_symlink()
        assert (target / "data.csv").read_text() == "x"
    finally:
        alive.kill()
        alive.wait()
