"""FHIR R4 exports: a ``Bundle`` (JSON) or bulk NDJSON of ``Observation`` resources.

Two kinds of Observation are read (``docs/export-format.md``, "FHIR R4"):

- **pain**: ``code`` LOINC ``72514-3`` (pain severity 0-10), ``valueInteger`` or
  ``valueQuantity.value`` → pain diary ``back_pain``; optional components of the
  backcare component system ``leg_pain`` (integer) and ``flare`` (boolean);
- **exercise sessions**: ``code`` from :data:`EXERCISE_SYSTEM` (code = exercise id or accepted
  name), components ``reps``, ``hold_s``, ``sets``, ``side``, ``level``, ``variant``,
  ``pain_before``, ``pain_after`` from :data:`COMPONENT_SYSTEM`; ``encounter`` ``Encounter/<id>``
  → ``session_id``.

``subject.reference`` ``Patient/<id>`` → ``patient_id``; ``effectiveDateTime`` (or
``effectivePeriod.start``, ``effectiveInstant``) → the time; ``note[0].text`` → ``note``;
``meta.lastUpdated`` → ``updated_at``. Row numbers are 1-based entry positions (Bundle) or line
numbers (NDJSON). Observations of any other code, or that are not objects, are refused per row
(``bad_record``); resources that are not Observations are skipped with a warning.

>>> obs = {"resourceType": "Observation", "status": "final",
...        "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
...        "subject": {"reference": "Patient/P001"},
...        "effectiveDateTime": "2026-03-02T07:15:00+01:00", "valueInteger": 4}
>>> kind, rec, problem = observation_record(obs)
>>> kind, rec["patient_id"], rec["back_pain"], problem
('pain', 'P001', '4', None)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.config import Settings
from backcare_analytics.io.json_reader import jsonl_records
from backcare_analytics.io.readers import (
    KNOWN_COLUMNS,
    FileRefused,
    RawTable,
    build_table,
    check_json_text,
    check_record_count,
    decode_utf8,
    json_shape,
    loads_json,
    raw_json,
)

__all__ = [
    "COMPONENT_SYSTEM",
    "EXERCISE_SYSTEM",
    "LOINC",
    "PAIN_CODE",
    "looks_like_fhir",
    "observation_record",
    "read_fhir",
]

LOINC = "http://loinc.org"
PAIN_CODE = "72514-3"
EXERCISE_SYSTEM = "https://backcare-analytics.invalid/fhir/CodeSystem/exercise"
COMPONENT_SYSTEM = "https://backcare-analytics.invalid/fhir/CodeSystem/component"
SESSION_COMPONENTS = (
    "reps", "hold_s", "sets", "side", "level", "variant", "pain_before", "pain_after",
)  # fmt: skip
PAIN_COMPONENTS = ("leg_pain", "flare")
#: UCUM time units kept with a Quantity's value so that seconds and minutes are not confused.
TIME_UNITS = ("s", "min")
#: Fewer bytes than a FHIR Bundle's JSON objects take on average (compact JSON of the
#: documented example: 49), for the count of objects checked before a Bundle is decoded.
OBJECT_BYTES = 16
#: Statuses of an Observation that is void: refused, never read as a measurement.
VOID_STATUSES = ("entered-in-error", "cancelled")


def looks_like_fhir(data: bytes, fmt: str) -> bool:
    """A JSON object with ``resourceType`` (Bundle), or NDJSON whose first record has one."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:4096]
    if fmt == "json":
        return head.startswith(b"{") and b'"resourceType"' in head
    first = head.split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"resourceType"' in first


