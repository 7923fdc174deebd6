"""The definitions load, and every schedule and sensor ticks as it should."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from orchestration.defs.environment import Warehouse
from tests.conftest import client_for

JOBS = {"attribution_refresh_job", "ledger_job", "payout_job", "reconciliation_job", "fraud_job"}
SCHEDULES = {
    "attribution_refresh_job_schedule": "attribution_refresh_job",
    "hold_period_approvals_schedule": "ledger_job",
    "payout_job_schedule": "payout_job",
    "reconciliation_job_schedule": "reconciliation_job",
    "fraud_job_schedule": "fraud_job",
}


def test_definitions_load_with_dbt_models_and_their_tests_as_checks(definitions: Any) -> None:
    repository = definitions.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= JOBS
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert {"fct_attributions", "fct_ledger_entries", "payout_batches", "landing/clicks"} <= keys
    checks = {key.name for key in repository.asset_graph.asset_check_keys}
    assert "assert_attribution_splits_are_exact" in checks  # a dbt test
    assert "unique_fct_commissions_commission_id" in checks  # a dbt test
    assert {"conversions_amounts_valid", "attribution_splits_exact", "ledger_balances"} <= checks
    # The models are grouped by domain in the UI.
    groups = {
        node.key.to_user_string(): node.group_name for node in repository.asset_graph.asset_nodes
    }
    assert groups["fct_attributions"] == "attribution"
    assert groups["fct_ledger_entries"] == "ledger"
    assert groups["int_identity__persons"] == "identity"


def test_each_schedule_requests_its_job(definitions: Any) -> None:
    repository = definitions.get_repository_def()
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    assert set(SCHEDULES) <= set(schedules)
    for name, job in SCHEDULES.items():
        schedule = schedules[name]
        context = dg.build_schedule_context(
            scheduled_execution_time=datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
        )
        requests = schedule.evaluate_tick(context).run_requests
        assert requests and len(requests) == 1, name
        assert schedule.job_name == job
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_new_orders_sensor_requests_a_refresh_once_per_new_order(
    definitions: Any, warehouse_url: str, orchestration_database: str
) -> None:
    sensor = definitions.get_repository_def().get_sensor_def("new_orders_sensor")
    warehouse = Warehouse(url=warehouse_url, database=orchestration_database)

    def tick(cursor: str | None) -> Any:
        context = dg.build_sensor_context(cursor=cursor, resources={"warehouse": warehouse})
        return sensor.evaluate_tick(context)

    empty = tick(None)
    assert not empty.run_requests and "no new orders" in (empty.skip_message or "")

    client = client_for(warehouse_url, database=orchestration_database)
    client.insert(
        "conversions",
        [["t", datetime(2026, 11, 1, tzinfo=UTC), "e1", "c1", "o1", 1, 100, 90, "BRL", "s2s",
          datetime(2026, 11, 1, 0, 0, 5, tzinfo=UTC)]],
        column_names=["tenant_id", "ts", "event_id", "conversion_id", "order_id", "version",
                      "amount_minor", "net_minor", "currency", "source", "received_at"],
    )  # fmt: skip
    first = tick(None)
    assert [request.run_key for request in first.run_requests] == [
        "orders-until-2026-11-01 00:00:05.000"
    ]
    assert first.cursor == "2026-11-01 00:00:05.000"
    assert not tick(first.cursor).run_requests  # nothing new since

    client.insert(
        "order_updates",
        [["t", datetime(2026, 11, 2, tzinfo=UTC), "e2", "u1", "o1", "refund", 10, "BRL", "s2s",
          datetime(2026, 11, 2, 0, 0, 7, tzinfo=UTC)]],
        column_names=["tenant_id", "ts", "event_id", "update_id", "order_id", "kind",
                      "amount_minor", "currency", "source", "received_at"],
    )  # fmt: skip
    assert len(tick(first.cursor).run_requests) == 1  # a refund is news too
    client.close()


def test_a_failed_run_is_alerted(definitions: Any, caplog: pytest.LogCaptureFixture) -> None:
    @dg.op
    def explode() -> None:
        raise RuntimeError("the warehouse is gone")

    @dg.job
    def fragile_job() -> None:
        explode()

    instance = dg.DagsterInstance.ephemeral()
    result = fragile_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(
        event for event in result.all_events if event.event_type_value == "PIPELINE_FAILURE"
    )
    sensor = definitions.get_repository_def().get_sensor_def("run_failure_alert")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()
    with caplog.at_level(logging.WARNING, logger="rastro.alerts"):
        sensor(context)
    alert = json.loads(caplog.records[-1].getMessage())
    assert alert["alert"] == "run_failed" and alert["details"]["job"] == "fragile_job"
    assert alert["details"]["run_id"] == result.run_id
