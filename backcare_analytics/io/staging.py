"""Staging: everything of a file that needs no store lock — hash, read, normalise.

Part of the importer (:mod:`backcare_analytics.io.importer` drives it;
:mod:`backcare_analytics.io.writer` writes what it stages). Files are read with
:func:`backcare_analytics.io.readers.read_export` and normalised with
:func:`backcare_analytics.io.normalize.normalize_many` (a group of files together), ahead of the
writer: in a helper thread, or in worker processes (``ProcessPoolExecutor`` with
``forkserver``; :func:`_pool_workers` chooses). Names with a leading underscore are private to
the ``io`` package.
"""

from __future__ import annotations

import hashlib
import os
import typing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.errors import BackcareError, InputDataError
from backcare_analytics.lifetime import end_with
from backcare_analytics.protocol import Protocol
from backcare_analytics.schemas import ensure_validation_enabled
from backcare_analytics.store.archive import sha256_bytes
from backcare_analytics.store.core import CLEAN_DTYPES

__all__: list[str] = []


class _Env(typing.Protocol):
    """What staging reads from its caller: the writer's context or a worker's environment."""

    @property
    def settings(self) -> Settings: ...

    @property
    def protocol(self) -> Protocol: ...

    @property
    def now(self) -> pd.Timestamp: ...

    @property
    def shas(self) -> dict[str, str]: ...


_KIND_ORDER = {"patients": 0, "sessions": 1, "pain": 2}


def _read_export(path: Path, settings: Settings, data: bytes | None) -> Any:
    from backcare_analytics.io.readers import read_export

    return read_export(path, settings, data=data)


def _normalize(table: Any, **kwargs: Any) -> Any:
    from backcare_analytics.io.normalize import normalize

    return normalize(table, **kwargs)


_REAL_STAGES = (_read_export, _normalize)


