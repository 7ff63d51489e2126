"""Study keys (issue 10, defect 16): keys an attacker could guess are refused with the fix, and
every key `backcare export new-key` makes is accepted.

Reproduction: 32 zero bytes, ``a`` x 32 and ``password`` x 4 were accepted as keys by
``backcare export research``; with the all-zero key every pseudonym was reversed by hashing
guessed ids.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _adherence_frames import pain, patients, sessions

from backcare_analytics.cli import main
from backcare_analytics.errors import ConfigError
from backcare_analytics.research import export as ex
from backcare_analytics.store import Store

WEAK = {
    "zeros": bytes(32),
    "a x 32": b"a" * 32,
    "password x 4": b"password" * 4,
    "password x 8": b"password" * 8,  # longer keys are no exception
    "two bytes alternating": b"\x00\xff" * 16,
    "block of 16 twice": bytes(range(16)) * 2,
    "15 distinct values": bytes(range(15)) + bytes(range(14, -1, -1)) + b"\x00\x01",
    "short": bytes(range(31)),
}
STRONG = {
    "32 distinct": bytes(range(32)),
    "exactly 16 distinct, no repeat": bytes(range(16)) + bytes(range(15, -1, -1)),
    "block of 17 then 15 of it": bytes(range(17)) + bytes(range(15)),  # repeat < half
    "64 bytes": bytes(range(64)),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "clinic.duckdb"
    pts = patients({"P1": "2026-03-02"})
    ses = sessions([{"patient_id": "P1", "day": "2026-03-02", "exercise_id": "bridge"}])
    rows = {"patients": pts, "sessions": ses, "pain": pain({"P1": ["2026-03-02"]})}
    with Store(path).transaction() as con:
        for name, frame in rows.items():
            con.register("incoming", frame)
            cols = ", ".join(frame.columns)
            extra, value = (", source_file", ", 'x'") if name == "patients" else ("", "")
            con.execute(f"INSERT INTO {name} ({cols}{extra}) SELECT {cols}{value} FROM incoming")
            con.unregister("incoming")
    return path


def _key_file(folder: Path, key: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.key"
    path.write_bytes(key)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("key", [WEAK["zeros"], WEAK["a x 32"], WEAK["password x 4"]])
def test_export_research_refuses_the_reported_weak_keys(store, tmp_path, capsys, key):
    key_file = _key_file(tmp_path / "keys", key)
    out = tmp_path / "out"
    code = main(
        ["export", "research", "--store", str(store), "--out", str(out),
         "--key-file", str(key_file)]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "too weak" in err and "backcare export new-key" in err and str(key_file) in err
    assert "password" not in err and "aaaa" not in err  # never the key's bytes
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("name", sorted(WEAK))
def test_weak_keys_are_refused_by_load_key_and_deidentify(tmp_path, name):
    key = WEAK[name]
    with pytest.raises(ConfigError, match="too weak"):
        ex.load_key(_key_file(tmp_path / "k", key))
    frames = {
        "patients": patients({"P1": "2026-03-02"}).assign(clinician="dr"),
        "sessions": sessions([]),
        "pain": pain({}),
    }
    with pytest.raises(ConfigError, match="too weak"):
        ex.deidentify(**frames, prescriptions=None, key=key)


@pytest.mark.parametrize("name", sorted(STRONG))
def test_keys_at_the_edges_of_the_rules_are_accepted(tmp_path, name):
    assert ex.weak_key_reason(STRONG[name]) is None
    assert ex.load_key(_key_file(tmp_path / "k", STRONG[name])) == STRONG[name]


def test_the_reasons_name_the_rule() -> None:
    assert ex.weak_key_reason(WEAK["zeros"]) == "all its 32 bytes are the same"
    assert ex.weak_key_reason(WEAK["password x 8"]) == "it is a block of 8 bytes repeated"
    assert ex.weak_key_reason(WEAK["block of 16 twice"]) == "it is a block of 16 bytes repeated"
    assert "only 15 different byte values" in str(ex.weak_key_reason(WEAK["15 distinct values"]))
    assert "31 bytes" in str(ex.weak_key_reason(WEAK["short"]))


def test_new_key_output_always_passes(tmp_path, capsys) -> None:
    # The command itself, then the function many times: each key loads (the chance that 32
    # random bytes break a rule is below 4e-17, and new_key draws again if they ever do).
    assert main(["export", "new-key", str(tmp_path / "cli.key")]) == 0
    assert "fingerprint" in capsys.readouterr().out
    keys = [ex.load_key(tmp_path / "cli.key")]
    keys += [ex.load_key(ex.new_key(tmp_path / f"k{i}")) for i in range(300)]
    assert len(set(keys)) == len(keys)
    assert all(ex.weak_key_reason(k) is None for k in keys)


def test_pseudonyms_under_an_accepted_key_are_unchanged() -> None:
    # The check refuses keys; it never changes what an accepted key produces.
    ids = pd.Series(["P001"])
    assert ex.pseudonymise(ids, bytes(range(32))).iloc[0] == "sedd4e44f0afa53a74a55"
