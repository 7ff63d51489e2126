"""Normalisation: each bad cell of each row explained with its reason code, good cells typed
exactly, local times read in the patient's zone, and no row ever lost or counted twice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backcare_analytics.config import Settings
from backcare_analytics.io.normalize import Normalized, normalize
from backcare_analytics.io.readers import read_export
from backcare_analytics.schemas import Pain, Patients, Sessions, validate

NOW = pd.Timestamp("2026-11-24 12:00", tz="UTC")
SHA = "a" * 64
SESSION_HEADER = "patient_id,performed_at,exercise,side,sets,reps,hold_s,level,variant,pain_before,pain_after,note"


def registered() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pd.Series(["P001", "P002"], dtype="str"),
            "timezone": pd.Series(["Europe/Amsterdam", "America/New_York"], dtype="str"),
            "programme_start": pd.to_datetime(["2026-01-05", "2026-01-05"]).astype(
                "datetime64[us]"
            ),
            "clinician": pd.Series([None, None], dtype="str"),
        }
    )


def run(name: str, text: str | bytes, cfg: Settings | None = None, now=NOW) -> Normalized:
    data = text.encode() if isinstance(text, str) else text
    table = read_export(Path(name), cfg, data=data).tables[0]
    return normalize(table, source_file=SHA, patients=registered(), settings=cfg, now=now)


def sessions(*rows: str, cfg: Settings | None = None) -> Normalized:
    return run("s.csv", SESSION_HEADER + "\n" + "\n".join(rows) + "\n", cfg)


def reasons(result: Normalized) -> list[tuple[int, str, str]]:
    r = result.rejects
    return list(zip(r["row"], r["column"], r["reason"], strict=True))


def assert_conserved(result: Normalized, n_rows: int, first_row: int = 2) -> None:
    clean_rows = set(result.clean["_row"])
    reject_rows = set(result.rejects["row"])
    assert not clean_rows & reject_rows
    assert clean_rows | reject_rows == set(range(first_row, first_row + n_rows))


# --- values ---------------------------------------------------------------------------------


def test_severe_eleven_minus_one_are_three_separate_rejects() -> None:
    text = "patient_id,recorded_at,back_pain\n" + "\n".join(
        f"P001,2026-03-0{d} 21:00,{v}" for d, v in ((2, "severe"), (3, "11"), (4, "-1"), (5, "4"))
    )
    result = run("p.csv", text)
    assert reasons(result) == [
        (2, "back_pain", "bad_number"),
        (3, "back_pain", "out_of_range"),
        (4, "back_pain", "out_of_range"),
    ]
    assert result.clean["back_pain"].tolist() == [4]
    assert "severe" not in " ".join(result.rejects["detail"])  # no patient values in details
    assert "severe" in result.rejects["raw"].iloc[0]  # but the raw row is kept


@pytest.mark.parametrize(
    ("cell", "value", "reason"),
    [
        ("7", 7, None),
        ("7/10", 7, None),
        (" 7 / 10 ", 7, None),
        ("7.0", 7, None),
        ("7.5", None, "not_an_integer"),
        ("severe", None, "bad_number"),
        ("11", None, "out_of_range"),
        ("-1", None, "out_of_range"),
        ("NaN", None, "bad_number"),
        ("inf", None, "bad_number"),
        ("true", None, "bad_number"),
        ("1" * 3000, None, "out_of_range"),
        ("", None, "missing_value"),
    ],
)
def test_pain_cells(cell: str, value: int | None, reason: str | None) -> None:
    result = run("p.csv", f'patient_id,recorded_at,back_pain\nP001,2026-03-02 21:00,"{cell}"\n')
    if reason is None:
        assert result.clean["back_pain"].tolist() == [value]
        assert result.rejects.empty
    else:
        assert reasons(result) == [(2, "back_pain", reason)]


def test_json_numbers_and_booleans() -> None:
    data = (
        b'[{"patient_id": "P001", "recorded_at": "2026-03-02T21:00:00+01:00", "back_pain": 4,'
        b' "leg_pain": 2.0, "flare": true},'
        b' {"patient_id": "P001", "recorded_at": "2026-03-03T21:00:00+01:00", "back_pain": true},'
        b' {"patient_id": "P001", "recorded_at": "2026-03-04T21:00:00+01:00", "back_pain": NaN},'
        b' {"patient_id": "P001", "recorded_at": "2026-03-05T21:00:00+01:00", "back_pain": 1e999},'
        b' {"patient_id": "P001", "recorded_at": "2026-03-06T21:00:00+01:00", "back_pain": 3,'
        b' "flare": "maybe"}]'
    )
    result = run("p.json", data)
    assert reasons(result) == [
        (2, "back_pain", "bad_number"),
        (3, "back_pain", "bad_number"),
        (4, "back_pain", "out_of_range"),
        (5, "flare", "bad_vocabulary"),
    ]
    row = result.clean.iloc[0]
    assert (row["back_pain"], row["leg_pain"], row["flare"]) == (4, 2, True)


@pytest.mark.parametrize(
    ("reps", "hold", "expect"),
    [
        ("10 reps", "", (10, None)),
        ("10 breaths", "", (10, None)),
        ("10.0", "", (10, None)),
        ("", "30s", (None, 30.0)),
        ("", "30 sec", (None, 30.0)),
        ("", "0:30", (None, 30.0)),
        ("", "1 min", (None, 60.0)),
        ("3", "15.5", (3, 15.5)),
        ("10.5", "", "not_an_integer"),
        ("ten", "", "bad_number"),
        ("-2", "", "out_of_range"),
        ("", "-5", "out_of_range"),
        ("", "", "no_dose"),
        ("", "12,5", "bad_number"),  # decimal comma in a comma-separated file is ambiguous
    ],
)
def test_reps_and_holds(reps: str, hold: str, expect: object) -> None:
    result = sessions(f'P001,2026-03-02 07:15,bridge,,,{reps},"{hold}",,,,,')
    if isinstance(expect, str):
        assert [r[2] for r in reasons(result)] == [expect]
    else:
        row = result.clean.iloc[0]
        got = (row["reps"], row["hold_s"])
        assert tuple(None if pd.isna(v) else v for v in got) == expect


def test_semicolon_file_reads_decimal_comma() -> None:
    text = "patient_id;performed_at;exercise;hold_s\nP001;2026-03-02 07:15;bridge;12,5\n"
    assert run("s.csv", text).clean["hold_s"].tolist() == [12.5]


def test_sets_default_to_one() -> None:
    result = sessions(
        "P001,2026-03-02 07:15,bridge,,,5,15,,,,,", "P001,2026-03-02 07:16,bridge,,2,5,15,,,,,"
    )
    assert result.clean["sets"].tolist() == [1, 2]
    assert sessions("P001,2026-03-02 07:15,bridge,,0,5,15,,,,,").rejects["reason"].tolist() == [
        "out_of_range"
    ]


# --- exercises and vocabularies -------------------------------------------------------------


def test_exercise_aliases_resolve() -> None:
    names = [
        "Low Back Stretch",
        "MINI PUSH UP",
        "mini-push-up",
        "Ｂｒｉｄｇｅ",
        "Sphinx",
        "Nerve floss",
    ]
    rows = [f"P001,2026-03-02 07:{i:02d},{n},,,10,,,,,," for i, n in enumerate(names)]
    result = sessions(*rows)
    assert result.clean["exercise_id"].tolist() == [
        "knee_to_chest", "mini_push_up", "mini_push_up", "bridge", "prone_press_up",
        "sciatic_floss",
    ]  # fmt: skip


def test_unknown_and_misspelled_exercises_are_never_guessed() -> None:
    result = sessions(
        "P001,2026-03-02 07:15,Sciatic Nerve Flos,,,10,,,,,,",
        "P001,2026-03-02 07:16,Yoga,,,10,,,,,,",
        "P001,2026-03-02 07:17,Press-up,,,10,,,,,,",
        "P001,2026-03-02 07:18,,,,10,,,,,,",
    )
    assert result.clean.empty
    assert [r[2] for r in reasons(result)] == [
        "unknown_exercise", "unknown_exercise", "unknown_exercise", "missing_value",
    ]  # fmt: skip
    details = result.rejects["detail"].tolist()
    assert "did you mean 'sciatic_floss'?" in details[0]
    assert "did you mean" not in details[1]


def test_sides_levels_and_variants() -> None:
    result = sessions(
        "P001,2026-03-02 07:10,bridge,,,5,15,,,,,",  # blank side, no sides -> none
        "P001,2026-03-02 07:11,knee_to_chest,,,10,,,,,,",  # blank side, sided -> both
        "P001,2026-03-02 07:12,sciatic_floss,L,,10,,,,,,",
        "P001,2026-03-02 07:13,sciatic_floss,Bilateral,,10,,,,,,",
        "P001,2026-03-02 07:14,mini_push_up,,,10,,Counter,,,,",
        "P001,2026-03-02 07:15,prone_press_up,,,3,30,,standing,,,",
        "P001,2026-03-02 07:16,bridge,left,,5,15,,,,,",  # bridge has no sides
        "P001,2026-03-02 07:17,sciatic_floss,up,,10,,,,,,",
        "P001,2026-03-02 07:18,mini_push_up,,,10,,moon,,,,",
        "P001,2026-03-02 07:19,bridge,,,5,15,wall,,,,",  # level of another exercise
        "P001,2026-03-02 07:20,bridge,,,5,15,,prone,,,",  # variant of another exercise
        "P001,2026-03-02 07:21,low_back_roll,left,,10,,,,,,",  # alternating: both/none only
    )
    clean = result.clean
    assert clean["side"].tolist() == ["none", "both", "left", "both", "none", "none"]
    assert clean["level"].tolist()[4] == "counter"
    assert clean["variant"].tolist()[5] == "standing"
    assert reasons(result) == [
        (8, "side", "bad_vocabulary"),
        (9, "side", "bad_vocabulary"),
        (10, "level", "bad_vocabulary"),
        (11, "level", "bad_vocabulary"),
        (12, "variant", "bad_vocabulary"),
        (13, "side", "bad_vocabulary"),
    ]


# --- patient ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "reason"),
    [
        ("../x", "bad_patient_id"),
        ("ＰＯＯ１", "bad_patient_id"),  # full-width
        ("P001\u200b", "bad_patient_id"),  # zero-width space
        ("P0\u200b01", "bad_patient_id"),
        (" P001", "bad_patient_id"),  # never trimmed into another patient's id
        ("P001; DROP TABLE", "bad_patient_id"),
        ("", "missing_value"),
        ("P999", "unknown_patient"),
        ("p001", "unknown_patient"),  # ids are case-sensitive
    ],
)
def test_hostile_and_missing_patient_ids(pid: str, reason: str) -> None:
    result = run("p.csv", f'patient_id,recorded_at,back_pain\n"{pid}",2026-03-02T21:00:00Z,3\n')
    assert reasons(result) == [(2, "patient_id", reason)]


# --- times ----------------------------------------------------------------------------------


def pain_times(*cells: str, cfg: Settings | None = None, pid: str = "P001") -> Normalized:
    rows = "\n".join(f"{pid},{c},3" for c in cells)
    return run("p.csv", f"patient_id,recorded_at,back_pain\n{rows}\n", cfg)


def test_offsets_are_kept_exactly() -> None:
    result = pain_times(
        "2026-03-02T07:15:00+01:00", "2026-03-02T06:15:00Z", "2026-03-02 01:15-05:00"
    )
    assert result.clean["recorded_at"].tolist() == [pd.Timestamp("2026-03-02 06:15", tz="UTC")] * 3
    assert str(result.clean["recorded_at"].dtype) == "datetime64[us, UTC]"


def test_naive_times_are_read_in_the_patients_zone() -> None:
    ams = pain_times("2026-03-02 07:15", "2026-07-02 07:15", pid="P001")
    nyc = pain_times("2026-03-02 07:15", "2026-07-02 07:15", pid="P002")
    assert ams.clean["recorded_at"].dt.strftime("%H:%M").tolist() == ["06:15", "05:15"]
    assert nyc.clean["recorded_at"].dt.strftime("%H:%M").tolist() == ["12:15", "11:15"]


@pytest.mark.parametrize(
    ("pid", "gap", "overlap", "first_utc"),
    [
        ("P001", "2026-03-29 02:30", "2026-10-25 02:30", "2026-10-25 00:30"),
        ("P002", "2026-03-08 02:30", "2026-11-01 01:30", "2026-11-01 05:30"),
    ],
)
def test_dst_gap_and_overlap(pid: str, gap: str, overlap: str, first_utc: str) -> None:
    result = pain_times(gap, overlap, pid=pid)
    assert reasons(result) == [(2, "recorded_at", "nonexistent_local_time")]
    assert result.clean["recorded_at"].tolist() == [pd.Timestamp(first_utc, tz="UTC")]
    assert any(w.startswith("row 3:") and "ambiguous" in w for w in result.warnings)


def test_day_is_the_local_calendar_day() -> None:
    result = pain_times("2026-03-02T03:30:00Z", "2026-03-02 23:30", pid="P002")
    assert result.clean["day"].tolist() == [pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-02")]
    assert str(result.clean["day"].dtype) == "datetime64[us]"


def test_slash_and_dot_dates_are_day_first_and_never_swapped() -> None:
    result = pain_times("02/03/2026 07:15", "02.03.2026", "2/3/2026 7:15", "02/13/2026 07:15")
    days = result.clean["day"].tolist()
    assert days == [pd.Timestamp("2026-03-02")] * 3
    assert reasons(result) == [(5, "recorded_at", "bad_datetime")]
    mdy = replace(Settings(), date_order="MDY")
    result = pain_times("02/03/2026 07:15", "02/13/2026 07:15", cfg=mdy)
    assert result.clean["day"].tolist() == [pd.Timestamp("2026-02-03"), pd.Timestamp("2026-02-13")]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("1970-01-01T00:00:00Z", "implausible_time"),
        ("1999-12-31 23:00", "implausible_time"),
        ("2099-03-02 07:15", "implausible_time"),
        ("2026-11-26T12:00:00Z", "implausible_time"),  # two days after "now"
        ("2026-02-30 07:15", "bad_datetime"),
        ("yesterday", "bad_datetime"),
        ("2026", "bad_datetime"),
        ("46083.3", "bad_datetime"),  # a bare number is not a time outside XLSX
        ("", "missing_value"),
    ],
)
def test_bad_and_implausible_times(cell: str, reason: str) -> None:
    assert reasons(pain_times(cell)) == [(2, "recorded_at", reason)]


def test_excel_serial_dates_in_xlsx() -> None:
    import io

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["patient_id", "recorded_at", "back_pain"])
    ws.append(["P001", 46083.3125, 3])  # 2026-03-02 07:30 local
    ws.append(["P001", -5, 3])
    buf = io.BytesIO()
    wb.save(buf)
    result = run("p.xlsx", buf.getvalue())
    assert result.clean["recorded_at"].tolist() == [pd.Timestamp("2026-03-02 06:30", tz="UTC")]
    assert reasons(result) == [(3, "recorded_at", "bad_datetime")]


def test_updated_at_is_parsed_like_times() -> None:
    text = (
        "patient_id,recorded_at,back_pain,updated_at\n"
        "P001,2026-03-02T21:00:00Z,3,2026-03-03 08:00\n"
        "P001,2026-03-03T21:00:00Z,3,\n"
        "P001,2026-03-04T21:00:00Z,3,soon\n"
    )
    result = run("p.csv", text)
    assert result.clean["updated_at"].tolist()[0] == pd.Timestamp("2026-03-03 07:00", tz="UTC")
    assert pd.isna(result.clean["updated_at"].tolist()[1])
    assert reasons(result) == [(4, "updated_at", "bad_datetime")]


# --- notes, duplicates, schemas -------------------------------------------------------------


def test_formula_and_html_notes_are_stored_exactly() -> None:
    notes = ["=SUM(A1:A9)", "+1 -1 @x", "<script>alert('x')</script>", "a\nb", "  spaced  "]
    records = [
        {"patient_id": "P001", "recorded_at": f"2026-03-0{i + 1}T21:00:00Z", "back_pain": 3,
         "note": n}
        for i, n in enumerate(notes)
    ]  # fmt: skip
    import json

    result = run("p.json", json.dumps(records))
    assert result.clean["note"].tolist() == notes


def test_in_file_duplicates() -> None:
    result = sessions(
        "P001,2026-03-02 07:15,bridge,,,5,15,,,,,",
        "P001,2026-03-02 07:15,bridge,,,5,15,,,,,",  # identical: kept for the store to count
        "P001,2026-03-02 07:15,Bridge,,,6,15,,,,,",  # same record, other content
        "P001,2026-03-02 07:16,bridge,,,6,15,,,,,",
    )
    assert result.clean["_row"].tolist() == [2, 3, 5]
    assert reasons(result) == [(4, "performed_at", "duplicate_in_file")]


def test_session_id_key() -> None:
    header = "patient_id,performed_at,exercise,session_id,reps"
    result = run(
        "s.csv",
        f"{header}\nP001,2026-03-02 07:15,bridge,S1,5\nP001,2026-03-02 07:20,bridge,S1,5\n",
    )
    assert reasons(result) == [(3, "session_id", "duplicate_in_file")]


def test_clean_frames_match_the_schemas() -> None:
    s = sessions("P001,2026-03-02 07:15,bridge,,,5,15,,,3,2,ok")
    validate(s.clean.drop(columns=["_row", "updated_at"]), Sessions)
    p = pain_times("2026-03-02 21:00")
    validate(p.clean.drop(columns=["_row", "updated_at"]), Pain)
    assert s.clean["source_file"].tolist() == [SHA]
    assert str(s.clean["_row"].dtype) == "int64"
    assert str(s.clean["updated_at"].dtype) == "datetime64[us, UTC]"


def test_patients_files() -> None:
    text = (
        "patient_id,timezone,programme_start,clinician\n"
        "P010,Europe/Amsterdam,2026-01-05,AB\n"
        "P011,CET,2026-01-05,\n"
        "P012,Mars/Olympus,2026-01-05,\n"
        "P013,America/New_York,2026-01-05 10:00,\n"
        "P014,America/New_York,1970-01-01,\n"
        "../P,America/New_York,2026-01-05,\n"
        "P010,Europe/Amsterdam,2026-01-05,AB\n"
        "P010,Europe/London,2026-01-05,AB\n"
        "P015,+01:00,,\n"
    )
    result = run("patients.csv", text)
    validate(result.clean.drop(columns=["_row", "updated_at"]).drop_duplicates(), Patients)
    assert result.clean["_row"].tolist() == [2, 8]
    assert reasons(result) == [
        (3, "timezone", "bad_vocabulary"),
        (4, "timezone", "bad_vocabulary"),
        (5, "programme_start", "bad_datetime"),
        (6, "programme_start", "implausible_time"),
        (7, "patient_id", "bad_patient_id"),
        (9, "patient_id", "duplicate_in_file"),
        (10, "programme_start", "missing_value"),
        (10, "timezone", "bad_vocabulary"),
    ]


def test_reader_row_errors_become_rejects() -> None:
    text = f'{SESSION_HEADER}\nP001,2026-03-02 07:15,bridge,,,5,15,,,,,\nP001,short\nP001,2026-03-02 07:16,bridge,,,5,15,,,,,"{"x" * 5000}"\n'
    result = run("s.csv", text)
    assert reasons(result) == [(3, "", "bad_record"), (4, "note", "field_too_long")]
    assert_conserved(result, 3)


def test_stage_two_maps_schema_failures_to_reasons() -> None:
    from backcare_analytics.io.checks import Issues as _Issues
    from backcare_analytics.io.checks import stage_two as _stage_two
    from backcare_analytics.protocol import load_protocol

    good = sessions("P001,2026-03-02 07:15,bridge,,,5,15,,,3,2,").clean
    bad = pd.concat([good, good.assign(pain_before=pd.array([11], dtype="Int64"), _row=3)])
    bad = bad.assign(performed_at=bad["performed_at"] + pd.to_timedelta([0, 60], unit="s"))
    issues = _Issues(len(bad))
    _stage_two(bad.reset_index(drop=True), Sessions, load_protocol(), issues, np.zeros(2, bool))
    found = issues.frame()
    assert found[["pos", "column", "reason"]].values.tolist() == [
        [1, "pain_before", "out_of_range"]
    ]


# --- property: nothing lost, nothing hidden -------------------------------------------------

PAIN_CELLS = {"3": None, "7/10": None, "severe": "bad_number", "11": "out_of_range",
              "-1": "out_of_range", "7.5": "not_an_integer", "NaN": "bad_number",
              "": None}  # fmt: skip
EXERCISES = {"bridge": None, "Bridge": None, "Brigde": "unknown_exercise", "": "missing_value"}
PIDS = {"P001": None, "P002": None, "../x": "bad_patient_id", "P404": "unknown_patient"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(PIDS)),
            st.sampled_from(sorted(EXERCISES)),
            st.sampled_from(sorted(PAIN_CELLS)),
            st.sampled_from(sorted(PAIN_CELLS)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_every_row_lands_once_and_no_bad_cell_hides_another(rows: list[tuple]) -> None:
    lines = [
        f'{pid},2026-03-02T07:{i:02d}:00Z,{ex},,,5,15,,,"{pb}","{pa}",'
        for i, (pid, ex, pb, pa) in enumerate(rows)
    ]
    result = sessions(*lines)
    assert_conserved(result, len(rows))
    got = set(reasons(result))
    for i, (pid, ex, pb, pa) in enumerate(rows):
        row = i + 2
        expected = {
            (row, "patient_id", PIDS[pid]),
            (row, "exercise", EXERCISES[ex]),
            (row, "pain_before", PAIN_CELLS[pb]),
            (row, "pain_after", PAIN_CELLS[pa]),
        }
        expected = {e for e in expected if e[2] is not None}
        assert {g for g in got if g[0] == row} == expected


# --- the synthetic clinic: exactly the planted bad rows --------------------------------------


@pytest.mark.slow
def test_synthetic_clinic_rejects_exactly_the_planted_rows() -> None:
    from backcare_analytics import synth

    clinic = synth.simulate(synth.SynthConfig(patients=6, weeks=4, seed=11, bad_share=0.04))
    truth = clinic.truth
    expected = {f["file"]: f for f in truth["files"]}
    planted = {(b["file"], b["row"], b["reason"]) for b in truth["bad_rows"]}
    assert planted, "the clinic should plant bad rows"
    found: set[tuple[str, int, str]] = set()
    formats: set[str] = set()
    patients = None
    for name, data in clinic.files.items():
        export = read_export(Path(name), data=data)
        formats.add(export.source_format)
        (table,) = export.tables
        result = normalize(table, source_file=export.sha256, patients=patients, now=NOW)
        if table.kind == "patients":
            patients = result.clean
        exp = expected[name]
        assert table.rows_read == exp["rows_read"], name
        assert len(result.clean) == exp["accepted"] + exp["duplicates"], name
        assert result.rejects["row"].nunique() == exp["rejected"], name
        assert_conserved_rows(result, table)
        rejects = zip(result.rejects["row"], result.rejects["reason"], strict=True)
        found |= {(name, int(r), c) for r, c in rejects}
    assert found == planted
    assert formats == {"csv", "json", "jsonl", "xlsx"}


def assert_conserved_rows(result: Normalized, table) -> None:
    every = set(table.row_numbers.tolist()) | set(table.row_errors["row"].tolist())
    clean_rows, reject_rows = set(result.clean["_row"]), set(result.rejects["row"])
    assert not clean_rows & reject_rows
    assert clean_rows | reject_rows == every


@pytest.mark.parametrize(
    ("name", "header", "model"),
    [
        ("s.csv", SESSION_HEADER, Sessions),
        ("p.csv", "patient_id,recorded_at,back_pain", Pain),
        ("q.csv", "patient_id,timezone,programme_start", Patients),
    ],
)
def test_empty_tables_keep_their_schema(name: str, header: str, model) -> None:
    # a header-only CSV is refused (empty_file), so empty a one-row table instead
    width = header.count(",") + 1
    full = read_export(Path(name), data=f"{header}\n{'x,' * (width - 1)}x\n".encode()).tables[0]
    table = replace(full, frame=full.frame.iloc[:0], row_numbers=full.row_numbers[:0])
    result = normalize(table, source_file=SHA, patients=None, now=NOW)
    assert result.clean.empty and result.rejects.empty
    validate(result.clean.drop(columns=["_row", "updated_at"]), model)
    assert list(result.rejects.columns) == ["row", "column", "reason", "detail", "raw"]


def test_identical_repeat_shares_the_verdict_of_its_first() -> None:
    from backcare_analytics.io.checks import Issues as _Issues
    from backcare_analytics.io.checks import share_verdicts as _share_verdicts

    issues = _Issues(4)
    issues.add(np.array([True, False, False, False]), "pain_before", "out_of_range", "x")
    _share_verdicts(np.array([-1, 0, -1, 2]), issues)
    found = issues.frame()
    assert sorted(found["pos"].tolist()) == [0, 1]
    assert set(found["reason"]) == {"out_of_range"}


@pytest.mark.slow
def test_normalize_many_equals_one_file_at_a_time() -> None:
    from backcare_analytics import synth
    from backcare_analytics.io.normalize import normalize_many

    clinic = synth.simulate(synth.SynthConfig(patients=5, weeks=3, seed=5, bad_share=0.05))
    exports = [read_export(Path(n), data=d) for n, d in clinic.files.items()]
    (patients_table,) = exports[0].tables
    patients = normalize(patients_table, source_file=exports[0].sha256, patients=None, now=NOW)
    tables = [t for e in exports[1:] for t in e.tables]
    shas = [e.sha256 for e in exports[1:] for _ in e.tables]
    # a file twice in one batch: duplicates are still judged within each file
    tables.append(tables[0])
    shas.append(shas[0])
    batch = normalize_many(tables, source_files=shas, patients=patients.clean, now=NOW)
    assert len(batch) == len(tables)
    for table, sha, got in zip(tables, shas, batch, strict=True):
        one = normalize(table, source_file=sha, patients=patients.clean, now=NOW)
        pd.testing.assert_frame_equal(got.clean, one.clean)
        pd.testing.assert_frame_equal(got.rejects, one.rejects)
        assert got.warnings == one.warnings and got.kind == one.kind


def test_stage_two_schemas_leave_the_shared_models_alone() -> None:
    pain_times("2026-03-02 21:00")  # builds and caches the stage-two schemas
    assert Pain.to_schema().unique == ["patient_id", "recorded_at"]
    assert Patients.to_schema().columns["patient_id"].unique


def test_repeats_flag_says_whether_clean_repeats_a_record() -> None:
    """``Normalized.repeats`` lets the store skip its in-file passes: it must be True
    whenever clean holds two rows of one record (identical repeats are kept there)."""
    one = sessions(
        "P001,2026-03-02 07:15,bridge,,,5,15,,,,,", "P001,2026-03-02 07:16,bridge,,,5,15,,,,,"
    )
    assert not one.repeats
    twice = sessions(
        "P001,2026-03-02 07:15,bridge,,,5,15,,,,,", "P001,2026-03-02 07:15,bridge,,,5,15,,,,,"
    )
    assert twice.repeats and len(twice.clean) == 2


def test_stage_two_checks_per_distinct_value_agree_with_the_shared_schema() -> None:
    """The stage-two copy evaluates the pattern and programme pair checks once per distinct
    value or pair: same verdicts as the schema's own checks, row by row."""
    from backcare_analytics.io.checks import stage_two_schema
    from backcare_analytics.protocol import load_protocol
    from backcare_analytics.schemas import sessions_schema

    protocol = load_protocol()
    fast, shared = stage_two_schema("sessions", protocol), sessions_schema(protocol)
    ex = ["bridge", "bridge", "mini_push_up", "mini_push_up", "knee_to_chest", "prone_press_up"]
    frame = pd.DataFrame(
        {
            "exercise_id": pd.Series([*ex, "prone_press_up"], dtype="str"),
            "side": pd.Series(["both", "left", "both", "none", "left", "both", None], dtype="str"),
            "level": pd.Series([None, "wall", "wall", "floor", None, None, "x"], dtype="str"),
            "variant": pd.Series([None, None, None, None, None, "standing", "prone"], dtype="str"),
            "reps": 1,
            "hold_s": 1.0,
            "source_file": pd.Series(
                ["a" * 64, "A" * 64, "x", "0" * 64, None, "b" * 64, ""], dtype="str"
            ),
        }
    )
    for mine, theirs in zip(fast.checks, shared.checks, strict=True):
        assert mine.name == theirs.name
        assert mine(frame).check_output.tolist() == theirs(frame).check_output.tolist()
    (mine,) = fast.columns["source_file"].checks
    (theirs,) = shared.columns["source_file"].checks
    col = frame["source_file"].dropna()
    assert mine(col).check_output.tolist() == theirs(col).check_output.tolist()
