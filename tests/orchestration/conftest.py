"""Rastro's Dagster definitions, loaded once per test session against the warehouse under
test: the settings they read (RASTRO_*) point at a database of their own."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import migrated_database


@pytest.fixture(scope="session")
def orchestration_database(warehouse_url: str) -> Iterator[str]:
    with migrated_database(warehouse_url, "test_orch") as name:
        yield name


@pytest.fixture(scope="session")
def definitions(
    warehouse_url: str, orchestration_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """orchestration.definitions.defs, with the environment it decides from set first."""
    state: Path = tmp_path_factory.mktemp("orchestration")
    # The settings are read (and cached) when the definitions are imported; the variables
    # are set for that moment only, so that no other test sees them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RASTRO_CLICKHOUSE_URL", warehouse_url)
        patch.setenv("RASTRO_CLICKHOUSE_DATABASE", orchestration_database)
        patch.setenv("RASTRO_DATA_DIR", str(state))
        from orchestration.defs import environment

        environment.settings.cache_clear()
        module = importlib.import_module("orchestration.definitions")
    yield module.defs
