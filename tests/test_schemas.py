"""Clean schemas: each check has a row that passes and a row that fails; validation fails closed."""

from __future__ import annotations

import pandas as pd
import pytest

from backcare_analytics.errors import SchemaValidationError, ValidationDisabledError
from backcare_analytics.schemas import (
    Pain,
    Patients,
    Prescriptions,
    RawPain,
    RawPatients,
    RawSessions,
    Sessions,
    ensure_validation_enabled,
    find_failures,
    required_columns,
    validate,
)

SHA = "0" * 64


def utc(*times: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(times), utc=True).as_unit("us"))


def days(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values)).as_unit("us"))


def sessions(**overrides) -> pd.DataFrame:
    """Two valid session rows; keyword arguments replace a column's values."""
    cols = {
        "patient_id": pd.Series(["P001", "P002"], dtype="str"),
        "session_id": pd.Series(["s1", None], dtype="str"),
        "performed_at": utc("2026-03-02T06:15:00Z", "2026-03-02T18:00:00Z"),
        "day": days("2026-03-02", "2026-03-02"),
        "exercise_id": pd.Series(["bridge", "mini_push_up"], dtype="str"),
        "side": pd.Series(["none", "none"], dtype="str"),
        "sets": pd.array([1, 2], dtype="Int64"),
        "reps": pd.array([4, 10], dtype="Int64"),
        "hold_s": pd.array([15.0, None], dtype="Float64"),
        "level": pd.Series([None, "wall"], dtype="str"),
        "variant": pd.Series([None, None], dtype="str"),
        "pain_before": pd.array([3, None], dtype="Int64"),
        "pain_after": pd.array([2, 0], dtype="Int64"),
        "note": pd.Series(["=cmd|' /C calc'!A0", "<script>x</script>"], dtype="str"),
        "source_file": pd.Series([SHA, SHA], dtype="str"),
    }
    df = pd.DataFrame(cols)
    for name, values in overrides.items():
        df[name] = pd.Series(values, dtype=df[name].dtype)
    return df


def pain(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "patient_id": pd.Series(["P001", "P001"], dtype="str"),
            "recorded_at": utc("2026-03-02T20:00:00Z", "2026-03-03T20:00:00Z"),
            "day": days("2026-03-02", "2026-03-03"),
            "back_pain": pd.array([6, 0], dtype="Int64"),
            "leg_pain": pd.array([None, 10], dtype="Int64"),
            "flare": pd.array([True, None], dtype="boolean"),
            "note": pd.Series([None, "ok"], dtype="str"),
            "source_file": pd.Series([SHA, SHA], dtype="str"),
        }
    )
    for name, values in overrides.items():
        df[name] = pd.Series(values, dtype=df[name].dtype)
    return df


def patients(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "patient_id": pd.Series(["P001", "P-002_b"], dtype="str"),
            "timezone": pd.Series(["Europe/Amsterdam", "America/New_York"], dtype="str"),
            "programme_start": days("2026-03-02", "2026-02-23"),
            "clinician": pd.Series(["JV", None], dtype="str"),
        }
    )
    for name, values in overrides.items():
        df[name] = pd.Series(values, dtype=df[name].dtype)
    return df


def failed_checks(df: pd.DataFrame, model) -> set[str]:
    return set(find_failures(df, model)["check"])


def test_valid_frames_pass():
    for df, model in ((sessions(), Sessions), (pain(), Pain), (patients(), Patients)):
        assert validate(df, model) is df
        assert find_failures(df, model).empty


@pytest.mark.parametrize(
    ("column", "values", "check"),
    [
        ("patient_id", ["P001", "../x"], "patient_id_format"),
        ("patient_id", ["P001", "Ｐ００１"], "patient_id_format"),  # full-width
        ("patient_id", ["P001", "P\u200b001"], "patient_id_format"),  # zero-width space
        ("patient_id", ["P001", "-leading-dash"], "patient_id_format"),
        ("patient_id", ["P001", "x" * 65], "patient_id_format"),
        ("exercise_id", ["bridge", "plank"], "exercise_in_protocol"),
        ("side", ["none", "up"], "isin"),
        ("sets", [1, 0], "greater_than_or_equal_to"),
        ("sets", [1, 21], "less_than_or_equal_to"),
        ("reps", [4, -1], "greater_than_or_equal_to"),
        ("reps", [4, 501], "less_than_or_equal_to"),
        ("hold_s", [15.0, -2.0], "greater_than_or_equal_to"),
        ("hold_s", [15.0, 601.0], "less_than_or_equal_to"),
        ("pain_before", [3, 11], "less_than_or_equal_to"),
        ("pain_after", [2, -1], "greater_than_or_equal_to"),
        ("note", ["ok", "x" * 4001], "str_length"),
        ("source_file", [SHA, "not-a-hash"], "str_matches"),
        ("day", ["2026-03-02", "2026-03-02 06:00"], "day_is_a_calendar_day"),
    ],
)
def test_each_session_check_fails_on_the_bad_row_only(column, values, check):
    if column == "day":
        values = pd.to_datetime(values, format="ISO8601").as_unit("us")
    df = sessions(**{column: values})
    failures = find_failures(df, Sessions)
    assert any(c.startswith(check) for c in failures["check"]), failures
    assert set(failures["row"]) == {1}


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"level": [None, "ceiling"]}, "level_of_exercise"),
        ({"level": ["wall", "wall"]}, "level_of_exercise"),  # bridge has no ladder
        ({"variant": [None, "prone"]}, "variant_of_exercise"),  # push-up has no variant
        ({"side": ["left", "none"]}, "side_of_exercise"),  # bridge has no sides
        ({"reps": [4, None], "hold_s": [15.0, None]}, "some_dose_recorded"),
    ],
)
def test_protocol_checks_of_sessions(overrides, check):
    failures = find_failures(sessions(**overrides), Sessions)
    assert check in set(failures["check"])
    assert set(failures["row"]) == {0} or set(failures["row"]) == {1}


