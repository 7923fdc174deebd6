"""The webhooks API (api/routes/webhooks.py): endpoints with a secret shown once and kept
encrypted, URL rules, test events delivered to a real receiver, the delivery log and retries
by hand, rotation; admin keys only; another tenant's endpoints are 404 and stay untouched.
And the producer on real marts (a simulated month ingested and built by dbt)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from api import audit
from api.store import ConfigStore
from api.webhooks import endpoint, endpoint_secret, url_problem
from pipelines.webhooks import LEDGER_EVENTS, DeliveryPolicy, DeliveryWorker, produce
from rastro.crypto import Vault
from rastro.settings import Settings
from tests.api.conftest import BuiltWarehouse, TenantFixture
from tests.pipelines.test_webhooks import FakeClock, Receiver, receiver

__all__ = ["receiver"]  # the fixture, shared with the pipeline tests

URL = "https://erp.loja.example.com.br/hooks/rastro"


def create(
    app: TestClient, tenant: TenantFixture, url: str = URL, types: list[str] | None = None
) -> dict[str, Any]:
    response = app.post(
        "/v1/webhooks",
        headers=tenant.auth,
        json={"url": url, "event_types": types or ["commission.approved", "payout.paid"]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def deliver_all(settings: Settings) -> None:
    """One poll of the delivery worker, waited for."""
    DeliveryWorker(ConfigStore(settings), Vault(settings), DeliveryPolicy(), FakeClock()).run_once()


def test_event_types_are_listed(app: TestClient, tenant: TenantFixture) -> None:
    response = app.get("/v1/webhooks/event-types", headers=tenant.auth)
    assert response.status_code == 200
    types = {item["type"]: item for item in response.json()}
    assert set(types) == {
        "conversion.created",
        "commission.created",
        "commission.approved",
        "commission.rejected",
        "commission.reversed",
        "commission.clawed_back",
        "payout.paid",
        "webhook.test",
    }
    assert [t for t, item in types.items() if not item["subscribable"]] == ["webhook.test"]


def test_the_secret_is_shown_once_and_stored_encrypted(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    created = create(app, tenant, types=["payout.paid", "commission.approved"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["status"] == "active"
    assert created["event_types"] == ["commission.approved", "payout.paid"]

    shown = app.get(f"/v1/webhooks/{created['id']}", headers=tenant.auth).json()
    listed = app.get("/v1/webhooks", headers=tenant.auth).json()["items"]
    assert "secret" not in shown and listed == [shown]
    assert shown == {k: v for k, v in created.items() if k != "secret"}

    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    stored = endpoint(scope, created["id"])
    assert stored is not None
    assert secret not in stored.secret_ciphertext
    assert endpoint_secret(scope, Vault(settings), stored) == secret
    [entry] = audit.entries(scope, "webhook_endpoint", created["id"])
    assert (entry.action, entry.actor_kind) == ("webhook.create", "api_key")
    assert secret not in str(entry.details)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"url": "http://erp.example.com/hooks", "event_types": ["payout.paid"]}, "https"),
        ({"url": "ftp://erp.example.com/hooks", "event_types": ["payout.paid"]}, "https"),
        ({"url": "https://user:pw@erp.example.com/", "event_types": ["payout.paid"]}, "credential"),
        ({"url": "https://erp.example.com/#x", "event_types": ["payout.paid"]}, "fragment"),
        ({"url": "https://erp example.com/", "event_types": ["payout.paid"]}, "spaces"),
        ({"url": "https:///path", "event_types": ["payout.paid"]}, "no host"),
        ({"url": "https://erp.example.com:99999/", "event_types": ["payout.paid"]}, "not a URL"),
        ({"url": URL, "event_types": []}, "at least 1"),
        ({"url": URL, "event_types": ["order.shipped"]}, "Input should be"),
        ({"url": URL, "event_types": ["webhook.test"]}, "Input should be"),
        ({"url": URL, "event_types": ["payout.paid", "payout.paid"]}, "twice"),
        ({"url": URL, "event_types": ["payout.paid"], "secret": "mine"}, "Extra inputs"),
        ({"event_types": ["payout.paid"]}, "Field required"),
    ],
)
def test_invalid_endpoints_are_refused(
    app: TestClient, tenant: TenantFixture, body: dict[str, Any], problem: str
) -> None:
    response = app.post("/v1/webhooks", headers=tenant.auth, json=body)
    assert response.status_code == 422, response.text
    assert problem in response.text
    assert app.get("/v1/webhooks", headers=tenant.auth).json()["items"] == []


def test_local_and_private_urls(settings: Settings) -> None:
    assert url_problem("http://127.0.0.1:8080/hooks", settings) is None
    assert url_problem("http://localhost/hooks", settings) is None
    assert url_problem("https://10.0.0.7/hooks", settings) is None  # outside prod
    prod = settings.model_copy(update={"env": "prod", "secret_key": SecretStr("k" * 40)})
    assert url_problem("https://erp.example.com/hooks", prod) is None
    assert url_problem("http://127.0.0.1:8080/hooks", prod) is not None
    for host in ("localhost", "127.0.0.1", "10.0.0.7", "192.168.1.2", "169.254.169.254", "[::1]"):
        assert url_problem(f"https://{host}/hooks", prod) is not None, host


def _routes(endpoint_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/v1/webhooks/{endpoint_id}"
    return [
        ("GET", "/v1/webhooks/event-types", None),
        ("POST", "/v1/webhooks", {"url": URL, "event_types": ["payout.paid"]}),
        ("GET", "/v1/webhooks", None),
        ("GET", base, None),
        ("PATCH", base, {"status": "disabled"}),
        ("DELETE", base, None),
        ("POST", f"{base}/rotate-secret", None),
        ("POST", f"{base}/test", None),
        ("GET", f"{base}/deliveries", None),
        ("POST", f"{base}/deliveries/payout.paid:p-1:BRL/retry", None),
    ]


def test_only_admin_keys_get_in(app: TestClient, tenant: TenantFixture, settings: Settings) -> None:
    endpoint_id = create(app, tenant)["id"]
    config = ConfigStore(settings).for_tenant(tenant.tenant_id)
    others = {
        "analyst": config.create_api_key("reports", ["analyst"]),
        "ingest": config.create_api_key("store backend", ["ingest"]),
        "affiliate": config.create_api_key("ana", ["affiliate"], affiliate_id=tenant.affiliate_id),
    }
    for method, path, body in _routes(endpoint_id):
        missing = app.request(method, path, json=body)
        assert missing.status_code == 401, (method, path)
        for scope_name, key in others.items():
            headers = {"Authorization": f"Bearer {key}"}
            response = app.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (scope_name, method, path, response.text)
    assert app.get(f"/v1/webhooks/{endpoint_id}", headers=tenant.auth).json()["status"] == "active"


def test_unknown_ids_are_404(app: TestClient, tenant: TenantFixture) -> None:
    for method, path, body in _routes("019a0000-0000-7000-8000-000000000000")[3:]:
        response = app.request(method, path, json=body, headers=tenant.auth)
        assert response.status_code == 404, (method, path, response.text)


def test_another_tenants_endpoints_are_404_and_untouched(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture, settings: Settings
) -> None:
    created = create(app, tenant)
    app.post(f"/v1/webhooks/{created['id']}/test", headers=tenant.auth)
    before = app.get(f"/v1/webhooks/{created['id']}", headers=tenant.auth).json()
    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    audited = audit.entries(scope)

    for method, path, body in _routes(created["id"])[3:]:
        response = app.request(method, path, json=body, headers=other_tenant.auth)
        assert response.status_code == 404, (method, path, response.text)
    assert app.get("/v1/webhooks", headers=other_tenant.auth).json()["items"] == []

    assert app.get(f"/v1/webhooks/{created['id']}", headers=tenant.auth).json() == before
    assert audit.entries(scope) == audited
    stored = endpoint(scope, created["id"])
    assert stored is not None
    assert endpoint_secret(scope, Vault(settings), stored) == created["secret"]


def test_update_disable_and_re_enable(app: TestClient, tenant: TenantFixture) -> None:
    created = create(app, tenant)
    path = f"/v1/webhooks/{created['id']}"

    changed = app.patch(
        path,
        headers=tenant.auth,
        json={"url": "https://hooks.loja.example.com.br/v2", "event_types": ["payout.paid"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["url"] == "https://hooks.loja.example.com.br/v2"
    assert changed.json()["event_types"] == ["payout.paid"]

    for bad in ({"url": "http://hooks.example.com"}, {"status": "paused"}, {"id": "x"}):
        assert app.patch(path, headers=tenant.auth, json=bad).status_code == 422, bad

    disabled = app.patch(path, headers=tenant.auth, json={"status": "disabled"}).json()
    assert disabled["status"] == "disabled"
    assert disabled["disabled_reason"] == "disabled by first admin key"
    assert app.post(f"{path}/test", headers=tenant.auth).status_code == 409
    retried = app.post(f"{path}/deliveries/payout.paid:p-1:BRL/retry", headers=tenant.auth)
    assert retried.status_code == 409

    enabled = app.patch(path, headers=tenant.auth, json={"status": "active"}).json()
    assert (enabled["status"], enabled["disabled_reason"]) == ("active", "")
    assert app.post(f"{path}/test", headers=tenant.auth).status_code == 202


def test_delete(app: TestClient, tenant: TenantFixture) -> None:
    kept, gone = create(app, tenant), create(app, tenant)
    response = app.delete(f"/v1/webhooks/{gone['id']}", headers=tenant.auth)
    assert response.status_code == 204
    assert app.get(f"/v1/webhooks/{gone['id']}", headers=tenant.auth).status_code == 404
    ids = [item["id"] for item in app.get("/v1/webhooks", headers=tenant.auth).json()["items"]]
    assert ids == [kept["id"]]


def test_test_event_delivery_log_and_retry(
    app: TestClient, tenant: TenantFixture, settings: Settings, receiver: Receiver
) -> None:
    created = create(app, tenant, url=receiver.url, types=["payout.paid"])
    other = create(app, tenant, url=receiver.url + "?other", types=["payout.paid"])
    path = f"/v1/webhooks/{created['id']}"

    queued = app.post(f"{path}/test", headers=tenant.auth)
    assert queued.status_code == 202
    event_id = queued.json()["event_id"]
    assert event_id.startswith("webhook.test:")
    receiver.answer([500])
    deliver_all(settings)
    # Only the endpoint it was sent from gets a test event.
    [request] = receiver.received
    assert request.event["type"] == "webhook.test" and request.event["id"] == event_id
    assert request.signed_with(created["secret"])

    log = app.get(f"{path}/deliveries", headers=tenant.auth).json()
    [failed] = log["items"]
    assert (failed["attempt"], failed["outcome"], failed["response_status"]) == (1, "failed", 500)
    assert failed["trigger"] == "automatic" and failed["next_attempt_at"] is not None
    assert failed["event_type"] == "webhook.test" and log["next_before"] is None

    retried = app.post(f"{path}/deliveries/{event_id}/retry", headers=tenant.auth)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["attempt"], retried.json()["outcome"]) == (2, "delivered")
    assert retried.json()["trigger"] == "manual"
    assert len(receiver.received) == 2 and receiver.received[1].body == request.body

    # Filters and pages.
    def page(**query: Any) -> list[tuple[int, str]]:
        response = app.get(f"{path}/deliveries", headers=tenant.auth, params=query)
        assert response.status_code == 200, response.text
        return [(d["attempt"], d["outcome"]) for d in response.json()["items"]]

    assert page() == [(2, "delivered"), (1, "failed")]
    assert page(outcome="failed") == [(1, "failed")]
    assert page(event_type="payout.paid") == []
    assert page(event_id=event_id, limit=1) == [(2, "delivered")]
    first = app.get(f"{path}/deliveries", headers=tenant.auth, params={"limit": 1}).json()
    assert first["next_before"] == retried.json()["delivery_id"]
    assert page(limit=1, before=first["next_before"]) == [(1, "failed")]
    for bad in ({"outcome": "lost"}, {"limit": 0}, {"event_type": "order.shipped"}):
        response = app.get(f"{path}/deliveries", headers=tenant.auth, params=bad)
        assert response.status_code == 422, bad

    # Another endpoint's test event, or an event that does not exist, is not this one's.
    other_event = app.post(f"/v1/webhooks/{other['id']}/test", headers=tenant.auth).json()
    for unknown in (other_event["event_id"], "payout.paid:nope:BRL"):
        response = app.post(f"{path}/deliveries/{unknown}/retry", headers=tenant.auth)
        assert response.status_code == 404, unknown

    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    actions = [e.action for e in audit.entries(scope, "webhook_endpoint", created["id"])]
    assert actions == ["webhook.retry", "webhook.test", "webhook.create"]


def test_rotating_the_secret(
    app: TestClient, tenant: TenantFixture, settings: Settings, receiver: Receiver
) -> None:
    created = create(app, tenant, url=receiver.url, types=["payout.paid"])
    path = f"/v1/webhooks/{created['id']}"
    rotated = app.post(f"{path}/rotate-secret", headers=tenant.auth)
    assert rotated.status_code == 200
    secret = rotated.json()["secret"]
    assert secret.startswith("whsec_") and secret != created["secret"]
    assert "secret" not in app.get(path, headers=tenant.auth).json()

    app.post(f"{path}/test", headers=tenant.auth)
    deliver_all(settings)
    [request] = receiver.received
    assert request.signed_with(secret)
    assert not request.signed_with(created["secret"])


# -- the producer on real marts ------------------------------------------------------------------


def test_the_producer_on_real_marts(built_warehouse: BuiltWarehouse) -> None:
    """Every approval, rejection, reversal and clawback the ledger recorded, every
    accrual, every order and every payout becomes exactly one event, with its amount."""
    store = ConfigStore(built_warehouse.settings)
    for tenant_id in built_warehouse.tenant_ids:
        scope = store.for_tenant(tenant_id)
        produced = produce(scope, datetime(2000, 1, 1, tzinfo=UTC))
        ledger = scope.rows(
            "SELECT entry_type, count() AS entries, "
            "sum(multiIf(entry_type = 'approval', approved_delta_minor, "
            "entry_type = 'rejection', rejected_delta_minor, "
            "entry_type = 'accrual', earned_delta_minor, -earned_delta_minor)) AS amount "
            "FROM fct_ledger_entries WHERE entry_type IN {kinds:Array(String)} "
            "GROUP BY entry_type",
            kinds=list(LEDGER_EVENTS),
        )
        expected = {
            LEDGER_EVENTS[row["entry_type"]].value: (row["entries"], row["amount"])
            for row in ledger
        }
        orders = scope.rows("SELECT uniqExact(conversion_id) AS n FROM conversions")[0]["n"]
        expected["conversion.created"] = (orders, None)
        assert expected["commission.created"][0] > 0 and expected["commission.approved"][0] > 0

        events = scope.rows(
            "SELECT type, count() AS events, "
            "sum(JSONExtractInt(payload, 'amount_minor')) AS amount "
            "FROM webhook_events FINAL GROUP BY type"
        )
        found = {
            row["type"]: (
                row["events"],
                row["amount"] if row["type"] != "conversion.created" else None,
            )
            for row in events
        }
        [payouts] = scope.rows(
            "SELECT uniqExact(payout_id, currency) AS n, sum(amount_minor) AS amount "
            "FROM payout_items FINAL"
        )
        if payouts["n"]:
            expected["payout.paid"] = (payouts["n"], payouts["amount"])
        assert found == expected, tenant_id
        assert produced == sum(count for count, _ in expected.values())
        assert produce(scope, datetime(2000, 1, 1, tzinfo=UTC)) == 0
