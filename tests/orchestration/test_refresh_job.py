"""The attribution refresh job end to end in Dagster, against the warehouse under test:
simulated traffic landed by the ingest job, then every model and check; a failed blocking
check stops what is downstream of it: a dbt test on the commission rules stops the
commissions and the ledger, a landing check (an invalid currency) stops every model."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from ingest.run import run_ingest
from ingest.settings import IngestSettings
from pipelines.simulate import Options, simulate
from rastro.settings import Settings
from tests.conftest import client_for

LEDGER = dg.AssetKey(["fct_ledger_entries"])
COMMISSIONS = dg.AssetKey(["fct_commissions"])


def _run(definitions: Any, job_name: str = "attribution_refresh_job") -> dg.ExecuteInProcessResult:
    job = definitions.resolve_job_def(job_name)
    result: dg.ExecuteInProcessResult = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    return result


def _materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {
        event.asset_key
        for event in result.get_asset_materialization_events()
        if event.asset_key is not None
    }


@pytest.mark.slow
def test_refresh_runs_every_model_and_a_failed_blocking_check_stops_the_ledger(
    definitions: Any,
    warehouse_url: str,
    orchestration_database: str,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "state",
        clickhouse_url=warehouse_url,
        clickhouse_database=orchestration_database,
    )
    simulate(settings, Options(seed=5, conversions=30, out=tmp_path / "truth"))
    run_ingest(settings, IngestSettings(stop_at_end=True))
    client = client_for(warehouse_url, database=orchestration_database)

    first = _run(definitions)
    assert first.success
    assert {LEDGER, COMMISSIONS, dg.AssetKey(["fraud_flags"])} <= _materialized(first)
    entries = client.command("SELECT count() FROM fct_ledger_entries")
    assert entries > 0

    # The daily jobs on the same data. A merchant report that disagrees with the orders
    # received is a difference, recorded and alerted.
    tenant, day, currency, orders = client.query(
        "SELECT tenant_id, toDate(ts), currency, count() FROM conversions_dedup "
        "WHERE version = 1 AND kind = 'sale' GROUP BY ALL ORDER BY toDate(ts) DESC LIMIT 1"
    ).result_rows[0]
    client.insert(
        "merchant_reports",
        [[tenant, day, currency, "api", orders + 5, 0, 0, datetime.now(UTC)]],
        column_names=["tenant_id", "day", "currency", "source", "orders", "gross_minor",
                      "refunds_minor", "reported_at"],
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="rastro.alerts"):
        reconciled = _run(definitions, "reconciliation_job")
    assert reconciled.success
    [difference] = client.query(
        "SELECT expected, actual FROM reconciliation_differences FINAL "
        "WHERE check_name = 'orders_vs_reported' AND key = 'orders'"
    ).result_rows
    assert difference == (orders + 5, orders)
    assert "reconciliation_difference" in caplog.text
    assert _run(definitions, "fraud_job").success
    payouts = _run(definitions, "payout_job")
    assert payouts.success
    [batch] = [
        event.materialization.metadata for event in payouts.get_asset_materialization_events()
    ]
    approved = client.command(
        "SELECT sumIf(approved, approved >= 5000) FROM (SELECT tenant_id, affiliate_id, "
        "currency, sum(approved_delta_minor) AS approved FROM fct_ledger_entries GROUP BY ALL)"
    )
    assert batch["amount_minor"].value == approved

    # A blocking great-expectations check on the marts: fct_attributions corrupted (a payable
    # credit counted twice), then that check and the ledger step alone. The check fails and
    # the ledger does not advance; the next full refresh rebuilds the mart.
    client.command(
        "INSERT INTO fct_attributions SELECT * FROM fct_attributions WHERE is_payable = 1 LIMIT 1"
    )
    from orchestration.defs.dbt.assets import LEDGER_MODELS  # loaded by `definitions`

    subset = definitions.resolve_job_def("attribution_refresh_job").get_subset(
        asset_selection={dg.AssetKey([model]) for model in LEDGER_MODELS},
        asset_check_selection={
            dg.AssetCheckKey(dg.AssetKey(["fct_attributions"]), "attribution_splits_exact")
        },
    )
    blocked = subset.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    [evaluation] = blocked.get_asset_check_evaluations()
    assert evaluation.check_name == "attribution_splits_exact" and not evaluation.passed
    assert not _materialized(blocked)
    assert client.command("SELECT count() FROM fct_ledger_entries") == entries

    # A campaign's new terms with a rule the models cannot price: the dbt test fails, and
    # neither the commissions nor the ledger advance in that run.
    tenant, campaign = client.query(
        "SELECT tenant_id, campaign_id FROM campaigns FINAL LIMIT 1"
    ).result_rows[0]
    now = datetime.now(UTC)
    client.insert(
        "campaigns",
        [[tenant, campaign, 99, "broken terms", "active", now, "last_click",
          json.dumps([{"id": "x", "type": "percent", "rate": "ten percent"}]), now, now, 1]],
        column_names=["tenant_id", "campaign_id", "terms_version", "name", "status",
                      "valid_from", "attribution_model", "commission_rules", "created_at",
                      "updated_at", "version"],
    )  # fmt: skip
    second = _run(definitions)
    assert not second.success
    failed_checks = {
        evaluation.check_name
        for evaluation in second.get_asset_check_evaluations()
        if not evaluation.passed
    }
    assert "assert_commission_rules_are_valid" in failed_checks
    assert not {LEDGER, COMMISSIONS} & _materialized(second)
    assert client.command("SELECT count() FROM fct_ledger_entries") == entries

    # A conversion whose currency is not an ISO 4217 code lands: the blocking landing check
    # fails and no model runs at all.
    client.command(
        "INSERT INTO conversions (tenant_id, ts, event_id, conversion_id, order_id, version, "
        "amount_minor, net_minor, currency, source, received_at) "
        f"VALUES ('{tenant}', now64(3), 'bad-1', 'c-bad', 'o-bad', 1, 100, 90, 'brl', 's2s', "
        "now64(3))"
    )
    third = _run(definitions)
    assert not third.success
    failed = {
        (evaluation.asset_key.to_user_string(), evaluation.check_name)
        for evaluation in third.get_asset_check_evaluations()
        if not evaluation.passed
    }
    assert ("landing/conversions", "conversions_amounts_valid") in failed
    assert not any(key.path[0] != "landing" for key in _materialized(third))
    client.close()
