"""The synthetic clinic: patients' exports with planted ground truth.

:func:`simulate` returns the clean tables an ideal import must end with, every export file's
bytes and the ground truth; :func:`generate_clinic` writes them to a folder::

    out/exports/patients.csv
    out/exports/DEMO-001_sessions_w01.csv   (one sessions and one pain file per patient-week)
    out/ground_truth.json

Same seed, same bytes. See ``docs/synthetic-clinic.md`` for what is planted.

>>> clinic = simulate(SynthConfig(patients=2, weeks=1, seed=1))
>>> list(clinic.files)[:2]
['exports/patients.csv', 'exports/DEMO-001_sessions_w01.csv']
>>> clinic.summary.files, list(clinic.patients.columns)
(5, ['patient_id', 'timezone', 'programme_start', 'clinician'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.errors import InputDataError
from backcare_analytics.protocol import build_prescriptions
from backcare_analytics.safety import write_private_bytes
from backcare_analytics.synth.config import SynthConfig
from backcare_analytics.synth.exports import BAD_KINDS, build_export_rows, draw_profiles
from backcare_analytics.synth.render import render_kind
from backcare_analytics.synth.simulate import simulate_behaviour
from backcare_analytics.synth.truth import (
    effects_block,
    patient_truth,
    row_numbers,
    verdict_rules,
)

__all__ = [
    "ClinicCheck",
    "ClinicSummary",
    "SynthConfig",
    "SyntheticClinic",
    "check_clinic",
    "generate_clinic",
    "simulate",
]

EXPORTS_DIR = "exports"
TRUTH_FILE = "ground_truth.json"


@dataclass(frozen=True)
class ClinicSummary:
    """What :func:`generate_clinic` wrote: file count and data rows per kind."""

    files: int
    session_rows: int
    pain_rows: int
    bad_rows: int


@dataclass
class SyntheticClinic:
    """A simulated clinic.

    ``sessions``, ``pain`` and ``patients`` match the clean schemas and hold exactly what an
    ideal import of ``files`` (in ``import_order``) stores: the final version of every record
    delivered in a good row, with ``source_file`` the sha256 of the file that delivered it.
    ``files`` maps a path relative to the output folder to its bytes, in import order.
    ``truth`` is the content of ``ground_truth.json``.
    """

    config: SynthConfig
    sessions: pd.DataFrame
    pain: pd.DataFrame
    patients: pd.DataFrame
    prescriptions: pd.DataFrame
    files: dict[str, bytes]
    truth: dict[str, Any]
    export_rows: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)

    @property
    def summary(self) -> ClinicSummary:
        t = self.truth["totals"]
        return ClinicSummary(
            files=len(self.files),
            session_rows=t["sessions"]["rows_read"],
            pain_rows=t["pain"]["rows_read"],
            bad_rows=t["sessions"]["rejected"] + t["pain"]["rejected"],
        )


def _file_table(sim, kind: str, profile: pd.DataFrame) -> pd.DataFrame:
    last_week = (sim.traits["active_days"].to_numpy() - 1) // 7
    pidx = np.repeat(np.arange(sim.cfg.patients), last_week + 1)
    week = np.concatenate([np.arange(k + 1) for k in last_week]) if len(pidx) else pidx
    pid = sim.traits["patient_id"].to_numpy()[pidx]
    ext = profile["ext"].to_numpy()[pidx]
    names = [
        f"{EXPORTS_DIR}/{p}_{kind}_w{w + 1:02d}.{e}" for p, w, e in zip(pid, week, ext, strict=True)
    ]
    return pd.DataFrame(
        {"pidx": pidx, "week": week, "name": names, "fmt": profile["fmt"].to_numpy()[pidx]}
    )


def _patients_csv(traits: pd.DataFrame) -> bytes:
    lines = ["patient_id,timezone,programme_start,clinician"]
    starts = np.datetime_as_string(traits["programme_start"].to_numpy(), unit="D")
    lines += [
        f"{p},{z},{s},{c}"
        for p, z, s, c in zip(
            traits["patient_id"], traits["timezone"], starts, traits["clinician"], strict=True
        )
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _clean(
    kind: str, rows: pd.DataFrame, traits: pd.DataFrame, session_ids: np.ndarray
) -> pd.DataFrame:
    acc = rows[rows["outcome"] == "accepted"].sort_values(["rec", "version"], kind="stable")
    acc = acc.drop_duplicates("rec", keep="last")
    keys = ["pidx", "utc", "slot"] if kind == "sessions" else ["pidx", "utc"]
    acc = acc.sort_values(keys, kind="stable").reset_index(drop=True)
    p = acc["pidx"].to_numpy()
    pid = pd.array(traits["patient_id"].to_numpy()[p], dtype="str")
    when = pd.Series(acc["utc"].to_numpy()).dt.tz_localize("UTC")
    common = {"patient_id": pid}
    if kind == "sessions":
        day = np.datetime_as_string(acc["day"].to_numpy(), unit="D")
        sid = pd.Series(pid, dtype="str") + "-" + pd.Series(day).str.replace("-", "")
        out = pd.DataFrame(
            {
                **common,
                "session_id": sid.where(session_ids[p], pd.NA).astype("str"),
                "performed_at": when,
                "day": acc["day"].to_numpy().astype("datetime64[us]"),
                "exercise_id": acc["exercise_id"].astype("str"),
                "side": acc["side"].astype("str"),
                "sets": pd.array(np.ones(len(acc), dtype="int64"), dtype="Int64"),
                "reps": pd.array(acc["reps"].to_numpy(), dtype="Int64"),
                "hold_s": pd.array(acc["hold_s"].to_numpy(), dtype="Float64"),
                "level": acc["level"].astype("str"),
                "variant": acc["variant"].astype("str"),
                "pain_before": pd.array(acc["pain_before"].to_numpy(), dtype="Float64").astype(
                    "Int64"
                ),
                "pain_after": pd.array(acc["pain_after"].to_numpy(), dtype="Float64").astype(
                    "Int64"
                ),
                "note": acc["note"].astype("str"),
                "source_file": acc["source_file"].astype("str"),
            }
        )
    else:
        out = pd.DataFrame(
            {
                **common,
                "recorded_at": when,
                "day": acc["day"].to_numpy().astype("datetime64[us]"),
                "back_pain": pd.array(acc["back_pain"].to_numpy(), dtype="Float64").astype("Int64"),
                "leg_pain": pd.array(acc["leg_pain"].to_numpy(), dtype="Float64").astype("Int64"),
                "flare": acc["flare"].astype("boolean").reset_index(drop=True),
                "note": acc["note"].astype("str"),
                "source_file": acc["source_file"].astype("str"),
            }
        )
    return out


def simulate(cfg: SynthConfig) -> SyntheticClinic:
    """Simulate a clinic: true behaviour, its exports in memory, what an import must store,
    and the ground truth.

    Notes
    -----
    Deterministic: the same ``cfg`` gives the same bytes. Each patient draws from its own
    ``SeedSequence(cfg.seed).spawn(cfg.patients)`` child, so adding patients leaves earlier
    patients unchanged. The model and the planted effects are described in
    ``docs/synthetic-clinic.md``.

    Returns
    -------
    SyntheticClinic
        ``sessions`` (:class:`~backcare_analytics.schemas.Sessions` columns), ``pain``
        (:class:`~backcare_analytics.schemas.Pain`), ``patients``
        (:class:`~backcare_analytics.schemas.Patients`), ``prescriptions``, ``files``
        (relative path -> bytes, in import order) and ``truth`` (``ground_truth.json``).
    """
    sim = simulate_behaviour(cfg)
    profiles, draws = draw_profiles(sim)
    files: dict[str, bytes] = {f"{EXPORTS_DIR}/patients.csv": _patients_csv(sim.traits)}
    file_rows = [
        {"file": f"{EXPORTS_DIR}/patients.csv", "kind": "patients", "format": "csv",
         "patient_id": None, "week": None, "sha256": hashlib.sha256(files[f"{EXPORTS_DIR}/patients.csv"]).hexdigest(), "rows_read": cfg.patients, "accepted": cfg.patients,
         "rejected": 0, "duplicates": 0, "edits": 0, "overlap_rows": 0}
    ]  # fmt: skip
    bad_rows, edits, export_rows, clean = [], [], {}, {}
    totals = {}
    pid_all = sim.traits["patient_id"].to_numpy()
    for kind in ("sessions", "pain"):
        ex = build_export_rows(sim, kind, profiles, draws)
        ftab = _file_table(sim, kind, profiles[kind])
        # A week with nothing to export gets no file (an app writes nothing for it).
        used = np.unique(ex.rows["pidx"].to_numpy() * 1000 + ex.rows["week"].to_numpy())
        ftab = ftab[np.isin(ftab["pidx"] * 1000 + ftab["week"], used)].reset_index(drop=True)
        blobs = render_kind(sim, ex, profiles[kind], ftab)
        ftab["sha256"] = [hashlib.sha256(b).hexdigest() for b in blobs]
        rows = ex.rows
        key = rows["pidx"].to_numpy() * 1000 + rows["week"].to_numpy()
        fidx = np.searchsorted(ftab["pidx"].to_numpy() * 1000 + ftab["week"].to_numpy(), key)
        rows["file"] = ftab["name"].to_numpy()[fidx]
        rows["source_file"] = ftab["sha256"].to_numpy()[fidx]
        rows["row"] = row_numbers(ftab["fmt"].to_numpy()[fidx], rows["row_pos"].to_numpy())
        nf = len(ftab)
        outcome = rows["outcome"].to_numpy()
        n_acc, n_rej, n_dup = (
            np.bincount(fidx[outcome == o], minlength=nf)
            for o in ("accepted", "rejected", "duplicate")
        )
        is_edit = (rows["version"].to_numpy() == 1) & (outcome == "accepted")
        n_edit = np.bincount(fidx[is_edit], minlength=nf)
        n_copy = np.bincount(
            fidx[rows["copy"].to_numpy() & ~rows["extra"].to_numpy()], minlength=nf
        )
        for f, (name, fmt, pidx, week, sha) in enumerate(
            zip(ftab["name"], ftab["fmt"], ftab["pidx"], ftab["week"], ftab["sha256"], strict=True)
        ):
            files[name] = blobs[f]
            file_rows.append(
                {"file": name, "kind": kind, "format": fmt, "patient_id": pid_all[pidx],
                 "week": int(week) + 1, "sha256": sha,
                 "rows_read": int(n_acc[f] + n_rej[f] + n_dup[f]), "accepted": int(n_acc[f]),
                 "rejected": int(n_rej[f]), "duplicates": int(n_dup[f]),
                 "edits": int(n_edit[f]), "overlap_rows": int(n_copy[f])}
            )  # fmt: skip
        bad = rows[rows["outcome"] == "rejected"]
        bad_rows += [
            {"file": f, "row": int(r), "kind": kind, "bad_kind": k, "reason": BAD_REASON[kind][k],
             "column": c, "value": v, "patient_id": pid_all[p]}
            for f, r, k, c, v, p in zip(bad["file"], bad["row"], bad["bad_kind"], bad["bad_column"],
                                        bad["bad_value"].fillna(""), bad["pidx"], strict=True)
        ]  # fmt: skip
        ed = rows[(rows["version"] == 1) & (rows["outcome"] == "accepted")]
        first = (
            rows[(rows["version"] == 0) & ~rows["extra"]].drop_duplicates("rec").set_index("rec")
        )
        prev_all = first.loc[ed["rec"].to_numpy()]
        for r, (_, prev) in zip(ed.itertuples(), prev_all.iterrows(), strict=True):
            edits.append(
                {"file": r.file, "row": int(r.row), "kind": kind, "patient_id": pid_all[r.pidx],
                 "time_utc": np.datetime_as_string(np.datetime64(r.utc, "s")) + "Z",
                 "exercise_id": getattr(r, "exercise_id", None), "side": getattr(r, "side", None),
                 "previous_file": prev["file"], "previous_row": int(prev["row"]),
                 "previous_outcome": prev["outcome"]}
            )  # fmt: skip
        clean[kind] = _clean(kind, rows, sim.traits, profiles["sessions"]["session_id"].to_numpy())
        export_rows[kind] = rows
        totals[kind] = {
            "files": len(ftab),
            "rows_read": int(len(rows)),
            "accepted": int((rows["outcome"] == "accepted").sum()),
            "rejected": int((rows["outcome"] == "rejected").sum()),
            "duplicates": int((rows["outcome"] == "duplicate").sum()),
            "stored": len(clean[kind]),
        }
    patients = pd.DataFrame(
        {
            "patient_id": sim.traits["patient_id"].astype("str"),
            "timezone": sim.traits["timezone"].astype("str"),
            "programme_start": sim.traits["programme_start"].astype("datetime64[us]"),
            "clinician": sim.traits["clinician"].astype("str"),
        }
    )
    truth = {
        "generator": "backcare_analytics.synth",
        "contract_version": "1.0",
        "config": cfg.to_json(),
        "effects": effects_block(cfg),
        "rules": verdict_rules(),
        "import_order": "the files in the order listed: patients first, then per patient its "
        "sessions files by week and its pain files by week (expected counts assume this order)",
        "totals": totals,
        "patients": patient_truth(sim, profiles),
        "files": file_rows,
        "bad_rows": bad_rows,
        "edits": edits,
    }
    ordered = {r["file"]: files[r["file"]] for r in file_rows}
    return SyntheticClinic(
        config=cfg,
        sessions=clean["sessions"],
        pain=clean["pain"],
        patients=patients,
        prescriptions=build_prescriptions(patients),
        files=ordered,
        truth=truth,
        export_rows=export_rows,
    )


BAD_REASON = {kind: {name: spec[0] for name, spec in d.items()} for kind, d in BAD_KINDS.items()}


def truth_json(truth: dict[str, Any]) -> bytes:
    """The ground truth as stable JSON bytes (fixed key order, no wall-clock values)."""
    return (json.dumps(truth, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def generate_clinic(cfg: SynthConfig, out: Path | str) -> ClinicSummary:
    """Simulate a clinic and write its exports and ``ground_truth.json`` under ``out``.

    Existing files of the same names are replaced (by atomic rename; files 0600, new folders
    0700, as every output of the package); nothing else in ``out`` is touched.

    Returns
    -------
    ClinicSummary
        ``files`` written (exports), ``session_rows`` and ``pain_rows`` (data rows in the files)
        and ``bad_rows`` (planted bad rows).
    """
    clinic = simulate(cfg)
    out = Path(out)
    for name, data in clinic.files.items():  # owner-only, by rename, like every output
        write_private_bytes(out / name, data)
    write_private_bytes(out / TRUTH_FILE, truth_json(clinic.truth))
    return clinic.summary


@dataclass(frozen=True)
class ClinicCheck:
    """Result of :func:`check_clinic`."""

    files: int
    missing: tuple[str, ...]
    changed: tuple[str, ...]
    totals: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.changed

    def summary(self) -> str:
        t = self.totals
        lines = [
            f"synthetic clinic: {self.files} export files; "
            f"sessions {t['sessions']['rows_read']} rows ({t['sessions']['rejected']} planted bad, "
            f"{t['sessions']['duplicates']} re-exported duplicates); "
            f"pain {t['pain']['rows_read']} rows ({t['pain']['rejected']} planted bad, "
            f"{t['pain']['duplicates']} re-exported duplicates)"
        ]
        if self.missing:
            lines.append(f"missing files: {len(self.missing)} (first: {self.missing[0]})")
        if self.changed:
            lines.append(f"files differing from the ground truth: {len(self.changed)} "
                         f"(first: {self.changed[0]})")  # fmt: skip
        if self.ok:
            lines.append("every file matches its ground-truth hash")
        return "\n".join(lines)


def check_clinic(folder: Path | str) -> ClinicCheck:
    """Check that a synthetic clinic folder still matches its ``ground_truth.json``."""
    folder = Path(folder)
    path = folder / TRUTH_FILE
    if not path.exists():
        raise InputDataError(
            f"{path} is missing; fix: regenerate the clinic with `backcare synth --out {folder}`"
        )
    truth = json.loads(path.read_text(encoding="utf-8"))
    missing, changed = [], []
    for entry in truth["files"]:
        f = folder / entry["file"]
        if not f.exists():
            missing.append(entry["file"])
        elif hashlib.sha256(f.read_bytes()).hexdigest() != entry["sha256"]:
            changed.append(entry["file"])
    return ClinicCheck(len(truth["files"]), tuple(missing), tuple(changed), truth["totals"])
