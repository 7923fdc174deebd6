"""Outgoing webhooks (pipelines/webhooks.py): the producer turns conversions, ledger entries
and payouts into outbox events exactly once, late arrivals included; the worker delivers
them signed to a real HTTP receiver on 127.0.0.1, retries on the backoff schedule (a fake
clock, never a sleep), gives up, logs every attempt, filters by event type, and disables an
endpoint that keeps failing."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from api import audit
from api.store import ConfigStore, Principal, TenantScope
from api.webhooks import (
    Event,
    EventType,
    StoredEndpoint,
    create_endpoint,
    deliveries,
    endpoint,
    event_for,
    rotate_secret,
    update_endpoint,
)
from pipelines.webhooks import (
    DeliveryPolicy,
    DeliveryWorker,
    deliver_now,
    failure_streak,
    produce,
    produce_all,
)
from rastro.crypto import Vault
from rastro.settings import Settings
from rastro.warehouse.client import insert_rows
from tests.conftest import migrated_database
from tests.pipelines.helpers import (
    BRL,
    CLEAN_COMMISSIONS,
    CLEAN_LEDGER,
    at,
    conversion,
    create_marts,
)

# -- a receiver: a real HTTP server that checks signatures and answers as scripted -----------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result

    def signed_with(self, secret: str) -> bool:
        """The receiver's check, as docs/webhooks.md tells merchants to write it."""
        parts = dict(item.split("=", 1) for item in self.headers["Rastro-Signature"].split(","))
        expected = hmac.new(
            secret.encode(), parts["t"].encode() + b"." + self.body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    """Answers each POST with the next status of `script` (200 once it is used up)."""

    port: int = 0
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, statuses: list[int]) -> None:
        with self.lock:
            self.script = list(statuses)

    def events(self) -> list[dict[str, Any]]:
        return [request.event for request in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append(Received(dict(self.headers.items()), body))
                status = state.script.pop(0) if state.script else 200
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"no")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class FakeClock:
    """The worker's clock: tests move it forward instead of waiting."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the tables' ms

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


# -- the warehouse: a migrated database per test module ---------------------------------------


@pytest.fixture(scope="module")
def webhook_database(warehouse_url: str) -> Iterator[str]:
    with migrated_database(warehouse_url, "rastro_webhooks") as name:
        yield name


@pytest.fixture
def settings(warehouse_url: str, webhook_database: str, tmp_path: Any) -> Settings:
    return Settings(
        _env_file=None,
        clickhouse_url=warehouse_url,
        clickhouse_database=webhook_database,
        data_dir=tmp_path / "state",
        secret_key="test-secret",
    )


@pytest.fixture
def store(settings: Settings) -> ConfigStore:
    return ConfigStore(settings)


@pytest.fixture
def vault(settings: Settings) -> Vault:
    return Vault(settings)


@pytest.fixture
def scope(store: ConfigStore) -> TenantScope:
    """A fresh tenant: tests share the database, never a tenant."""
    tenant, _ = store.create_tenant("Loja")
    return store.for_tenant(tenant.tenant_id)


def admin(scope: TenantScope) -> Principal:
    return Principal(
        tenant_id=scope.tenant_id, actor_id="key-1", actor_name="test admin", scopes=["admin"]
    )


def register(
    scope: TenantScope, vault: Vault, url: str, types: list[str]
) -> tuple[StoredEndpoint, str]:
    return create_endpoint(scope, admin(scope), vault, url, types)


def worker(store: ConfigStore, vault: Vault, clock: FakeClock, **policy: Any) -> DeliveryWorker:
    # No jitter unless a test asks for it: retry times are then exact.
    return DeliveryWorker(
        store, vault, DeliveryPolicy(**{"jitter": 0.0, **policy}), clock, random.Random(1)
    )


def outbox(scope: TenantScope) -> list[dict[str, Any]]:
    rows = scope.rows(
        "SELECT event_id, type, endpoint_id, payload, occurred_at FROM webhook_events FINAL "
        "ORDER BY event_id"
    )
    for row in rows:
        row["payload"] = json.loads(row["payload"])
    return rows


def attempts(scope: TenantScope, stored: StoredEndpoint) -> list[tuple[str, int, str, int]]:
    """(event id, attempt, outcome, status) of every attempt, oldest first."""
    log = reversed(deliveries(scope, stored.id, limit=1000))
    return [(d.event_id, d.attempt, d.outcome, d.response_status) for d in log]


def land_conversion(scope: TenantScope, order_id: str, version: int, **extra: Any) -> None:
    row = conversion(order_id, version, extra.pop("ts", "2024-02-10 12:00"), 10000, 8000)
    row.update(extra)
    scope.insert("conversions", [row])


def land_payout(scope: TenantScope, payout_id: str, items: list[tuple[str, int]]) -> None:
    scope.insert(
        "payout_items",
        [
            {
                "payout_id": payout_id,
                "commission_id": commission_id,
                "affiliate_id": commission_id.split(":")[1],
                "amount_minor": amount,
                "currency": BRL,
                "method": "pix",
                "paid_at": at("2024-03-20 15:00"),
            }
            for commission_id, amount in items
        ],
    )


EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# -- the producer -------------------------------------------------------------------------------


@pytest.fixture
def marts(store: ConfigStore, webhook_database: str) -> None:
    """Hand-made fct_ledger_entries and fct_commissions (tests/pipelines/helpers.py), once
    per database; each test's rows are its own tenant's."""
    existing = store.rows(
        "SELECT name FROM system.tables WHERE database = {db:String} AND name = 'fct_commissions'",
        db=webhook_database,
    )
    if not existing:
        create_marts(store.client)


def land_ledger(store: ConfigStore, scope: TenantScope, recorded_at: datetime) -> None:
    """tests/pipelines/helpers.py's ledger (10 entries, every kind) in this tenant."""
    tenant = scope.tenant_id
    entries = [
        {**e, "tenant_id": tenant, "entry_id": f"{tenant}|{e['entry_id']}"} for e in CLEAN_LEDGER
    ]
    insert_rows(
        store.client,
        "fct_ledger_entries",
        [{**e, "recorded_at": recorded_at} for e in entries],
    )
    insert_rows(
        store.client, "fct_commissions", [{**c, "tenant_id": tenant} for c in CLEAN_COMMISSIONS]
    )


