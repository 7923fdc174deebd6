"""Events built with the contracts, and log records of them, for the ingest tests."""

from __future__ import annotations

from typing import Any

import polars as pl

from ingest.enrich import enrich_clicks
from rastro.contracts import (
    Click,
    Conversion,
    IdentityLink,
    LineItem,
    OrderUpdate,
    PageEvent,
    encode,
)
from rastro.eventlog import Record

TS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
TENANT = "t-1"


def click(i: int = 0, **extra: Any) -> Click:
    return Click(
        event_id=f"click-{i}",
        tenant_id=TENANT,
        ts=TS + i,
        received_at=TS + i + 5,
        click_id=f"c{i}",
        source="redirect",
        link_id="l1",
        link_code="ana",
        affiliate_id="a1",
        campaign_id="k1",
        campaign_terms_version=2,
        destination_url="https://shop.example/p",
        landing_url="https://shop.example/p?rclid=c",
        user_agent="Mozilla/5.0",
        ip_network="203.0.113.0/24",
        **extra,
    )


def page_event(i: int = 0) -> PageEvent:
    return PageEvent(
        event_id=f"page-{i}",
        tenant_id=TENANT,
        ts=TS + i,
        received_at=TS + i,
        kind="identify",
        customer_id="cust-9",
        properties={"plan": "pro", "n": 3},
    )


def conversion(i: int = 0) -> Conversion:
    return Conversion(
        event_id=f"conv-{i}",
        tenant_id=TENANT,
        ts=TS + i,
        received_at=TS + i,
        conversion_id=f"cv{i}",
        order_id=f"o{i}",
        version=1,
        amount_minor=12_345,
        net_minor=10_000,
        currency="BRL",
        line_items=[LineItem(sku="sku-1", category="shoes", quantity=2, amount_minor=12_345)],
        coupon_codes=["ANA10"],
        source="s2s",
    )


def order_update(i: int = 0) -> OrderUpdate:
    return OrderUpdate(
        event_id=f"upd-{i}",
        tenant_id=TENANT,
        ts=TS + i,
        received_at=TS + i,
        update_id=f"r{i}",
        order_id=f"o{i}",
        kind="refund",
        amount_minor=500,
        currency="BRL",
        source="api",
    )


def identity_link(i: int = 0) -> IdentityLink:
    return IdentityLink(
        event_id=f"idl-{i}",
        tenant_id=TENANT,
        ts=TS + i,
        received_at=TS + i,
        left_kind="cookie",
        left_id=f"ck{i}",
        right_kind="customer",
        right_id="cust-9",
        source="identify",
    )


MAKERS = (click, page_event, conversion, order_update, identity_link)


def mixed(n: int) -> list[Any]:
    """n events cycling through every type."""
    return [MAKERS[i % len(MAKERS)](i) for i in range(n)]


def record(payload: bytes | Any, position: int, partition: str = "p-0001") -> Record:
    data = payload if isinstance(payload, bytes) else encode(payload)
    return Record(partition, 0, position, position + 1, data)


# What the edge sets on a click that enrichment reads (the other columns ride along).
EDGE_CLICK_DEFAULTS: dict[str, Any] = {
    "tenant_id": TENANT,
    "user_agent": "",
    "referrer": "",
    "landing_url": "",
    "destination_url": "",
    "is_bot": False,
    "bot_reason": "",
    "is_head": False,
    "is_preview": False,
}


def enrich_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`enrich_clicks` on click rows given as dicts (missing edge columns defaulted)."""
    frame = pl.DataFrame([{**EDGE_CLICK_DEFAULTS, **row} for row in rows])
    return enrich_clicks(frame).to_dicts()
