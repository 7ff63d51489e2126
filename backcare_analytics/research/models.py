"""Cohort models: mixed-effects models, survival, responder rates and Table 1.

Each function takes the tables of :mod:`backcare_analytics.research.cohort` and returns tidy
frames of effect sizes with 95 % confidence intervals (``estimate, ci_low, ci_high, p_value``),
kept apart from their formatting. A model that cannot be trusted says so in ``status``
(:data:`FIT_STATUSES`) and gives no estimate, interval or p-value. Model fits run on the cohort tables (one row per patient or
patient-week), never on raw sessions, so they take seconds for thousands of patients.

References
----------
Laird NM, Ware JH. Random-effects models for longitudinal data. Biometrics 1982;38:963-74.
Kaplan EL, Meier P. JASA 1958;53:457-81. Cox DR. JRSS B 1972;34:187-220.
Wilson EB. Probable inference... JASA 1927;22:209-12.
Ostelo RWJG et al. Spine 2008;33:90-4. Farrar JT et al. Pain 2001;94:149-58.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "EFFECT_COLUMNS",
    "FIT_STATUSES",
    "MIXED_OPTIMIZERS",
    "HingeFit",
    "adherence_tertiles",
    "capacity_pain_model",
    "compare_with_truth",
    "dropout_cox",
    "kaplan_meier",
    "logrank",
    "pain_adherence_model",
    "responder_rates",
    "table_one",
]

EFFECT_COLUMNS = [
    "effect", "estimate", "ci_low", "ci_high", "p_value", "n_patients", "n_obs", "status",
]  # fmt: skip
#: ``status`` of an effect: fitted; no optimiser converged (statsmodels' ``converged`` is
#: false); or converged without finite standard errors (a singular Hessian).
FIT_STATUSES = ("ok", "not_converged", "no_standard_error")
Z95 = float(stats.norm.ppf(0.975))


@contextmanager
def _quiet_upstream() -> Iterator[None]:
    """lifelines and tableone call pandas in ways pandas 4 will refuse; not ours to fix here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Starting with pandas version 4.0")
        warnings.filterwarnings("ignore", category=FutureWarning, module="lifelines|tableone")
        yield


