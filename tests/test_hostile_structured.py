"""Hostile structured files (issue 10): FHIR, JSON, JSON Lines and XLSX that once crashed a
whole batch, lost a row or kept a wrong value. Each file is refused with a reason code (or its
bad rows are), the other files of the batch are imported, and nothing read is lost:
``rows_read == accepted + rejected + duplicates`` for every file, in the report and the ledger.

They run through the real readers, normalisation and a real DuckDB store in ``tmp_path``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from backcare_analytics.config import Settings
from backcare_analytics.io.fhir import LOINC, PAIN_CODE
from backcare_analytics.io.importer import import_paths
from backcare_analytics.io.readers import FileRefused, read_export
from backcare_analytics.store import Store

NOW = pd.Timestamp("2026-03-20T12:00:00Z")
PATIENTS_1 = "patient_id,timezone,programme_start\nP001,Europe/Amsterdam,2026-03-01\n"
PATIENTS_2 = "patient_id,timezone,programme_start\nP002,Europe/Amsterdam,2026-03-01\n"
PAIN_CSV = "patient_id,recorded_at,back_pain\nP001,2026-03-02T20:00:00+01:00,4\n"


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "clinic.duckdb", settings=Settings(data_dir=tmp_path / "data"))


def _write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def _balanced(store: Store) -> None:
    led = store.imports()
    assert (led["rows_read"] == led["accepted"] + led["rejected"] + led["duplicates"]).all()


def _refusal(name: str, data: bytes) -> str:
    with pytest.raises(FileRefused) as info:
        read_export(Path(name), data=data)
    return info.value.reason


def pain_obs(**extra: object) -> dict:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": PAIN_CODE}]},
        "subject": {"reference": "Patient/P001"},
        "effectiveDateTime": "2026-03-03T21:00:00+01:00",
        "valueInteger": 5,
    }
    obs.update(extra)
    return obs


def bundle(*resources: dict) -> str:
    entries = [{"resource": r} for r in resources]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


# --- defect 2: two sheets of one kind ---------------------------------------------------------


def two_pain_sheets() -> bytes:
    wb = openpyxl.Workbook()
    first = wb.active
    first.title = "pain"
    first.append(["patient_id", "recorded_at", "back_pain"])
    first.append(["P001", "2026-03-02 20:00", 4])
    second = wb.create_sheet("Pain ")
    second.append(["patient_id", "recorded_at", "back_pain"])
    second.append(["P002", "2026-03-02 20:00", 6])  # not registered yet: quarantined, retried
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_two_sheets_of_one_kind_refuse_the_workbook_and_lose_nothing(tmp_path: Path) -> None:
    """Issue 10, defect 2: the rows of sheets ``pain`` and ``Pain `` shared row numbers, so
    the retry of the second sheet's quarantined row re-read the first sheet's row, counted it
    a duplicate and deleted the quarantined row: it ended in neither table."""
    assert _refusal("d.xlsx", two_pain_sheets()) == "duplicate_sheet"
    store = _store(tmp_path)
    first = import_paths(
        [_write(tmp_path / "a", {"patients.csv": PATIENTS_1, "diary.xlsx": two_pain_sheets()})],
        store,
        now=NOW,
    )
    by = {f.path: f for f in first.files}
    assert (by["diary.xlsx"].status, by["diary.xlsx"].reason) == ("refused", "duplicate_sheet")
    import_paths([_write(tmp_path / "b", {"patients2.csv": PATIENTS_2})], store, now=NOW)
    assert store.pain().empty and store.rejects().empty  # nothing half-imported
    _balanced(store)
    # After one sheet is renamed, both rows arrive (the second once P002 is registered).
    wb = openpyxl.load_workbook(io.BytesIO(two_pain_sheets()))
    wb["Pain "].title = "notes"
    fixed = io.BytesIO()
    wb.save(fixed)
    rep = import_paths([_write(tmp_path / "c", {"diary.xlsx": fixed.getvalue()})], store, now=NOW)
    assert rep.files[0].status == "imported" and rep.files[0].accepted == 1


# --- defect 6: FHIR values of the wrong type --------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "column"),
    [({"note": ["x"]}, "note"), ({"note": [5]}, "note"), ({"note": "x"}, "note"),
     ({"component": True}, ""), ({"component": {"code": 1}}, "")],
)  # fmt: skip
def test_fhir_wrong_types_refuse_the_entry_not_the_batch(
    tmp_path: Path, extra: dict, column: str
) -> None:
    """Issue 10, defect 6: ``"note": ["x"]``, ``"note": [5]`` or ``"component": true`` crashed
    the whole import with a traceback."""
    files = {
        "patients.csv": PATIENTS_1,
        "pain.csv": PAIN_CSV,
        "fhir.json": bundle(pain_obs(**extra), pain_obs(effectiveDateTime="2026-03-04T21:00Z")),
    }
    store = _store(tmp_path)
    rep = import_paths([_write(tmp_path / "in", files)], store, now=NOW)
    by = {f.path: f for f in rep.files}
    assert by["pain.csv"].accepted == 1
    fhir = by["fhir.json"]
    assert (fhir.status, fhir.rows_read, fhir.accepted, fhir.rejected) == ("imported", 2, 1, 1)
    rej = store.rejects()
    assert rej[["kind", "row", "column", "reason"]].values.tolist() == [
        ["pain", 1, column, "bad_record"]
    ]
    assert len(store.pain()) == 2
    _balanced(store)


def test_cli_prints_json_for_a_hostile_fhir_file(tmp_path: Path) -> None:
    """The reproduction of defect 6 as users ran it: rc 1 and a traceback; now rc 2 (a row
    refused) and the JSON report."""
    folder = _write(tmp_path / "in", {"patients.csv": PATIENTS_1, "fhir.json": bundle(
        pain_obs(note=["x"]), pain_obs(component=True))})  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "backcare_analytics.cli", "import", "--json",
         "--store", str(tmp_path / "s.duckdb"), str(folder)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    fhir = next(f for f in report["files"] if f["path"] == "fhir.json")
    counts = (fhir["rows_read"], fhir["rejected"], fhir["reject_reasons"])
    assert counts == (2, 2, {"bad_record": 2})


# --- defect 7: files that cannot be read --------------------------------------------------------


def test_a_file_behind_a_link_to_proc_self_mem_is_refused_unreadable(tmp_path: Path) -> None:
    """Issue 10, defect 7: reading ``/proc/self/mem`` fails (EIO) after ``stat`` said it was a
    small regular file; the traceback stopped the batch."""
    if not Path("/proc/self/mem").exists():
        pytest.skip("no /proc on this system")
    folder = _write(tmp_path / "in", {"patients.csv": PATIENTS_1, "pain.csv": PAIN_CSV})
    (folder / "mem.csv").symlink_to("/proc/self/mem")
    store = _store(tmp_path)
    rep = import_paths([folder], store, now=NOW)
    by = {f.path: f for f in rep.files}
    assert (by["mem.csv"].status, by["mem.csv"].reason) == ("refused", "unreadable")
    assert by["pain.csv"].accepted == 1 and len(store.pain()) == 1
    assert store.imports().set_index("path").loc["mem.csv", "reason"] == "unreadable"


def test_a_file_deleted_after_listing_is_refused_unreadable(tmp_path: Path) -> None:
    """Issue 10, defect 7: a file listed, then deleted before it was read (by another program,
    here in the progress callback after the patients file) stopped the batch."""
    folder = _write(tmp_path / "in", {"patients.csv": PATIENTS_1, "a.csv": PAIN_CSV,
                                      "b.csv": PAIN_CSV.replace("-02T", "-05T")})  # fmt: skip

    def delete_a(done: int, total: int, name: str) -> None:
        (folder / "a.csv").unlink(missing_ok=True)

    store = _store(tmp_path)
    rep = import_paths([folder], store, now=NOW, progress=delete_a, workers=0)
    by = {f.path: f for f in rep.files}
    assert (by["a.csv"].status, by["a.csv"].reason) == ("refused", "unreadable")
    assert by["b.csv"].accepted == 1
    _balanced(store)


# --- defect 10, JSON parts ---------------------------------------------------------------------

PAIN_REC = '"patient_id": "P001", "recorded_at": "2026-03-02T20:00:00+01:00"'


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.json", f'[{{{PAIN_REC}, "back_pain": 3, "back_pain": 9}}]'),
        ("p.json", f'[{{{PAIN_REC}, "back_pain": 3, "Back Pain": 9}}]'),
        ("p.json", f'{{"kind": "pain", "kind": "sessions", "records": [{{{PAIN_REC}}}]}}'),
        ("p.jsonl", f'{{{PAIN_REC}, "back_pain": 3}}\n{{{PAIN_REC}, "back_pain": 3, "BACK_PAIN": 4}}\n'),
        ("p.jsonl", f'{{{PAIN_REC}, "back_pain": 3, "back_pain": 4}}\n'),
        ("f.json", bundle(pain_obs(valueInteger=3) | {"x": 1}).replace('"x": 1', '"valueInteger": 9')),
    ],
)  # fmt: skip
def test_a_key_given_twice_refuses_the_file(name: str, text: str) -> None:
    """Issue 10, defect 10: JSON kept the last of two equal keys silently (and refused a record
    naming ``back_pain`` and ``Back Pain`` as ``unknown_kind``), although a column named twice
    in a CSV header refuses the file."""
    assert _refusal(name, text.encode()) == "duplicate_column"


@pytest.mark.parametrize("kind", ["Pain", " PAIN ", "pain"])
def test_the_envelope_kind_is_matched_as_column_names_are(kind: str) -> None:
    doc = {"kind": kind, "records": [json.loads(f'{{{PAIN_REC}, "back_pain": 3}}')]}
    table = read_export(Path("p.json"), data=json.dumps(doc).encode()).tables[0]
    assert (table.kind, table.frame.loc[0, "back_pain"]) == ("pain", "3")
    doc["kind"] = "back_pain"  # a column, not a kind of file
    assert _refusal("p.json", json.dumps(doc).encode()) == "unknown_kind"


@pytest.mark.parametrize(
    ("name", "escape"),
    [("p.json", "\\u0000"), ("p.jsonl", "\\u0000"), ("f.json", "\\u0000"), ("f.ndjson", "\\u0000"),
     ("p.json", "\\ud800"), ("p.json", "\\udc00\\ud800"), ("p.jsonl", "\\ud83d x")],
)  # fmt: skip
def test_nul_and_lone_surrogates_in_json_refuse_the_file(name: str, escape: str) -> None:
    """Issue 10, defect 10: JSON ``\\u0000`` was stored in notes and session ids (CSV refuses
    NUL); a lone surrogate crashed pyarrow (the whole batch)."""
    if name.startswith("f"):
        obs = pain_obs(note=[{"text": "NOTE"}])
        text = bundle(obs) if name.endswith(".json") else json.dumps(obs) + "\n"
        text = text.replace("NOTE", escape)
    else:
        rec = f'{{{PAIN_REC}, "back_pain": 3, "note": "a{escape}b"}}'
        text = f"[{rec}]" if name.endswith(".json") else rec + "\n"
    assert _refusal(name, text.encode()) == "not_utf_decodable"


def test_escapes_that_are_text_are_kept() -> None:
    r"""``\\u0000`` is a backslash and ``u0000``; a surrogate pair is one character."""
    rec = f'{{{PAIN_REC}, "back_pain": 3, "note": "a\\\\u0000 \\ud83d\\ude00 \\u00e9"}}'
    table = read_export(Path("p.json"), data=f"[{rec}]".encode()).tables[0]
    assert table.frame.loc[0, "note"] == "a\\u0000 \U0001f600 é"


# --- defect 11, JSON Lines part: memory bounded by the file size --------------------------------

_PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from backcare_analytics.io.readers import FileRefused, read_export
    line, size, name = sys.argv[1].encode().decode("unicode_escape").encode(), int(sys.argv[2]), sys.argv[3]
    data = line * (size // len(line))
    if name == "a.json":  # a JSON array of the items
        data = b"[" + data + b"1]"
    elif name == "f.json":  # a FHIR Bundle of them
        data = b'{"resourceType": "Bundle", "entry": [' + data + b"{}]}"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read_export(Path(name), data=data)
        outcome = "read"
    except FileRefused as exc:
        outcome = exc.reason
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(outcome, (after - before) * 1024)
    """
)


