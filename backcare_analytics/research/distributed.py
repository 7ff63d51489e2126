"""Cohort metrics beyond one pandas process: whole-patient partitions, the same functions.

A registry of 10^5 patients x a year (~2.5 x 10^8 session rows) does not fit comfortably in one
pandas process, but every metric of the package is **per patient**: no output row mixes two
patients. So the cohort is cut into buckets of whole patients, written once as Parquet, and the
unchanged vectorised metric functions run on each bucket independently, in parallel, with no data
exchange (no shuffle) between workers:

1. :func:`patient_bucket` gives each patient a stable bucket, ``blake2b(patient_id) mod n`` (the
   first 8 bytes of the digest read big-endian). Unlike Python's ``hash`` it is the same in every
   process, on every machine and in every run, so a bucket written today is found tomorrow.
2. :func:`write_buckets` writes ``<folder>/<table>/part-<k>.parquet`` for every table and every
   bucket ``k`` (empty buckets too, so the files of one bucket line up across tables).
3. :func:`run_buckets` runs ``fn(tables) -> {name: frame}`` on each bucket, with Dask
   (``dask.delayed`` over bucket numbers on a ``distributed`` cluster, or the local scheduler) or
   serially without Dask, and concatenates the per-bucket outputs. :func:`run_local` is the same
   function on the whole cohort in one process; :func:`same_results` compares the two.

The engine is Dask (optional extra: ``pip install 'backcare_analytics[dask]'``); see
``docs/scaling.md`` for why not Spark and for measurements.

>>> ids = pd.Series(["P001", "P002", "P001"])
>>> patient_bucket(ids, 8).tolist()
[7, 4, 7]
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.errors import InputDataError
from backcare_analytics.metrics.params import Window
from backcare_analytics.research.cohort import CohortPolicy, cohort_metrics
from backcare_analytics.safety import open_private, write_private_text

__all__ = [
    "BucketFn",
    "all_metrics",
    "cohort_window",
    "metrics_fn",
    "dask_available",
    "patient_bucket",
    "run_buckets",
    "run_local",
    "read_bucket",
    "research_metrics",
    "same_results",
    "write_buckets",
]

#: A per-patient computation: clean tables by name in, result frames by name out.
BucketFn = Callable[[Mapping[str, pd.DataFrame]], Mapping[str, pd.DataFrame]]

PATIENT_ID = "patient_id"
#: The registry tables of :func:`research_metrics` (the cohort tables are added to them).
RESEARCH_TABLES = ("adherence_summary", "persistence", "pain_summary")


def dask_available() -> bool:
    """Whether the optional Dask extra (``dask`` and ``distributed``) is installed."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def patient_bucket(ids: pd.Series, n_buckets: int) -> pd.Series:
    """Stable bucket number in ``0 .. n_buckets - 1`` of each patient id.

    Notes
    -----
    ``bucket = int.from_bytes(blake2b(id, digest_size=8), "big") mod n_buckets``, computed once
    per distinct id. The same in every process (Python's ``hash`` of a string is salted per
    process and would scatter a patient over buckets between runs).

    Returns
    -------
    pandas.Series
        ``int64`` bucket numbers aligned with ``ids``.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1; received {n_buckets}")
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    if (codes < 0).any():
        raise InputDataError("patient_id has missing values; every row needs its patient")
    per_id = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(str(u).encode(), digest_size=8).digest(), "big")
            % n_buckets
            for u in uniques
        ),
        dtype="int64",
        count=len(uniques),
    )
    return pd.Series(per_id[codes], index=ids.index, dtype="int64", name="bucket")


def _part(folder: Path, table: str, k: int) -> Path:
    return folder / table / f"part-{k:05d}.parquet"


def write_buckets(tables: Mapping[str, pd.DataFrame], folder: Path | str, n_buckets: int) -> Path:
    """Write every table as ``n_buckets`` Parquet files of whole patients.

    Every table must have a ``patient_id`` column. Row order inside a bucket is kept.
    A ``_buckets.txt`` file records ``n_buckets`` and the table names.
    """
    folder = Path(folder)
    for name, df in tables.items():
        if PATIENT_ID not in df.columns:
            raise InputDataError(f"table {name!r} has no {PATIENT_ID} column; cannot bucket it")
        bucket = patient_bucket(df[PATIENT_ID], n_buckets).to_numpy()
        order = np.argsort(bucket, kind="stable")
        sorted_b = bucket[order]
        bounds = np.searchsorted(sorted_b, np.arange(n_buckets + 1))
        for k in range(n_buckets):
            rows = order[bounds[k] : bounds[k + 1]]
            with open_private(_part(folder, name, k)) as fh:
                df.iloc[np.sort(rows)].to_parquet(fh, index=False, compression="zstd")
    write_private_text(folder / "_buckets.txt", f"{n_buckets}\n" + "\n".join(tables) + "\n")
    return folder


def _layout(folder: Path) -> tuple[int, list[str]]:
    marker = folder / "_buckets.txt"
    if not marker.is_file():
        raise InputDataError(
            f"{folder} is not a bucketed cohort ({marker.name} missing); fix: write it with "
            "write_buckets()"
        )
    first, *names = marker.read_text(encoding="utf-8").split()
    return int(first), names


def read_bucket(folder: Path | str, k: int) -> dict[str, pd.DataFrame]:
    """All tables of bucket ``k``: the rows of the patients in it."""
    folder = Path(folder)
    _, names = _layout(folder)
    return {name: pd.read_parquet(_part(folder, name, k)) for name in names}


def _run_one(folder: str, k: int, fn: BucketFn) -> dict[str, pd.DataFrame]:
    return dict(fn(read_bucket(folder, k)))


def _run_one_to_files(folder: str, k: int, fn: BucketFn, out: str) -> dict[str, int]:
    """Run one bucket and write each result as ``<out>/<name>/part-<k>.parquet``; return the
    row counts only, so nothing large travels back to the client."""
    result = _run_one(folder, k, fn)
    for name, frame in result.items():
        with open_private(_part(Path(out), name, k)) as fh:
            frame.to_parquet(fh, index=False, compression="zstd")
    return {name: len(frame) for name, frame in result.items()}


def _concat(parts: list[Mapping[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    names = list(parts[0]) if parts else []
    out = {}
    for name in names:
        frames = [p[name] for p in parts]
        nonempty = [f for f in frames if len(f)] or frames[:1]
        out[name] = pd.concat(nonempty, ignore_index=True)
    return out


def run_buckets(
    folder: Path | str,
    fn: BucketFn,
    *,
    engine: str = "dask",
    client: Any | None = None,
    out: Path | str | None = None,
) -> dict[str, pd.DataFrame] | dict[str, int]:
    """Run ``fn`` on every bucket and concatenate the results, bucket after bucket.

    Parameters
    ----------
    engine
        ``"dask"``: one ``dask.delayed`` task per bucket, computed on ``client`` (a
        ``distributed.Client``) when given, else on Dask's default scheduler. ``"serial"``: a
        plain loop in this process (the reference, and a fallback without the extra).
    out
        When given, each bucket's results are written by the worker to
        ``<out>/<name>/part-<k>.parquet`` (read them back with :func:`read_bucket` layout or
        ``pd.read_parquet(out / name)``) and only total row counts per result are returned: the
        client then never holds the cohort's results, which is what keeps a 10^5-patient run
        within one machine's memory.
    """
    folder = Path(folder)
    n, _ = _layout(folder)
    if out is not None:
        return _run_to_files(folder, fn, n, Path(out), engine=engine, client=client)
    if engine == "serial":
        return _concat([_run_one(str(folder), k, fn) for k in range(n)])
    if engine != "dask":
        raise ValueError(f"engine must be 'dask' or 'serial'; received {engine!r}")
    if not dask_available():
        raise ImportError(
            "the Dask engine needs the optional extra; fix: pip install "
            "'backcare_analytics[dask]' (or use engine='serial')"
        )
    import dask

    tasks = [dask.delayed(_run_one, pure=True)(str(folder), k, fn) for k in range(n)]
    if client is not None:
        parts = client.gather(client.compute(tasks))
    else:
        parts = list(dask.compute(*tasks))
    return _concat(parts)


def _run_to_files(
    folder: Path, fn: BucketFn, n: int, out: Path, *, engine: str, client: Any | None
) -> dict[str, int]:
    if engine == "serial":
        counts = [_run_one_to_files(str(folder), k, fn, str(out)) for k in range(n)]
    else:
        import dask

        tasks = [
            dask.delayed(_run_one_to_files, pure=True)(str(folder), k, fn, str(out))
            for k in range(n)
        ]
        counts = (
            client.gather(client.compute(tasks)) if client is not None else dask.compute(*tasks)
        )
    names = list(counts[0]) if counts else []
    write_private_text(out / "_buckets.txt", f"{n}\n" + "\n".join(names) + "\n")
    return {name: int(sum(c[name] for c in counts)) for name in names}


def run_local(tables: Mapping[str, pd.DataFrame], fn: BucketFn) -> dict[str, pd.DataFrame]:
    """``fn`` on the whole cohort in this process (what :func:`run_buckets` must reproduce)."""
    return dict(fn(tables))


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    # Exact columns first, floats last: float sums may differ in the last bit between runs.
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    keys = [c for c in df.columns if c not in floats] + floats
    return df.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)


def same_results(
    a: Mapping[str, pd.DataFrame], b: Mapping[str, pd.DataFrame], *, rtol: float = 1e-9
) -> list[str]:
    """Names of the result tables that differ between two runs, row order aside (empty when
    every table agrees in columns, dtypes and values)."""
    differ = [name for name in set(a) ^ set(b)]
    for name in sorted(set(a) & set(b)):
        try:
            pd.testing.assert_frame_equal(
                _canonical(a[name]), _canonical(b[name]), check_exact=False, rtol=rtol
            )
        except AssertionError:
            differ.append(name)
    return sorted(differ)


# ---------------------------------------------------------------------------------------------
# the package's metrics as one bucket function
# ---------------------------------------------------------------------------------------------


def cohort_window(tables: Mapping[str, pd.DataFrame]) -> Window:
    """One window for the whole cohort: from the first programme start to the last logged day.

    Bucketed runs need it explicitly: a default window ("up to the last day anyone logged") would
    end on a different day in each bucket.
    """
    days = [tables[t]["day"].max() for t in ("sessions", "pain") if len(tables.get(t, ()))]
    if not days:
        raise InputDataError("the cohort has no session or diary rows; nothing to compute")
    end = max(days)
    first = tables["patients"]["programme_start"].min()
    return Window(end=end, days=int((end - first) // pd.Timedelta(days=1)) + 1)


def all_metrics(
    tables: Mapping[str, pd.DataFrame],
    *,
    window: Window,
    policy: CohortPolicy,
) -> dict[str, pd.DataFrame]:
    """Every metric table of :func:`backcare_analytics.metrics.run.metric_tables`, unchanged,
    plus the cohort tables (``cohort_summary``, ``cohort_weeks``, ``cohort_exercise_pdc``)."""
    from backcare_analytics.metrics.run import metric_tables

    out = metric_tables(
        tables["sessions"],
        tables["pain"],
        tables["patients"],
        tables["prescriptions"],
        window=window,
    )
    for name, frame in cohort_metrics(tables, policy=policy).items():
        out[f"cohort_{name}"] = frame
    return out


def research_metrics(
    tables: Mapping[str, pd.DataFrame], *, window: Window, policy: CohortPolicy
) -> dict[str, pd.DataFrame]:
    """The tables a cohort study needs, from the metric functions unchanged: adherence summary
    (PDC per exercise and routine), persistence and dropout, pain summary (responders), and the
    cohort tables. (The clinic-report tables, e.g. per-session tolerance and rolling adherence,
    are left to :func:`all_metrics`.)"""
    from backcare_analytics.metrics.registry import MetricInputs, compute

    inputs = MetricInputs(
        sessions=tables["sessions"],
        pain=tables["pain"],
        patients=tables["patients"],
        prescriptions=tables["prescriptions"],
    )
    computed = compute(inputs, RESEARCH_TABLES, window=window)
    out = {name: computed[name] for name in RESEARCH_TABLES}
    del computed
    for name, frame in cohort_metrics(tables, policy=policy).items():
        out[f"cohort_{name}"] = frame
    return out


def metrics_fn(window: Window, policy: CohortPolicy, which: str = "all") -> BucketFn:
    """:func:`all_metrics` (``which="all"``) or :func:`research_metrics` (``"research"``) with
    the cohort-wide window and policy bound (picklable, so Dask can ship it to worker
    processes)."""
    fns = {"all": all_metrics, "research": research_metrics}
    if which not in fns:
        raise ValueError(f"which must be 'all' or 'research'; received {which!r}")
    return functools.partial(fns[which], window=window, policy=policy)