def test_the_producer_announces_each_source_once(
    store: ConfigStore, scope: TenantScope, marts: None
) -> None:
    first = {"received_at": at("2024-02-10 12:01"), "coupon_codes": ["ANA10"]}
    land_conversion(scope, "o-1", 1, **first)
    land_conversion(scope, "o-1", 2, received_at=at("2024-02-10 13:00"))  # a correction
    land_conversion(scope, "o-1", 1, **first)  # a replay by ingest
    land_conversion(scope, "o-2", 1, received_at=at("2024-02-11 12:01"))
    land_ledger(store, scope, recorded_at=at("2024-05-01 00:00"))
    land_payout(scope, "payout-1", [("conv-o-2:aff-leo", 1800), ("conv-o-9:aff-leo", 200)])

    assert produce(scope, EPOCH) == 2 + 8 + 1
    events = outbox(scope)
    by_type: dict[str, int] = {}
    for event in events:
        by_type[event["type"]] = by_type.get(event["type"], 0) + 1
    # Payments and corrections are not announced (payout.paid covers the payment).
    assert by_type == {
        "conversion.created": 2,
        "commission.created": 3,
        "commission.approved": 2,
        "commission.reversed": 1,
        "commission.clawed_back": 1,
        "commission.rejected": 1,
        "payout.paid": 1,
    }
    created = next(e for e in events if e["event_id"] == "conversion.created:conv-o-1")
    assert created["payload"] == {
        "conversion_id": "conv-o-1",
        "order_id": "o-1",
        "kind": "sale",
        "merchant_id": "",
        "amount_minor": 10000,
        "net_minor": 8000,
        "tax_minor": 0,
        "shipping_minor": 0,
        "discount_minor": 0,
        "currency": "BRL",
        "coupon_codes": ["ANA10"],
        "affiliate_id": None,
        "subscription_id": "",
        "renewal_number": 0,
        "source": "s2s",
        "placed_at": "2024-02-10T12:00:00.000Z",
        "received_at": "2024-02-10T12:01:00.000Z",
    }
    clawback = next(e for e in events if e["type"] == "commission.clawed_back")
    entry_id = f"{scope.tenant_id}|conv-o-2:aff-leo|clawback|ev-rf-2"
    assert clawback["event_id"] == f"commission.clawed_back:{entry_id}"
    assert clawback["payload"] == {
        "commission_id": "conv-o-2:aff-leo",
        "conversion_id": "conv-o-2",
        "order_id": "o-2",
        "affiliate_id": "aff-leo",
        "amount_minor": 450,  # what the refund took back, positive
        "currency": "BRL",
        "effective_at": "2024-04-05T10:00:00.000Z",
        "ledger_entry_id": entry_id,
        "source_id": "ev-rf-2",
    }
    amounts = {e["type"]: e["payload"]["amount_minor"] for e in events if "commission" in e["type"]}
    assert amounts["commission.reversed"] == 225
    assert amounts["commission.rejected"] == 750
    paid = next(e for e in events if e["type"] == "payout.paid")
    assert paid["event_id"] == "payout.paid:payout-1:BRL"
    assert paid["payload"]["amount_minor"] == 2000
    assert paid["payload"]["commissions"] == [
        {"commission_id": "conv-o-2:aff-leo", "amount_minor": 1800},
        {"commission_id": "conv-o-9:aff-leo", "amount_minor": 200},
    ]

    # Again: nothing new, the same outbox.
    assert produce(scope, EPOCH) == 0
    assert outbox(scope) == events


