"""Hand-made worlds and journeys for the truth tests: one tenant, named affiliates, a
campaign whose terms the test chooses, and clicks and orders at given days."""

from __future__ import annotations

from pathlib import Path

from pipelines.simulate import agents
from pipelines.simulate.journeys import Browser, Click, Journey, LineItem, Order
from pipelines.simulate.world import (
    DAY,
    Affiliate,
    Campaign,
    ConflictRules,
    Link,
    Model,
    Tenant,
    Terms,
)
from rastro import contracts
from rastro.eventlog import LogReader, Offset
from rastro.settings import Settings

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: day 0 of the hand-made journeys
TENANT_ID = "t-test"


def affiliate(name: str, *, status: str = "approved", email_hash: str = "") -> Affiliate:
    return Affiliate(name, name.title(), "content", status, "", email_hash, 1.0)


def campaign(
    model: Model = "last_click",
    window: int = 30,
    conflict: ConflictRules | None = None,
    *,
    half_life: int = 7,
    campaign_id: str = "k1",
    changes: tuple[int, Model, int] | None = None,  # (day, model, window) of new terms
) -> Campaign:
    rules = conflict or ConflictRules()
    terms: tuple[Terms, ...]
    if changes is None:
        terms = (Terms(1, T0 - 400 * DAY, None, model, window, half_life, rules),)
    else:
        day, new_model, new_window = changes
        at = T0 + day * DAY
        terms = (
            Terms(1, T0 - 400 * DAY, at, model, window, half_life, rules),
            Terms(2, at, None, new_model, new_window, half_life, rules),
        )
    return Campaign(campaign_id, campaign_id, terms, "https://shop.example.com/")


def tenant(
    affiliates: list[Affiliate], campaigns: list[Campaign], coupons: dict[str, str] | None = None
) -> Tenant:
    """`coupons`: affiliate id -> code (in the first campaign)."""
    links = {
        (a.affiliate_id, c.campaign_id): Link(
            f"l-{a.affiliate_id}-{c.campaign_id}", "link", f"{a.affiliate_id}-{c.campaign_id}", a, c
        )
        for a in affiliates
        for c in campaigns
    }
    by_id = {a.affiliate_id: a for a in affiliates}
    coupon_links = {
        affiliate_id: Link(f"cp-{code}", "coupon", code, by_id[affiliate_id], campaigns[0])
        for affiliate_id, code in (coupons or {}).items()
    }
    return Tenant(
        tenant_id=TENANT_ID,
        slug="test",
        name="Test",
        currency="BRL",
        domain="shop.example.com",
        merchant_id="m1",
        campaigns=campaigns,
        affiliates=affiliates,
        links=links,
        coupons=coupon_links,
    )


BROWSER = Browser(agents.DESKTOP[0], "10.0.0.1", "ip-1", "ck-1", "granted")


def click(
    shop: Tenant,
    affiliate_id: str,
    day: float,
    *,
    campaign_id: str | None = None,
    click_id: str | None = None,
    browser: Browser = BROWSER,
    query: str = "",
    head: bool = False,
) -> Click:
    campaign_id = campaign_id or shop.campaigns[0].campaign_id
    made = Click(
        T0 + int(day * DAY), browser, shop.links[affiliate_id, campaign_id], browser.tracking_cookie
    )
    made.click_id = click_id or f"c-{affiliate_id}-{day}"
    made.head = head
    made.landing_url = f"https://shop.example.com/?{query}&rclid={made.click_id}"
    return made


def order(day: float, *, coupons: tuple[str, ...] = (), email: str = "") -> Order:
    return Order(
        ts=T0 + int(day * DAY),
        order_id=f"o-{day}",
        currency="BRL",
        lines=[LineItem("sku", "geral", 1, 10_000)],
        shipping_minor=0,
        tax_minor=0,
        customer_id="cus-1",
        email_sha256=email,
        coupons=list(coupons),
    )


def make_settings(tmp: Path, warehouse_url: str = "", database: str = "rastro") -> Settings:
    return Settings(
        _env_file=None,
        clickhouse_url=warehouse_url or None,
        clickhouse_database=database,
        data_dir=tmp,
        secret_key="test-secret",
    )


