"""Paths and settings in one place, each overridable by a ``BACKCARE_*`` environment variable.

>>> s = Settings.from_env({"BACKCARE_MAX_FILE_MIB": "5"})
>>> s.max_file_bytes
5242880

Two kinds of default paths. The files the package ships (the programme protocol, the report
templates) come from the repository when the package runs from a checkout, and otherwise from
the copies a wheel carries (:func:`shipped_dir`). The user's folders (``data/``, ``reports/``)
are under the checkout, or under the working directory when the package is installed
(:data:`PROJECT_ROOT`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from backcare_analytics.errors import ConfigError

__all__ = [
    "CHECKOUT_ROOT",
    "PACKAGE_DIR",
    "PROJECT_ROOT",
    "Settings",
    "get_settings",
    "package_version",
    "shipped_dir",
]

PACKAGE_DIR = Path(__file__).resolve().parent
#: The repository checkout the package runs from (``make demo``, editable installs), or None
#: when it is installed from a wheel (site-packages, ``pip install --target``).
CHECKOUT_ROOT: Path | None = (
    PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None
)
#: Where the user's folders (``data/``, ``reports/``) are by default: the checkout, or the
#: working directory (at import) when the package is installed.
PROJECT_ROOT: Path = CHECKOUT_ROOT if CHECKOUT_ROOT is not None else Path.cwd()

#: The files the package ships, by kind: their canonical place in the repository. A wheel
#: carries copies in ``backcare_analytics/_bundled/<kind>/`` (the build step in setup.py).
_SHIPPED = {"protocols": Path("data", "protocols"), "templates": Path("notebooks", "templates")}


def shipped_dir(kind: Literal["protocols", "templates"]) -> Path:
    """The folder holding the protocol files (``"protocols"``) or the report templates
    (``"templates"``) that come with the package.

    From a checkout, the repository's own folder (``data/protocols/``, ``notebooks/templates/``),
    so edits there take effect at once; otherwise the copy inside the installed package, found
    through :mod:`importlib.resources`. An explicit setting (``BACKCARE_PROTOCOL``) is applied
    by :class:`Settings` and always wins.

    Returns
    -------
    Path
        ``<checkout>/data/protocols`` or ``<checkout>/notebooks/templates`` when that folder
        exists, else ``<installed package>/_bundled/<kind>``.

    Raises
    ------
    ConfigError
        The package is imported from a zip archive, where the files have no path.

    >>> shipped_dir("protocols").name
    'protocols'
    """
    if CHECKOUT_ROOT is not None and (CHECKOUT_ROOT / _SHIPPED[kind]).is_dir():
        return CHECKOUT_ROOT / _SHIPPED[kind]
    bundled = resources.files(__package__ or "backcare_analytics") / "_bundled" / kind
    if not isinstance(bundled, Path):
        raise ConfigError(
            f"the package's {kind} cannot be read from inside a zip archive; fix: install "
            "backcare_analytics unzipped (pip install), or set BACKCARE_PROTOCOL to a protocol file"
        )
    return bundled


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
        default_factory=lambda: shipped_dir("protocols") / "early_phase_low_back.yaml"
    )
    examples_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "data" / "examples")
    #: Per-patient prescription overrides (docs/protocol.md); used when the file exists.
    prescriptions: Path | None = None
    max_file_bytes: int = 50 * 1024 * 1024
    max_field_chars: int = 4_000
    #: Columns of a CSV header (``too_wide``), lines of a text file (``too_many_rows``).
    max_columns: int = 1_000
    max_rows: int = 2_000_000
    #: The memory one file may take while it is read and normalised: a file whose estimated
    #: peak (io.readers.estimated_peak_bytes) is higher is refused before it is read
    #: (``too_many_cells``, valid rows assumed), or once its refused rows are known and before
    #: their rejects are built (``too_many_refused_rows``). ``BACKCARE_MAX_MEMORY_MIB``.
    max_memory_bytes: int = 1024 * 1024 * 1024
    max_json_depth: int = 32
    max_xlsx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_xlsx_ratio: int = 100
    store_busy_timeout_s: float = 10.0
    #: How long ``import`` or ``rebuild`` waits for another writer of the same store (the
    #: ``<store>.lock`` file, docs/import.md) before giving up with "store busy".
    store_lock_timeout_s: float = 300.0
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


@cache
def package_version() -> str:
    """The installed version of backcare_analytics (from the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backcare_analytics")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0.0.0+unknown"
