"""The programme as data: the shipped protocol, broken protocol files, prescriptions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from backcare_analytics.errors import ProtocolError
from backcare_analytics.protocol import (
    build_prescriptions,
    load_prescription_overrides,
    load_protocol,
    prescriptions_on,
)
from backcare_analytics.schemas import Prescriptions, validate

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "protocols" / "early_phase_low_back.yaml"


@pytest.fixture
def shipped_data() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: object, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_shipped_protocol_holds_the_seven_exercises_of_the_routine():
    proto = load_protocol(SHIPPED)
    assert proto.exercise_ids == (
        "breathing", "knee_to_chest", "bridge", "sciatic_floss",
        "low_back_roll", "prone_press_up", "mini_push_up",
    )  # fmt: skip
    ex = proto.by_id
    # Doses as the seed text prescribes them.
    assert (ex["breathing"].dose.reps, ex["breathing"].dose.unit) == (10, "breaths")
    assert (ex["bridge"].dose.hold_s, ex["bridge"].dose.reps, ex["bridge"].dose.reps_max) == (
        15,
        3,
        5,
    )
    assert ex["sciatic_floss"].dose.per_side and ex["sciatic_floss"].dose.reps == 10
    assert ex["low_back_roll"].dose.per_side and ex["low_back_roll"].sidedness == "alternating"
    assert (ex["prone_press_up"].dose.hold_s, ex["prone_press_up"].dose.reps) == (30, 3)
    assert ex["prone_press_up"].variants == ("prone", "standing")
    assert ex["mini_push_up"].ladder == ("wall", "counter", "knees", "floor")
    assert ex["mini_push_up"].default_level == "wall"
    assert ex["knee_to_chest"].sidedness == "single_or_both"
    assert ex["sciatic_floss"].expected_symptoms == ("leg_pain",)
    assert proto.frequency.days_per_week == 7 and proto.frequency.sessions_per_day == 1
    assert proto.rules.dose_met_ratio == 0.8
    assert {e.id for e in proto.exercises if e.is_strength} == {
        "bridge", "prone_press_up", "mini_push_up",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Low Back Stretch", "knee_to_chest"),
        ("Mini Push Up", "mini_push_up"),
        ("mini-push-up", "mini_push_up"),
        ("MINI_PUSH_UP", "mini_push_up"),
        ("Ｍｉｎｉ Ｐｕｓｈ Ｕｐ", "mini_push_up"),  # full-width letters (NFKC)
        ("Sciatic Nerve Floss", "sciatic_floss"),
        ("Get Your Breath Going", "breathing"),
        ("Low Back Roll", "low_back_roll"),
        ("hip lift", "bridge"),
        ("Prone press-up", "prone_press_up"),
        ("Press-up", None),  # ambiguous in British English: never guessed
        ("Sciatic Nerve Flos", None),  # a misspelling is not resolved
        ("", None),
    ],
)
def test_exercise_names_resolve_through_aliases_and_never_by_guessing(name, expected):
    assert load_protocol(SHIPPED).resolve_exercise(name) == expected


def test_misspelling_gets_a_suggestion_only():
    proto = load_protocol(SHIPPED)
    assert proto.suggest_exercise("Brdige") == "bridge"
    assert proto.suggest_exercise("completely different") is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["exercises"][0].update(colour="red"), "exercises.0.colour: unknown key"),
        (lambda d: d.update(author="x"), "author: unknown key"),
        (lambda d: d["exercises"][2]["dose"].update(reps=0), "exercises.2.dose.reps"),
        (lambda d: d["exercises"][2]["dose"].update(hold_s=-15), "exercises.2.dose.hold_s"),
        (lambda d: d["exercises"][2]["dose"].update(reps=6), "reps_max (5) is below reps (6)"),
        (lambda d: d["exercises"][1].update(id="breathing"), "duplicate exercise id 'breathing'"),
        (
            lambda d: d["exercises"][1]["aliases"].append("Breathing"),
            "alias 'Breathing' names both",
        ),
        (lambda d: d["exercises"][6].update(default_level="ceiling"), "default_level 'ceiling'"),
        (lambda d: d["exercises"][0].pop("dose"), "exercises.0.dose: required key is missing"),
        (lambda d: d["exercises"][0].update(category="cardio"), "exercises.0.category"),
        (lambda d: d["rules"]["progression"].update(dose_met_days=9), "dose_met_days (9) exceeds"),
        (lambda d: d.update(exercises=[]), "exercises"),
    ],
)
def test_broken_protocols_are_refused_naming_the_key_and_the_fix(
    tmp_path, shipped_data, mutate, message
):
    mutate(shipped_data)
    with pytest.raises(ProtocolError) as err:
        load_protocol(write(tmp_path, shipped_data))
    text = str(err.value)
    assert message in text
    assert str(tmp_path) in text  # names the file


def test_unknown_key_message_says_how_to_fix(tmp_path, shipped_data):
    shipped_data["exercises"][0]["sides"] = "none"
    with pytest.raises(ProtocolError, match="fix: remove it or correct its spelling"):
        load_protocol(write(tmp_path, shipped_data))


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(path)


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "exercises: [\n"])
def test_malformed_files_are_refused(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError):
        load_protocol(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ProtocolError, match="no such protocol file"):
        load_protocol(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# prescriptions
# ---------------------------------------------------------------------------------------------

PATIENTS = pd.DataFrame(
    {
        "patient_id": ["P1", "P2"],
        "programme_start": pd.to_datetime(["2026-01-05", "2026-01-12"]).as_unit("us"),
    }
)


def overrides_file(tmp_path: Path, rows: list[dict]) -> Path:
    return write(tmp_path, {"prescriptions": rows}, "rx.yaml")


def test_default_prescriptions_give_every_patient_every_exercise_from_their_start():
    rx = build_prescriptions(PATIENTS)
    validate(rx, Prescriptions)
    assert len(rx) == 2 * 7
    assert rx["valid_to"].isna().all()
    p2 = rx[rx.patient_id == "P2"]
    assert (p2.valid_from == pd.Timestamp("2026-01-12")).all()
    bridge = rx[(rx.patient_id == "P1") & (rx.exercise_id == "bridge")].iloc[0]
    assert (bridge.reps, bridge.reps_max, bridge.hold_s, bridge.sets) == (3, 5, 15.0, 1)


def test_overrides_change_a_dose_or_a_level_from_a_date_on(tmp_path):
    path = overrides_file(
        tmp_path,
        [
            {
                "patient_id": "P1",
                "exercise": "Mini Push Up",
                "from": "2026-02-02",
                "level": "counter",
            },
            {"patient_id": "P1", "exercise": "mini_push_up", "from": "2026-03-02", "reps": 12},
            {"patient_id": "P1", "exercise": "bridge", "from": "2026-01-19", "hold_s": 20},
        ],
    )
    rx = build_prescriptions(PATIENTS, overrides=load_prescription_overrides(path))
    validate(rx, Prescriptions)
    push = rx[(rx.patient_id == "P1") & (rx.exercise_id == "mini_push_up")]
    assert push.valid_from.dt.strftime("%Y-%m-%d").tolist() == [
        "2026-01-05",
        "2026-02-02",
        "2026-03-02",
    ]
    assert push.valid_to.dt.strftime("%Y-%m-%d").fillna("-").tolist() == [
        "2026-02-02",
        "2026-03-02",
        "-",
    ]
    # The second override keeps the level set by the first one and changes only the reps.
    assert push.level.tolist() == ["wall", "counter", "counter"]
    assert push.reps.tolist() == [10, 10, 12]
    assert push.source.tolist() == ["protocol", "override", "override"]
    bridge = rx[(rx.patient_id == "P1") & (rx.exercise_id == "bridge")]
    assert bridge.hold_s.tolist() == [15.0, 20.0] and bridge.reps.tolist() == [3, 3]
    # Other patients are untouched.
    assert (rx[rx.patient_id == "P2"].source == "protocol").all()


def test_prescription_in_force_on_each_day(tmp_path):
    path = overrides_file(
        tmp_path, [{"patient_id": "P1", "exercise": "bridge", "from": "2026-01-19", "hold_s": 20}]
    )
    rx = build_prescriptions(PATIENTS, overrides=load_prescription_overrides(path))
    keys = pd.DataFrame(
        {
            "patient_id": ["P1", "P1", "P1", "P1", "P2"],
            "exercise_id": ["bridge"] * 5,
            "day": pd.to_datetime(
                ["2026-01-18", "2026-01-19", "2026-01-04", "2026-03-01", "2026-01-10"]
            ).as_unit("us"),
        }
    )
    got = prescriptions_on(keys, rx)
    assert got["day"].tolist() == keys["day"].tolist()  # rows kept in order
    assert got["hold_s"].tolist()[:2] == [15.0, 20.0]
    assert pd.isna(got["hold_s"].iloc[2])  # before P1's programme start
    assert got["hold_s"].iloc[3] == 20.0
    assert pd.isna(got["hold_s"].iloc[4])  # before P2's programme start


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"patient_id": "P1", "exercise": "Brdige", "from": "2026-02-01"}, "did you mean 'bridge'"),
        ({"patient_id": "P1", "exercise": "bridge", "from": "2026-02-01", "level": "wall"}, "not a level of bridge"),
        ({"patient_id": "P1", "exercise": "mini_push_up", "from": "2026-02-01", "level": "roof"}, "not a level of mini_push_up"),
        ({"patient_id": "P1", "exercise": "prone_press_up", "from": "2026-02-01", "variant": "side"}, "not a variant"),
        ({"patient_id": "../x", "exercise": "bridge", "from": "2026-02-01"}, "patient_id"),
        ({"patient_id": "P1", "exercise": "bridge", "from": "someday"}, "from"),
        ({"patient_id": "P1", "exercise": "bridge", "from": "2026-02-01", "reps": 0}, "reps"),
        ({"patient_id": "P1", "exercise": "bridge", "from": "2026-02-01", "colour": 1}, "unknown key"),
    ],
)  # fmt: skip
def test_bad_overrides_are_refused(tmp_path, row, message):
    with pytest.raises(ProtocolError, match=message):
        load_prescription_overrides(overrides_file(tmp_path, [row]))


def test_prescription_lookup_for_days_all_inside_the_programme():
    rx = build_prescriptions(PATIENTS)
    keys = pd.DataFrame(
        {
            "patient_id": ["P1"],
            "exercise_id": ["sciatic_floss"],
            "day": pd.to_datetime(["2026-01-06"]).as_unit("us"),
        }
    )
    got = prescriptions_on(keys, rx)
    assert got["per_side"].tolist() == [True] and got["reps"].tolist() == [10]
    assert str(got["per_side"].dtype) == "boolean"
