"""Every metric table at once, for the CLI, the benchmark and batch reports.

:func:`metric_tables` runs the adherence, persistence, timing and quality metrics, then the
pain, tolerance, progression and verdict families when their modules are present: each public
function of those modules whose required parameters can be filled -- from the input frames
(``sessions``, ``pain``, ``patients``, ``prescriptions``, ``protocol``, ``window``) or from a
table computed before it (a parameter named like an earlier table) -- is called once, and its
frame is kept under the function's name.

:func:`metric_tables_parallel` runs :func:`metric_tables` on whole-patient partitions in worker
processes, each loading only its own patients (:class:`StorePartition` from the DuckDB store,
:class:`FramesPartition` from frames in memory), and concatenates the tables;
:func:`metric_tables_from_store` is what ``backcare metrics --jobs N`` calls.
"""

from __future__ import annotations

import importlib
import inspect
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backcare_analytics.lifetime import end_with
from backcare_analytics.metrics.adherence import adherence_daily
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.persistence import gap_histogram, persistence
from backcare_analytics.metrics.quality import quality_flags
from backcare_analytics.metrics.rollups import adherence_rollups
from backcare_analytics.metrics.timing import timing_tables
from backcare_analytics.protocol import Protocol, load_protocol

if TYPE_CHECKING:
    from backcare_analytics.store import Store

__all__ = [
    "OTHER_FAMILIES",
    "MIN_PARTITION_PATIENTS",
    "FramesPartition",
    "StorePartition",
    "default_jobs",
    "metric_calls",
    "metric_tables",
    "metric_tables_from_store",
    "metric_tables_parallel",
    "patient_ranges",
]

#: Metric modules written by others, run when present, in this order.
OTHER_FAMILIES = ("pain", "tolerance", "progression", "verdict")
#: How many of the calls are this module's own (adherence, persistence, timing, quality).
_N_OWN = 6


class _Unfillable(Exception):
    """A function of another family needs an input this runner does not have."""


def _fillable(fn: Callable[..., Any], available: dict[str, Any]) -> dict[str, Any] | None:
    """Keyword arguments for ``fn`` from ``available``; ``None`` when a required one is missing."""
    kwargs: dict[str, Any] = {}
    for name, prm in inspect.signature(fn).parameters.items():
        if prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
            continue
        if name in available and available[name] is not None:
            kwargs[name] = available[name]
        elif prm.default is inspect.Parameter.empty:
            return None
    return kwargs


def metric_calls(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    *,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
    protocol: Protocol | None = None,
    as_of: pd.Timestamp | None = None,
) -> tuple[list[tuple[str, Callable[[dict[str, Any]], Any]]], list[str]]:
    """The (table name, call) pairs :func:`metric_tables` runs, and what it leaves out.

    Each call takes the dict of tables computed so far (later calls may need earlier tables)
    and returns a table, or a dict of tables (``adherence_rollups``).
    The second element lists the other families' modules that are missing or fail to import.
    ``as_of`` is the as-of day of ``persistence`` and ``gap_histogram`` without a window
    (``None``: the last day logged in ``sessions``).
    """
    protocol = protocol or load_protocol()
    s, p, pts, rx, w = sessions, pain, patients, prescriptions, window
    own: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("adherence_daily", lambda t: adherence_daily(s, rx, pts, window=w)),
        ("adherence_rollups", lambda t: adherence_rollups(t["adherence_daily"], p, window=w)),
        ("persistence", lambda t: persistence(s, pts, window=w, as_of=as_of)),
        ("gap_histogram", lambda t: gap_histogram(s, pts, window=w, as_of=as_of)),
        ("timing_tables", lambda t: timing_tables(s, pts, window=w)),
        (
            "quality_flags",
            lambda t: quality_flags(s, p, pts, rx, rejects=rejects, window=w),
        ),
    ]
    inputs = {
        "sessions": s,
        "pain": p,
        "patients": pts,
        "prescriptions": rx,
        "protocol": protocol,
        "window": w,
    }
    missing: list[str] = []
    for family in OTHER_FAMILIES:
        try:
            module = importlib.import_module(f"backcare_analytics.metrics.{family}")
        except Exception:  # a half-written module must not stop the others
            missing.append(family)
            continue
        for name in getattr(module, "__all__", ()):
            fn = getattr(module, name, None)
            if not inspect.isfunction(fn) or name[0].isupper():
                continue
            own.append((name, _other_call(fn, inputs)))
    return own, missing


