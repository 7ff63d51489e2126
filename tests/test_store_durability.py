"""The store follows its settings (prescription overrides, archive beside the store) and keeps a
committed import, with its raw copy, when the CHECKPOINT after COMMIT fails."""

from __future__ import annotations

from pathlib import Path

import yaml

from backcare_analytics.config import Settings
from backcare_analytics.io.importer import import_paths
from backcare_analytics.store import Store

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "examples" / "clinic" / "exports"


def test_configured_overrides_reach_every_reader_of_the_store(tmp_path):
    rx_file = tmp_path / "prescriptions.yaml"
    settings = Settings.from_env(
        {"BACKCARE_STORE": str(tmp_path / "clinic.duckdb"), "BACKCARE_PRESCRIPTIONS": str(rx_file)}
    )
    store = Store(settings=settings)
    # The raw archive of a store lives beside it, never in the checkout's data/ folder.
    assert store.archive.root == tmp_path / "clinic.duckdb.raw"
    import_paths(sorted(EXPORTS.glob("*patients*")), store, settings=settings)

    def push_up_levels() -> list[str]:
        rx = store.prescriptions()
        rows = rx[(rx.patient_id == "DEMO-003") & (rx.exercise_id == "mini_push_up")]
        return rows.level.tolist()

    assert push_up_levels() == ["wall"]  # no overrides file yet: the protocol's defaults
    rx_file.write_text(
        yaml.safe_dump(
            {"prescriptions": [
                {"patient_id": "DEMO-003", "exercise": "Mini Push Up", "from": "2026-03-02",
                 "level": "counter"},
            ]}
        ),
        encoding="utf-8",
    )  # fmt: skip
    assert push_up_levels() == ["wall", "counter"]


def test_a_failed_checkpoint_after_commit_keeps_the_import_and_its_raw_copy(tmp_path):
    import contextlib

    import duckdb
    import pytest

    from backcare_analytics.errors import BackcareWarning

    class NoCheckpoint:
        """A connection whose CHECKPOINT fails, as on a full disk."""

        def __init__(self, con):
            self._con = con

        def execute(self, sql, *args, **kwargs):
            if str(sql).strip().upper() == "CHECKPOINT":
                raise duckdb.IOException("No space left on device")
            return self._con.execute(sql, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._con, name)

    class FullDiskStore(Store):
        @contextlib.contextmanager
        def writer(self):
            with super().writer() as con:
                yield NoCheckpoint(con)

    settings = Settings.from_env({"BACKCARE_STORE": str(tmp_path / "clinic.duckdb")})
    store = FullDiskStore(settings=settings)
    with pytest.warns(BackcareWarning, match="CHECKPOINT failed"):
        report = import_paths(sorted(EXPORTS.glob("*patients*")), store, settings=settings)
    assert len(store.patients()) == 12  # committed
    sha = store.imports()["sha256"].iloc[0]
    assert (store.archive.root / sha).exists()  # and its raw copy kept for rebuild
    assert report is not None
