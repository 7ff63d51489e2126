"""Readers: every format of the export contract, every cell kept as text, every hostile file
refused with a reason (never a traceback), row numbers as a person sees them."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backcare_analytics.config import Settings
from backcare_analytics.io.readers import FileRefused, RawExport, read_export

HEADER = "patient_id,performed_at,exercise,reps,note"
FIXTURES = Path(__file__).parent / "fixtures"


def read(name: str, data: bytes, settings: Settings | None = None) -> RawExport:
    return read_export(Path(name), settings, data=data)


def refused(name: str, data: bytes, settings: Settings | None = None) -> str:
    with pytest.raises(FileRefused) as info:
        read(name, data, settings)
    assert "Traceback" not in str(info.value)
    return info.value.reason


# --- CSV: encodings and delimiters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("cp1252", b"")],
)
def test_csv_encodings_are_detected(encoding: str, bom: bytes) -> None:
    text = f"{HEADER}\nP001,2026-03-02 07:15,Brücke,10,café «ok»\n"
    export = read("s.csv", bom + text.encode(encoding))
    table = export.tables[0]
    assert table.kind == "sessions"
    assert list(table.frame.columns) == ["patient_id", "performed_at", "exercise", "reps", "note"]
    assert table.frame.loc[0, "exercise"] == "Brücke"
    assert table.frame.loc[0, "note"] == "café «ok»"


@pytest.mark.parametrize(("delim", "decimal_comma"), [(",", False), (";", True), ("\t", True)])
def test_delimiters_are_sniffed_from_the_header(delim: str, decimal_comma: bool) -> None:
    hold = '"12,5"' if delim == "," else "12,5"
    lines = ["patient_id", "performed_at", "exercise", "hold_s"]
    data = delim.join(lines) + "\n" + delim.join(["P001", "2026-03-02", "bridge", hold]) + "\n"
    table = read("s.csv", data.encode()).tables[0]
    assert table.frame.loc[0, "hold_s"] == "12,5"
    assert table.decimal_comma is decimal_comma


def test_cells_stay_text_exactly() -> None:
    data = f"{HEADER}\n00123,NA,None,N/A,null\n".encode()
    row = read("s.csv", data).tables[0].frame.iloc[0].tolist()
    assert row == ["00123", "NA", "None", "N/A", "null"]
    assert all(isinstance(v, str) for v in row)


def test_header_names_are_normalised() -> None:
    data = b"Patient ID,PERFORMED-AT, Exercise ,Pain Before\nP1,x,y,3\n"
    table = read("s.csv", data).tables[0]
    assert list(table.frame.columns) == ["patient_id", "performed_at", "exercise", "pain_before"]


def test_duplicate_header_refuses_the_file() -> None:
    assert refused("s.csv", b"patient_id,performed_at,exercise,reps,Reps\n1,2,3,4,5\n") == (
        "duplicate_column"
    )


def test_missing_and_unknown_columns() -> None:
    assert refused("s.csv", b"patient_id,exercise,reps\nP1,b,1\n") == "missing_column"
    assert refused("s.csv", b"a,b,c\n1,2,3\n") == "unknown_kind"
    table = read("s.csv", b"patient_id,performed_at,exercise,colour\nP1,x,y,red\n").tables[0]
    assert "colour" not in table.frame.columns
    assert table.warnings == ("ignored unknown column 'colour'",)


def test_blank_lines_are_skipped_and_counted() -> None:
    data = f"\n{HEADER}\n\nP1,t,b,1,\n\r\n\nP2,t,b,2,\n".encode()
    export = read("s.csv", data)
    assert export.blank_rows == 4
    assert export.tables[0].row_numbers.tolist() == [4, 7]


def test_quoted_line_breaks_keep_row_numbers() -> None:
    data = f'{HEADER}\nP1,t,b,1,"line one\nline two\nline three"\nP2,t,b,2,plain\n\nP3,t,b,3,""\n'
    table = read("s.csv", data.encode()).tables[0]
    assert table.row_numbers.tolist() == [2, 5, 7]
    assert table.frame.loc[0, "note"] == "line one\nline two\nline three"
    assert table.frame.loc[1, "note"] == "plain"


def test_fast_and_slow_csv_paths_agree() -> None:
    body = "".join(f'P{i},2026-03-02 07:{i:02d},bridge,{i},"a, b"\n' for i in range(40))
    fast = read("s.csv", f"{HEADER}\n{body}".encode()).tables[0]
    slow = read("s.csv", f'{HEADER}\n{body}P9,t,b,1,"x\ny"\n'.encode()).tables[0]
    assert fast.frame.equals(slow.frame.iloc[:40])
    assert fast.row_numbers.tolist() == slow.row_numbers[:40].tolist()


def test_ragged_and_truncated_rows_are_row_errors() -> None:
    data = f'{HEADER}\nP1,t,b,1,ok\nP2,t,b\nP3,t,b,1,x,extra\nP4,t,b,1,"cut off'.encode()
    table = read("s.csv", data).tables[0]
    assert table.row_numbers.tolist() == [2]
    errors = table.row_errors
    assert errors["row"].tolist() == [3, 4, 5]
    assert set(errors["reason"]) == {"bad_record"}
    assert "truncated" in errors["detail"].iloc[-1]
    assert table.rows_read == 4


def test_huge_field_never_crashes_the_csv_module() -> None:
    huge = "x" * 200_000  # past csv's default 131,072-character limit
    data = f'{HEADER}\nP1,t,b,1,"{huge}\n"\nP2,t,b,2,fine\n'.encode()
    table = read("s.csv", data).tables[0]
    assert table.row_numbers.tolist() == [4]
    err = table.row_errors.iloc[0]
    assert (err["row"], err["column"], err["reason"]) == (2, "note", "field_too_long")
    assert len(err["raw"]) <= 4000


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf", b"\r\n"])
def test_empty_and_blank_files_are_refused(data: bytes) -> None:
    assert refused("s.csv", data) == "empty_file"


def test_header_only_is_refused_as_empty() -> None:
    """Issue 10, defect 10: a header without rows is an empty export (as ``[]`` in JSON)."""
    assert refused("s.csv", f"{HEADER}\n".encode()) == "empty_file"
    assert refused("s.csv", f"{HEADER}\n\n,,,,\n , \n".encode()) == "empty_file"


def test_binary_and_unknown_formats() -> None:
    assert refused("s.csv", b"patient_id\x00,x\n") == "not_utf_decodable"
    assert refused("s.xls", b"whatever") == "unsupported_format"
    assert refused("s.csv.gz", b"whatever") == "unsupported_format"


def test_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as fh:  # sparse: 60 MiB on paper, nothing on disk
        fh.truncate(60 * 1024 * 1024)
    start = time.perf_counter()
    with pytest.raises(FileRefused) as info:
        read_export(big, Settings())
    assert info.value.reason == "too_large"
    assert time.perf_counter() - start < 0.5
    small = replace(Settings(), max_file_bytes=10)
    assert refused("s.csv", f"{HEADER}\n".encode(), small) == "too_large"


def test_hash_and_size() -> None:
    data = f"{HEADER}\nP1,t,b,1,\n".encode()
    export = read("s.csv", data)
    assert export.size_bytes == len(data)
    assert len(export.sha256) == 64
    assert export.source_format == "csv"


# --- JSON and JSON Lines --------------------------------------------------------------------


def test_json_array_numbers_and_booleans_become_text() -> None:
    data = (
        b'[{"patient_id": "P1", "recorded_at": "t", "back_pain": 7, "leg_pain": 2.50,'
        b' "flare": true, "note": null}, {"patient_id": "P2", "recorded_at": "t",'
        b' "back_pain": NaN, "leg_pain": 1e999, "flare": false, "note": "' + b"9" * 3000 + b'"},'
        b' {"patient_id": "P3", "recorded_at": "t", "back_pain": ' + b"1" * 5000 + b"}]"
    )
    wide = replace(Settings(), max_field_chars=6000)  # let 5,000 digits through to the parser
    table = read("p.json", data, wide).tables[0]
    assert table.kind == "pain"
    f = table.frame
    assert f.loc[0, "back_pain"] == "7" and f.loc[0, "leg_pain"] == "2.50"
    assert f.loc[0, "flare"] == "true" and f.loc[0, "note"] == ""
    assert f.loc[1, "back_pain"] == "NaN" and f.loc[1, "leg_pain"] == "1e999"
    assert f.loc[2, "back_pain"] == "1" * 5000 and f.loc[2, "note"] == ""
    assert table.row_numbers.tolist() == [1, 2, 3]


def test_json_envelope_kind_and_version() -> None:
    env = {"format_version": "1.0", "kind": "sessions", "records": []}
    assert read("s.json", json.dumps(env).encode()).tables[0].kind == "sessions"
    env["format_version"] = "2.0"
    assert refused("s.json", json.dumps(env).encode()) == "unsupported_version"
    env = {"format_version": "1.0", "kind": "diary", "records": []}
    assert refused("s.json", json.dumps(env).encode()) == "unknown_kind"


def test_json_bad_records_are_row_errors() -> None:
    records = [
        {"patient_id": "P1", "recorded_at": "t", "back_pain": 3},
        "not an object",
        {"patient_id": "P2", "recorded_at": "t", "back_pain": {"value": 3}},
        {"patient_id": "P3", "recorded_at": "t", "back_pain": [3]},
    ]
    table = read("p.json", json.dumps(records).encode()).tables[0]
    assert table.row_numbers.tolist() == [1]
    errs = table.row_errors
    assert errs["row"].tolist() == [2, 3, 4]
    assert errs["reason"].tolist() == ["bad_record"] * 3
    assert errs["column"].tolist() == ["", "back_pain", "back_pain"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'"just a string"', "bad_json_shape"),
        (b'{"rows": []}', "bad_json_shape"),
        (b"42", "bad_json_shape"),
        (b"[]", "empty_file"),
        (b'[{"patient_id": "P1", "recorded_at": "t", "back_pain": 3}', "truncated"),
        (b'[{"patient_id": "P1",, "x": 1}]', "invalid_json"),
        (b"\xff\xfe[]", "not_utf_decodable"),
    ],
)
def test_wrong_json_shapes_are_refused(data: bytes, reason: str) -> None:
    assert refused("p.json", data) == reason


def test_too_deep_json_is_refused_without_recursion_error() -> None:
    for depth in (40, 200_000):
        data = b"[" * depth + b"]" * depth
        assert refused("p.json", data) == "json_too_deep"
    # brackets inside strings do not count
    ok = json.dumps([{"patient_id": "P1", "recorded_at": "t", "back_pain": "[" * 100}])
    assert read("p.json", ok.encode()).tables[0].frame.loc[0, "back_pain"] == "[" * 100


def test_jsonl_bad_lines_and_blank_lines() -> None:
    lines = [
        b'{"patient_id": "P1", "recorded_at": "t", "back_pain": 3}',
        b"",
        b"{not json",
        b'{"patient_id": "P2", "recorded_at": "t", "back_pain": 4}',
        b"[" * 100 + b"]" * 100,
        b"   ",
        b'["an", "array"]',
    ]
    export = read("p.jsonl", b"\n".join(lines) + b"\n")
    table = export.tables[0]
    assert export.blank_rows == 2
    assert table.row_numbers.tolist() == [1, 4]
    assert table.row_errors["row"].tolist() == [3, 5, 7]
    assert table.rows_read == 5


# --- XLSX -----------------------------------------------------------------------------------


def xlsx_bytes(rows: list[list[object]], title: str = "Sheet1") -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_xlsx_dates_serials_numbers_and_formulas() -> None:
    data = xlsx_bytes(
        [
            ["Patient ID", "performed_at", "exercise", "reps", "hold_s", "note"],
            ["P001", datetime(2026, 3, 2, 7, 15), "bridge", 5, 15.0, "fine"],
            ["P001", 46083.3125, "bridge", 5.0, 12.5, None],  # serial 2026-03-02 07:30
            ["P001", "2026-03-02 07:45", "bridge", "=2+3", None, None],
            [None, None, None, None, None, None],
            ["00123", "2026-03-02 08:00", "bridge", 5, None, "'=SUM(A1)"],
        ]
    )
    export = read("s.xlsx", data)
    table = export.tables[0]
    assert export.source_format == "xlsx" and export.blank_rows == 1
    f = table.frame
    assert f["performed_at"].tolist()[:2] == ["2026-03-02 07:15:00", "2026-03-02 07:30:00"]
    assert f["reps"].tolist() == ["5", "5", "5"]
    assert f["hold_s"].tolist() == ["15", "12.5", ""]
    assert f.loc[2, "patient_id"] == "00123"
    assert table.row_numbers.tolist() == [2, 3, 6]
    err = table.row_errors.iloc[0]
    assert (err["row"], err["column"], err["reason"]) == (4, "reps", "formula_cell")


def test_xlsx_named_sheets_give_one_table_each() -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "readme"
    wb.active.append(["nothing to see"])
    pain = wb.create_sheet("Pain")
    pain.append(["patient_id", "recorded_at", "back_pain"])
    pain.append(["P001", "2026-03-02 07:15", 4])
    buf = io.BytesIO()
    wb.save(buf)
    export = read("d.xlsx", buf.getvalue())
    assert [t.kind for t in export.tables] == ["pain"]


def test_xlsx_zip_bomb_is_refused_quickly() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/worksheets/sheet1.xml", b"\0" * (8 * 1024 * 1024))
    start = time.perf_counter()
    assert refused("bomb.xlsx", buf.getvalue()) == "xlsx_zip_bomb"
    assert time.perf_counter() - start < 1.0
    tight = replace(Settings(), max_xlsx_uncompressed_bytes=1024)
    assert refused("s.xlsx", xlsx_bytes([["patient_id"]]), tight) == "xlsx_zip_bomb"


def test_xlsx_xml_entities_are_refused() -> None:
    good = xlsx_bytes([["patient_id", "performed_at", "exercise"], ["P1", "t", "&lol;"]])
    src = zipfile.ZipFile(io.BytesIO(good))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                doctype = b'<!DOCTYPE x [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
                head, sep, rest = body.partition(b"?>")
                body = head + sep + doctype + rest if sep else doctype + body
            out.writestr(info, body)
    assert refused("e.xlsx", buf.getvalue()) == "xml_entities"


def test_damaged_xlsx_is_refused() -> None:
    good = xlsx_bytes([["patient_id", "performed_at", "exercise"]])
    assert refused("t.xlsx", good[: len(good) // 2]) == "bad_xlsx"
    assert refused("t.xlsx", b"not a zip at all") == "bad_xlsx"


def test_fixture_files_are_read() -> None:
    for path in sorted(FIXTURES.glob("*.*")):
        export = read_export(path)
        assert export.tables, path.name
        for table in export.tables:
            assert table.rows_read == len(table.frame) + len(table.row_errors)
            assert np.all(np.diff(table.row_numbers) > 0)


def test_columns_without_a_header_are_ignored_with_a_warning() -> None:
    table = read("s.csv", b"patient_id,performed_at,exercise,,\nP1,t,b,x,\n").tables[0]
    assert list(table.frame.columns) == ["patient_id", "performed_at", "exercise"]
    assert table.warnings == ("ignored a column without a header",)
    data = xlsx_bytes(
        [["patient_id", "performed_at", "exercise", None, None, None],
         ["P1", "t", "b", None, "scribble", None], ["P2", "t", "b", None, None, "more"]]
    )  # fmt: skip
    table = read("s.xlsx", data).tables[0]
    assert table.rows_read == 2 and table.row_errors.empty
    assert table.warnings == ("ignored cells in columns without a header on 2 row(s)",)


# --- property: what csv.writer writes, the reader reads back, row numbers included -----------

_CELL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(_CELL, _CELL), min_size=1, max_size=15),
    st.sampled_from([",", ";", "\t"]),
    st.lists(st.booleans(), min_size=15, max_size=15),
)
def test_csv_round_trip_and_row_numbers(
    cells: list[tuple[str, str]], delim: str, blank_after: list[bool]
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delim, lineterminator="\n")
    writer.writerow(["patient_id", "performed_at", "exercise", "note"])
    expected_rows, line = [], 2
    for i, (exercise, note) in enumerate(cells):
        writer.writerow([f"P{i}", "t", exercise or "x", note])
        expected_rows.append(line)
        line += 1 + note.count("\n") + (exercise or "x").count("\n")
        if blank_after[i]:
            out.write("\n")
            line += 1
    table = read("s.csv", out.getvalue().encode()).tables[0]
    assert table.row_errors.empty
    assert table.row_numbers.tolist() == expected_rows
    assert table.frame["note"].tolist() == [n for _, n in cells]
    assert table.frame["exercise"].tolist() == [e or "x" for e, _ in cells]


def test_old_mac_line_ends_and_bare_carriage_returns() -> None:
    table = read("s.csv", b"patient_id,performed_at,exercise\rP1,t,b\r\rP2,t,b\r").tables[0]
    assert table.frame["patient_id"].tolist() == ["P1", "P2"]
    assert table.row_numbers.tolist() == [2, 4]
    data = b'patient_id,performed_at,exercise,note\nP1,t,b,"a\rb"\nP2,t,b,"c\r\nd"\nP3,t,b,x\n'
    table = read("s.csv", data).tables[0]
    assert table.frame["note"].tolist() == ["a\rb", "c\r\nd", "x"]
    assert table.row_numbers.tolist() == [2, 3, 5]


_PREFIXES = [
    b"",
    b"patient_id,performed_at,exercise,reps\n",
    b"patient_id;recorded_at;back_pain\n",
    b'[{"patient_id": "P1", "recorded_at": "t", "back_pain": ',
    b'{"resourceType": "Bundle", "entry": [',
    b"PK\x03\x04",
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(_PREFIXES),
    st.binary(max_size=200),
    st.sampled_from(["x.csv", "x.json", "x.jsonl", "x.ndjson", "x.xlsx", "x.tsv"]),
)
def test_any_bytes_are_read_or_refused_never_crash(prefix: bytes, tail: bytes, name: str) -> None:
    from backcare_analytics.io.normalize import normalize

    try:
        export = read(name, prefix + tail)
    except FileRefused as exc:
        assert exc.reason and str(exc)
        return
    for table in export.tables:
        result = normalize(table, source_file="0" * 64, patients=None)
        rows = set(table.row_numbers.tolist()) | set(table.row_errors["row"].tolist())
        assert set(result.clean["_row"]) | set(result.rejects["row"]) == rows


_GOOD_XLSX = xlsx_bytes(
    [["patient_id", "performed_at", "exercise", "reps"]]
    + [[f"P{i}", "2026-03-02 07:15", "bridge", i] for i in range(20)]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_GOOD_XLSX) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    st.integers(100, len(_GOOD_XLSX)),
)
def test_damaged_workbooks_are_refused_never_crash(flips: list, keep: int) -> None:
    data = bytearray(_GOOD_XLSX)
    for pos, value in flips:
        data[pos] = value
    try:
        export = read("x.xlsx", bytes(data[:keep]))
    except FileRefused as exc:
        assert exc.reason in {"bad_xlsx", "xlsx_zip_bomb", "xml_entities", "empty_file",
                              "missing_column", "unknown_kind", "duplicate_column"}  # fmt: skip
        return
    assert all(t.rows_read <= 20 for t in export.tables)


_JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:', max_size=6)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        _JSON_LEAF,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3), inner, max_size=3)
        ),
        max_leaves=12,
    ),
    st.booleans(),
)
def test_json_depth_ignores_brackets_in_strings(doc: object, ascii_only: bool) -> None:
    from backcare_analytics.io.readers import json_depth

    def depth(value: object) -> int:
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    assert json_depth(json.dumps(doc, ensure_ascii=ascii_only).encode()) == depth(doc)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.recursive(
        _JSON_LEAF,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3), inner, max_size=3)
        ),
        max_leaves=12,
    ),
    st.integers(1, 9),
)
def test_json_shape_counts_objects_the_same_in_any_chunks(doc: object, chunk: int) -> None:
    """The bracket scan runs in chunks carrying depth and in-string parity: any chunk size
    gives the depth and the number of objects of the decoded document."""
    from backcare_analytics.io.readers import json_depth, json_shape

    def objects(value: object) -> int:
        inner = (
            value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        )
        return isinstance(value, dict) + sum(map(objects, inner))

    data = json.dumps(doc).encode()
    whole = json_shape(data)
    assert json_shape(data, chunk) == whole
    assert whole == (json_depth(data), objects(doc))


def test_json_records_with_mixed_keys_and_types() -> None:
    records = [
        {"Patient ID": "P1", "recorded_at": "t", "back_pain": 3, "flare": True},
        {"patient_id": "P2", "recorded_at": "t", "back_pain": 4},  # another spelling
        {"patient_id": "P3", "recorded_at": "t", "back_pain": None, "flare": False},
    ]
    table = read("p.json", json.dumps(records).encode()).tables[0]
    assert table.frame["patient_id"].tolist() == ["P1", "P2", "P3"]
    assert table.frame["flare"].tolist() == ["true", "", "false"]
    assert table.frame["back_pain"].tolist() == ["3", "4", ""]


def test_bom_with_broken_utf8_refuses_only_the_broken_rows() -> None:
    """A file marked UTF-8 is UTF-8: a row holding an invalid byte is refused, not the file
    (the same rule as for UTF-8 without a mark, issue 10 defect 9); a broken header is."""
    data = b"\xef\xbb\xbfpatient_id,performed_at,exercise\nP1,\xae,b\nP2,t,b\n"
    table = read("s.csv", data).tables[0]
    assert table.row_numbers.tolist() == [3]
    err = table.row_errors.iloc[0]
    assert (err["row"], err["column"], err["reason"]) == (2, "performed_at", "bad_encoding")
    assert refused("s.csv", b"\xef\xbb\xbfpatient_id,\xae\nP1,b\n") == "not_utf_decodable"


_SAMPLES = sorted(p for p in FIXTURES.glob("*.*")) + [None]


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(_SAMPLES),
    st.lists(
        st.tuples(st.floats(0, 1), st.sampled_from([b'"', b"\n", b",", b"{", b"\xff", b"\r", b""])),
        min_size=1,
        max_size=4,
    ),
    st.floats(0.05, 1),
)
def test_mutated_exports_are_read_or_refused(sample: Path | None, edits: list, keep: float) -> None:
    from backcare_analytics.io.normalize import normalize

    data = bytearray(sample.read_bytes() if sample else _GOOD_XLSX)
    for where, insert in edits:
        pos = int(where * (len(data) - 1))
        data[pos : pos + 1] = insert
    name = sample.name if sample else "x.xlsx"
    try:
        export = read(name, bytes(data[: max(1, int(keep * len(data)))]))
    except FileRefused:
        return
    for table in export.tables:
        result = normalize(table, source_file="0" * 64, patients=None)
        rows = set(table.row_numbers.tolist()) | set(table.row_errors["row"].tolist())
        assert set(result.clean["_row"]) | set(result.rejects["row"]) == rows
