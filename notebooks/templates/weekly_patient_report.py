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

# %% tags=["parameters"]
# ruff: noqa: E402
patient_id = "DEMO-001"
week = "latest"
store = "build/demo/backcare.duckdb"

# %%
from backcare_analytics import plots
from backcare_analytics.reports.display import show
from backcare_analytics.reports.weekly import load_patient_week

pw = load_patient_week(store, week, patient_id)

# %%
pw.header()

# %% [markdown]
# ## Is the programme being done?

# %%
show(
    plots.adherence_heatmap(
        pw.heatmap_frame(), exercise_order=pw.exercise_order, labels=pw.exercise_labels
    ),
    alt="Exercises done by day over the last four weeks",
)

# %%
pw.exercise_table()

# %% [markdown]
# ## Is pain dropping?

# %%
baseline, responder_level = pw.pain_levels()
show(
    plots.pain_trend(pw.pain_frame(), baseline=baseline, responder_level=responder_level),
    alt="Daily back and leg pain with the 7-day mean, baseline and responder band",
)

# %% [markdown]
# ## Is strength work progressing as pain drops?

# %%
capacity, pain_weekly = pw.capacity_frames()
show(
    plots.capacity_vs_pain(capacity, pain_weekly, labels=pw.exercise_labels),
    alt="Weekly strength capacity and weekly back pain on one time axis",
)

# %%
show(
    plots.pushup_ladder(pw.ladder_frame(), ladder=pw.ladder),
    alt="Mini push-up ladder level by session",
)

# %%
starts, usual_hour = pw.timing_frame()
show(
    plots.session_timing(starts, usual_hour=usual_hour),
    alt="Start time of the first session of each day",
)

# %%
pw.notes()

# %%
pw.remarks()

# %%
pw.appendix()
