"""The metric registry (backcare_analytics.metrics.registry): what it declares is what runs.

The digests at the end hold every table of ``backcare metrics`` fixed. They were computed with
the code of ``main`` at 832613e, *before* the registry replaced the reflection runner (a copy of
main's tree on PYTHONPATH, the same store built by :func:`_digest_store`, ``--jobs 1``), and the
registry reproduces them unchanged. On the 200 x 12 synthetic clinic (seed 1) every table was
also compared row for row against main's output (compare_metrics.py, with and without --week).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
import pytest
from _metric_digests import folder_digests
from _report_clinic import frames_store

from backcare_analytics.cli import main
from backcare_analytics.errors import InputDataError
from backcare_analytics.metrics.adherence import adherence_daily
from backcare_analytics.metrics.params import Window
from backcare_analytics.metrics.registry import (
    METRICS,
    METRICS_NAMES,
    ROLLUP_TABLES,
    MetricInputError,
    MetricInputs,
    compute,
    plan_steps,
    rollup_step,
    run_step,
    spec,
)
from backcare_analytics.metrics.rollups import adherence_rollups
from backcare_analytics.protocol import load_protocol
from backcare_analytics.reports.context import week_windows
from backcare_analytics.reports.policy import ReportPolicy
from backcare_analytics.store import Store
from backcare_analytics.synth import SynthConfig, simulate

ROOT = Path(__file__).resolve().parent.parent
WEEK = Window.iso_week("2026-W05")


@pytest.fixture(scope="module")
def inputs() -> MetricInputs:
    c = simulate(SynthConfig(patients=8, weeks=5, seed=3))
    return MetricInputs(
        sessions=c.sessions,
        pain=c.pain,
        patients=c.patients,
        prescriptions=c.prescriptions,
        protocol=load_protocol(),
    )


# ---------------------------------------------------------------------------------------------
# the declarations
# ---------------------------------------------------------------------------------------------


def test_every_function_takes_what_its_spec_says_it_is_given() -> None:
    for s in METRICS:
        params = inspect.signature(s.function).parameters
        given = {*s.inputs, *s.optional, *s.needs}
        given |= {"window"} if s.period != "none" else set()
        given |= {"as_of"} if s.period == "as_of" else set()
        given |= {"policy"} if s.policy else set()
        given |= {"parts"} if s.step else set()
        assert given <= set(params), (s.name, given - set(params))
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        assert required <= given, (s.name, required - given)


def test_needs_come_first_and_a_step_has_one_function_and_period() -> None:
    assert len(set(METRICS_NAMES)) == len(METRICS)
    seen: set[str] = set()
    for s in METRICS:
        assert set(s.needs) <= seen, s.name
        seen.add(s.name)
    for step in {s.step for s in METRICS if s.step}:
        members = [s for s in METRICS if s.step == step]
        assert len({(m.function, m.period, m.inputs, m.needs, m.policy) for m in members}) == 1


def test_shared_steps_are_computed_once_per_window() -> None:
    whole = plan_steps()
    names = [step.name for step in whole]
    assert len(names) == len(set(names)), "a step of the whole run is called twice"
    by_name = {step.name: step.tables for step in whole}
    assert by_name["timing_tables"] == ("first_session_times", "timing_consistency")
    assert by_name["adherence_rollups"] == ROLLUP_TABLES
    # The report wants the summary over the week and the ISO weeks over all history: two calls
    # of the roll-up step, one of the timing step, and the tables needed are added.
    windows = week_windows(WEEK, ReportPolicy())
    report = {s.name: s for s in plan_steps(windows, windows=windows)}
    assert report["timing_tables"].window == Window(end=WEEK.end, days=28)
    rollups = [s for s in plan_steps(windows, windows=windows) if s.name == "adherence_rollups"]
    assert sorted(s.tables for s in rollups) == [("adherence_summary",), ("adherence_weekly",)]
    assert "adherence_rolling" not in {t for s in report.values() for t in s.tables}


def test_a_rollup_computed_alone_equals_the_one_pass(inputs: MetricInputs) -> None:
    daily = adherence_daily(inputs.sessions, inputs.prescriptions, inputs.patients)
    for window in (None, WEEK):
        together = adherence_rollups(daily, inputs.pain, window=window)
        for name in ROLLUP_TABLES:
            alone = rollup_step(daily, inputs.pain, window=window, parts=frozenset({name}))
            pd.testing.assert_frame_equal(alone[name], together[name], obj=name)


def test_every_table_satisfies_its_declared_schema(inputs: MetricInputs) -> None:
    tables = compute(inputs, window=WEEK)
    assert list(tables) == list(METRICS_NAMES)
    for s in METRICS:
        s.schema.validate(tables[s.name])


# ---------------------------------------------------------------------------------------------
# a metric that cannot run says which and why
# ---------------------------------------------------------------------------------------------


def test_a_missing_input_names_the_metric_and_the_input(inputs: MetricInputs) -> None:
    no_pain = MetricInputs(
        sessions=inputs.sessions, patients=inputs.patients, prescriptions=inputs.prescriptions
    )
    with pytest.raises(MetricInputError, match=r"'pain_summary'.*'pain' input"):
        compute(no_pain, ["pain_summary"])
    # Tables that need no diary still run from the same inputs.
    assert list(compute(no_pain, ["persistence"])) == ["persistence"]
    with pytest.raises(MetricInputError, match=r"'capacity_weekly'.*'capacity_daily' table"):
        run_step(plan_steps(["capacity_weekly"])[-1], inputs, {})
    with pytest.raises(MetricInputError, match=r"no metric table named 'pdc'"):
        spec("pdc")


def test_an_error_inside_a_metric_propagates(inputs: MetricInputs) -> None:
    broken = inputs.sessions.drop(columns=["exercise_id"])
    bad = MetricInputs(
        sessions=broken,
        pain=inputs.pain,
        patients=inputs.patients,
        prescriptions=inputs.prescriptions,
        protocol=inputs.protocol,
    )
    # The old runner swallowed this and left the table out; now the metric's own error stops
    # the run.
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['exercise_id'\]"):
        compute(bad, ["capacity_daily"])


# ---------------------------------------------------------------------------------------------
# docs/metrics.md's index is the registry
# ---------------------------------------------------------------------------------------------

PERIOD_TEXT = {"window": "window", "as_of": "window, else as-of day", "none": "—"}


def _docs_index() -> list[list[str]]:
    """The rows of the first table under "## Index of metric tables", backticks dropped."""
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    lines = text.split("## Index of metric tables", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = lines[start + 2 : end]
    return [[c.strip().replace("`", "") for c in row.strip("|").split("|")] for row in rows]


def test_the_docs_index_equals_the_registry() -> None:
    expected = [
        [s.name, s.family, s.schema.__name__, PERIOD_TEXT[s.period], ", ".join(s.needs) or "—"]
        for s in METRICS
    ]
    assert _docs_index() == expected


# ---------------------------------------------------------------------------------------------
# every table of `backcare metrics`, unchanged since before the registry
# ---------------------------------------------------------------------------------------------

#: Digests (tests/_metric_digests.py) of `backcare metrics --jobs 1` on :func:`_digest_store`,
#: computed with main's code before this change (see the module docstring).
DIGESTS_ALL = {
    "adherence_daily": "2c42669bfe5ade275ad3cbe6ebde0b1eadf3fbcdd7bd52c00de9857bb1008a75",
    "adherence_rolling": "ef9ba1e7d8658604fb57a9a8770a3799c42a5c5cde26c6314bee04f92bce82e7",
    "adherence_streaks": "a35ecc87dffb7682a18944329372ca405c4515674a14da65f949e6ee530036b4",
    "adherence_summary": "b438aec3e68c1b41604cd7a67634dc05c6f0de3e81ecafa32ad66270dd05e6e8",
    "adherence_weekly": "6b47242ccbf7cefd0a1741dbe3827fa1c9e47bf22044c4820427198ab85119c8",
    "capacity_daily": "3c9c58d70363fcc1a10ef58b3ef543930557f93db06b45c27bdc9a51954cfb37",
    "capacity_weekly": "c9bf9da89a728d3e5ec404486ffcfb8a054891b22e048ab00c7346979f677c7c",
    "first_session_times": "341952028eaefedc19202243fd3c46beca773fd94594f1a5744b4c31b2dd5b8e",
    "gap_histogram": "1a1a1699cbc36caca6030e87f0c28e7dfa08249321bb6422d3395a6379a3f8ef",
    "pain_daily": "869b9f466a9765995055ab6cce2efa7a25a7a4219c4650626e3ee44036a17f26",
    "pain_summary": "c1333cdbcfe9fe82b16bbcaf61c5920fc7c945823a59a89170bbed661850c329",
    "persistence": "880e03f8215ce1725fa767c69e7dd089263c730f4f42f756479e8cdd0b8885c0",
    "progression_events": "c395c38e82127ae11fb5f1ec30b3feb782c78bd3ae385e4a05b56cdaa3296506",
    "progression_flags": "70e35ca95b3096962f87b11253dce89fe0343c58f10ca1f7e0fbfe819e401f50",
    "quality_flags": "b72325a67380313ef1ecceb72cde35b89cf5f6b8469a76382d1df6e557f89d29",
    "session_tolerance": "30b6efb77578b7cd60d27714646cef7d7ac614720010cb678c9b7e12631e426e",
    "timing_consistency": "055dcd28170c9ca348112dfc7ca7e3d9ec90672515e8120adff562cc667ba8e9",
    "weekly_verdict": "d1f51310bcc8ecf488d3555850e172ca6bb49380c10ea1dd4b685d44e896b594",
}
#: The same with ``--week 2026-W05``.
DIGESTS_WEEK = {
    "adherence_daily": "b68a652d485e825896d72266c43472694bff14479c5e69b6ffaabbee864e58d7",
    "adherence_rolling": "9274cc196d7a7387163ab43297714a1f3315edaeb2a97a12e40da374567d5539",
    "adherence_streaks": "823395a6bc0000949e0ef7cc0a84c0ff73408834cee0b06fe33c5ce440f9157c",
    "adherence_summary": "ee04cc76f051588bcf325b117407816e7144d5d5d907daac4638483d4034f68f",
    "adherence_weekly": "ee04cc76f051588bcf325b117407816e7144d5d5d907daac4638483d4034f68f",
    "capacity_daily": "41e93172a01a39a5a2484fb59a319373590358d519d8e6fe4cd91321ef02f78d",
    "capacity_weekly": "d826a80c769217e0471ea6f7a6fdf55dde1f88c71acf8672e5062b26ff53f918",
    "first_session_times": "b379d1a0ff81becfa5fdc29ef56fbe813adc551ec7c7e9850c1f3b2a8ae37080",
    "gap_histogram": "1b84bbc87721a0355ea6353eb54a59802ffeb441be689d98893e600950b687e1",
    "pain_daily": "4334ea53d7d2ded2f5877ca4679fd1b6108e28f1005a40f3d7321ab301824668",
    "pain_summary": "c69b342434dd0026c679be9bbb4bc17467209f352e64b4c309adfd1d32417d98",
    "persistence": "512a8bc425052b5fb49eb47af6df8e134eab7f7782bdd8cc7324e31c2e20cc96",
    "progression_events": "3bd71ed19f68ab5b655e43528fb49b7a845644cda04d2bef700d671d400e4147",
    "progression_flags": "d9cc2f7260682b37e5207ad8426e1ffc61b83f0b5299e2756eb2f7dd9c82b59e",
    "quality_flags": "beca4b81d5269972e469aa9b09be5d14281130201cb48db1be39639425084c7e",
    "session_tolerance": "06467c48283bba224ec7e3e8780bd12de2d856e30404988461237ff2765391f2",
    "timing_consistency": "16a3edf77a67fc90cb74361c53f8afe901b7c755e130f5cff5e98a0cd41d02a3",
    "weekly_verdict": "1068748172e3ed9266a68a88e804c484cb3efb044db6292c8762d4aaed90dc49",
}


def _digest_store(path: Path) -> Path:
    """The synthetic clinic of 30 patients x 8 weeks (seed 1) in a store, with three refused
    rows whose raw JSON names a patient three ways (two for DEMO-002, one for DEMO-005)."""
    c = simulate(SynthConfig(patients=30, weeks=8, seed=1))
    frames_store(path, {"patients": c.patients, "sessions": c.sessions, "pain": c.pain})
    refused = (
        (4, '{"patient_id": "DEMO-002", "reps": "x"}'),
        (9, '{"Patient ID": "DEMO-002", "reps": "y"}'),
        (12, '{"patient-id": "DEMO-005"}'),
    )
    with Store(path).transaction() as con:
        for row, raw in refused:
            con.execute(
                "INSERT INTO rejects VALUES (?, 'sessions', ?, 'reps', 'bad_number', NULL, ?)",
                ["c" * 64, row, raw],
            )
    return path


@pytest.fixture(scope="module")
def digest_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _digest_store(tmp_path_factory.mktemp("digest") / "store.duckdb")


@pytest.mark.parametrize(
    ("extra", "digests"), [([], DIGESTS_ALL), (["--week", "2026-W05"], DIGESTS_WEEK)]
)
def test_backcare_metrics_tables_are_unchanged(
    digest_store: Path, tmp_path: Path, extra: list[str], digests: dict[str, str]
) -> None:
    out = tmp_path / "out"
    args = ["metrics", "--store", str(digest_store), "--out", str(out), "--jobs", "1", *extra]
    assert main(args) == 0
    assert folder_digests(out) == digests
