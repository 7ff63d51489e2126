"""The DuckDB store: typed queries, permissions, transactions, busy behaviour, and the
set-wise merge (duplicates and the edit rule) on hand-made clean frames."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from backcare_analytics.config import Settings
from backcare_analytics.errors import StoreBusyError, StoreError
from backcare_analytics.schemas import Pain, Patients, Prescriptions, Sessions, validate
from backcare_analytics.store import CLEAN_DTYPES, Store, merge_rows

ROOT = Path(__file__).resolve().parents[1]
SHA_A, SHA_B = "a" * 64, "b" * 64


def _settings(tmp_path: Path, timeout: float = 0.5) -> Settings:
    return Settings(data_dir=tmp_path / "data", store_busy_timeout_s=timeout)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "clinic.duckdb", settings=_settings(tmp_path))
    s.initialise()
    return s


def _patients(ids=("P1", "P2")) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "patient_id": list(ids),
            "timezone": "Europe/Amsterdam",
            "programme_start": pd.Timestamp("2026-03-01"),
            "clinician": None,
        }
    ).astype(CLEAN_DTYPES["patients"])
    df["source_file"] = SHA_A
    df["_row"] = range(2, 2 + len(df))
    df["updated_at"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]")
    return df


def _sessions(rows: list[dict], sha: str = SHA_A) -> pd.DataFrame:
    """Clean session rows from short dicts (time ``t`` as local 2026-03 day/hour)."""
    base = {
        "patient_id": "P1", "session_id": None, "exercise_id": "bridge", "side": "none",
        "sets": 1, "reps": 5, "hold_s": 15.0, "level": None, "variant": None,
        "pain_before": None, "pain_after": None, "note": None, "updated_at": None,
    }  # fmt: skip
    recs = []
    for i, r in enumerate(rows):
        rec = {**base, **r}
        t = pd.Timestamp(rec.pop("t", "2026-03-02 06:00"), tz="UTC")
        rec["performed_at"] = t
        rec["day"] = t.tz_convert("Europe/Amsterdam").tz_localize(None).normalize()
        rec["_row"] = rec.get("_row", i + 2)
        recs.append(rec)
    df = pd.DataFrame(recs)
    out = df[list(CLEAN_DTYPES["sessions"])[:-1]].astype(
        {k: v for k, v in CLEAN_DTYPES["sessions"].items() if k != "source_file"}
    )
    out["source_file"] = sha
    out["_row"] = df["_row"].astype("int64")
    out["updated_at"] = pd.to_datetime(df["updated_at"], utc=True).astype("datetime64[us, UTC]")
    return out


def _merge(store: Store, kind: str, frame: pd.DataFrame, sha: str = SHA_A):
    with store.transaction() as con:
        return merge_rows(con, kind, frame, sha)


# -- typed queries ---------------------------------------------------------------------------


def test_empty_store_queries_match_the_clean_schemas(store: Store) -> None:
    validate(store.sessions(), Sessions)
    validate(store.pain(), Pain)
    validate(store.patients(), Patients)
    validate(store.prescriptions(), Prescriptions)
    assert list(store.rejects().columns) == [
        "file_sha", "kind", "row", "column", "reason", "detail", "raw",
    ]  # fmt: skip
    assert store.imports().empty


def test_queries_round_trip_exact_dtypes_and_filters(store: Store) -> None:
    _merge(store, "patients", _patients())
    frame = _sessions(
        [
            {"t": "2026-03-02 06:00", "note": "=1+1 <b>x</b>", "pain_before": 3},
            {"t": "2026-03-03 06:00", "patient_id": "P2", "side": "left",
             "exercise_id": "sciatic_floss", "hold_s": None},
            {"t": "2026-03-04 23:30", "session_id": "S9"},  # local day 2026-03-05
        ]
    )  # fmt: skip
    res = _merge(store, "sessions", frame)
    assert (res.accepted, res.duplicates, len(res.rejects)) == (3, 0, 0)
    got = store.sessions()
    validate(got, Sessions)
    assert dict(got.dtypes.astype(str)) == CLEAN_DTYPES["sessions"]
    assert got.loc[0, "note"] == "=1+1 <b>x</b>"  # stored exactly as given
    assert list(store.sessions(patient_ids=["P2"])["patient_id"]) == ["P2"]
    days = store.sessions(start="2026-03-03", end="2026-03-05")["day"]
    assert sorted(days.dt.day) == [3, 5]
    assert store.sessions(patient_ids=[]).empty
    rx = store.prescriptions()
    validate(rx, Prescriptions)
    assert set(rx["patient_id"]) == {"P1", "P2"}


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "nope.duckdb", settings=_settings(tmp_path))
    with pytest.raises(StoreError, match="no store at"):
        s.sessions()
    assert not s.path.exists()


# -- files readable by the owner only ----------------------------------------------------------


def test_store_and_archive_are_owner_only(tmp_path: Path) -> None:
    os.umask(0o022)
    s = Store(tmp_path / "c.duckdb", settings=_settings(tmp_path))
    s.initialise()
    assert s.path.stat().st_mode & 0o777 == 0o600
    s.archive.put("c" * 64, b"x", name="f.csv", seq=1, imported_at="")
    assert s.archive.root.stat().st_mode & 0o777 == 0o700
    for f in s.archive.root.iterdir():
        assert f.stat().st_mode & 0o777 == 0o600
    assert os.umask(0o022) == 0o022  # the mask is restored


def test_raw_archive_defaults_beside_a_chosen_store(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert Store(settings=settings).archive.root == settings.raw_archive
    assert Store(tmp_path / "x.duckdb", settings=settings).archive.root == tmp_path / "x.duckdb.raw"


# -- transactions --------------------------------------------------------------------------------


def test_a_failed_transaction_changes_nothing(store: Store) -> None:
    _merge(store, "patients", _patients())
    before = store.patients()
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as con:
        merge_rows(con, "patients", _patients(["P7", "P8"]), SHA_B)
        raise RuntimeError("boom")
    pd.testing.assert_frame_equal(store.patients(), before)


# -- the merge: duplicates and edits --------------------------------------------------------------


def test_identical_rows_are_duplicates(store: Store) -> None:
    _merge(store, "patients", _patients())
    rows = [{"t": "2026-03-02 06:00"}, {"t": "2026-03-03 06:00"}]
    assert _merge(store, "sessions", _sessions(rows)).accepted == 2
    again = _sessions([*rows, {"t": "2026-03-04 06:00"}], sha=SHA_B)
    res = _merge(store, "sessions", again, SHA_B)
    assert (res.accepted, res.duplicates, len(res.rejects)) == (1, 2, 0)
    assert len(store.sessions()) == 3
    # identical repeats inside one file: the first counts, the rest are duplicates
    rep = _sessions([{"t": "2026-03-05 06:00"}] * 3, sha=SHA_B)
    res = _merge(store, "sessions", rep, SHA_B)
    assert (res.accepted, res.duplicates) == (1, 2)


def test_later_updated_at_wins_in_either_order(tmp_path: Path) -> None:
    old = {"session_id": "S1", "reps": 5, "updated_at": "2026-03-02T08:00Z"}
    new = {"session_id": "S1", "reps": 8, "updated_at": "2026-03-03T08:00Z"}
    finals = []
    for first, second in [(old, new), (new, old)]:
        s = Store(tmp_path / f"o{len(finals)}.duckdb", settings=_settings(tmp_path))
        _merge(s, "patients", _patients())
        _merge(s, "sessions", _sessions([first]))
        res = _merge(s, "sessions", _sessions([second], sha=SHA_B), SHA_B)
        if first is old:
            assert (res.accepted, res.replaced) == (1, 1)
        else:
            assert list(res.rejects["reason"]) == ["conflicting_edit"]
            assert "newer version" in res.rejects.loc[0, "detail"]
        finals.append(s.sessions().drop(columns="source_file"))
    pd.testing.assert_frame_equal(finals[0], finals[1])
    assert finals[0].loc[0, "reps"] == 8


def test_an_edit_without_updated_at_keeps_the_stored_version(store: Store) -> None:
    _merge(store, "patients", _patients())
    _merge(store, "sessions", _sessions([{"reps": 5}]))
    res = _merge(store, "sessions", _sessions([{"reps": 6}], sha=SHA_B), SHA_B)
    assert res.accepted == 0 and list(res.rejects["reason"]) == ["conflicting_edit"]
    assert store.sessions().loc[0, "reps"] == 5


def test_session_id_keys_a_record_even_when_its_time_moves(store: Store) -> None:
    _merge(store, "patients", _patients())
    _merge(store, "sessions", _sessions([{"session_id": "S1", "t": "2026-03-02 06:00"}]))
    moved = _sessions(
        [{"session_id": "S1", "t": "2026-03-02 07:00", "updated_at": "2026-03-04T00:00Z"}], SHA_B
    )
    res = _merge(store, "sessions", moved, SHA_B)
    assert (res.accepted, res.replaced) == (1, 1)
    got = store.sessions()
    assert len(got) == 1 and got.loc[0, "performed_at"].hour == 7


def test_same_time_different_record_is_refused_not_doubled(store: Store) -> None:
    _merge(store, "patients", _patients())
    _merge(store, "sessions", _sessions([{"session_id": "S1"}]))
    res = _merge(store, "sessions", _sessions([{"session_id": "S2"}], sha=SHA_B), SHA_B)
    assert list(res.rejects["reason"]) == ["conflicting_edit"]
    validate(store.sessions(), Sessions)  # the time uniqueness of the clean schema holds


def test_same_key_different_content_in_one_file(store: Store) -> None:
    _merge(store, "patients", _patients())
    res = _merge(store, "sessions", _sessions([{"reps": 5}, {"reps": 6}]))
    assert res.accepted == 1
    assert list(res.rejects["reason"]) == ["duplicate_in_file"]
    assert list(res.rejects["row"]) == [3]


def test_a_patients_file_updates_patients(store: Store) -> None:
    _merge(store, "patients", _patients())
    upd = _patients(["P2", "P3"])
    upd["timezone"] = "America/New_York"
    res = _merge(store, "patients", upd, SHA_B)
    assert (res.accepted, res.replaced, res.inserted_ids) == (2, 1, ("P3",))
    got = store.patients().set_index("patient_id")["timezone"]
    assert got.to_dict() == {"P1": "Europe/Amsterdam", "P2": "America/New_York",
                             "P3": "America/New_York"}  # fmt: skip


# -- busy and concurrent readers --------------------------------------------------------------


def _hold_writer(path: Path, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_waits_then_store_busy(store: Store) -> None:
    _merge(store, "patients", _patients())
    size = store.path.stat().st_size
    proc = _hold_writer(store.path, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreBusyError, match="store busy"), store.transaction() as con:
            merge_rows(con, "patients", _patients(["P9"]), SHA_B)
        waited = time.monotonic() - t0
        assert 0.3 <= waited < 5
    finally:
        proc.kill()
        proc.wait()
    assert store.path.stat().st_size == size
    assert list(store.patients()["patient_id"]) == ["P1", "P2"]


def test_writer_gets_through_once_the_holder_lets_go(store: Store) -> None:
    slow = Store(store.path, settings=Settings(data_dir=store.path.parent, store_busy_timeout_s=20))
    proc = _hold_writer(store.path, 1.0)
    try:
        _merge(slow, "patients", _patients())
    finally:
        proc.wait()
    assert len(store.patients()) == 2


def test_raw_copies_written_together_are_whole_or_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``put_many`` (a group's raw copies): new flags like ``put``, manifests for every entry,
    and on a failure part-way nothing new is left behind (no temporary files either)."""
    from backcare_analytics.store.archive import RawArchive, sha256_bytes

    archive = RawArchive(tmp_path / "raw")
    a, b, c = b"a,b\n1,2\n", b"a,b\n3,4\n", b"a,b\n5,6\n"
    sa, sb, sc = (sha256_bytes(x) for x in (a, b, c))
    assert archive.put(sa, a, name="a.csv", seq=1, imported_at="t") is True
    assert archive.put_many([(sa, a, "a.csv", 2, "t"), (sb, b, "b.csv", 3, "t")]) == [False, True]
    assert [(f.name, f.seq) for f in archive.files()] == [("a.csv", 2), ("b.csv", 3)]

    real = os.replace
    calls = []

    def fails_on_the_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fails_on_the_third)
    with pytest.raises(OSError, match="injected"):
        archive.put_many([(sc, c, "c.csv", 4, "t"), (sa, a, "a.csv", 5, "t")])
    monkeypatch.setattr(os, "replace", real)
    assert not archive.has(sc) and archive.has(sa) and archive.has(sb)
    assert not [p for p in archive.root.iterdir() if p.name.endswith(".tmp")]
