"""Normalisation: a raw all-text table in, typed clean rows and explained rejects out.

Two-stage validation (``docs/export-format.md``, issue 3): every cell is parsed here first, on
whole columns, so that each bad cell of each row gets its own reason (one unreadable pain value
never hides the out-of-range value on the next row); the typed frame of the rows that parsed is
then validated lazily with the pandera clean schema, and any remaining failure is mapped to a
reason code. Nothing is dropped: every row ends up in ``clean`` or in ``rejects``.

Pure: no files, no store, no clock unless ``now`` is left out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings, get_settings
from backcare_analytics.io.checks import (
    REJECT_COLUMNS,
    Issues,
    in_file_conflicts,
    pairs_ok,
    rejects_frame,
    share_verdicts,
    split_rejects,
    stage_two,
    stage_two_schema,
)
from backcare_analytics.io.parse import (
    PAIN_UNITS,
    REPS_UNITS,
    local_day,
    localize,
    parse_float,
    parse_integer,
    parse_times,
    parse_vocabulary,
    take_text,
)
from backcare_analytics.io.readers import KNOWN_COLUMNS, RawTable, check_refused
from backcare_analytics.protocol import Protocol, alias_key, load_protocol
from backcare_analytics.schemas import (
    ALLOWED_SIDES,
    PATIENT_ID_PATTERN,
    Pain,
    Patients,
    Sessions,
)

__all__ = ["REJECT_COLUMNS", "Normalized", "normalize", "normalize_many"]

SIDE_WORDS = {
    "both": "both", "b": "both", "bilateral": "both", "left": "left", "l": "left",
    "right": "right", "r": "right", "none": "none",
}  # fmt: skip
FLARE_WORDS = {
    "true": "true", "false": "false", "yes": "true", "no": "false", "y": "true", "n": "false",
    "1": "true", "0": "false",
}  # fmt: skip
_EARLIEST = pd.Timestamp("2000-01-01", tz="UTC")
_MAX_WARNINGS = 20


@dataclass(frozen=True)
class Normalized:
    """The outcome of :func:`normalize` for one table.

    ``clean`` has exactly the columns of the clean schema of ``kind`` (``Sessions``, ``Pain``,
    ``Patients``) plus ``_row`` (int64, the file's row number) and ``updated_at``
    (``datetime64[us, UTC]``, NaT when not given). A record that appears twice in one file with
    identical content is **kept twice in clean** (it is not a reject): the store's dedup counts
    the second as a duplicate. ``rejects`` has one row per refused row and reason
    (``row, column, reason, detail, raw``), the reader's ``row_errors`` included; ``detail``
    never holds a patient's value. Every row number of the table is in ``clean._row`` or in
    ``rejects.row``, never both. ``repeats`` is False only when no two rows of ``clean``
    share a record key or (sessions) a patient, time, exercise and side: the store's merge
    may then skip its in-file passes (:func:`backcare_analytics.store.merge.merge_group`).
    """

    kind: str
    clean: pd.DataFrame
    rejects: pd.DataFrame
    warnings: tuple[str, ...]
    repeats: bool = True
    #: The batch's clean frame and this table's rows in it (``clean`` is
    #: ``batch[0].iloc[batch[1]:batch[2]]``): lets a group of files be written without
    #: concatenating their small frames again.
    batch: tuple[pd.DataFrame, int, int] | None = field(default=None, repr=False, compare=False)


def normalize(
    table: RawTable,
    *,
    source_file: str,
    patients: pd.DataFrame | None,
    protocol: Protocol | None = None,
    settings: Settings | None = None,
    now: pd.Timestamp | None = None,
) -> Normalized:
    """Parse, check and type one raw table.

    Parameters
    ----------
    table
        From :func:`backcare_analytics.io.readers.read_export`.
    source_file
        The file's sha256 (goes into ``source_file`` of every clean row).
    patients
        A clean Patients frame: the registered patients plus those of the same import batch.
        Session and diary rows of other patients are refused ``unknown_patient``; naive times
        are read in the patient's ``timezone``. Not used for ``kind == "patients"`` (may be
        ``None`` there; ``None`` elsewhere means no patient is registered).
    now
        The import time (plausibility: at most one day after it); default the clock.

    Returns
    -------
    Normalized
        ``clean`` (clean schema columns + ``_row`` + ``updated_at``), ``rejects`` (``row,
        column, reason, detail, raw``) and ``warnings`` (e.g. ambiguous local times by row).

    Raises
    ------
    FileRefused
        ``too_many_refused_rows`` when recording the refused rows would take the import over
        ``settings.max_memory_bytes`` (checked before the rejects are built).
    """
    (result,) = normalize_many(
        [table], source_files=[source_file], patients=patients, protocol=protocol,
        settings=settings, now=now,
    )  # fmt: skip
    return result


def normalize_many(
    tables: Sequence[RawTable],
    *,
    source_files: Sequence[str],
    patients: pd.DataFrame | None,
    protocol: Protocol | None = None,
    settings: Settings | None = None,
    now: pd.Timestamp | None = None,
) -> list[Normalized]:
    """:func:`normalize` for many tables at once, with one result per table, in order.

    The same as ``[normalize(t, source_file=f, ...) for t, f in zip(tables, source_files)]``
    (a test checks it), but tables of one kind are parsed and validated together, so a batch
    of small weekly exports pays pandas' and pandera's fixed costs once instead of per file.
    Duplicates are still judged within each file only.
    """
    settings = settings or get_settings()
    protocol = protocol or load_protocol()
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    if len(source_files) != len(tables):
        raise ValueError("normalize_many needs one source_file per table")
    groups: dict[tuple[str, bool], list[int]] = {}
    for i, table in enumerate(tables):
        groups.setdefault((table.kind, table.decimal_comma), []).append(i)
    results: list[Normalized | None] = [None] * len(tables)
    for (kind, decimal_comma), members in groups.items():
        known = list(KNOWN_COLUMNS[kind])
        frames = [tables[i].frame for i in members]
        if len(frames) > 1:  # columns absent from some files come back as NaN
            frames = [f.reindex(columns=known, fill_value="") for f in frames]
            frame = pd.concat(frames, ignore_index=True)
        else:
            frame = frames[0].reindex(columns=known, fill_value="")
        if not (frame.dtypes == "str").all():
            frame = frame.astype("str")
        frame = frame.reset_index(drop=True)
        rows = np.concatenate([np.asarray(tables[i].row_numbers, dtype=np.int64) for i in members])
        file_of = np.repeat(np.arange(len(members)), [len(f) for f in frames])
        shas = np.array([source_files[i] for i in members], dtype=object)
        ctx = _Context(frame, Issues(len(frame)), [], rows, settings, now, file_of)
        clean, repeats = _run(ctx, kind, decimal_comma, shas, patients, protocol)
        _check_refused_rows([tables[i] for i in members], ctx, settings)
        batch = rejects_frame(ctx.issues.frame(), frame, rows, None, settings, file_of)
        rejects = split_rejects(batch, len(members), [tables[i].row_errors for i in members])
        clean_at = np.searchsorted(clean.pop("_file").to_numpy(), np.arange(len(members) + 1))
        warned: dict[int, list[str]] = {}
        for pos, message in ctx.warnings:
            warned.setdefault(int(file_of[pos]), []).append(message)
        for j, i in enumerate(members):
            part = clean.iloc[clean_at[j] : clean_at[j + 1]].reset_index(drop=True)
            warns = tuple(_cap(warned.get(j, [])))
            bounds = (clean, int(clean_at[j]), int(clean_at[j + 1]))
            results[i] = Normalized(kind, part, rejects[j], warns, repeats, bounds)
    return results  # type: ignore[return-value]


def _run(
    ctx: _Context,
    kind: str,
    decimal_comma: bool,
    shas: np.ndarray,
    patients: pd.DataFrame | None,
    protocol: Protocol,
) -> tuple[pd.DataFrame, bool]:
    """Stage one (cell parsers), in-file duplicates and stage two for one concatenated kind;
    returns the clean rows with their file index ``_file``, in table order, and whether
    any identical repeat of a record was kept (the only same-key rows ``clean`` can hold:
    a same-key row with other content is refused ``duplicate_in_file``)."""
    issues = ctx.issues
    if kind == "sessions":
        typed, keys = _sessions(ctx, patients, protocol, decimal_comma)
        model: object = stage_two_schema("sessions", protocol)
        columns = list(Sessions.to_schema().columns)
    elif kind == "pain":
        typed, keys = _pain(ctx, patients)
        model, columns = stage_two_schema("pain", protocol), list(Pain.to_schema().columns)
    else:
        typed, keys = _patients(ctx)
        model, columns = stage_two_schema("patients", protocol), list(Patients.to_schema().columns)
    if len(shas) == 1:
        typed[Sessions.source_file] = str(shas[0])
    else:
        typed[Sessions.source_file] = take_text(shas, ctx.file_of)
    typed["_row"] = ctx.rows
    typed["_file"] = ctx.file_of
    typed = typed[[*columns, "_row", "updated_at", "_file"]]
    # From here on only the rows that parsed, indexed by their position in the batch; a batch
    # without bad cells is never copied.
    parsed = ~issues.bad_rows()
    good = typed if parsed.all() else typed.loc[parsed]
    del typed
    keys = [["_file", *key] for key in keys]  # duplicates are judged within a file
    repeat_of = in_file_conflicts(good, keys, [*columns, "updated_at", "_file"], issues)
    stage_two(good.drop(columns="_file"), model, protocol, issues, repeat_of >= 0)
    share_verdicts(repeat_of, issues)
    keep = ~issues.bad_rows()[good.index.to_numpy()]
    clean = (good if keep.all() else good.loc[keep]).reset_index(drop=True)
    return clean, bool((repeat_of >= 0).any())


def _check_refused_rows(tables: Sequence[RawTable], ctx: _Context, settings: Settings) -> None:
    """Refuse a table whose refused rows would take its import over the memory limit
    (:func:`backcare_analytics.io.readers.check_refused`), before their rejects are built."""
    bad = ctx.issues.bad_rows()
    refused = np.bincount(ctx.file_of[bad], minlength=len(tables))
    for table, count in zip(tables, refused, strict=True):
        check_refused(table, int(count) + len(table.row_errors), settings)


@dataclass
class _Context:
    frame: pd.DataFrame
    issues: Issues
    warnings: list[tuple[int, str]]  # (batch position, message)
    rows: np.ndarray
    settings: Settings
    now: pd.Timestamp
    file_of: np.ndarray


def _cap(warnings: list[str]) -> list[str]:
    if len(warnings) <= _MAX_WARNINGS:
        return warnings
    return [*warnings[:_MAX_WARNINGS], f"... and {len(warnings) - _MAX_WARNINGS} more warnings"]


def _blank(cells: pd.Series) -> np.ndarray:
    return (cells.str.strip() == "").to_numpy(dtype=bool)


def _required(ctx: _Context, column: str) -> np.ndarray:
    blank = _blank(ctx.frame[column])
    ctx.issues.add(blank, column, "missing_value", "a required value is blank")
    return blank


def _patient_ids(ctx: _Context) -> pd.Series:
    """NFC only (no trimming); ids not matching the pattern are ``bad_patient_id``."""
    cells = ctx.frame["patient_id"]
    codes, uniques = pd.factorize(cells, use_na_sentinel=False)
    nfc = pd.Series([unicodedata.normalize("NFC", u) for u in uniques], dtype="str")
    ok_u = nfc.str.fullmatch(PATIENT_ID_PATTERN).to_numpy(dtype=bool, na_value=False)
    blank_u = (nfc == "").to_numpy(dtype=bool)
    ids = take_text(nfc.to_numpy(), codes)
    ctx.issues.add(blank_u.take(codes), "patient_id", "missing_value", "a required value is blank")
    ctx.issues.add(
        ~ok_u.take(codes) & ~blank_u.take(codes),
        "patient_id",
        "bad_patient_id",
        "expected ASCII letters, digits, _ and -, up to 64 characters (no spaces, no slashes, "
        "no full-width or invisible characters)",
    )
    return ids.where(pd.Series(ok_u.take(codes) if len(nfc) else [], dtype=bool))


def _zones(ctx: _Context, ids: pd.Series, patients: pd.DataFrame | None) -> pd.Series:
    """Each row's patient time zone; unregistered patients are ``unknown_patient``."""
    if patients is None:
        patients = pd.DataFrame({"patient_id": [], "timezone": []}, dtype="str")
    lookup = pd.Series(
        patients["timezone"].astype("str").to_numpy(),
        index=patients["patient_id"].astype("str").to_numpy(),
    )
    lookup = lookup[~lookup.index.duplicated(keep="last")]
    codes, uniques = pd.factorize(ids)  # looked up once per distinct patient
    zone_u = lookup.reindex(uniques).to_numpy(dtype=object)
    zones = take_text(zone_u, codes).set_axis(ids.index)
    unknown = ids.notna().to_numpy() & zones.isna().to_numpy()
    ctx.issues.add(
        unknown,
        "patient_id",
        "unknown_patient",
        "this patient is not registered; fix: import a patients file registering them",
    )
    return zones.astype("str") if zones.notna().all() else zones


