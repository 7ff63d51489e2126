"""De-identified research exports: keyed pseudonyms, study days, an allowlist of columns.

A research export is what leaves the clinic for a study. It is built from an **allowlist**: a
column not named in :data:`ALLOWLIST` never reaches an output file, so a column added to the
store later is kept out until someone decides otherwise. Three transformations make the rest
safe to share:

* **Keyed pseudonyms.** ``patient_id`` becomes ``subject_id`` =
  ``"s" + HMAC-SHA-256(key, "patient_id" NUL id)[:20 hex]`` and ``clinician`` becomes
  ``clinician_code`` the same way under another label. The key is a per-study secret of 32 random
  bytes kept in a file outside the repository and the store's folder, readable by its owner only
  (:func:`new_key`, :func:`load_key`); a guessable key is refused (:func:`weak_key_reason`).
  Same key, same pseudonyms (exports of one study link up); another key, unrelated pseudonyms
  (two studies cannot be linked). A plain SHA-256/SHA-1/MD5 of a patient id, which anyone can
  recompute by enumerating ids, never appears.
* **Study days instead of calendar dates.** ``study_day`` = local calendar day minus the
  patient's programme start (day 0 is the first programme day). The time of day is kept as
  ``minute_of_day``, minutes after local midnight (0-1439), because timing consistency ("same time
  every day") is a research outcome of the programme; the time zone, the programme start and every
  UTC timestamp are dropped.
* **No free text.** Notes, session ids (set by the app, possibly linkable), source-file hashes and
  time zones are not in the allowlist.

Outputs per table: ``<table>.parquet`` (typed) and ``<table>.csv`` (UTF-8, RFC 4180 CRLF rows,
formula-neutralised by :mod:`backcare_analytics.safety`, exact round-trip through
:func:`read_research`), plus ``manifest.json`` (columns, dtypes, row counts, the key's
fingerprint; no dates).

>>> key = bytes(range(32))
>>> pseudonymise(pd.Series(["P001", "P002", "P001"]), key).tolist()
['sedd4e44f0afa53a74a55', 's8b5491d42d878b322118', 'sedd4e44f0afa53a74a55']
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from backcare_analytics.config import CHECKOUT_ROOT
from backcare_analytics.errors import ConfigError, InputDataError
from backcare_analytics.safety import (
    create_private_folders,
    open_private,
    private_folder,
    restore_formulas,
    write_csv,
    write_private_text,
)
from backcare_analytics.schemas.clean import Pain, Patients, Prescriptions, Sessions

if TYPE_CHECKING:
    from backcare_analytics.store import Store

__all__ = [
    "ALLOWLIST",
    "KEY_BYTES",
    "MIN_KEY_DISTINCT_BYTES",
    "ResearchExport",
    "check_key",
    "deidentify",
    "export_research",
    "export_research_from_store",
    "key_fingerprint",
    "load_key",
    "new_key",
    "pseudonymise",
    "read_research",
    "weak_key_reason",
]

KEY_BYTES = 32
#: A key with fewer different byte values is refused (:func:`weak_key_reason`).
MIN_KEY_DISTINCT_BYTES = 16
PSEUDONYM_HEX = 20  # 80 bits: collision-free in practice for 10^7 subjects
TABLES = ("patients", "sessions", "pain", "prescriptions")

#: Output columns per table, in order. Nothing else is ever written.
ALLOWLIST: Mapping[str, tuple[str, ...]] = {
    "patients": ("subject_id", "clinician_code"),
    "sessions": (
        "subject_id", "study_day", "minute_of_day", "exercise_id", "side", "sets", "reps",
        "hold_s", "level", "variant", "pain_before", "pain_after",
    ),
    "pain": ("subject_id", "study_day", "minute_of_day", "back_pain", "leg_pain", "flare"),
    "prescriptions": (
        "subject_id", "exercise_id", "valid_from_day", "valid_to_day", "sets", "reps",
        "reps_max", "hold_s", "per_side", "level", "variant", "source",
    ),
}  # fmt: skip

_DTYPES: Mapping[str, str] = {
    "subject_id": "str", "clinician_code": "str", "study_day": "Int64", "minute_of_day": "Int64",
    "exercise_id": "str", "side": "str", "sets": "Int64", "reps": "Int64", "hold_s": "Float64",
    "level": "str", "variant": "str", "pain_before": "Int64", "pain_after": "Int64",
    "back_pain": "Int64", "leg_pain": "Int64", "flare": "boolean", "valid_from_day": "Int64",
    "valid_to_day": "Int64", "reps_max": "Int64", "per_side": "bool", "source": "str",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------
# the key
# ---------------------------------------------------------------------------------------------


def _forbidden_places(store: Path | None, out: Path | None) -> list[tuple[Path, str]]:
    # The checkout only: an installed package's "project root" is the working folder, which
    # may be the user's home, where ~/.config/backcare/keys/ is exactly the right place.
    places = [(CHECKOUT_ROOT.resolve(), "the project's repository")] if CHECKOUT_ROOT else []
    if store is not None:
        places.append((Path(store).resolve().parent, "the store's folder"))
    if out is not None:
        places.append((Path(out).resolve(), "the export folder"))
    return places


def _check_key_place(path: Path, store: Path | None, out: Path | None) -> None:
    resolved = path.resolve()
    for place, what in _forbidden_places(store, out):
        if resolved.is_relative_to(place):
            raise ConfigError(
                f"the key file {path} is inside {what} ({place}); a study key must live apart "
                "from the data it protects and never enter git. Fix: keep it e.g. under "
                "~/.config/backcare/keys/ and pass --key-file there."
            )
    for parent in resolved.parents:
        if (parent / ".git").exists():
            raise ConfigError(
                f"the key file {path} is inside a git work tree ({parent}); it could be "
                "committed. Fix: move it outside any repository."
            )


def new_key(path: Path | str, *, store: Path | None = None, out: Path | None = None) -> Path:
    """Create a new per-study secret key file: 32 random bytes, mode 0600, never overwritten.

    Raises
    ------
    ConfigError
        The file exists, or its place is refused (see :func:`load_key`).
    """
    path = Path(path).expanduser()
    _check_key_place(path, store, out)
    create_private_folders(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"the key file {path} already exists; a study key is never overwritten (the old "
            "pseudonyms would be lost). Fix: use it as it is, or choose another path."
        ) from None
    key = secrets.token_bytes(KEY_BYTES)
    while weak_key_reason(key) is not None:  # chance below 4e-17; never hand out a weak key
        key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    os.chmod(path, 0o600)  # whatever the umask said
    return path


def load_key(path: Path | str, *, store: Path | None = None, out: Path | None = None) -> bytes:
    """Read a study key, refusing one that is exposed.

    Refused: a missing file; a file inside the project's repository, inside any git work tree,
    inside the store's folder or inside the export folder; a file that group or others may read
    or write; a key shorter than 32 bytes or too regular to be secret (:func:`weak_key_reason`).

    Raises
    ------
    ConfigError
        With the reason and the fix; never the key's bytes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"the key file {path} does not exist. Fix: create one with "
            f"`backcare export new-key {path}` (or pass --new-key) and keep it safe: without it "
            "the pseudonyms of this study cannot be reproduced."
        )
    _check_key_place(path, store, out)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"the key file {path} is accessible to others (mode {mode:04o}). Fix: "
            f"`chmod 600 {path}`."
        )
    key = path.read_bytes()
    check_key(key, f"the key file {path}")
    return key


