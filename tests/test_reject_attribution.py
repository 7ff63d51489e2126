"""One reject counter: the weekly report and `backcare metrics` attribute the same refused rows
to the same patients.

Three rows are refused at a real import, counted by hand:

- ``s1.csv`` row 3 (P1): ``reps`` "lots" is not a number; the quarantine keeps the row as
  normalised, so its raw JSON says ``"patient_id": "P1"``;
- ``s2.jsonl`` row 2 (P1): ``reps`` is an array, refused by the reader before normalisation,
  so its raw JSON keeps the export's own key, ``"Patient ID": "P1"``;
- ``s3.jsonl`` row 1 (P2): ``hold_s`` is an object, raw key ``"patient-id": "P2"``.

So P1 has 2 refused rows and P2 has 1. Before this change the report's own counter matched
only the key ``"patient_id"`` and said P1: 1, P2: none.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from backcare_analytics.cli import main
from backcare_analytics.reports.context import load_week

FILES = {
    "patients.csv": (
        "patient_id,timezone,programme_start,clinician\n"
        "P1,Europe/Amsterdam,2026-03-02,AB\n"
        "P2,Europe/Amsterdam,2026-03-02,AB\n"
    ),
    "s1.csv": (
        "patient_id,performed_at,exercise,side,reps,hold_s,level,pain_before,pain_after,note\n"
        "P1,2026-03-03 07:15,Bridge,,5,15,,3,2,\n"
        "P1,2026-03-04 07:15,Bridge,,lots,15,,3,2,\n"
    ),
    "s2.jsonl": (
        '{"Patient ID": "P1", "performed_at": "2026-03-05 07:15", "exercise": "Bridge", '
        '"reps": "5", "hold_s": "15"}\n'
        '{"Patient ID": "P1", "performed_at": "2026-03-06 07:15", "exercise": "Bridge", '
        '"reps": [5], "hold_s": "15"}\n'
    ),
    "s3.jsonl": (
        '{"patient-id": "P2", "performed_at": "2026-03-05 07:15", "exercise": "Bridge", '
        '"reps": "5", "hold_s": {"s": 15}}\n'
        '{"patient-id": "P2", "performed_at": "2026-03-06 07:15", "exercise": "Bridge", '
        '"reps": "5", "hold_s": "15"}\n'
    ),
}
#: Refused rows per patient, counted by hand (module docstring).
EXPECTED = {"P1": 2, "P2": 1}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refused")
    inbox = root / "inbox"
    inbox.mkdir()
    for name, text in FILES.items():
        (inbox / name).write_text(text, encoding="utf-8")
    path = root / "store.duckdb"
    assert main(["import", str(inbox), "--store", str(path)]) in (0, 2)  # 2: rows refused
    return path


def _quarantined(flags: pd.DataFrame) -> dict[str, str]:
    rows = flags[flags["flag"] == "quarantined_rows"]
    return dict(zip(rows["patient_id"], rows["detail"], strict=True))


def test_the_report_and_backcare_metrics_attribute_refused_rows_alike(
    store: Path, tmp_path: Path
) -> None:
    week = load_week(store, "2026-W10")
    counts = week.frames["reject_counts"]
    assert dict(zip(counts["patient_id"], counts["n_rejected"], strict=True)) == EXPECTED

    out = tmp_path / "metrics"
    args = ["metrics", "--store", str(store), "--out", str(out), "--week", "2026-W10"]
    assert main([*args, "--jobs", "1"]) == 0
    from_metrics = _quarantined(pd.read_parquet(out / "quality_flags.parquet"))
    assert {p: d.split(" ")[0] for p, d in from_metrics.items()} == {"P1": "2", "P2": "1"}
    assert _quarantined(week.frames["quality_flags"]) == from_metrics


def test_the_week_data_refuses_a_frame_it_does_not_have(store: Path) -> None:
    week = load_week(store, "2026-W10")
    assert len(week.frame("quality_flags")) == len(week.frames["quality_flags"])
    with pytest.raises(KeyError, match=r"no frame 'timing'.*timing_consistency"):
        week.frame("timing")  # the name before the registry: an error, not an empty table
