"""The log driver: journeys as the records the edge would have written, appended to the event
log (`--to log`, for volume). Each record is what the API writes for the same request (the
redirect's `Click`, the tag's `PageEvent` and `IdentityLink`s, the S2S `Conversion` and
`OrderUpdate`), validated by `rastro.contracts.encode`. Ids are derived from the seed, so the
same seed writes the same events (a replay collapses by event id in the warehouse)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from api.routes.conversions import derived_id
from api.visitors import classify
from pipelines.simulate.journeys import Click, Journey, Order, Page, Update
from pipelines.simulate.world import Tenant
from rastro import contracts
from rastro.eventlog import LogWriter
from rastro.ids import stable_uuid7

# Where visitors of each kind of affiliate come from (the Referer of the click).
REFERRERS = {
    "content": "https://blog.example.org/resenha",
    "coupon_sites": "https://www.cupons.example.com/loja",
    "influencers": "https://www.instagram.com/",
    "cashback": "https://cashback.example.com/ofertas",
}
CLICK_ID_PARAM = "rclid"  # the world's campaigns all use the default


def landing_url(click: Click) -> str:
    """Where the redirect sends the visitor: the destination, the visitor's own parameters,
    then the click id (api/redirect.py, `_Plan.location`)."""
    destination = click.link.campaign.destination
    query = f"{click.query}&" if click.query else ""
    return f"{destination}?{query}{CLICK_ID_PARAM}={click.click_id}"


def page_url(domain: str, page: Page) -> str:
    """The page the tag reports: the landing URL (with the click id) for a landing view."""
    if page.click is not None and page.path == "/":
        return page.click.landing_url
    return f"https://{domain}{page.path}"


class LogDriver:
    """Writes journeys to `writer` in batches of `batch` records."""

    def __init__(self, writer: LogWriter, seed: int, batch: int = 5000) -> None:
        self.writer = writer
        self.batch = batch
        self.counts: Counter[str] = Counter()
        self._buffer: list[bytes] = []
        self._prefix = f"sim-{seed}-"
        self._n = 0

    def _event_id(self, ts: int) -> str:
        self._n += 1
        return stable_uuid7(ts, self._prefix + str(self._n))

    def drive(self, journey: Journey, email_hash: Mapping[str, str]) -> None:
        """Write the journey's records; click ids and landing URLs are filled in on its steps.
        `email_hash`: each email SHA-256 of the journey keyed for its tenant."""
        tenant = journey.tenant
        for step in journey.steps:
            if isinstance(step, Click):
                self._click(tenant, step)
            elif isinstance(step, Page):
                self._page(tenant, step, email_hash)
            elif isinstance(step, Order):
                self._conversion(tenant, step, email_hash)
            else:
                self._update(tenant, step)
        if len(self._buffer) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.writer.append_many(self._buffer)
            self._buffer = []

    def _append(self, record: contracts.Event) -> None:
        self._buffer.append(contracts.encode(record))
        self.counts[type(record).__name__] += 1

    def _click(self, tenant: Tenant, click: Click) -> None:
        event_id = self._event_id(click.ts)
        # A repeat within the hour carries its first click's id; a new click's id is its event
        # id, as the redirect does.
        click.click_id = click.repeat_of.click_id if click.repeat_of else event_id
        click.landing_url = landing_url(click)
        link, browser = click.link, click.browser
        kind = classify(browser.ua)
        a, b, c, _ = browser.ip.split(".")
        self._append(
            contracts.Click(
                event_id=event_id,
                tenant_id=tenant.tenant_id,
                ts=click.ts,
                received_at=click.ts,
                click_id=click.click_id,
                source="redirect",
                link_id=link.link_id,
                link_code=link.code,
                affiliate_id=link.affiliate.affiliate_id,
                campaign_id=link.campaign.campaign_id,
                campaign_terms_version=link.campaign.terms_at(click.ts).version,
                destination_url=link.destination_url,
                landing_url=click.landing_url,
                referrer="" if kind.is_bot else REFERRERS.get(link.affiliate.segment, ""),
                user_agent=browser.ua,
                ip_network=f"{a}.{b}.{c}.0/24",
                ip_hash=browser.ip_hash,
                country="BR",
                cookie_id=click.cookie,
                is_bot=kind.is_bot,
                bot_reason=kind.reason,
                is_head=click.head,
                is_preview=kind.is_preview,
            )
        )

    def _page(self, tenant: Tenant, page: Page, email_hash: Mapping[str, str]) -> None:
        browser = page.browser
        click_id = page.click.click_id if page.click is not None else ""
        url = page_url(tenant.domain, page)
        hashed = email_hash[page.email_sha256] if page.email_sha256 else ""
        tenant_id, ts, received_at = tenant.tenant_id, page.ts, page.ts + 150
        self._append(
            contracts.PageEvent(
                event_id=self._event_id(page.ts),
                kind=page.kind,
                merchant_id=tenant.merchant_id,
                click_id=click_id,
                cookie_id=page.cookie,
                url=url,
                customer_id=page.customer_id,
                email_hash=hashed,
                consent=browser.consent,
                user_agent=browser.ua,
                ip_hash=browser.ip_hash,
                country="BR",
                tenant_id=tenant_id,
                ts=ts,
                received_at=received_at,
            )
        )
        if page.kind == "page_view":
            return
        # What the tag endpoint writes for an identify or a lead: every identifier it
        # carries, linked to the first of them (api/routes/events.py, `_records`).
        ids = [
            (kind, value)
            for kind, value in (
                ("cookie", page.cookie),
                ("customer", page.customer_id),
                ("email_hash", hashed),
                ("click", click_id),
            )
            if value
        ]
        for right_kind, right_id in ids[1:]:
            self._append(
                contracts.IdentityLink(
                    event_id=self._event_id(page.ts),
                    left_kind=ids[0][0],
                    left_id=ids[0][1],
                    right_kind=right_kind,
                    right_id=right_id,
                    source="tag",
                    consent=browser.consent,
                    tenant_id=tenant_id,
                    ts=ts,
                    received_at=received_at,
                )
            )

    def _conversion(self, tenant: Tenant, order: Order, email_hash: Mapping[str, str]) -> None:
        self._append(
            contracts.Conversion(
                event_id=self._event_id(order.ts),
                tenant_id=tenant.tenant_id,
                ts=order.ts,
                received_at=order.ts + 800,
                conversion_id=derived_id("conversion", tenant.tenant_id, order.order_id),
                order_id=order.order_id,
                version=1,
                merchant_id=tenant.merchant_id,
                amount_minor=order.amount_minor,
                net_minor=order.net_minor,
                tax_minor=order.tax_minor,
                shipping_minor=order.shipping_minor,
                currency=order.currency,
                line_items=[
                    contracts.LineItem(
                        sku=line.sku,
                        category=line.category,
                        quantity=line.quantity,
                        amount_minor=line.amount_minor,
                    )
                    for line in order.lines
                ],
                coupon_codes=list(order.coupons),
                click_id=order.click.click_id if order.click is not None else "",
                cookie_id=order.cookie,
                customer_id=order.customer_id,
                email_hash=email_hash[order.email_sha256] if order.email_sha256 else "",
                is_new_customer=order.is_new_customer,
                country="BR",
                source="s2s",
                subscription_id=order.subscription_id,
                renewal_number=order.renewal_number,
            )
        )

    def _update(self, tenant: Tenant, update: Update) -> None:
        self._append(
            contracts.OrderUpdate(
                event_id=self._event_id(update.ts),
                tenant_id=tenant.tenant_id,
                ts=update.ts,
                received_at=update.ts + 600,
                update_id=update.update_id,
                order_id=update.order.order_id,
                kind=update.kind,
                amount_minor=update.amount_minor,
                currency=update.order.currency,
                reason="simulated",
                source="s2s",
            )
        )