@dataclass(frozen=True)
class _Item:
    path: Path  # where the bytes are
    name: str  # what the ledger calls it (the offered file's name)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load(item: _Item, limit: int) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256, reading at most ``limit + 1`` bytes: a file that
    grew past the size limit after it was listed (or a device behind a link that never ends)
    comes back one byte too long, and the caller hashes it in chunks and refuses it."""
    with open(item.path, "rb") as f:
        data = f.read(limit + 1)
    return data, sha256_bytes(data)


#: The SHA-256 of no bytes: the ledger's key for a file that could not be read at all.
_NO_BYTES_SHA = sha256_bytes(b"")


def _refusal(item: _Item, exc: Exception) -> Exception:
    """Why a file is refused when reading or normalising it raised ``exc``: a refusal of the
    readers as it is, an operating-system error as ``unreadable``, anything else as
    ``internal_error`` (a defect of ours, confined to this file; the batch goes on)."""
    from backcare_analytics.io.readers import internal_error, unreadable

    if isinstance(exc, InputDataError):
        return exc
    if isinstance(exc, OSError):
        return unreadable(item.name, exc)
    return internal_error(item.name, exc)


def _upsert_patients(known: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    cols = list(CLEAN_DTYPES["patients"])
    both = pd.concat([known[cols], new[cols].astype(CLEAN_DTYPES["patients"])], ignore_index=True)
    return both.drop_duplicates("patient_id", keep="last").reset_index(drop=True)


@dataclass
class _Prepared:
    """A file read and normalised, ready to be written."""

    item: _Item
    sha: str
    data: bytes
    raw: Any
    tables: list[tuple[str, Any, Any]]  # (kind, raw table, Normalized)
    rows_read: int
    warnings: list[str]


def _prepare(
    ctx: _Env, item: _Item, data: bytes, sha: str, raw: Any, patients: pd.DataFrame
) -> _Prepared:
    tables = sorted(raw.tables, key=lambda t: _KIND_ORDER.get(t.kind, 9))
    out, warnings = [], list(raw.warnings) if hasattr(raw, "warnings") else []
    for t in tables:
        norm = _normalize(
            t,
            source_file=sha,
            patients=patients,
            protocol=ctx.protocol,
            settings=ctx.settings,
            now=ctx.now,
        )
        if t.kind == "patients":
            patients = _upsert_patients(patients, norm.clean)
        warnings += [*t.warnings, *norm.warnings]
        out.append((t.kind, t, norm))
    rows_read = sum(len(t.frame) + len(t.row_errors) for t in tables)
    return _Prepared(item, sha, data, raw, out, rows_read, list(dict.fromkeys(warnings)))


@dataclass
class _Staged:
    """A file hashed, read and normalised (maybe in the helper thread), ready to write."""

    item: _Item
    sha: str
    size: int
    prep: _Prepared | None = None
    refused: Exception | None = None
    already: bool = False

    @property
    def has_patients(self) -> bool:
        return self.prep is not None and any(k == "patients" for k, _, _ in self.prep.tables)


def _read_one(env: _Env, item: _Item) -> tuple[_Staged, Any, bytes | None]:
    """Hash and read one file: the staged file, and its raw export and bytes when readable.

    Never raises for the file's sake: a file that is gone, unreadable or that a reader
    cannot handle comes back refused (:func:`_refusal`), so the batch goes on."""
    sha, size = _NO_BYTES_SHA, 0
    try:
        size = item.path.stat().st_size
        data: bytes | None = None
        if size <= env.settings.max_file_bytes:
            data, sha = _load(item, env.settings.max_file_bytes)
            size = len(data)
        if data is None or len(data) > env.settings.max_file_bytes:
            data, sha = None, _sha256_file(item.path)  # hashed in chunks; refused below
        if env.shas.get(sha) == "imported":
            return _Staged(item, sha, size, already=True), None, None
        if data is None:
            _read_export(item.path, env.settings, None)
            raise InputDataError(f"{item.name}: over the size limit")
        raw = _read_export(Path(item.name), env.settings, data)
    except Exception as exc:
        _raise_unless_about_a_file(exc)
        return _Staged(item, sha, size, refused=_refusal(item, exc)), None, None
    return _Staged(item, sha, size), raw, data


def _stage(env: _Env, item: _Item, patients: pd.DataFrame) -> _Staged:
    """Everything of one file that needs no store lock: hash, read, normalise."""
    return _stage_many(env, [item], patients)[0]


def _stage_many(env: _Env, items: list[_Item], patients: pd.DataFrame) -> list[_Staged]:
    """:func:`_stage` for a group of files; their tables are normalised together
    (:func:`~backcare_analytics.io.normalize.normalize_many`, the same per-file results)
    unless one holds patients. A file after one holding patients must be staged again once
    that one is written (:func:`_run` does)."""
    staged, reads = [], []
    for item in items:
        st, raw, data = _read_one(env, item)
        staged.append(st)
        if raw is not None:
            reads.append((st, raw, data))
    batch = (
        len(reads) > 1
        and _normalize is _REAL_STAGES[1]
        and not any(t.kind == "patients" for _, raw, _ in reads for t in raw.tables)
    )
    if batch:
        try:
            _prepare_together(env, reads, patients)
            return staged
        except Exception as exc:  # one file's defect: normalise them one by one instead
            _raise_unless_about_a_file(exc)
    for st, raw, data in reads:
        try:
            st.prep = _prepare(env, st.item, data, st.sha, raw, patients)
        except Exception as exc:
            _raise_unless_about_a_file(exc)
            st.refused = _refusal(st.item, exc)
    return staged


def _raise_unless_about_a_file(exc: Exception) -> None:
    """Re-raise errors of the environment rather than of a file (pandera's checks switched
    off, the store): they must stop the import, not refuse a file."""
    if isinstance(exc, BackcareError) and not isinstance(exc, InputDataError):
        raise exc


def _prepare_together(
    env: _Env, reads: list[tuple[_Staged, Any, bytes]], patients: pd.DataFrame
) -> None:
    """Normalise the tables of several files in one go
    (:func:`~backcare_analytics.io.normalize.normalize_many`) and set each file's ``prep``."""
    from backcare_analytics.io.normalize import normalize_many

    per_file = [sorted(raw.tables, key=lambda t: _KIND_ORDER.get(t.kind, 9)) for _, raw, _ in reads]
    flat = [(st.sha, t) for (st, _, _), tables in zip(reads, per_file, strict=True) for t in tables]
    norms = iter(
        normalize_many(
            [t for _, t in flat],
            source_files=[sha for sha, _ in flat],
            patients=patients,
            protocol=env.protocol,
            settings=env.settings,
            now=env.now,
        )  # fmt: skip
    )
    for (st, raw, data), tables in zip(reads, per_file, strict=True):
        out, warnings = [], list(getattr(raw, "warnings", ()))
        for t in tables:
            norm = next(norms)
            warnings += [*t.warnings, *norm.warnings]
            out.append((t.kind, t, norm))
        rows_read = sum(len(t.frame) + len(t.row_errors) for t in tables)
        st.prep = _Prepared(
            st.item, st.sha, data, raw, out, rows_read, list(dict.fromkeys(warnings))
        )