def _times(
    ctx: _Context, column: str, zones: pd.Series, *, required: bool
) -> tuple[pd.Series, np.ndarray]:
    """UTC times of a column; reasons for blank, unreadable, skipped and implausible times."""
    cells = ctx.frame[column]
    parsed = parse_times(cells, date_order=ctx.settings.date_order)
    if required:
        ctx.issues.add(parsed.blank, column, "missing_value", "a required time is blank")
    ctx.issues.add(parsed.reason != "", column, parsed.reason, parsed.detail)
    local = localize(parsed.naive.where(~pd.Series(parsed.has_offset)), zones)
    ctx.issues.add(
        local.nonexistent,
        column,
        "nonexistent_local_time",
        "this local time does not exist in the patient's time zone (clocks went forward); "
        "fix: correct the time or give it with its UTC offset",
    )
    for pos in np.flatnonzero(local.ambiguous):
        row = ctx.rows[pos]
        ctx.warnings.append(
            (
                int(pos),
                f"row {row}: column {column}: ambiguous local time (DST fall-back), "
                "first occurrence taken",
            )
        )
    utc = parsed.utc.where(pd.Series(parsed.has_offset), local.utc)
    late = ctx.now + pd.Timedelta(days=1)
    implausible = (utc.notna() & ((utc < _EARLIEST) | (utc > late))).to_numpy(dtype=bool)
    ctx.issues.add(
        implausible,
        column,
        "implausible_time",
        "before 2000-01-01 or more than a day in the future; fix: check the date",
    )
    return utc.where(~pd.Series(implausible)), parsed.blank


