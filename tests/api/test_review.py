"""Commission review (api/review.py, api/routes/commissions.py) on real marts: simulated
traffic ingested, `dbt build` run, then the fraud batch's flags and holds recorded (after
the build, as decisions the ledger has not booked yet). Every expectation is computed from
the warehouse's own tables, never written down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from api import audit
from api.main import create_app
from api.store import ConfigStore
from tests.api.conftest import BuiltWarehouse, TenantFixture, build_database
from tests.conftest import client_for


@pytest.fixture(scope="module")
def reviewed(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltWarehouse]:
    yield from build_database(
        warehouse_url,
        tmp_path_factory.mktemp("review"),
        "rastro_api_review",
        seed=11,
        conversions=100,
        up_to_now=True,
        fraud=True,
    )


@pytest.fixture(scope="module")
def client(reviewed: BuiltWarehouse) -> Iterator[TestClient]:
    with TestClient(create_app(reviewed.settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def warehouse(reviewed: BuiltWarehouse) -> Iterator[Any]:
    """A client on the database, to check what the API wrote and compute expectations."""
    connection = client_for(
        str(reviewed.settings.clickhouse_url), database=reviewed.settings.clickhouse_database
    )
    yield connection
    connection.close()


def _key(
    built: BuiltWarehouse, tenant_id: str, scope: str, affiliate_id: str | None = None
) -> dict[str, str]:
    key = (
        ConfigStore(built.settings)
        .for_tenant(tenant_id)
        .create_api_key(f"test {scope}", [scope], affiliate_id=affiliate_id)
    )
    return {"Authorization": f"Bearer {key}"}


def _rows(warehouse: Any, sql: str, **parameters: Any) -> list[dict[str, Any]]:
    result = warehouse.query(sql, parameters=parameters)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _tenant_with_flags(warehouse: Any) -> str:
    """The tenant with the most held commissions (the fraud batch found some)."""
    [row] = _rows(
        warehouse,
        "SELECT tenant_id FROM commission_decisions WHERE decided_by LIKE 'rule:%' "
        "GROUP BY tenant_id ORDER BY count() DESC LIMIT 1",
    )
    return str(row["tenant_id"])


def _all_pages(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = ""
    while True:
        page = client.get("/v1/commissions", headers=headers, params={**params, "after": after})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        after = page.json()["next_after"]
        if after is None:
            return items


def _pending(warehouse: Any, tenant_id: str, count: int = 1) -> list[str]:
    """Commissions still inside their hold period (for a day more at least), not decided on."""
    rows = _rows(
        warehouse,
        "SELECT commission_id FROM fct_commissions WHERE tenant_id = {t:String} "
        "AND hold_until > now64(3) + INTERVAL 1 DAY AND commission_minor > 0 "
        "AND commission_id NOT IN (SELECT commission_id FROM commission_decisions) "
        "ORDER BY commission_id LIMIT {n:UInt32}",
        t=tenant_id,
        n=count,
    )
    assert len(rows) == count, "the simulation left too few commissions in their hold period"
    return [str(row["commission_id"]) for row in rows]


# -- the list and the queue -----------------------------------------------------------------------


def test_the_list_pages_through_every_commission_with_its_flags_and_holds(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    tenant = _tenant_with_flags(warehouse)
    admin = _key(reviewed, tenant, "admin")
    expected = {
        str(r["commission_id"]): r
        for r in _rows(
            warehouse,
            "SELECT commission_id, commission_minor, currency, affiliate_id "
            "FROM fct_commissions WHERE tenant_id = {t:String}",
            t=tenant,
        )
    }
    items = _all_pages(client, admin, limit=7)
    order = [(datetime.fromisoformat(i["converted_at"]), i["commission_id"]) for i in items]
    assert order == sorted(order)  # oldest first
    assert {i["commission_id"] for i in items} == set(expected)
    assert len(items) == len(expected)  # no page repeats a row
    for item in items:
        assert item["amount_minor"] == expected[item["commission_id"]]["commission_minor"]
        assert item["currency"] == expected[item["commission_id"]]["currency"]

    # Flags: exactly the commissions the fraud batch flagged, each with its evidence.
    flagged = {
        str(r["commission_id"]): r["rules"]
        for r in _rows(
            warehouse,
            "SELECT commission_id, groupArray(rule) AS rules FROM fraud_flags FINAL "
            "WHERE tenant_id = {t:String} AND commission_id != '' GROUP BY commission_id",
            t=tenant,
        )
    }
    assert flagged
    listed = _all_pages(client, admin, flagged="true")
    assert {i["commission_id"] for i in listed} == set(flagged)
    for item in listed:
        assert sorted(f["rule"] for f in item["fraud_flags"]) == sorted(
            flagged[item["commission_id"]]
        )
        assert all(isinstance(f["evidence"], dict) and f["threshold"] for f in item["fraud_flags"])
    unflagged = _all_pages(client, admin, flagged="false")
    assert len(unflagged) + len(listed) == len(expected)

    # The fraud holds were recorded after the build: on hold now, not booked yet.
    held = {
        str(r["commission_id"])
        for r in _rows(
            warehouse,
            "SELECT DISTINCT commission_id FROM commission_decisions "
            "WHERE tenant_id = {t:String} AND decision = 'hold'",
            t=tenant,
        )
    }
    queue = _all_pages(client, admin, status="on_hold")
    reversed_ = {i["commission_id"] for i in _all_pages(client, admin, status="reversed")}
    assert {i["commission_id"] for i in queue} == held - reversed_
    for item in queue:
        assert item["awaiting_ledger"] is True
        decision = item["latest_decision"]
        assert decision["decision"] == "hold" and decision["booked"] is False
        assert decision["decided_by"].startswith("rule:") and decision["reason"]


def test_filters_by_affiliate_campaign_and_time(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    tenant = reviewed.tenant_ids[0]
    admin = _key(reviewed, tenant, "admin")
    [busiest] = _rows(
        warehouse,
        "SELECT affiliate_id, campaign_id, count() AS n, "
        "arraySort(groupArray(converted_at)) AS times FROM fct_commissions "
        "WHERE tenant_id = {t:String} GROUP BY affiliate_id, campaign_id "
        "ORDER BY n DESC, affiliate_id LIMIT 1",
        t=tenant,
    )
    by_affiliate = _all_pages(client, admin, affiliate_id=busiest["affiliate_id"])
    assert {i["affiliate_id"] for i in by_affiliate} == {busiest["affiliate_id"]}
    both = _all_pages(
        client, admin, affiliate_id=busiest["affiliate_id"], campaign_id=busiest["campaign_id"]
    )
    assert len(both) == busiest["n"]
    middle = busiest["times"][len(busiest["times"]) // 2].replace(tzinfo=UTC)
    early = _all_pages(client, admin, affiliate_id=busiest["affiliate_id"], to=middle.isoformat())
    late = _all_pages(
        client, admin, affiliate_id=busiest["affiliate_id"], **{"from": middle.isoformat()}
    )
    assert len(early) + len(late) == len(by_affiliate)
    assert all(datetime.fromisoformat(i["converted_at"]) < middle for i in early)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "approvd"},
        {"flagged": "maybe"},
        {"limit": 0},
        {"limit": 1001},
        {"after": "not-a-cursor"},
        {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
        {"from": "yesterday"},
    ],
)
def test_list_refuses_bad_parameters(
    reviewed: BuiltWarehouse, client: TestClient, params: dict[str, Any]
) -> None:
    admin = _key(reviewed, reviewed.tenant_ids[0], "admin")
    response = client.get("/v1/commissions", headers=admin, params=params)
    assert response.status_code == 422, response.text


def test_one_commission_in_full(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    tenant = _tenant_with_flags(warehouse)
    admin = _key(reviewed, tenant, "admin")
    [held] = _rows(
        warehouse,
        "SELECT commission_id FROM commission_decisions WHERE tenant_id = {t:String} "
        "AND decision = 'hold' ORDER BY commission_id LIMIT 1",
        t=tenant,
    )
    commission_id = str(held["commission_id"])
    response = client.get(f"/v1/commissions/{commission_id}", headers=admin)
    assert response.status_code == 200, response.text
    detail = response.json()
    entries = _rows(
        warehouse,
        "SELECT entry_id, earned_delta_minor FROM fct_ledger_entries "
        "WHERE commission_id = {c:String}",
        c=commission_id,
    )
    assert sorted(e["entry_id"] for e in detail["ledger_entries"]) == sorted(
        e["entry_id"] for e in entries
    )
    earned = sum(e["earned_delta_minor"] for e in entries)
    assert sum(e["earned_delta_minor"] for e in detail["ledger_entries"]) == earned
    assert detail["ledger"]["earned_minor"] == earned
    assert [d["decision"] for d in detail["decisions"]][-1] == "hold"
    assert all(d["booked"] is False for d in detail["decisions"])
    [pricing] = _rows(
        warehouse,
        "SELECT rule_ids, order_amount_minor FROM fct_commissions WHERE commission_id = {c:String}",
        c=commission_id,
    )
    assert detail["rule_ids"] == pricing["rule_ids"]
    assert detail["order_amount_minor"] == pricing["order_amount_minor"]
    assert detail["payments"] == []

    missing = client.get("/v1/commissions/nope:nope", headers=admin)
    assert missing.status_code == 404


# -- decisions ------------------------------------------------------------------------------------


def test_a_decision_applies_now_is_audited_and_awaits_the_ledger(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    tenant = reviewed.tenant_ids[1]
    admin = _key(reviewed, tenant, "admin")
    first, second = _pending(warehouse, tenant, 2)
    before = client.get(f"/v1/commissions/{first}", headers=admin).json()
    assert before["status"] == "pending" and before["latest_decision"] is None

    response = client.post(
        "/v1/commissions/decisions",
        headers=admin,
        json={"decision": "approve", "commission_ids": [first, second, first], "reason": " ok "},
    )
    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["ledger"] == "updates at the next build"
    assert [c["commission_id"] for c in recorded["commissions"]] == [first, second]
    assert {(c["previous_status"], c["status"]) for c in recorded["commissions"]} == {
        ("pending", "approved")
    }

    after = client.get(f"/v1/commissions/{first}", headers=admin).json()
    assert after["status"] == "approved"
    assert after["awaiting_ledger"] is True
    assert after["latest_decision"]["decision"] == "approve"
    assert after["latest_decision"]["booked"] is False
    assert after["latest_decision"]["reason"] == "ok"
    # The ledger moves at its next build: still pending there.
    assert after["ledger"] == before["ledger"]
    assert after["ledger"]["pending_minor"] == after["amount_minor"]

    stored = _rows(
        warehouse,
        "SELECT decision, reason, decided_by FROM commission_decisions "
        "WHERE commission_id IN {ids:Array(String)}",
        ids=[first, second],
    )
    principal = ConfigStore(reviewed.settings).authenticate(admin["Authorization"][7:])
    assert principal is not None
    assert stored == [{"decision": "approve", "reason": "ok", "decided_by": principal.actor_id}] * 2
    scope = ConfigStore(reviewed.settings).for_tenant(tenant)
    for commission_id in (first, second):
        [entry] = audit.entries(scope, "commission", commission_id)
        assert entry.action == "commission.approve"
        assert entry.actor_id == principal.actor_id and entry.reason == "ok"
        assert entry.details["previous_status"] == "pending"

    queue = {i["commission_id"] for i in _all_pages(client, admin, status="approved")}
    assert {first, second} <= queue


def test_reject_hold_and_release_follow_the_rules(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    tenant = reviewed.tenant_ids[2]
    admin = _key(reviewed, tenant, "admin")
    held, rejected = _pending(warehouse, tenant, 2)

    def decide(decision: str, ids: list[str], reason: str = "") -> Any:
        return client.post(
            "/v1/commissions/decisions",
            headers=admin,
            json={"decision": decision, "commission_ids": ids, "reason": reason},
        )

    for decision in ("reject", "hold"):
        missing_reason = decide(decision, [held], "   ")
        assert missing_reason.status_code == 422
        assert "reason" in missing_reason.text
    assert decide("release", [held]).status_code == 409  # not on hold

    assert decide("hold", [held], "Customer complained").status_code == 201
    assert client.get(f"/v1/commissions/{held}", headers=admin).json()["status"] == "on_hold"
    released = decide("release", [held])
    assert released.status_code == 201
    assert released.json()["commissions"][0]["status"] == "pending"  # its hold period runs on

    convenience = client.post(
        f"/v1/commissions/{rejected}/reject", headers=admin, json={"reason": "Self-referral"}
    )
    assert convenience.status_code == 201, convenience.text
    assert (
        client.post(f"/v1/commissions/{rejected}/reject", headers=admin, json={}).status_code == 422
    )

    written = warehouse.command("SELECT count() FROM commission_decisions")
    # Approving a rejected one: 409 naming it, and nothing written for any of the ids.
    conflict = decide("approve", [held, rejected])
    assert conflict.status_code == 409
    assert rejected in conflict.json()["detail"] and "rejected" in conflict.json()["detail"]
    assert held not in conflict.json()["detail"]
    assert client.post(f"/v1/commissions/{rejected}/approve", headers=admin).status_code == 409
    # Unknown ids: 404 listing them all, nothing written.
    unknown = decide("approve", [held, "x:1", "y:2"])
    assert unknown.status_code == 404
    assert "x:1" in unknown.json()["detail"] and "y:2" in unknown.json()["detail"]
    assert warehouse.command("SELECT count() FROM commission_decisions") == written
    assert client.post(f"/v1/commissions/{held}/approve", headers=admin).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "approve", "commission_ids": []},
        {"decision": "approve", "commission_ids": [f"c{i}:a" for i in range(1001)]},
        {"decision": "accept", "commission_ids": ["c:a"]},
        {"decision": "approve", "commission_ids": ["no-colon"]},
        {"decision": "approve", "commission_ids": ["c:a"], "tenant_id": "other"},
        {"decision": "approve", "commission_ids": ["c:a"], "reason": "x" * 1001},
        {"commission_ids": ["c:a"]},
    ],
)
def test_decisions_refuse_invalid_bodies(
    reviewed: BuiltWarehouse, client: TestClient, body: dict[str, Any]
) -> None:
    admin = _key(reviewed, reviewed.tenant_ids[0], "admin")
    assert client.post("/v1/commissions/decisions", headers=admin, json=body).status_code == 422


# -- who may do what ------------------------------------------------------------------------------


def test_keys_and_scopes(reviewed: BuiltWarehouse, client: TestClient, warehouse: Any) -> None:
    tenant = reviewed.tenant_ids[0]
    [commission_id] = _pending(warehouse, tenant)
    decision = {"decision": "approve", "commission_ids": [commission_id]}
    assert client.get("/v1/commissions").status_code == 401
    assert client.post("/v1/commissions/decisions", json=decision).status_code == 401
    bad = {"Authorization": "Bearer rk_not_a_key"}
    assert client.get(f"/v1/commissions/{commission_id}", headers=bad).status_code == 401

    ingest = _key(reviewed, tenant, "ingest")
    assert client.get("/v1/commissions", headers=ingest).status_code == 403
    analyst = _key(reviewed, tenant, "analyst")
    assert client.get("/v1/commissions", headers=analyst).status_code == 200
    assert client.get(f"/v1/commissions/{commission_id}", headers=analyst).status_code == 200
    for key in (analyst, ingest):
        assert (
            client.post("/v1/commissions/decisions", headers=key, json=decision).status_code == 403
        )
        assert (
            client.post(f"/v1/commissions/{commission_id}/approve", headers=key).status_code == 403
        )
    assert (
        warehouse.command(
            "SELECT count() FROM commission_decisions WHERE commission_id = {c:String}",
            parameters={"c": commission_id},
        )
        == 0
    )


def test_another_tenant_sees_and_decides_nothing(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    owner, intruder = reviewed.tenant_ids[0], reviewed.tenant_ids[3]
    [commission_id] = _pending(warehouse, owner)
    affiliate_id = commission_id.split(":")[1]
    other = _key(reviewed, intruder, "admin")
    assert client.get(f"/v1/commissions/{commission_id}", headers=other).status_code == 404
    assert _all_pages(client, other, affiliate_id=affiliate_id) == []
    for decision in ("approve", "reject", "hold"):
        response = client.post(
            "/v1/commissions/decisions",
            headers=other,
            json={"decision": decision, "commission_ids": [commission_id], "reason": "mine"},
        )
        assert response.status_code == 404
    assert client.post(f"/v1/commissions/{commission_id}/approve", headers=other).status_code == 404
    assert (
        warehouse.command(
            "SELECT count() FROM commission_decisions WHERE commission_id = {c:String}",
            parameters={"c": commission_id},
        )
        == 0
    )


def test_an_affiliate_sees_its_own_commissions_without_fraud_evidence(
    reviewed: BuiltWarehouse, client: TestClient, warehouse: Any
) -> None:
    tenant = _tenant_with_flags(warehouse)
    # The flagged affiliate with the most commissions: one is held, another gets rejected.
    [row] = _rows(
        warehouse,
        "SELECT f.affiliate_id AS affiliate_id, any(f.commission_id) AS held, "
        "any(counts.commissions) AS commissions FROM fraud_flags AS f FINAL "
        "INNER JOIN (SELECT affiliate_id, count() AS commissions FROM fct_commissions "
        "GROUP BY affiliate_id) AS counts ON counts.affiliate_id = f.affiliate_id "
        "WHERE f.tenant_id = {t:String} AND f.commission_id != '' "
        "GROUP BY f.affiliate_id ORDER BY commissions DESC, f.affiliate_id LIMIT 1",
        t=tenant,
    )
    affiliate_id, held = str(row["affiliate_id"]), str(row["held"])
    own = warehouse.command(
        "SELECT count() FROM fct_commissions "
        "WHERE tenant_id = {t:String} AND affiliate_id = {a:String}",
        parameters={"t": tenant, "a": affiliate_id},
    )
    [other] = _rows(
        warehouse,
        "SELECT commission_id FROM fct_commissions WHERE tenant_id = {t:String} "
        "AND affiliate_id = {a:String} AND commission_id != {h:String} "
        "AND commission_id NOT IN (SELECT commission_id FROM commission_decisions) LIMIT 1",
        t=tenant,
        a=affiliate_id,
        h=held,
    )
    other_commission = str(other["commission_id"])
    admin = _key(reviewed, tenant, "admin")
    mine = _key(reviewed, tenant, "affiliate", affiliate_id)
    items = _all_pages(client, mine)
    assert len(items) == own and {i["affiliate_id"] for i in items} == {affiliate_id}
    assert all(i["fraud_flags"] == [] for i in items)
    assert len(_all_pages(client, mine, flagged="true")) == own  # the filter is not theirs
    detail = client.get(f"/v1/commissions/{held}", headers=mine).json()
    assert detail["fraud_flags"] == []
    for decision in [detail["latest_decision"], *detail["decisions"]]:
        assert decision["decided_by"] == ""
        if decision["decision"] == "hold":
            assert decision["reason"] == ""
    reason = "Pedido cancelado pelo cliente"
    rejected = client.post(
        f"/v1/commissions/{other_commission}/reject", headers=admin, json={"reason": reason}
    )
    assert rejected.status_code == 201
    seen = client.get(f"/v1/commissions/{other_commission}", headers=mine).json()
    assert seen["status"] == "rejected" and seen["latest_decision"]["reason"] == reason

    # Another affiliate's commission does not exist for this key.
    [foreign] = _rows(
        warehouse,
        "SELECT commission_id FROM fct_commissions WHERE tenant_id = {t:String} "
        "AND affiliate_id != {a:String} LIMIT 1",
        t=tenant,
        a=affiliate_id,
    )
    assert (
        client.get(f"/v1/commissions/{foreign['commission_id']}", headers=mine).status_code == 404
    )
    decision = {"decision": "approve", "commission_ids": [held]}
    assert client.post("/v1/commissions/decisions", headers=mine, json=decision).status_code == 403


def test_before_the_first_build_the_list_is_unavailable(
    app: TestClient, tenant: TenantFixture
) -> None:
    response = app.get("/v1/commissions", headers=tenant.auth)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