def test_sides_and_variants_that_the_protocol_allows_pass():
    df = sessions(
        exercise_id=["sciatic_floss", "prone_press_up"],
        side=["left", "none"],
        variant=[None, "standing"],
        level=[None, None],
    )
    assert find_failures(df, Sessions).empty


def test_duplicate_session_key_fails():
    df = sessions(patient_id=["P001", "P001"], exercise_id=["bridge", "bridge"], level=[None, None])
    df["performed_at"] = utc("2026-03-02T06:15:00Z", "2026-03-02T06:15:00Z")
    assert "multiple_fields_uniqueness" in failed_checks(df, Sessions)


def test_timestamps_must_be_utc_microseconds():
    df = sessions()
    df["performed_at"] = df["performed_at"].dt.tz_convert("Europe/Amsterdam")
    assert failed_checks(df, Sessions)  # dtype check fails: times are stored in UTC
    naive = sessions()
    naive["performed_at"] = naive["performed_at"].dt.tz_localize(None)
    assert failed_checks(naive, Sessions)


def test_int64_columns_must_be_nullable_integers_not_floats():
    df = sessions()
    df["pain_after"] = df["pain_after"].astype("float64")
    assert failed_checks(df, Sessions)


def test_extra_columns_are_refused_by_clean_schemas():
    df = sessions()
    df["name"] = "someone"
    assert "column_in_schema" in failed_checks(df, Sessions)


@pytest.mark.parametrize(
    ("column", "values", "check"),
    [
        ("back_pain", [6, 11], "less_than_or_equal_to"),
        ("back_pain", [6, None], "not_nullable"),
        ("leg_pain", [None, -1], "greater_than_or_equal_to"),
        ("patient_id", ["P001", "../x"], "patient_id_format"),
    ],
)
def test_each_pain_check(column, values, check):
    failures = find_failures(pain(**{column: values}), Pain)
    assert any(c.startswith(check) for c in failures["check"]), failures
    assert set(failures["row"].dropna()) <= {1}


def test_duplicate_diary_entry_fails():
    df = pain()
    df["recorded_at"] = utc("2026-03-02T20:00:00Z", "2026-03-02T20:00:00Z")
    assert "multiple_fields_uniqueness" in failed_checks(df, Pain)


@pytest.mark.parametrize(
    ("column", "values", "check"),
    [
        ("timezone", ["Europe/Amsterdam", "CET+1"], "iana_timezone"),
        ("patient_id", ["P001", "P001"], "field_uniqueness"),
        ("patient_id", ["P001", "P 002"], "patient_id_format"),
        ("clinician", ["JV", "x" * 129], "str_length"),
    ],
)
def test_each_patient_check(column, values, check):
    failures = find_failures(patients(**{column: values}), Patients)
    assert any(c.startswith(check) for c in failures["check"]), failures


def test_prescription_interval_check():
    from backcare_analytics.protocol import build_prescriptions

    rx = build_prescriptions(patients())
    assert find_failures(rx, Prescriptions).empty
    rx.loc[0, "valid_to"] = rx.loc[0, "valid_from"]
    assert "valid_to_after_valid_from" in failed_checks(rx, Prescriptions)


def test_failure_table_has_one_entry_per_failing_row_for_row_checks():
    df = sessions(reps=[None, None], hold_s=[None, None])
    failures = find_failures(df, Sessions)
    dose = failures[failures["check"] == "some_dose_recorded"]
    assert sorted(dose["row"]) == [0, 1]
    assert (dose["column"] == "(row)").all()


def test_validate_error_names_rows_columns_and_checks_but_no_values():
    df = sessions(pain_before=[3, 11], note=["secret note", "other secret"])
    with pytest.raises(SchemaValidationError) as err:
        validate(df, Sessions, what="clinic.csv")
    text = str(err.value)
    assert "clinic.csv" in text and "row 1" in text and "pain_before" in text
    assert "11" not in text.replace("row 1", "") and "secret" not in text
    assert len(err.value.failures) == 1


def test_raw_schemas_know_required_columns():
    assert required_columns(RawSessions) == ("patient_id", "performed_at", "exercise")
    assert required_columns(RawPain) == ("patient_id", "recorded_at", "back_pain")
    assert required_columns(RawPatients) == ("patient_id", "timezone", "programme_start")


def test_raw_schema_accepts_text_and_extra_columns():
    raw = pd.DataFrame(
        {"patient_id": ["00123"], "performed_at": ["02/03/2026 07:15"], "exercise": ["Brdige"],
         "colour": ["red"]}, dtype="str",
    )  # fmt: skip
    assert find_failures(raw, RawSessions).empty
    assert not find_failures(raw.drop(columns="exercise"), RawSessions).empty


@pytest.mark.parametrize(
    ("var", "value"),
    [("PANDERA_VALIDATION_ENABLED", "False"), ("PANDERA_VALIDATION_DEPTH", "SCHEMA_ONLY")],
)
def test_validation_fails_closed_when_pandera_is_switched_off(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationDisabledError, match="switched off"):
        ensure_validation_enabled()
    with pytest.raises(ValidationDisabledError):
        validate(sessions(), Sessions)


def test_validation_fails_closed_when_pandera_config_is_switched_off():
    from pandera.config import config_context

    with config_context(validation_enabled=False), pytest.raises(ValidationDisabledError):
        validate(pain(), Pain)
