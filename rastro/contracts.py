"""Event contracts: what the tracking edge writes to the event log, one JSON object per
record, and what the ingest job validates before anything reaches the landing tables.

Field names are the landing tables' column names (rastro/schema/tables.py), so a record maps
to a row without renaming. Times are integer epoch milliseconds (UTC). Money is an integer
amount in minor units next to an ISO 4217 currency. What the edge cannot know (parsed user
agent, referrer host, velocity flags, log offsets) the ingest job adds.

The redirect writes its record's JSON directly, for speed (see api/redirect.py); a test
holds it to `Click` field by field, so the two never drift.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

CONTRACT_VERSION: Literal[1] = 1

EpochMillis = Annotated[int, Field(ge=0, lt=32503680000000)]  # before year 3000
Minor = Annotated[int, Field(ge=-(10**15), le=10**15)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = CONTRACT_VERSION
    event_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=64)
    ts: EpochMillis  # when it happened (the click, the order, ...)
    received_at: EpochMillis  # when the edge received it


class Click(_Event):
    """One hit on a tracked link (a repeat within the hour carries the same click_id)."""

    type: Literal["click"] = "click"
    click_id: str
    source: Literal["redirect", "landing_param", "pixel"]
    link_id: str
    link_code: str
    affiliate_id: str
    campaign_id: str
    campaign_terms_version: int = Field(ge=0)
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


class PageEvent(_Event):
    """Something the first-party tag or the pixel saw on the merchant's site."""

    type: Literal["page_event"] = "page_event"
    kind: Literal["page_view", "identify", "lead"]
    merchant_id: str = ""
    click_id: str = ""
    cookie_id: str = ""
    url: str = ""
    referrer: str = ""
    customer_id: str = ""
    email_hash: str = ""
    consent: Literal["granted", "denied", "unknown"] = "unknown"
    properties: dict[str, Any] = Field(default_factory=dict)
    user_agent: str = ""
    ip_hash: str = ""
    country: str = ""


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str
    category: str = ""
    quantity: int = Field(ge=1)
    amount_minor: Minor  # the line's total, after its own discounts


class Conversion(_Event):
    """An order (or lead) as the merchant reported it; a later version of the same order
    replaces it (`version`)."""

    type: Literal["conversion"] = "conversion"
    conversion_id: str
    order_id: str
    version: int = Field(ge=1)
    kind: Literal["sale", "lead"] = "sale"
    merchant_id: str = ""
    amount_minor: Minor
    net_minor: Minor
    tax_minor: Minor = 0
    shipping_minor: Minor = 0
    discount_minor: Minor = 0
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    line_items: list[LineItem] = Field(default_factory=list)
    coupon_codes: list[str] = Field(default_factory=list)
    click_id: str = ""
    cookie_id: str = ""
    customer_id: str = ""
    email_hash: str = ""
    is_new_customer: bool = False
    country: str = ""
    source: str  # s2s, postback, pixel, webhook:shopify, ...
    subscription_id: str = ""
    renewal_number: int = Field(default=0, ge=0)


class OrderUpdate(_Event):
    """A refund (partial or full), cancellation or chargeback of an order."""

    type: Literal["order_update"] = "order_update"
    update_id: str
    order_id: str
    kind: Literal["refund", "cancellation", "chargeback"]
    amount_minor: Minor  # what leaves the merchant: the refunded amount, positive
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reason: str = ""
    source: str


class IdentityLink(_Event):
    """Two identifiers seen together (a cookie and a customer id, ...)."""

    type: Literal["identity_link"] = "identity_link"
    left_kind: str
    left_id: str
    right_kind: str
    right_id: str
    source: str
    consent: Literal["granted", "denied", "unknown"] = "unknown"


Event = Annotated[
    Click | PageEvent | Conversion | OrderUpdate | IdentityLink, Field(discriminator="type")
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def encode(event: BaseModel | dict[str, Any]) -> bytes:
    """One log record."""
    data = event.model_dump(mode="json") if isinstance(event, BaseModel) else event
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def decode(payload: bytes) -> Event:
    """Parses and validates one log record; raises pydantic.ValidationError."""
    return EVENT_ADAPTER.validate_json(payload)
