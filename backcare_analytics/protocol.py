"""The programme as data: exercises, doses, ladders, rules and per-patient prescriptions.

A protocol is a YAML file (``data/protocols/*.yaml``) read with a safe loader and checked
strictly: unknown keys, impossible doses, duplicate ids or aliases are refused with a message that
names the key and the fix.

>>> proto = load_protocol()
>>> proto.exercise_ids
('breathing', 'knee_to_chest', 'bridge', 'sciatic_floss', 'low_back_roll', 'prone_press_up', 'mini_push_up')
>>> proto.resolve_exercise("Low Back Stretch"), proto.resolve_exercise("mini push-up")
('knee_to_chest', 'mini_push_up')
>>> proto.resolve_exercise("Sciatic Nerve Flos") is None
True
>>> proto.suggest_exercise("Sciatic Nerve Flos")
'sciatic_floss'
"""

from __future__ import annotations

import difflib
import unicodedata
from datetime import date
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backcare_analytics.config import get_settings
from backcare_analytics.errors import ProtocolError

__all__ = [
    "Dose",
    "Exercise",
    "PrescriptionOverride",
    "Protocol",
    "alias_key",
    "build_prescriptions",
    "load_prescription_overrides",
    "load_protocol",
    "prescriptions_on",
]

Sidedness = Literal["none", "single_or_both", "per_side", "alternating"]
Category = Literal["warm_up", "stretch", "strength", "neural_mobility", "mobility", "extension"]
SIDES = ("both", "left", "right", "none")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Dose(_Strict):
    """The prescribed minimum for one session: ``sets`` x ``reps`` (each side if ``per_side``),
    each held ``hold_s`` seconds when the exercise is a hold."""

    sets: int = Field(1, ge=1, le=10)
    reps: int = Field(ge=1, le=100)
    reps_max: int | None = Field(None, ge=1, le=100)
    hold_s: float | None = Field(None, gt=0, le=300)
    unit: Literal["reps", "breaths"] = "reps"
    per_side: bool = False

    @model_validator(mode="after")
    def _range(self) -> Dose:
        if self.reps_max is not None and self.reps_max < self.reps:
            raise ValueError(
                f"reps_max ({self.reps_max}) is below reps ({self.reps}); "
                "fix: reps is the prescribed minimum, reps_max the upper end of the range"
            )
        return self


class Exercise(_Strict):
    """One exercise of the routine."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    name: str = Field(min_length=1, max_length=80)
    category: Category
    sidedness: Sidedness = "none"
    dose: Dose
    cue: str | None = None
    aliases: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    default_variant: str | None = None
    ladder: tuple[str, ...] = ()
    default_level: str | None = None
    expected_symptoms: tuple[Literal["leg_pain", "back_pain"], ...] = ()

    @model_validator(mode="after")
    def _choices(self) -> Exercise:
        for name, options, default in (
            ("default_variant", self.variants, self.default_variant),
            ("default_level", self.ladder, self.default_level),
        ):
            if default is not None and default not in options:
                raise ValueError(
                    f"{name} {default!r} is not one of {list(options)}; "
                    f"fix: add it to the list or choose one of its entries"
                )
        if self.ladder and self.default_level is None:
            object.__setattr__(self, "default_level", self.ladder[0])
        if self.variants and self.default_variant is None:
            object.__setattr__(self, "default_variant", self.variants[0])
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError("ladder lists a level twice; fix: each step once, easiest first")
        return self

    @property
    def is_strength(self) -> bool:
        return self.category == "strength" or self.id == "prone_press_up"


class Frequency(_Strict):
    sessions_per_day: int = Field(1, ge=1, le=10)
    days_per_week: int = Field(7, ge=1, le=7)
    same_time_of_day: bool = True
    timing_window_min: int = Field(60, ge=5, le=720)


class ProgressionRule(_Strict):
    """When a patient is ready to progress (CERT 7b)."""

    dose_met_days: int = Field(5, ge=1, le=28)
    window_days: int = Field(7, ge=1, le=28)
    max_pain_after: int = Field(3, ge=0, le=10)
    flare_free_days: int = Field(7, ge=0, le=56)
    reps_step: int = Field(2, ge=1, le=20)
    hold_step_s: float = Field(5, gt=0, le=60)

    @model_validator(mode="after")
    def _days(self) -> ProgressionRule:
        if self.dose_met_days > self.window_days:
            raise ValueError(
                f"dose_met_days ({self.dose_met_days}) exceeds window_days ({self.window_days})"
            )
        return self


class RegressionRule(_Strict):
    """When to consider a regression (CERT 7a)."""

    pain_after_at_least: int = Field(6, ge=1, le=10)
    pain_increase_at_least: int = Field(2, ge=1, le=10)
    sessions: int = Field(2, ge=1, le=28)
    window_days: int = Field(7, ge=1, le=28)


class Rules(_Strict):
    dose_met_ratio: float = Field(0.8, gt=0, le=1)
    progression: ProgressionRule = ProgressionRule()
    regression: RegressionRule = RegressionRule()


def alias_key(name: str) -> str:
    """The comparison key of an exercise name: NFKC, case-folded, letters and digits only.

    >>> alias_key("Mini Push-Up"), alias_key("mini_push_up"), alias_key("ＭＩＮＩ push up")
    ('minipushup', 'minipushup', 'minipushup')
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