def _text(cells: pd.Series) -> pd.Series:
    """Free text exactly as given; blank is missing."""
    return cells.where(cells != "")


def _exercises(ctx: _Context, protocol: Protocol) -> pd.Series:
    cells = ctx.frame["exercise"]
    codes, uniques = pd.factorize(cells, use_na_sentinel=False)
    table = dict(zip(*protocol.alias_table().to_dict("list").values(), strict=True))
    ids = np.array([table.get(alias_key(u)) for u in uniques], dtype=object)
    blank_u = np.array([not u.strip() for u in uniques], dtype=bool)
    detail_u = np.array(
        [
            _exercise_hint(protocol, u) if ids[i] is None and not blank_u[i] else ""
            for i, u in enumerate(uniques)
        ],
        dtype=object,
    )
    unknown_u = (ids == None) & ~blank_u  # noqa: E711 - elementwise on an object array
    ctx.issues.add(blank_u.take(codes), "exercise", "missing_value", "a required value is blank")
    ctx.issues.add(unknown_u.take(codes), "exercise", "unknown_exercise", detail_u.take(codes))
    return take_text(ids, codes)


def _exercise_hint(protocol: Protocol, name: str) -> str:
    hint = protocol.suggest_exercise(name)
    known = "not an exercise of the programme"
    return f"{known}; did you mean {hint!r}?" if hint else f"{known}; see docs/export-format.md"


