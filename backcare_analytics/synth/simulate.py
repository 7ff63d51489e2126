"""The patients' true behaviour, day by day: sessions, diary, pain and strength capacity.

Random numbers are drawn per patient from its own generator (``SeedSequence(seed).spawn``), in
blocks of fixed shape, so adding patients never changes the earlier ones; everything else is
vectorised over a (patients x days) grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backcare_analytics.synth.config import PAIN_CLASSES, TIMEZONES, SynthConfig

__all__ = ["EXERCISES", "HABITS", "LADDER", "SLOTS", "Simulation", "simulate_behaviour"]

EXERCISES = (
    "breathing", "knee_to_chest", "bridge", "sciatic_floss", "low_back_roll",
    "prone_press_up", "mini_push_up",
)  # fmt: skip
HABITS = ("most_days", "weekdays_only", "fading", "sporadic")
HABIT_SHARE = (0.4, 0.2, 0.2, 0.2)
TIME_HABITS = ("morning_in_bed", "evening", "midday")
TIME_HABIT_SHARE = (0.5, 0.35, 0.15)
#: One row of a session: (exercise index, side, minutes after the session start).
SLOTS = (
    (0, "none", 0), (1, "left", 2), (1, "right", 3), (1, "both", 2), (2, "none", 5),
    (3, "left", 7), (3, "right", 8), (4, "both", 10), (5, "none", 12), (6, "none", 14),
)  # fmt: skip
LADDER = ("wall", "counter", "knees", "floor")
#: Capacity at which each push-up level starts; the last entry is the top of ``floor``.
LADDER_CAPACITY = np.array([1.0, 1.35, 1.7, 2.1, 2.6])
SESSION_NOTES = (
    "did it in bed", "stiff this morning", "tight, but ok", "felt good", "short on time",
    "rug wat stijf", "Rücken etwas steif", 'used the "wall" version',
)  # fmt: skip
DIARY_NOTES = ("slept badly", "long drive today", "gardening", "better after walk", "work stress")
FLOSS_NOTE = "leg tingling during the floss, settled after"

# Blocks of random numbers drawn per patient (rows of U and Z, entries of T).
_NT, _NTZ, _NU, _NZ = 40, 4, 16, 8


@dataclass
class Simulation:
    """True behaviour of the clinic (internal; see :class:`SyntheticClinic` for the public view).

    ``traits`` has one row per patient; ``sessions`` one row per exercise row performed with its
    true values, UTC time and local wall time; ``diary`` one row per diary entry; the arrays are
    (patients x days) or (patients x weeks).
    """

    cfg: SynthConfig
    traits: pd.DataFrame
    sessions: pd.DataFrame
    diary: pd.DataFrame
    session_days: np.ndarray  # bool (N, D)
    done: np.ndarray  # bool (N, 7, D)
    true_pain: np.ndarray  # float (N, D): latent daily mean back pain incl. flares
    flare: np.ndarray  # bool (N, D)
    capacity: np.ndarray  # float (N, D)
    weekly_pain: np.ndarray  # (N, W)
    weekly_sessions: np.ndarray  # (N, W) share of days with a session
    weekly_capacity: np.ndarray  # (N, W + 1): capacity at the start of each week, and at the end
    export_seeds: list[np.random.SeedSequence]


def _categorical(u: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    edges = np.cumsum(shares) / np.sum(shares)
    return np.minimum(np.searchsorted(edges, u, side="right"), len(shares) - 1)


def _draw(cfg: SynthConfig):
    n, d = cfg.patients, cfg.days
    t = np.empty((n, _NT))
    tz = np.empty((n, _NTZ))
    u = np.empty((n, _NU, d))
    z = np.empty((n, _NZ, d))
    export_seeds = []
    for i, child in enumerate(np.random.SeedSequence(cfg.seed).spawn(n)):
        sim_seed, export_seed = child.spawn(2)
        g = np.random.default_rng(sim_seed)
        t[i] = g.random(_NT)
        tz[i] = g.standard_normal(_NTZ)
        u[i] = g.random((_NU, d))
        z[i] = g.standard_normal((_NZ, d))
        export_seeds.append(export_seed)
    return t, tz, u, z, export_seeds


def _rolling_any(flags: np.ndarray, width: int) -> np.ndarray:
    cs = np.cumsum(flags, axis=1)
    shifted = np.zeros_like(cs)
    shifted[:, width:] = cs[:, :-width]
    return (cs - shifted) > 0


def _to_utc(local: np.ndarray, zones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local wall times (naive) in each row's zone -> UTC and the wall time actually used.

    A time skipped by a DST change is moved forward; a repeated one takes the first occurrence,
    as the import contract reads local times.
    """
    utc = np.empty(len(local), dtype="datetime64[us]")
    wall = np.empty(len(local), dtype="datetime64[us]")
    for zone in np.unique(zones):
        mask = zones == zone
        s = pd.Series(local[mask]).dt.tz_localize(
            str(zone), ambiguous=np.ones(int(mask.sum()), dtype=bool), nonexistent="shift_forward"
        )
        utc[mask] = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        wall[mask] = s.dt.tz_localize(None).to_numpy()
    return utc, wall


