"""Outgoing webhooks: the outbox producer and the delivery worker, run by `rastro webhooks`
(and `rastro up`). docs/webhooks.md is the reference for receivers.

**Producer.** Reads the warehouse and puts events into the outbox (`webhook_events`) with
ids derived from what happened (`conversion.created:<conversion id>`,
`commission.approved:<ledger entry id>`, `payout.paid:<payout id>:<currency>`), so running
it again never duplicates an event. Its progress is the outbox itself: each pass adds the
events of source rows that arrived since `since` and are not in the outbox yet. There is no
time watermark because the sources do not arrive in time order: a conversion lands when
ingest gets to it (hours late, after ingest was down), a payout may be confirmed with a
past `paid_at`; a watermark would skip them. Only the ledger's `recorded_at` (the dbt run's
clock) is monotonic. So `run` makes a cheap pass over the last `RECENT` of arrivals every
few seconds, and a sweep over everything since the tenant's first endpoint every hour,
which catches the late ones. Only tenants with an endpoint get events, and only about what
arrived after their first endpoint was created: a new endpoint is not flooded with history.

**Worker.** Every second, for each active endpoint: the events it subscribes to (or that
are for it alone: `webhook.test`), created after it and within `DeliveryPolicy.horizon`,
that were never attempted or whose retry is due, are POSTed in order of creation, signed
(`api/webhooks.py`). A 2xx is `delivered`; anything else is `failed` and retried after the
next delay of `RETRY_DELAYS` (with jitter), or `gave_up` when they are spent. Every attempt
is a row of `webhook_deliveries`. An endpoint whose last `disable_after_failures` attempts
all failed, the first of them at least `disable_after` ago, is disabled (and audited).
Endpoints are served concurrently (`concurrency` threads), each one's events one at a
time; after a failure the rest of that endpoint's batch waits for the next poll, so a dead
endpoint costs one request per poll, not a batch of timeouts.

Guarantee: at least once. An event may arrive twice (a response lost after the receiver
processed it, a retry asked for by hand); receivers deduplicate by the event id. Run one
worker per warehouse: two would both deliver each event.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from typing import Any, Literal

from clickhouse_connect.driver.exceptions import DatabaseError

from api import audit
from api.store import ConfigStore, Principal, TenantScope
from api.webhooks import (
    SIGNATURE_HEADER,
    Delivery,
    Event,
    EventType,
    StoredEndpoint,
    attempts_made,
    disable_endpoint,
    endpoint,
    endpoint_secret,
    event_from_row,
    record_delivery,
    rfc3339,
    signature,
)
from rastro.crypto import DecryptionError, Vault
from rastro.ids import uuid7
from rastro.settings import Settings

log = logging.getLogger("rastro.webhooks")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# The wait before each retry: attempt 2 comes 1 minute after attempt 1, ..., attempt 9 a day
# after attempt 8; after that (about 3 days in all) the event is given up.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(hours=24),
    timedelta(hours=24),
)


@dataclass(frozen=True)
class DeliveryPolicy:
    retry_delays: tuple[timedelta, ...] = RETRY_DELAYS
    # Each delay is stretched or shrunk by up to this fraction at random, so the events of an
    # endpoint that failed together are not all retried in the same second.
    jitter: float = 0.1
    # Events older than this are never attempted automatically (a retry by hand still can):
    # the schedule (~3 days) plus room for a worker or an endpoint that was down for days.
    horizon: timedelta = timedelta(days=7)
    timeout_s: float = 10.0
    # Disabled after this many consecutive failed attempts, the first this long ago: a burst
    # of failures in a one-minute outage must not disable a busy endpoint.
    disable_after_failures: int = 20
    disable_after: timedelta = timedelta(hours=24)
    concurrency: int = 8  # endpoints served at once
    batch_size: int = 100  # events of one endpoint per poll

    def next_attempt_at(
        self, attempt: int, now: datetime, created_at: datetime, rng: random.Random
    ) -> datetime | None:
        """When to retry after failed attempt number `attempt`; None: give up."""
        if attempt > len(self.retry_delays):
            return None
        delay = self.retry_delays[attempt - 1] * (1 + self.jitter * (2 * rng.random() - 1))
        at = now + delay
        return at if at <= created_at + self.horizon else None


# -- the producer ------------------------------------------------------------------------------

RECENT = timedelta(hours=1)  # what the frequent pass looks at; older arrivals wait for a sweep
PRODUCE_BATCH = 5000

# fct_ledger_entries.entry_type -> the event it is announced as. Holds move no money and
# corrections are internal adjustments of the ledger: neither is sent.
LEDGER_EVENTS: dict[str, EventType] = {
    "accrual": EventType.COMMISSION_CREATED,
    "approval": EventType.COMMISSION_APPROVED,
    "rejection": EventType.COMMISSION_REJECTED,
    "reversal": EventType.COMMISSION_REVERSED,
    "clawback": EventType.COMMISSION_CLAWED_BACK,
}


def _missing_table(error: DatabaseError) -> bool:
    # The marts exist only after the first dbt build: until then there is nothing to announce.
    return "(UNKNOWN_TABLE)" in str(error)


def _conversion_events(
    scope: TenantScope, since: datetime, now: datetime, limit: int
) -> list[Event]:
    """conversion.created: an order's first version, with what is known when it lands (who
    gets credit is decided later, by attribution: see the commission events)."""
    rows = scope.rows(
        """
        SELECT conversion_id, order_id, kind, merchant_id, amount_minor, net_minor, tax_minor,
               shipping_minor, discount_minor, currency, coupon_codes, affiliate_id, source,
               subscription_id, renewal_number, ts, received_at
        FROM conversions
        WHERE version = 1 AND received_at >= {since:DateTime64(3, 'UTC')}
          AND concat('conversion.created:', conversion_id) NOT IN (
              SELECT event_id FROM webhook_events WHERE type = 'conversion.created')
        ORDER BY received_at, conversion_id
        LIMIT 1 BY conversion_id
        LIMIT {limit:UInt32}
        """,
        since=since,
        limit=limit,
    )
    return [
        Event(
            event_id=f"{EventType.CONVERSION_CREATED.value}:{row['conversion_id']}",
            type=EventType.CONVERSION_CREATED,
            data={
                "conversion_id": row["conversion_id"],
                "order_id": row["order_id"],
                "kind": row["kind"],
                "merchant_id": row["merchant_id"],
                "amount_minor": row["amount_minor"],
                "net_minor": row["net_minor"],
                "tax_minor": row["tax_minor"],
                "shipping_minor": row["shipping_minor"],
                "discount_minor": row["discount_minor"],
                "currency": row["currency"],
                "coupon_codes": list(row["coupon_codes"]),
                "affiliate_id": row["affiliate_id"] or None,
                "subscription_id": row["subscription_id"],
                "renewal_number": row["renewal_number"],
                "source": row["source"],
                "placed_at": rfc3339(row["ts"]),
                "received_at": rfc3339(row["received_at"]),
            },
            occurred_at=row["ts"],
            created_at=now,
        )
        for row in rows
    ]


def _ledger_events(scope: TenantScope, since: datetime, now: datetime, limit: int) -> list[Event]:
    """commission.*: one event per ledger entry that creates, approves, rejects, reverses or
    claws back a commission, in the order the ledger recorded them."""
    kinds, types = list(LEDGER_EVENTS), [t.value for t in LEDGER_EVENTS.values()]
    try:
        rows = scope.rows(
            """
            SELECT l.entry_id AS entry_id, l.entry_type AS entry_type,
                   l.commission_id AS commission_id, l.conversion_id AS conversion_id,
                   c.order_id AS order_id, l.affiliate_id AS affiliate_id,
                   l.currency AS currency, l.effective_at AS effective_at,
                   l.earned_delta_minor AS earned, l.approved_delta_minor AS approved,
                   l.rejected_delta_minor AS rejected, l.source_id AS source_id
            FROM fct_ledger_entries AS l
            LEFT JOIN (SELECT commission_id, any(order_id) AS order_id FROM fct_commissions
                       GROUP BY commission_id) AS c ON c.commission_id = l.commission_id
            WHERE l.entry_type IN {kinds:Array(String)}
              AND l.recorded_at >= {since:DateTime64(3, 'UTC')}
              AND concat(transform(l.entry_type, {kinds:Array(String)}, {types:Array(String)},
                                   ''), ':', l.entry_id) NOT IN (
                  SELECT event_id FROM webhook_events WHERE type IN {types:Array(String)})
            ORDER BY l.recorded_at, l.effective_at, l.entry_id
            LIMIT {limit:UInt32}
            """,
            kinds=kinds,
            types=types,
            since=since,
            limit=limit,
        )
    except DatabaseError as error:
        if _missing_table(error):
            return []
        raise
    events = []
    for row in rows:
        event_type = LEDGER_EVENTS[row["entry_type"]]
        # The amount the event is about, positive: what was earned, approved or rejected,
        # or what a refund or chargeback took back.
        amount = {
            "accrual": row["earned"],
            "approval": row["approved"],
            "rejection": row["rejected"],
            "reversal": -row["earned"],
            "clawback": -row["earned"],
        }[row["entry_type"]]
        events.append(
            Event(
                event_id=f"{event_type.value}:{row['entry_id']}",
                type=event_type,
                data={
                    "commission_id": row["commission_id"],
                    "conversion_id": row["conversion_id"],
                    "order_id": row["order_id"],
                    "affiliate_id": row["affiliate_id"],
                    "amount_minor": amount,
                    "currency": row["currency"],
                    "effective_at": rfc3339(row["effective_at"]),
                    "ledger_entry_id": row["entry_id"],
                    "source_id": row["source_id"],
                },
                occurred_at=row["effective_at"],
                created_at=now,
            )
        )
    return events


def _payout_events(scope: TenantScope, since: datetime, now: datetime, limit: int) -> list[Event]:
    """payout.paid: one event per payout (one transfer to one affiliate, in one currency)."""
    rows = scope.rows(
        """
        SELECT payout_id, currency, any(affiliate_id) AS payee, any(method) AS paid_by,
               max(paid_at) AS last_paid_at, sum(amount_minor) AS total_minor,
               arraySort(groupArray((commission_id, amount_minor))) AS items
        FROM payout_items FINAL
        GROUP BY payout_id, currency
        HAVING last_paid_at >= {since:DateTime64(3, 'UTC')}
           AND concat('payout.paid:', payout_id, ':', currency) NOT IN (
               SELECT event_id FROM webhook_events WHERE type = 'payout.paid')
        ORDER BY last_paid_at, payout_id
        LIMIT {limit:UInt32}
        """,
        since=since,
        limit=limit,
    )
    return [
        Event(
            event_id=f"{EventType.PAYOUT_PAID.value}:{row['payout_id']}:{row['currency']}",
            type=EventType.PAYOUT_PAID,
            data={
                "payout_id": row["payout_id"],
                "affiliate_id": row["payee"],
                "amount_minor": row["total_minor"],
                "currency": row["currency"],
                "method": row["paid_by"],
                "paid_at": rfc3339(row["last_paid_at"]),
                "commissions": [
                    {"commission_id": commission_id, "amount_minor": amount}
                    for commission_id, amount in row["items"]
                ],
            },
            occurred_at=row["last_paid_at"],
            created_at=now,
        )
        for row in rows
    ]


SOURCES = (_conversion_events, _ledger_events, _payout_events)


def produce(
    scope: TenantScope, since: datetime, clock: Clock = utc_now, batch: int = PRODUCE_BATCH
) -> int:
    """Puts into the tenant's outbox the events of source rows that arrived since `since`
    and are not in it yet; returns how many. Idempotent: a second run adds nothing."""
    produced = 0
    for source in SOURCES:
        while True:
            events = source(scope, since, clock(), batch)
            if events:
                scope.insert("webhook_events", [event.row() for event in events])
                produced += len(events)
            if len(events) < batch:
                break
    return produced


def tenants_with_endpoints(store: ConfigStore, status: str = "") -> dict[str, datetime]:
    """Tenant id -> when its first endpoint was created, for tenants with an endpoint (of
    `status`, if given). The one read across tenants: the worker has to find its tenants;
    everything it reads or writes after that goes through the tenant's scope."""
    rows = store.rows(
        "SELECT tenant_id, min(created_at) AS first_created FROM webhook_endpoints FINAL "
        "WHERE is_deleted = 0 AND ({status:String} = '' OR status = {status:String}) "
        "GROUP BY tenant_id",
        status=status,
    )
    return {row["tenant_id"]: _utc(row["first_created"]) for row in rows}


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def produce_all(
    store: ConfigStore, sweep: bool, clock: Clock = utc_now, recent: timedelta = RECENT
) -> int:
    """One pass of the producer over every tenant with an endpoint: the recent arrivals, or
    with `sweep` everything since the tenant's first endpoint."""
    produced = 0
    for tenant_id, first_endpoint_at in tenants_with_endpoints(store).items():
        since = first_endpoint_at if sweep else max(first_endpoint_at, clock() - recent)
        produced += produce(store.for_tenant(tenant_id), since, clock)
    return produced


