"""Fraud batch detection (pipelines/fraud, docs/fraud.md): every rule over the warehouse,
each flag explainable (rule, evidence, threshold) in fraud_flags, and the commissions it
concerns put on hold for review. It runs in every refresh between the commissions and the
ledger, so a hold is in place before the ledger could approve what it holds, and daily at
04:00 UTC for the rules that need a day of history. A jump in new flags raises an alert."""

from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.dbt.assets import ledger_models
from orchestration.defs.environment import Warehouse, settings
from pipelines.fraud import detect, record
from rastro.alerts import send_alert

# More new flags than this in one run is a spike worth a look now, not at the daily review.
SPIKE_FLAGS = 20


@dg.asset(
    deps=[
        dg.AssetKey(["fct_commissions"]),
        dg.AssetKey(["fct_attributions"]),
        dg.AssetKey(["int_touchpoints__evaluated"]),
        dg.AssetKey(["int_identity__persons"]),
        dg.AssetKey(["landing", "clicks"]),
    ],
    group_name="fraud",
    description="One row per fraud rule that fired on a subject; flagged commissions held.",
)
def fraud_flags(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult[None]:
    client = warehouse.client()
    try:
        before = int(client.command("SELECT count() FROM fraud_flags FINAL"))
        flags = detect(client, warehouse.database, datetime.now(UTC))
        recorded = record(client, warehouse.database, flags, context.run.run_id)
        after = int(client.command("SELECT count() FROM fraud_flags FINAL"))
    finally:
        client.close()
    by_rule = {str(rule): int(count) for rule, count in flags.group_by("rule").len().iter_rows()}
    new_flags = after - before
    if new_flags > SPIKE_FLAGS:
        send_alert(
            settings(),
            "fraud_spike",
            f"{new_flags} new fraud flags in one run",
            {"by_rule": by_rule, "holds": recorded.holds},
        )
    return dg.MaterializeResult(
        metadata={
            "flags": flags.height,
            "new_flags": new_flags,
            "holds_new": recorded.holds,
            "holds_already_there": recorded.holds_existing,
            "by_rule": dg.MetadataValue.json(by_rule),
        }
    )


fraud_job = dg.define_asset_job(
    "fraud_job",
    description="Fraud batch detection, then the ledger (so the holds take effect).",
    selection=dg.AssetSelection.assets(fraud_flags, ledger_models),
)
fraud_schedule = dg.ScheduleDefinition(
    job=fraud_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(assets=[fraud_flags], jobs=[fraud_job], schedules=[fraud_schedule])
