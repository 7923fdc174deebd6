"""What-if scenarios on real marts (`built_warehouse`): the production dbt models, run with
one campaign's model or window replaced, reproduce the actual commissions exactly when
nothing changes, and otherwise move them as the rules say, checked against figures computed
independently from the actual marts."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from api import reports
from api.main import create_app
from api.store import ConfigStore, Principal
from pipelines.what_if import RUNNER, Scenario, drop_abandoned, scratch_database
from tests.api.conftest import BuiltWarehouse
from tests.api.test_reports import Warehouse, key

FIRST = date(2026, 1, 1)


@pytest.fixture(scope="module")
def built_app(built_warehouse: BuiltWarehouse) -> Iterator[TestClient]:
    with TestClient(create_app(built_warehouse.settings)) as client:
        yield client


@pytest.fixture(scope="module")
def warehouse(built_warehouse: BuiltWarehouse) -> Iterator[Warehouse]:
    reads = Warehouse(built_warehouse)
    yield reads
    reads.client.close()


@pytest.fixture(scope="module")
def moda_rio(built_warehouse: BuiltWarehouse, warehouse: Warehouse) -> dict[str, Any]:
    """The tenant with one campaign (first_click, 45 days, 10% of net): every commission
    is the campaign's, so the scenarios' totals can be worked out by hand."""
    row = warehouse.rows(
        "SELECT tenants.tenant_id AS tenant_id, campaigns.campaign_id AS campaign_id, "
        "campaigns.attribution_model AS model, campaigns.attribution_window_days AS window, "
        "campaigns.commission_rules AS rules "
        "FROM tenants FINAL INNER JOIN campaigns FINAL USING (tenant_id) "
        "WHERE tenants.name = 'Moda Rio' AND tenants.tenant_id IN {ids:Array(String)}",
        ids=built_warehouse.tenant_ids,
    )
    assert len(row) == 1
    rules = json.loads(row[0]["rules"])
    assert [(r["type"], r.get("base", "net")) for r in rules] == [("percent", "net")]
    return {
        **row[0],
        "rate": Decimal(rules[0]["rate"]),
        "admin": key(built_warehouse, row[0]["tenant_id"], "admin"),
    }


def period() -> dict[str, str]:
    # A scenario replays the past: up to today, from the start of the simulated year.
    today = datetime.now(ZoneInfo("America/Sao_Paulo")).date()
    return {"from": FIRST.isoformat(), "to": min(today, date(2026, 12, 31)).isoformat()}


def run(app: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """Starts a scenario, waits for the runner, returns the finished run."""
    started = app.post("/v1/reports/what-if", headers=headers, json={**period(), **body})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert started.headers["Location"] == f"/v1/reports/what-if/{run_id}"
    RUNNER.wait_idle()
    finished = app.get(f"/v1/reports/what-if/{run_id}", headers=headers)
    assert finished.status_code == 200, finished.text
    result: dict[str, Any] = finished.json()
    assert result["status"] == "done", result["error"]
    return result


def by_affiliate(result: dict[str, Any], side: str) -> dict[str, int]:
    (currency,) = result["result"]["currencies"]
    return {
        row["affiliate_id"]: row[f"{side}_commission_minor"]
        for row in currency["affiliates"]
        if row[f"{side}_conversions"]
    }


def actual_commissions(warehouse: Warehouse, tenant: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for row in warehouse.rows(
        "SELECT affiliate_id, commission_minor FROM fct_commissions "
        "WHERE tenant_id = {t:String} AND campaign_id = {c:String}",
        t=tenant["tenant_id"],
        c=tenant["campaign_id"],
    ):
        totals[row["affiliate_id"]] += row["commission_minor"]
    return dict(totals)


def test_the_model_in_force_reproduces_the_actual_commissions(
    built_app: TestClient, warehouse: Warehouse, moda_rio: dict[str, Any]
) -> None:
    result = run(
        built_app,
        moda_rio["admin"],
        campaign_id=moda_rio["campaign_id"],
        attribution_model=moda_rio["model"],
        attribution_window_days=moda_rio["window"],
    )
    (currency,) = result["result"]["currencies"]
    assert currency["currency"] == "BRL"
    assert currency["scenario_commission_minor"] == currency["actual_commission_minor"] > 0
    assert currency["scenario_conversions"] == currency["actual_conversions"] > 0
    assert currency["difference_minor"] == 0
    assert by_affiliate(result, "scenario") == by_affiliate(result, "actual")
    assert by_affiliate(result, "actual") == actual_commissions(warehouse, moda_rio)
    assert result["result"]["all_campaigns"][0]["difference_minor"] == 0
    assert result["parameters"]["period"] == {**period(), "timezone": "America/Sao_Paulo"}
    assert 0 < result["result"]["dbt_seconds"] <= result["result"]["total_seconds"]


def expected_under(warehouse: Warehouse, tenant: dict[str, Any], model: str) -> dict[str, int]:
    """Each affiliate's commissions if `model` were payable, from the actual build's credits
    under that model (fct_attributions holds every model): rate x net x share, rounded half
    to even per credit, as docs/attribution.md section 4 says."""
    totals: dict[str, int] = defaultdict(int)
    with localcontext() as exact:
        exact.prec = 60
        for credit in warehouse.rows(
            "SELECT affiliate_id, share, order_net_minor FROM fct_attributions "
            "WHERE tenant_id = {t:String} AND model = {m:String}",
            t=tenant["tenant_id"],
            m=model,
        ):
            amount = Decimal(credit["order_net_minor"]) * tenant["rate"]
            amount *= Decimal(repr(credit["share"]))
            totals[credit["affiliate_id"]] += int(amount.quantize(Decimal(1), ROUND_HALF_EVEN))
    return dict(totals)


@pytest.mark.parametrize("model", ["linear", "last_click"])
def test_another_model_moves_credit_between_affiliates(
    built_app: TestClient, warehouse: Warehouse, moda_rio: dict[str, Any], model: str
) -> None:
    assert model != moda_rio["model"]
    result = run(
        built_app, moda_rio["admin"], campaign_id=moda_rio["campaign_id"], attribution_model=model
    )
    scenario = by_affiliate(result, "scenario")
    assert scenario == expected_under(warehouse, moda_rio, model)
    assert scenario != by_affiliate(result, "actual")
    # Every conversion is still credited in full at the same rate: the total moves only by
    # the rounding of split credits (at most a cent per credit), never by more.
    (currency,) = result["result"]["currencies"]
    assert currency["scenario_conversions"] == currency["actual_conversions"]
    credits = warehouse.rows(
        "SELECT count() AS n FROM fct_attributions "
        "WHERE tenant_id = {t:String} AND model = {m:String}",
        t=moda_rio["tenant_id"],
        m=model,
    )[0]["n"]
    assert abs(currency["difference_minor"]) <= credits


def test_a_shorter_window_drops_the_older_journeys(
    built_app: TestClient, warehouse: Warehouse, moda_rio: dict[str, Any]
) -> None:
    result = run(
        built_app, moda_rio["admin"], campaign_id=moda_rio["campaign_id"], attribution_window_days=1
    )
    # Conversions that keep an eligible touch within a day of converting.
    kept = {
        row["conversion_id"]
        for row in warehouse.rows(
            "SELECT conversion_id FROM int_touchpoints__evaluated WHERE tenant_id = {t:String} "
            "AND exclusion_reason = '' AND touched_at >= converted_at - INTERVAL 1 DAY",
            t=moda_rio["tenant_id"],
        )
    }
    actual = warehouse.rows(
        "SELECT conversion_id, commission_minor FROM fct_commissions WHERE tenant_id = {t:String}",
        t=moda_rio["tenant_id"],
    )
    (currency,) = result["result"]["currencies"]
    assert 0 < currency["scenario_conversions"] == len(kept) < currency["actual_conversions"]
    # First click credits one affiliate in full: a kept conversion earns what it earned.
    assert currency["scenario_commission_minor"] == sum(
        row["commission_minor"] for row in actual if row["conversion_id"] in kept
    )
    assert currency["difference_minor"] < 0


def test_a_failed_scenario_is_recorded_and_the_runner_goes_on(
    built_warehouse: BuiltWarehouse, built_app: TestClient, moda_rio: dict[str, Any]
) -> None:
    scope = ConfigStore(built_warehouse.settings).for_tenant(moda_rio["tenant_id"])
    principal = Principal(tenant_id=moda_rio["tenant_id"], actor_id="test", scopes=["admin"])
    span = reports.Period.of(FIRST, date(2026, 6, 30), "America/Sao_Paulo")
    parameters = reports.WhatIfParameters(
        campaign_id=moda_rio["campaign_id"],
        period=reports.PeriodPublic.of(span),
        start=span.start,
        end=span.end,
        attribution_model="markov",  # the API refuses it; dbt must too, and say why
        attribution_window_days=None,
    )
    queued = reports.queue_what_if(scope, principal, parameters)
    scenario = Scenario(moda_rio["campaign_id"], span.start, span.end, attribution_model="markov")
    RUNNER.submit(scope, queued.run_id, scenario, queued.updated_at)
    RUNNER.wait_idle()
    failed = reports.what_if_run(scope, queued.run_id)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and "what_if__attribution_model is not a model" in failed.error
    assert failed.result is None
    # No scratch database is left behind, and the next scenario runs.
    assert not ConfigStore(built_warehouse.settings).rows(
        "SELECT name FROM system.databases WHERE name LIKE {p:String}",
        p=f"{built_warehouse.settings.clickhouse_database}_whatif_%",
    )
    assert run(
        built_app,
        moda_rio["admin"],
        campaign_id=moda_rio["campaign_id"],
        attribution_window_days=30,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give attribution_model, attribution_window_days or both"),
        ({"attribution_model": "markov"}, "first_click"),
        ({"attribution_window_days": 0}, "greater than or equal to 1"),
        ({"attribution_window_days": 366}, "less than or equal to 365"),
        ({"attribution_model": "linear", "to": "2027-06-30"}, "at most 366"),
        ({"attribution_model": "linear", "to": "2999-01-01"}, "between 2000-01-01 and 2199-12-31"),
        ({"attribution_model": "linear", "from": "2026-05-02", "to": "2026-05-01"}, "after"),
        ({"attribution_model": "linear", "surprise": 1}, "Extra inputs"),
    ],
)
def test_bad_scenarios_are_422(
    built_app: TestClient, moda_rio: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    response = built_app.post(
        "/v1/reports/what-if",
        headers=moda_rio["admin"],
        json={**period(), "campaign_id": moda_rio["campaign_id"], **body},
    )
    assert response.status_code == 422
    assert message in response.text


def test_a_period_after_today_is_422(built_app: TestClient, moda_rio: dict[str, Any]) -> None:
    today = datetime.now(ZoneInfo("America/Sao_Paulo")).date()
    response = built_app.post(
        "/v1/reports/what-if",
        headers=moda_rio["admin"],
        json={
            "campaign_id": moda_rio["campaign_id"],
            "from": today.isoformat(),
            "to": (today + timedelta(days=10)).isoformat(),
            "attribution_model": "linear",
        },
    )
    assert response.status_code == 422
    assert "after today" in response.text


def test_who_may_run_and_read_scenarios(
    built_app: TestClient,
    built_warehouse: BuiltWarehouse,
    warehouse: Warehouse,
    moda_rio: dict[str, Any],
) -> None:
    body = {**period(), "campaign_id": moda_rio["campaign_id"], "attribution_window_days": 30}
    assert built_app.post("/v1/reports/what-if", json=body).status_code == 401
    assert built_app.get("/v1/reports/what-if/x").status_code == 401
    tenant_id = moda_rio["tenant_id"]
    affiliate = warehouse.rows(
        "SELECT id FROM affiliates FINAL WHERE tenant_id = {t:String} LIMIT 1", t=tenant_id
    )[0]["id"]
    for scope, affiliate_id in (("ingest", None), ("affiliate", affiliate)):
        headers = key(built_warehouse, tenant_id, scope, affiliate_id)
        assert built_app.post("/v1/reports/what-if", headers=headers, json=body).status_code == 403
        assert built_app.get("/v1/reports/what-if/x", headers=headers).status_code == 403
    analyst = key(built_warehouse, tenant_id, "analyst")
    done = run(built_app, analyst, campaign_id=moda_rio["campaign_id"], attribution_window_days=30)
    assert done["requested_by"] != ""

    # Another tenant can neither read the run nor vary the campaign.
    other = next(t for t in built_warehouse.tenant_ids if t != tenant_id)
    stranger = key(built_warehouse, other, "admin")
    assert (
        built_app.get(f"/v1/reports/what-if/{done['run_id']}", headers=stranger).status_code == 404
    )
    assert built_app.post("/v1/reports/what-if", headers=stranger, json=body).status_code == 404
    runs = warehouse.rows(
        "SELECT count() AS n FROM what_if_runs WHERE tenant_id = {t:String}", t=other
    )
    assert runs[0]["n"] == 0  # nothing was queued
    assert built_app.get("/v1/reports/what-if/no-such-run", headers=analyst).status_code == 404


def test_scratch_databases_of_stopped_processes_are_dropped(
    built_warehouse: BuiltWarehouse, warehouse: Warehouse
) -> None:
    # As a process killed mid-scenario leaves it: a scratch database with the models' tables.
    settings = built_warehouse.settings
    scratch = scratch_database(settings.clickhouse_database, "0197b8fb-0000-7000-8000-00000000dead")
    warehouse.client.command(f"CREATE DATABASE {scratch}")
    warehouse.client.command(f"CREATE TABLE {scratch}.fct_commissions (x UInt8) ENGINE = Memory")
    other = f"{settings.clickhouse_database}_kept"  # not a scratch database
    warehouse.client.command(f"CREATE DATABASE {other}")
    warehouse.client.command(f"CREATE TABLE {other}.t (x UInt8) ENGINE = Memory")
    try:
        # Younger than a run can last: kept (it may be running in another process).
        assert drop_abandoned(settings) == []
        assert drop_abandoned(settings, age_s=0) == [scratch]
        databases = {row[0] for row in warehouse.client.query("SHOW DATABASES").result_rows}
        assert scratch not in databases and other in databases
    finally:
        warehouse.client.command(f"DROP DATABASE IF EXISTS {scratch}")
        warehouse.client.command(f"DROP DATABASE IF EXISTS {other}")
