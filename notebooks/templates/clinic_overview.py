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
week = "latest"
store = "build/demo/backcare.duckdb"

# %%
from backcare_analytics.reports.overview import load_clinic_week

clinic = load_clinic_week(store, week)

# %%
clinic.header()

# %% [markdown]
# ## Every patient, who needs attention first

# %%
clinic.patient_table()

# %% [markdown]
# ## Flags this week

# %%
clinic.flag_counts()