def read_log(root: Path) -> list[contracts.Event]:
    reader = LogReader(root)
    events: list[contracts.Event] = []
    for partition in reader.partitions():
        offset = Offset.start()
        while records := reader.read(partition, offset, max_records=10_000):
            events.extend(contracts.decode(r.payload) for r in records)
            offset = records[-1].next_offset
    return events


# -- the identity graph, per docs/attribution.md section 1 (independent of dbt's) ----------------


class Components:
    def __init__(self) -> None:
        self.parent: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    def find(self, node: tuple[str, str, str]) -> tuple[str, str, str]:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
        self.parent[self.find(a)] = self.find(b)


def identity_graph(events: list[contracts.Event]) -> Components:
    graph = Components()

    def node(tenant: str, kind: str, value: str) -> tuple[str, str, str]:
        return (tenant, kind, value)

    for e in events:
        t = e.tenant_id
        if isinstance(e, contracts.Click):
            graph.find(node(t, "click", e.click_id))
            if e.cookie_id:
                graph.join(node(t, "click", e.click_id), node(t, "cookie", e.cookie_id))
        elif isinstance(e, contracts.PageEvent):
            ids = {
                "click": e.click_id,
                "cookie": e.cookie_id,
                "customer": e.customer_id,
                "email_hash": e.email_hash,
            }
            if e.consent == "granted" and e.cookie_id:
                ids["device"] = f"{e.ip_hash}|{e.user_agent}"
            for left, right in (
                ("click", "cookie"),
                ("cookie", "customer"),
                ("cookie", "email_hash"),
                ("customer", "email_hash"),
                ("cookie", "device"),
            ):
                if ids.get(left) and ids.get(right):
                    graph.join(node(t, left, ids[left]), node(t, right, ids[right]))
        elif isinstance(e, contracts.Conversion):
            present = [
                node(t, kind, value)
                for kind, value in (
                    ("click", e.click_id),
                    ("cookie", e.cookie_id),
                    ("customer", e.customer_id),
                    ("email_hash", e.email_hash),
                )
                if value
            ]
            for other in present[1:]:
                graph.join(present[0], other)
            if present:
                graph.find(present[0])
        elif isinstance(e, contracts.IdentityLink) and e.consent != "denied":
            graph.join(node(t, e.left_kind, e.left_id), node(t, e.right_kind, e.right_id))
    return graph


def order_node(
    journey: Journey, events_by_order: dict[str, contracts.Conversion]
) -> tuple[str, str, str]:
    conversion = events_by_order[journey.orders()[0].order_id]
    t = conversion.tenant_id
    for kind, value in (
        ("click", conversion.click_id),
        ("cookie", conversion.cookie_id),
        ("customer", conversion.customer_id),
        ("email_hash", conversion.email_hash),
    ):
        if value:
            return (t, kind, value)
    raise AssertionError(f"order {conversion.order_id} carries no identifier")


def assert_recoverable(events: list[contracts.Event], journeys: list[Journey]) -> int:
    """Every click a buyer made before the order is in the order's person (or is the click
    the order names), and no two buyers, nor a buyer and anyone else, share a person.
    Returns how many clicks were checked."""
    graph = identity_graph(events)
    conversions = {e.order_id: e for e in events if isinstance(e, contracts.Conversion)}
    checked = 0
    owner: dict[tuple[str, str, str], str] = {}
    for journey in journeys:
        if not journey.orders():
            continue
        first = journey.orders()[0]
        person = graph.find(order_node(journey, conversions))
        assert owner.setdefault(person, first.order_id) == first.order_id, "two buyers joined"
        named = conversions[first.order_id].click_id
        for click in journey.clicks():
            if click.ts <= first.ts and click.click_id != named:
                where = graph.find((journey.tenant.tenant_id, "click", click.click_id))
                assert where == person, (first.scenario, first.order_id, click.click_id)
                checked += 1
    for journey in journeys:
        if not journey.orders():
            for click in journey.clicks():
                node = graph.find((journey.tenant.tenant_id, "click", click.click_id))
                assert node not in owner, f"a stranger's click {click.click_id} joined a buyer"
    return checked
