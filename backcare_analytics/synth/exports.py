"""From true behaviour to export rows: weekly files, re-exported overlaps, edits and bad rows.

Each patient's app is drawn once (format, delimiter, time style, exercise names, optional
columns). Every weekly file holds that week's records, sometimes preceded by the last 1-3 days of
the week before (an overlapping re-export, whose rows are exact duplicates, or edits with a later
``updated_at``). A share of fresh rows is planted bad. The ideal import of the files, in order,
is then replayed to give each file's expected ``rows_read``, ``rejected`` and ``duplicates`` and
the exact content the store must hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.protocol import load_protocol
from backcare_analytics.synth.simulate import EXERCISES, Simulation

__all__ = ["BAD_KINDS", "ExportRows", "build_export_rows", "draw_profiles"]

FORMATS = ("csv", "json", "json_envelope", "jsonl", "xlsx")
TIME_STYLES = ("offset", "utc_z", "local_iso", "local_space", "dayfirst", "cell")

#: kind -> (reason code, column, values). Values are chosen by a seeded draw.
BAD_KINDS: dict[str, dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "sessions": {
        "pain_out_of_range": ("out_of_range", ("pain_before", "pain_after"), ("11", "-1")),
        "non_numeric_pain": ("bad_number", ("pain_before",), ("severe", "very bad")),
        "misspelled_exercise": ("unknown_exercise", ("exercise",), ()),
        "missing_patient_id": ("missing_value", ("patient_id",), ("",)),
        "unparseable_time": (
            "bad_datetime",
            ("performed_at",),
            ("yesterday morning", "2026-02-30 07:15", "31/02/2026 07:15", "7:15 am"),
        ),
        "in_file_duplicate": ("duplicate_in_file", ("reps",), ()),
    },
    "pain": {
        "pain_out_of_range": ("out_of_range", ("back_pain",), ("11", "-1")),
        "non_numeric_pain": ("bad_number", ("back_pain",), ("severe", "very bad")),
        "missing_patient_id": ("missing_value", ("patient_id",), ("",)),
        "unparseable_time": (
            "bad_datetime",
            ("recorded_at",),
            ("yesterday evening", "2026-02-30 21:00", "31/02/2026 21:00", "9 pm"),
        ),
        "in_file_duplicate": ("duplicate_in_file", ("back_pain",), ()),
    },
}
#: Misspellings that match no exercise name (checked in the tests against the protocol).
MISSPELLED = {
    "breathing": "Breathng", "knee_to_chest": "Low Bak Stretch", "bridge": "Brdige",
    "sciatic_floss": "Sciatic Nerve Flos", "low_back_roll": "Low Back Rol",
    "prone_press_up": "Prone pres up", "mini_push_up": "Mini Psh Up",
}  # fmt: skip
_PROFILE_DRAWS = 48
#: Apps of the first patients: (format, delimiter, BOM, decimal comma, day-first diary dates).
COVERAGE = (
    ("csv", ";", True, True, False),
    ("xlsx", ",", False, False, False),
    ("jsonl", ",", False, False, False),
    ("json_envelope", ",", False, False, False),
    ("csv", "\t", False, False, False),
    ("json", ",", False, False, False),
    ("csv", ",", False, False, True),
)


@dataclass
class ExportRows:
    """Every data row of every weekly file of one kind, in file order.

    ``rows`` columns: ``pidx, week, rec, version, copy, extra, bad_kind, bad_column, bad_value,
    row_pos`` and the typed values; ``cells`` holds each export column as text (missing =
    blank).
    """

    kind: str
    rows: pd.DataFrame


def _cat(u: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    edges = np.cumsum(shares) / np.sum(shares)
    return np.minimum(np.searchsorted(edges, u, side="right"), len(shares) - 1)


def draw_profiles(sim: Simulation) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """Each patient's app for sessions and for the diary, and the per-file / per-record draws.

    Draws come from the patient's own export stream, so adding patients changes nothing for the
    earlier ones.
    """
    cfg = sim.cfg
    n, w = cfg.patients, cfg.weeks
    n_sess = np.bincount(sim.sessions["pidx"].to_numpy(), minlength=n)
    n_diary = np.bincount(sim.diary["pidx"].to_numpy(), minlength=n)
    a = np.empty((n, _PROFILE_DRAWS))
    files = np.empty((n, 2, w, 2))
    rec_s, rec_p = [], []
    for i, seed in enumerate(sim.export_seeds):
        g = np.random.default_rng(seed)
        a[i] = g.random(_PROFILE_DRAWS)
        files[i] = g.random((2, w, 2))
        rec_s.append(g.random((n_sess[i], 4)))
        rec_p.append(g.random((n_diary[i], 4)))
    draws = {
        "files_sessions": files[:, 0],
        "files_pain": files[:, 1],
        "rec_sessions": np.concatenate(rec_s) if rec_s else np.empty((0, 4)),
        "rec_pain": np.concatenate(rec_p) if rec_p else np.empty((0, 4)),
    }
    fmt_s = _cat(a[:, 0], tuple(cfg.format_share[f] for f in FORMATS))
    fmt_p = np.where(
        a[:, 1] < 0.6, fmt_s, _cat(a[:, 2], tuple(cfg.format_share[f] for f in FORMATS))
    )
    delim = np.array([",", ";", "\t"])[_cat(a[:, 3], (0.5, 0.35, 0.15))]
    bom = a[:, 4] < 0.3
    decimal_comma = (delim == ";") & (a[:, 5] < 0.6)
    dayfirst = a[:, 27] < 0.25
    # The first patients cover every format and CSV dialect, so a small clinic shows them all.
    for i, cover in enumerate(COVERAGE[:n]):
        fmt_s[i] = fmt_p[i] = FORMATS.index(cover[0])
        delim[i], bom[i], decimal_comma[i], dayfirst[i] = cover[1:]
    common = {
        "delim": delim,
        "bom": bom,
        "decimal_comma": decimal_comma,
        "crlf": a[:, 6] < 0.5,
        "title_header": a[:, 8] < 0.3,
        "session_id": a[:, 19] < 0.6,
        "sets": a[:, 20] < 0.5,
        "updated_at": a[:, 21] < 0.6,
        "suffix": a[:, 22] < 0.15,
        "json_strings": a[:, 23] < 0.3,
        "side_style": np.array(["full", "blank_default", "letters"])[
            _cat(a[:, 24], (0.6, 0.25, 0.15))
        ],
        "flare_style": np.array(["truefalse", "yesno", "10"])[_cat(a[:, 25], (0.5, 0.3, 0.2))],
        "naming": np.array(["id", "name", "alias"])[_cat(a[:, 11], (0.2, 0.5, 0.3))],
    }
    profiles = {}
    for kind, fmt, ts_u in (("sessions", fmt_s, a[:, 9]), ("pain", fmt_p, a[:, 10])):
        fmt_name = np.array(FORMATS)[fmt]
        text_style = np.array(TIME_STYLES)[_cat(ts_u, (0.35, 0.15, 0.25, 0.25))]
        if kind == "pain":  # paper diaries transcribed with day-first dates
            text_style = np.where((fmt_name == "csv") & dayfirst, "dayfirst", text_style)
        time_style = np.where((fmt_name == "xlsx") & (a[:, 28] < 0.7), "cell", text_style)
        ext = np.select(
            [fmt_name == "csv", fmt_name == "jsonl", fmt_name == "xlsx"],
            [
                np.where(delim == "\t", np.where(a[:, 7] < 0.5, "tsv", "txt"), "csv"),
                np.where(a[:, 26] < 0.2, "ndjson", "jsonl"),
                "xlsx",
            ],
            "json",
        )
        profiles[kind] = pd.DataFrame(
            {"fmt": fmt_name, "ext": ext, "time_style": time_style, **common}
        )
    protocol = load_protocol()
    alias_pick = {}
    for k, ex_id in enumerate(EXERCISES):
        ex = protocol.by_id[ex_id]
        # Aliases that name a level or a variant would contradict the row's level/variant.
        ok = [al for al in ex.aliases if not al.lower().startswith(("wall", "counter", "standing"))]
        alias_pick[ex_id] = np.array(ok)[
            np.minimum((a[:, 12 + k] * len(ok)).astype(int), len(ok) - 1)
        ]
    profiles["sessions"]["alias"] = [
        dict(zip(EXERCISES, v, strict=True)) for v in zip(*alias_pick.values(), strict=True)
    ]
    return profiles, draws


def _plant(rows: pd.DataFrame, kind: str, rec_u: np.ndarray, cfg, has_updated: np.ndarray):
    """Choose bad rows among fresh rows and edits among re-exported copies (in place)."""
    kinds = list(BAD_KINDS[kind])
    u = rec_u[rows["rec"].to_numpy()]
    fresh = ~rows["copy"].to_numpy()
    bad = fresh & (u[:, 0] < cfg.bad_share)
    which = np.minimum((u[:, 1] * len(kinds)).astype(int), len(kinds) - 1)
    rows["bad_kind"] = pd.array(np.where(bad, np.array(kinds)[which], None), dtype="str")
    # A record whose fresh row was replaced by a bad one is never edited later: from the
    # importer's view its re-export is simply new.
    replaced = bad & (rows["bad_kind"] != "in_file_duplicate").to_numpy()
    replaced_recs = np.zeros(len(rec_u), dtype=bool)
    replaced_recs[rows["rec"].to_numpy()[replaced]] = True
    edit = (
        ~fresh
        & (u[:, 2] < cfg.edit_share)
        & has_updated[rows["pidx"].to_numpy()]
        & ~replaced_recs[rows["rec"].to_numpy()]
    )
    rows["version"] = edit.astype("int64")
    return u


def build_export_rows(sim: Simulation, kind: str, profiles, draws) -> ExportRows:
    """The data rows of every weekly file of ``kind`` (``"sessions"`` or ``"pain"``), with
    overlaps, edits and planted bad rows, and the expected outcome of importing each row."""
    cfg = sim.cfg
    rec = (sim.sessions if kind == "sessions" else sim.diary).reset_index(drop=True).copy()
    rec["rec"] = np.arange(len(rec))
    rec["week"] = rec["day_idx"] // 7
    last_week = (sim.traits["active_days"].to_numpy() - 1) // 7
    fdraw = draws[f"files_{kind}"]  # (N, W, 2): overlap flag, overlap days
    overlap = fdraw[:, :, 0] < cfg.overlap_share
    overlap[:, 0] = False
    ov_days = 1 + np.minimum((fdraw[:, :, 1] * 3).astype(int), 2)
    p, wk = rec["pidx"].to_numpy(), rec["week"].to_numpy()
    nxt = np.minimum(wk + 1, cfg.weeks - 1)
    is_copy = (
        (wk + 1 <= last_week[p])
        & overlap[p, nxt]
        & (rec["day_idx"].to_numpy() % 7 >= 7 - ov_days[p, nxt])
    )
    fresh = rec.assign(copy=False, extra=False)
    copies = rec[is_copy].assign(copy=True, extra=False, week=wk[is_copy] + 1)
    rows = pd.concat([fresh, copies], ignore_index=True)
    rec_u = draws[f"rec_{kind}"]
    _plant(rows, kind, rec_u, cfg, profiles[kind]["updated_at"].to_numpy())
    dup_src = rows["bad_kind"].to_numpy() == "in_file_duplicate"
    extra = rows[dup_src].copy()
    extra["extra"] = True
    rows.loc[dup_src, "bad_kind"] = pd.NA
    rows = pd.concat([rows, extra], ignore_index=True)
    order = (
        ["pidx", "week", "utc", "slot", "extra"]
        if kind == "sessions"
        else ["pidx", "week", "utc", "extra"]
    )
    rows = rows.sort_values(order, kind="stable").reset_index(drop=True)
    rows["row_pos"] = rows.groupby(["pidx", "week"], sort=False).cumcount()
    # Bad cells, and edits of the typed values.
    u = rec_u[rows["rec"].to_numpy()]
    spec = BAD_KINDS[kind]
    bad_col = np.full(len(rows), None, dtype=object)
    bad_val = np.full(len(rows), None, dtype=object)
    bk = rows["bad_kind"].to_numpy(dtype=object)
    for name, (_, cols, values) in spec.items():
        m = bk == name
        if not m.any():
            continue
        pick = np.minimum((u[m, 3] * max(len(values), 1)).astype(int), max(len(values), 1) - 1)
        if name == "pain_out_of_range" and kind == "sessions":
            bad_col[m] = np.array(cols)[pick]
        else:
            bad_col[m] = cols[0]
        if values:
            bad_val[m] = np.array(values, dtype=object)[pick]
        elif name == "misspelled_exercise":
            bad_val[m] = [MISSPELLED[e] for e in rows.loc[m, "exercise_id"]]
    is_extra = rows["extra"].to_numpy()
    bk[is_extra] = "in_file_duplicate"
    bad_col[is_extra] = spec["in_file_duplicate"][1][0]
    rows["bad_kind"] = pd.array(bk, dtype="str")
    if kind == "sessions":
        rows.loc[is_extra, "reps"] = rows.loc[is_extra, "reps"] + 1
        bad_val[is_extra] = rows.loc[is_extra, "reps"].astype("int64").astype("str").to_numpy()
        ed = rows["version"].to_numpy() == 1
        pa_ = rows["pain_after"].to_numpy()
        on_pain = ed & (u[:, 3] >= 0.5) & ~np.isnan(pa_)
        rows.loc[ed & ~on_pain, "reps"] = rows.loc[ed & ~on_pain, "reps"] + 1
        rows.loc[on_pain, "pain_after"] = np.where(pa_[on_pain] >= 10, 9, pa_[on_pain] + 1)
    else:
        bp = rows["back_pain"].to_numpy()
        changed = np.where(bp >= 10, bp - 1, bp + 1)
        rows.loc[is_extra, "back_pain"] = changed[is_extra]
        bad_val[is_extra] = changed[is_extra].astype("int64").astype("str")
        ed = rows["version"].to_numpy() == 1
        down = ed & (u[:, 3] < 0.5) & (bp > 0)
        rows.loc[down, "back_pain"] = bp[down] - 1
        rows.loc[ed & ~down, "back_pain"] = np.where(bp[ed & ~down] >= 10, 9, bp[ed & ~down] + 1)
    rows["bad_column"] = pd.array(bad_col, dtype="str")
    rows["bad_value"] = pd.array(bad_val, dtype="str")
    # The ideal import, file by file in week order: bad rows are rejected, a good row already
    # stored in the same version is a duplicate, anything else is accepted (new or edit).
    good = rows["bad_kind"].isna().to_numpy()
    seen = rows[good].duplicated(["rec", "version"]).to_numpy()
    dup = np.zeros(len(rows), dtype=bool)
    dup[np.flatnonzero(good)[seen]] = True
    rows["outcome"] = np.where(~good, "rejected", np.where(dup, "duplicate", "accepted"))
    return ExportRows(kind=kind, rows=rows)