def _text(value: Any) -> str | None:
    """A FHIR primitive as text (numbers arrive as their literal text); None for objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def _value(holder: dict[str, Any]) -> str | None:
    """The ``value[x]`` of an Observation or component as text."""
    for key in ("valueInteger", "valueString", "valueBoolean", "valueDecimal", "valueDateTime"):
        if key in holder:
            return _text(holder[key])
    if isinstance(q := holder.get("valueQuantity"), dict):
        value = _text(q.get("value"))
        unit = q.get("code", q.get("unit"))
        if value and unit in TIME_UNITS:  # "15 s", "1 min": the hold_s parser reads both
            return f"{value} {unit}"
        return value
    if isinstance(cc := holder.get("valueCodeableConcept"), dict):
        coding = cc.get("coding")
        if isinstance(coding, list) and coding and isinstance(coding[0], dict):
            return _text(coding[0].get("code"))
        return _text(cc.get("text"))
    return ""


def _codes(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [
        (str(c.get("system", "")), str(c.get("code", "")))
        for c in concept["coding"]
        if isinstance(c, dict)
    ]


def _reference_id(ref: Any, resource: str) -> str:
    """``Patient/P001`` (or a full URL ending so) → ``P001``; anything else verbatim, so the
    id check refuses it."""
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return ""
    text = ref["reference"]
    marker = f"{resource}/"
    if marker in text:
        return text.rsplit(marker, 1)[1]
    return text


def _note(notes: Any) -> tuple[Any, tuple[str, str, str] | None]:
    """The first annotation's ``text`` (None when there is none), or why ``note`` cannot be
    read: it must be a list of Annotation objects."""
    if notes is None or notes == []:
        return None, None
    if not isinstance(notes, list) or not all(isinstance(n, dict) for n in notes):
        return None, ("note", "bad_record", "note is not a list of annotations (objects)")
    return notes[0].get("text"), None


def _components(comps: Any) -> tuple[dict[str, str | None], tuple[str, str, str] | None]:
    """``{code: value text}`` of the components of the backcare component system, or why
    ``component`` cannot be read: it must be a list of objects."""
    if comps is None:
        return {}, None
    if not isinstance(comps, list):
        return {}, ("", "bad_record", "component is not a list")
    out: dict[str, str | None] = {}
    for comp in comps:
        if not isinstance(comp, dict):
            return {}, ("", "bad_record", "a component is not an object")
        for system, code in _codes(comp.get("code")):
            if system == COMPONENT_SYSTEM:
                out[code] = _value(comp)
    return out, None


def observation_record(
    resource: Any,
) -> tuple[str | None, dict[str, str] | None, tuple[str, str, str] | None]:
    """``(kind, record, problem)`` for one resource: kind ``"pain"`` or ``"sessions"`` with the
    record's raw cells, or ``(None, None, None)`` for a resource that is not an Observation,
    or a ``problem`` ``(column, reason, detail)`` for an Observation that cannot be read."""
    if not isinstance(resource, dict):
        return "sessions", None, ("", "bad_record", "the entry is not a JSON object")
    if resource.get("resourceType") != "Observation":
        return None, None, None
    codes = _codes(resource.get("code"))
    rec: dict[str, str] = {"patient_id": _reference_id(resource.get("subject"), "Patient")}
    when = resource.get("effectiveDateTime", resource.get("effectiveInstant"))
    if when is None and isinstance(resource.get("effectivePeriod"), dict):
        when = resource["effectivePeriod"].get("start")
    meta = resource.get("meta")
    updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if (LOINC, PAIN_CODE) in codes:
        kind, time_col, allowed = "pain", "recorded_at", PAIN_COMPONENTS
        rec["back_pain"] = _value(resource)  # type: ignore[assignment]
    elif exercise := next((c for s, c in codes if s == EXERCISE_SYSTEM), None):
        kind, time_col, allowed = "sessions", "performed_at", SESSION_COMPONENTS
        rec["exercise"] = exercise
        session = _reference_id(resource.get("encounter"), "Encounter")
        if session:
            rec["session_id"] = session
    else:
        return "sessions", None, ("", "bad_record", "an Observation of an unknown code")
    if resource.get("status") in VOID_STATUSES:
        return kind, None, ("", "bad_record", "the Observation is void (its status)")
    note, problem = _note(resource.get("note"))
    components, comp_problem = _components(resource.get("component"))
    if problem or comp_problem:
        return kind, None, problem or comp_problem
    rec[time_col] = _text(when)  # type: ignore[assignment]
    if note is not None:
        rec["note"] = _text(note)  # type: ignore[assignment]
    if updated is not None:
        rec["updated_at"] = _text(updated)  # type: ignore[assignment]
    for code, value in components.items():
        if code in allowed:
            rec[code] = value  # type: ignore[assignment]
    bad = [k for k, v in rec.items() if v is None]
    if bad:
        return kind, None, (bad[0], "bad_record", "an object where a value belongs")
    return kind, rec, None


def read_fhir(
    data: bytes, settings: Settings, where: str, fmt: str = "json"
) -> tuple[list[RawTable], int, tuple[str, ...]]:
    """Read a Bundle (``fmt="json"``) or NDJSON (``fmt="jsonl"``) of Observations into a
    sessions and/or a pain table."""
    limit = settings.max_field_chars
    blank = 0
    if fmt == "json":
        text = decode_utf8(data, where)
        depth, objects = json_shape(data)
        if depth > settings.max_json_depth:
            raise FileRefused("json_too_deep", f"{where}: FHIR JSON nested deeper than the limit")
        check_json_text(data, where)
        check_record_count(objects, len(data), where, OBJECT_BYTES)  # before decoding
        try:
            doc = loads_json(text, where)
        except json.JSONDecodeError:
            raise FileRefused("invalid_json", f"{where}: not valid JSON") from None
        entries = doc.get("entry") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or doc.get("resourceType") != "Bundle":
            raise FileRefused("bad_json_shape", f"{where}: a FHIR Bundle needs an entry list")
        check_record_count(len(entries), len(data), where)
        numbered = [
            (i, e.get("resource") if isinstance(e, dict) else e)
            for i, e in enumerate(entries, start=1)
        ]
        line_errors: list[tuple[int, str, str, str, str]] = []
    else:
        numbered, line_errors, blank = jsonl_records(data, settings, where)
    rows: dict[str, list[dict[str, str]]] = {"sessions": [], "pain": []}
    numbers: dict[str, list[int]] = {"sessions": [], "pain": []}
    errors: dict[str, list[tuple[int, str, str, str, str]]] = {"sessions": [], "pain": []}
    skipped = 0
    for row, resource in numbered:
        kind, rec, problem = observation_record(resource)
        if kind is None:
            skipped += 1
        elif problem is not None:
            col, reason, detail = problem
            errors[kind].append((row, col, reason, detail, raw_json(resource, limit)))
        else:
            rows[kind].append(rec)  # type: ignore[arg-type]
            numbers[kind].append(row)
    errors["sessions"].extend(line_errors)
    warnings = (f"skipped {skipped} resource(s) that are not Observations",) if skipped else ()
    tables = []
    for kind in ("sessions", "pain"):
        if not rows[kind] and not errors[kind]:
            continue
        cols = list(dict.fromkeys(c for r in rows[kind] for c in r)) or list(KNOWN_COLUMNS[kind])
        frame = pd.DataFrame.from_records(rows[kind], columns=cols).fillna("")
        for col in KNOWN_COLUMNS[kind][:3]:
            if col not in frame.columns:
                frame[col] = ""
        num = np.array(numbers[kind], dtype=np.int64)
        tables.append(build_table(kind, frame, num, errors[kind], "fhir", settings, where))  # type: ignore[arg-type]
    if not tables:
        raise FileRefused("empty_file", f"{where}: the FHIR file holds no Observations")
    return tables, blank, warnings
