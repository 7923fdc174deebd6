"""Event contracts: what the tracking edge writes to the event log, one JSON object per
record, and what the ingest job validates before anything reaches the landing tables.

Field names are the landing tables' column names (rastro/schema/tables.py), so a record maps
to a row without renaming. Times are integer epoch milliseconds (UTC). Money is an integer
amount in minor units next to an ISO 4217 currency. What the edge cannot know (parsed user
agent, referrer host, velocity flags, log offsets) the ingest job adds.

The contracts are msgspec Structs, not pydantic models: ingest validates every event, and
msgspec decodes and validates a click in ~1.5 us where pydantic took ~9 us (docs/ingest.md).
Decoding is strict (JSON types must match: no "12" for an int) and unknown fields are refused.
Structs are not validated when built in Python, so `encode` validates what it writes: the
API can never put a record in the log that ingest would reject.

The redirect writes its record's JSON directly, for speed (see api/redirect.py); a test
holds it to `Click` field by field, so the two never drift.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

CONTRACT_VERSION: Literal[1] = 1

# What `decode` (and `encode`) raise: msgspec.ValidationError is a DecodeError too.
ContractError = msgspec.DecodeError

EpochMillis = Annotated[int, Meta(ge=0, lt=32503680000000)]  # before year 3000
Minor = Annotated[int, Meta(ge=-(10**15), le=10**15)]
Id = Annotated[str, Meta(min_length=1, max_length=64)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
NonNegative = Annotated[int, Meta(ge=0)]
Consent = Literal["granted", "denied", "unknown"]


class _Event(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    v: Literal[1] = CONTRACT_VERSION
    event_id: Id
    tenant_id: Id
    ts: EpochMillis  # when it happened (the click, the order, ...)
    received_at: EpochMillis  # when the edge received it


class Click(_Event, tag="click", kw_only=True, frozen=True):
    """One hit on a tracked link (a repeat within the hour carries the same click_id)."""

    click_id: str
    source: Literal["redirect", "landing_param", "pixel"]
    link_id: str
    link_code: str
    affiliate_id: str
    campaign_id: str
    campaign_terms_version: NonNegative
    destination_url: str
    landing_url: str  # where the visitor was sent: destination + the click id + merchant params
    sub1: str = ""
    sub2: str = ""
    sub3: str = ""
    sub4: str = ""
    sub5: str = ""
    referrer: str = ""
    user_agent: str = ""
    ip_network: str = ""  # truncated: /24 for IPv4, /48 for IPv6; never the full address
    ip_hash: str = ""  # HMAC of the full address under a tenant-scoped key
    country: str = ""
    cookie_id: str = ""  # the tracking host's visitor cookie, when consent allows one
    is_bot: bool = False
    bot_reason: str = ""
    is_head: bool = False
    is_preview: bool = False


class PageEvent(_Event, tag="page_event", kw_only=True, frozen=True):
    """Something the first-party tag or the pixel saw on the merchant's site."""

    kind: Literal["page_view", "identify", "lead"]
    merchant_id: str = ""
    click_id: str = ""
    cookie_id: str = ""
    url: str = ""
    referrer: str = ""
    customer_id: str = ""
    email_hash: str = ""
    consent: Consent = "unknown"
    properties: dict[str, Any] = {}
    user_agent: str = ""
    ip_hash: str = ""
    country: str = ""


class LineItem(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: str
    category: str = ""
    quantity: Annotated[int, Meta(ge=1)]
    amount_minor: Minor  # the line's total, after its own discounts


class Conversion(_Event, tag="conversion", kw_only=True, frozen=True):
    """An order (or lead) as the merchant reported it; a later version of the same order
    replaces it (`version`)."""

    conversion_id: str
    order_id: str
    version: Annotated[int, Meta(ge=1)]
    kind: Literal["sale", "lead"] = "sale"
    merchant_id: str = ""
    amount_minor: Minor
    net_minor: Minor
    tax_minor: Minor = 0
    shipping_minor: Minor = 0
    discount_minor: Minor = 0
    currency: Currency
    line_items: list[LineItem] = []
    coupon_codes: list[str] = []
    click_id: str = ""
    cookie_id: str = ""
    customer_id: str = ""
    email_hash: str = ""
    is_new_customer: bool = False
    country: str = ""
    source: str  # s2s, postback, pixel, webhook:shopify, ...
    subscription_id: str = ""
    renewal_number: NonNegative = 0


class OrderUpdate(_Event, tag="order_update", kw_only=True, frozen=True):
    """A refund (partial or full), cancellation or chargeback of an order."""

    update_id: str
    order_id: str
    kind: Literal["refund", "cancellation", "chargeback"]
    amount_minor: Minor  # what leaves the merchant: the refunded amount, positive
    currency: Currency
    reason: str = ""
    source: str


class IdentityLink(_Event, tag="identity_link", kw_only=True, frozen=True):
    """Two identifiers seen together (a cookie and a customer id, ...)."""

    left_kind: str
    left_id: str
    right_kind: str
    right_id: str
    source: str
    consent: Consent = "unknown"


Event = Click | PageEvent | Conversion | OrderUpdate | IdentityLink

_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def encode(event: Event | dict[str, Any]) -> bytes:
    """One log record, validated against the contract (raises `ContractError`)."""
    payload = _encoder.encode(event)
    _decoder.decode(payload)
    return payload


def decode(payload: bytes) -> Event:
    """Parses and validates one log record; raises `ContractError` (a message naming the
    field: "Expected `int`, got `str` - at `$.ts`")."""
    event: Event = _decoder.decode(payload)
    return event


def to_dict(event: Event) -> dict[str, Any]:
    """The record as a dict, `type` included (what `encode` writes, as Python values)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return data
