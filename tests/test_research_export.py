"""De-identified research export: allowlist, keyed pseudonyms, study days, key handling,
formula neutralisation and exact CSV round-trip."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backcare_analytics.config import PROJECT_ROOT
from backcare_analytics.errors import ConfigError
from backcare_analytics.research import export as ex
from backcare_analytics.safety import write_csv

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
IDS = ["P001", "p-002", "00123"]
NOTES = ['=HYPERLINK("http://x")', "+31 6 1234", "secret note: knee hurts", "@SUM(A1)"]
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4}")
SHA = "0" * 64


def _utc(values: list[str]) -> pd.Series:
    return pd.to_datetime(pd.Series(values)).dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _days(values: list[str | None]) -> pd.Series:
    return pd.to_datetime(pd.Series(values)).astype("datetime64[us]")


def clean_frames() -> dict[str, pd.DataFrame]:
    """A tiny hand-made clinic in the clean schemas (three patients, two time zones)."""
    patients = pd.DataFrame(
        {
            "patient_id": pd.Series(IDS, dtype="str"),
            "timezone": pd.Series(["Europe/Amsterdam", "America/New_York", "Europe/Amsterdam"], dtype="str"),
            "programme_start": _days(["2026-03-02", "2026-03-01", "2026-02-20"]),
            "clinician": pd.Series(["DRX", None, "=cmd|' /C calc'!A0"], dtype="str"),
        }
    )  # fmt: skip
    n = 4
    sessions = pd.DataFrame(
        {
            "patient_id": pd.Series(["P001", "P001", "p-002", "00123"], dtype="str"),
            "session_id": pd.Series(["app-P001-1", None, "x", "y"], dtype="str"),
            "performed_at": _utc(["2026-03-04T06:15:00Z", "2026-03-05T22:30:00Z",
                                  "2026-03-01T14:05:00Z", "2026-03-01T10:00:00Z"]),
            "day": _days(["2026-03-04", "2026-03-05", "2026-03-01", "2026-03-01"]),
            "exercise_id": pd.Series(["bridge", "mini_push_up", "bridge", "breathing"], dtype="str"),
            "side": pd.Series(["none"] * n, dtype="str"),
            "sets": pd.array([1, 1, None, 1], dtype="Int64"),
            "reps": pd.array([5, 10, 3, 10], dtype="Int64"),
            "hold_s": pd.array([15.0, None, 12.5, None], dtype="Float64"),
            "level": pd.Series([None, "wall", None, None], dtype="str"),
            "variant": pd.Series([None] * n, dtype="str"),
            "pain_before": pd.array([4, 3, None, 7], dtype="Int64"),
            "pain_after": pd.array([3, 3, 2, None], dtype="Int64"),
            "note": pd.Series(NOTES, dtype="str"),
            "source_file": pd.Series([SHA] * n, dtype="str"),
        }
    )  # fmt: skip
    pain = pd.DataFrame(
        {
            "patient_id": pd.Series(["P001", "p-002", "00123"], dtype="str"),
            "recorded_at": _utc(["2026-03-02T20:00:00Z", "2026-03-02T01:30:00Z", "2026-03-03T08:00:00Z"]),
            "day": _days(["2026-03-02", "2026-03-01", "2026-03-03"]),
            "back_pain": pd.array([5, 6, 2], dtype="Int64"),
            "leg_pain": pd.array([None, 3, 0], dtype="Int64"),
            "flare": pd.array([None, True, False], dtype="boolean"),
            "note": pd.Series(["-2 better", "=1+1", None], dtype="str"),
            "source_file": pd.Series([SHA] * 3, dtype="str"),
        }
    )  # fmt: skip
    prescriptions = pd.DataFrame(
        {
            "patient_id": pd.Series(["P001", "P001"], dtype="str"),
            "exercise_id": pd.Series(["bridge", "bridge"], dtype="str"),
            "valid_from": _days(["2026-03-02", "2026-03-16"]),
            "valid_to": _days(["2026-03-16", None]),
            "sets": pd.array([1, 1], dtype="Int64"),
            "reps": pd.array([3, 5], dtype="Int64"),
            "reps_max": pd.array([5, None], dtype="Int64"),
            "hold_s": pd.array([15.0, 15.0], dtype="Float64"),
            "per_side": pd.Series([False, False], dtype="bool"),
            "level": pd.Series([None, None], dtype="str"),
            "variant": pd.Series([None, None], dtype="str"),
            "source": pd.Series(["protocol", "override"], dtype="str"),
        }
    )
    return {
        "patients": patients,
        "sessions": sessions,
        "pain": pain,
        "prescriptions": prescriptions,
    }


def _export(tmp_path: Path, key: bytes = KEY_A, name: str = "out") -> Path:
    out = tmp_path / name
    ex.export_research(**clean_frames(), key=key, out=out)
    return out


def _all_cells(folder: Path) -> list[str]:
    """Every cell of every output file as text, plus every file's raw text."""
    cells: list[str] = []
    for f in sorted(folder.iterdir()):
        if f.suffix == ".parquet":
            df = pd.read_parquet(f)
            cells += [str(v) for v in df.astype("object").to_numpy().ravel()]
            cells += [str(c) for c in df.columns]
        elif f.suffix == ".csv":
            df = pd.read_csv(f, dtype=str, keep_default_na=False)
            cells += df.to_numpy().ravel().tolist() + list(df.columns)
            cells.append(f.read_text(encoding="utf-8"))
        else:
            cells.append(f.read_text(encoding="utf-8"))
    return cells


