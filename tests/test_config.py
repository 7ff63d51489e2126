"""Settings: defaults, BACKCARE_* overrides, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from backcare_analytics.config import PROJECT_ROOT, Settings
from backcare_analytics.errors import ConfigError


def test_defaults_point_into_the_checkout():
    s = Settings.from_env({})
    assert s.store == PROJECT_ROOT / "data" / "backcare.duckdb"
    assert s.inbox == PROJECT_ROOT / "data" / "inbox"
    assert s.protocol.name == "early_phase_low_back.yaml" and s.protocol.exists()
    assert s.max_file_bytes == 50 * 1024 * 1024
    assert s.max_field_chars == 4000


def test_environment_overrides(tmp_path):
    s = Settings.from_env(
        {
            "BACKCARE_DATA_DIR": str(tmp_path),
            "BACKCARE_MAX_FILE_MIB": "1.5",
            "BACKCARE_MAX_FIELD_CHARS": "100",
            "BACKCARE_STORE_BUSY_TIMEOUT_S": "0.5",
            "BACKCARE_DEFAULT_TIMEZONE": "America/New_York",
        }
    )
    # Derived paths follow the data folder unless set themselves.
    assert s.store == tmp_path / "backcare.duckdb"
    assert s.raw_archive == tmp_path / "backcare.duckdb.raw"
    assert s.prescriptions == tmp_path / "prescriptions.yaml"
    # The archive follows the store wherever it is put, never staying in the checkout.
    moved = Settings.from_env({"BACKCARE_STORE": str(tmp_path / "x" / "c.duckdb")})
    assert moved.raw_archive == tmp_path / "x" / "c.duckdb.raw"
    assert s.max_file_bytes == int(1.5 * 1024 * 1024)
    assert s.max_field_chars == 100
    assert s.store_busy_timeout_s == 0.5
    assert s.default_timezone == "America/New_York"
    assert (
        Settings.from_env({"BACKCARE_STORE": "~/x.duckdb"}).store == Path("~/x.duckdb").expanduser()
    )


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_bad_numbers_are_refused_with_the_variable_named(value):
    with pytest.raises(ConfigError, match="BACKCARE_MAX_FIELD_CHARS"):
        Settings.from_env({"BACKCARE_MAX_FIELD_CHARS": value})
