"""Alerts for what happens inside Dagster: a failed run. (Failed blocking checks,
reconciliation differences and fraud spikes are alerted by the steps that find them.)"""

import dagster as dg

from orchestration.defs.environment import settings
from rastro.alerts import send_alert


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    send_alert(
        settings(),
        "run_failed",
        f"Dagster run of {run.job_name} failed",
        {
            "run_id": run.run_id,
            "job": run.job_name,
            "error": context.failure_event.message,
        },
    )


defs = dg.Definitions(sensors=[run_failure_alert])
