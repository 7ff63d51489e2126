"""Clinics for the report tests: the demo clinic (the synthetic clinic's default configuration,
as in ``data/examples/clinic``) with a note full of HTML/JS payloads planted, written straight
into a store; and a tiny hand-written clinic as CSV exports."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

PAYLOAD = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> "
    '<a href="javascript:alert(1)">click</a> {{7*7}} =HYPERLINK("http://evil.example","x")'
)
EXERCISES = {
    "breathing": {"reps": 10},
    "knee_to_chest": {"reps": 10, "side": "both"},
    "bridge": {"reps": 4, "hold_s": 15},
    "sciatic_floss": {"reps": 10, "hold_s": 3, "side": "both"},
    "low_back_roll": {"reps": 10, "side": "both"},
    "prone_press_up": {"reps": 3, "hold_s": 30, "variant": "prone"},
    "mini_push_up": {"reps": 10, "level": "wall"},
}


def write_clinic(folder: Path, patients: int = 4, weeks: int = 4, seed: int = 3) -> Path:
    """Write patients.csv, sessions.csv and pain.csv into ``folder``; return it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    start = pd.Timestamp("2026-02-02")
    ids = [f"TEST-{i:03d}" for i in range(1, patients + 1)]
    with open(folder / "patients.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "timezone", "programme_start", "clinician"])
        for pid in ids:
            w.writerow([pid, "Europe/Amsterdam", start.date().isoformat(), "AB"])
    days = pd.date_range(start, periods=7 * weeks)
    with open(folder / "sessions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "patient_id",
                "performed_at",
                "exercise",
                "side",
                "reps",
                "hold_s",
                "level",
                "variant",
                "pain_before",
                "pain_after",
                "note",
            ]
        )
        for p, pid in enumerate(ids):
            skip = rng.random(len(days)) < 0.1 * (p + 1)
            for d, day in enumerate(days):
                if skip[d]:
                    continue
                t = day + pd.Timedelta(hours=7 + (p % 3), minutes=int(rng.integers(0, 50)))
                for e, (ex, dose) in enumerate(EXERCISES.items()):
                    reps = dose["reps"] + (d // 7 if ex in ("bridge", "mini_push_up") else 0)
                    level = dose.get("level", "")
                    if ex == "mini_push_up" and d >= 14:
                        level = "counter"
                    note = PAYLOAD if (p == 0 and d == len(days) - 2 and e == 0) else ""
                    w.writerow(
                        [
                            pid,
                            (t + pd.Timedelta(minutes=2 * e)).strftime("%Y-%m-%d %H:%M"),
                            ex,
                            dose.get("side", ""),
                            reps,
                            dose.get("hold_s", ""),
                            level,
                            dose.get("variant", ""),
                            3,
                            3,
                            note,
                        ]
                    )
    with open(folder / "pain.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "recorded_at", "back_pain", "leg_pain", "flare", "note"])
        for p, pid in enumerate(ids):
            for d, day in enumerate(days):
                back = int(np.clip(round(7 - d * (0.1 + 0.05 * p) + rng.normal(0, 0.7)), 0, 10))
                flare = p == 1 and d == len(days) - 3
                if flare:
                    back = 9
                note = PAYLOAD if (p == 0 and d == len(days) - 1) else ""
                w.writerow(
                    [
                        pid,
                        (day + pd.Timedelta(hours=20)).strftime("%Y-%m-%d %H:%M"),
                        back,
                        max(0, back - 3),
                        "yes" if flare else "no",
                        note,
                    ]
                )
    return folder


def _clean(folder: Path) -> dict[str, pd.DataFrame]:
    """The CSV files as clean tables (local times in Europe/Amsterdam -> UTC, local day)."""
    sha = "0" * 63 + "1"
    pts = pd.read_csv(folder / "patients.csv", dtype=str, keep_default_na=False)
    pts["programme_start"] = pd.to_datetime(pts["programme_start"]).astype("datetime64[us]")
    ses = pd.read_csv(folder / "sessions.csv", dtype=str, keep_default_na=False)
    local = pd.to_datetime(ses["performed_at"])
    ses["performed_at"] = local.dt.tz_localize("Europe/Amsterdam").dt.tz_convert("UTC")
    ses["day"] = local.dt.normalize().astype("datetime64[us]")
    ses["exercise_id"] = ses.pop("exercise")
    ses["side"] = ses["side"].replace("", "none")
    for col in ("reps", "pain_before", "pain_after"):
        ses[col] = pd.to_numeric(ses[col]).astype("Int64")
    ses["hold_s"] = pd.to_numeric(ses["hold_s"].replace("", None)).astype("Float64")
    ses["sets"] = pd.array([1] * len(ses), dtype="Int64")
    ses["session_id"] = None
    pain = pd.read_csv(folder / "pain.csv", dtype=str, keep_default_na=False)
    local = pd.to_datetime(pain["recorded_at"])
    pain["recorded_at"] = local.dt.tz_localize("Europe/Amsterdam").dt.tz_convert("UTC")
    pain["day"] = local.dt.normalize().astype("datetime64[us]")
    for col in ("back_pain", "leg_pain"):
        pain[col] = pd.to_numeric(pain[col]).astype("Int64")
    pain["flare"] = pain["flare"].eq("yes")
    for f in (ses, pain):
        f["note"] = f["note"].replace("", None)
        f["source_file"] = sha
    return {"patients": pts, "sessions": ses, "pain": pain}


def build_store(folder: Path, store_path: Path) -> Path:
    """Write the clinic of ``folder`` straight into a new store at ``store_path`` (clean rows
    and one ledger row; the importer has its own tests)."""
    from backcare_analytics.store import Store

    frames = _clean(folder)
    store = Store(store_path)
    with store.transaction() as con:
        for name, frame in frames.items():
            con.register("f", frame)
            target = {
                "patients": "patient_id, timezone, programme_start, clinician, source_file",
                "sessions": "patient_id, session_id, performed_at, day, exercise_id, side, sets, "
                "reps, hold_s, level, variant, pain_before, pain_after, note, source_file",
                "pain": "patient_id, recorded_at, day, back_pain, leg_pain, flare, note, source_file",
            }[name]
            if name == "patients":
                select = target.replace("source_file", "'0'")
                con.execute(f"INSERT INTO patients ({target}) SELECT {select} FROM f")
            else:
                con.execute(f"INSERT INTO {name} ({target}) SELECT {target} FROM f")
            con.unregister("f")
        con.execute(
            "INSERT INTO imports VALUES (1, ?, 'sessions.csv', 100, 'csv', 'sessions', 10, 9, 1, 0, "
            "0, 0, 'imported', NULL, NULL, now(), '0.1.0')",
            ["0" * 63 + "1"],
        )
    return store_path


def demo_store(store_path: Path) -> Path:
    """The demo clinic's clean tables in a new store, with :data:`PAYLOAD` as the note of the
    first patient's last session row and diary entry of the latest complete week (the importer
    has its own tests)."""
    from backcare_analytics.store import Store
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