def simulate_behaviour(cfg: SynthConfig) -> Simulation:
    """Simulate every patient's programme (see ``docs/synthetic-clinic.md`` for the model)."""
    n, days, weeks = cfg.patients, cfg.days, cfg.weeks
    t, tz, u, z, export_seeds = _draw(cfg)
    d = np.arange(days)
    idx = np.arange(n)

    # --- who the patients are ------------------------------------------------------------------
    zone = np.array(TIMEZONES)[np.minimum((t[:, 0] * len(TIMEZONES)).astype(int), 2)]
    start = np.datetime64(cfg.start, "D") + (t[:, 1] * (cfg.stagger_days + 1)).astype(int)
    clinician = np.array(["C01", "C02", "C03"])[np.minimum((t[:, 2] * 3).astype(int), 2)]
    habit = _categorical(t[:, 3], HABIT_SHARE)
    h1 = t[:, 4]
    pain_class = _categorical(t[:, 6], tuple(cfg.class_share[c] for c in PAIN_CLASSES))
    baseline = 3.0 + 5.0 * t[:, 7]
    sciatica = t[:, 9] < 0.4
    leg_base = 3.0 + 4.0 * t[:, 10]
    diary_p = 0.6 + 0.35 * t[:, 11]
    time_habit = _categorical(t[:, 12], TIME_HABIT_SHARE)
    pref = np.choose(time_habit, [360 + 90 * t[:, 13], 1140 + 210 * t[:, 13], 690 + 120 * t[:, 13]])
    pref = np.rint(pref)
    spread = np.rint(10 + 80 * t[:, 14])
    single_weeks = np.minimum((t[:, 15] * 5).astype(int), 4)
    variant = np.where(t[:, 16] < 0.3, "standing", "prone")
    reports_pain = t[:, 17] < 0.8
    partial_p = 0.02 + 0.12 * t[:, 18]
    over_p = 0.01 + 0.06 * t[:, 19]
    s = cfg.capacity_response_spread
    response = 1 - s + 2 * s * t[:, 20]
    ex_lo = np.array([1.0, 0.9, 0.8, 0.6, 0.85, 0.8, 0.7])
    ex_p = ex_lo + (1 - ex_lo) * t[:, 22:29]
    ex_p[:, 3] = np.where(sciatica, 0.85 + 0.15 * t[:, 25], ex_p[:, 3])
    diary_pref = np.rint(np.where(t[:, 29] < 0.7, 1200 + 120 * t[:, 30], 420 + 120 * t[:, 30]))
    hold_step = np.where(t[:, 31] < 0.3, 0.5, 1.0)
    leg_blank = (t[:, 32] < 0.5) & ~sciatica
    flare_blank = t[:, 33] < 0.3

    # --- dropout: weekly hazard after the first week, rising with baseline pain -----------------
    hazard = cfg.dropout_hazard_per_week * cfg.dropout_hazard_ratio_per_pain_point ** (
        baseline - cfg.dropout_pain_ref
    )
    with np.errstate(divide="ignore"):
        t_weeks = -np.log1p(-np.minimum(t[:, 35], 1 - 1e-12)) / np.maximum(hazard, 1e-12)
    dropout_day = 7 + np.floor(t_weeks * 7)
    is_dropout = dropout_day <= days - 21
    active_end = np.where(is_dropout, dropout_day, days).astype(int)
    active = d[None, :] < active_end[:, None]

    # --- sessions: the adherence habit ---------------------------------------------------------
    dates = start[:, None] + d[None, :]
    weekday = (dates.astype("int64") + 3) % 7
    frac = d[None, :] / max(days - 1, 1)
    p0 = (0.9 + 0.07 * h1)[:, None]
    p1 = (0.25 + 0.25 * t[:, 5])[:, None]
    p_day = np.choose(
        habit[:, None],
        [
            np.broadcast_to((0.82 + 0.13 * h1)[:, None], (n, days)),
            np.where(weekday < 5, (0.85 + 0.1 * h1)[:, None], 0.0),
            p0 - (p0 - p1) * frac,
            np.broadcast_to((0.3 + 0.25 * h1)[:, None], (n, days)),
        ],
    )
    session = (u[:, 0] < p_day) & active
    adherence = session.sum(axis=1) / active_end
    done = session[:, None, :] & (u[:, 5:12] < ex_p[:, :, None])

    # --- pain: planted slope on adherence, flares ----------------------------------------------
    class_slope = np.array([cfg.class_slope[c] for c in PAIN_CLASSES])[pain_class]
    slope = (
        class_slope
        + cfg.pain_slope_per_adherence * (adherence - cfg.adherence_ref)
        + cfg.patient_slope_sd * tz[:, 0]
    )
    mean_pain = baseline[:, None] + slope[:, None] * d[None, :] / 7
    flare_start = (
        u[:, 1] < np.where(pain_class == PAIN_CLASSES.index("flare_prone"), 0.04, 0.004)[:, None]
    )
    flare = _rolling_any(flare_start, 4)
    true_pain = np.clip(mean_pain + cfg.flare_points * flare, 0, 10)

    # --- capacity: grows only while weekly pain is low -----------------------------------------
    weekly_pain = true_pain.reshape(n, weeks, 7).mean(axis=2)
    weekly_sessions = session.reshape(n, weeks, 7).mean(axis=2)
    gain = (
        response[:, None]
        * weekly_sessions
        * np.maximum(0.0, cfg.capacity_gain_max - cfg.capacity_gain_per_pain_point * weekly_pain)
    )
    weekly_capacity = 1.0 + np.concatenate([np.zeros((n, 1)), np.cumsum(gain, axis=1)], axis=1)
    capacity = weekly_capacity[:, d // 7] + gain[:, d // 7] * (d % 7)[None, :] / 7

    # --- session rows ----------------------------------------------------------------------------
    pi, di = np.nonzero(session)
    single = di < 7 * single_weeks[pi]
    dn = done[pi, :, di]  # (S, 7)
    slot_ex = np.array([sl[0] for sl in SLOTS])
    slot_mask = dn[:, slot_ex]
    slot_mask[:, 1] &= single
    slot_mask[:, 2] &= single
    slot_mask[:, 3] &= ~single
    si, slot = np.nonzero(slot_mask)
    rp, rd = pi[si], di[si]
    minute = np.clip(np.rint(pref[pi] + spread[pi] * z[pi, 0, di]), 30, 1380)
    row_min = minute[si] + np.array([sl[2] for sl in SLOTS])[slot]
    local = dates[rp, rd].astype("datetime64[us]") + (row_min * 60_000_000).astype(
        "timedelta64[us]"
    )
    utc, wall = _to_utc(local, zone[rp])
    ex = slot_ex[slot]
    cap = capacity[rp, rd]
    dose_u = u[rp, 3, rd]
    dose_f = np.where(
        dose_u < partial_p[rp],
        0.4 + 0.35 * u[rp, 4, rd],
        np.where(dose_u > 1 - over_p[rp], 1.3 + 0.5 * u[rp, 4, rd], 1.0),
    )
    lvl = np.searchsorted(LADDER_CAPACITY[1:4], cap, side="right")
    lo, hi = LADDER_CAPACITY[lvl], LADDER_CAPACITY[lvl + 1]
    base_reps = np.select(
        [ex == 2, ex == 5, ex == 6],
        [
            3 + np.minimum(2, np.floor((cap - 1) / 0.3)),
            3 + np.minimum(2, np.floor((cap - 1) / 0.4)),
            np.clip(np.rint(8 + 7 * (cap - lo) / (hi - lo) + 0.8 * z[rp, 6, rd]), 4, 20),
        ],
        10.0,
    )
    reps = np.maximum(1, np.rint(base_reps * dose_f)).astype("int64")
    step = hold_step[rp]
    bridge_hold = np.maximum(
        3, np.rint((15 * np.minimum(cap, 3) + 1.5 * z[rp, 4, rd]) / step) * step
    )
    press_hold = np.maximum(
        5, np.rint((np.minimum(20 + 10 * cap, 60) + 2 * z[rp, 5, rd]) / step) * step
    )
    hold = np.select([ex == 2, ex == 3, ex == 5], [bridge_hold, 3.0, press_hold], np.nan)
    m = true_pain[rp, rd]
    pain_before = np.clip(np.rint(m + 0.5 * z[rp, 3, rd]), 0, 10)
    delta = np.where(u[rp, 12, rd] < 0.25, -1, np.where(u[rp, 12, rd] < 0.75, 0, 1)) + (m >= 6)
    pain_after = np.clip(pain_before + delta, 0, 10)
    has_pain = reports_pain[rp]
    note = np.full(len(rp), None, dtype=object)
    first = slot == 0
    pick = first & (u[rp, 13, rd] < 0.04)
    note[pick] = np.array(SESSION_NOTES, dtype=object)[
        np.minimum((u[rp, 13, rd][pick] / 0.04 * len(SESSION_NOTES)).astype(int), 7)
    ]
    floss_note = (slot == 5) & sciatica[rp] & (u[rp, 14, rd] < 0.15)
    note[floss_note] = FLOSS_NOTE
    sessions = pd.DataFrame(
        {
            "pidx": rp,
            "day_idx": rd,
            "slot": slot,
            "exercise_id": np.array(EXERCISES)[ex],
            "side": np.array([sl[1] for sl in SLOTS])[slot],
            "reps": reps,
            "hold_s": hold,
            "level": np.where(ex == 6, np.array(LADDER)[lvl], None),
            "variant": np.where(ex == 5, variant[rp], None),
            "pain_before": np.where(has_pain, pain_before, np.nan),
            "pain_after": np.where(has_pain, pain_after, np.nan),
            "note": note,
            "utc": utc,
            "wall": wall,
            "day": dates[rp, rd].astype("datetime64[us]"),
        }
    )

    # --- diary rows ------------------------------------------------------------------------------
    present = (u[:, 2] < diary_p[:, None]) & active
    qi, qd = np.nonzero(present)
    back = np.clip(np.rint(true_pain[qi, qd] + cfg.daily_pain_sd * z[qi, 1, qd]), 0, 10)
    floss_day = done[qi, 3, qd]
    leg_mean = leg_base[qi] + 0.8 * slope[qi] * qd / 7 + 1.5 * flare[qi, qd] + 1.0 * floss_day
    leg = np.where(
        sciatica[qi], np.clip(np.rint(leg_mean + cfg.daily_pain_sd * z[qi, 2, qd]), 0, 10), 0.0
    )
    leg = np.where(leg_blank[qi], np.nan, leg)
    dmin = np.clip(np.rint(diary_pref[qi] + 30 * z[qi, 7, qd]), 30, 1410)
    dlocal = dates[qi, qd].astype("datetime64[us]") + (dmin * 60_000_000).astype("timedelta64[us]")
    dutc, dwall = _to_utc(dlocal, zone[qi])
    flare_col = pd.array(flare[qi, qd], dtype="boolean")
    flare_col[flare_blank[qi] & ~flare[qi, qd]] = pd.NA
    dnote = np.full(len(qi), None, dtype=object)
    pick = u[qi, 15, qd] < 0.03
    dnote[pick] = np.array(DIARY_NOTES, dtype=object)[
        np.minimum((u[qi, 15, qd][pick] / 0.03 * len(DIARY_NOTES)).astype(int), 4)
    ]
    diary = pd.DataFrame(
        {
            "pidx": qi,
            "day_idx": qd,
            "back_pain": back,
            "leg_pain": leg,
            "flare": flare_col,
            "note": dnote,
            "utc": dutc,
            "wall": dwall,
            "day": dates[qi, qd].astype("datetime64[us]"),
        }
    )

    width = max(3, len(str(n)))
    traits = pd.DataFrame(
        {
            "patient_id": [f"{cfg.id_prefix}-{i + 1:0{width}d}" for i in idx],
            "timezone": zone,
            "programme_start": start.astype("datetime64[us]"),
            "clinician": clinician,
            "habit": np.where(is_dropout, "dropout", np.array(HABITS)[habit]),
            "habit_before_dropout": np.array(HABITS)[habit],
            "habit_param": h1,
            "fading_end_p": t[:, 5],
            "dropout_day": np.where(is_dropout, dropout_day, np.nan),
            "active_days": active_end,
            "dropout_hazard_per_week": hazard,
            "adherence": adherence,
            "time_habit": np.array(TIME_HABITS)[time_habit],
            "preferred_minute": pref,
            "spread_min": spread,
            "diary_minute": diary_pref,
            "diary_p": diary_p,
            "pain_class": np.array(PAIN_CLASSES)[pain_class],
            "baseline_pain": baseline,
            "pain_slope_per_week": slope,
            "sciatica": sciatica,
            "leg_baseline": leg_base,
            "knee_to_chest_single_weeks": single_weeks,
            "press_up_variant": variant,
            "reports_session_pain": reports_pain,
            "partial_dose_p": partial_p,
            "over_dose_p": over_p,
            "capacity_response": response,
        }
    )
    for k, ex_id in enumerate(EXERCISES):
        traits[f"p_{ex_id}"] = ex_p[:, k]
    return Simulation(
        cfg=cfg,
        traits=traits,
        sessions=sessions,
        diary=diary,
        session_days=session,
        done=done,
        true_pain=true_pain,
        flare=flare,
        capacity=capacity,
        weekly_pain=weekly_pain,
        weekly_sessions=weekly_sessions,
        weekly_capacity=weekly_capacity,
        export_seeds=export_seeds,
    )