# -- delivering --------------------------------------------------------------------------------

USER_AGENT = "Rastro-Webhooks/1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A 3xx is the receiver's answer (a failed delivery), never followed: an endpoint must not
    # be able to send a signed event on to somewhere else.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment: where an event goes is the endpoint's URL, nothing else.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


@dataclass(frozen=True)
class _Answer:
    status: int  # 0: no HTTP answer
    error: str  # empty for a 2xx


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> _Answer:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return _Answer(response.status, "")
    except urllib.error.HTTPError as error:  # an answer, but not a 2xx
        with error:
            snippet = error.read(200).decode("utf-8", "replace").strip()
        return _Answer(error.code, f"HTTP {error.code}" + (f": {snippet}" if snippet else ""))
    except (urllib.error.URLError, OSError, HTTPException) as error:  # no answer at all
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        return _Answer(0, f"{type(reason).__name__}: {reason}"[:500])


def deliver(
    scope: TenantScope,
    stored: StoredEndpoint,
    secret: str,
    event: Event,
    attempt: int,
    trigger: Literal["automatic", "manual"],
    policy: DeliveryPolicy,
    now: datetime,
    rng: random.Random,
) -> Delivery:
    """POSTs one event to one endpoint, records the attempt and returns it."""
    body = event.body()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Rastro-Event-Id": event.event_id,
        "Rastro-Event-Type": event.type.value,
        "Rastro-Delivery-Attempt": str(attempt),
        # The real time of sending (not `now`, the scheduling clock): receivers compare it
        # with their own clock to refuse replays.
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    started = time.monotonic()
    answer = _post(stored.url, body, headers, policy.timeout_s)
    duration_ms = round((time.monotonic() - started) * 1000)
    delivered = 200 <= answer.status < 300
    next_at = None if delivered else policy.next_attempt_at(attempt, now, event.created_at, rng)
    delivery = Delivery(
        delivery_id=uuid7(),
        event_id=event.event_id,
        event_type=event.type.value,
        attempt=attempt,
        trigger=trigger,
        outcome="delivered" if delivered else ("failed" if next_at else "gave_up"),
        response_status=answer.status,
        error=answer.error,
        duration_ms=duration_ms,
        attempted_at=now,
        next_attempt_at=next_at,
    )
    record_delivery(scope, stored, delivery)
    return delivery


