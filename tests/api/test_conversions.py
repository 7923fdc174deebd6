"""Conversion capture: validation, exact money, authentication and tenancy, idempotency (by
order, by Idempotency-Key, across worker processes and crashes), order updates, the postback,
and what reaches the event log."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx2
import msgspec
import pytest
from starlette.testclient import TestClient

import api.idempotency
from api.idempotency import IdempotencyIndex
from api.main import create_app
from api.state import EdgeState
from api.store import ConfigStore
from rastro.contracts import Conversion, OrderUpdate, decode, to_dict
from rastro.eventlog import LogReader, LogWriter, Offset
from rastro.settings import Settings
from tests.api.conftest import TenantFixture

DAY_MS = 86_400_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sale(order_id: str = "PED-1", **extra: Any) -> dict[str, Any]:
    return {"order_id": order_id, "amount": "100.00", "currency": "BRL", **extra}


def _post(
    app: TestClient,
    tenant: TenantFixture,
    body: dict[str, Any] | str,
    *,
    key: str | None = None,
    path: str = "/v1/conversions",
) -> httpx2.Response:
    headers = dict(tenant.auth)
    if key is not None:
        headers["Idempotency-Key"] = key
    if isinstance(body, str):  # raw JSON: numbers exactly as written
        headers["Content-Type"] = "application/json"
        return app.post(path, headers=headers, content=body)
    return app.post(path, headers=headers, json=body)


def _records(settings: Settings) -> list[Any]:
    """Every record in the event log, decoded (so each one validates against the contract)."""
    if not settings.event_log_dir.exists():
        return []
    reader = LogReader(settings.event_log_dir)
    return [
        decode(record.payload)
        for partition in reader.partitions()
        for record in reader.read(partition, Offset.start(), max_records=100_000)
    ]


def _raw_records(settings: Settings) -> list[bytes]:
    reader = LogReader(settings.event_log_dir)
    return [
        record.payload
        for partition in reader.partitions()
        for record in reader.read(partition, Offset.start(), max_records=100_000)
    ]


def _conversions(settings: Settings) -> list[Conversion]:
    return [r for r in _records(settings) if isinstance(r, Conversion)]


def _key(settings: Settings, tenant: TenantFixture, *scopes: str) -> dict[str, str]:
    config = ConfigStore(settings).for_tenant(tenant.tenant_id)
    affiliate = tenant.affiliate_id if "affiliate" in scopes else None
    key = config.create_api_key("test key", list(scopes), affiliate_id=affiliate)
    return {"Authorization": f"Bearer {key}"}


def _edge(app: TestClient) -> EdgeState:
    state: EdgeState = app.app.state  # type: ignore[attr-defined]
    return state


def _errors(response: httpx2.Response) -> dict[str, str]:
    """422 details by dotted field path."""
    assert response.status_code == 422, response.text
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in response.json()["detail"]}


# -- what is recorded ----------------------------------------------------------------------------


def test_a_sale_is_recorded_in_the_log_as_a_valid_conversion(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    occurred = _now_ms() - 3_600_000
    body = {
        "order_id": "PED-10293",
        "amount": "259.90",
        "tax": "23.41",
        "shipping": "14.90",
        "discount": "26.00",
        "currency": "brl",
        "line_items": [
            {"sku": "TEN-42", "category": "calcados", "quantity": 1, "amount": "199.90"},
            {"sku": "MEIA-3P", "quantity": 2, "amount": "71.10"},
        ],
        "coupon_codes": ["ANA10"],
        "click_id": "clk-1",
        "cookie_id": "ck-1",
        "customer_id": "c-4471",
        "is_new_customer": True,
        "country": "br",
        "occurred_at": occurred,
    }
    response = _post(app, tenant, body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["version"] == 1 and answer["duplicate"] is False
    assert (answer["amount_minor"], answer["net_minor"], answer["currency"]) == (
        25990,
        22159,
        "BRL",
    )

    [record] = _records(settings)
    assert isinstance(record, Conversion)
    assert record.tenant_id == tenant.tenant_id
    assert record.conversion_id == answer["conversion_id"]
    assert record.event_id == answer["event_id"]
    assert (record.order_id, record.version, record.source) == ("PED-10293", 1, "s2s")
    assert (record.amount_minor, record.tax_minor, record.shipping_minor) == (25990, 2341, 1490)
    assert (record.discount_minor, record.net_minor) == (2600, 25990 - 2341 - 1490)
    assert [(li.sku, li.quantity, li.amount_minor) for li in record.line_items] == [
        ("TEN-42", 1, 19990),
        ("MEIA-3P", 2, 7110),
    ]
    assert record.line_items[0].category == "calcados"
    assert record.coupon_codes == ["ANA10"] and record.click_id == "clk-1"
    assert (record.cookie_id, record.customer_id, record.country) == ("ck-1", "c-4471", "BR")
    assert record.is_new_customer is True
    assert record.ts == occurred and record.received_at >= occurred


def test_a_lead_needs_no_amount(app: TestClient, tenant: TenantFixture, settings: Settings) -> None:
    response = _post(app, tenant, {"order_id": "lead-1", "kind": "lead", "click_id": "c"})
    assert response.status_code == 201, response.text
    [record] = _conversions(settings)
    assert (record.kind, record.amount_minor, record.currency) == ("lead", 0, "BRL")


def test_conversions_are_written_with_append_durable(
    app: TestClient, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    durable = LogWriter.append_durable

    def recording(self: LogWriter, payload: bytes) -> Offset:
        calls.append(payload)
        return durable(self, payload)

    def refused(self: LogWriter, payload: bytes) -> Offset:
        raise AssertionError("conversions must be fsynced before the answer")

    monkeypatch.setattr(LogWriter, "append_durable", recording)
    monkeypatch.setattr(LogWriter, "append", refused)
    assert _post(app, tenant, _sale()).status_code == 201
    body = {"order_id": "PED-1", "kind": "refund", "amount": "1"}
    assert _post(app, tenant, body, path="/v1/order-updates").status_code == 201
    assert [to_dict(decode(p))["type"] for p in calls] == ["conversion", "order_update"]


# -- money ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ('"0.1"', "USD", 10),
        ("0.1", "USD", 10),  # a JSON number: parsed as a decimal, never a float
        ("19.9", "BRL", 1990),
        ('"1234567.89"', "BRL", 123456789),
        ("100.50", "EUR", 10050),
        ('"100.500"', "EUR", 10050),  # trailing zeros are exact
        ("12800", "JPY", 12800),
        ('"12800.0"', "JPY", 12800),
        ("7", "CLP", 7),
        ('"1.005"', "KWD", 1005),
        ("1e2", "USD", 10000),
        ("0", "ARS", 0),
        ("1234.56", "MXN", 123456),
        ('"99999.99"', "COP", 9999999),
        ("15.5", "PEN", 1550),
        ("8.01", "UYU", 801),
    ],
)
def test_amounts_are_converted_exactly_to_minor_units(
    app: TestClient,
    tenant: TenantFixture,
    settings: Settings,
    amount: str,
    currency: str,
    minor: int,
) -> None:
    body = f'{{"order_id": "o-{currency}", "amount": {amount}, "currency": "{currency}"}}'
    response = _post(app, tenant, body)
    assert response.status_code == 201, response.text
    assert response.json()["amount_minor"] == minor
    [record] = _conversions(settings)
    assert (record.amount_minor, record.currency) == (minor, currency)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ('{"order_id": "o", "amount": "-1", "currency": "BRL"}', "body.amount", "negative"),
        ('{"order_id": "o", "amount": -0.01, "currency": "BRL"}', "body.amount", "negative"),
        ('{"order_id": "o", "amount": "12,50", "currency": "BRL"}', "body.amount", "no comma"),
        ('{"order_id": "o", "amount": "1e3", "currency": "BRL"}', "body.amount", "no exponent"),
        ('{"order_id": "o", "amount": true, "currency": "BRL"}', "body.amount", "boolean"),
        ('{"order_id": "o", "amount": "10.001", "currency": "USD"}', "body.amount", "at most 2"),
        ('{"order_id": "o", "amount": 10.001, "currency": "BRL"}', "body.amount", "at most 2"),
        ('{"order_id": "o", "amount": "100.5", "currency": "JPY"}', "body.amount", "whole number"),
        ('{"order_id": "o", "amount": 1.5, "currency": "CLP"}', "body.amount", "whole number"),
        ('{"order_id": "o", "amount": "1.2345", "currency": "KWD"}', "body.amount", "at most 3"),
        ('{"order_id": "o", "amount": 1e30, "currency": "BRL"}', "body.amount", "too large"),
        (
            '{"order_id": "o", "amount": "99999999999999", "currency": "BRL"}',
            "body.amount",
            "too large",
        ),
        ('{"order_id": "o", "amount": "1", "currency": "XYZ"}', "body.currency", "ISO 4217"),
        ('{"order_id": "o", "amount": "1", "currency": "R$"}', "body.currency", "ISO 4217"),
        ('{"order_id": "o", "amount": "1"}', "body.currency", "required with an amount"),
        ('{"order_id": "o", "currency": "BRL"}', "body.amount", "required for a sale"),
        ('{"amount": "1", "currency": "BRL"}', "body.order_id", "Field required"),
        (
            '{"order_id": "o", "amount": "10", "tax": "8", "shipping": "3", "currency": "BRL"}',
            "body.tax",
            "exceed the amount",
        ),
        ('{"order_id": "o", "amount": "10", "net": "11", "currency": "BRL"}', "body.net", "exceed"),
        (
            '{"order_id": "o", "amount": "1", "currency": "BRL", "renewal_number": 2}',
            "body.renewal_number",
            "subscription_id",
        ),
    ],
)
def test_invalid_amounts_and_currencies_are_refused_with_the_field_at_fault(
    app: TestClient, tenant: TenantFixture, settings: Settings, body: str, field: str, message: str
) -> None:
    errors = _errors(_post(app, tenant, body))
    assert message in errors[field], errors
    assert _records(settings) == []


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "9" * 5000])
def test_numbers_json_does_not_allow_or_absurdly_long_are_not_json(
    app: TestClient, tenant: TenantFixture, amount: str
) -> None:
    response = _post(app, tenant, f'{{"order_id": "o", "amount": {amount}, "currency": "BRL"}}')
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_line_items_add_up_to_at_most_the_amount_plus_the_order_discount(
    app: TestClient, tenant: TenantFixture
) -> None:
    lines = [{"sku": "a", "amount": "60.00"}, {"sku": "b", "quantity": 2, "amount": "50.00"}]
    # 110.00 of lines, a 10.00 order-level coupon: the customer paid 100.00
    fits = _sale("o-fits", line_items=lines, discount="10.00")
    assert _post(app, tenant, fits).status_code == 201
    errors = _errors(_post(app, tenant, _sale("o-over", line_items=lines)))
    assert "110.00 BRL, more than the amount" in errors["body.line_items"]
    bad = [{"sku": "a", "quantity": 0, "amount": "1.001"}]
    errors = _errors(_post(app, tenant, _sale("o-bad", line_items=bad)))
    assert "greater than or equal to 1" in errors["body.line_items.0.quantity"]
    errors = _errors(
        _post(app, tenant, _sale("o-bad", line_items=[{"sku": "a", "amount": "1.001"}]))
    )
    assert "at most 2 decimals" in errors["body.line_items.0.amount"]


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"tenant_id": "someone-else"}, "body.tenant_id", "the tenant is the API key's"),
        ({"ts": 1}, "body.ts", "did you mean 'occurred_at'?"),
        ({"amout": "1"}, "body.amout", "did you mean 'amount'?"),
        ({"transaction_id": "c"}, "body.transaction_id", "did you mean 'click_id'?"),
        ({"zzz": 1}, "body.zzz", "unknown field 'zzz'"),
        (
            {"line_items": [{"sku": "a", "amount": "1", "price": "1"}]},
            "body.line_items.0.price",
            "line's total",
        ),
    ],
)
def test_unknown_fields_are_refused_by_name(
    app: TestClient, tenant: TenantFixture, extra: dict[str, Any], field: str, message: str
) -> None:
    errors = _errors(_post(app, tenant, _sale(**extra)))
    assert message in errors[field], errors


# -- time ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "message"),
    [
        (lambda now: now + 10 * 60_000, "in the future"),
        (lambda now: now - 401 * DAY_MS, "more than 400 days old"),
        (lambda now: now // 1000, "looks like epoch seconds"),
        (lambda now: "2025-03-01T14:30:00", "needs a time zone"),
        (lambda now: "yesterday", "ISO 8601"),
        (lambda now: "2999-01-01T00:00:00Z", "in the future"),
    ],
)
def test_times_out_of_the_window_are_refused(
    app: TestClient, tenant: TenantFixture, occurred_at: Any, message: str
) -> None:
    errors = _errors(_post(app, tenant, _sale(occurred_at=occurred_at(_now_ms()))))
    assert message in errors["body.occurred_at"], errors


def test_times_in_the_window_are_accepted_as_iso_or_epoch_ms(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    now = _now_ms()
    yesterday = datetime.now(UTC).replace(microsecond=250_000) - timedelta(days=1)
    sao_paulo = timezone(timedelta(hours=-3))
    accepted: dict[str, int | str] = {
        "soon": now + 4 * 60_000,
        "old": now - 399 * DAY_MS,
        "iso": yesterday.astimezone(sao_paulo).isoformat(),  # ...T09:30:00.250000-03:00
        "zulu": yesterday.isoformat().replace("+00:00", "Z"),
    }
    for name, value in accepted.items():
        assert _post(app, tenant, _sale(name, occurred_at=value)).status_code == 201, name
    by_order = {r.order_id: r.ts for r in _conversions(settings)}
    expected = (yesterday - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert by_order == {
        "soon": now + 4 * 60_000,
        "old": now - 399 * DAY_MS,
        "iso": expected,
        "zulu": expected,
    }


def test_without_occurred_at_the_time_is_when_it_was_received(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    before = _now_ms()
    assert _post(app, tenant, _sale()).status_code == 201
    [record] = _conversions(settings)
    assert before <= record.ts == record.received_at <= _now_ms()


# -- personal data -------------------------------------------------------------------------------


def test_emails_are_keyed_per_tenant_and_a_raw_email_is_never_stored(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    sha = hashlib.sha256(b"ana@example.com").hexdigest()
    assert _post(app, tenant, _sale("o1", email="  Ana@Example.COM ")).status_code == 201
    assert _post(app, tenant, _sale("o2", email_sha256=sha.upper())).status_code == 201
    first, second = _conversions(settings)
    expected = _edge(app).pseudonym(tenant.tenant_id, "email", sha)
    assert first.email_hash == second.email_hash == expected != sha
    raw = b"".join(_raw_records(settings)).lower()
    assert b"ana@example.com" not in raw and sha.encode() not in raw

    errors = _errors(_post(app, tenant, _sale("o3", email="a@b.c", email_sha256=sha)))
    assert "not both" in errors["body.email"]
    errors = _errors(_post(app, tenant, _sale("o3", email_sha256="abc")))
    assert "64 hex digits" in errors["body.email_sha256"]
    response = _post(app, tenant, _sale("o3", email="not-an-email"))
    assert "not-an-email" not in response.text and "body.email" in _errors(response)


# -- authentication and tenancy ------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer rk_not_a_key"}])
def test_a_valid_key_is_needed(app: TestClient, headers: dict[str, str]) -> None:
    for path in ("/v1/conversions", "/v1/order-updates"):
        response = app.post(path, headers=headers, json=_sale())
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("scope", ["affiliate", "analyst"])
def test_keys_without_the_ingest_scope_are_forbidden(
    app: TestClient, tenant: TenantFixture, settings: Settings, scope: str
) -> None:
    headers = _key(settings, tenant, scope)
    for path in ("/v1/conversions", "/v1/order-updates"):
        response = app.post(path, headers=headers, json=_sale())
        assert response.status_code == 403
        assert "ingest" in response.json()["detail"]
    assert _records(settings) == []


def test_an_ingest_key_may_post_conversions(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    response = app.post("/v1/conversions", headers=_key(settings, tenant, "ingest"), json=_sale())
    assert response.status_code == 201, response.text


def test_each_key_posts_for_its_own_tenant_only(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture, settings: Settings
) -> None:
    ours = _post(app, tenant, _sale("PED-7"))
    theirs = _post(app, other_tenant, _sale("PED-7", amount="55.00"))
    assert ours.status_code == theirs.status_code == 201  # the same order id: two orders
    assert ours.json()["conversion_id"] != theirs.json()["conversion_id"]
    by_tenant = {r.tenant_id: r for r in _conversions(settings)}
    assert by_tenant[tenant.tenant_id].amount_minor == 10000
    assert by_tenant[other_tenant.tenant_id].amount_minor == 5500
    assert len(by_tenant) == 2
    # Refunds and replays stay in their tenant too.
    refund = {"order_id": "PED-7", "kind": "refund", "amount": "60.00"}
    assert _post(app, other_tenant, refund, path="/v1/order-updates").status_code == 422
    assert _post(app, tenant, refund, path="/v1/order-updates").status_code == 201
    # A body cannot name another tenant.
    smuggled = _post(app, other_tenant, _sale("PED-8", tenant_id=tenant.tenant_id))
    assert "body.tenant_id" in _errors(smuggled)


# -- idempotency -----------------------------------------------------------------------------------


def test_a_repeated_order_is_acknowledged_once(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    first = _post(app, tenant, _sale(click_id="c1"))
    again = _post(
        app, tenant, '{"order_id": "PED-1", "amount": 100, "currency": "BRL", "click_id": "c1"}'
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(_conversions(settings)) == 1


def test_a_changed_order_is_a_new_version_of_the_same_conversion(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    first = _post(app, tenant, _sale()).json()
    corrected = _post(app, tenant, _sale(amount="90.00"))
    assert corrected.status_code == 200
    second = corrected.json()
    assert (second["version"], second["amount_minor"], second["duplicate"]) == (2, 9000, False)
    assert second["conversion_id"] == first["conversion_id"]
    assert second["event_id"] != first["event_id"]
    # A late retry of the first version replays it instead of undoing the correction.
    late = _post(app, tenant, _sale())
    assert (late.status_code, late.json()["version"], late.json()["duplicate"]) == (200, 1, True)
    records = _conversions(settings)
    assert [(r.version, r.amount_minor) for r in records] == [(1, 10000), (2, 9000)]
    assert len({r.conversion_id for r in records}) == 1


def test_an_idempotency_key_replays_and_refuses_another_request(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    first = _post(app, tenant, _sale(), key="key-1")
    replay = _post(app, tenant, _sale(), key="key-1")
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["conversion_id"] == first.json()["conversion_id"]
    conflict = _post(app, tenant, _sale(amount="1.00"), key="key-1")
    assert conflict.status_code == 409
    assert "key-1" in conflict.json()["detail"]
    other_endpoint = {"order_id": "PED-1", "kind": "refund", "amount": "1"}
    assert (
        _post(app, tenant, other_endpoint, key="key-1", path="/v1/order-updates").status_code == 409
    )
    # Another key with the same order: the order's own idempotency answers.
    assert _post(app, tenant, _sale(), key="key-2").json()["duplicate"] is True
    assert _post(app, tenant, _sale(), key="key-2").status_code == 200
    # Keys are per tenant.
    assert len(_conversions(settings)) == 1
    bad = _post(app, tenant, _sale("PED-2"), key="has spaces")
    assert "header.Idempotency-Key" in _errors(bad)


def test_idempotency_holds_across_worker_processes_sharing_the_data_dir(
    settings: Settings, tenant: TenantFixture
) -> None:
    with (
        TestClient(create_app(settings)) as worker_a,
        TestClient(create_app(settings)) as worker_b,
    ):
        first = _post(worker_a, tenant, _sale("PED-1"))
        again = _post(worker_b, tenant, _sale("PED-1"))
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["conversion_id"] == first.json()["conversion_id"]

        # The same orders posted at once through both workers: each is written once.
        answers: list[httpx2.Response] = []
        lock = threading.Lock()

        def post(worker: TestClient, order_id: str) -> None:
            response = _post(worker, tenant, _sale(order_id))
            with lock:
                answers.append(response)

        threads = [
            threading.Thread(target=post, args=(worker, f"PED-race-{i}"))
            for i in range(10)
            for worker in (worker_a, worker_a, worker_b, worker_b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in answers) == [200] * 30 + [201] * 10
        assert len({r.json()["conversion_id"] for r in answers}) == 10
    records = _conversions(settings)
    assert len(records) == 11
    assert len({r.order_id for r in records}) == 11


def test_a_write_that_failed_is_completed_by_the_retry_not_duplicated(
    app: TestClient, tenant: TenantFixture, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: LogWriter, payload: bytes) -> Offset:
        raise OSError("disk gone")

    body = _sale(occurred_at=_now_ms())
    with monkeypatch.context() as patch:
        patch.setattr(LogWriter, "append_durable", crash)
        with pytest.raises(OSError):
            _post(app, tenant, body)
    assert _conversions(settings) == []
    retry = _post(app, tenant, body)
    assert retry.status_code == 200, retry.text  # the claimed record, written by the retry
    [record] = _conversions(settings)
    assert (record.conversion_id, record.version) == (retry.json()["conversion_id"], 1)
    assert _post(app, tenant, body).status_code == 200
    assert len(_conversions(settings)) == 1


def test_a_crash_after_the_log_write_repeats_the_same_bytes(
    app: TestClient, tenant: TenantFixture, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # the process "dies" between the append and finish
        patch.setattr(IdempotencyIndex, "_finish", lambda self, tenant_id, event_id: None)
        first = _post(app, tenant, _sale())
    assert first.status_code == 201
    monkeypatch.setattr(api.idempotency, "LEASE_S", 0.0)
    index = _edge(app).idempotency
    index.lease_s = 0.0  # its writer is dead: no need to wait for the lease
    retry = _post(app, tenant, _sale())
    assert retry.status_code == 200
    assert retry.json()["conversion_id"] == first.json()["conversion_id"]
    first_bytes, second_bytes = _raw_records(settings)
    assert first_bytes == second_bytes  # one event twice: consumers keep one (same event_id)
    assert len(_raw_records(settings)) == 2
    assert _post(app, tenant, _sale()).status_code == 200
    assert len(_raw_records(settings)) == 2


def test_a_restarted_worker_writes_what_a_dead_one_had_accepted(
    settings: Settings, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: LogWriter, payload: bytes) -> Offset:
        raise OSError("killed")

    with TestClient(create_app(settings)) as dying, monkeypatch.context() as patch:
        patch.setattr(LogWriter, "append_durable", crash)
        with pytest.raises(OSError):
            _post(dying, tenant, _sale("PED-lost"))
    assert _conversions(settings) == []
    with TestClient(create_app(settings)) as restarted:  # the client never retries
        assert _post(restarted, tenant, _sale("PED-next")).status_code == 201
    assert sorted(r.order_id for r in _conversions(settings)) == ["PED-lost", "PED-next"]


def test_event_ids_are_derived_from_the_order(
    settings: Settings, tenant: TenantFixture, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two hosts that each accepted the same order (separate indexes) write the same event."""
    other_host = settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("host-b")})
    body = _sale(occurred_at=_now_ms() - 1000)
    with TestClient(create_app(settings)) as host_a, TestClient(create_app(other_host)) as host_b:
        a = _post(host_a, tenant, body).json()
        b = _post(host_b, tenant, body).json()
    assert (a["event_id"], a["conversion_id"]) == (b["event_id"], b["conversion_id"])
    [ra], [rb] = _conversions(settings), _conversions(other_host)
    assert msgspec.structs.replace(ra, received_at=0) == msgspec.structs.replace(rb, received_at=0)


