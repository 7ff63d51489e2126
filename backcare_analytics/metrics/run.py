"""Every metric table at once, for the CLI, the benchmark and batch reports.

:func:`metric_tables` runs the adherence, persistence, timing and quality metrics, then the
pain, tolerance, progression and verdict families when their modules are present: each public
function of those modules whose required parameters can be filled -- from the input frames
(``sessions``, ``pain``, ``patients``, ``prescriptions``, ``protocol``, ``window``) or from a
table computed before it (a parameter named like an earlier table) -- is called once, and its
frame is kept under the function's name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import pandas as pd

from backcare_analytics.metrics.adherence import adherence_daily
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.persistence import gap_histogram, persistence
from backcare_analytics.metrics.quality import quality_flags
from backcare_analytics.metrics.rollups import adherence_rollups
from backcare_analytics.metrics.timing import timing_tables
from backcare_analytics.protocol import Protocol, load_protocol

__all__ = ["OTHER_FAMILIES", "metric_calls", "metric_tables"]

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
) -> tuple[list[tuple[str, Callable[[dict[str, Any]], Any]]], list[str]]:
    """The (table name, call) pairs :func:`metric_tables` runs, and what it leaves out.

    Each call takes the dict of tables computed so far (later calls may need earlier tables)
    and returns a table, or a dict of tables (``adherence_rollups``).
    The second element lists the other families' modules that are missing or fail to import.
    """
    protocol = protocol or load_protocol()
    s, p, pts, rx, w = sessions, pain, patients, prescriptions, window
    own: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("adherence_daily", lambda t: adherence_daily(s, rx, pts, window=w)),
        ("adherence_rollups", lambda t: adherence_rollups(t["adherence_daily"], p, window=w)),
        ("persistence", lambda t: persistence(s, pts, window=w)),
        ("gap_histogram", lambda t: gap_histogram(s, pts, window=w)),
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
) -> dict[str, pd.DataFrame]:
    """Every metric table for the given frames, by name (see the module docstring).

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
        sessions, pain, patients, prescriptions, rejects=rejects, window=window, protocol=protocol
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
