"""FHIR R4: a Bundle or bulk NDJSON of Observations becomes pain-diary and session rows
(``docs/export-format.md``, "FHIR R4"); anything unreadable is refused per entry."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from backcare_analytics.io.fhir import COMPONENT_SYSTEM, EXERCISE_SYSTEM, LOINC, PAIN_CODE
from backcare_analytics.io.normalize import normalize
from backcare_analytics.io.readers import FileRefused, read_export

BUNDLE = Path(__file__).parent / "fixtures" / "fhir_bundle.json"
NOW = pd.Timestamp("2026-11-24", tz="UTC")


def registered() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": pd.Series(["P001"], dtype="str"),
            "timezone": pd.Series(["Europe/Amsterdam"], dtype="str"),
            "programme_start": pd.Series([pd.Timestamp("2026-01-05")]).astype("datetime64[us]"),
            "clinician": pd.Series([None], dtype="str"),
        }
    )


def pain_obs(value: object, **extra: object) -> dict:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": PAIN_CODE}]},
        "subject": {"reference": "Patient/P001"},
        "effectiveDateTime": "2026-03-02T21:00:00+01:00",
        "valueInteger": value,
    }
    obs.update(extra)
    return obs


def component(code: str, **value: object) -> dict:
    return {"code": {"coding": [{"system": COMPONENT_SYSTEM, "code": code}]}, **value}


def test_documented_bundle_reads_and_normalises() -> None:
    export = read_export(BUNDLE)
    assert export.source_format == "fhir"
    assert export.warnings == ("skipped 1 resource(s) that are not Observations",)
    by_kind = {t.kind: t for t in export.tables}
    assert sorted(by_kind) == ["pain", "sessions"]
    assert by_kind["pain"].row_numbers.tolist() == [2]
    assert by_kind["sessions"].row_numbers.tolist() == [3, 4]

    pain = normalize(by_kind["pain"], source_file=export.sha256, patients=registered(), now=NOW)
    row = pain.clean.iloc[0]
    assert (row["back_pain"], row["leg_pain"], row["flare"]) == (4, 1, False)
    assert row["recorded_at"] == pd.Timestamp("2026-03-02 20:00", tz="UTC")
    assert row["note"] == "stiff in the morning"
    assert row["updated_at"] == pd.Timestamp("2026-03-02 20:05", tz="UTC")

    sessions = normalize(
        by_kind["sessions"], source_file=export.sha256, patients=registered(), now=NOW
    )
    assert sessions.rejects.empty
    clean = sessions.clean
    assert clean["exercise_id"].tolist() == ["bridge", "mini_push_up"]
    assert clean["session_id"].tolist() == ["S-20260302-1"] * 2
    assert clean["reps"].tolist() == [5, 10]
    assert clean["hold_s"].tolist()[0] == 15.0
    assert clean["level"].tolist()[1] == "wall"
    assert clean["pain_before"].tolist()[0] == 3


def test_pain_values_quantities_and_ranges() -> None:
    entries = [
        pain_obs(7),
        {**pain_obs(None), "valueQuantity": {"value": 11, "unit": "{score}"}},
        pain_obs(-1),
        pain_obs("severe"),
        pain_obs(6.5),
    ]
    for i, e in enumerate(entries):
        e["effectiveDateTime"] = f"2026-03-0{i + 1}T21:00:00+01:00"
    del entries[1]["valueInteger"]
    bundle = {"resourceType": "Bundle", "entry": [{"resource": e} for e in entries]}
    export = read_export(Path("b.json"), data=json.dumps(bundle).encode())
    result = normalize(export.tables[0], source_file="0" * 64, patients=registered(), now=NOW)
    assert result.clean["back_pain"].tolist() == [7]
    got = list(zip(result.rejects["row"], result.rejects["reason"], strict=True))
    assert got == [(2, "out_of_range"), (3, "out_of_range"), (4, "bad_number"),
                   (5, "not_an_integer")]  # fmt: skip


def test_bad_entries_are_refused_per_row() -> None:
    good = pain_obs(3)
    unknown_code = copy.deepcopy(good)
    unknown_code["code"] = {"coding": [{"system": LOINC, "code": "8867-4"}]}  # heart rate
    void = {**good, "status": "entered-in-error"}
    nested = {**good, "effectiveDateTime": {"start": "2026-03-02"}}
    no_subject = {k: v for k, v in good.items() if k != "subject"}
    group = {**good, "subject": {"reference": "Group/G1"}}
    entries = [good, unknown_code, void, nested, "junk", no_subject, group]
    bundle = {"resourceType": "Bundle", "entry": [{"resource": e} for e in entries]}
    export = read_export(Path("b.json"), data=json.dumps(bundle).encode())
    rows = {}
    for table in export.tables:
        result = normalize(table, source_file="0" * 64, patients=registered(), now=NOW)
        rows |= dict(zip(result.rejects["row"], result.rejects["reason"], strict=True))
        rows |= {r: "clean" for r in result.clean["_row"]}
    assert rows == {
        1: "clean", 2: "bad_record", 3: "bad_record", 4: "bad_record", 5: "bad_record",
        6: "missing_value", 7: "bad_patient_id",
    }  # fmt: skip


def test_bulk_ndjson_sessions() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": EXERCISE_SYSTEM, "code": "Sciatic floss"}]},
        "subject": {"reference": "https://ehr.example/fhir/Patient/P001"},
        "effectivePeriod": {"start": "2026-03-02T07:30:00+01:00"},
        "component": [
            component("reps", valueInteger=10),
            component("side", valueString="left"),
            component("hold_s", valueQuantity={"value": 0.05, "code": "min"}),
        ],
    }
    lines = [json.dumps(obs), "", "{broken", json.dumps({"resourceType": "Patient"})]
    export = read_export(Path("obs.ndjson"), data="\n".join(lines).encode())
    assert export.source_format == "fhir" and export.blank_rows == 1
    (table,) = export.tables
    result = normalize(table, source_file="0" * 64, patients=registered(), now=NOW)
    row = result.clean.iloc[0]
    assert (row["exercise_id"], row["side"], row["reps"], row["hold_s"]) == (
        "sciatic_floss", "left", 10, 3.0,
    )  # fmt: skip
    assert result.rejects["row"].tolist() == [3]


def test_not_a_bundle_is_refused() -> None:
    data = json.dumps({"resourceType": "Patient", "id": "P001"}).encode()
    with pytest.raises(FileRefused) as info:
        read_export(Path("p.json"), data=data)
    assert info.value.reason == "bad_json_shape"
    only_patients = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]}
    with pytest.raises(FileRefused) as info:
        read_export(Path("p.json"), data=json.dumps(only_patients).encode())
    assert info.value.reason == "empty_file"


def test_the_example_in_the_export_contract_reads() -> None:
    doc = Path(__file__).parents[1] / "docs" / "export-format.md"
    section = doc.read_text(encoding="utf-8").split("## FHIR R4", 1)[1]
    example = section.split("```json", 1)[1].split("```", 1)[0]
    export = read_export(Path("example.json"), data=example.encode())
    tables = {t.kind: t for t in export.tables}
    for table in tables.values():
        result = normalize(table, source_file="0" * 64, patients=registered(), now=NOW)
        assert result.rejects.empty
        assert len(result.clean) == 1