# -- order updates -------------------------------------------------------------------------------


def _update(
    app: TestClient, tenant: TenantFixture, key: str | None = None, **body: Any
) -> httpx2.Response:
    return _post(app, tenant, {"order_id": "PED-1", **body}, key=key, path="/v1/order-updates")


def test_refunds_cannot_exceed_what_is_left_of_the_order(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    assert _post(app, tenant, _sale()).status_code == 201
    partial = _update(app, tenant, kind="refund", amount="30.00", update_id="re_1", reason="size")
    assert partial.status_code == 201, partial.text
    assert (partial.json()["amount_minor"], partial.json()["remaining_minor"]) == (3000, 7000)
    over = _update(app, tenant, kind="refund", amount="70.01")
    assert "exceeds what is left" in _errors(over)["body.amount"]
    assert "70.00 BRL" in _errors(over)["body.amount"]
    # The refund's own id deduplicates; reused with other values it is a conflict.
    again = _update(app, tenant, kind="refund", amount="30", update_id="re_1", reason="size")
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert _update(app, tenant, kind="refund", amount="31", update_id="re_1").status_code == 409
    assert (
        "is in BRL"
        in _errors(_update(app, tenant, kind="refund", amount="1", currency="USD"))["body.currency"]
    )
    cancel = _update(app, tenant, kind="cancellation", reason="fraud")  # all that is left
    assert (cancel.json()["amount_minor"], cancel.json()["remaining_minor"]) == (7000, 0)
    nothing = _update(app, tenant, kind="refund")
    assert "nothing is left" in _errors(nothing)["body.amount"]
    assert (
        "greater than 0"
        in _errors(_update(app, tenant, kind="chargeback", amount="0"))["body.amount"]
    )
    updates = [r for r in _records(settings) if isinstance(r, OrderUpdate)]
    assert [(u.kind, u.amount_minor, u.currency, u.update_id) for u in updates] == [
        ("refund", 3000, "BRL", "re_1"),
        ("cancellation", 7000, "BRL", ""),
    ]
    assert all(u.tenant_id == tenant.tenant_id and u.source == "s2s" for u in updates)


def test_updates_of_an_order_not_known_here_are_kept_unchecked(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    no_amount = _update(app, tenant, order_id="elsewhere", kind="refund", currency="USD")
    assert "what is left of it cannot be computed" in _errors(no_amount)["body.amount"]
    missing_currency = _update(app, tenant, order_id="elsewhere", kind="refund", amount="5")
    assert "not known" in _errors(missing_currency)["body.currency"]
    refund = _update(app, tenant, order_id="elsewhere", kind="refund", amount="5", currency="USD")
    assert refund.status_code == 201 and refund.json()["remaining_minor"] is None
    # When the order arrives afterwards, the earlier refund counts.
    assert _post(app, tenant, _sale("elsewhere", amount="20", currency="USD")).status_code == 201
    over = _update(app, tenant, order_id="elsewhere", kind="refund", amount="15.01")
    assert "15.00 USD" in _errors(over)["body.amount"]


def test_an_update_idempotency_key_replays(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    assert _post(app, tenant, _sale()).status_code == 201
    first = _update(app, tenant, key="rf-1", kind="refund", amount="10")
    again = _update(app, tenant, key="rf-1", kind="refund", amount="10")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["event_id"] == first.json()["event_id"]
    assert _update(app, tenant, key="rf-1", kind="refund", amount="11").status_code == 409
    assert len([r for r in _records(settings) if isinstance(r, OrderUpdate)]) == 1


# -- the postback ----------------------------------------------------------------------------------


def test_the_postback_records_an_order_from_a_url(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    key = _key(settings, tenant, "ingest")["Authorization"].removeprefix("Bearer ")
    params = {"transaction_id": "clk-9", "order_id": "PB-1", "amount": "49.90", "api_key": key}
    response = app.get("/v1/postback", params=params)
    assert (response.status_code, response.text) == (200, "success=true;")
    assert response.headers["content-type"].startswith("text/plain")
    again = app.get("/v1/postback", params={**params, "amount": "1.00"})  # never rewrites
    assert (again.status_code, again.text) == (200, "success=true;")
    [record] = _conversions(settings)
    assert (record.source, record.click_id, record.order_id) == ("postback", "clk-9", "PB-1")
    assert (record.amount_minor, record.currency, record.tenant_id) == (
        4990,
        "BRL",  # the tenant's currency: none was given
        tenant.tenant_id,
    )
    # The same order by server-to-server call afterwards is a new (richer) version of it.
    s2s = _post(app, tenant, _sale("PB-1", amount="49.90", click_id="clk-9"))
    assert s2s.status_code == 200 and s2s.json()["version"] == 2


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"api_key": None}, 401, "missing api_key"),
        ({"api_key": "rk_not_a_key"}, 401, "invalid"),
        ({"api_key": "admin"}, 403, "treat this admin key as leaked"),
        ({"api_key": "analyst"}, 403, "only a key with just the ingest scope"),
        ({"order_id": None}, 422, "order_id: Field required"),
        ({"amount": "10.001"}, 422, "amount: BRL amounts have at most 2 decimals"),
        ({"currency": "JPY", "amount": "1.5"}, 422, "JPY has no minor unit"),
        ({"currency": "ZZZ"}, 422, "not an active ISO 4217"),
        ({"amount": None}, 422, "amount: is required for a sale"),
        ({"amt": "1"}, 422, "unknown field 'amt': did you mean 'amount'?"),
    ],
)
def test_postback_failures_say_why_in_the_same_format(
    app: TestClient,
    tenant: TenantFixture,
    settings: Settings,
    change: dict[str, str | None],
    status: int,
    message: str,
) -> None:
    keys = {
        "admin": tenant.admin_key,
        "analyst": _key(settings, tenant, "ingest", "analyst")["Authorization"][7:],
    }
    ingest = _key(settings, tenant, "ingest")["Authorization"][7:]
    params: dict[str, str | None] = {
        "transaction_id": "clk",
        "order_id": "PB-2",
        "amount": "10",
        "api_key": ingest,
        **change,
    }
    if params["api_key"] in keys:
        params["api_key"] = keys[str(params["api_key"])]
    response = app.get("/v1/postback", params={k: v for k, v in params.items() if v is not None})
    assert response.status_code == status
    assert response.text.startswith("success=false;error=") and response.text.endswith(";")
    assert message in response.text, response.text
    assert tenant.admin_key not in response.text and ingest not in response.text
    assert _records(settings) == []


