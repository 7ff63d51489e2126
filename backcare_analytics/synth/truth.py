"""The ground truth of a synthetic clinic: per patient, per file, per planted row.

Layout of ``ground_truth.json`` (documented in ``docs/synthetic-clinic.md``): ``config``,
``effects``, ``import_order``, ``patients`` (habits, adherence, timing, pain, capacity, expected
verdict, app), ``files`` (expected import counts), ``bad_rows``, ``edits`` and ``totals``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from backcare_analytics.synth.config import SynthConfig
from backcare_analytics.synth.exports import BAD_KINDS
from backcare_analytics.synth.simulate import EXERCISES, LADDER, LADDER_CAPACITY, Simulation

__all__ = ["VERDICTS", "effects_block", "patient_truth", "row_numbers"]

VERDICTS = ("progressing", "pain_improving_strength_stalled", "loading_ahead_of_symptoms", "review")
#: Thresholds of the expected verdict (on the true weekly series over the active weeks).
PAIN_FELL = -0.1  # points/week
PAIN_ROSE = 0.1
CAPACITY_GREW = 0.1  # capacity index units over the active period


def _r(x: Any, nd: int = 4) -> Any:
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return None if np.isnan(x) else round(x, nd)


def row_numbers(fmt: np.ndarray, row_pos: np.ndarray) -> np.ndarray:
    """Row numbers as the export contract defines them: CSV and XLSX count the header as row 1,
    JSON and JSON Lines count records from 1.

    >>> row_numbers(np.array(["csv", "jsonl", "xlsx", "json"]), np.array([0, 0, 3, 3])).tolist()
    [2, 1, 5, 4]
    """
    return row_pos + np.where(np.isin(fmt, ["csv", "xlsx"]), 2, 1)


def effects_block(cfg: SynthConfig) -> dict[str, Any]:
    """The planted effects, with their formulas, as written into the ground truth."""
    return {
        "pain_slope_on_adherence": {
            "formula": "slope_i = class_slope[class_i] + beta * (adherence_i - adherence_ref)"
            " + N(0, patient_slope_sd); mean back pain on day d = baseline_i + slope_i * d / 7",
            "beta_points_per_week_per_unit_adherence": cfg.pain_slope_per_adherence,
            "adherence_ref": cfg.adherence_ref,
            "adherence_definition": "share of the patient's active programme days (before any"
            " dropout) with a session",
            "class_slope_points_per_week": dict(cfg.class_slope),
            "patient_slope_sd": cfg.patient_slope_sd,
            "daily_pain_sd": cfg.daily_pain_sd,
            "flare_points": cfg.flare_points,
        },
        "capacity_gain_on_pain": {
            "formula": "dC_w = r_i * a_w * max(0, g0 - gamma * P_w); C starts at 1.0",
            "g0_units_per_week": cfg.capacity_gain_max,
            "gamma_units_per_week_per_nrs_point": cfg.capacity_gain_per_pain_point,
            "pain_hinge_nrs": round(cfg.capacity_gain_max / cfg.capacity_gain_per_pain_point, 4),
            "P_w": "the week's mean true back pain (flares included)",
            "a_w": "the week's share of days with a session",
            "r_i": f"Uniform(1 - {cfg.capacity_response_spread}, 1 + "
            f"{cfg.capacity_response_spread}) per patient",
            "observed_as": {
                "bridge": "hold_s = 15 * min(C, 3) + N(0, 1.5); reps = 3 + min(2, floor((C-1)/0.3))",
                "prone_press_up": "hold_s = min(20 + 10 * C, 60) + N(0, 2); "
                "reps = 3 + min(2, floor((C-1)/0.4))",
                "mini_push_up": "level wall/counter/knees/floor from C at "
                + "/".join(f"{c:g}" for c in LADDER_CAPACITY[:4])
                + "; reps = 8 + 7 * (C - level_start) / (next_start - level_start) + N(0, 0.8)",
                "dose_factor": "every rep count is multiplied by the day's dose factor "
                "(partial 0.4-0.75, overdoing 1.3-1.8, else 1)",
            },
        },
        "dropout_hazard": {
            "formula": "weekly hazard after the first programme week: h_i = h0 * hr ** "
            "(baseline_i - pain_ref); a patient whose dropout falls >= 21 days before the end "
            "stops logging sessions and diary for good",
            "h0_per_week": cfg.dropout_hazard_per_week,
            "hr_per_baseline_pain_point": cfg.dropout_hazard_ratio_per_pain_point,
            "pain_ref": cfg.dropout_pain_ref,
        },
        "leg_pain": "sciatica patients: diary leg pain = leg_baseline + 0.8 * slope_i * d / 7 "
        "+ 1.5 * flare + 1 on days with a sciatic floss (expected, tolerated)",
    }


def _ols_slope(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    x = np.broadcast_to(np.arange(y.shape[1], dtype=float), y.shape)
    n = mask.sum(axis=1)
    xm = np.where(mask, x, 0).sum(axis=1) / np.maximum(n, 1)
    ym = np.where(mask, y, 0).sum(axis=1) / np.maximum(n, 1)
    sxy = np.where(mask, (x - xm[:, None]) * (y - ym[:, None]), 0).sum(axis=1)
    sxx = np.where(mask, (x - xm[:, None]) ** 2, 0).sum(axis=1)
    return np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1), np.nan)


def patient_truth(sim: Simulation, profiles: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """One ground-truth entry per patient."""
    cfg, tr = sim.cfg, sim.traits
    n, days = cfg.patients, cfg.days
    active = tr["active_days"].to_numpy()
    act_weeks = -(-active // 7)
    wmask = np.arange(cfg.weeks)[None, :] < act_weeks[:, None]
    pain_slope = _ols_slope(sim.weekly_pain, wmask)
    cap_start = sim.weekly_capacity[:, 0]
    cap_end = sim.weekly_capacity[np.arange(n), act_weeks]
    cap_slope = _ols_slope(sim.weekly_capacity[:, 1:], wmask)
    fell, rose = pain_slope <= PAIN_FELL, pain_slope >= PAIN_ROSE
    grew = (cap_end - cap_start) >= CAPACITY_GREW
    verdict = np.select(
        [fell & grew, fell & ~grew, rose & grew], list(VERDICTS[:3]), default=VERDICTS[3]
    )
    # Diary: baseline = first 7 days from the first entry, final = last 7 days to the last one.
    dia = sim.diary[["pidx", "day_idx", "back_pain"]].copy()
    dia["true"] = sim.true_pain[dia["pidx"], dia["day_idx"]]
    g = dia.groupby("pidx")["day_idx"]
    dia["first"], dia["last"] = g.transform("min"), g.transform("max")
    early = dia[dia["day_idx"] < dia["first"] + 7].groupby("pidx")[["back_pain", "true"]].mean()
    late = dia[dia["day_idx"] > dia["last"] - 7].groupby("pidx")[["back_pain", "true"]].mean()
    early, late = early.reindex(range(n)), late.reindex(range(n))
    drop = early["back_pain"] - late["back_pain"]
    responder = (drop >= 2) | (drop >= 0.3 * early["back_pain"])
    ex_share = sim.done.sum(axis=2) / days
    sess_days = sim.session_days
    last_session = np.where(
        sess_days.any(axis=1), days - 1 - np.argmax(sess_days[:, ::-1], axis=1), -1
    )
    s = sim.sessions
    push = s[s["exercise_id"] == "mini_push_up"]
    lvl_idx = push["level"].map({lv: k for k, lv in enumerate(LADDER)})
    push_lvl = pd.DataFrame({"pidx": push["pidx"], "lvl": lvl_idx}).groupby("pidx")["lvl"]
    lv_first, lv_last = push_lvl.first().reindex(range(n)), push_lvl.last().reindex(range(n))
    bridge = s[s["exercise_id"] == "bridge"].assign(cap=lambda f: f["reps"] * f["hold_s"])
    bw = bridge.assign(w=bridge["day_idx"] // 7).groupby(["pidx", "w"])["cap"].mean()
    out = []
    tr_records = tr.to_dict("records")
    sp_records = profiles["sessions"].drop(columns=["alias"]).to_dict("records")
    pp_records = profiles["pain"].drop(columns=["alias"], errors="ignore").to_dict("records")
    bridge_weeks = {int(k): v for k, v in bw.groupby(level=0)} if len(bw) else {}
    for i in range(n):
        row = tr_records[i]
        b = bridge_weeks.get(i)
        sp, pp = sp_records[i], pp_records[i]
        out.append(
            {
                "patient_id": row["patient_id"],
                "timezone": row["timezone"],
                "programme_start": str(pd.Timestamp(row["programme_start"]).date()),
                "adherence": {
                    "habit": row["habit"],
                    "habit_before_dropout": row["habit_before_dropout"],
                    "habit_param": _r(row["habit_param"]),
                    "dropout_day": _r(row["dropout_day"]),
                    "active_days": _r(row["active_days"]),
                    "last_session_day": _r(last_session[i]),
                    "dropout_hazard_per_week": _r(row["dropout_hazard_per_week"]),
                    "routine_share": _r(sess_days[i].mean()),
                    "routine_share_active_days": _r(row["adherence"]),
                    "exercise_share": {e: _r(ex_share[i, k]) for k, e in enumerate(EXERCISES)},
                    "exercise_p": {e: _r(row[f"p_{e}"]) for e in EXERCISES},
                    "partial_dose_p": _r(row["partial_dose_p"]),
                    "over_dose_p": _r(row["over_dose_p"]),
                    "knee_to_chest_single_weeks": _r(row["knee_to_chest_single_weeks"]),
                },
                "timing": {
                    "habit": row["time_habit"],
                    "preferred_minute": _r(row["preferred_minute"]),
                    "spread_min": _r(row["spread_min"]),
                    "diary_preferred_minute": _r(row["diary_minute"]),
                    "diary_share_p": _r(row["diary_p"]),
                },
                "pain": {
                    "trajectory": row["pain_class"],
                    "baseline_nrs": _r(row["baseline_pain"]),
                    "slope_points_per_week": _r(row["pain_slope_per_week"]),
                    "weekly_true_mean": [_r(x, 3) for x in sim.weekly_pain[i, : act_weeks[i]]],
                    "baseline_true_mean": _r(early["true"].iat[i]),
                    "final_true_mean": _r(late["true"].iat[i]),
                    "baseline_diary_mean": _r(early["back_pain"].iat[i]),
                    "final_diary_mean": _r(late["back_pain"].iat[i]),
                    "responder": bool(responder.iat[i]),
                    "flare_days": int(sim.flare[i, : active[i]].sum()),
                    "sciatica": bool(row["sciatica"]),
                    "leg_baseline_nrs": _r(row["leg_baseline"]) if row["sciatica"] else None,
                },
                "capacity": {
                    "response": _r(row["capacity_response"]),
                    "start": _r(cap_start[i]),
                    "end": _r(cap_end[i]),
                    "weekly_start": [_r(x, 3) for x in sim.weekly_capacity[i, : act_weeks[i] + 1]],
                    "bridge_reps_x_hold_first_week": _r(b.iloc[0]) if b is not None else None,
                    "bridge_reps_x_hold_last_week": _r(b.iloc[-1]) if b is not None else None,
                    "push_up_level_first": None
                    if pd.isna(lv_first.iat[i])
                    else LADDER[int(lv_first.iat[i])],
                    "push_up_level_last": None
                    if pd.isna(lv_last.iat[i])
                    else LADDER[int(lv_last.iat[i])],
                    "press_up_variant": row["press_up_variant"],
                },
                "verdict": {
                    "expected": str(verdict[i]),
                    "pain_slope_points_per_week": _r(pain_slope[i]),
                    "capacity_slope_per_week": _r(cap_slope[i]),
                    "capacity_change": _r(cap_end[i] - cap_start[i]),
                },
                "app": {
                    kind: {k: _r(v) if not isinstance(v, str) else v for k, v in prof.items()}
                    for kind, prof in (("sessions", sp), ("pain", pp))
                },
            }
        )
    return out


def verdict_rules() -> dict[str, Any]:
    """How the expected verdict is decided, for the ground truth."""
    return {
        "pain_fell": f"OLS slope of weekly true mean pain over the active weeks <= {PAIN_FELL}",
        "pain_rose": f"that slope >= {PAIN_ROSE}",
        "capacity_grew": f"capacity index change over the active weeks >= {CAPACITY_GREW}",
        "classes": {
            "progressing": "pain fell and capacity grew",
            "pain_improving_strength_stalled": "pain fell, capacity did not grow",
            "loading_ahead_of_symptoms": "capacity grew while pain rose",
            "review": "anything else",
        },
        "responder": "diary mean of the first 7 days (from the first entry) minus the mean of the"
        " last 7 days (to the last entry) >= 2 points or >= 30 % of the first",
        "bad_kinds": {k: {n: v[0] for n, v in d.items()} for k, d in BAD_KINDS.items()},
    }
