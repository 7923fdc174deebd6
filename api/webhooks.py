"""Outgoing webhooks, the part the API owns: the event types, the endpoints a tenant
registers (with their signing secrets, encrypted at rest), the signature, test events and
the delivery log. The outbox producer and the delivery worker are pipelines/webhooks.py;
docs/webhooks.md is what a merchant's developer reads.

An endpoint's secret is shown once, when it is created or rotated, and stored only
encrypted (rastro/crypto.py), bound to its tenant and endpoint: a ciphertext copied to
another row does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from api import audit
from api.store import Principal, TenantScope, UtcDatetime
from rastro.crypto import Vault
from rastro.ids import uuid7
from rastro.settings import Settings


class EventType(StrEnum):
    CONVERSION_CREATED = "conversion.created"
    COMMISSION_CREATED = "commission.created"
    COMMISSION_APPROVED = "commission.approved"
    COMMISSION_REJECTED = "commission.rejected"
    COMMISSION_REVERSED = "commission.reversed"
    COMMISSION_CLAWED_BACK = "commission.clawed_back"
    PAYOUT_PAID = "payout.paid"
    WEBHOOK_TEST = "webhook.test"


EVENT_DESCRIPTIONS: dict[EventType, str] = {
    EventType.CONVERSION_CREATED: "An order or lead reached the warehouse (its first version)",
    EventType.COMMISSION_CREATED: "A conversion earned an affiliate a commission (pending)",
    EventType.COMMISSION_APPROVED: "A commission was approved (its hold ended, or by someone)",
    EventType.COMMISSION_REJECTED: "A commission was rejected (fraud review, manual decision)",
    EventType.COMMISSION_REVERSED: "A refund or chargeback took back (part of) an unpaid one",
    EventType.COMMISSION_CLAWED_BACK: (
        "A refund or chargeback after payout: the affiliate owes the amount back"
    ),
    EventType.PAYOUT_PAID: "An affiliate was paid: one transfer, with the commissions it paid",
    EventType.WEBHOOK_TEST: (
        "Sent only to one endpoint, by POST /v1/webhooks/{id}/test: not subscribable"
    ),
}

# What an endpoint can subscribe to: everything but the test event, which goes only where asked.
SubscribableType = Literal[
    "conversion.created",
    "commission.created",
    "commission.approved",
    "commission.rejected",
    "commission.reversed",
    "commission.clawed_back",
    "payout.paid",
]

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "Rastro-Signature"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Rastro-Signature` header of a request: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>.<body>" keyed with the whole secret>` (Stripe's scheme: the timestamp is signed, so
    a captured request cannot be replayed later with a fresh one)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# -- endpoints ---------------------------------------------------------------------------------


class WebhookEndpoint(BaseModel):
    """An endpoint as the API shows it (never its secret)."""

    id: str
    url: str
    event_types: list[str]
    status: Literal["active", "disabled"]
    disabled_reason: str = Field(description="Why it is disabled; empty while active")
    created_at: UtcDatetime
    updated_at: UtcDatetime


class StoredEndpoint(WebhookEndpoint):
    """An endpoint row as stored: the public fields, its encrypted secret and row version."""

    secret_ciphertext: str
    encryption_key_id: str
    version: int

    def public(self) -> WebhookEndpoint:
        return WebhookEndpoint(**self.model_dump(include=set(WebhookEndpoint.model_fields)))


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def url_problem(url: str, settings: Settings) -> str | None:
    """Why `url` cannot receive webhooks, or None. https only (the events carry order and
    commission amounts); http to this machine is allowed outside prod, for local receivers
    and tests. No credentials in the URL (use the signature), no hosts on private networks
    in prod (the worker must not be usable to reach the platform's own network)."""
    if any(c in url for c in "\\\t\r\n ") or not url.isprintable():
        return "the URL contains spaces, backslashes or control characters"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "not a URL"
    if not host:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "no credentials in the URL: verify the Rastro-Signature header instead"
    if parts.fragment:
        return "no #fragment in the URL: it is never sent"
    local = host in _LOCAL_HOSTS
    if parts.scheme == "http" and local and settings.env != "prod":
        return None
    if parts.scheme != "https":
        return "the URL must be https (http only to localhost, outside production)"
    if settings.env == "prod" and (local or _private_address(host)):
        return "the URL's host is on a private or loopback network"
    return None


def _private_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not address.is_global


def _secret_context(scope: TenantScope, endpoint_id: str) -> str:
    # Associated data: the ciphertext decrypts only in this tenant's row of this endpoint.
    return f"webhook_endpoints:{scope.tenant_id}:{endpoint_id}:secret"


def _now() -> datetime:
    return datetime.now(UTC)


_ENDPOINT_COLUMNS = (
    "id, url, event_types, status, disabled_reason, created_at, updated_at, "
    "secret_ciphertext, encryption_key_id, version"
)


def endpoints(scope: TenantScope, status: str = "") -> list[StoredEndpoint]:
    """The tenant's endpoints (optionally only those with `status`), oldest first."""
    rows = scope.rows(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints FINAL "
        "WHERE is_deleted = 0 AND ({status:String} = '' OR status = {status:String}) "
        "ORDER BY id",
        status=status,
    )
    return [StoredEndpoint(**row) for row in rows]


def endpoint(scope: TenantScope, endpoint_id: str) -> StoredEndpoint | None:
    rows = scope.rows(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints FINAL "
        "WHERE id = {id:String} AND is_deleted = 0",
        id=endpoint_id,
    )
    return StoredEndpoint(**rows[0]) if rows else None


def endpoint_secret(scope: TenantScope, vault: Vault, stored: StoredEndpoint) -> str:
    return vault.decrypt(
        stored.encryption_key_id, stored.secret_ciphertext, _secret_context(scope, stored.id)
    )


def _write(scope: TenantScope, stored: StoredEndpoint, is_deleted: bool = False) -> StoredEndpoint:
    now = _now()
    row = stored.model_dump(exclude={"updated_at", "version"})
    scope.write_version("webhook_endpoints", {**row, "is_deleted": int(is_deleted)}, now)
    written = endpoint(scope, stored.id)
    if written is None and not is_deleted:
        raise RuntimeError(f"webhook endpoint {stored.id} was written but cannot be read back")
    return written or stored


def create_endpoint(
    scope: TenantScope,
    actor: Principal,
    vault: Vault,
    url: str,
    event_types: list[str],
) -> tuple[StoredEndpoint, str]:
    """A new active endpoint and its secret (returned once)."""
    endpoint_id, secret, now = uuid7(), new_secret(), _now()
    key_id, ciphertext = vault.encrypt(secret, _secret_context(scope, endpoint_id))
    stored = _write(
        scope,
        StoredEndpoint(
            id=endpoint_id,
            url=url,
            event_types=_unique(event_types),
            status="active",
            disabled_reason="",
            created_at=now,
            updated_at=now,
            secret_ciphertext=ciphertext,
            encryption_key_id=key_id,
            version=0,
        ),
    )
    audit.record(
        scope,
        actor,
        "webhook.create",
        "webhook_endpoint",
        endpoint_id,
        details={"url": url, "event_types": stored.event_types},
    )
    return stored, secret


def _unique(values: list[str]) -> list[str]:
    return sorted(set(values))


def update_endpoint(
    scope: TenantScope,
    actor: Principal,
    stored: StoredEndpoint,
    url: str | None = None,
    event_types: list[str] | None = None,
    status: Literal["active", "disabled"] | None = None,
) -> StoredEndpoint:
    """Changes what is given. Setting status active re-enables an endpoint, and any change
    starts a new count of consecutive failures (deliveries remember the endpoint version)."""
    changes: dict[str, Any] = {}
    if url is not None and url != stored.url:
        changes["url"] = url
    if event_types is not None and _unique(event_types) != stored.event_types:
        changes["event_types"] = _unique(event_types)
    if status is not None and status != stored.status:
        changes["status"] = status
        changes["disabled_reason"] = (
            "" if status == "active" else f"disabled by {actor.actor_name or actor.actor_id}"
        )
    if not changes:
        return stored
    updated = _write(scope, stored.model_copy(update=changes))
    audit.record(scope, actor, "webhook.update", "webhook_endpoint", stored.id, details=changes)
    return updated


def disable_endpoint(
    scope: TenantScope, actor: Principal, stored: StoredEndpoint, reason: str
) -> StoredEndpoint:
    """Stops deliveries to an endpoint, saying why (the delivery worker, after failures)."""
    updated = _write(
        scope, stored.model_copy(update={"status": "disabled", "disabled_reason": reason})
    )
    audit.record(scope, actor, "webhook.disable", "webhook_endpoint", stored.id, reason=reason)
    return updated


def delete_endpoint(scope: TenantScope, actor: Principal, stored: StoredEndpoint) -> None:
    _write(scope, stored, is_deleted=True)
    audit.record(scope, actor, "webhook.delete", "webhook_endpoint", stored.id)


def rotate_secret(
    scope: TenantScope, actor: Principal, vault: Vault, stored: StoredEndpoint
) -> tuple[StoredEndpoint, str]:
    """A new secret, in force at once: every request from now on is signed with it only."""
    secret = new_secret()
    key_id, ciphertext = vault.encrypt(secret, _secret_context(scope, stored.id))
    updated = _write(
        scope,
        stored.model_copy(update={"secret_ciphertext": ciphertext, "encryption_key_id": key_id}),
    )
    audit.record(scope, actor, "webhook.rotate_secret", "webhook_endpoint", stored.id)
    return updated, secret


# -- events ------------------------------------------------------------------------------------


class Event(BaseModel):
    """An event of the outbox: what is sent, as {id, type, created_at, data}."""

    event_id: str
    type: EventType
    endpoint_id: str = Field("", description="The one endpoint it is for (webhook.test) or ''")
    data: dict[str, Any]
    occurred_at: UtcDatetime
    created_at: UtcDatetime

    def body(self) -> bytes:
        """The exact bytes POSTed (and signed)."""
        envelope = {
            "id": self.event_id,
            "type": self.type.value,
            "created_at": rfc3339(self.created_at),
            "data": self.data,
        }
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

    def row(self) -> dict[str, Any]:
        """The webhook_events row (tenant_id is set by the scope)."""
        return {
            "event_id": self.event_id,
            "type": self.type.value,
            "endpoint_id": self.endpoint_id,
            "payload": json.dumps(self.data, separators=(",", ":"), ensure_ascii=False),
            "occurred_at": self.occurred_at,
            "created_at": self.created_at,
        }


def rfc3339(at: datetime) -> str:
    """UTC with milliseconds and a Z, as every timestamp in an event."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        event_id=row["event_id"],
        type=EventType(row["type"]),
        endpoint_id=row["endpoint_id"],
        data=json.loads(row["payload"]),
        occurred_at=row["occurred_at"],
        created_at=row["created_at"],
    )


def event_for(scope: TenantScope, stored: StoredEndpoint, event_id: str) -> Event | None:
    """An event of the outbox that is (or would be) sent to this endpoint, or None."""
    rows = scope.rows(
        "SELECT event_id, type, endpoint_id, payload, occurred_at, created_at "
        "FROM webhook_events FINAL WHERE event_id = {event_id:String} "
        "AND (endpoint_id = {endpoint:String} "
        "OR (endpoint_id = '' AND has({types:Array(String)}, type)))",
        event_id=event_id,
        endpoint=stored.id,
        types=stored.event_types,
    )
    return event_from_row(rows[0]) if rows else None


def enqueue_test_event(scope: TenantScope, actor: Principal, stored: StoredEndpoint) -> Event:
    """A webhook.test event for this endpoint only, delivered by the worker like any other."""
    now = _now()
    event = Event(
        event_id=f"{EventType.WEBHOOK_TEST.value}:{uuid7()}",
        type=EventType.WEBHOOK_TEST,
        endpoint_id=stored.id,
        data={"endpoint_id": stored.id, "message": "A test event sent from Rastro"},
        occurred_at=now,
        created_at=now,
    )
    scope.insert("webhook_events", [event.row()])
    audit.record(
        scope,
        actor,
        "webhook.test",
        "webhook_endpoint",
        stored.id,
        details={"event_id": event.event_id},
    )
    return event


# -- the delivery log --------------------------------------------------------------------------


Outcome = Literal["delivered", "failed", "gave_up"]


class Delivery(BaseModel):
    """One attempt to deliver an event to an endpoint."""

    delivery_id: str
    event_id: str
    event_type: str
    attempt: int = Field(description="1 for the first attempt, 2 for the first retry, ...")
    trigger: Literal["automatic", "manual"]
    outcome: Outcome = Field(
        description="delivered (2xx) | failed (retried at next_attempt_at) | gave_up"
    )
    response_status: int = Field(description="The HTTP status answered; 0 when none")
    error: str = Field(description="What went wrong; empty when delivered")
    duration_ms: int
    attempted_at: UtcDatetime
    next_attempt_at: UtcDatetime | None = Field(description="When it is retried; null if never")


_DELIVERY_COLUMNS = (
    "delivery_id, event_id, event_type, attempt, trigger, outcome, response_status, error, "
    "duration_ms, attempted_at, next_attempt_at"
)


def record_delivery(scope: TenantScope, stored: StoredEndpoint, delivery: Delivery) -> None:
    scope.insert(
        "webhook_deliveries",
        [{**delivery.model_dump(), "endpoint_id": stored.id, "endpoint_version": stored.version}],
    )


def deliveries(
    scope: TenantScope,
    endpoint_id: str,
    outcome: str = "",
    event_type: str = "",
    event_id: str = "",
    limit: int = 100,
    before: str = "",
) -> list[Delivery]:
    """An endpoint's attempts, newest first; `before` is the last delivery_id of a page."""
    rows = scope.rows(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries "
        "WHERE endpoint_id = {endpoint:String} "
        "AND ({outcome:String} = '' OR outcome = {outcome:String}) "
        "AND ({type:String} = '' OR event_type = {type:String}) "
        "AND ({event:String} = '' OR event_id = {event:String}) "
        "AND ({before:String} = '' OR delivery_id < {before:String}) "
        "ORDER BY delivery_id DESC LIMIT {limit:UInt32}",
        endpoint=endpoint_id,
        outcome=outcome,
        type=event_type,
        event=event_id,
        before=before,
        limit=limit,
    )
    return [Delivery(**row) for row in rows]


def attempts_made(scope: TenantScope, endpoint_id: str, event_id: str) -> int:
    rows = scope.rows(
        "SELECT max(attempt) AS attempts FROM webhook_deliveries "
        "WHERE endpoint_id = {endpoint:String} AND event_id = {event:String}",
        endpoint=endpoint_id,
        event=event_id,
    )
    return int(rows[0]["attempts"]) if rows else 0
