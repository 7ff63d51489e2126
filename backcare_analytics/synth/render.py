"""Export rows -> file bytes, in each patient's app format (CSV, JSON, JSON Lines, XLSX).

Cells are built as text for all rows at once (pandas string operations), then joined per file.
Row numbers follow ``docs/export-format.md``: CSV and XLSX count the header as row 1, JSON and
JSON Lines count records from 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backcare_analytics.synth.exports import ExportRows
from backcare_analytics.synth.simulate import Simulation
from backcare_analytics.synth.xlsx import cell_xml, column_letters, xlsx_bytes

__all__ = ["COLUMNS", "render_kind"]

COLUMNS = {
    "sessions": (
        "patient_id", "session_id", "performed_at", "exercise", "side", "sets", "reps", "hold_s",
        "level", "variant", "pain_before", "pain_after", "note", "updated_at",
    ),
    "pain": ("patient_id", "recorded_at", "back_pain", "leg_pain", "flare", "note", "updated_at"),
}  # fmt: skip
NUMERIC = {"sets", "reps", "hold_s", "pain_before", "pain_after", "back_pain", "leg_pain"}
TIME_COLUMNS = {"performed_at", "recorded_at", "updated_at"}
_NUMBER = r"^-?\d+(\.\d+)?$"


def _wall(utc: np.ndarray, zones: np.ndarray) -> np.ndarray:
    wall = np.empty(len(utc), dtype="datetime64[us]")
    for zone in np.unique(zones):
        m = zones == zone
        s = pd.Series(utc[m]).dt.tz_localize("UTC").dt.tz_convert(str(zone))
        wall[m] = s.dt.tz_localize(None).to_numpy()
    return wall


def _format_times(utc: np.ndarray, wall: np.ndarray, style: np.ndarray) -> pd.Series:
    """Text of each time in its style (``cell`` rows get ISO text; the XLSX writer uses dates)."""
    out = np.full(len(utc), "", dtype=object)
    for name in np.unique(style):
        m = style == name
        if name == "utc_z":
            out[m] = np.char.add(np.datetime_as_string(utc[m], unit="s"), "Z")
            continue
        wall_s = np.datetime_as_string(wall[m], unit="s")
        if name == "local_iso":
            out[m] = wall_s
        elif name == "offset":
            off_min = ((wall[m] - utc[m]) // np.timedelta64(1, "m")).astype("int64")
            sign = np.where(off_min < 0, "-", "+")
            hh = np.char.zfill((np.abs(off_min) // 60).astype(str), 2)
            mm = np.char.zfill((np.abs(off_min) % 60).astype(str), 2)
            out[m] = (pd.Series(wall_s) + sign + hh + ":" + mm).to_numpy()
        else:
            minute = pd.Series(wall_s).str.slice(0, 16)
            if name == "dayfirst":
                text = (
                    minute.str.slice(8, 10) + "/" + minute.str.slice(5, 7) + "/"
                    + minute.str.slice(0, 4) + " " + minute.str.slice(11, 16)
                )  # fmt: skip
            else:  # local_space, and cell (text form; the XLSX writer makes a date of it)
                text = minute.str.replace("T", " ")
            out[m] = text.to_numpy()
    return pd.Series(out, dtype="str")


def _num(values: pd.Series) -> pd.Series:
    """Numbers as an app writes them: integers without a decimal point."""
    v = values.astype("Float64")
    as_int = v.round().astype("Int64").astype("str")
    as_float = v.astype("str")
    return as_int.where(v == v.round(), as_float).where(v.notna(), pd.NA).astype("str")


def _cells(sim: Simulation, ex: ExportRows, profile: pd.DataFrame) -> dict[str, pd.Series]:
    rows = ex.rows
    p = rows["pidx"].to_numpy()
    prof = profile.iloc[p].reset_index(drop=True)
    traits = sim.traits
    pid = traits["patient_id"].to_numpy()[p]
    zone = traits["timezone"].to_numpy()[p]
    style = prof["time_style"].to_numpy()
    utc = rows["utc"].to_numpy()
    cells: dict[str, pd.Series] = {"patient_id": pd.Series(pid, dtype="str")}
    time_col = "performed_at" if ex.kind == "sessions" else "recorded_at"
    cells[time_col] = _format_times(utc, rows["wall"].to_numpy(), style)
    start = traits["programme_start"].to_numpy()[p]
    export_at = (
        start + (rows["week"].to_numpy() + 1) * np.timedelta64(7, "D") + np.timedelta64(5, "h")
    )
    upd = np.where(rows["version"].to_numpy() == 1, export_at, utc + np.timedelta64(25, "m"))
    upd = upd.astype("datetime64[us]")
    cells["updated_at"] = _format_times(upd, _wall(upd, zone), style)
    suffix = prof["suffix"].to_numpy()
    if ex.kind == "sessions":
        day = pd.Series(np.datetime_as_string(rows["day"].to_numpy(), unit="D")).str.replace(
            "-", ""
        )
        cells["session_id"] = pd.Series(pid, dtype="str") + "-" + day
        ex_id = rows["exercise_id"].to_numpy()
        naming = prof["naming"].to_numpy()
        names = _exercise_names()
        alias = np.array([a[e] for a, e in zip(prof["alias"], ex_id, strict=True)], dtype=object)
        cells["exercise"] = pd.Series(
            np.where(
                naming == "id", ex_id, np.where(naming == "name", [names[e] for e in ex_id], alias)
            ),
            dtype="str",
        )
        side = rows["side"].astype("str")
        side_style = prof["side_style"].to_numpy()
        letters = side.map({"left": "L", "right": "R", "both": "B", "none": ""})
        cells["side"] = side.where(side_style == "full", letters).where(
            ~((side_style == "blank_default") & side.isin(["none", "both"])), ""
        )
        cells["sets"] = pd.Series(np.full(len(rows), "1"), dtype="str")
        reps = _num(rows["reps"])
        unit = np.where(np.isin(ex_id, ["breathing", "knee_to_chest"]), " breaths", " reps")
        cells["reps"] = reps.where(~suffix, reps + pd.Series(unit))
        hold = _num(rows["hold_s"])
        comma = prof["decimal_comma"].to_numpy() & (prof["fmt"].to_numpy() == "csv")
        # Apps with a decimal comma write one decimal always ("15,0", "12,5").
        one_decimal = pd.Series(np.char.mod("%.1f", rows["hold_s"].to_numpy(dtype=float)))
        hold = hold.where(~comma, one_decimal.str.replace(".", ",")).where(hold.notna(), pd.NA)
        cells["hold_s"] = hold.where(~suffix, hold + " s")
        cells["level"] = rows["level"].astype("str")
        cells["variant"] = rows["variant"].astype("str")
        cells["pain_before"] = _num(rows["pain_before"])
        cells["pain_after"] = _num(rows["pain_after"])
    else:
        cells["back_pain"] = _num(rows["back_pain"])
        cells["leg_pain"] = _num(rows["leg_pain"])
        flare = rows["flare"]
        fs = prof["flare_style"].to_numpy()
        text = np.select(
            [fs == "yesno", fs == "10"],
            [np.where(flare.fillna(False), "yes", "no"), np.where(flare.fillna(False), "1", "0")],
            np.where(flare.fillna(False), "true", "false"),
        )
        cells["flare"] = pd.Series(text, dtype="str").where(flare.notna().to_numpy(), pd.NA)
    cells["note"] = rows["note"].astype("str")
    # Planted bad values overwrite their cell.
    bad_col, bad_val = rows["bad_column"].to_numpy(dtype=object), rows["bad_value"]
    for col in cells:
        m = (bad_col == col) & rows["bad_value"].notna().to_numpy()
        if m.any():
            cells[col] = cells[col].copy()
            cells[col][m] = bad_val[m]
    for col in cells:
        cells[col] = cells[col].reset_index(drop=True).astype("str")
    return cells


def _present(kind: str, prof: pd.DataFrame) -> dict[str, np.ndarray]:
    always = np.ones(len(prof), dtype=bool)
    out = {c: always for c in COLUMNS[kind]}
    if kind == "sessions":
        out["session_id"] = prof["session_id"].to_numpy()
        out["sets"] = prof["sets"].to_numpy()
    out["updated_at"] = prof["updated_at"].to_numpy()
    return out


def _header(col: str, title: bool) -> str:
    return " ".join(w.capitalize() for w in col.split("_")) if title else col


def _split(values: pd.Series, bounds: np.ndarray) -> list[list[str]]:
    lst = values.tolist()
    return [lst[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


Cells = dict[str, pd.Series]
Present = dict[str, np.ndarray]


def _csv_lines(cells: Cells, present: Present, prof: pd.DataFrame, rows, cols) -> list[str]:
    """One CSV line per row (no line end), quoting cells that hold the delimiter or quotes."""
    delim = prof["delim"].to_numpy()
    line = pd.Series(np.full(len(delim), "", dtype=object), dtype="str")
    for k, col in enumerate(cols):
        c = cells[col].fillna("")
        needs = c.str.contains('"|\n|\r', regex=True) | (
            ((delim == ",") & c.str.contains(",", regex=False))
            | ((delim == ";") & c.str.contains(";", regex=False))
            | ((delim == "\t") & c.str.contains("\t", regex=False))
        )
        c = c.where(~needs, '"' + c.str.replace('"', '""') + '"')
        part = c if k == 0 else pd.Series(delim, dtype="str") + c
        line = line + part.where(present[col], "")
    return line.tolist()


def _json_lines(cells: Cells, present: Present, prof: pd.DataFrame, rows, cols) -> list[str]:
    """One JSON object per row; numbers raw unless the app writes them as strings."""
    js = prof["json_strings"].to_numpy()
    obj = pd.Series(np.full(len(js), "{", dtype=object), dtype="str")
    for k, col in enumerate(cols):
        c = cells[col]
        quoted = '"' + c.str.replace("\\", "\\\\").str.replace('"', '\\"') + '"'
        val = quoted.where(c.notna() & (c != ""), "null")
        if col in NUMERIC:
            raw = c.str.fullmatch(_NUMBER).fillna(False).to_numpy() & ~js
            val = val.where(~raw, c)
        if col == "flare":
            tf = c.map({"true": "true", "false": "false", "yes": "true", "no": "false",
                        "1": "true", "0": "false"})  # fmt: skip
            val = val.where(~(c.notna().to_numpy() & ~js), tf)
        sep = "" if k == 0 else ", "
        obj = obj + (sep + f'"{col}": ' + val).where(present[col], "")
    return (obj + "}").tolist()


def _xlsx_rows(cells: Cells, present: Present, prof: pd.DataFrame, rows, cols) -> list[str]:
    """One ``<row>`` element per row: numbers as numbers, times as date cells for apps that
    write real dates, everything else as inline strings."""
    row_no = pd.Series((rows["row_pos"].to_numpy() + 2).astype(str), dtype="str")
    letters = np.array(column_letters(len(cols)))
    position = np.zeros(len(row_no), dtype=int)
    cell_style = prof["time_style"].to_numpy() == "cell"
    xrow = pd.Series(np.full(len(row_no), "", dtype=object), dtype="str")
    for col in cols:
        have = present[col]
        ref = pd.Series(letters[position], dtype="str") + row_no
        c = cells[col]
        c = c.where(c != "", pd.NA)
        number = c.where(c.str.fullmatch(_NUMBER).fillna(False) & (col in NUMERIC), pd.NA)
        when = pd.Series(pd.NaT, index=c.index, dtype="datetime64[us]")
        if col in TIME_COLUMNS:
            parsed = pd.to_datetime(c, format="%Y-%m-%d %H:%M", errors="coerce")
            when = parsed.where(cell_style & parsed.notna().to_numpy())
        xrow = xrow + cell_xml(ref, c, number, when).where(have, "")
        position = position + have
    return ('<row r="' + row_no + '">' + xrow + "</row>").tolist()


def render_kind(
    sim: Simulation, ex: ExportRows, profile: pd.DataFrame, files: pd.DataFrame
) -> list[bytes]:
    """The bytes of every file in ``files`` (rows ``pidx, week, name, fmt``), in that order.

    ``ex.rows`` must be sorted by ``pidx, week, row_pos``; files with no rows are written
    with a header only (or as an empty JSON array / empty JSON Lines file).
    """
    rows = ex.rows
    cells = _cells(sim, ex, profile)
    p = rows["pidx"].to_numpy()
    prof = profile.iloc[p].reset_index(drop=True)
    fmt = prof["fmt"].to_numpy()
    present = {c: v[p] for c, v in _present(ex.kind, profile).items()}
    cols = COLUMNS[ex.kind]
    n = len(rows)
    line_all = np.empty(n, dtype=object)
    fams = (
        (fmt == "csv", _csv_lines),
        (np.isin(fmt, ["json", "json_envelope", "jsonl"]), _json_lines),
        (fmt == "xlsx", _xlsx_rows),
    )
    for mask, make in fams:
        if mask.any():
            sub = {c: cells[c][mask].reset_index(drop=True) for c in cols}
            have = {c: present[c][mask] for c in cols}
            line_all[mask] = make(sub, have, prof[mask].reset_index(drop=True), rows[mask], cols)
    # --- assemble per file ----------------------------------------------------------------------
    key = p.astype("int64") * 1000 + rows["week"].to_numpy()
    fkey = files["pidx"].to_numpy().astype("int64") * 1000 + files["week"].to_numpy()
    starts = np.searchsorted(key, fkey, side="left")
    ends = np.searchsorted(key, fkey, side="right")
    lines = line_all.tolist()
    records = profile.drop(columns=["alias"], errors="ignore").to_dict("records")
    pres = _present(ex.kind, profile)
    have_cols = [[c for c in cols if pres[c][i]] for i in range(len(profile))]
    starts_at = sim.traits["programme_start"].to_numpy()
    out = []
    for a, b, i, week in zip(
        starts, ends, files["pidx"].tolist(), files["week"].tolist(), strict=True
    ):
        pr = records[i]
        fmt_f = pr["fmt"]
        have = have_cols[i]
        if fmt_f == "csv":
            nl = "\r\n" if pr["crlf"] else "\n"
            head = pr["delim"].join(_header(c, pr["title_header"]) for c in have)
            text = nl.join([head, *lines[a:b]]) + nl
            data = ("\ufeff" if pr["bom"] else "") + text
            out.append(data.encode("utf-8"))
        elif fmt_f == "jsonl":
            out.append("".join(x + "\n" for x in lines[a:b]).encode("utf-8"))
        elif fmt_f in ("json", "json_envelope"):
            body = ",\n".join(lines[a:b])
            body = f"[\n{body}\n]" if b > a else "[]"
            if fmt_f == "json_envelope":
                exported = np.datetime_as_string(
                    starts_at[i] + (week + 1) * np.timedelta64(7, "D") + np.timedelta64(5, "h"),
                    unit="s",
                )
                body = (
                    f'{{"format_version": "1.0", "kind": "{ex.kind}", '
                    f'"exported_at": "{exported}Z", "records": {body}}}'
                )
            out.append((body + "\n").encode("utf-8"))
        else:
            letters = column_letters(len(have))
            head = "".join(
                f'<c r="{ltr}1" t="inlineStr"><is><t>{_header(c, pr["title_header"])}</t></is></c>'
                for ltr, c in zip(letters, have, strict=True)
            )
            body = "".join(lines[a:b])
            out.append(xlsx_bytes(f'<row r="1">{head}</row>' + body, ex.kind))
    return out


def _exercise_names() -> dict[str, str]:
    """Display name of each exercise of the programme (as apps show them)."""
    from backcare_analytics.protocol import load_protocol
    from backcare_analytics.synth.simulate import EXERCISES

    proto = load_protocol()
    return {e: proto.by_id[e].name for e in EXERCISES}