@pytest.mark.parametrize(
    ("line", "name"),
    [("x\\n", "a.jsonl"), ('{"resourceType": 1}\\n', "f.ndjson"), ("{},", "a.json"),
     ("{},", "f.json")],
)  # fmt: skip
def test_json_lines_of_tiny_records_stay_within_a_small_multiple_of_the_size(
    line: str, name: str
) -> None:
    """Issue 10, defect 11: 5 MB of non-JSON JSON Lines took 1.6 GB. Here 2 MB of tiny lines
    (or a JSON array of empty objects), read in a fresh process: the peak memory growth stays
    under 10x the file size plus 16 MiB (``x`` lines: 124 MiB before the record bound, 7 MiB
    after; ``{},``: 46 MiB before, 9 MiB after, in a FHIR Bundle 48 MiB before)."""
    size = 2_000_000
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, line, str(size), name],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    outcome, growth = run.stdout.split()
    assert outcome == "too_many_rows"
    assert int(growth) < 10 * size + (16 << 20)


def test_short_real_records_are_not_refused_for_their_number() -> None:
    """The smallest records of the contract are far above the bound's bytes per record."""
    rec = b'{"patient_id":"P1","recorded_at":"2026-03-02","back_pain":1}\n'
    export = read_export(Path("p.jsonl"), data=rec * 40_000)
    assert export.tables[0].rows_read == 40_000