def deliver_now(
    scope: TenantScope,
    vault: Vault,
    stored: StoredEndpoint,
    event: Event,
    actor: Principal,
    policy: DeliveryPolicy | None = None,
) -> Delivery:
    """A retry asked for by hand (audited): one attempt now, numbered after the ones made.
    If it fails, the schedule goes on from there (or gives up) as for any attempt."""
    attempt = attempts_made(scope, stored.id, event.event_id) + 1
    secret = endpoint_secret(scope, vault, stored)
    delivery = deliver(
        scope,
        stored,
        secret,
        event,
        attempt,
        "manual",
        policy or DeliveryPolicy(),
        utc_now(),
        random.Random(),
    )
    audit.record(
        scope,
        actor,
        "webhook.retry",
        "webhook_endpoint",
        stored.id,
        details={"event_id": event.event_id, "outcome": delivery.outcome},
    )
    return delivery


@dataclass(frozen=True)
class DueEvent:
    event: Event
    attempts: int  # made so far


def due_events(
    scope: TenantScope, now: datetime, policy: DeliveryPolicy
) -> dict[str, list[DueEvent]]:
    """Active endpoint id -> the events to attempt now, oldest first: those it subscribes to
    (or that are for it alone), created after it and within the horizon, never attempted or
    whose last attempt failed with a retry now due."""
    horizon_start = now - policy.horizon
    rows = scope.rows(
        """
        WITH latest AS (
            SELECT endpoint_id, event_id, max(attempt) AS attempts,
                   argMax(outcome, (attempt, delivery_id)) AS outcome,
                   argMax(next_attempt_at, (attempt, delivery_id)) AS next_at
            FROM webhook_deliveries
            -- An event's attempts come after it: none of these events was attempted earlier.
            WHERE attempted_at >= {horizon_start:DateTime64(3, 'UTC')}
            GROUP BY endpoint_id, event_id
        )
        SELECT ep.id AS for_endpoint, ev.event_id AS event_id, ev.type AS type,
               ev.endpoint_id AS endpoint_id, ev.payload AS payload,
               ev.occurred_at AS occurred_at, ev.created_at AS created_at,
               l.attempts AS attempts
        FROM (SELECT id, event_types, created_at FROM webhook_endpoints FINAL
              WHERE status = 'active' AND is_deleted = 0) AS ep
        CROSS JOIN (SELECT event_id, type, endpoint_id, payload, occurred_at, created_at
                    FROM webhook_events FINAL
                    WHERE created_at >= {horizon_start:DateTime64(3, 'UTC')}) AS ev
        LEFT JOIN latest AS l ON l.endpoint_id = ep.id AND l.event_id = ev.event_id
        WHERE ev.created_at >= ep.created_at
          AND (ev.endpoint_id = ep.id OR (ev.endpoint_id = '' AND has(ep.event_types, ev.type)))
          AND (l.attempts = 0
               OR (l.outcome = 'failed' AND l.next_at <= {now:DateTime64(3, 'UTC')}))
        ORDER BY for_endpoint, created_at, event_id
        LIMIT {batch:UInt32} BY for_endpoint
        """,
        horizon_start=horizon_start,
        now=now,
        batch=policy.batch_size,
    )
    due: dict[str, list[DueEvent]] = {}
    for row in rows:
        due.setdefault(row["for_endpoint"], []).append(
            DueEvent(event_from_row(row), int(row["attempts"]))
        )
    return due


