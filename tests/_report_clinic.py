"""The clinic of the report tests: the demo clinic (the synthetic clinic's default
configuration, as in ``data/examples/clinic``) with a note full of HTML/JS payloads planted,
written straight into a store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAYLOAD = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> "
    '<a href="javascript:alert(1)">click</a> {{7*7}} =HYPERLINK("http://evil.example","x")'
)


def demo_store(store_path: Path) -> Path:
    """The demo clinic's clean tables in a new store, with :data:`PAYLOAD` as the note of the
    first patient's last session row and diary entry of the latest complete week (the importer
    has its own tests)."""
    from backcare_analytics.synth import SynthConfig, simulate

    clinic = simulate(SynthConfig())
    frames = {
        "patients": clinic.patients,
        "sessions": clinic.sessions.copy(),
        "pain": clinic.pain.copy(),
    }
    first = clinic.patients["patient_id"].iloc[0]
    last = max(frames["sessions"]["day"].max(), frames["pain"]["day"].max())
    # The report's "latest" week is the last complete one: plant the note inside it.
    end = last if last.day_of_week == 6 else last - pd.Timedelta(days=last.day_of_week + 1)
    for name in ("sessions", "pain"):
        f = frames[name]
        rows = f.index[(f["patient_id"] == first) & (f["day"] <= end)]
        f.loc[rows[-1], "note"] = PAYLOAD
    return frames_store(store_path, frames)


def frames_store(store_path: Path, frames: dict[str, pd.DataFrame]) -> Path:
    """A new store holding the clean ``patients``, ``sessions`` and ``pain`` frames as they
    are, and one import-ledger row naming the first session row's source file."""
    from backcare_analytics.store import Store

    columns = {
        "patients": "patient_id, timezone, programme_start, clinician",
        "sessions": "patient_id, session_id, performed_at, day, exercise_id, side, sets, reps, "
        "hold_s, level, variant, pain_before, pain_after, note, source_file",
        "pain": "patient_id, recorded_at, day, back_pain, leg_pain, flare, note, source_file",
    }
    with Store(store_path).transaction() as con:
        for name, cols in columns.items():
            con.register("incoming", frames[name])
            extra, value = (", source_file", ", 'synthetic'") if name == "patients" else ("", "")
            con.execute(f"INSERT INTO {name} ({cols}{extra}) SELECT {cols}{value} FROM incoming")
            con.unregister("incoming")
        sha = frames["sessions"]["source_file"].iloc[0]
        con.execute(
            "INSERT INTO imports VALUES (1, ?, 'DEMO-001_sessions.csv', 100, 'csv', 'sessions', "
            "10, 9, 1, 0, 0, 0, 'imported', NULL, NULL, now(), '0.1.0')",
            [sha],
        )
    return store_path