class Protocol(_Strict):
    """A routine: its exercises, how often, and the progression and regression rules."""

    protocol_id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    version: int = Field(ge=1)
    title: str
    source: str | None = None
    frequency: Frequency = Frequency()
    rules: Rules = Rules()
    exercises: tuple[Exercise, ...] = Field(min_length=1)

    @field_validator("exercises")
    @classmethod
    def _unique(cls, exercises: tuple[Exercise, ...]) -> tuple[Exercise, ...]:
        seen: dict[str, str] = {}
        for ex in exercises:
            if ex.id in seen:
                raise ValueError(
                    f"duplicate exercise id {ex.id!r}; fix: give each exercise its own id"
                )
            seen[ex.id] = ex.id
        keys: dict[str, str] = {}
        for ex in exercises:
            for name in (ex.id, ex.name, *ex.aliases):
                key = alias_key(name)
                if not key:
                    raise ValueError(f"alias {name!r} of {ex.id!r} has no letters or digits")
                owner = keys.setdefault(key, ex.id)
                if owner != ex.id:
                    raise ValueError(
                        f"alias {name!r} names both {owner!r} and {ex.id!r}; "
                        "fix: an alias may belong to one exercise only"
                    )
        return exercises

    @property
    def exercise_ids(self) -> tuple[str, ...]:
        return tuple(ex.id for ex in self.exercises)

    @cached_property
    def by_id(self) -> dict[str, Exercise]:
        return {ex.id: ex for ex in self.exercises}

    @cached_property
    def _alias_map(self) -> dict[str, str]:
        return {
            alias_key(name): ex.id
            for ex in self.exercises
            for name in (ex.id, ex.name, *ex.aliases)
        }

    def alias_table(self) -> pd.DataFrame:
        """Every accepted spelling key and the exercise id it maps to (for vectorised joins)."""
        items = sorted(self._alias_map.items())
        return pd.DataFrame(items, columns=["alias_key", "exercise_id"])

    def resolve_exercise(self, name: str) -> str | None:
        """The exercise id for an id, display name or alias; ``None`` when it is not known."""
        return self._alias_map.get(alias_key(name))

    def suggest_exercise(self, name: str) -> str | None:
        """The closest known exercise for a misspelled name, for the quarantine message only.

        A suggestion is never applied: the row is refused and the suggestion shown.
        """
        match = difflib.get_close_matches(alias_key(name), list(self._alias_map), n=1, cutoff=0.75)
        return self._alias_map[match[0]] if match else None

    @property
    def levels(self) -> tuple[str, ...]:
        """Every ladder level of every exercise."""
        return tuple(dict.fromkeys(lv for ex in self.exercises for lv in ex.ladder))

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for ex in self.exercises for v in ex.variants))

    def dose_table(self) -> pd.DataFrame:
        """One row per exercise with its default prescribed dose and vocabularies."""
        rows = [
            {
                "exercise_id": ex.id,
                "name": ex.name,
                "category": ex.category,
                "sidedness": ex.sidedness,
                "sets": ex.dose.sets,
                "reps": ex.dose.reps,
                "reps_max": ex.dose.reps_max,
                "hold_s": ex.dose.hold_s,
                "unit": ex.dose.unit,
                "per_side": ex.dose.per_side,
                "level": ex.default_level,
                "variant": ex.default_variant,
                "is_strength": ex.is_strength,
            }
            for ex in self.exercises
        ]
        return pd.DataFrame(rows).astype(
            {"sets": "Int64", "reps": "Int64", "reps_max": "Int64", "hold_s": "Float64"}
        )


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: the protocol is not valid ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key; fix: remove it or correct its spelling (see docs/protocol.md)"
        elif err["type"] == "missing":
            msg = "required key is missing; fix: add it"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(f"{path}: no such protocol file; fix: check the path") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProtocolError(
            f"{path}: not valid YAML{at}; fix: check indentation and quoting"
        ) from None