@dataclass(frozen=True)
class _StageEnv:
    """What staging needs, without the store: sent once to each worker process."""

    settings: Settings
    protocol: Protocol
    now: pd.Timestamp
    shas: dict[str, str]


_WORKER_ENV: _StageEnv | None = None


def _worker_init(env: _StageEnv, owner_pid: int) -> None:
    global _WORKER_ENV
    end_with(owner_pid)  # the worker (the forkserver's child) ends when the import does
    _WORKER_ENV = env
    ensure_validation_enabled()


def _worker_usage() -> dict[str, float]:
    """This worker's CPU seconds and peak resident memory (VmHWM, MiB)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"pid": os.getpid(), "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": _vm_hwm_mib()}


def _vm_hwm_mib() -> float:
    """Peak resident memory of this process (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: CPU and peak memory of each worker process of the last batch (for benchmarks).
LAST_WORKER_USAGE: list[dict[str, float]] = []


def _close_pool(pool: Executor, n_proc: int) -> None:
    """Shut the pool down, first asking each worker process for its resource usage."""
    LAST_WORKER_USAGE.clear()
    if n_proc:
        try:
            futs = [pool.submit(_worker_usage) for _ in range(n_proc * 2)]
            seen = {u["pid"]: u for u in (f.result(timeout=10) for f in futs)}
            LAST_WORKER_USAGE.extend(seen.values())
        except Exception:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _stage_in_worker(items: list[_Item], patients: pd.DataFrame) -> list[_Staged]:
    """:func:`_stage_many` in a worker process (its environment came with the initializer)."""
    if _WORKER_ENV is None:  # pragma: no cover - the pool always runs the initializer
        raise RuntimeError("import worker not initialised")
    staged = _stage_many(_WORKER_ENV, items, patients)
    for st in staged:  # a reader's refusal may not survive pickling: send message and reason
        if st.refused is not None:
            sent = InputDataError(str(st.refused))
            sent.reason = getattr(st.refused, "reason", None)  # type: ignore[attr-defined]
            st.refused = sent
    return staged


def _pool_workers(workers: int | None, items: list[_Item]) -> int:
    """How many worker processes stage files (0: a helper thread in this process).

    ``workers=None`` chooses: one worker process for a batch of at least
    ``AUTO_WORKER_FILES`` small files (on average under ``AUTO_WORKER_BYTES``), else the
    helper thread. Small files cost mostly Python-level reading and normalisation, which the
    helper thread runs under the GIL alongside the writer; a worker process runs it beside the
    writer (2,321 weekly files: 10.8 -> 7.6 ms per file on 2 cores). Large files are staged
    in the helper thread: their frames would cost more to send between processes than the
    worker saves (measured slower), and a worker costs ~400 MiB. A worker that cannot start
    (say, a script without an ``if __name__ == "__main__"`` guard) falls back to the thread.
    """
    real = _read_export is _REAL_STAGES[0] and _normalize is _REAL_STAGES[1]
    if not real:  # tests replace the two stages with stand-ins in this process only
        return 0
    if workers is not None:
        return max(workers, 0)
    if len(items) < AUTO_WORKER_FILES or (os.cpu_count() or 1) < 2:
        return 0
    sizes = []
    for it in items:
        try:
            sizes.append(it.path.stat().st_size)
        except OSError:
            sizes.append(0)
    return 1 if sum(sizes) / len(sizes) <= AUTO_WORKER_BYTES else 0


#: ``workers=None``: a batch of this many files or more, on average this small, is staged
#: in a worker process.
AUTO_WORKER_FILES = 200

AUTO_WORKER_BYTES = 256 << 10


def _make_pool(ctx: _Env, n: int) -> Executor:
    if n == 0:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="backcare-import")
    import multiprocessing as mp

    mpc = mp.get_context("forkserver")
    mpc.set_forkserver_preload(["backcare_analytics.io.staging"])
    env = _StageEnv(ctx.settings, ctx.protocol, ctx.now, dict(ctx.shas))
    pool = ProcessPoolExecutor(
        n, mp_context=mpc, initializer=_worker_init, initargs=(env, os.getpid())
    )
    try:
        for _ in range(n):  # start the workers now (about a second) while the first is staged
            pool.submit(os.getpid)
    except Exception as exc:  # no forkserver here (sandbox, socket path too long, no threads)
        pool.shutdown(wait=False, cancel_futures=True)
        raise BrokenProcessPool(f"import worker could not start ({type(exc).__name__})") from exc
    return pool