def test_late_arrivals_are_caught_by_the_sweep(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    land_conversion(scope, "before", 1, received_at=datetime.now(UTC) - timedelta(minutes=1))
    register(scope, vault, receiver.url, ["conversion.created"])
    clock = FakeClock()
    clock.advance(timedelta(hours=4))
    land_conversion(scope, "fresh", 1, received_at=clock.now - timedelta(minutes=5))
    # Ingest was down: received three hours ago (after the endpoint existed), landing now.
    land_conversion(scope, "late", 1, received_at=clock.now - timedelta(hours=3))

    produce_all(store, sweep=False, clock=clock)
    assert [e["event_id"] for e in outbox(scope)] == ["conversion.created:conv-fresh"]
    produce_all(store, sweep=True, clock=clock)
    # The sweep finds the late one; what was received before the first endpoint is not sent.
    assert [e["event_id"] for e in outbox(scope)] == [
        "conversion.created:conv-fresh",
        "conversion.created:conv-late",
    ]


def test_the_producer_waits_for_the_first_dbt_build(settings: Settings, warehouse_url: str) -> None:
    # A database where dbt never ran: no fct_ledger_entries, no fct_commissions.
    with migrated_database(warehouse_url, "rastro_webhooks_nodbt") as name:
        store = ConfigStore(settings.model_copy(update={"clickhouse_database": name}))
        tenant, _ = store.create_tenant("Loja")
        scope = store.for_tenant(tenant.tenant_id)
        land_conversion(scope, "o-1", 1)
        assert produce(scope, EPOCH) == 1
        assert [e["type"] for e in outbox(scope)] == ["conversion.created"]


# -- the worker -------------------------------------------------------------------------------


def _queue(scope: TenantScope, name: str, event_type: str = "conversion.created") -> str:
    """An event in the outbox now, as the producer would write it."""
    now = datetime.now(UTC)
    event = Event(
        event_id=f"{event_type}:{name}",
        type=EventType(event_type),
        data={"name": name},
        occurred_at=now,
        created_at=now,
    )
    scope.insert("webhook_events", [event.row()])
    return event.event_id


def test_events_are_delivered_signed_in_order(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, secret = register(scope, vault, receiver.url, ["conversion.created"])
    first, second = _queue(scope, "a"), _queue(scope, "b")
    worker(store, vault, FakeClock()).run_once()

    assert [r.event["id"] for r in receiver.received] == [first, second]
    request = receiver.received[0]
    assert request.signed_with(secret)
    assert not request.signed_with(secret + "x")
    assert request.headers["Rastro-Event-Id"] == first
    assert request.headers["Rastro-Event-Type"] == "conversion.created"
    assert request.headers["User-Agent"] == "Rastro-Webhooks/1"
    assert request.headers["Content-Type"] == "application/json"
    assert set(request.event) == {"id", "type", "created_at", "data"}
    assert request.event["data"] == {"name": "a"}
    assert attempts(scope, stored) == [(first, 1, "delivered", 200), (second, 1, "delivered", 200)]

    # Delivered is done: nothing is sent again.
    worker(store, vault, FakeClock()).run_once()
    assert len(receiver.received) == 2


def test_failures_are_retried_on_the_schedule(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, secret = register(scope, vault, receiver.url, ["conversion.created"])
    event_id = _queue(scope, "a")
    receiver.answer([500, 503])
    clock = FakeClock()
    start = clock.now
    work = worker(store, vault, clock)

    work.run_once()
    log = deliveries(scope, stored.id)
    assert [(d.attempt, d.outcome, d.response_status) for d in log] == [(1, "failed", 500)]
    assert log[0].error == "HTTP 500: no"
    assert log[0].next_attempt_at == start + timedelta(minutes=1)

    work.run_once()  # not due yet
    assert len(receiver.received) == 1

    clock.advance(timedelta(minutes=1))
    work.run_once()
    assert deliveries(scope, stored.id)[0].next_attempt_at == clock.now + timedelta(minutes=5)

    clock.advance(timedelta(minutes=4, seconds=59))
    work.run_once()  # a second early
    assert len(receiver.received) == 2
    clock.advance(timedelta(seconds=1))
    work.run_once()

    assert attempts(scope, stored) == [
        (event_id, 1, "failed", 500),
        (event_id, 2, "failed", 503),
        (event_id, 3, "delivered", 200),
    ]
    assert [r.headers["Rastro-Delivery-Attempt"] for r in receiver.received] == ["1", "2", "3"]
    assert all(r.signed_with(secret) for r in receiver.received)
    assert {r.event["id"] for r in receiver.received} == {event_id}


def test_jitter_stays_within_its_fraction() -> None:
    policy = DeliveryPolicy()
    now = datetime(2026, 3, 1, tzinfo=UTC)
    rng = random.Random(7)
    for attempt, delay in enumerate(policy.retry_delays, start=1):
        for _ in range(50):
            at = policy.next_attempt_at(attempt, now, now, rng)
            assert at is not None
            assert delay * 0.9 <= at - now <= delay * 1.1
    assert policy.next_attempt_at(len(policy.retry_delays) + 1, now, now, rng) is None
    # About 3 days in all, within the 7-day horizon.
    assert timedelta(days=2) < sum(policy.retry_delays, timedelta()) < timedelta(days=3)


def test_an_event_is_given_up_after_the_schedule(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, _ = register(scope, vault, receiver.url, ["conversion.created"])
    event_id = _queue(scope, "a")
    receiver.answer([500] * 10)
    clock = FakeClock()
    work = worker(store, vault, clock, retry_delays=(timedelta(minutes=1), timedelta(hours=1)))
    for _ in range(5):
        work.run_once()
        clock.advance(timedelta(hours=2))

    assert attempts(scope, stored) == [
        (event_id, 1, "failed", 500),
        (event_id, 2, "failed", 500),
        (event_id, 3, "gave_up", 500),
    ]
    assert deliveries(scope, stored.id)[0].next_attempt_at is None


def test_no_retry_beyond_the_horizon(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, _ = register(scope, vault, receiver.url, ["conversion.created"])
    _queue(scope, "a")
    receiver.answer([500])
    clock = FakeClock()
    work = worker(store, vault, clock, retry_delays=(timedelta(days=2),), horizon=timedelta(days=1))
    work.run_once()
    # The retry would come after the event's horizon: given up at once.
    assert [d.outcome for d in deliveries(scope, stored.id)] == ["gave_up"]


def test_answers_that_are_not_2xx_fail(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, _ = register(scope, vault, receiver.url, ["conversion.created"])
    _queue(scope, "a")
    receiver.answer([302])
    work = worker(store, vault, FakeClock())
    work.run_once()
    # The redirect is not followed (the receiver saw one request, Location pointed elsewhere).
    assert len(receiver.received) == 1
    [log] = deliveries(scope, stored.id)
    assert (log.outcome, log.response_status) == ("failed", 302)

    nowhere, _ = register(scope, vault, "http://127.0.0.1:1/closed", ["payout.paid"])
    _queue(scope, "p", "payout.paid")
    work.run_once()
    [refused] = deliveries(scope, nowhere.id)
    assert (refused.outcome, refused.response_status) == ("failed", 0)
    assert "Connection refused" in refused.error or "ConnectionRefused" in refused.error


def test_endpoints_get_only_their_event_types(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    approvals, _ = register(scope, vault, receiver.url + "?who=approvals", ["commission.approved"])
    payouts, _ = register(scope, vault, receiver.url + "?who=payouts", ["payout.paid"])
    _queue(scope, "c1", "commission.approved")
    _queue(scope, "p1", "payout.paid")
    _queue(scope, "x1", "conversion.created")  # nobody subscribes
    worker(store, vault, FakeClock()).run_once()

    assert [d.event_id for d in deliveries(scope, approvals.id)] == ["commission.approved:c1"]
    assert [d.event_id for d in deliveries(scope, payouts.id)] == ["payout.paid:p1"]
    assert len(receiver.received) == 2


def test_an_endpoint_gets_only_events_created_after_it(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    _queue(scope, "old")
    stored, _ = register(scope, vault, receiver.url, ["conversion.created"])
    new = _queue(scope, "new")
    worker(store, vault, FakeClock()).run_once()
    assert [d.event_id for d in deliveries(scope, stored.id)] == [new]


def test_an_endpoint_that_keeps_failing_is_disabled(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, _ = register(scope, vault, receiver.url, ["conversion.created"])
    for name in "abcd":
        _queue(scope, name)
    receiver.answer([500] * 100)
    clock = FakeClock()
    work = worker(store, vault, clock, disable_after_failures=3, disable_after=timedelta(hours=1))

    for _ in range(3):  # one failure per poll: the rest of the batch waits
        work.run_once()
    assert len(receiver.received) == 3
    # Three failures, but within a minute: a short outage does not disable an endpoint.
    current = endpoint(scope, stored.id)
    assert current is not None and current.status == "active"

    clock.advance(timedelta(hours=2))
    work.run_once()
    current = endpoint(scope, stored.id)
    assert current is not None and current.status == "disabled"
    assert current.disabled_reason.startswith("disabled after 4 consecutive failed deliveries")
    assert "HTTP 500" in current.disabled_reason
    entry = audit.entries(scope, "webhook_endpoint", stored.id)[0]
    assert (entry.action, entry.actor_kind) == ("webhook.disable", "system")

    sent = len(receiver.received)
    clock.advance(timedelta(hours=2))
    work.run_once()
    assert len(receiver.received) == sent  # nothing goes to a disabled endpoint

    # Re-enabled: the count starts again and the waiting events go out.
    receiver.answer([])
    enabled = update_endpoint(scope, admin(scope), current, status="active")
    assert failure_streak(scope, enabled) == (0, None, "")
    for _ in range(3):
        work.run_once()
    outcomes = {d.event_id: d.outcome for d in reversed(deliveries(scope, stored.id, limit=100))}
    assert set(outcomes.values()) == {"delivered"}
    assert len(outcomes) == 4


def test_a_retry_by_hand_is_one_more_attempt(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, secret = register(scope, vault, receiver.url, ["conversion.created"])
    event_id = _queue(scope, "a")
    worker(store, vault, FakeClock()).run_once()
    event = event_for(scope, stored, event_id)
    assert event is not None
    delivery = deliver_now(scope, vault, stored, event, admin(scope))
    assert (delivery.attempt, delivery.trigger, delivery.outcome) == (2, "manual", "delivered")
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body  # the same event, again
    assert receiver.received[1].signed_with(secret)


def test_a_rotated_secret_signs_from_then_on(
    store: ConfigStore, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    stored, old = register(scope, vault, receiver.url, ["conversion.created"])
    _, new = rotate_secret(scope, admin(scope), vault, stored)
    assert new != old and new.startswith("whsec_")
    _queue(scope, "a")
    worker(store, vault, FakeClock()).run_once()
    [request] = receiver.received
    assert request.signed_with(new)
    assert not request.signed_with(old)


def test_rastro_webhooks_produces_delivers_and_stops_on_sigterm(
    settings: Settings, scope: TenantScope, vault: Vault, receiver: Receiver
) -> None:
    """The process `rastro up` runs: a new order becomes an event that reaches the endpoint;
    SIGTERM stops it cleanly."""
    register(scope, vault, receiver.url, ["conversion.created"])
    land_conversion(scope, "o-live", 1, received_at=datetime.now(UTC))
    env = {
        **os.environ,
        "RASTRO_CLICKHOUSE_URL": str(settings.clickhouse_url),
        "RASTRO_CLICKHOUSE_DATABASE": settings.clickhouse_database,
        "RASTRO_DATA_DIR": str(settings.data_dir),
        "RASTRO_SECRET_KEY": settings.secret_key.get_secret_value(),
    }
    process = subprocess.Popen([sys.executable, "-m", "rastro.cli", "webhooks"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not receiver.received:
            assert process.poll() is None, "rastro webhooks exited"
            assert time.monotonic() < deadline, "nothing was delivered within 60 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [request] = [r for r in receiver.received if r.event["type"] == "conversion.created"]
    assert request.event["data"]["order_id"] == "o-live"