def test_export_holds_no_identifier_note_date_or_plain_hash(tmp_path):
    out = _export(tmp_path)
    cells = _all_cells(out)
    raw_bytes = b"".join(f.read_bytes() for f in out.iterdir())
    frames = clean_frames()
    forbidden = set(IDS) | set(NOTES) | {"DRX", "-2 better", "=1+1", "Europe/Amsterdam", SHA}
    forbidden |= {"app-P001-1", "America/New_York"}
    for pid in IDS:
        for algo in ("sha256", "sha1", "md5", "sha512", "blake2b"):
            digest = hashlib.new(algo, pid.encode()).hexdigest()
            forbidden |= {digest, digest[:12], digest.upper()[:12]}
    for value in forbidden:
        assert not any(value in c for c in cells), value
        assert value.encode() not in raw_bytes, value
    # No calendar dates or timestamps, neither as text nor as typed columns.
    assert not any(DATE_RE.search(c) for c in cells)
    for f in out.glob("*.parquet"):
        df = pd.read_parquet(f)
        assert not any(pd.api.types.is_datetime64_any_dtype(t) for t in df.dtypes)
    # Only allowlisted columns, in every file.
    for table, cols in ex.ALLOWLIST.items():
        assert tuple(pd.read_parquet(out / f"{table}.parquet").columns) == cols
        assert tuple(pd.read_csv(out / f"{table}.csv", nrows=0).columns) == cols
    assert len(frames["sessions"]) == len(pd.read_parquet(out / "sessions.parquet"))


def test_study_days_and_local_minutes_are_hand_computed():
    tables = ex.deidentify(**clean_frames(), key=KEY_A).tables
    s = tables["sessions"]
    sid = ex.pseudonymise(pd.Series(IDS, dtype="str"), KEY_A).tolist()
    p1 = s[s["subject_id"] == sid[0]]
    # P001 starts 2026-03-02 in Amsterdam (UTC+1 in March): 06:15Z on 03-04 is 07:15, day 2;
    # 22:30Z on 03-05 is 23:30 local, day 3.
    assert p1["study_day"].tolist() == [2, 3]
    assert p1["minute_of_day"].tolist() == [7 * 60 + 15, 23 * 60 + 30]
    # p-002 in New York (UTC-5): 14:05Z on 03-01 is 09:05, day 0 of a 03-01 start.
    p2 = s[s["subject_id"] == sid[1]]
    assert p2[["study_day", "minute_of_day"]].values.tolist() == [[0, 9 * 60 + 5]]
    # Its diary entry at 01:30Z on 03-02 is 20:30 on 03-01 local: day 0.
    d = tables["pain"]
    assert d.loc[d["subject_id"] == sid[1], ["study_day", "minute_of_day"]].values.tolist() == [
        [0, 20 * 60 + 30]
    ]
    r = tables["prescriptions"]
    assert r["valid_from_day"].tolist() == [0, 14]
    assert r["valid_to_day"].tolist()[0] == 14 and pd.isna(r["valid_to_day"].iloc[1])
    pts = tables["patients"]
    assert pts["clinician_code"].isna().sum() == 1
    assert pts["clinician_code"].dropna().str.fullmatch(r"c[0-9a-f]{20}").all()


