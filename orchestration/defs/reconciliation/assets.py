"""Daily reconciliation (pipelines/reconcile.py, docs/quality.md): orders received against
the merchants' own reports, the ledger against the orders, the event log against the
warehouse. Differences land in reconciliation_differences and raise an alert."""

import dagster as dg

from orchestration.defs.environment import Warehouse, settings
from pipelines.reconcile import reconcile_all
from rastro.alerts import send_alert


@dg.asset(
    deps=[
        dg.AssetKey(["landing", "conversions"]),
        dg.AssetKey(["landing", "order_updates"]),
        dg.AssetKey(["landing", "clicks"]),
        dg.AssetKey(["fct_commissions"]),
        dg.AssetKey(["fct_ledger_entries"]),
    ],
    group_name="reconciliation",
    description="One row per difference found by the last reconciliations.",
)
def reconciliation_differences(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult[None]:
    client = warehouse.client()
    try:
        differences = reconcile_all(
            client,
            warehouse.database,
            run_id=context.run.run_id,
            event_log_dir=settings().event_log_dir,
        )
    finally:
        client.close()
    by_check = {
        str(check): int(count)
        for check, count in differences.group_by("check_name").len().iter_rows()
    }
    if by_check:
        send_alert(
            settings(),
            "reconciliation_difference",
            f"reconciliation found {differences.height} difference(s)",
            {"by_check": by_check, "examples": differences.head(5).to_dicts()},
        )
    return dg.MaterializeResult(
        metadata={"differences": differences.height, "by_check": dg.MetadataValue.json(by_check)}
    )


reconciliation_job = dg.define_asset_job(
    "reconciliation_job", selection=[reconciliation_differences]
)
reconciliation_schedule = dg.ScheduleDefinition(
    job=reconciliation_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[reconciliation_differences],
    jobs=[reconciliation_job],
    schedules=[reconciliation_schedule],
)
