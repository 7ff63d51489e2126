"""Paths and settings in one place, each overridable by a ``BACKCARE_*`` environment variable.

>>> s = Settings.from_env({"BACKCARE_MAX_FILE_MIB": "5"})
>>> s.max_file_bytes
5242880
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from backcare_analytics.errors import ConfigError

__all__ = ["PACKAGE_DIR", "PROJECT_ROOT", "Settings", "get_settings"]

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout this package was installed from (editable installs); the working
#: directory is used when the package lives in site-packages.
PROJECT_ROOT = (
    PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()
)


def _default_data_dir() -> Path:
    return PROJECT_ROOT / "data"


@dataclass(frozen=True)
class Settings:
    """Where things live and the limits the importer enforces.

    Every field can be overridden by the environment variable ``BACKCARE_<FIELD>`` in upper
    case, e.g. ``BACKCARE_STORE=/srv/clinic.duckdb`` or ``BACKCARE_MAX_FIELD_CHARS=2000``.
    Sizes given in MiB use the ``_MIB`` suffix (``BACKCARE_MAX_FILE_MIB``).
    """

    data_dir: Path = field(default_factory=_default_data_dir)
    store: Path | None = None
    inbox: Path | None = None
    raw_archive: Path | None = None
    reports_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "reports")
    protocol: Path = field(
        default_factory=lambda: PROJECT_ROOT / "data" / "protocols" / "early_phase_low_back.yaml"
    )
    examples_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "data" / "examples")
    #: Per-patient prescription overrides (docs/protocol.md); used when the file exists.
    prescriptions: Path | None = None
    max_file_bytes: int = 50 * 1024 * 1024
    max_field_chars: int = 4_000
    max_json_depth: int = 32
    max_xlsx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_xlsx_ratio: int = 100
    store_busy_timeout_s: float = 10.0
    default_timezone: str = "Europe/Amsterdam"
    #: Order of slash/dot dates such as 02/03/2026: "DMY" (day first) or "MDY" (month first).
    date_order: str = "DMY"

    def __post_init__(self) -> None:
        # Derived paths follow data_dir unless set explicitly.
        if self.store is None:
            object.__setattr__(self, "store", self.data_dir / "backcare.duckdb")
        if self.inbox is None:
            object.__setattr__(self, "inbox", self.data_dir / "inbox")
        if self.raw_archive is None:
            # Beside its store, always: one archive per store, so `rebuild` never replays another
            # store's files, and BACKCARE_STORE elsewhere never leaves raw exports in the checkout.
            store = Path(self.store)
            object.__setattr__(self, "raw_archive", store.with_name(store.name + ".raw"))
        if self.prescriptions is None:
            object.__setattr__(self, "prescriptions", self.data_dir / "prescriptions.yaml")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from defaults overridden by ``BACKCARE_*`` variables."""
        env = os.environ if environ is None else environ
        overrides: dict[str, object] = {}
        for f in fields(cls):
            name = f.name.upper()
            if f.name.endswith("_bytes"):
                key = "BACKCARE_" + name.removesuffix("_BYTES") + "_MIB"
                if key in env:
                    overrides[f.name] = int(_number(key, env[key]) * 1024 * 1024)
                continue
            key = "BACKCARE_" + name
            if key not in env:
                continue
            raw = env[key]
            if f.type in ("Path", "Path | None"):
                overrides[f.name] = Path(raw).expanduser()
            elif f.type == "int":
                overrides[f.name] = int(_number(key, raw))
            elif f.type == "float":
                overrides[f.name] = float(_number(key, raw))
            else:
                overrides[f.name] = raw
        return cls(**overrides)  # type: ignore[arg-type]

    def with_store(self, store: Path | str | None) -> Settings:
        """A copy pointing at another store file (the CLI's ``--store``)."""
        return self if store is None else replace(self, store=Path(store))


def _number(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{key} must be a number; received {raw!r}. Fix: set it to e.g. {key}=10 or unset it."
        ) from None
    if value < 0:
        raise ConfigError(f"{key} must not be negative; received {raw!r}.")
    return value


def get_settings() -> Settings:
    """The settings in force now (read from the environment on every call)."""
    return Settings.from_env()
