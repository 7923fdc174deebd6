"""When attribution, commissions and the ledger are recomputed: every 15 minutes, as soon as
new orders or order updates have landed (the sensor), and once a day at 00:30 UTC for the
ledger alone, so that hold periods that ended overnight become approvals even without new
traffic."""

import dagster as dg

from orchestration.defs.dbt.assets import FRAUD_FLAGS, attribution_models, ledger_models
from orchestration.defs.environment import Warehouse

REFRESH_EVERY = "*/15 * * * *"
NEW_ORDERS_SQL = (
    "SELECT toString(greatest("
    "(SELECT max(received_at) FROM conversions), (SELECT max(received_at) FROM order_updates)))"
)

attribution_refresh_job = dg.define_asset_job(
    "attribution_refresh_job",
    description=(
        "Landing checks, every model from identity to commissions, fraud detection (holds), "
        "the ledger, and their checks."
    ),
    selection=dg.AssetSelection.groups("landing")
    | dg.AssetSelection.assets(attribution_models, ledger_models, FRAUD_FLAGS),
)

ledger_job = dg.define_asset_job(
    "ledger_job",
    description="The ledger alone: approvals of ended hold periods, decisions, payments.",
    selection=dg.AssetSelection.assets(ledger_models),
)

attribution_refresh_schedule = dg.ScheduleDefinition(
    job=attribution_refresh_job,
    cron_schedule=REFRESH_EVERY,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

hold_period_approvals_schedule = dg.ScheduleDefinition(
    name="hold_period_approvals_schedule",
    job=ledger_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.sensor(
    job=attribution_refresh_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_orders_sensor(
    context: dg.SensorEvaluationContext, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    """Requests a refresh when conversions or order updates have landed since the last one
    (the cursor is the latest received_at seen)."""
    client = warehouse.client()
    try:
        latest = str(client.command(NEW_ORDERS_SQL))
    finally:
        client.close()
    if latest in ("", "1970-01-01 00:00:00.000") or latest == context.cursor:
        return dg.SkipReason(f"no new orders or order updates since {context.cursor or 'ever'}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"orders-until-{latest}")], cursor=latest
    )


defs = dg.Definitions(
    jobs=[attribution_refresh_job, ledger_job],
    schedules=[attribution_refresh_schedule, hold_period_approvals_schedule],
    sensors=[new_orders_sensor],
)