def _system_actor(tenant_id: str) -> Principal:
    return Principal(
        tenant_id=tenant_id,
        actor_kind="system",
        actor_id="webhooks",
        actor_name="webhook delivery worker",
        scopes=[],
        affiliate_id=None,
    )


def failure_streak(scope: TenantScope, stored: StoredEndpoint) -> tuple[int, datetime | None, str]:
    """(consecutive failed attempts of the endpoint's current version since its last
    delivery, when the first of them was made, the last error)."""
    rows = scope.rows(
        """
        SELECT count() AS failures, min(attempted_at) AS first_failure,
               argMax(error, delivery_id) AS last_error
        FROM webhook_deliveries
        WHERE endpoint_id = {id:String} AND endpoint_version = {version:UInt64}
          AND outcome != 'delivered'
          AND delivery_id > (SELECT max(delivery_id) FROM webhook_deliveries
                             WHERE endpoint_id = {id:String}
                               AND endpoint_version = {version:UInt64}
                               AND outcome = 'delivered')
        """,
        id=stored.id,
        version=stored.version,
    )
    failures = int(rows[0]["failures"]) if rows else 0
    if not failures:
        return 0, None, ""
    return failures, _utc(rows[0]["first_failure"]), str(rows[0]["last_error"])


@dataclass
class DeliveryWorker:
    """Dispatches due events to endpoints on a thread pool. `dispatch` returns at once (an
    endpoint still busy from the last poll is skipped); `run_once` waits, for tests."""

    store: ConfigStore
    vault: Vault
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    clock: Clock = utc_now
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(
            self.policy.concurrency, thread_name_prefix="rastro-webhook"
        )
        self._busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def dispatch(self) -> list[Future[None]]:
        now = self.clock()
        futures = []
        for tenant_id in tenants_with_endpoints(self.store, status="active"):
            scope = self.store.for_tenant(tenant_id)
            for endpoint_id, due in due_events(scope, now, self.policy).items():
                key = (tenant_id, endpoint_id)
                with self._lock:
                    if key in self._busy:
                        continue
                    self._busy.add(key)
                futures.append(self._pool.submit(self._serve, scope, endpoint_id, due, key))
        return futures

    def run_once(self) -> None:
        for future in self.dispatch():
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _serve(
        self, scope: TenantScope, endpoint_id: str, due: list[DueEvent], key: tuple[str, str]
    ) -> None:
        try:
            stored = endpoint(scope, endpoint_id)
            if stored is None or stored.status != "active":
                return  # deleted or disabled since the poll read it
            try:
                secret = endpoint_secret(scope, self.vault, stored)
            except DecryptionError:
                log.error("webhook endpoint %s: its secret does not decrypt", endpoint_id)
                return
            for item in due:
                delivery = deliver(
                    scope,
                    stored,
                    secret,
                    item.event,
                    item.attempts + 1,
                    "automatic",
                    self.policy,
                    self.clock(),
                    self.rng,
                )
                if delivery.outcome != "delivered":
                    break  # the rest waits for the next poll: one request per poll when down
            self._disable_if_failing(scope, stored)
        except Exception:
            log.exception("delivering to webhook endpoint %s failed", endpoint_id)
        finally:
            with self._lock:
                self._busy.discard(key)

    def _disable_if_failing(self, scope: TenantScope, stored: StoredEndpoint) -> None:
        failures, since, last_error = failure_streak(scope, stored)
        if failures < self.policy.disable_after_failures or since is None:
            return
        if self.clock() - since < self.policy.disable_after:
            return
        current = endpoint(scope, stored.id)
        if current is None or current.version != stored.version:
            return  # changed meanwhile (re-enabled, new URL): a new count has begun
        reason = (
            f"disabled after {failures} consecutive failed deliveries since "
            f"{rfc3339(since)} (last: {last_error or 'no answer'})"
        )
        disable_endpoint(scope, _system_actor(scope.tenant_id), current, reason)
        log.warning("webhook endpoint %s of tenant %s %s", stored.id, scope.tenant_id, reason)


