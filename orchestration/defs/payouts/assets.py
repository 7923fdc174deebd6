"""Payout batch preparation: once a month, every tenant's batch of approved and unpaid
commissions per affiliate and currency that reach the program's minimum (smaller balances
carry over). The SQL is pipelines/payouts.py, the same the API runs for
`POST /v1/payouts/batches`; docs/payouts.md explains batches, thresholds and paying.
Preparing again in the same month replaces that month's rows, and a month's batch lists
what is owed now: commissions paid since (by any batch) are left out."""

from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.environment import Warehouse
from pipelines.payouts import prepare


@dg.asset(
    deps=[dg.AssetKey(["dim_affiliate_balances"]), dg.AssetKey(["fct_ledger_entries"])],
    group_name="payouts",
    description="One row per affiliate and currency to pay in this month's batch.",
)
def payout_batches(warehouse: Warehouse) -> dg.MaterializeResult[None]:
    batch_id = f"{datetime.now(UTC):%Y-%m}"
    client = warehouse.client()
    try:
        prepared = prepare(client, batch_id)
    finally:
        client.close()
    by_currency = prepared.amount_minor_by_currency
    return dg.MaterializeResult(
        metadata={
            "batch_id": batch_id,
            "affiliates": prepared.rows,
            # A sum across currencies, only meaningful where every tenant pays in one:
            # amount_minor_by_currency is the figure to read.
            "amount_minor": sum(by_currency.values()),
            "amount_minor_by_currency": dg.MetadataValue.json(dict(by_currency)),
        }
    )


payout_job = dg.define_asset_job("payout_job", selection=[payout_batches])
payout_schedule = dg.ScheduleDefinition(
    job=payout_job,
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(assets=[payout_batches], jobs=[payout_job], schedules=[payout_schedule])
