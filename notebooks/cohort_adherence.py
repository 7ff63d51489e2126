# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cohort adherence, dropout and the programme's premise
#
# Who adheres, who drops out, and do adherence and falling pain go with strength gains? The
# programme's own premise is that muscles do not strengthen while pain is present. This notebook
# is thin: every number comes from `backcare_analytics.research`. By default it runs on a
# synthetic clinic, so the effects the generator planted can be set beside what the analysis
# recovers; set `store` to analyse a real store instead.

# %% tags=["parameters"]
patients = 200  # synthetic cohort size
weeks = 12  # programme length of the synthetic cohort
seed = 1  # generator seed
store = ""  # a DuckDB store to analyse instead of the synthetic clinic
programme_days = 0  # programme length in days for a store (0: weeks * 7)
out_dir = ""  # when set, the effects table is written there as CSV

# %%
import warnings  # noqa: E402 (the parameters cell comes first)
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.display import display  # noqa: E402

from backcare_analytics.research import cohort, figures, models  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
pd.set_option("display.precision", 3)

if store:
    from backcare_analytics.store import Store

    db = Store(store)
    tables = {"sessions": db.sessions(), "pain": db.pain(), "patients": db.patients()}
    truth = None
    days = programme_days or weeks * 7
else:
    from backcare_analytics.synth import simulate
    from backcare_analytics.synth.config import SynthConfig

    clinic = simulate(SynthConfig(patients=patients, weeks=weeks, seed=seed))
    tables = {"sessions": clinic.sessions, "pain": clinic.pain, "patients": clinic.patients}
    truth = clinic.truth["effects"]
    days = clinic.config.days
policy = cohort.CohortPolicy(programme_days=days)
tables_out = cohort.cohort_metrics(tables, policy=policy)
summary, weekly, pdc = tables_out["summary"], tables_out["weeks"], tables_out["exercise_pdc"]
tertile = models.adherence_tertiles(summary)
print(
    f"{len(summary)} patients, {len(weekly)} patient-weeks, {len(tables['sessions'])} session rows"
)

# %% [markdown]
# ## Table 1 — the cohort by adherence tertile

# %%
display(models.table_one(summary, tertile).tableone)

# %% [markdown]
# ## Adherence: routine and per exercise (proportion of days covered)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
figures.plot_adherence_distribution(summary, ax=axes[0])
figures.plot_exercise_pdc(pdc, ax=axes[1])
plt.show()

# %% [markdown]
# ## Event timelines, gaps shaded (twelve patients with the most gaps)

# %%
events, gaps = cohort.event_timeline(
    tables["sessions"], tables["pain"], tables["patients"], summary=summary
)
shown = gaps["patient_id"].value_counts().index[:12]
figures.plot_timelines(events[events["patient_id"].isin(shown)], gaps)
plt.show()

# %% [markdown]
# ## Persistence and dropout
#
# Kaplan–Meier curves of time to dropout (21 days without any log), by adherence tertile and by
# baseline-pain tertile, each with a log-rank test; then a Cox model of dropout on baseline pain.

# %%
pain_tertile = pd.qcut(summary["baseline_pain"].astype(float), 3, labels=["low", "mid", "high"])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
figures.plot_kaplan_meier(models.kaplan_meier(summary, tertile), ax=axes[0])
axes[0].set_title("By adherence tertile")
figures.plot_kaplan_meier(models.kaplan_meier(summary, pain_tertile), ax=axes[1])
axes[1].set_title("By baseline-pain tertile")
plt.show()
logrank = pd.concat(
    [
        models.logrank(summary, tertile).assign(by="adherence tertile"),
        models.logrank(summary, pain_tertile).assign(by="baseline pain tertile"),
    ],
    ignore_index=True,
)
display(logrank)

# %%
dropout = models.dropout_cox(summary)
display(dropout)

# %% [markdown]
# ## Responders by adherence tertile
#
# A responder's back pain fell by at least 2 points or 30 % from baseline (first 7 days) to the
# last 7 observed days. Completers and all enrolled (dropouts counted as non-responders) side by
# side, Wilson 95 % intervals.

# %%
rates = models.responder_rates(summary, tertile)
figures.plot_responders(rates)
plt.show()
display(rates)

# %% [markdown]
# ## Weekly pain on time × adherence (mixed model)
#
# Random intercepts and slopes (week) per patient. `pain_slope_per_adherence` is how much faster
# pain falls per week going from 0 % to 100 % of days covered.

# %%
pain_model = models.pain_adherence_model(weekly, summary)
display(pain_model)

# %% [markdown]
# ## The premise: does capacity grow less in weeks of higher pain?
#
# Weekly strength capacity is the bridge hold relative to its 15 s prescription. The gain from one
# week to the next is modelled on training below a pain knee and on training × pain (random
# intercept and training slope per patient); the knee comes from a profile fit.

# %%
capacity_model, hinge = models.capacity_pain_model(weekly)
display(capacity_model)

# %% [markdown]
# ## Planted effects beside what the analysis recovered

# %%
effects = pd.concat([pain_model, capacity_model, dropout], ignore_index=True)
if truth is not None:
    comparison = models.compare_with_truth(effects, truth)
    figures.plot_effects(comparison)
    plt.show()
else:
    comparison = effects
if out_dir:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    comparison.to_csv(Path(out_dir) / "effects.csv", index=False)
display(comparison)
