"""The metric registry: every metric table of the package, as data, and the one way to run them.

:data:`METRICS` is a plain, typed list of :class:`MetricSpec`: the table's name, its family,
the function that computes it, the input frames it takes, the other tables it needs, its result
schema, and whether it takes a window (and, without one, an as-of day). It drives
``backcare metrics`` (:mod:`backcare_analytics.metrics.run`), the weekly report's week data
(:mod:`backcare_analytics.reports.context`) and the Dask bucket runner
(:mod:`backcare_analytics.research.distributed`); a test keeps the index of docs/metrics.md
equal to it.

How a spec's function is called (:func:`run_step`):

- each input named in ``inputs`` (and each of ``optional`` that the run has) by keyword, under
  the input's name (``sessions=``, ``pain=``, ``patients=``, ``prescriptions=``, ``rejects=``,
  ``protocol=``);
- each table named in ``needs`` by keyword, under that table's name (``adherence_daily=``); the
  table is computed first, so a spec never recomputes another's work;
- ``window=`` unless ``period`` is ``"none"``; ``as_of=`` too when ``period`` is ``"as_of"``;
- ``policy=`` when the spec names a policy (``"adherence"``, ``"pain"``, ...) and the run was
  given one under that name (else the function's default);
- any per-run options of the spec (e.g. ``all_weeks=False`` for the report's verdict).

A **shared step** (``step="timing_tables"``) computes several tables from one pass: its function
takes ``parts``, the names of the tables wanted, and returns a dict of them. Tables of one step
with the same window and options are computed by one call (:func:`plan_steps`).

A metric that cannot run raises :class:`MetricInputError` naming itself and what it lacked;
nothing is swallowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import pandas as pd
import pandera.pandas as pa

from backcare_analytics.errors import BackcareError
from backcare_analytics.metrics.adherence import AdherencePolicy, adherence_daily
from backcare_analytics.metrics.pain import pain_daily, pain_summary
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.persistence import gap_histogram, persistence
from backcare_analytics.metrics.progression import (
    capacity_daily,
    capacity_weekly,
    progression_events,
    progression_flags,
)
from backcare_analytics.metrics.quality import quality_flags
from backcare_analytics.metrics.rollups import (
    adherence_rolling,
    adherence_rollups,
    adherence_streaks,
    adherence_summary,
)
from backcare_analytics.metrics.timing import (
    first_session_times,
    timing_consistency,
    timing_tables,
)
from backcare_analytics.metrics.tolerance import session_tolerance
from backcare_analytics.metrics.verdict import weekly_verdict
from backcare_analytics.protocol import Protocol
from backcare_analytics.schemas.results import (
    AdherenceDaily,
    AdherenceRolling,
    AdherenceStreaks,
    AdherenceSummary,
    CapacityDaily,
    CapacityWeekly,
    FirstSessionTimes,
    GapHistogram,
    PainDaily,
    PainSummary,
    Persistence,
    ProgressionEvents,
    ProgressionFlags,
    QualityFlags,
    SessionTolerance,
    TimingConsistency,
    WeeklyVerdict,
)

__all__ = [
    "INPUTS",
    "METRICS",
    "METRICS_NAMES",
    "ROLLUP_TABLES",
    "TIMING_TABLES",
    "InputName",
    "MetricInputError",
    "MetricInputs",
    "MetricSpec",
    "Period",
    "Step",
    "compute",
    "plan_steps",
    "rollup_step",
    "run_step",
    "spec",
    "timing_step",
]

#: The input frames (and the protocol) a metric may take, by the keyword it takes them under.
InputName = Literal["sessions", "pain", "patients", "prescriptions", "rejects", "protocol"]
INPUTS: tuple[InputName, ...] = get_args(InputName)
#: ``"window"``: takes ``window=``; ``"as_of"``: ``window=`` and, without a window, the as-of
#: day ``as_of=``; ``"none"``: neither (it works on the tables it needs).
Period = Literal["window", "as_of", "none"]
MetricFunction = Callable[..., Any]


class MetricInputError(BackcareError, ValueError):
    """A metric cannot run: an input frame or a table it needs is missing from the run."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric table: what computes it, from what, and what it looks like.

    Attributes
    ----------
    name
        The table's name (``backcare metrics`` writes ``<name>.csv`` and ``<name>.parquet``).
    family
        The metric family (the module of docs/metrics.md that defines it).
    function
        Computes the table (or, for a shared step, a dict of tables; see the module docstring).
    schema
        The pandera model the table satisfies (``schemas/results``).
    inputs
        The input frames it requires.
    needs
        Other tables it takes, computed first.
    period
        Whether it takes a window, a window or an as-of day, or neither (:data:`Period`).
    policy
        The name of the policy it takes as ``policy=`` (``None``: it takes none).
    optional
        Inputs passed when the run has them (``rejects``).
    step
        The shared step that computes this table together with others (``None``: its own).
    """

    name: str
    family: str
    function: MetricFunction
    schema: type[pa.DataFrameModel]
    inputs: tuple[InputName, ...]
    needs: tuple[str, ...] = ()
    period: Period = "window"
    policy: str | None = None
    optional: tuple[InputName, ...] = ()
    step: str | None = None

    @property
    def step_name(self) -> str:
        """The name of the call that computes this table (its shared step, else itself)."""
        return self.step or self.name


# ---------------------------------------------------------------------------------------------
# shared steps: several tables from one pass
# ---------------------------------------------------------------------------------------------

#: The tables of :func:`adherence_rollups`.
ROLLUP_TABLES = ("adherence_summary", "adherence_weekly", "adherence_rolling", "adherence_streaks")
#: The tables of :func:`timing_tables`.
TIMING_TABLES = ("first_session_times", "timing_consistency")


def rollup_step(
    adherence_daily: pd.DataFrame,
    pain: pd.DataFrame,
    *,
    window: Window | None,
    parts: frozenset[str],
) -> dict[str, pd.DataFrame]:
    """The roll-ups of the daily adherence table named in ``parts``: all four from one pass
    (:func:`adherence_rollups`) when all are wanted, else each by its own function."""
    if parts >= set(ROLLUP_TABLES):
        return adherence_rollups(adherence_daily, pain, window=window)
    daily = (
        adherence_daily
        if window is None
        else adherence_daily[window.contains(adherence_daily[AdherenceDaily.day])]
    )
    one: dict[str, Callable[[], pd.DataFrame]] = {
        "adherence_summary": lambda: adherence_summary(adherence_daily, pain, window=window),
        "adherence_weekly": lambda: adherence_summary(
            adherence_daily, pain, window=window, by="iso_week"
        ),
        "adherence_rolling": lambda: adherence_rolling(daily),
        "adherence_streaks": lambda: adherence_streaks(daily),
    }
    return {name: one[name]() for name in ROLLUP_TABLES if name in parts}


def timing_step(
    sessions: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    window: Window | None,
    parts: frozenset[str],
    policy: AdherencePolicy | None = None,
) -> dict[str, pd.DataFrame]:
    """The timing tables named in ``parts``: both from one pass of the first-session times
    (:func:`timing_tables`) when both are wanted, else the one by its own function."""
    if parts >= set(TIMING_TABLES):
        return timing_tables(sessions, patients, window=window, policy=policy)
    if "first_session_times" in parts:
        return {
            "first_session_times": first_session_times(
                sessions, patients, window=window, policy=policy
            )
        }
    return {
        "timing_consistency": timing_consistency(sessions, patients, window=window, policy=policy)
    }


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------

#: Every metric table, in the order ``backcare metrics`` computes and writes them (a table's
#: needs come before it).
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("adherence_daily", "adherence", adherence_daily, AdherenceDaily,
               ("sessions", "prescriptions", "patients"), policy="adherence"),
    MetricSpec("adherence_summary", "adherence", rollup_step, AdherenceSummary, ("pain",),
               needs=("adherence_daily",), step="adherence_rollups"),
    MetricSpec("adherence_weekly", "adherence", rollup_step, AdherenceSummary, ("pain",),
               needs=("adherence_daily",), step="adherence_rollups"),
    MetricSpec("adherence_rolling", "adherence", rollup_step, AdherenceRolling, ("pain",),
               needs=("adherence_daily",), step="adherence_rollups"),
    MetricSpec("adherence_streaks", "adherence", rollup_step, AdherenceStreaks, ("pain",),
               needs=("adherence_daily",), step="adherence_rollups"),
    MetricSpec("persistence", "persistence", persistence, Persistence,
               ("sessions", "patients"), period="as_of", policy="adherence"),
    MetricSpec("gap_histogram", "persistence", gap_histogram, GapHistogram,
               ("sessions", "patients"), period="as_of"),
    MetricSpec("first_session_times", "timing", timing_step, FirstSessionTimes,
               ("sessions", "patients"), policy="adherence", step="timing_tables"),
    MetricSpec("timing_consistency", "timing", timing_step, TimingConsistency,
               ("sessions", "patients"), policy="adherence", step="timing_tables"),
    MetricSpec("quality_flags", "quality", quality_flags, QualityFlags,
               ("sessions", "pain", "patients", "prescriptions"), policy="quality",
               optional=("rejects",)),
    MetricSpec("pain_daily", "pain", pain_daily, PainDaily, ("pain", "patients"),
               policy="pain"),
    MetricSpec("pain_summary", "pain", pain_summary, PainSummary, ("pain", "patients"),
               policy="pain"),
    MetricSpec("session_tolerance", "tolerance", session_tolerance, SessionTolerance,
               ("sessions", "pain", "protocol"), policy="tolerance"),
    MetricSpec("capacity_daily", "progression", capacity_daily, CapacityDaily,
               ("sessions", "protocol")),
    MetricSpec("capacity_weekly", "progression", capacity_weekly, CapacityWeekly, (),
               needs=("capacity_daily",), period="none"),
    MetricSpec("progression_events", "progression", progression_events, ProgressionEvents,
               ("protocol",), needs=("capacity_weekly",), period="none"),
    MetricSpec("progression_flags", "progression", progression_flags, ProgressionFlags,
               ("sessions", "pain", "prescriptions", "protocol"), needs=("adherence_daily",)),
    MetricSpec("weekly_verdict", "verdict", weekly_verdict, WeeklyVerdict,
               ("pain", "sessions", "patients", "protocol"), policy="verdict"),
)  # fmt: skip

_BY_NAME: dict[str, MetricSpec] = {s.name: s for s in METRICS}
#: Every table name, in registry order.
METRICS_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def spec(name: str) -> MetricSpec:
    """The spec of the table ``name``; a clear error naming the known tables otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise MetricInputError(
            f"no metric table named {name!r}; the registry has: {', '.join(_BY_NAME)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# running the registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MetricInputs:
    """The frames a run computes from (clean tables of any number of patients) and the
    protocol; ``None`` where the run has no such input."""

    sessions: pd.DataFrame | None = None
    pain: pd.DataFrame | None = None
    patients: pd.DataFrame | None = None
    prescriptions: pd.DataFrame | None = None
    rejects: pd.DataFrame | None = None
    protocol: Protocol | None = None

    def get(self, name: InputName) -> Any:
        """The input called ``name`` (``None`` when the run does not have it)."""
        return getattr(self, name)


@dataclass(frozen=True)
class Step:
    """One call of a metric function: the tables it fills, over one window with one set of
    options."""

    name: str
    specs: tuple[MetricSpec, ...]
    window: Window | None
    options: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def tables(self) -> tuple[str, ...]:
        """The names of the tables this call fills."""
        return tuple(s.name for s in self.specs)


def _closure(names: Iterable[str]) -> list[MetricSpec]:
    """The specs of ``names`` and of every table they need, in registry order."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(spec(name).needs)
    return [s for s in METRICS if s.name in wanted]


def plan_steps(
    names: Iterable[str] | None = None,
    *,
    window: Window | None = None,
    windows: Mapping[str, Window | None] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Step]:
    """The calls that compute the tables ``names`` (default: every table) and what they need.

    Parameters
    ----------
    names
        Tables wanted; the tables they need are added.
    window
        The window of every table not named in ``windows``.
    windows
        A window per table, where the run wants different spans for different tables (the
        weekly report: the week, the last 28 days, all history).
    options
        Extra keyword arguments per table (e.g. ``{"weekly_verdict": {"all_weeks": False}}``).

    Returns
    -------
    list of Step
        In registry order; tables of one shared step with the same window and options share
        one call.
    """
    windows = windows or {}
    options = options or {}
    steps: dict[tuple[str, Window | None, tuple[tuple[str, Any], ...]], list[MetricSpec]] = {}
    for s in _closure(METRICS_NAMES if names is None else names):
        w = windows.get(s.name, window) if s.period != "none" else None
        opts = tuple(sorted(options.get(s.name, {}).items()))
        steps.setdefault((s.step_name, w, opts), []).append(s)
    return [Step(key[0], tuple(specs), key[1], key[2]) for key, specs in steps.items()]


def _kwargs(
    s: MetricSpec,
    inputs: MetricInputs,
    tables: Mapping[str, pd.DataFrame],
    policies: Mapping[str, Any],
) -> dict[str, Any]:
    """The input and needed-table keywords of one spec; an error naming what is missing."""
    kwargs: dict[str, Any] = {}
    for name in s.inputs:
        value = inputs.get(name)
        if value is None:
            raise MetricInputError(
                f"metric {s.name!r} cannot run: it needs the {name!r} input, which this run "
                "was not given"
            )
        kwargs[name] = value
    for name in s.optional:
        if inputs.get(name) is not None:
            kwargs[name] = inputs.get(name)
    for name in s.needs:
        if name not in tables:
            raise MetricInputError(
                f"metric {s.name!r} cannot run: it needs the {name!r} table, which was not "
                "computed before it"
            )
        kwargs[name] = tables[name]
    if s.policy is not None and policies.get(s.policy) is not None:
        kwargs["policy"] = policies[s.policy]
    return kwargs


def run_step(
    step: Step,
    inputs: MetricInputs,
    tables: Mapping[str, pd.DataFrame],
    *,
    as_of: pd.Timestamp | None = None,
    policies: Mapping[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute one step's tables from the inputs and the tables computed before it."""
    first = step.specs[0]
    kwargs = _kwargs(first, inputs, tables, policies or {})
    if first.period != "none":
        kwargs["window"] = step.window
    if first.period == "as_of":
        kwargs["as_of"] = as_of
    kwargs.update(step.options)
    if first.step is not None:
        return dict(first.function(**kwargs, parts=frozenset(step.tables)))
    return {first.name: first.function(**kwargs)}


def compute(
    inputs: MetricInputs,
    names: Iterable[str] | None = None,
    *,
    window: Window | None = None,
    windows: Mapping[str, Window | None] | None = None,
    as_of: pd.Timestamp | None = None,
    policies: Mapping[str, Any] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, pd.DataFrame]:
    """The tables ``names`` (default: every table) and those they need, by name, in registry
    order; see :func:`plan_steps` for ``window``, ``windows`` and ``options``, and the module
    docstring for how each function is called. ``as_of`` is the as-of day of the tables whose
    period is ``"as_of"`` when they have no window (``None``: the last day logged in
    ``sessions``)."""
    tables: dict[str, pd.DataFrame] = {}
    for step in plan_steps(names, window=window, windows=windows, options=options):
        tables.update(run_step(step, inputs, tables, as_of=as_of, policies=policies))
    return {s.name: tables[s.name] for s in METRICS if s.name in tables}