# -- the process -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cadence:
    poll_s: float = 1.0  # how often due deliveries are looked for
    produce_s: float = 5.0  # how often recent arrivals are turned into events
    sweep_s: float = 3600.0  # how often everything since the first endpoint is re-checked


def _every(interval_s: float) -> Iterator[bool]:
    """True when `interval_s` has passed since it was last True (True at first)."""
    last = float("-inf")
    while True:
        now = time.monotonic()
        if now - last >= interval_s:
            last = now
            yield True
        else:
            yield False


def run(
    settings: Settings,
    stop: threading.Event,
    policy: DeliveryPolicy | None = None,
    cadence: Cadence | None = None,
) -> None:
    """Producer and worker until `stop` is set (`rastro webhooks`, on SIGTERM or Ctrl-C).
    A failing pass (the warehouse restarting) is logged and retried at the next poll."""
    cadence = cadence or Cadence()
    store = ConfigStore(settings)
    worker = DeliveryWorker(store, Vault(settings), policy or DeliveryPolicy())
    produce_due, sweep_due = _every(cadence.produce_s), _every(cadence.sweep_s)
    log.info("webhooks: producing and delivering (poll every %.1f s)", cadence.poll_s)
    try:
        while not stop.is_set():
            try:
                if next(produce_due):
                    sweep = next(sweep_due)
                    produced = produce_all(store, sweep=sweep)
                    if produced:
                        log.info("webhooks: %d new event(s) in the outbox", produced)
                worker.dispatch()
            except Exception:
                log.exception("webhooks: this pass failed; retrying at the next poll")
            stop.wait(cadence.poll_s)
    finally:
        worker.close()
        log.info("webhooks: stopped")
