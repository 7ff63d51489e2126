"""Exceptions and warnings of backcare_analytics.

Every error is built on a builtin so callers can catch what they expect (``ValueError`` for bad
input, ``RuntimeError`` for an environment that cannot run). Messages say what was expected,
what was received and how to fix it, and name files, rows and columns, never a patient's values
or notes.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousTimeWarning",
    "BackcareError",
    "BackcareWarning",
    "ConfigError",
    "InputDataError",
    "InsufficientDataWarning",
    "ProtocolError",
    "SchemaValidationError",
    "StoreBusyError",
    "StoreError",
    "UnsafeOutputError",
    "ValidationDisabledError",
]


class BackcareError(Exception):
    """Base class of every error raised on purpose by backcare_analytics."""


class ConfigError(BackcareError, ValueError):
    """A setting or environment variable is malformed."""


class InputDataError(BackcareError, ValueError):
    """An input file or frame does not follow the export contract."""


class ProtocolError(InputDataError):
    """A protocol or prescription file is malformed; the message names the key and the fix."""


class SchemaValidationError(InputDataError):
    """A frame failed its pandera schema; ``failures`` holds the tidy failure table."""

    def __init__(self, message: str, failures: object | None = None) -> None:
        super().__init__(message)
        self.failures = failures


class ValidationDisabledError(BackcareError, RuntimeError):
    """pandera's data checks are switched off in this environment; we refuse to run unchecked."""


class StoreError(BackcareError, RuntimeError):
    """The DuckDB store cannot be opened or written.

    ``reason`` is a short code for programs (``--json`` prints it): ``disk_full``,
    ``read_only``, ``no_permission``, ``damaged_store``, ``missing_tables``, ``store_busy``,
    ``no_archive``, ``smaller_store``, or None.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class StoreBusyError(StoreError):
    """Another process holds the store for writing; nothing was changed."""

    def __init__(self, message: str, reason: str | None = "store_busy") -> None:
        super().__init__(message, reason)


class UnsafeOutputError(ConfigError):
    """An output folder is a symlink, others may write it (or a folder above it), or it cannot
    be created; nothing was written. The message says which folder and how to fix it."""


class BackcareWarning(UserWarning):
    """Base class of backcare_analytics' domain warnings."""


class InsufficientDataWarning(BackcareWarning):
    """Too few observations for a statistic; the result says "insufficient data"."""


class AmbiguousTimeWarning(BackcareWarning):
    """A local time occurred twice (DST fall-back); the first occurrence was taken."""