def _other_call(
    fn: Callable[..., Any], inputs: dict[str, Any]
) -> Callable[[dict[str, Any]], pd.DataFrame]:
    def call(tables: dict[str, Any]) -> pd.DataFrame:
        kwargs = _fillable(fn, {**tables, **inputs})
        if kwargs is None:
            raise _Unfillable(fn.__name__)
        return fn(**kwargs)

    return call


def metric_tables(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    *,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
    protocol: Protocol | None = None,
    skipped: list[str] | None = None,
    as_of: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Every metric table for the given frames, by name (see the module docstring).

    ``as_of`` is the as-of day of ``persistence`` and ``gap_histogram`` when there is no
    window (``None``: the last day logged in ``sessions``).
    Tables of the other families whose inputs cannot be filled, that fail, or that do not
    return a frame are left out; when ``skipped`` is given, ``"name: why"`` is appended to it
    for each (and for each missing module). Errors of this package's own adherence, timing
    and quality metrics propagate.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``adherence_daily``, ``adherence_summary`` (over the window), ``adherence_weekly``
        (per ISO week), ``adherence_rolling``, ``adherence_streaks``, ``persistence``,
        ``gap_histogram``, ``first_session_times``, ``timing_consistency``,
        ``quality_flags``, then e.g. ``pain_summary``, ``session_tolerance`` ...

    Examples
    --------
    >>> import backcare_analytics as bca
    >>> pts = pd.DataFrame({"patient_id": ["P1"], "timezone": ["UTC"],
    ...     "programme_start": [pd.Timestamp("2026-03-02")], "clinician": [None]})
    >>> empty_s = pd.DataFrame({c: pd.Series(dtype=t) for c, t in {"patient_id": "str",
    ...     "day": "datetime64[us]", "exercise_id": "str", "side": "str", "sets": "Int64",
    ...     "reps": "Int64", "hold_s": "Float64", "performed_at": "datetime64[us, UTC]"}.items()})
    >>> empty_p = pd.DataFrame({"patient_id": pd.Series(dtype="str"),
    ...     "day": pd.Series(dtype="datetime64[us]")})
    >>> t = metric_calls(empty_s, empty_p, pts, bca.build_prescriptions(pts))[0]
    >>> [name for name, _ in t][:3]
    ['adherence_daily', 'adherence_rollups', 'persistence']
    """
    calls, missing = metric_calls(
        sessions,
        pain,
        patients,
        prescriptions,
        rejects=rejects,
        window=window,
        protocol=protocol,
        as_of=as_of,
    )
    notes = skipped if skipped is not None else []
    notes.extend(f"{family}: module missing or not importable" for family in missing)
    tables: dict[str, pd.DataFrame] = {}
    for i, (name, call) in enumerate(calls):
        if i < _N_OWN:
            out = call(tables)
            tables.update(out if isinstance(out, dict) else {name: out})
            continue
        try:
            out = call(tables)
        except _Unfillable:
            notes.append(f"{name}: needs an input this runner cannot provide")
            continue
        except Exception as exc:  # another family's failure must not stop ours
            notes.append(f"{name}: failed ({type(exc).__name__}: {str(exc)[:160]})")
            continue
        if isinstance(out, pd.DataFrame):
            tables[name] = out
        else:
            notes.append(f"{name}: did not return a table")
    return tables


# ---------------------------------------------------------------------------------------------
# whole-patient partitions in worker processes
# ---------------------------------------------------------------------------------------------

#: Fewest patients per partition when :func:`metric_tables_from_store` chooses the partitions.
MIN_PARTITION_PATIENTS = 250
#: The four input frames a partition loader returns.
FRAMES = ("sessions", "pain", "patients", "prescriptions")


def default_jobs() -> int:
    """Worker processes by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def patient_ranges(patient_ids: Sequence[str] | pd.Series, parts: int) -> list[list[str]]:
    """The distinct ids, sorted, cut into at most ``parts`` contiguous runs of near-equal size.

    Contiguous sorted runs (rather than hash buckets) keep the metric tables' patient order, so
    concatenating the partitions' tables in order gives the single-process tables row for row.

    Examples
    --------
    >>> patient_ranges(["P3", "P1", "P2", "P1"], 2)
    [['P1', 'P2'], ['P3']]
    """
    ids = np.sort(pd.unique(pd.Series(list(patient_ids), dtype="str")).astype(object))
    return [list(chunk) for chunk in np.array_split(ids, max(1, parts)) if len(chunk)]


def _subset(df: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    return df[df["patient_id"].isin(ids)].reset_index(drop=True)


@dataclass(frozen=True)
class FramesPartition:
    """A partition given as frames (pickled to the worker): the rows of ``patient_ids``."""

    frames: dict[str, pd.DataFrame]
    patient_ids: tuple[str, ...]

    def __call__(self) -> dict[str, pd.DataFrame]:
        return {name: _subset(self.frames[name], self.patient_ids) for name in FRAMES}


@dataclass(frozen=True)
class StorePartition:
    """A partition read by the worker from the store (read-only): the rows of ``patient_ids``,
    exactly as ``backcare metrics`` reads the whole store, restricted to them."""

    store: Store
    patient_ids: tuple[str, ...]

    def __call__(self) -> dict[str, pd.DataFrame]:
        ids = list(self.patient_ids)
        return {
            "sessions": self.store.sessions(patient_ids=ids),
            "pain": self.store.pain(patient_ids=ids),
            "patients": _subset(self.store.patients(), ids),
            "prescriptions": _subset(self.store.prescriptions(), ids),
        }


Loader = Callable[[], dict[str, pd.DataFrame]]
Reducer = Callable[[dict[str, pd.DataFrame]], Any]


def _run_partition(
    load: Loader, options: dict[str, Any], reduce: Reducer | None
) -> tuple[Any, list[str]]:
    """One partition in a worker: load it, compute every table, let the inputs go."""
    frames = load()
    skipped: list[str] = []
    tables = metric_tables(*(frames[n] for n in FRAMES), skipped=skipped, **options)
    del frames
    return (tables if reduce is None else reduce(tables)), skipped


def _concat(parts: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Each table's partitions one after the other (names in first-seen order)."""
    names = list(dict.fromkeys(name for part in parts for name in part))
    out = {}
    for name in names:
        frames = [part[name] for part in parts if name in part]
        nonempty = [f for f in frames if len(f)] or frames[:1]
        out[name] = nonempty[0] if len(nonempty) == 1 else pd.concat(nonempty, ignore_index=True)
    return out


def metric_tables_parallel(
    loaders: Sequence[Loader],
    *,
    jobs: int | None = None,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
    as_of: pd.Timestamp | None = None,
    protocol: Protocol | None = None,
    skipped: list[str] | None = None,
    reduce: Reducer | None = None,
    context: str = "forkserver",
    tasks_per_worker: int | None = 1,
) -> dict[str, pd.DataFrame] | list[Any]:
    """:func:`metric_tables` over whole-patient partitions in ``jobs`` worker processes.

    Parameters
    ----------
    loaders
        One picklable zero-argument callable per partition returning its ``sessions``,
        ``pain``, ``patients`` and ``prescriptions`` frames (:class:`StorePartition`,
        :class:`FramesPartition`); every patient in exactly one partition, partitions in
        patient order (:func:`patient_ranges`).
    jobs
        Worker processes (default :func:`default_jobs`); ``1`` runs the partitions one after
        another in this process.
    rejects, window, protocol, skipped
        As for :func:`metric_tables` (skip notes are reported once).
    as_of
        Without a window, the cohort's last logged day, so that ``persistence`` and
        ``gap_histogram`` count every partition to the same day; ``None``: each partition's
        own last day (then the tables differ from a whole-cohort run).
    reduce
        A picklable function the worker applies to its partition's tables before sending
        them back (e.g. to write them and return row counts); then the list of its results
        is returned instead of the tables.
    context
        The multiprocessing start method; ``forkserver`` (the default) forks each worker from
        a clean server process that has imported the metrics once.
    tasks_per_worker
        Partitions a worker process computes before it exits and a fresh one takes over
        (``None``: no limit; a worker's memory is then bounded by its largest partition plus
        what the allocator keeps).

    Returns
    -------
    dict of str to pandas.DataFrame
        The tables of :func:`metric_tables`, each the concatenation of its partitions in
        order: equal to the single-process tables when ``as_of`` (or a window) is given.

    Notes
    -----
    By default each worker process computes one partition and exits, so a worker's memory is
    bounded by its partition and returned to the system afterwards; the parent holds the
    finished tables only.
    """
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    options = {"rejects": rejects, "window": window, "as_of": as_of, "protocol": protocol}
    if jobs == 1 or len(loaders) <= 1:
        results = [_run_partition(load, options, reduce) for load in loaders]
    else:
        ctx = mp.get_context(context)
        if context == "forkserver":
            families = [f"backcare_analytics.metrics.{f}" for f in OTHER_FAMILIES]
            ctx.set_forkserver_preload([__name__, *families])
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(loaders)),
            mp_context=ctx,
            max_tasks_per_child=tasks_per_worker,
            initializer=end_with,  # a worker ends when this process does, even by a kill
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(_run_partition, load, options, reduce) for load in loaders]
            results = [f.result() for f in futures]
    if skipped is not None:
        skipped.extend(dict.fromkeys(note for _, notes in results for note in notes))
    parts = [res for res, _ in results]
    return parts if reduce is not None else _concat(parts)


def metric_tables_from_store(
    store: Store,
    patient_ids: Sequence[str] | None = None,
    *,
    jobs: int | None = None,
    partitions: int | None = None,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
    skipped: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every metric table of the store's patients (or of ``patient_ids``), in ``jobs`` worker
    processes over ``partitions`` whole-patient ranges, each worker reading its own patients
    from the store read-only.

    ``partitions`` defaults to ``2 * jobs`` ranges of at least :data:`MIN_PARTITION_PATIENTS`
    patients; with fewer than two such ranges (a small clinic) the tables are computed in this
    process, which is quicker than starting workers.

    Without a window, the as-of day of ``persistence`` and ``gap_histogram`` is the last day
    logged by any of these patients, as in a single :func:`metric_tables` call on them all.
    With ``jobs=1`` the store is read once and :func:`metric_tables` runs in this process.
    """
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    ids = list(patient_ids) if patient_ids is not None else None
    pts = store.patients()
    if ids is not None:
        pts = _subset(pts, ids)
    all_ids = list(pts["patient_id"])
    if partitions is None:  # a small clinic is quicker than starting worker processes
        partitions = min(2 * jobs, len(all_ids) // MIN_PARTITION_PATIENTS)
    if jobs == 1 or partitions < 2 or len(all_ids) < 2:
        return metric_tables(
            store.sessions(patient_ids=ids),
            store.pain(patient_ids=ids),
            pts,
            _subset(store.prescriptions(), all_ids),
            rejects=rejects,
            window=window,
            skipped=skipped,
        )
    as_of = None
    if window is None:
        sql = "SELECT max(day) AS d FROM sessions WHERE list_contains(?, patient_id)"
        last = store.query(sql, [all_ids]).column("d")[0].as_py()
        as_of = None if last is None else pd.Timestamp(last)
    ranges = patient_ranges(all_ids, partitions)
    loaders = [StorePartition(store, tuple(r)) for r in ranges]
    out = metric_tables_parallel(
        loaders, jobs=jobs, rejects=rejects, window=window, as_of=as_of, skipped=skipped
    )
    return out if isinstance(out, dict) else {}  # without a reducer it is the tables