def load_protocol(path: Path | str | None = None) -> Protocol:
    """Read and check a protocol file (default: the early-phase routine of this clinic).

    Raises
    ------
    ProtocolError
        Naming each bad key and how to fix it.
    """
    path = Path(path) if path is not None else get_settings().protocol
    return _load_protocol_cached(path.resolve(), path.stat().st_mtime_ns if path.exists() else 0)


@cache
def _load_protocol_cached(path: Path, _mtime: int) -> Protocol:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ProtocolError(
            f"{path}: expected a mapping with 'exercises'; received {type(data).__name__}"
        )
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(_format_errors(exc, str(path))) from None


# --------------------------------------------------------------------------------------------
# Per-patient prescriptions
# --------------------------------------------------------------------------------------------


class PrescriptionOverride(_Strict):
    """From ``valid_from`` on, one patient's dose or level for one exercise differs."""

    patient_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    exercise: str
    valid_from: date = Field(alias="from")
    sets: int | None = Field(None, ge=1, le=10)
    reps: int | None = Field(None, ge=1, le=100)
    reps_max: int | None = Field(None, ge=1, le=100)
    hold_s: float | None = Field(None, gt=0, le=300)
    level: str | None = None
    variant: str | None = None
    reason: str | None = Field(None, max_length=200)


class _Overrides(_Strict):
    prescriptions: tuple[PrescriptionOverride, ...] = ()


PRESCRIPTION_COLUMNS = (
    "patient_id", "exercise_id", "valid_from", "valid_to", "sets", "reps", "reps_max",
    "hold_s", "per_side", "level", "variant", "source",
)  # fmt: skip