# -- the OpenAPI description -----------------------------------------------------------------------


def test_the_openapi_spec_documents_schemas_and_examples(app: TestClient) -> None:
    spec = app.get("/openapi.json").json()
    post = spec["paths"]["/v1/conversions"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    assert {"sale", "lead", "renewal"} <= set(body["examples"])
    assert body["schema"]["$ref"].endswith("/ConversionCreate")
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ConversionAccepted"
    )
    assert {"200", "401", "403", "409", "422"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    postback = spec["paths"]["/v1/postback"]["get"]
    names = [p["name"] for p in postback["parameters"]]
    assert sorted(names) == sorted(
        [
            "api_key",
            "transaction_id",
            "order_id",
            "amount",
            "currency",
            "kind",
            "coupon_code",
            "occurred_at",
        ]
    )
    assert "/v1/order-updates" in spec["paths"]


# -- throughput ----------------------------------------------------------------------------------


def test_throughput_of_durable_conversions(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    """Conversions accepted per second through the whole app, in process, 16 client threads,
    every record fsynced before its answer. Printed (pytest -s); asserts only a floor."""
    total, threads = 800, 16
    _post(app, tenant, _sale("warm-up"))
    counter = iter(range(total))
    lock = threading.Lock()
    failures: list[str] = []

    def work() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            response = _post(app, tenant, _sale(f"T-{n}", click_id=f"c{n}"))
            if response.status_code != 201:
                failures.append(response.text)

    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    assert not failures, failures[:3]
    rate = total / elapsed
    print(f"\n{total} durable conversions in {elapsed:.2f} s: {rate:.0f}/s ({threads} threads)")
    assert len(_conversions(settings)) == total + 1
    assert rate > 50
