"""The words of the results: verdict classes, the weekly report's flags, their labels and
severities, the adherence status of a day, and the full-routine pseudo-exercise.

This is the one home of these words. Metrics write them, result schemas check them, reports and
plots label them, and docs/metrics.md and docs/reports.md list them; each of those reads them
from here. The module sits at the bottom of the package: it imports nothing of it, so any
module may import it without making a circle. A later state or flag (a patient status, a
safety flag) is added here first, with its label and severity, then used elsewhere.

>>> VERDICT_LABELS["pain_improving_strength_stalled"]
'Pain improving, strength stalled'
>>> [f for f in WEEK_FLAGS if FLAG_SEVERITY[f] == GOOD]
['ready_to_progress']
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTENTION_VERDICTS",
    "DAY_MET",
    "DAY_MISSED",
    "DAY_NO_LOG",
    "DAY_PARTIAL",
    "DAY_STATUSES",
    "DAY_STATUS_LABELS",
    "FLAG_LABELS",
    "FLAG_SEVERITIES",
    "FLAG_SEVERITY",
    "GOOD",
    "NO_VERDICT",
    "ROUTINE",
    "ROUTINE_LABEL",
    "VERDICTS",
    "VERDICT_LABELS",
    "VERDICT_PRIORITY",
    "WARN",
    "WEEK_FLAGS",
]

#: The pseudo exercise id of the full routine in the adherence tables. Protocol exercise ids
#: start with a letter, so none can collide with it.
ROUTINE: Final = "_routine"
#: How reports name the full routine.
ROUTINE_LABEL: Final = "Full routine"

#: The verdict classes of ``weekly_verdict``; ``insufficient_data`` when the weekly series are
#: too short (definitions in docs/metrics.md).
VERDICTS: Final = (
    "progressing",
    "pain_improving_strength_stalled",
    "loading_ahead_of_symptoms",
    "review",
    "insufficient_data",
)
#: The verdict shown when none was computed for a patient's week.
NO_VERDICT: Final = "insufficient_data"
#: How reports name each verdict.
VERDICT_LABELS: Final[dict[str, str]] = {
    "review": "Review",
    "loading_ahead_of_symptoms": "Loading ahead of symptoms",
    "pain_improving_strength_stalled": "Pain improving, strength stalled",
    "insufficient_data": "Insufficient data",
    "progressing": "Progressing",
}
#: Verdicts in order of who needs attention first (0 first).
VERDICT_PRIORITY: Final[dict[str, int]] = {
    "review": 0,
    "loading_ahead_of_symptoms": 1,
    "pain_improving_strength_stalled": 2,
    "insufficient_data": 3,
    "progressing": 4,
}
#: Verdicts that by themselves mark a patient for the clinician's attention.
ATTENTION_VERDICTS: Final = frozenset({"review", "loading_ahead_of_symptoms"})

#: Severity of a flag that needs the clinician.
WARN: Final = "warn"
#: Severity of good news (ready to progress).
GOOD: Final = "good"
#: Every flag severity.
FLAG_SEVERITIES: Final = (WARN, GOOD)

#: Every flag a weekly report can raise, in the order the report shows them.
WEEK_FLAGS: Final = (
    "consider_regression",
    "flare",
    "pain_rise",
    "dropout_risk",
    "missed_days",
    "ready_to_progress",
)
#: How reports name each flag.
FLAG_LABELS: Final[dict[str, str]] = {
    "consider_regression": "Consider regression",
    "flare": "Flare",
    "pain_rise": "Pain rise",
    "dropout_risk": "Dropout risk",
    "missed_days": "Missed days",
    "ready_to_progress": "Ready to progress",
}
#: The severity of each flag.
FLAG_SEVERITY: Final[dict[str, str]] = {
    "consider_regression": WARN,
    "flare": WARN,
    "pain_rise": WARN,
    "dropout_risk": WARN,
    "missed_days": WARN,
    "ready_to_progress": GOOD,
}

#: The adherence status of one exercise on one day, as the report's heatmap shows it: the dose
#: was met, partly done, not done although the patient logged that day, or nothing was logged
#: at all (a day without any log is not a missed exercise).
DAY_MET: Final = "met"
DAY_PARTIAL: Final = "partial"
DAY_MISSED: Final = "missed"
DAY_NO_LOG: Final = "no_log"
#: Every day status, in the order of the heatmap's legend.
DAY_STATUSES: Final = (DAY_MET, DAY_PARTIAL, DAY_MISSED, DAY_NO_LOG)
#: How the heatmap's legend names each day status.
DAY_STATUS_LABELS: Final[dict[str, str]] = {
    DAY_MET: "met (dose ≥ 80 %)",
    DAY_PARTIAL: "partial",
    DAY_MISSED: "missed",
    DAY_NO_LOG: "no log that day",
}