def _sessions(
    ctx: _Context, patients: pd.DataFrame | None, protocol: Protocol, decimal_comma: bool
) -> tuple[pd.DataFrame, list[list[str]]]:
    f, issues = ctx.frame, ctx.issues
    ids = _patient_ids(ctx)
    zones = _zones(ctx, ids, patients)
    performed, _ = _times(ctx, "performed_at", zones, required=True)
    updated, _ = _times(ctx, "updated_at", zones, required=False)
    exercise = _exercises(ctx, protocol)
    known_ex = exercise.notna().to_numpy()
    e_codes, e_uniq = pd.factorize(exercise, use_na_sentinel=False)
    sided = {ex.id: ex.sidedness for ex in protocol.exercises}
    sidedness = np.array([sided.get(e) for e in e_uniq], dtype=object).take(e_codes)
    side_p = parse_vocabulary(f["side"], SIDE_WORDS, what="side")
    issues.add_parsed(side_p, "side")
    default_side = take_text(["both", "none"], (sidedness == "none").astype(np.int64))
    side = side_p.values.where(side_p.values.notna() | side_p.failed, default_side)
    side_pairs = {(ex.id, s) for ex in protocol.exercises for s in ALLOWED_SIDES[ex.sidedness]}
    bad_side = known_ex & side.notna().to_numpy() & ~pairs_ok(exercise, side, side_pairs)
    issues.add(bad_side, "side", "bad_vocabulary", "this side is not possible for this exercise")
    sets = parse_integer(f["sets"], lo=1, hi=20, what="a number of sets")
    reps = parse_integer(f["reps"], lo=0, hi=500, units=REPS_UNITS, what="a number of reps")
    hold = parse_float(f["hold_s"], lo=0, hi=600, decimal_comma=decimal_comma)
    pain_b = parse_integer(f["pain_before"], lo=0, hi=10, units=PAIN_UNITS, what="an NRS score")
    pain_a = parse_integer(f["pain_after"], lo=0, hi=10, units=PAIN_UNITS, what="an NRS score")
    for col, parsed in (("sets", sets), ("reps", reps), ("hold_s", hold),
                        ("pain_before", pain_b), ("pain_after", pain_a)):  # fmt: skip
        issues.add_parsed(parsed, col)
    no_dose = _blank(f["reps"]) & _blank(f["hold_s"])
    issues.add(no_dose, "reps", "no_dose", "neither reps nor hold_s given; fix: give one of them")
    level = parse_vocabulary(f["level"], {lv: lv for lv in protocol.levels}, what="level")
    variant = parse_vocabulary(f["variant"], {v: v for v in protocol.variants}, what="variant")
    issues.add_parsed(level, "level")
    issues.add_parsed(variant, "variant")
    for col, parsed, attr in (("level", level, "ladder"), ("variant", variant, "variants")):
        allowed = {(ex.id, v) for ex in protocol.exercises for v in getattr(ex, attr)}
        given = parsed.values.notna().to_numpy()
        wrong = known_ex & given & ~pairs_ok(exercise, parsed.values, allowed)
        issues.add(wrong, col, "bad_vocabulary", f"this exercise has no {col} of that name")
    session = _text(f["session_id"])
    issues.add(
        (session.str.len() > 128).to_numpy(dtype=bool, na_value=False),
        "session_id", "field_too_long", "session_id is longer than 128 characters",
    )  # fmt: skip
    typed = pd.DataFrame(
        {
            Sessions.patient_id: ids,
            Sessions.session_id: session,
            Sessions.performed_at: performed,
            Sessions.day: local_day(performed, zones),
            Sessions.exercise_id: exercise,
            Sessions.side: side,
            Sessions.sets: sets.values.fillna(1).where(~pd.Series(sets.failed)),
            Sessions.reps: reps.values,
            Sessions.hold_s: hold.values,
            Sessions.level: level.values,
            Sessions.variant: variant.values,
            Sessions.pain_before: pain_b.values,
            Sessions.pain_after: pain_a.values,
            Sessions.note: _text(f["note"]),
            "updated_at": updated,
        }
    )
    base = [Sessions.patient_id, Sessions.exercise_id, Sessions.side]
    keys = [[*base, Sessions.performed_at], [*base, Sessions.session_id]]
    return typed, keys