def test_same_key_same_pseudonyms_other_key_unrelated(tmp_path):
    a1 = ex.read_research(_export(tmp_path, KEY_A, "a1"), "sessions")
    a2 = ex.read_research(_export(tmp_path, KEY_A, "a2"), "sessions")
    b = ex.read_research(_export(tmp_path, KEY_B, "b"), "sessions")
    pd.testing.assert_frame_equal(a1, a2)
    assert set(a1["subject_id"]).isdisjoint(set(b["subject_id"]))
    assert a1["subject_id"].nunique() == b["subject_id"].nunique() == 3
    # The same rows apart from the pseudonyms.
    pd.testing.assert_frame_equal(
        a1.drop(columns="subject_id").sort_values(
            ["study_day", "minute_of_day"], ignore_index=True
        ),
        b.drop(columns="subject_id").sort_values(["study_day", "minute_of_day"], ignore_index=True),
    )
    # The pseudonym is the HMAC, not a plain hash of the id.
    assert (
        ex.pseudonymise(pd.Series(["P001"]), KEY_A).iloc[0]
        != ex.pseudonymise(pd.Series(["P001"]), KEY_B).iloc[0]
    )


def test_csv_and_parquet_read_back_exactly(tmp_path):
    out = _export(tmp_path)
    tables = ex.deidentify(**clean_frames(), key=KEY_A).tables
    for name, df in tables.items():
        pd.testing.assert_frame_equal(ex.read_research(out, name), df)
        pd.testing.assert_frame_equal(ex.read_research(out, name, fmt="parquet"), df)
    # The formula-looking clinician code never reaches the file: it is pseudonymised.
    assert "cmd|" not in (out / "patients.csv").read_text(encoding="utf-8")


text_cells = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["=1+1", "+1", "-1", "@x", "\tx", "\rx", "\nx", "'x", "''", "'", ""]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(text_cells, text_cells), min_size=1, max_size=8))
def test_csv_text_cells_round_trip_and_never_start_a_formula(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("rt")
    df = pd.DataFrame(
        {
            "subject_id": pd.Series([r[0] for r in rows], dtype="str"),
            "clinician_code": pd.Series([r[1] for r in rows], dtype="str"),
        }
    )
    path = folder / "t.csv"
    write_csv(df, path, reversible=True)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    for cell in raw.to_numpy().ravel():
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n"))
    back = ex._read_csv(path, {"subject_id": "str", "clinician_code": "str"})
    pd.testing.assert_frame_equal(back, df)


@settings(max_examples=100, deadline=None)
@given(st.lists(text_cells, min_size=1, max_size=10))
def test_safety_reversible_neutralising_round_trips(cells):
    from backcare_analytics.safety import neutralise_formulas_reversibly, restore_formulas

    df = pd.DataFrame({"t": pd.Series(cells, dtype="str"), "n": range(len(cells))})
    safe = neutralise_formulas_reversibly(df)
    assert not safe["t"].dropna().str.startswith(("=", "+", "-", "@", "\t", "\r", "\n")).any()
    pd.testing.assert_frame_equal(restore_formulas(safe), df)
    pd.testing.assert_frame_equal(
        df, pd.DataFrame({"t": pd.Series(cells, dtype="str"), "n": range(len(cells))})
    )


# ---------------------------------------------------------------------------------------------
# the key file
# ---------------------------------------------------------------------------------------------


def test_new_key_is_private_random_and_never_overwritten(tmp_path):
    path = ex.new_key(tmp_path / "keys" / "study.key")
    assert os.stat(path).st_mode & 0o777 == 0o600
    key = ex.load_key(path)
    assert len(key) == ex.KEY_BYTES
    assert ex.load_key(ex.new_key(tmp_path / "other.key")) != key
    with pytest.raises(ConfigError, match="already exists"):
        ex.new_key(path)
    assert ex.load_key(path) == key


def test_key_readable_by_others_is_refused(tmp_path):
    path = ex.new_key(tmp_path / "k")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ex.load_key(path)


def test_key_inside_store_folder_or_repo_or_export_is_refused(tmp_path):
    store_dir = tmp_path / "clinic"
    store_dir.mkdir()
    path = ex.new_key(tmp_path / "clinic" / "k")  # allowed to create without a store given
    with pytest.raises(ConfigError, match="store's folder"):
        ex.load_key(path, store=store_dir / "backcare.duckdb")
    with pytest.raises(ConfigError, match="export folder"):
        ex.load_key(path, out=store_dir)
    with pytest.raises(ConfigError, match="repository"):
        ex.new_key(PROJECT_ROOT / "build" / "never.key")
    assert not (PROJECT_ROOT / "build" / "never.key").exists()
    git_tree = tmp_path / "someone_repo"
    (git_tree / ".git").mkdir(parents=True)
    with pytest.raises(ConfigError, match="git work tree"):
        ex.new_key(git_tree / "k")


def test_missing_or_short_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="new-key"):
        ex.load_key(tmp_path / "nope")
    short = tmp_path / "short"
    short.write_bytes(b"x" * 8)
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="8 bytes"):
        ex.load_key(short)


