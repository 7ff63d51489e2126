"""The clinic overview of a week: every patient in one table, who needs attention first.

Each row links to the patient's weekly report by a relative ``href`` built from the validated
patient id only (:func:`~backcare_analytics.reports.render.patient_file_name`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from markupsafe import Markup

from backcare_analytics.reports import tables as t
from backcare_analytics.reports.context import WeekData, load_week
from backcare_analytics.reports.display import HtmlFragment, render_fragment
from backcare_analytics.store import Store
from backcare_analytics.vocabulary import (
    ATTENTION_VERDICTS,
    FLAG_LABELS,
    FLAG_SEVERITY,
    VERDICT_LABELS,
    WARN,
    WEEK_FLAGS,
)

__all__ = ["ClinicWeek", "load_clinic_week"]


class ClinicWeek:
    """What the clinic overview shows for one week."""

    def __init__(self, data: WeekData) -> None:
        self.data = data

    @property
    def table(self) -> pd.DataFrame:
        """The attention table (numbers, not formatted): see ``reports.flags.attention_table``."""
        return self.data.overview

    def header(self) -> HtmlFragment:
        week = self.data.week
        ov = self.data.overview
        counts = ov["verdict"].value_counts()
        summary = [
            {
                "label": VERDICT_LABELS[v],
                "count": int(counts.get(v, 0)),
                "severity": WARN if v in ATTENTION_VERDICTS else "",
            }
            for v in VERDICT_LABELS
            if counts.get(v, 0)
        ]
        return render_fragment(
            "overview_header.html.j2",
            text=f"Clinic overview {week.label}",
            week=week.label,
            week_span=f"{week.start:%a %d %b} – {week.end:%a %d %b %Y}",
            n_patients=len(ov),
            summary=summary,
        )

    def patient_table(self) -> HtmlFragment:
        """Every patient: link, verdict, reason, flags, adherence and pain of the week."""
        from backcare_analytics.reports.render import patient_file_name

        ov = self.data.overview
        links = [
            Markup('<a href="{}">{}</a>').format(patient_file_name(pid), pid)
            for pid in ov["patient_id"]
        ]
        flag_text = [
            ", ".join(FLAG_LABELS.get(f, f) for f in codes) or t.DASH for codes in ov["flags"]
        ]
        frame = pd.DataFrame(
            {
                "Patient": pd.Series(links, dtype=object),  # keep Markup (str dtype drops it)
                "Verdict": ov["verdict"].map(VERDICT_LABELS).fillna(ov["verdict"]),
                "Why": ov["reason"],
                "Flags": flag_text,
                "Routine adherence": [t.percent(v) for v in ov["pdc_week"]],
                "Back pain (week mean)": [t.nrs(v) for v in ov["back_pain_week"]],
                "Clinician": ov["clinician"].fillna(t.DASH),
            }
        )
        classes = ["attention" if n > 0 or v in ATTENTION_VERDICTS else "" for n, v in zip(
            ov["n_warn"], ov["verdict"], strict=True)]  # fmt: skip
        return t.html_table(
            frame,
            numeric=("Routine adherence", "Back pain (week mean)"),
            row_classes=classes,
            caption="Order: verdict (review first), then number of warning flags. "
            "Click a patient id to open the weekly report.",
        )

    def flag_counts(self) -> HtmlFragment:
        """How many patients carry each flag this week."""
        counts = self.data.flags.groupby("flag")["patient_id"].nunique()
        frame = pd.DataFrame(
            {
                "Flag": [FLAG_LABELS[f] for f in WEEK_FLAGS],
                "Patients": [int(counts.get(f, 0)) for f in WEEK_FLAGS],
                "Kind": [
                    "needs attention" if FLAG_SEVERITY[f] == WARN else "good news"
                    for f in WEEK_FLAGS
                ],
            }
        )
        return t.html_table(frame, numeric=("Patients",))


def load_clinic_week(store: Store | Path | str, week: str = "latest") -> ClinicWeek:
    """The clinic's week from the store, or its file (computed once per process)."""
    return ClinicWeek(load_week(store, week))
