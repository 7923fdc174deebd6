"""The landing tables as Dagster assets. The ingest job writes them (not Dagster): the
"materialization" here observes them (rows, latest event received) and runs their
data-quality checks, so that every refresh starts from checked data. A failed blocking
check (ids missing, an invalid amount or currency) stops every model downstream in the run.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from orchestration.defs.dbt.assets import LANDING_TABLES
from orchestration.defs.environment import Warehouse
from orchestration.defs.quality.wiring import check_results, check_spec
from pipelines.quality import check_landing

KEYS = {table: dg.AssetKey(["landing", table]) for table in (*LANDING_TABLES, "dead_letters")}
WITH_AMOUNTS = ("conversions", "order_updates")

CHECKS = [
    *(
        check_spec(
            f"{table}_ids_present",
            KEYS[table],
            blocking=True,
            description="Every event of the last day has its ids (tenant, event, keys).",
        )
        for table in LANDING_TABLES
    ),
    *(
        check_spec(
            f"{table}_timestamps_sane",
            KEYS[table],
            blocking=False,
            description="No event from the future (beyond the clock skew) or before 2000.",
        )
        for table in LANDING_TABLES
    ),
    *(
        check_spec(
            f"{table}_amounts_valid",
            KEYS[table],
            blocking=True,
            description="Amounts within bounds, net <= amount, ISO 4217 currencies.",
        )
        for table in WITH_AMOUNTS
    ),
    check_spec(
        "dead_letter_rate",
        KEYS["dead_letters"],
        blocking=False,
        description="Rejected payloads stay under 1% of the events of the last day.",
    ),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            group_name="landing",
            description=f"Rastro's `{table}` table, written by the ingest job from the event log.",
        )
        for table, key in KEYS.items()
    ],
    check_specs=CHECKS,
    name="landing_tables",
)
def landing_tables(warehouse: Warehouse) -> Iterator[Any]:
    client = warehouse.client()
    try:
        for table, key in KEYS.items():
            time_column = "received_at"
            rows, latest = client.query(
                f"SELECT count(), toString(max({time_column})) FROM {table}"
            ).result_rows[0]
            yield dg.MaterializeResult(
                asset_key=key, metadata={"rows": int(rows), "latest_received_at": latest}
            )
        yield from check_results(check_landing(client, warehouse.database), KEYS)
    finally:
        client.close()


defs = dg.Definitions(assets=[landing_tables])