# ---------------------------------------------------------------------------------------------
# the command, end to end on an imported synthetic clinic
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported_store(tmp_path_factory):
    from backcare_analytics import synth
    from backcare_analytics.cli import main
    from backcare_analytics.synth.config import SynthConfig

    root = tmp_path_factory.mktemp("clinic")
    synth.generate_clinic(SynthConfig(patients=6, weeks=2, seed=5), root / "exports")
    store = root / "store" / "backcare.duckdb"
    store.parent.mkdir()
    assert main(["import", str(root / "exports"), "--store", str(store)]) in (0, 2)
    return store


@pytest.mark.slow
def test_cli_export_research_end_to_end(imported_store, tmp_path, capsys):
    from backcare_analytics.cli import main
    from backcare_analytics.store import Store

    key = tmp_path / "keys" / "study.key"
    out = tmp_path / "export"
    code = main(
        ["export", "research", "--store", str(imported_store), "--out", str(out),
         "--key-file", str(key), "--new-key"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    db = Store(imported_store)
    sessions, pain, patients = db.sessions(), db.pain(), db.patients()
    cells = _all_cells(out)
    raw = b"".join(f.read_bytes() for f in out.iterdir())
    notes = set(sessions["note"].dropna()) | set(pain["note"].dropna())
    ids = set(patients["patient_id"])
    for value in ids | {n for n in notes if len(n) >= 4}:
        assert not any(value in c for c in cells), "identifier or note leaked"
        assert value.encode() not in raw
    for pid in ids:
        for algo in ("sha256", "sha1", "md5"):
            assert hashlib.new(algo, pid.encode()).hexdigest()[:12].encode() not in raw
    assert not any(DATE_RE.search(c) for c in cells)
    assert len(ex.read_research(out, "sessions")) == len(sessions)
    # Same key again: the same pseudonyms.
    assert main(["export", "research", "--store", str(imported_store), "--out",
                 str(tmp_path / "again"), "--key-file", str(key)]) == 0  # fmt: skip
    pd.testing.assert_frame_equal(
        ex.read_research(out, "patients"), ex.read_research(tmp_path / "again", "patients")
    )


@pytest.mark.slow
def test_cli_refuses_a_key_beside_the_store(imported_store, tmp_path, capsys):
    from backcare_analytics.cli import main

    key = imported_store.parent / "study.key"
    code = main(
        ["export", "research", "--store", str(imported_store), "--out", str(tmp_path / "o"),
         "--key-file", str(key), "--new-key"]
    )  # fmt: skip
    assert code == 1
    assert "store's folder" in capsys.readouterr().err
    assert not key.exists() and not (tmp_path / "o").exists()


def test_outputs_are_owner_only(tmp_path):
    from backcare_analytics.safety import open_private

    out = tmp_path / "a" / "b"
    write_csv(pd.DataFrame({"note": ["=1+1"]}), out / "t.csv")
    with open_private(out / "t.parquet") as fh:
        pd.DataFrame({"x": [1]}).to_parquet(fh)
    for folder in (tmp_path / "a", out):
        assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("t.csv", "t.parquet"):
        assert (out / name).stat().st_mode & 0o777 == 0o600


def test_categorical_cells_and_headers_are_neutralised():
    from backcare_analytics.safety import neutralise_formulas

    df = pd.DataFrame({"=cmd": pd.Categorical(["=HYPERLINK(1)", "ok"]), "n": [-1, 2]})
    out = neutralise_formulas(df)
    assert list(out.columns) == ["'=cmd", "n"]
    assert out["'=cmd"].tolist() == ["'=HYPERLINK(1)", "ok"]
    assert out["n"].tolist() == [-1, 2]