# --- the guarantee: an unexpected error refuses one file, never the batch ------------------------


def test_an_unexpected_reader_error_refuses_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect of a reader (here: one made to raise) refuses its file ``internal_error``; the
    message names the error's type, never its text (which may quote patient data)."""
    from backcare_analytics.io import fhir

    def broken(resource: object) -> None:
        raise TypeError("cannot handle P001's note 'private words'")

    monkeypatch.setattr(fhir, "observation_record", broken)
    with pytest.raises(FileRefused) as info:
        read_export(Path("f.json"), data=bundle(pain_obs()).encode())
    assert info.value.reason == "internal_error"
    assert "TypeError" in str(info.value) and "P001" not in str(info.value)
    assert "private" not in str(info.value)
    files = {"patients.csv": PATIENTS_1, "pain.csv": PAIN_CSV, "fhir.json": bundle(pain_obs())}
    store = _store(tmp_path)
    rep = import_paths([_write(tmp_path / "in", files)], store, now=NOW)
    by = {f.path: f for f in rep.files}
    assert (by["fhir.json"].status, by["fhir.json"].reason) == ("refused", "internal_error")
    assert by["pain.csv"].accepted == 1 and len(store.pain()) == 1


def test_an_unexpected_normalisation_error_refuses_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files staged as a group are normalised together; when that fails for one file's sake,
    they are normalised one by one and only that file is refused."""
    import hashlib

    from backcare_analytics.io import normalize

    files = {"patients.csv": PATIENTS_1, "a.csv": PAIN_CSV,
             "b.csv": PAIN_CSV.replace("-02T", "-03T"), "c.csv": PAIN_CSV.replace("-02T", "-04T")}  # fmt: skip
    bad = hashlib.sha256(files["b.csv"].encode()).hexdigest()
    real = normalize.normalize_many

    def flaky(tables: list, *, source_files: list[str], **kwargs: object) -> list:
        if bad in source_files:
            raise RuntimeError("a defect")
        return real(tables, source_files=source_files, **kwargs)

    monkeypatch.setattr(normalize, "normalize_many", flaky)
    store = _store(tmp_path)
    rep = import_paths([_write(tmp_path / "in", files)], store, now=NOW, workers=0)
    by = {f.path: f for f in rep.files}
    assert (by["b.csv"].status, by["b.csv"].reason) == ("refused", "internal_error")
    assert (by["a.csv"].accepted, by["c.csv"].accepted) == (1, 1)
    assert len(store.pain()) == 2
    _balanced(store)