def _pain(ctx: _Context, patients: pd.DataFrame | None) -> tuple[pd.DataFrame, list[list[str]]]:
    f, issues = ctx.frame, ctx.issues
    ids = _patient_ids(ctx)
    zones = _zones(ctx, ids, patients)
    recorded, _ = _times(ctx, "recorded_at", zones, required=True)
    updated, _ = _times(ctx, "updated_at", zones, required=False)
    _required(ctx, "back_pain")
    back = parse_integer(f["back_pain"], lo=0, hi=10, units=PAIN_UNITS, what="an NRS score")
    leg = parse_integer(f["leg_pain"], lo=0, hi=10, units=PAIN_UNITS, what="an NRS score")
    flare = parse_vocabulary(f["flare"], FLARE_WORDS, what="flare value (true/false)")
    for col, parsed in (("back_pain", back), ("leg_pain", leg), ("flare", flare)):
        issues.add_parsed(parsed, col)
    typed = pd.DataFrame(
        {
            Pain.patient_id: ids,
            Pain.recorded_at: recorded,
            Pain.day: local_day(recorded, zones),
            Pain.back_pain: back.values,
            Pain.leg_pain: leg.values,
            Pain.flare: flare.values.map({"true": True, "false": False}).astype("boolean"),
            Pain.note: _text(f["note"]),
            "updated_at": updated,
        }
    )
    return typed, [[Pain.patient_id, Pain.recorded_at]]


