"""Payout batch preparation: once a month, every affiliate's approved and unpaid
commissions, per currency, when they reach the minimum payout (smaller balances carry over).
Paying a batch (the API, issue 7) writes payout_items, which the ledger books as payments.
A batch lists what is owed when it is prepared: preparing again in the same month replaces
that month's batch, and a month's batch supersedes earlier unpaid ones (their commissions
are still approved and unpaid, so they are in it)."""

from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.environment import Warehouse

# The program's minimum payout, in minor units of the balance's currency (R$ 50.00):
# smaller balances wait for the next batch. Per-program minimums arrive with the API.
MIN_PAYOUT_MINOR = 5000

PREPARE_SQL = """
INSERT INTO payout_batches
    (tenant_id, batch_id, affiliate_id, currency, amount_minor, commission_ids, payout_method,
     prepared_at)
SELECT
    balances.tenant_id,
    {batch_id:String},
    balances.affiliate_id,
    balances.currency,
    sum(balances.approved_minor),
    groupArray(balances.commission_id),
    any(affiliates.payout_method),
    now64(3, 'UTC')
FROM (
    SELECT tenant_id, affiliate_id, currency, commission_id,
           sum(approved_delta_minor) AS approved_minor
    FROM fct_ledger_entries
    GROUP BY tenant_id, affiliate_id, currency, commission_id
    HAVING approved_minor > 0
) AS balances
LEFT JOIN (SELECT tenant_id, id, payout_method FROM affiliates FINAL) AS affiliates
    ON affiliates.tenant_id = balances.tenant_id AND affiliates.id = balances.affiliate_id
GROUP BY balances.tenant_id, balances.affiliate_id, balances.currency
HAVING sum(balances.approved_minor) >= {minimum:Int64}
"""


@dg.asset(
    deps=[dg.AssetKey(["dim_affiliate_balances"]), dg.AssetKey(["fct_ledger_entries"])],
    group_name="payouts",
    description="One row per affiliate and currency to pay in this month's batch.",
)
def payout_batches(warehouse: Warehouse) -> dg.MaterializeResult[None]:
    batch_id = f"{datetime.now(UTC):%Y-%m}"
    client = warehouse.client()
    try:
        client.command(PREPARE_SQL, parameters={"batch_id": batch_id, "minimum": MIN_PAYOUT_MINOR})
        rows = client.query(
            "SELECT count(), sum(amount_minor) FROM payout_batches FINAL "
            "WHERE batch_id = {batch_id:String}",
            parameters={"batch_id": batch_id},
        ).result_rows[0]
    finally:
        client.close()
    return dg.MaterializeResult(
        metadata={"batch_id": batch_id, "affiliates": int(rows[0]), "amount_minor": int(rows[1])}
    )


payout_job = dg.define_asset_job("payout_job", selection=[payout_batches])
payout_schedule = dg.ScheduleDefinition(
    job=payout_job,
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(assets=[payout_batches], jobs=[payout_job], schedules=[payout_schedule])
