"""The one place that decides the environment Dagster runs in: Rastro's settings (RASTRO_*,
the same as every other process) give the warehouse resource and dbt's environment."""

import os
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.dbt import dbt_env
from rastro.settings import Settings
from rastro.warehouse.client import connect


class Warehouse(dg.ConfigurableResource[Any]):
    """Rastro's database on the embedded endpoint or a ClickHouse server."""

    url: str
    database: str

    def client(self, **kwargs: Any) -> Any:
        """A clickhouse-connect client on the database (close it when done)."""
        settings = Settings(clickhouse_url=self.url, clickhouse_database=self.database)
        return connect(settings, database=self.database, **kwargs)


@cache
def settings() -> Settings:
    """Read once per process (like get_settings, but a cache of its own, which the tests
    clear before loading the definitions against their warehouse)."""
    return Settings()


def warehouse() -> Warehouse:
    current = settings()
    return Warehouse(url=current.warehouse_url, database=current.clickhouse_database)


def dbt_state_dir() -> Path:
    """dbt's target/ and logs/ for Dagster's runs: local state, not the source tree."""
    return settings().data_dir.resolve() / "dbt"


def export_dbt_environment() -> None:
    """dagster-dbt runs dbt with this process's environment: give it the profile's
    variables (dbt/profiles.yml) for the configured warehouse, telemetry off."""
    current = settings()
    dbt_variables = dbt_env(
        current.warehouse_url,
        current.clickhouse_database,
        {"DBT_LOG_PATH": str(dbt_state_dir() / "logs")},
    )
    os.environ.update(
        {
            name: value
            for name, value in dbt_variables.items()
            if name.startswith("DBT_") or name == "DO_NOT_TRACK"
        }
    )
