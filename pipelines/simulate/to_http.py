"""The HTTP driver: journeys carried out against a running API (`--to http`, for end-to-end
tests at small volume). Clicks are GETs (or HEADs) of the redirect with a cookie jar per
browser, the click id read from the Location; the tag's events are POSTed to /v1/events;
orders, renewals and refunds to /v1/conversions and /v1/order-updates.

Time is compressed: the server stamps clicks and tag events with its own clock, so a journey
planned over weeks runs in milliseconds, in the order it was planned, and each step's time
becomes the time it was executed (orders send it as `occurred_at`). The truth is then
computed from the executed journey: its click ids, its times.

Every browser has an address of its own, sent as X-Forwarded-For: the API must believe it
(`RASTRO_TRUSTED_PROXIES=127.0.0.1`), or every visitor shares one address, which trips the IP
velocity rules and joins strangers by device signature.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipelines.simulate.journeys import Click, Journey, Order, Page, Update
from pipelines.simulate.to_log import CLICK_ID_PARAM, REFERRERS, page_url
from pipelines.simulate.world import Tenant
from rastro.money import CURRENCY_EXPONENTS

Jar = dict[tuple[str, str], str]  # (cookie name, path) -> value


class HttpError(RuntimeError):
    pass


def _money(minor: int, currency: str) -> str:
    return str(Decimal(minor).scaleb(-CURRENCY_EXPONENTS[currency]))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class HttpDriver:
    """Drives journeys through the API at `api_url`; `api_keys`: an ingest key per tenant."""

    def __init__(self, api_url: str, api_keys: Mapping[str, str], gap_s: float = 0.003) -> None:
        parts = urlsplit(api_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.api_keys = dict(api_keys)
        self.gap_s = gap_s  # between steps: no two steps share a millisecond
        self.counts: Counter[str] = Counter()
        self._connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self._jars: dict[str, Jar] = {}  # by the planned tracking cookie: one per browser

    def close(self) -> None:
        self._connection.close()

    def flush(self) -> None:
        """Nothing is buffered: every request is answered once written."""

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        for attempt in range(2):
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                response.read()
                return response
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive connection the server closed: reconnect once.
                self._connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def drive(self, journey: Journey, email_hash: Mapping[str, str]) -> None:
        """Carry the journey out; its steps get their executed click ids and times.
        `email_hash` is unused: the API keys emails itself."""
        del email_hash
        tenant = journey.tenant
        for step in journey.steps:
            if isinstance(step, Click):
                self._click(step)
            elif isinstance(step, Page):
                self._page(tenant, step)
            elif isinstance(step, Order):
                self._order(tenant, step)
            else:
                self._update(tenant, step)
            time.sleep(self.gap_s)

    def _click(self, click: Click) -> None:
        browser = click.browser
        headers = {
            "User-Agent": browser.ua,
            "X-Forwarded-For": browser.ip,
            "Referer": REFERRERS.get(click.link.affiliate.segment, ""),
        }
        path = f"/r/{click.link.code}" + (f"?{click.query}" if click.query else "")
        # No cookie planned: the tracking host's cookie is blocked (nothing sent, nothing kept).
        jar = self._jars.setdefault(click.cookie, {}) if click.cookie else None
        if jar:
            headers["Cookie"] = "; ".join(
                f"{name}={value}" for (name, where), value in jar.items() if path.startswith(where)
            )
        response = self._request("HEAD" if click.head else "GET", path, None, headers)
        location = response.getheader("Location") or ""
        click_ids = parse_qs(urlsplit(location).query).get(CLICK_ID_PARAM)
        if response.status != 302 or not click_ids:
            raise HttpError(f"GET {path}: {response.status}, Location {location!r}")
        click.ts = _now_ms()
        click.click_id = click_ids[0]
        click.landing_url = location
        if jar is not None:
            for header in response.headers.get_all("Set-Cookie") or []:
                pair, *attributes = header.split(";")
                name, _, value = pair.strip().partition("=")
                where = "/"
                for attribute in attributes:
                    key, _, val = attribute.strip().partition("=")
                    if key.lower() == "path":
                        where = val
                jar[name, where] = value
        self.counts["Click"] += 1

    def _page(self, tenant: Tenant, page: Page) -> None:
        click = page.click
        event: dict[str, Any] = {
            "kind": page.kind,
            "url": page_url(tenant.domain, page),
            "click_id": click.click_id if click is not None else "",
            "cookie_id": page.cookie,
            "consent": page.browser.consent,
        }
        if page.kind != "page_view":
            event["customer_id"] = page.customer_id
            event["email_sha256"] = page.email_sha256
        body = json.dumps({"t": tenant.tenant_id, "events": [event]}).encode()
        headers = {
            "Content-Type": "text/plain",
            "User-Agent": page.browser.ua,
            "X-Forwarded-For": page.browser.ip,
            "Origin": f"https://{tenant.domain}",
        }
        response = self._request("POST", "/v1/events", body, headers)
        if response.status != 200:
            raise HttpError(f"POST /v1/events: {response.status}")
        page.ts = _now_ms()
        self.counts["PageEvent"] += 1

    def _post(self, tenant: Tenant, path: str, payload: dict[str, Any]) -> None:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.api_keys[tenant.tenant_id]}",
        }
        response = self._request("POST", path, json.dumps(payload).encode(), headers)
        if response.status not in (200, 201):
            raise HttpError(f"POST {path}: {response.status}")

    def _order(self, tenant: Tenant, order: Order) -> None:
        order.ts = _now_ms()
        currency = order.currency
        payload: dict[str, Any] = {
            "order_id": order.order_id,
            "amount": _money(order.amount_minor, currency),
            "tax": _money(order.tax_minor, currency),
            "shipping": _money(order.shipping_minor, currency),
            "currency": currency,
            "line_items": [
                {
                    "sku": line.sku,
                    "category": line.category,
                    "quantity": line.quantity,
                    "amount": _money(line.amount_minor, currency),
                }
                for line in order.lines
            ],
            "coupon_codes": order.coupons,
            "click_id": order.click.click_id if order.click is not None else "",
            "cookie_id": order.cookie,
            "customer_id": order.customer_id,
            "is_new_customer": order.is_new_customer,
            "country": "BR",
            "subscription_id": order.subscription_id,
            "renewal_number": order.renewal_number,
            "occurred_at": order.ts,
        }
        if order.email_sha256:
            payload["email_sha256"] = order.email_sha256
        self._post(tenant, "/v1/conversions", payload)
        self.counts["Conversion"] += 1

    def _update(self, tenant: Tenant, update: Update) -> None:
        update.ts = _now_ms()
        self._post(
            tenant,
            "/v1/order-updates",
            {
                "order_id": update.order.order_id,
                "kind": update.kind,
                "amount": _money(update.amount_minor, update.order.currency),
                "currency": update.order.currency,
                "update_id": update.update_id,
                "reason": "simulated",
            },
        )
        self.counts["OrderUpdate"] += 1