def weak_key_reason(key: bytes) -> str | None:
    """Why ``key`` is too short or too regular to be a secret, or None when it is not.

    Refused: fewer than :data:`KEY_BYTES` bytes; all bytes equal; a block repeated (the key
    equals itself shifted by at most half its length: ``"password" * 4``); fewer than
    :data:`MIN_KEY_DISTINCT_BYTES` different byte values. These are the failures the health
    tests of NIST SP 800-90B (section 4.4: repetition count, adaptive proportion) catch in a
    noise source, applied to the key itself; NIST SP 800-133 asks that keys come straight from
    an approved random bit generator, as :func:`new_key`'s do. For 32 random bytes (about 30
    distinct values expected) the chance of a refusal is below 4e-17.

    >>> weak_key_reason(bytes(32)), weak_key_reason(b"password" * 4)
    ('all its 32 bytes are the same', 'it is a block of 8 bytes repeated')
    >>> weak_key_reason(bytes(range(32))) is None
    True
    """
    if len(key) < KEY_BYTES:
        return f"it holds {len(key)} bytes; a study key has at least {KEY_BYTES}"
    distinct = len(set(key))
    if distinct == 1:
        return f"all its {len(key)} bytes are the same"
    period = next((p for p in range(1, len(key) // 2 + 1) if key[p:] == key[:-p]), None)
    if period is not None:
        return f"it is a block of {period} bytes repeated"
    if distinct < MIN_KEY_DISTINCT_BYTES:
        return (
            f"it holds only {distinct} different byte values (at least "
            f"{MIN_KEY_DISTINCT_BYTES}; a random {KEY_BYTES}-byte key has about 30)"
        )
    return None


def check_key(key: bytes, what: str = "the study key") -> None:
    """Refuse a key that :func:`weak_key_reason` finds weak, with the fix; never its bytes.

    Raises
    ------
    ConfigError
        Naming ``what`` (e.g. the key file) and the reason.
    """
    reason = weak_key_reason(key)
    if reason is not None:
        raise ConfigError(
            f"{what} is too weak to protect the pseudonyms: {reason}. Whoever guesses a key "
            "can reverse every pseudonym by hashing candidate patient ids. Fix: create a new "
            "key with `backcare export new-key PATH` (32 random bytes from the operating "
            "system), keep it safe, and export again with it."
        )


def key_fingerprint(key: bytes) -> str:
    """A short public label of a key (HMAC of a constant), to check two exports share a key."""
    return hmac.new(key, b"backcare-key-fingerprint", hashlib.sha256).hexdigest()[:12]


def pseudonymise(
    ids: pd.Series, key: bytes, *, label: str = "patient_id", prefix: str = "s"
) -> pd.Series:
    """Keyed pseudonyms of ``ids``: ``prefix`` + the first 20 hex digits of
    HMAC-SHA-256(key, label NUL id). Missing ids stay missing.

    Computed once per distinct id and mapped back, so a year of logs costs one HMAC per patient.
    """
    distinct = ids.dropna().unique()
    tag = label.encode() + b"\x00"
    codes = {
        v: prefix + hmac.new(key, tag + str(v).encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for v in distinct
    }
    return ids.map(codes).astype("str")


# ---------------------------------------------------------------------------------------------
# de-identification
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResearchExport:
    """The de-identified tables, keyed by table name, with the key's public fingerprint."""

    tables: Mapping[str, pd.DataFrame]
    key_fingerprint: str


def _study_days(days: pd.Series, start: pd.Series) -> pd.Series:
    return ((days - start) // pd.Timedelta(days=1)).astype("Int64")


def _minute_of_day(times: pd.Series, zones: pd.Series) -> pd.Series:
    """Local minutes after midnight; one vectorised conversion per distinct time zone."""
    out = np.zeros(len(times), dtype="int64")
    missing = times.isna().to_numpy()
    zone_values = zones.to_numpy()
    for zone in pd.unique(zone_values):
        mask = zone_values == zone
        local = times[mask].dt.tz_convert(str(zone))
        out[mask] = (local.dt.hour * 60 + local.dt.minute).fillna(0).to_numpy("int64")
    result = pd.Series(out, index=times.index, dtype="Int64")
    return result.mask(missing)


def _with_patient(df: pd.DataFrame, patients: pd.DataFrame, table: str) -> pd.DataFrame:
    known = df[Sessions.patient_id].isin(patients[Patients.patient_id])
    if not known.all():
        raise InputDataError(
            f"{int((~known).sum())} row(s) of {table} belong to patients missing from the "
            "patients table; the study day cannot be computed. Fix: import the patients file."
        )
    cols = [Patients.patient_id, Patients.programme_start, Patients.timezone]
    return df.merge(patients[cols], on=Patients.patient_id, how="left", validate="many_to_one")


def deidentify(
    *,
    patients: pd.DataFrame,
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    prescriptions: pd.DataFrame | None,
    key: bytes,
) -> ResearchExport:
    """Build the de-identified tables from clean frames (inputs are not changed).

    Returns
    -------
    ResearchExport
        ``tables`` holds ``patients``, ``sessions``, ``pain`` and (when given) ``prescriptions``
        with exactly the columns of :data:`ALLOWLIST`, typed as in the manifest; rows sorted by
        subject and study day.
    """
    check_key(key)
    tables: dict[str, pd.DataFrame] = {}

    p = patients.copy()
    p["subject_id"] = pseudonymise(p[Patients.patient_id], key)
    p["clinician_code"] = pseudonymise(p[Patients.clinician], key, label="clinician", prefix="c")
    tables["patients"] = p

    s = _with_patient(sessions, patients, "sessions")
    s["subject_id"] = pseudonymise(s[Sessions.patient_id], key)
    s["study_day"] = _study_days(s[Sessions.day], s[Patients.programme_start])
    s["minute_of_day"] = _minute_of_day(s[Sessions.performed_at], s[Patients.timezone])
    tables["sessions"] = s

    d = _with_patient(pain, patients, "pain")
    d["subject_id"] = pseudonymise(d[Pain.patient_id], key)
    d["study_day"] = _study_days(d[Pain.day], d[Patients.programme_start])
    d["minute_of_day"] = _minute_of_day(d[Pain.recorded_at], d[Patients.timezone])
    tables["pain"] = d

    if prescriptions is not None:
        r = _with_patient(prescriptions, patients, "prescriptions")
        r["subject_id"] = pseudonymise(r[Prescriptions.patient_id], key)
        r["valid_from_day"] = _study_days(r[Prescriptions.valid_from], r[Patients.programme_start])
        r["valid_to_day"] = _study_days(r[Prescriptions.valid_to], r[Patients.programme_start])
        tables["prescriptions"] = r

    out: dict[str, pd.DataFrame] = {}
    for name, df in tables.items():
        cols = ALLOWLIST[name]
        typed = pd.DataFrame({c: df[c].astype(_DTYPES[c]) for c in cols})
        order = [
            c for c in ("subject_id", "study_day", "minute_of_day", "exercise_id") if c in cols
        ]
        if name == "prescriptions":
            order = ["subject_id", "exercise_id", "valid_from_day"]
        out[name] = typed.sort_values(order, kind="stable").reset_index(drop=True)
    return ResearchExport(tables=out, key_fingerprint=key_fingerprint(key))


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def _read_csv(path: Path, dtypes: Mapping[str, str]) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    out = {}
    for c, dtype in dtypes.items():
        col = raw[c]
        if dtype == "str":
            out[c] = restore_formulas(col.astype("str").to_frame())[c]
        elif dtype in ("bool", "boolean"):
            out[c] = col.map({"True": True, "False": False}).astype(dtype)
        elif dtype == "Float64":
            out[c] = pd.to_numeric(col).astype("Float64")
        else:
            out[c] = pd.to_numeric(col).astype(dtype)
    return pd.DataFrame(out, columns=list(dtypes))


def export_research(
    *,
    patients: pd.DataFrame,
    sessions: pd.DataFrame,
    pain: pd.DataFrame,
    prescriptions: pd.DataFrame | None,
    key: bytes,
    out: Path | str,
) -> ResearchExport:
    """De-identify (see :func:`deidentify`) and write Parquet, CSV and ``manifest.json``."""
    out = Path(out)
    result = deidentify(
        patients=patients, sessions=sessions, pain=pain, prescriptions=prescriptions, key=key
    )
    manifest: dict[str, object] = {
        "format": "backcare research export",
        "version": 1,
        "key_fingerprint": result.key_fingerprint,
        "study_day": "local calendar day minus programme start; day 0 = first programme day",
        "minute_of_day": "local wall-clock minutes after midnight (0-1439)",
        "csv_escape": (
            "one ' was put before a text cell starting with = + - @ TAB CR LF or ', inside a "
            "cell before = + - @ or ' following CR, LF, comma, semicolon or TAB, and an empty "
            "string was written '; strip one ' at those places"
        ),
        "tables": {},
    }
    private_folder(out)  # pseudonymised, but still personal data: owner-only, no links
    for name, df in result.tables.items():
        with open_private(out / f"{name}.parquet") as fh:
            df.to_parquet(fh, index=False)
        write_csv(df, out / f"{name}.csv", reversible=True)  # read_research restores it
        manifest["tables"][name] = {  # type: ignore[index]
            "rows": len(df),
            "columns": {c: _DTYPES[c] for c in df.columns},
        }
    write_private_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return result


def export_research_from_store(
    store: Store | Path | str,
    out: Path | str,
    key_file: Path | str,
    *,
    create_key: bool = False,
) -> ResearchExport:
    """The ``backcare export research`` command: read the store, de-identify, write ``out``.

    ``store`` is a :class:`~backcare_analytics.store.Store` or its file (:meth:`Store.of`).
    The key file is checked by :func:`load_key` against the store's folder and ``out``; with
    ``create_key`` a new key is made first (refused when the file exists).
    """
    from backcare_analytics.store import Store

    db = Store.of(store)
    if not db.exists():
        raise ConfigError(
            f"the store {db.path} does not exist; fix: pass --store with a store file"
        )
    if create_key:
        new_key(key_file, store=db.path, out=Path(out))
    key = load_key(key_file, store=db.path, out=Path(out))
    return export_research(
        patients=db.patients(),
        sessions=db.sessions(),
        pain=db.pain(),
        prescriptions=db.prescriptions(),
        key=key,
        out=out,
    )


def read_research(folder: Path | str, table: str, *, fmt: str = "csv") -> pd.DataFrame:
    """Read one table of a research export back, exactly as written (CSV escapes undone,
    dtypes restored from the manifest)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if table not in manifest["tables"]:
        raise InputDataError(
            f"{folder / 'manifest.json'} lists no table {table!r}; "
            f"it has {sorted(manifest['tables'])}"
        )
    dtypes = manifest["tables"][table]["columns"]
    if fmt == "parquet":
        df = pd.read_parquet(folder / f"{table}.parquet")
        return pd.DataFrame({c: df[c].astype(t) for c, t in dtypes.items()})
    if fmt != "csv":
        raise ValueError(f"fmt must be 'csv' or 'parquet'; received {fmt!r}")
    return _read_csv(folder / f"{table}.csv", dtypes)
