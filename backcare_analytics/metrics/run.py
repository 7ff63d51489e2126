"""Every metric table at once, for the CLI, the benchmark and batch reports.

:func:`metric_tables` computes every table of the metric registry
(:data:`backcare_analytics.metrics.registry.METRICS`) over one window: adherence, persistence,
timing, quality, pain, tolerance, progression and the verdict, each table under its registry
name, in registry order. A table that cannot be computed raises; none is left out silently.

:func:`metric_tables_parallel` runs :func:`metric_tables` on whole-patient partitions in worker
processes, each loading only its own patients (:class:`StorePartition` from the DuckDB store,
:class:`FramesPartition` from frames in memory), and concatenates the tables;
:func:`metric_tables_from_store` is what ``backcare metrics --jobs N`` calls.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backcare_analytics.lifetime import end_with
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.registry import MetricInputs, compute
from backcare_analytics.protocol import Protocol, load_protocol

if TYPE_CHECKING:
    from pathlib import Path

    from backcare_analytics.store import Store

__all__ = [
    "MIN_PARTITION_PATIENTS",
    "FramesPartition",
    "StorePartition",
    "default_jobs",
    "metric_tables",
    "metric_tables_from_store",
    "metric_tables_parallel",
    "patient_ranges",
]


def metric_tables(
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    patients: pd.DataFrame,
    prescriptions: pd.DataFrame,
    *,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
    protocol: Protocol | None = None,
    as_of: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Every metric table of the registry for the given frames, by name, in registry order.

    ``rejects`` are refused rows per patient (``patient_id, n_rejected``, from
    :func:`~backcare_analytics.metrics.quality.reject_counts`) for ``quality_flags``;
    ``protocol`` defaults to the clinic's (:func:`~backcare_analytics.protocol.load_protocol`);
    ``as_of`` is the as-of day of ``persistence`` and ``gap_histogram`` when there is no
    window (``None``: the last day logged in ``sessions``).

    Returns
    -------
    dict of str to pandas.DataFrame
        One table per :data:`~backcare_analytics.metrics.registry.METRICS` entry:
        ``adherence_daily``, ``adherence_summary`` (over the window), ``adherence_weekly``
        (per ISO week), ``adherence_rolling``, ``adherence_streaks``, ``persistence``,
        ``gap_histogram``, ``first_session_times``, ``timing_consistency``,
        ``quality_flags``, ``pain_daily``, ``pain_summary``, ``session_tolerance`` ...

    Raises
    ------
    MetricInputError
        A metric cannot run; the message names it and the input it lacked.

    Examples
    --------
    >>> from backcare_analytics.synth import SynthConfig, simulate
    >>> c = simulate(SynthConfig(patients=2, weeks=2, seed=1))
    >>> tables = metric_tables(c.sessions, c.pain, c.patients, c.prescriptions)
    >>> list(tables)[:3], len(tables)
    (['adherence_daily', 'adherence_summary', 'adherence_weekly'], 18)
    """
    inputs = MetricInputs(
        sessions=sessions,
        pain=pain,
        patients=patients,
        prescriptions=prescriptions,
        rejects=rejects,
        protocol=protocol or load_protocol(),
    )
    return compute(inputs, window=window, as_of=as_of)


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


def _run_partition(load: Loader, options: dict[str, Any], reduce: Reducer | None) -> Any:
    """One partition in a worker: load it, compute every table, let the inputs go."""
    frames = load()
    tables = metric_tables(*(frames[n] for n in FRAMES), **options)
    del frames
    return tables if reduce is None else reduce(tables)


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
    rejects, window, protocol
        As for :func:`metric_tables`.
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
        if context == "forkserver":  # this module imports the registry, hence every metric
            ctx.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(loaders)),
            mp_context=ctx,
            max_tasks_per_child=tasks_per_worker,
            initializer=end_with,  # a worker ends when this process does, even by a kill
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(_run_partition, load, options, reduce) for load in loaders]
            results = [f.result() for f in futures]
    return results if reduce is not None else _concat(results)


def metric_tables_from_store(
    store: Store | Path | str,
    patient_ids: Sequence[str] | None = None,
    *,
    jobs: int | None = None,
    partitions: int | None = None,
    rejects: pd.DataFrame | None = None,
    window: Window | None = None,
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
    ``store`` is a :class:`~backcare_analytics.store.Store` or its file (:meth:`Store.of`).
    """
    from backcare_analytics.store import Store

    store = Store.of(store)
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
        )
    as_of = None
    if window is None:
        sql = "SELECT max(day) AS d FROM sessions WHERE list_contains(?, patient_id)"
        last = store.query(sql, [all_ids]).column("d")[0].as_py()
        as_of = None if last is None else pd.Timestamp(last)
    ranges = patient_ranges(all_ids, partitions)
    loaders = [StorePartition(store, tuple(r)) for r in ranges]
    out = metric_tables_parallel(loaders, jobs=jobs, rejects=rejects, window=window, as_of=as_of)
    return out if isinstance(out, dict) else {}  # without a reducer it is the tables