def load_prescription_overrides(
    path: Path | str, protocol: Protocol | None = None
) -> list[PrescriptionOverride]:
    """Read per-patient overrides from YAML (``prescriptions: [{patient_id, exercise, from, ...}]``).

    Exercise names are resolved through the protocol's aliases; a level or variant must exist
    for that exercise.
    """
    protocol = protocol or load_protocol()
    path = Path(path)
    data = _read_yaml(path)
    try:
        parsed = _Overrides.model_validate(data or {})
    except ValidationError as exc:
        raise ProtocolError(_format_errors(exc, str(path))) from None
    out = []
    for i, ov in enumerate(parsed.prescriptions):
        ex_id = protocol.resolve_exercise(ov.exercise)
        where = f"{path}: prescriptions.{i}"
        if ex_id is None:
            hint = protocol.suggest_exercise(ov.exercise)
            raise ProtocolError(
                f"{where}.exercise: unknown exercise; fix: use one of {list(protocol.exercise_ids)}"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        ex = protocol.by_id[ex_id]
        if ov.level is not None and ov.level not in ex.ladder:
            raise ProtocolError(
                f"{where}.level: not a level of {ex_id}; fix: one of {list(ex.ladder)}"
            )
        if ov.variant is not None and ov.variant not in ex.variants:
            raise ProtocolError(
                f"{where}.variant: not a variant of {ex_id}; fix: one of {list(ex.variants)}"
            )
        out.append(ov.model_copy(update={"exercise": ex_id}))
    return out


def build_prescriptions(
    patients: pd.DataFrame,
    protocol: Protocol | None = None,
    overrides: list[PrescriptionOverride] | None = None,
) -> pd.DataFrame:
    """The prescriptions table: every patient gets every exercise of the protocol from their
    ``programme_start``; each override closes the current row and opens a new one from its date.

    Returns a frame matching :class:`backcare_analytics.schemas.Prescriptions` (validity is
    ``valid_from <= day < valid_to``; ``valid_to`` is missing for the current row).

    >>> pts = pd.DataFrame({"patient_id": ["P1"], "programme_start": [pd.Timestamp("2026-01-05")]})
    >>> ov = PrescriptionOverride.model_validate(
    ...     {"patient_id": "P1", "exercise": "mini_push_up", "from": "2026-02-02", "level": "counter"})
    >>> rx = build_prescriptions(pts, overrides=[ov])
    >>> rx.loc[rx.exercise_id == "mini_push_up", ["valid_from", "valid_to", "level"]].to_string(index=False)
    'valid_from   valid_to   level\\n2026-01-05 2026-02-02    wall\\n2026-02-02        NaT counter'
    """
    protocol = protocol or load_protocol()
    doses = protocol.dose_table()
    starts = patients[["patient_id", "programme_start"]].drop_duplicates("patient_id")
    base = starts.merge(doses, how="cross").rename(columns={"programme_start": "valid_from"})
    base["valid_to"] = pd.NaT
    base["source"] = "protocol"
    rows = base[list(PRESCRIPTION_COLUMNS)]
    if overrides:
        ov = pd.DataFrame(
            [
                {
                    "patient_id": o.patient_id,
                    "exercise_id": o.exercise,
                    "valid_from": pd.Timestamp(o.valid_from),
                    **{
                        k: getattr(o, k)
                        for k in ("sets", "reps", "reps_max", "hold_s", "level", "variant")
                    },
                }
                for o in overrides
            ]
        ).sort_values(["patient_id", "exercise_id", "valid_from"], kind="stable")
        ov["source"] = "override"
        keys = ["patient_id", "exercise_id"]
        rows = pd.concat([rows, ov], ignore_index=True)
        rows = rows.sort_values([*keys, "valid_from"], kind="stable")
        # An override inherits what it does not change from the row in force before it.
        inherit = ["sets", "reps", "reps_max", "hold_s", "per_side", "level", "variant"]
        rows[inherit] = rows.groupby(keys, sort=False)[inherit].ffill()
        rows = rows.drop_duplicates([*keys, "valid_from"], keep="last")
        rows["valid_to"] = rows.groupby(keys, sort=False)["valid_from"].shift(-1)
        rows = rows[list(PRESCRIPTION_COLUMNS)]
    rows = rows.reset_index(drop=True)
    rows["valid_from"] = rows["valid_from"].astype("datetime64[us]")
    rows["valid_to"] = rows["valid_to"].astype("datetime64[us]")
    return rows.astype(
        {"sets": "Int64", "reps": "Int64", "reps_max": "Int64", "hold_s": "Float64",
         "per_side": "bool", "level": "str", "variant": "str"}
    )  # fmt: skip


def prescriptions_on(keys: pd.DataFrame, prescriptions: pd.DataFrame) -> pd.DataFrame:
    """The prescription in force for each ``(patient_id, exercise_id, day)`` row of ``keys``.

    Vectorised with :func:`pandas.merge_asof`; rows before a patient's programme start get no
    prescription (missing dose columns). The result has the rows of ``keys`` in their order.
    """
    left = keys[["patient_id", "exercise_id", "day"]].reset_index(names="_row")
    left = left.sort_values("day", kind="stable")
    # ``per_side`` becomes nullable: a day before the programme start has no prescription.
    right = prescriptions.astype({"per_side": "boolean"}).sort_values("valid_from", kind="stable")
    merged = pd.merge_asof(
        left, right, left_on="day", right_on="valid_from", by=["patient_id", "exercise_id"]
    )
    ended = merged["valid_to"].notna() & (merged["day"] >= merged["valid_to"])
    dose_cols = [c for c in PRESCRIPTION_COLUMNS if c not in ("patient_id", "exercise_id")]
    if ended.any():
        merged.loc[ended, dose_cols] = pd.NA
    return merged.sort_values("_row").drop(columns="_row").reset_index(drop=True)
