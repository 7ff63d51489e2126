"""Configuration of the synthetic clinic: its size, its seed and the effects planted in it.

Every planted effect is a field of :class:`SynthConfig`, so a research notebook can change one
and check that its analysis recovers the new value; the values used are written into the
``effects`` block of ``ground_truth.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from backcare_analytics.errors import ConfigError

__all__ = ["PAIN_CLASSES", "SynthConfig", "TIMEZONES"]

#: The patients' time zones (DST changes: US second Sunday of March, EU last Sunday of March,
#: both back in late October / early November).
TIMEZONES = ("Europe/Amsterdam", "Europe/London", "America/New_York")

#: Pain-trajectory classes and their share of patients.
PAIN_CLASSES = ("responder", "slow_responder", "non_responder", "flare_prone")


@dataclass(frozen=True)
class SynthConfig:
    """What to simulate.

    The first five fields are the ``backcare synth`` options. The rest are the planted effects
    (see ``docs/synthetic-clinic.md`` for the formulas) and the export mix.

    >>> SynthConfig(patients=3, weeks=2).days
    14
    """

    patients: int = 12
    weeks: int = 8
    seed: int = 7
    bad_share: float = 0.01
    start: date = date(2026, 1, 5)
    #: Patient ids are ``<prefix>-001`` ...; keep them visibly synthetic.
    id_prefix: str = "DEMO"
    #: Programme starts are spread over ``start`` ... ``start + stagger_days``.
    stagger_days: int = 6

    # --- planted effect 1: weekly pain slope depends on adherence ---------------------------
    #: slope_i = class_slope + pain_slope_per_adherence * (adherence_i - adherence_ref)
    pain_slope_per_adherence: float = -0.4
    adherence_ref: float = 0.75
    class_slope: dict[str, float] = field(
        default_factory=lambda: {
            "responder": -0.35,
            "slow_responder": -0.15,
            "non_responder": 0.08,
            "flare_prone": -0.10,
        }
    )
    class_share: dict[str, float] = field(
        default_factory=lambda: {
            "responder": 0.35,
            "slow_responder": 0.25,
            "non_responder": 0.2,
            "flare_prone": 0.2,
        }
    )
    patient_slope_sd: float = 0.05
    daily_pain_sd: float = 0.8
    flare_points: float = 3.0

    # --- planted effect 2: capacity grows only while pain is low ------------------------------
    #: dC_w = r_i * a_w * max(0, capacity_gain_max - capacity_gain_per_pain_point * P_w)
    capacity_gain_max: float = 0.15
    capacity_gain_per_pain_point: float = 0.025
    #: r_i ~ Uniform(1 - spread, 1 + spread): how strongly a patient responds to training.
    capacity_response_spread: float = 0.3

    # --- planted effect 3: dropout hazard rises with baseline pain ----------------------------
    #: weekly hazard after the first week: h_i = h0 * hr ** (baseline_i - dropout_pain_ref)
    dropout_hazard_per_week: float = 0.03
    dropout_hazard_ratio_per_pain_point: float = 1.3
    dropout_pain_ref: float = 5.5

    # --- exports ------------------------------------------------------------------------------
    #: Share of weekly files that repeat the last 1-3 days of the week before.
    overlap_share: float = 0.35
    #: Share of re-exported records that come back edited (apps that write ``updated_at``).
    edit_share: float = 0.04
    #: Share of patients whose app writes each format (normalised).
    format_share: dict[str, float] = field(
        default_factory=lambda: {
            "csv": 0.45,
            "json": 0.1,
            "json_envelope": 0.1,
            "jsonl": 0.2,
            "xlsx": 0.15,
        }
    )

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.patients <= 1_000_000:
            problems.append(f"patients must be 1..1000000, received {self.patients}")
        if not 1 <= self.weeks <= 104:
            problems.append(f"weeks must be 1..104, received {self.weeks}")
        if not 0.0 <= self.bad_share <= 0.5:
            problems.append(f"bad_share must be 0..0.5, received {self.bad_share}")
        if not 0.0 <= self.overlap_share <= 1.0 or not 0.0 <= self.edit_share <= 1.0:
            problems.append("overlap_share and edit_share must be 0..1")
        if set(self.class_slope) != set(PAIN_CLASSES) or set(self.class_share) != set(PAIN_CLASSES):
            problems.append(f"class_slope and class_share need exactly the keys {PAIN_CLASSES}")
        if not isinstance(self.start, date):
            problems.append("start must be a datetime.date")
        if problems:
            raise ConfigError("SynthConfig: " + "; ".join(problems) + "; fix: adjust the values")

    @property
    def days(self) -> int:
        """Programme days simulated per patient."""
        return self.weeks * 7

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON-ready values (dates as ISO strings)."""
        out = asdict(self)
        out["start"] = self.start.isoformat()
        return out