def _effects(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


#: Optimisers a mixed model is fitted with, each tried (from where the last stopped) until one
#: converges: on the synthetic clinic's 200 patients x 12 weeks the capacity model's L-BFGS
#: stops short (REML log-likelihood 2138.8, gradient norm 171) and Powell reaches 2205.1.
MIXED_OPTIMIZERS = ("lbfgs", "powell")


def _fit_mixed(formula: str, data: pd.DataFrame, re_formula: str):
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    model = smf.mixedlm(formula, data, groups=data["patient_id"], re_formula=re_formula)
    with warnings.catch_warnings():  # the outcome is read from the fit (_fit_status)
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return model.fit(method=list(MIXED_OPTIMIZERS), reml=True)
        except np.linalg.LinAlgError:  # pragma: no cover - singular random-effects covariance
            return model.fit(method=["powell"], reml=True)


def _fit_status(fit) -> str:
    """One of :data:`FIT_STATUSES` for a mixed-model fit: every fixed effect's standard error
    must be finite, since one that is not means the covariance of them all is singular."""
    if not fit.converged:  # no optimiser of MIXED_OPTIMIZERS converged
        return "not_converged"
    return "ok" if np.isfinite(fit.bse[fit.fe_params.index]).all() else "no_standard_error"


def _row(fit, term: str, effect: str, data: pd.DataFrame, sign: float = 1.0) -> dict:
    """One effect of a mixed-model fit: Wald 95 % interval, or NaNs and the reason in
    ``status`` when the fit did not converge or gives no standard error."""
    counts = {"n_patients": int(data["patient_id"].nunique()), "n_obs": len(data)}
    est, se = float(fit.params[term]), float(fit.bse[term])
    status = _fit_status(fit)
    if status != "ok":
        nan = float("nan")
        return {"effect": effect, "estimate": nan, "ci_low": nan, "ci_high": nan,
                "p_value": nan, **counts, "status": status}  # fmt: skip
    lo, hi = est - Z95 * se, est + Z95 * se
    if sign < 0:
        est, lo, hi = -est, -hi, -lo
    return {"effect": effect, "estimate": est, "ci_low": lo, "ci_high": hi,
            "p_value": float(fit.pvalues[term]), **counts, "status": status}  # fmt: skip


def adherence_tertiles(summary: pd.DataFrame) -> pd.Series:
    """``low`` / `mid`` / ``high`` thirds of routine adherence (an ordered categorical)."""
    return pd.qcut(summary["adherence"].astype("float64"), 3, labels=["low", "mid", "high"])


def pain_adherence_model(weeks: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Weekly pain on time x adherence, random intercepts and slopes (time) per patient.

    Notes
    -----
    ``pain_mean_iw = b0 + b1 week + b2 a_i + b3 week * a_i + u0_i + u1_i week + e_iw`` with
    ``a_i`` the routine adherence (0-1), fitted by REML (statsmodels ``MixedLM``). ``b3`` is the
    change of the weekly pain slope per unit of adherence (points per week, from 0 % to 100 %
    of days covered); ``b1 + b3 a`` the slope at adherence ``a``. Wald 95 % intervals.

    Returns
    -------
    pandas.DataFrame
        :data:`EFFECT_COLUMNS`, effects ``pain_slope_per_adherence`` (``b3``) and
        ``pain_slope_at_mean_adherence``.
    """
    data = weeks.merge(summary[["patient_id", "adherence"]], on="patient_id")
    data = data[data["pain_mean"].notna()].copy()
    data["pain_mean"] = data["pain_mean"].astype("float64")
    centre = float(summary["adherence"].mean())
    data["adh_c"] = data["adherence"].astype("float64") - centre
    data["week"] = data["week"].astype("float64")
    fit = _fit_mixed("pain_mean ~ week * adh_c", data, "~week")
    return _effects(
        [
            _row(fit, "week:adh_c", "pain_slope_per_adherence", data),
            _row(fit, "week", "pain_slope_at_mean_adherence", data),
        ]
    )


@dataclass(frozen=True)
class HingeFit:
    """The pain level above which capacity stops growing, by profile least squares."""

    knee: float
    ci_low: float
    ci_high: float
    profile: pd.DataFrame  # knee, sse


def _spans(weeks: pd.DataFrame) -> pd.DataFrame:
    """Consecutive week pairs of a patient with capacity, pain and training in both weeks."""
    w = weeks[weeks["capacity"].notna() & weeks["pain_mean"].notna()].copy()
    w["capacity"] = w["capacity"].astype("float64")
    w["pain_mean"] = w["pain_mean"].astype("float64")
    nxt = w.assign(week=w["week"] - 1)[
        ["patient_id", "week", "capacity", "pain_mean", "session_share"]
    ]
    pairs = w.merge(nxt, on=["patient_id", "week"], suffixes=("", "_next"))
    pairs["gain"] = pairs["capacity_next"] - pairs["capacity"]
    return pairs


def _training_terms(pairs: pd.DataFrame, knee: float) -> tuple[np.ndarray, np.ndarray]:
    """Span means of s_w 1[P_w < knee] and of s_w P_w 1[P_w < knee] over weeks w and w+1."""
    s0, s1 = pairs["session_share"].to_numpy(float), pairs["session_share_next"].to_numpy(float)
    p0, p1 = pairs["pain_mean"].to_numpy(float), pairs["pain_mean_next"].to_numpy(float)
    on0, on1 = p0 < knee, p1 < knee
    train = (s0 * on0 + s1 * on1) / 2
    train_pain = (s0 * p0 * on0 + s1 * p1 * on1) / 2
    return train, train_pain


def _hinge(pairs: pd.DataFrame, grid: np.ndarray) -> HingeFit:
    """Profile the knee k of gain = g0 x1(k) - g1 x2(k) (least squares at each k)."""
    y = pairs["gain"].to_numpy(float)
    sse = np.empty(len(grid))
    for j, k in enumerate(grid):  # a short 1-D profile over candidate knees, not over patients
        x1, x2 = _training_terms(pairs, k)
        design = np.column_stack([np.ones_like(y), x1, x2])
        _, res, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse[j] = res[0] if len(res) else np.sum((y - design @ np.linalg.pinv(design) @ y) ** 2)
    best = int(np.argmin(sse))
    n = len(y)
    # Profile-likelihood interval: SSE(k) / SSE_min - 1 <= F(1, n - 4) / (n - 4).
    limit = sse[best] * (1 + stats.f.ppf(0.95, 1, n - 4) / (n - 4))
    inside = grid[sse <= limit]
    return HingeFit(
        knee=float(grid[best]),
        ci_low=float(inside.min()),
        ci_high=float(inside.max()),
        profile=pd.DataFrame({"knee": grid, "sse": sse}),
    )


def capacity_pain_model(
    weeks: pd.DataFrame, *, knees: np.ndarray | None = None
) -> tuple[pd.DataFrame, HingeFit]:
    """Does weekly strength capacity grow less in weeks of higher pain?

    Notes
    -----
    The weekly gain ``g_iw = C_i,w+1 - C_iw`` (capacity from :func:`patient_weeks`) is modelled as
    ``g_iw = c + b0 x1_iw - b1 x2_iw + u0_i + u1_i x1_iw + e_iw`` with
    ``x1 = mean over weeks w, w+1 of s_w 1[P_w < k]`` (training in weeks below the pain knee
    ``k``) and ``x2 = mean of s_w P_w 1[P_w < k]``, ``s_w`` the share of days trained and ``P_w``
    the weekly mean pain. ``k`` is found first by profile least squares (a weekly gain cannot fall
    below zero, so above some pain level training adds nothing); then the mixed model (REML,
    random intercept and random training slope per patient) gives ``b0`` (gain per week of full
    training at pain 0) and ``b1`` (gain lost per point of weekly pain). ``b1 > 0`` supports the
    programme's premise that muscles do not strengthen while pain is present.

    Returns
    -------
    (effects, hinge)
        ``effects``: :data:`EFFECT_COLUMNS` with ``capacity_gain_max`` (``b0``),
        ``capacity_gain_per_pain_point`` (``b1``) and ``pain_knee`` (``k``, profile interval,
        no p-value). ``hinge``: the knee profile.
    """
    pairs = _spans(weeks)
    grid = knees if knees is not None else np.round(np.arange(1.0, 9.01, 0.05), 2)
    hinge = _hinge(pairs, grid)
    x1, x2 = _training_terms(pairs, hinge.knee)
    data = pd.DataFrame(
        {"patient_id": pairs["patient_id"].to_numpy(), "gain": pairs["gain"].to_numpy(float),
         "train": x1, "train_pain": x2}
    )  # fmt: skip
    fit = _fit_mixed("gain ~ train + train_pain", data, "~train")
    rows = [
        _row(fit, "train", "capacity_gain_max", data),
        _row(fit, "train_pain", "capacity_gain_per_pain_point", data, sign=-1.0),
        {
            "effect": "pain_knee",
            "estimate": hinge.knee,
            "ci_low": hinge.ci_low,
            "ci_high": hinge.ci_high,
            "p_value": np.nan,
            "n_patients": int(data["patient_id"].nunique()),
            "n_obs": len(data),
            "status": "ok",
        },
    ]
    return _effects(rows), hinge


def dropout_cox(summary: pd.DataFrame) -> pd.DataFrame:
    """Hazard ratio of dropout per point of baseline pain (Cox proportional hazards, lifelines).

    Notes
    -----
    ``h_i(t) = h_0(t) exp(beta * baseline_pain_i)``; HR = ``exp(beta)``, 95 % interval
    ``exp(beta +- 1.96 se)``. Time: ``time_to_dropout_days / 7`` (weeks); event: ``dropout``.

    Returns
    -------
    pandas.DataFrame
        :data:`EFFECT_COLUMNS`, effect ``dropout_hazard_ratio_per_pain_point``.
    """
    from lifelines import CoxPHFitter

    data = summary[["time_to_dropout_days", "dropout", "baseline_pain"]].dropna()
    frame = pd.DataFrame(
        {"weeks": data["time_to_dropout_days"].astype(float) / 7,
         "event": data["dropout"].astype(int),
         "baseline_pain": data["baseline_pain"].astype(float)}
    )  # fmt: skip
    with _quiet_upstream():
        cph = CoxPHFitter().fit(frame, duration_col="weeks", event_col="event")
    s = cph.summary.loc["baseline_pain"]
    return _effects(
        [
            {
                "effect": "dropout_hazard_ratio_per_pain_point",
                "estimate": float(s["exp(coef)"]),
                "ci_low": float(s["exp(coef) lower 95%"]),
                "ci_high": float(s["exp(coef) upper 95%"]),
                "p_value": float(s["p"]),
                "n_patients": len(frame),
                "n_obs": int(frame["event"].sum()),
                "status": "ok",
            }
        ]
    )


def kaplan_meier(summary: pd.DataFrame, by: pd.Series | None = None) -> pd.DataFrame:
    """Kaplan-Meier estimate of staying in the programme (no dropout), per group.

    Returns
    -------
    pandas.DataFrame
        ``group, weeks, survival, ci_low, ci_high, at_risk`` (lifelines ``KaplanMeierFitter``,
        exponential Greenwood intervals), one row per group and event time, starting at week 0.
    """
    from lifelines import KaplanMeierFitter

    groups = pd.Series("all", index=summary.index) if by is None else by.astype("str")
    t = summary["time_to_dropout_days"].astype(float) / 7
    e = summary["dropout"].astype(bool)
    frames = []
    for g in sorted(groups.dropna().unique()):  # one fit per subgroup (a handful)
        m = (groups == g).to_numpy()
        with _quiet_upstream():
            kmf = KaplanMeierFitter().fit(t[m], e[m], label=str(g))
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        table = kmf.event_table
        frames.append(
            pd.DataFrame(
                {
                    "group": str(g),
                    "weeks": sf.index.to_numpy(float),
                    "survival": sf.to_numpy(),
                    "ci_low": ci.iloc[:, 0].to_numpy(),
                    "ci_high": ci.iloc[:, 1].to_numpy(),
                    "at_risk": table["at_risk"].reindex(sf.index).to_numpy(),
                }
            )  # fmt: skip
        )
    return pd.concat(frames, ignore_index=True)


def logrank(summary: pd.DataFrame, by: pd.Series) -> pd.DataFrame:
    """Log-rank test of equal dropout curves across the groups of ``by``.

    Returns
    -------
    pandas.DataFrame
        One row: ``test, statistic, df, p_value, groups``.
    """
    from lifelines.statistics import multivariate_logrank_test

    ok = by.notna()
    with _quiet_upstream():
        res = multivariate_logrank_test(
            summary.loc[ok, "time_to_dropout_days"].astype(float) / 7,
            by[ok].astype(str),
            summary.loc[ok, "dropout"].astype(bool),
        )
    return pd.DataFrame(
        {"test": ["log-rank"], "statistic": [float(res.test_statistic)],
         "df": [int(res.degrees_of_freedom)], "p_value": [float(res.p_value)],
         "groups": [int(by[ok].nunique())]}
    )  # fmt: skip


def responder_rates(summary: pd.DataFrame, by: pd.Series) -> pd.DataFrame:
    """Responder rates per group, among completers and among everyone enrolled.

    Notes
    -----
    Completers: patients who did not drop out and have baseline and final pain. All enrolled:
    every patient of the group, counting a dropout or a missing pain change as a non-responder
    (a conservative, intention-to-treat style denominator). Wilson 95 % score intervals.

    Returns
    -------
    pandas.DataFrame
        ``group, denominator (completers|all_enrolled), responders, n, rate, ci_low, ci_high``.
    """
    from statsmodels.stats.proportion import proportion_confint

    resp = summary["responder"].astype("boolean")
    completer = summary["completer"].astype(bool) & resp.notna()
    rows = []
    for g in by.cat.categories if hasattr(by, "cat") else sorted(by.dropna().unique()):
        in_g = (by == g).to_numpy()
        for name, mask in (("completers", in_g & completer.to_numpy()), ("all_enrolled", in_g)):
            k = int(
                (
                    resp.fillna(False).to_numpy(bool) & mask & summary["completer"].to_numpy(bool)
                ).sum()
            )
            n = int(mask.sum())
            lo, hi = proportion_confint(k, n, method="wilson") if n else (np.nan, np.nan)
            rows.append(
                {"group": str(g), "denominator": name, "responders": k, "n": n,
                 "rate": k / n if n else np.nan, "ci_low": float(lo), "ci_high": float(hi)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def table_one(summary: pd.DataFrame, by: pd.Series):
    """A "Table 1" of the cohort by group (``tableone.TableOne``; ``.tableone`` is the frame).

    Variables: baseline pain, routine adherence, observed days, leg pain reported, dropout,
    clinician and time zone; medians [IQR] for skewed ones.
    """
    from tableone import TableOne

    data = pd.DataFrame(
        {
            "baseline pain (NRS)": summary["baseline_pain"].astype(float),
            "adherence (PDC)": summary["adherence"].astype(float),
            "observed days": summary["observed_days"].astype(float),
            "leg pain reported": summary["leg_pain_reported"].map({True: "yes", False: "no"}),
            "dropout": summary["dropout"].map({True: "yes", False: "no"}),
            "clinician": summary["clinician"].astype(object),
            "time zone": summary["timezone"].astype(object),
            "group": by.astype(str).to_numpy(),
        }
    )
    categorical = ["leg pain reported", "dropout", "clinician", "time zone"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TableOne(
            data,
            columns=[c for c in data.columns if c != "group"],
            categorical=categorical,
            groupby="group",
            nonnormal=["adherence (PDC)", "observed days"],
            pval=False,
            missing=True,
        )


#: Where each recovered effect sits in the ``effects`` block of ``ground_truth.json``.
TRUTH_PATHS: dict[str, tuple[str, str]] = {
    "pain_slope_per_adherence": (
        "pain_slope_on_adherence", "beta_points_per_week_per_unit_adherence"),
    "capacity_gain_max": ("capacity_gain_on_pain", "g0_units_per_week"),
    "capacity_gain_per_pain_point": (
        "capacity_gain_on_pain", "gamma_units_per_week_per_nrs_point"),
    "pain_knee": ("capacity_gain_on_pain", "pain_hinge_nrs"),
    "dropout_hazard_ratio_per_pain_point": ("dropout_hazard", "hr_per_baseline_pain_point"),
}  # fmt: skip


def compare_with_truth(effects: pd.DataFrame, truth_effects: dict) -> pd.DataFrame:
    """Recovered effects side by side with the planted ones of a synthetic clinic.

    Returns
    -------
    pandas.DataFrame
        ``effect, planted, estimate, ci_low, ci_high, recovered`` (planted value inside the
        95 % interval) for every effect with a planted counterpart.
    """
    rows = effects[effects["effect"].isin(TRUTH_PATHS)].copy()
    rows["planted"] = [
        float(truth_effects[TRUTH_PATHS[e][0]][TRUTH_PATHS[e][1]]) for e in rows["effect"]
    ]
    rows["recovered"] = (rows["ci_low"] <= rows["planted"]) & (rows["planted"] <= rows["ci_high"])
    cols = ["effect", "planted", "estimate", "ci_low", "ci_high", "recovered"]
    return rows[cols].reset_index(drop=True)
