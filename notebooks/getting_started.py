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
# # Getting started: one patient, step by step
#
# This notebook walks through what the weekly report shows for one patient: the data in the
# store, each metric, and each plot. Run `make demo` first: it builds the demo clinic's store
# under `build/demo/`. Change `patient_id` below to look at someone else.
#
# Everything here is synthetic. Outputs of this notebook must never be committed.

# %% tags=["parameters"]
# ruff: noqa: E402, B018, E703
patient_id = "DEMO-001"
week = "latest"
store = "../build/demo/backcare.duckdb"

# %% [markdown]
# ## 1. The data in the store
# The store is a DuckDB file. `Store` opens a short read-only connection per query, so the
# notebook never locks the file against an import.

# %%
from backcare_analytics.store import Store

db = Store(store)
db.patients().head()

# %%
db.sessions(patient_ids=[patient_id]).tail(10)

# %%
db.pain(patient_ids=[patient_id]).tail(10)

# %% [markdown]
# ## 2. The week's metrics
# `load_week` computes every metric for every patient once (vectorised), then `PatientWeek`
# slices out one patient. The same objects feed the rendered report.

# %%
from backcare_analytics.reports.context import load_week
from backcare_analytics.reports.weekly import PatientWeek

data = load_week(store, week)
pw = PatientWeek.from_week(data, patient_id)
data.label, pw.verdict, pw.reason

# %% [markdown]
# Adherence per exercise and day (dose ratio, met), and this week's summary (PDC, days met):

# %%
pw.frame("adherence_daily").tail(14)

# %%
pw.frame("adherence_summary")

# %% [markdown]
# Pain: daily values with the trailing mean and flare days, and the summary
# (baseline, current, responder, trend in points per week):

# %%
pw.frame("pain_daily").tail(10)

# %%
pw.frame("pain_summary").T

# %% [markdown]
# Timing consistency, persistence and this week's flags:

# %%
pw.frame("timing_consistency")

# %%
pw.frame("persistence")

# %%
pw.flags

# %% [markdown]
# ## 3. Each plot
# Plot functions take these frames, return the matplotlib `Axes`, and compute nothing.

# %%
from backcare_analytics import plots

plots.adherence_heatmap(
    pw.heatmap_frame(), exercise_order=pw.exercise_order, labels=pw.exercise_labels
);

# %%
baseline, responder_level = pw.pain_levels()
plots.pain_trend(pw.pain_frame(), baseline=baseline, responder_level=responder_level);

# %%
capacity, pain_weekly = pw.capacity_frames()
plots.capacity_vs_pain(capacity, pain_weekly, labels=pw.exercise_labels);

# %%
plots.pushup_ladder(pw.ladder_frame(), ladder=pw.ladder);

# %%
starts, usual_hour = pw.timing_frame()
plots.session_timing(starts, usual_hour=usual_hour);

# %% [markdown]
# ## 4. The formatted pieces of the report
# Tables for people ("5/7 days", "82 %"), remarks and the appendix of thresholds:

# %%
pw.exercise_table()

# %%
pw.remarks()

# %%
pw.appendix()
