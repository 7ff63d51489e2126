"""One patient's week: the slices of the clinic-wide week data the weekly report shows.

A template does ``pw = load_patient_week(store, week, patient_id)`` and then only asks ``pw``
for ready-made pieces: HTML fragments (escaped) and the frames the plot functions take.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from backcare_analytics.reports import tables as t
from backcare_analytics.reports.context import WeekData, load_week
from backcare_analytics.reports.display import HtmlFragment, package_version, render_fragment
from backcare_analytics.schemas.clean import PATIENT_ID_PATTERN
from backcare_analytics.vocabulary import (
    ATTENTION_VERDICTS,
    DAY_MET,
    DAY_MISSED,
    DAY_NO_LOG,
    DAY_PARTIAL,
    FLAG_LABELS,
    NO_VERDICT,
    ROUTINE,
    ROUTINE_LABEL,
    VERDICT_LABELS,
)

__all__ = ["PatientWeek", "load_patient_week"]


def _rows(frame: pd.DataFrame, patient_id: str) -> pd.DataFrame:
    if frame is None or frame.empty or "patient_id" not in frame:
        return pd.DataFrame(columns=getattr(frame, "columns", []))
    return frame[frame["patient_id"] == patient_id]


@dataclass
class PatientWeek:
    """What one patient's weekly report shows (see :meth:`from_week`)."""

    patient_id: str
    data: WeekData
    patient: pd.Series
    verdict: str
    reason: str
    flags: pd.DataFrame

    @classmethod
    def from_week(cls, data: WeekData, patient_id: str) -> PatientWeek:
        import re

        if not re.fullmatch(PATIENT_ID_PATTERN, str(patient_id)):
            raise ValueError("patient_id does not match the id pattern; fix: pass a stored id")
        match = data.patients[data.patients["patient_id"] == patient_id]
        if match.empty:
            raise LookupError(
                f"no patient with this id is enrolled by {data.week.end.date()} in {data.store}; "
                "fix: check the id and the week"
            )
        row = data.overview[data.overview["patient_id"] == patient_id].iloc[0]
        return cls(
            patient_id=patient_id,
            data=data,
            patient=match.iloc[0],
            verdict=str(row["verdict"]),
            reason=str(row["reason"]),
            flags=_rows(data.flags, patient_id),
        )

    # -- frames for the plots ------------------------------------------------------------------

    def frame(self, name: str) -> pd.DataFrame:
        """This patient's rows of a clinic-wide frame."""
        return _rows(self.data.frame(name), self.patient_id)

    @property
    def exercise_labels(self) -> dict[str, str]:
        return {ex.id: ex.name for ex in self.data.protocol.exercises}

    @property
    def exercise_order(self) -> list[str]:
        return list(self.data.protocol.exercise_ids)

    def heatmap_frame(self) -> pd.DataFrame:
        """``exercise_id, day, status`` over the history window (met/partial/missed/no_log)."""
        d = self.frame("adherence_daily")
        d = d[self.data.history.contains(d["day"])] if not d.empty else d
        if d.empty:
            return pd.DataFrame({"exercise_id": [], "day": [], "status": []})
        status = pd.Series(DAY_MISSED, index=d.index, dtype="str")
        status = status.mask(d["done"] & ~d["met"], DAY_PARTIAL).mask(d["met"], DAY_MET)
        status = status.mask(~d["logged"], DAY_NO_LOG)
        return pd.DataFrame(
            {"exercise_id": d["exercise_id"], "day": d["day"], "status": status}
        ).reset_index(drop=True)

    def pain_frame(self) -> pd.DataFrame:
        """``day, back_pain, leg_pain, back_pain_7d, flare`` over the history window."""
        d = self.frame("pain_daily")
        if d.empty:
            return pd.DataFrame(
                {"day": [], "back_pain": [], "leg_pain": [], "back_pain_7d": [], "flare": []}
            )
        d = d[self.data.history.contains(d["day"])]
        wide = d.pivot_table(
            index="day", columns="measure", values=["pain", "trailing_mean", "flare_day"],
            aggfunc="first",
        )  # fmt: skip
        out = pd.DataFrame(index=wide.index)
        out["back_pain"] = wide.get(("pain", "back_pain"))
        out["leg_pain"] = wide.get(("pain", "leg_pain"))
        # Display smoothing of this one patient's series: mean of the diary days in the 7 days
        # ending on each day (time-based window, so gaps shorten it rather than stretch it).
        back = wide.get(("pain", "back_pain"))
        out["back_pain_7d"] = (
            back.astype("float64").rolling("7D", min_periods=1).mean() if back is not None else None
        )
        out["flare"] = wide.get(("flare_day", "back_pain"))
        return out.reset_index()

    def pain_levels(self) -> tuple[float | None, float | None]:
        """Baseline back pain and the responder level: baseline minus the larger of the pain
        policy's responder points and responder percent of baseline (2 points, 30 %)."""
        s = self.frame("pain_summary")
        s = s[s["measure"] == "back_pain"] if not s.empty else s
        if s.empty or pd.isna(s["baseline_pain"].iloc[0]):
            return None, None
        base = float(s["baseline_pain"].iloc[0])
        policy = self.data.policies["pain"]
        return base, base - max(policy.responder_points, policy.responder_pct / 100 * base)

    def timing_frame(self) -> tuple[pd.DataFrame, float | None]:
        """``day, start_hour`` of the first session of each day, and the usual start time."""
        d = self.frame("first_session_times")
        usual = None
        tc = self.frame("timing_consistency")
        if not tc.empty:
            usual = float(tc["circular_median_h"].iloc[0])
        if d.empty:
            return pd.DataFrame({"day": [], "start_hour": []}), usual
        d = d[self.data.history.contains(d["day"])]
        return pd.DataFrame({"day": d["day"], "start_hour": d["first_start_local_h"]}), usual

    def ladder_frame(self) -> pd.DataFrame:
        """``day, level, reps`` of every mini push-up row up to the week's end."""
        s = self.frame("sessions")
        s = s[s["exercise_id"] == "mini_push_up"]
        return pd.DataFrame({"day": s["day"], "level": s["level"], "reps": s["reps"]})

    @property
    def ladder(self) -> list[str]:
        ex = self.data.protocol.by_id.get("mini_push_up")
        return list(ex.ladder) if ex is not None else []

    def capacity_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Weekly capacity as % of the first week, and weekly mean back pain."""
        cap = self.frame("capacity_weekly")
        cap = cap[cap["capacity_s"].notna()] if not cap.empty else cap
        if cap.empty:
            cap = pd.DataFrame({"week_start": [], "exercise_id": [], "capacity_pct": []})
        else:
            # Hold exercises (bridge, press-up): reps x hold in seconds, as % of the first
            # week; the push-up's ladder has its own picture.
            per = cap.groupby(["exercise_id", "week_start"], as_index=False)["capacity_s"].mean()
            first = per.groupby("exercise_id")["capacity_s"].transform("first")
            per["capacity_pct"] = 100.0 * per["capacity_s"] / first
            cap = per
        pain = self.frame("pain_daily")
        if pain.empty:
            weekly = pd.DataFrame({"week_start": [], "back_pain": []})
        else:
            back = pain[pain["measure"] == "back_pain"]
            start = back["day"] - pd.to_timedelta(back["day"].dt.day_of_week, unit="D")
            weekly = (
                back.assign(week_start=start)
                .groupby("week_start", as_index=False)["pain"]
                .mean()
                .rename(columns={"pain": "back_pain"})
            )
        return cap, weekly

    # -- fragments -----------------------------------------------------------------------------

    def header(self) -> HtmlFragment:
        """Patient, week, the verdict in one sentence with its reason, and the flags."""
        week = self.data.week
        start = pd.Timestamp(self.patient["programme_start"])
        tone = (
            "attention"
            if self.verdict in ATTENTION_VERDICTS
            else "neutral"
            if self.verdict == NO_VERDICT
            else ""
        )
        flags = [
            {
                "label": FLAG_LABELS.get(f.flag, f.flag),
                "detail": f.detail,
                "severity": f.severity,
            }
            for f in self.flags.itertuples(index=False)
        ]
        clinician = self.patient.get("clinician")
        return render_fragment(
            "header.html.j2",
            text=f"{VERDICT_LABELS.get(self.verdict, self.verdict)}: {self.reason}",
            patient_id=self.patient_id,
            week=week.label,
            week_span=f"{week.start:%a %d %b} – {week.end:%a %d %b %Y}",
            clinician=None if pd.isna(clinician) else clinician,
            programme_day=(week.end - start).days + 1,
            tone=tone,
            verdict_label=VERDICT_LABELS.get(self.verdict, self.verdict),
            reason=self.reason,
            flags=flags,
        )

    def exercise_table(self) -> HtmlFragment:
        """Per exercise this week: days met, PDC, prescribed and performed dose, hold, pain."""
        week = self.data.week
        summ = self.frame("adherence_summary")
        daily = self.frame("adherence_daily")
        daily = daily[week.contains(daily["day"])] if not daily.empty else daily
        tol = self.tolerance_summary()
        rows = []
        names = self.exercise_labels
        for ex in [*self.exercise_order, ROUTINE]:
            s = summ[summ["exercise_id"] == ex] if not summ.empty else summ
            if s.empty:
                continue
            s = s.iloc[0]
            d = daily[daily["exercise_id"] == ex] if not daily.empty else daily
            done = d[d["done"]] if not d.empty else d
            presc = d["volume_prescribed"].iloc[-1] if not d.empty else None
            hold_p = d["hold_prescribed_s"].iloc[-1] if not d.empty else None
            tr = tol[tol["exercise_id"] == ex] if not tol.empty else tol
            rows.append(
                {
                    "Exercise": ROUTINE_LABEL if ex == ROUTINE else names.get(ex, ex),
                    "Days met": t.days_of(s["days_met"], s["days"]),
                    "Adherence": t.percent(s["pdc"]),
                    "Dose prescribed": t.number(presc, 0, "reps") if ex != ROUTINE else "",
                    "Dose done (mean)": t.number(done["volume_performed"].mean(), 0, "reps")
                    if ex != ROUTINE and len(done)
                    else t.DASH,
                    "Hold": (
                        f"{t.seconds(done['hold_mean_s'].mean())} of {t.seconds(hold_p)}"
                        if ex != ROUTINE and hold_p is not None and not pd.isna(hold_p)
                        else t.DASH
                    ),
                    "Tolerance": str(tr["summary"].iloc[0]) if len(tr) else t.DASH,
                }
            )
        frame = pd.DataFrame(rows)
        if frame.empty:
            return HtmlFragment("<p class='muted'>No prescription in force this week.</p>")
        return t.html_table(
            frame,
            numeric=("Days met", "Adherence", "Dose prescribed", "Dose done (mean)"),
            caption="Days met: dose ≥ 80 % of the prescribed minimum. Adherence: share of the "
            "week's days met. A day without any log counts as not met; see remarks.",
        )

    def tolerance_summary(self) -> pd.DataFrame:
        """Per exercise this week: ``exercise_id, summary`` ("5/6 tolerated, 1 red")."""
        tol = self.frame("session_tolerance")
        if tol.empty:
            return pd.DataFrame({"exercise_id": [], "summary": []})
        tol = tol[self.data.week.contains(tol["day"])]
        judged = tol["tolerated"].notna()
        agg = (
            pd.DataFrame(
                {
                    "exercise_id": tol["exercise_id"],
                    "judged": judged,
                    "ok": tol["tolerated"].fillna(False).astype(bool),
                    "red": tol["light"].eq("red").fillna(False).astype(bool),
                }
            )
            .groupby("exercise_id", as_index=False)[["judged", "ok", "red"]]
            .sum()
        )
        text = agg["ok"].astype(str) + "/" + agg["judged"].astype(str) + " tolerated"
        text = text.where(agg["red"] == 0, text + ", " + agg["red"].astype(str) + " red")
        text = text.where(agg["judged"] > 0, t.DASH)
        return pd.DataFrame({"exercise_id": agg["exercise_id"], "summary": text})

    def notes(self) -> HtmlFragment:
        """The patient's free-text notes of the week, escaped."""
        week = self.data.week
        parts = []
        for name, source in (("sessions", "session"), ("pain", "diary")):
            f = self.frame(name)
            if f.empty:
                continue
            f = f[week.contains(f["day"]) & f["note"].notna() & (f["note"] != "")]
            parts.append(pd.DataFrame({"day": f["day"], "source": source, "text": f["note"]}))
        notes = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        items = []
        if not notes.empty:
            notes = notes.drop_duplicates(["day", "text"]).sort_values("day", kind="stable")
            items = [
                {"day": f"{r.day:%a %d %b}", "source": r.source, "text": r.text}
                for r in notes.itertuples(index=False)
            ]
        return render_fragment("notes.html.j2", text=f"{len(items)} notes", notes=items)

    def remarks(self) -> HtmlFragment:
        """Numbered data-quality remarks: the week's quality flags."""
        q = self.frame("quality_flags")
        remarks = [str(d) for d in q["detail"]] if not q.empty else []
        return render_fragment("remarks.html.j2", text=f"{len(remarks)} remarks", remarks=remarks)

    def appendix(self) -> HtmlFragment:
        """Every threshold used and the provenance of the numbers."""
        rows = []
        for pname, pol in self.data.policies.items():
            if dataclasses.is_dataclass(pol):
                for f in dataclasses.fields(pol):
                    rows.append({"policy": pname, "name": f.name, "value": getattr(pol, f.name)})
        rules = self.data.protocol.rules
        for section in ("progression", "regression"):
            for key, value in getattr(rules, section).model_dump().items():
                rows.append({"policy": f"protocol {section}", "name": key, "value": value})
        prov = self.data.provenance
        imports = prov["imports"]
        shas = set(self.frame("sessions")["source_file"]) | set(self.frame("pain")["source_file"])
        files = imports[imports["sha256"].isin(shas)] if not imports.empty else imports
        files = [
            {
                "sha256": r.sha256,
                "format": r.format,
                "kind": r.kind,
                "rows_read": r.rows_read,
                "accepted": r.accepted,
                "rejected": r.rejected,
                "imported_at": f"{r.imported_at:%Y-%m-%d %H:%M}",
            }
            for r in files.itertuples(index=False)
        ]
        proto = self.data.protocol
        return render_fragment(
            "appendix.html.j2",
            text="appendix",
            policies=rows,
            version=package_version(),
            protocol=f"{proto.protocol_id} v{proto.version}",
            store=prov["store"],
            computed_at=prov["computed_at"],
            rendered_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            files=files,
        )


def load_patient_week(store: Path | str, week: str, patient_id: str) -> PatientWeek:
    """The patient's week from the store (the clinic-wide week is computed once per process)."""
    return PatientWeek.from_week(load_week(store, week), patient_id)