def _valid_zone_names() -> set[str]:
    from zoneinfo import available_timezones

    return {z for z in available_timezones() if "/" in z and not z.startswith("Etc/")} | {"UTC"}


def _patients(ctx: _Context) -> tuple[pd.DataFrame, list[list[str]]]:
    f, issues = ctx.frame, ctx.issues
    ids = _patient_ids(ctx)
    zone_cells = f["timezone"].str.strip()
    blank_zone = _required(ctx, "timezone")
    valid = zone_cells.isin(_valid_zone_names()).to_numpy(dtype=bool)
    issues.add(
        ~valid & ~blank_zone, "timezone", "bad_vocabulary",
        "not an IANA time zone name; expected e.g. Europe/Amsterdam (no abbreviations or offsets)",
    )  # fmt: skip
    zones = zone_cells.where(pd.Series(valid))
    start = parse_times(f["programme_start"], date_order=ctx.settings.date_order)
    issues.add(start.blank, "programme_start", "missing_value", "a required date is blank")
    not_date = ~start.blank & (
        start.has_offset
        | start.naive.isna().to_numpy()
        | (start.naive != start.naive.dt.normalize())
    ).to_numpy(dtype=bool)
    issues.add(not_date, "programme_start", "bad_datetime", "expected a date YYYY-MM-DD")
    day = start.naive.where(pd.Series(~not_date)).astype("datetime64[us]")
    far = ctx.now.tz_localize(None) + pd.Timedelta(days=366)
    implausible = (day.notna() & ((day < _EARLIEST.tz_localize(None)) | (day > far))).to_numpy()
    issues.add(
        implausible, "programme_start", "implausible_time", "before 2000 or over a year ahead"
    )
    updated, _ = _times(ctx, "updated_at", zones, required=False)
    clinician = _text(f["clinician"])
    issues.add(
        (clinician.str.len() > 128).to_numpy(dtype=bool, na_value=False),
        "clinician", "field_too_long", "clinician is longer than 128 characters",
    )  # fmt: skip
    typed = pd.DataFrame(
        {
            Patients.patient_id: ids,
            Patients.timezone: zones.astype("str"),
            Patients.programme_start: day.where(pd.Series(~implausible)),
            Patients.clinician: clinician,
            "updated_at": updated,
        }
    )
    return typed, [[Patients.patient_id]]
