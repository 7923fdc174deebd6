"""Journeys: what each simulated person (or bot) does, step by step, with its ground-truth
labels. A journey is a plan: its steps name browsers, links and times; a driver carries it
out (writing records to the event log, or calling the API) and fills in what only the edge
knows (click ids, the landing URL), and the truth is computed from the journey as executed.

One journey is one person: every browser it uses and every order it places. The planner makes
sure that every click of a buyer before the purchase can be joined to the order by the rules
of docs/attribution.md, section 1 (a shared cookie, the S2S click id, a login, an email, the
device signature): the truth credits the journey the person really made, so a journey the
rules could not see would be a sale nobody can attribute, which only `organic` orders are.

Scenarios (docs/simulator.md has the table): the identity path of a click journey decides
how the order is joined to the clicks (`direct`, the cookie-lost ones, the cross-device
ones); modifiers add to any path (coupons, several affiliates, subscriptions, refunds,
fraud). Every order carries its primary scenario and the list of all that apply.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

from pipelines.simulate import agents
from pipelines.simulate.world import (
    DAY,
    HOUR,
    MINUTE,
    Affiliate,
    Keys,
    Link,
    Tenant,
    World,
    email_sha256,
)
from rastro.contracts import Consent

SECOND = 1000

# The identity paths of click journeys. Cookie-lost: the order arrives without the cookie the
# clicks set, and is joined by the click id (in the S2S call or the landing URL) or the device.
COOKIE_LOST = ("cookie_lost_url", "js_cookie_capped", "tag_blocked", "private_window")
COOKIE_KEPT = ("direct", "cross_device_login", "cross_device_email")
PATHS = COOKIE_LOST + COOKIE_KEPT
FRAUD = (
    "self_referral",
    "click_spam",
    "cookie_stuffing",
    "fast_ctit",
    "coupon_leakage",
    "click_burst",
    "conversion_burst",
)
PAID_MARKERS = ("gclid", "fbclid", "msclkid", "ttclid")
MERCHANT_COUPON = "BEMVINDO10"
UpdateKind = Literal[
    "refund", "cancellation", "chargeback"
]  # the store's own code: not an affiliate's, never credited


@dataclass(frozen=True)
class Mix:
    """How often each scenario happens. Shares of converting journeys unless noted; the
    defaults are a realistic mix for a Brazilian e-commerce program with a SaaS tenant."""

    cookie_lost_share: float = 0.35  # of click journeys: the order comes without the cookie
    # Within cookie-lost and cookie-kept journeys, the weight of each path.
    cookie_lost_paths: tuple[float, float, float, float] = (0.35, 0.30, 0.20, 0.15)
    cookie_kept_paths: tuple[float, float, float] = (0.70, 0.18, 0.12)
    organic: float = 0.10  # orders with no affiliate at all
    coupon_only: float = 0.06  # an affiliate's coupon, no click
    bot_order: float = 0.01  # a script clicks and orders (fake order): never credited
    clicks: tuple[float, ...] = (0.45, 0.25, 0.15, 0.10, 0.05)  # 1..5 clicks per journey
    same_affiliate: float = 0.55  # a further click is on an affiliate already clicked
    cross_campaign: float = 0.2  # multi-click journeys mixing a tenant's campaigns
    coupon_and_click: float = 0.10
    leaked_coupon: float = 0.3  # the coupon is not a clicked affiliate's (coupon_leakage)
    merchant_coupon: float = 0.08
    old_click: float = 0.08  # a click older than the window (excluded: outside_window)
    paid_hijack: float = 0.02
    self_referral: float = 0.015
    fast_ctit: float = 0.02
    click_spam: float = 0.03
    cookie_stuffing: float = 0.02
    repeat_click: float = 0.05  # the same link again within the hour: the same click id
    post_purchase_click: float = 0.04
    subscription: float = 0.6  # in tenants that sell subscriptions
    refund_full: float = 0.04
    refund_partial: float = 0.04
    cancellation: float = 0.02
    chargeback: float = 0.01
    # Traffic that does not buy, per converting journey.
    visitors_per_conversion: float = 4.0  # most visitors never buy
    spam_visitors: float = 0.1  # of visitors: a click-spam pop-under among their clicks
    bot_journeys_per_conversion: float = 0.15
    stuffing_servers_per_conversion: float = 0.004
    # Of self-referrals: the affiliate orders with another email from a browser of the device
    # where they once logged in with their own (different cookies, no consent to join them).
    self_referral_other_email: float = 0.5
    # Affiliates whose traffic leaves their own history, on `burst_days` days each: bought
    # clicks (the tenant's conversions times this, at least 30 a day) and fake orders through
    # their own link (part of the tenant's converting journeys, none below 1 a day).
    burst_days: int = 2
    click_burst_per_conversion: float = 0.012
    conversion_burst_per_conversion: float = 0.006

    def __post_init__(self) -> None:
        if not 0 <= self.cookie_lost_share <= 1:
            raise ValueError("cookie_lost_share must be between 0 and 1")
        if self.organic + self.coupon_only + self.bot_order >= 1:
            raise ValueError("organic + coupon_only + bot_order must leave room for clicks")


# -- the steps of a journey --------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Browser:
    """One browser (or bot) of a person: one device, one address."""

    ua: str
    ip: str
    ip_hash: str  # as the edge keys it for this tenant
    tracking_cookie: str  # the tracking host's visitor id; "" when its cookie is blocked
    consent: Consent

    @property
    def safari(self) -> bool:
        return "Safari/" in self.ua and "Chrome/" not in self.ua and "Version/" in self.ua


@dataclass(slots=True, eq=False)
class Click:
    ts: int
    browser: Browser
    link: Link
    cookie: str  # the tracking cookie sent with it ("" none)
    query: str = ""  # the visitor's own parameters on the tracked URL (utm_*, gclid)
    head: bool = False  # a HEAD request (link checkers)
    label: str = ""  # fraud label
    repeat_of: Click | None = None  # the same visitor on the same link within the hour
    click_id: str = ""  # set by the driver (the edge decides it)
    landing_url: str = ""  # set by the driver


@dataclass(slots=True, eq=False)
class Page:
    """A tag event: a page view, an identify (login) or a lead (sign-up)."""

    ts: int
    browser: Browser
    kind: Literal["page_view", "identify", "lead"]
    cookie: str  # the tag's first-party visitor id at that moment
    path: str
    click: Click | None = None  # the click id the tag saw in the URL or kept
    customer_id: str = ""
    email_sha256: str = ""


@dataclass(slots=True, eq=False)
class LineItem:
    sku: str
    category: str
    quantity: int
    amount_minor: int


@dataclass(slots=True, eq=False)
class Order:
    ts: int
    order_id: str
    currency: str
    lines: list[LineItem]
    shipping_minor: int
    tax_minor: int
    customer_id: str
    email_sha256: str
    cookie: str = ""
    click: Click | None = None  # the click id sent with the order (S2S)
    coupons: list[str] = field(default_factory=list)
    is_new_customer: bool = True
    subscription_id: str = ""
    renewal_number: int = 0
    first: Order | None = None  # a renewal's first payment
    scenario: str = ""
    scenarios: list[str] = field(default_factory=list)
    fraud_labels: list[str] = field(default_factory=list)
    cookie_lost: bool = False

    @property
    def amount_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines) + self.shipping_minor

    @property
    def net_minor(self) -> int:
        return self.amount_minor - self.tax_minor - self.shipping_minor


@dataclass(slots=True, eq=False)
class Update:
    ts: int
    order: Order
    kind: UpdateKind
    amount_minor: int
    update_id: str


Step = Click | Page | Order | Update


@dataclass(eq=False)
class Journey:
    tenant: Tenant
    steps: list[Step]

    def clicks(self) -> list[Click]:
        return [step for step in self.steps if isinstance(step, Click)]

    def orders(self) -> list[Order]:
        return [step for step in self.steps if isinstance(step, Order)]

    def email_sha256s(self) -> set[str]:
        """Every email this person gave (identify, lead, orders)."""
        return {
            step.email_sha256
            for step in self.steps
            if isinstance(step, Page | Order) and step.email_sha256
        }


def add(scenarios: list[str], *names: str) -> None:
    for name in names:
        if name not in scenarios:
            scenarios.append(name)


# -- the planner -------------------------------------------------------------------------------


@dataclass
class _Draft:
    """A click journey being planned."""

    path: str
    buyer: Browser  # the browser that clicks (the phone in cross-device journeys)
    laptop: Browser | None = None  # where cross-device journeys end
    clicks: list[Click] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    fraud: list[str] = field(default_factory=list)


class Planner:
    """Plans journeys for a world, drawing everything from one seeded generator: the same
    seed and the same sequence of calls give the same journeys."""

    def __init__(self, world: World, mix: Mix, keys: Keys, seed: int) -> None:
        self.world = world
        self.mix = mix
        self.keys = keys
        self.rng = random.Random(seed)
        self._people = 0
        self._addresses = 0
        self._bot_addresses = 0
        self._orders = 0
        self.order_prefix = "PED"  # order ids: PED-<tenant>-<n>
        self._self_referred: set[str] = set()
        self._pending: list[Journey] = []  # journeys a converting journey brought along
        self._weights: dict[tuple[str, bool], tuple[list[Affiliate], list[float]]] = {}

    # -- small draws ---------------------------------------------------------------------------

    def _uniform_ms(self, low: float, high: float) -> int:
        return int(self.rng.uniform(low, high))

    def _cookie(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def _browser(
        self, tenant: Tenant, ua: str, consent: Consent, *, bot: bool = False, blocked: bool = False
    ) -> Browser:
        # Every person (and every bot) has addresses of its own: the IP velocity rules count
        # per address, and the device signature (address, agent) must never join strangers.
        if bot:
            self._bot_addresses += 1
            n = self._bot_addresses
            ip = f"172.{16 + (n >> 16) % 16}.{(n >> 8) & 255}.{n & 255}"
        else:
            self._addresses += 1
            n = self._addresses
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        return Browser(
            ua=ua,
            ip=ip,
            ip_hash=self.keys.ip_hash(tenant.tenant_id, ip),
            tracking_cookie="" if blocked else self._cookie(),
            consent=consent,
        )

    def _twin(self, browser: Browser, consent: Consent) -> Browser:
        """A private window of the same browser: same device and address, new cookies."""
        return Browser(browser.ua, browser.ip, browser.ip_hash, self._cookie(), consent)

    def _consent(self) -> Consent:
        return "granted" if self.rng.random() < 0.55 else "unknown"

    def _person(self) -> tuple[str, str]:
        """A new person's customer id and email (SHA-256)."""
        self._people += 1
        n = self._people
        return f"cus-{n:08d}", email_sha256(f"pessoa{n}.{self.world.seed}@mail.example.com")

    def _order_id(self, tenant: Tenant) -> str:
        self._orders += 1
        return f"{self.order_prefix}-{tenant.slug}-{self._orders:08d}"

    def affiliate(self, tenant: Tenant, *, coupon_holders: bool = False) -> Affiliate:
        """An affiliate by popularity (the suspended one included: its links still work), or
        one of those with a coupon code."""
        key = (tenant.tenant_id, coupon_holders)
        cached = self._weights.get(key)
        if cached is None:
            population = [
                a
                for a in tenant.affiliates
                if not coupon_holders or a.affiliate_id in tenant.coupons
            ]
            cached = self._weights[key] = (
                population,
                list(accumulate(a.weight for a in population)),
            )
        return self.rng.choices(cached[0], cum_weights=cached[1])[0]

    def _conversion_time(self, latest: int | None = None) -> int:
        return self._uniform_ms(self.world.start_ms, latest or self.world.end_ms)

    def _path(self) -> str:
        rng, mix = self.rng, self.mix
        if rng.random() < mix.cookie_lost_share:
            return rng.choices(COOKIE_LOST, weights=mix.cookie_lost_paths)[0]
        return rng.choices(COOKIE_KEPT, weights=mix.cookie_kept_paths)[0]

    def _landing(self, click: Click, cookie: str, pages: list[Page], browse: bool = True) -> None:
        """The landing page view the tag sends (with the click id of the URL), and maybe a
        page or two more in the same visit (the tag keeps the click id)."""
        ts = click.ts + self._uniform_ms(500, 4000)
        pages.append(Page(ts, click.browser, "page_view", cookie, "/", click))
        if browse and self.rng.random() < 0.5:
            pages.append(
                Page(
                    click.ts + self._uniform_ms(20 * SECOND, 10 * MINUTE),
                    click.browser,
                    "page_view",
                    cookie,
                    f"/produto/{self.rng.randrange(500)}",
                    click,
                )
            )

    def _order(self, tenant: Tenant, ts: int, customer_id: str, email: str) -> Order:
        rng = self.rng
        lines = []
        for n in range(rng.choices((1, 2, 3), weights=(0.6, 0.3, 0.1))[0]):
            quantity = rng.choices((1, 2, 3), weights=(0.8, 0.15, 0.05))[0]
            unit = rng.randrange(1_990, 39_990 if tenant.currency == "BRL" else 9_900)
            lines.append(
                LineItem(
                    sku=f"SKU-{rng.randrange(10_000):04d}",
                    category=tenant.categories[(n + rng.randrange(4)) % len(tenant.categories)],
                    quantity=quantity,
                    amount_minor=unit * quantity,
                )
            )
        subtotal = sum(line.amount_minor for line in lines)
        shipping = 0 if tenant.subscriptions else rng.choice((0, 990, 1490, 2290))
        return Order(
            ts=ts,
            order_id=self._order_id(tenant),
            currency=tenant.currency,
            lines=lines,
            shipping_minor=shipping,
            tax_minor=subtotal * 9 // 100,  # taxes included in the prices
            customer_id=customer_id,
            email_sha256=email,
        )

    # -- converting journeys -------------------------------------------------------------------

    def converting(self, tenant: Tenant) -> Journey:
        """One buyer: the clicks (or not), the order, renewals and refunds."""
        rng, mix = self.rng, self.mix
        subscription = tenant.subscriptions and rng.random() < mix.subscription
        latest = self.world.end_ms - 31 * DAY if subscription else None
        if latest is not None and latest <= self.world.start_ms:
            subscription, latest = False, None
        t_conv = self._conversion_time(latest)
        customer_id, email = self._person()
        draw = rng.random()
        if draw < mix.organic:
            journey, order = self._organic(tenant, t_conv, customer_id, email)
        elif draw < mix.organic + mix.coupon_only and tenant.coupons:
            journey, order = self._coupon_only(tenant, t_conv, customer_id, email)
        elif draw < mix.organic + mix.coupon_only + mix.bot_order:
            journey, order = self._bot_order(tenant, t_conv, customer_id, email)
        else:
            journey, order = self._click_journey(tenant, t_conv, customer_id, email)
        if rng.random() < mix.merchant_coupon:
            order.coupons.append(MERCHANT_COUPON)
        if subscription:
            self._renewals(journey, order)
        self._update(journey, order)
        journey.steps.sort(key=lambda step: step.ts)
        return journey

    def _organic(
        self, tenant: Tenant, t_conv: int, customer_id: str, email: str
    ) -> tuple[Journey, Order]:
        browser = self._browser(tenant, self.rng.choice(agents.PEOPLE), self._consent())
        cookie = self._cookie()
        order = self._order(tenant, t_conv, customer_id, email)
        order.cookie = cookie
        order.scenario = "organic"
        order.scenarios = ["organic"]
        pages = self._checkout_pages(browser, cookie, t_conv, None)
        return Journey(tenant, [*pages, order]), order

    def _checkout_pages(
        self, browser: Browser, cookie: str, t_conv: int, click: Click | None
    ) -> list[Page]:
        return [
            Page(t_conv - self._uniform_ms(2 * MINUTE, 15 * MINUTE), browser, "page_view",
                 cookie, "/carrinho", click),
            Page(t_conv - self._uniform_ms(5 * SECOND, 60 * SECOND), browser, "page_view",
                 cookie, "/checkout", click),
        ]  # fmt: skip

    def _coupon_only(
        self, tenant: Tenant, t_conv: int, customer_id: str, email: str
    ) -> tuple[Journey, Order]:
        """The buyer typed an affiliate's code seen in a post or a video: no click at all.
        Sometimes the code had leaked to a coupon site the affiliate never posted on."""
        journey, order = self._organic(tenant, t_conv, customer_id, email)
        owner = self.affiliate(tenant, coupon_holders=True)
        order.coupons = [self._typed(tenant.coupons[owner.affiliate_id].code)]
        order.scenario = "coupon_only"
        order.scenarios = ["coupon_only"]
        if self.rng.random() < 0.25:
            order.fraud_labels.append("coupon_leakage")
            add(order.scenarios, "coupon_leakage")
        return journey, order

    def _typed(self, code: str) -> str:
        """A coupon code as a buyer types it: often in lower case (codes match regardless)."""
        return code.lower() if self.rng.random() < 0.2 else code

    def _bot_order(
        self, tenant: Tenant, t_conv: int, customer_id: str, email: str
    ) -> tuple[Journey, Order]:
        """A script (a headless browser) clicks an affiliate link and places an order, often
        paid with a stolen card: the click is a bot's, so nobody is credited."""
        bot = self._browser(tenant, self.rng.choice(agents.HEADLESS), "granted", bot=True)
        affiliate = self.affiliate(tenant)
        link = tenant.links[affiliate.affiliate_id, tenant.main.campaign_id]
        click = Click(t_conv - self._uniform_ms(30 * SECOND, 10 * MINUTE), bot, link,
                      bot.tracking_cookie)  # fmt: skip
        cookie = self._cookie()
        pages: list[Page] = []
        self._landing(click, cookie, pages, browse=False)
        order = self._order(tenant, t_conv, customer_id, email)
        order.cookie, order.click = cookie, click
        order.scenario = "bot"
        order.scenarios = ["bot"]
        journey = Journey(tenant, [click, *pages, order])
        if self.rng.random() < 0.5:
            add(order.scenarios, "chargeback")
            self._add_update(journey, order, "chargeback", order.amount_minor)
        return journey, order

    def _click_journey(
        self, tenant: Tenant, t_conv: int, customer_id: str, email: str
    ) -> tuple[Journey, Order]:
        rng, mix = self.rng, self.mix
        path = self._path()
        if path == "js_cookie_capped":
            ua = rng.choice(agents.SAFARI)
        elif path == "cookie_lost_url":
            # Not Safari: its 7-day cap would also drop the tag cookie between clicks, and
            # with the tracking cookie blocked nothing would join them (that is
            # js_cookie_capped's story, where the tracking cookie survives).
            ua = rng.choice(agents.ANDROID + agents.DESKTOP)
        elif path.startswith("cross_device"):
            ua = rng.choice(agents.PHONES)
        else:
            ua = rng.choice(agents.PEOPLE)
        # Device signatures only join events sent with consent granted.
        consent: Consent = "granted" if path == "private_window" else self._consent()
        buyer = self._browser(tenant, ua, consent, blocked=path == "cookie_lost_url")
        draft = _Draft(path, buyer, scenarios=[path])
        # A coupon at checkout: mostly the code of an affiliate the buyer clicked, sometimes
        # one the buyer found on a site that copies codes (leaked).
        coupon: Link | None = None
        if tenant.coupons and rng.random() < mix.coupon_and_click:
            owner = self.affiliate(tenant, coupon_holders=True)
            coupon = tenant.coupons[owner.affiliate_id]
        leaked = coupon is not None and rng.random() < mix.leaked_coupon

        # The buyer may be an affiliate buying through their own link.
        self_referrer = None
        if rng.random() < mix.self_referral:
            self_referrer = self._self_referrer(tenant)
            if self_referrer is not None:
                draft.fraud.append("self_referral")
                add(draft.scenarios, "self_referral")
                if rng.random() < mix.self_referral_other_email:
                    # Another email, but the affiliate's own device: attribution cannot join
                    # them (no shared identifier), the batch fraud rules can.
                    add(draft.scenarios, "self_referral_other_email")
                    self._pending.append(self._affiliate_at_home(tenant, buyer, self_referrer))
                else:
                    email = self_referrer.email_sha256

        clicked_owner = coupon.affiliate if coupon is not None and not leaked else None
        self._plan_clicks(tenant, draft, t_conv, coupon is not None, self_referrer, clicked_owner)
        self._fraud_clicks(tenant, draft, t_conv)
        order = self._order(tenant, t_conv, customer_id, email)
        self._purchase(tenant, draft, order)
        if coupon is not None:
            order.coupons.append(self._typed(coupon.code))
            add(draft.scenarios, "coupon_and_click")
            if all(c.link.affiliate is not coupon.affiliate for c in draft.clicks):
                draft.fraud.append("coupon_leakage")
                add(draft.scenarios, "coupon_leakage")

        self._extra_clicks(tenant, draft, t_conv)
        affiliates = {c.link.affiliate.affiliate_id for c in draft.clicks if c.ts < t_conv}
        if len(affiliates) > 1:
            add(draft.scenarios, "multi_affiliate")
        if len({c.link.campaign.campaign_id for c in draft.clicks}) > 1:
            add(draft.scenarios, "cross_campaign")
        order.scenario = path
        order.scenarios = draft.scenarios
        order.fraud_labels = draft.fraud
        order.cookie_lost = path in COOKIE_LOST
        return Journey(tenant, [*draft.clicks, *draft.pages, order]), order

    def _self_referrer(self, tenant: Tenant) -> Affiliate | None:
        """An affiliate who has not bought through their own link yet: one person with one
        email, so each affiliate does it once (a second time would be the same person)."""
        roles = (tenant.spammer, tenant.stuffer, tenant.poacher)
        candidates = [
            a
            for a in tenant.affiliates
            if a.email_sha256
            and a.status == "approved"
            and a.affiliate_id not in self._self_referred
            and a not in roles
        ]
        if not candidates:
            return None
        chosen = self.rng.choice(candidates)
        self._self_referred.add(chosen.affiliate_id)
        return chosen

    def _affiliate_at_home(self, tenant: Tenant, device: Browser, affiliate: Affiliate) -> Journey:
        """The affiliate shopping as a customer, logged in with their own email, in another
        browser of `device` (same address and agent), some weeks before. Consent unknown: no
        device signature joins it to anything. A journey of its own: the truth must not
        count the affiliate's email among the buyer's (the identity rules never see it)."""
        home = self._twin(device, "unknown")
        ts = self._uniform_ms(self.world.start_ms - 20 * DAY, self.world.start_ms)
        cookie = self._cookie()
        return Journey(
            tenant,
            [
                Page(ts, home, "page_view", cookie, "/"),
                Page(ts + self._uniform_ms(MINUTE, 5 * MINUTE), home, "identify", cookie,
                     "/conta", email_sha256=affiliate.email_sha256),
            ],
        )  # fmt: skip

    def pending(self) -> Iterator[Journey]:
        """The journeys the last converting journey brought along (an affiliate at home)."""
        while self._pending:
            yield self._pending.pop(0)

    def _plan_clicks(
        self,
        tenant: Tenant,
        draft: _Draft,
        t_conv: int,
        with_coupon: bool,
        self_referrer: Affiliate | None,
        coupon_owner: Affiliate | None,
    ) -> None:
        """The journey's affiliate clicks before the purchase: how many, whose, when, in which
        campaign, and the landing page views that join them (see the module docstring)."""
        rng, mix = self.rng, self.mix
        count = rng.choices(range(1, len(mix.clicks) + 1), weights=mix.clicks)[0]
        campaigns = tenant.campaigns
        # Coupons belong to the main campaign: a journey with one stays in it, so that the
        # coupon and the clicks answer to the same conflict rules.
        base = tenant.main if with_coupon or len(campaigns) == 1 else rng.choice(campaigns)
        mixed = not with_coupon and len(campaigns) > 1 and count > 1
        mixed = mixed and rng.random() < mix.cross_campaign

        chosen: list[Affiliate] = []
        for _ in range(count):
            if chosen and rng.random() < mix.same_affiliate:
                chosen.append(rng.choice(chosen))
            else:
                chosen.append(self.affiliate(tenant))
        if coupon_owner is not None:  # the buyer clicked the affiliate whose code they use
            chosen[rng.randrange(count)] = coupon_owner
        if self_referrer is not None:
            chosen[-1] = self_referrer

        # Times, from the purchase backwards: the gap to the last click depends on the path.
        gap = self._last_gap(draft.path, draft.buyer)
        times = [t_conv - gap]
        for _ in range(count - 1):
            # More than an hour apart: a repeat within the hour would be the same click id.
            times.append(times[-1] - 65 * MINUTE - int(rng.expovariate(1 / (2.5 * DAY))))
        times.reverse()
        paid = rng.random() < mix.paid_hijack
        for n, (ts, affiliate) in enumerate(zip(times, chosen, strict=True)):
            campaign = rng.choice(campaigns) if mixed else base
            link = tenant.links[affiliate.affiliate_id, campaign.campaign_id]
            click = Click(ts, draft.buyer, link, draft.buyer.tracking_cookie)
            if affiliate is self_referrer:
                click.label = "self_referral"
            if paid and n == count - 1:
                # The affiliate bid on the brand's ads: the paid click id rides along.
                click.query = f"{rng.choice(PAID_MARKERS)}=Cj0K{rng.getrandbits(40):010x}"
                click.label = click.label or "paid_hijack"
                draft.fraud.append("paid_hijack")
                add(draft.scenarios, "paid_hijack")
            elif rng.random() < 0.3:
                click.query = f"utm_source={affiliate.segment}&utm_medium=affiliate"
            draft.clicks.append(click)
        if rng.random() < mix.old_click:
            # A click from long ago, outside the window (the truth records the exclusion).
            first = draft.clicks[0]
            terms = first.link.campaign.terms_at(t_conv)
            age = terms.window_days * DAY + self._uniform_ms(DAY // 2, 20 * DAY)
            old = Click(t_conv - age, draft.buyer, first.link, draft.buyer.tracking_cookie)
            draft.clicks.insert(0, old)
        if draft.path.startswith("cross_device") and len(draft.clicks) > 1 and rng.random() < 0.3:
            # An earlier click happened on the laptop the order is placed on (the last one is
            # the phone's, whose login or sign-up joins the devices).
            moved = draft.clicks[rng.randrange(len(draft.clicks) - 1)]
            moved.browser = self._laptop(tenant, draft)
            moved.cookie = moved.browser.tracking_cookie

    def _last_gap(self, path: str, browser: Browser) -> int:
        """How long before the purchase the last click was."""
        rng = self.rng
        if path == "js_cookie_capped":  # past Safari's 7-day cap on the tag's cookie
            return self._uniform_ms(7 * DAY + HOUR, 20 * DAY)
        if path == "cookie_lost_url":
            return self._uniform_ms(2 * HOUR, 6 * DAY)
        if path.startswith("cross_device"):
            return self._uniform_ms(HOUR, 5 * DAY)
        if path == "private_window":
            return self._uniform_ms(10 * MINUTE, 3 * DAY)
        if rng.random() < 0.4:  # bought in the same visit
            return self._uniform_ms(3 * MINUTE, 50 * MINUTE)
        gap = HOUR + int(rng.expovariate(1 / (1.5 * DAY)))
        # A cookie-kept journey keeps its cookie: Safari's cap would make it cookie-lost.
        return min(gap, int(6.5 * DAY)) if browser.safari else gap

    def _laptop(self, tenant: Tenant, draft: _Draft) -> Browser:
        if draft.laptop is None:
            draft.laptop = self._browser(tenant, self.rng.choice(agents.DESKTOP), self._consent())
        return draft.laptop

    @staticmethod
    def _clear_of_window(click: Click, t_conv: int) -> bool:
        """Whether the click's age is more than a minute away from its window's edge: the
        truth and the models compare times to the millisecond, but a click sitting on the
        edge would only test how each rounds."""
        window = click.link.campaign.terms_at(t_conv).window_days * DAY
        return abs(t_conv - click.ts - window) > MINUTE

    def _fraud_clicks(self, tenant: Tenant, draft: _Draft, t_conv: int) -> None:
        """Clicks of fraudulent affiliates in the buyer's browser. The rules credit them
        (fraud review is a later stage): they are labels, not exclusions."""
        rng, mix = self.rng, self.mix
        buyer = draft.buyer
        if tenant.spammer is not None and rng.random() < mix.click_spam:
            # A pop-under weeks before the purchase: the landing page loads, nobody looks.
            link = tenant.links[tenant.spammer.affiliate_id, tenant.main.campaign_id]
            ts = t_conv - self._uniform_ms(10 * DAY, 40 * DAY)
            draft.clicks.insert(
                0, Click(ts, buyer, link, buyer.tracking_cookie, label="click_spam")
            )
            draft.fraud.append("click_spam")
            add(draft.scenarios, "click_spam")
        # Stuffed cookies have no landing visit: only the tracking cookie joins them.
        if (
            tenant.stuffer is not None
            and buyer.tracking_cookie
            and rng.random() < mix.cookie_stuffing
        ):
            link = tenant.links[tenant.stuffer.affiliate_id, tenant.main.campaign_id]
            first = min(c.ts for c in draft.clicks)
            ts = self._uniform_ms(first - 5 * DAY, draft.clicks[-1].ts)
            stuffed = Click(ts, buyer, link, buyer.tracking_cookie, label="cookie_stuffing")
            draft.clicks.append(stuffed)
            draft.fraud.append("cookie_stuffing")
            add(draft.scenarios, "cookie_stuffing")
        if (
            tenant.poacher is not None
            and draft.path in ("direct", "tag_blocked")
            and rng.random() < mix.fast_ctit
        ):
            # A browser extension redirects through its own link at checkout.
            link = tenant.links[tenant.poacher.affiliate_id, tenant.main.campaign_id]
            ts = t_conv - self._uniform_ms(1 * SECOND, 4900)
            draft.clicks.append(Click(ts, buyer, link, buyer.tracking_cookie, label="fast_ctit"))
            draft.fraud.append("fast_ctit")
            add(draft.scenarios, "fast_ctit")
        for click in draft.clicks:
            if not self._clear_of_window(click, t_conv):
                click.ts -= 2 * MINUTE
        draft.clicks.sort(key=lambda c: c.ts)

    def _purchase(self, tenant: Tenant, draft: _Draft, order: Order) -> None:
        """The landing visits of the clicks, the identify or lead that joins devices, and
        what the order carries, per path."""
        rng = self.rng
        path, buyer = draft.path, draft.buyer
        t_conv = order.ts
        tag = path != "tag_blocked"
        # The tag's cookie on each browser, renewed where Safari's cap or a clearing dropped it.
        cookies: dict[int, str] = {}
        last_visit: dict[int, int] = {}

        def tag_cookie(browser: Browser, ts: int) -> str:
            key = id(browser)
            if key not in cookies or (browser.safari and ts - last_visit[key] > 7 * DAY):
                cookies[key] = self._cookie()
            last_visit[key] = ts
            return cookies[key]

        before = [c for c in draft.clicks if c.ts < t_conv]
        last = before[-1]
        # The phone's last click: what its login or sign-up page still carries.
        last_here = next(c for c in reversed(before) if c.browser is buyer)
        for click in draft.clicks:
            # Stuffed cookies and ad-blocked browsers send no page views.
            if tag and click.label != "cookie_stuffing":
                self._landing(click, tag_cookie(click.browser, click.ts), draft.pages)

        if path == "cross_device_login":  # logged in on the phone: cookie = customer
            draft.pages.append(
                Page(last_here.ts + self._uniform_ms(MINUTE, 10 * MINUTE), buyer, "identify",
                     tag_cookie(buyer, last_here.ts), "/conta", last_here,
                     customer_id=order.customer_id)
            )  # fmt: skip
        elif path == "cross_device_email":  # a newsletter sign-up on the phone
            draft.pages.append(
                Page(last_here.ts + self._uniform_ms(MINUTE, 10 * MINUTE), buyer, "lead",
                     tag_cookie(buyer, last_here.ts), "/newsletter", last_here,
                     email_sha256=order.email_sha256)
            )  # fmt: skip
            order.customer_id = ""  # a guest checkout: the email is the only key

        # Where the order is placed, with which cookie, and the click id it carries.
        where = buyer
        stored: Click | None = last  # the click id the tag kept for this visitor
        if path.startswith("cross_device"):
            where = self._laptop(tenant, draft)
            stored = next((c for c in reversed(before) if c.browser is where), None)
        if path == "private_window":
            copied = rng.random() < 0.4  # the landing URL pasted into the private window
            where = self._twin(buyer, "unknown" if copied else "granted")
            stored = last if copied else None
        if path in ("cookie_lost_url", "js_cookie_capped"):
            stored = None  # the cookie went, and the click id the tag kept went with it
            cookies[id(buyer)] = self._cookie()
            last_visit[id(buyer)] = t_conv
        if tag:
            cookie = tag_cookie(where, t_conv)
            order.cookie = cookie
            draft.pages.extend(self._checkout_pages(where, cookie, t_conv, stored))
            if path == "cross_device_login" or rng.random() < 0.3:
                draft.pages.append(
                    Page(t_conv - self._uniform_ms(30 * SECOND, 5 * MINUTE), where, "identify",
                         cookie, "/login", stored, customer_id=order.customer_id,
                         email_sha256="" if path == "cross_device_login" else order.email_sha256)
                )  # fmt: skip
        # The S2S call: the click id the merchant read from the landing URL and kept with the
        # cart. Cookie-lost journeys depend on it; cookie-kept ones send it most of the time.
        if path in ("cookie_lost_url", "js_cookie_capped", "tag_blocked"):
            order.click = last
        elif path == "private_window":
            order.click = stored
        elif path == "direct":
            order.click = last if rng.random() < 0.7 else None

    def _extra_clicks(self, tenant: Tenant, draft: _Draft, t_conv: int) -> None:
        """Repeat clicks (same link within the hour: the same click id, one touch) and
        clicks after the purchase (never candidates)."""
        rng, mix = self.rng, self.mix
        tag = draft.path != "tag_blocked"
        if rng.random() < mix.repeat_click:
            ordinary = [c for c in draft.clicks if not c.label and c.ts < t_conv]
            first = rng.choice(ordinary) if ordinary else None
            again = None
            if first is not None:
                again = Click(
                    first.ts + self._uniform_ms(2 * MINUTE, 55 * MINUTE),
                    first.browser,
                    first.link,
                    first.cookie,
                    query=first.query,
                    repeat_of=first,
                )
            # Not in the last minutes before the order: a click seconds before checkout is
            # what an injected click looks like (fast_ctit), and is labelled as one.
            in_checkout = again is not None and t_conv - 2 * MINUTE < again.ts <= t_conv
            if (
                first is not None
                and again is not None
                and not in_checkout
                and self._clear_of_window(again, t_conv)
            ):
                draft.clicks.append(again)
                landing = next((p for p in draft.pages if p.click is first), None)
                if tag and landing is not None:
                    draft.pages.append(
                        Page(again.ts + 1500, again.browser, "page_view", landing.cookie, "/",
                             first)
                    )  # fmt: skip
                add(draft.scenarios, "repeat_click")
        if rng.random() < mix.post_purchase_click:
            affiliate = self.affiliate(tenant)
            link = tenant.links[affiliate.affiliate_id, tenant.main.campaign_id]
            ts = t_conv + self._uniform_ms(HOUR, 10 * DAY)
            draft.clicks.append(Click(ts, draft.buyer, link, draft.buyer.tracking_cookie))
            add(draft.scenarios, "post_purchase_click")

    def _renewals(self, journey: Journey, first: Order) -> None:
        """Monthly renewals up to the end of the period: same subscription, no click."""
        rng = self.rng
        first.subscription_id = f"sub-{first.order_id}"
        add(first.scenarios, "subscription")
        months = min(rng.randint(1, 6), (self.world.end_ms - first.ts) // (30 * DAY))
        for n in range(1, months + 1):
            renewal = Order(
                ts=first.ts + n * 30 * DAY + self._uniform_ms(0, 2 * HOUR),
                order_id=f"{first.order_id}-R{n}",
                currency=first.currency,
                lines=first.lines,
                shipping_minor=first.shipping_minor,
                tax_minor=first.tax_minor,
                customer_id=first.customer_id or f"guest-{first.order_id}",
                email_sha256=first.email_sha256,
                is_new_customer=False,
                subscription_id=first.subscription_id,
                renewal_number=n,
                first=first,
                scenario="subscription",
                scenarios=["subscription", "renewal", first.scenario],
                fraud_labels=list(first.fraud_labels),
                cookie_lost=first.cookie_lost,
            )
            journey.steps.append(renewal)

    def _update(self, journey: Journey, order: Order) -> None:
        """A refund, a cancellation or a chargeback, now and then (never re-attributed)."""
        rng, mix = self.rng, self.mix
        if any(isinstance(s, Update) for s in journey.steps):
            return
        draw = rng.random()
        amount = order.amount_minor
        kinds: tuple[tuple[str, UpdateKind, float], ...] = (
            ("refund_full", "refund", mix.refund_full),
            ("refund_partial", "refund", mix.refund_partial),
            ("cancellation", "cancellation", mix.cancellation),
            ("chargeback", "chargeback", mix.chargeback),
        )
        for scenario, kind, chance in kinds:
            if draw < chance:
                if scenario == "refund_partial":
                    amount = amount * rng.randint(20, 60) // 100
                self._add_update(journey, order, kind, amount)
                add(order.scenarios, scenario)
                return
            draw -= chance

    def _add_update(
        self,
        journey: Journey,
        order: Order,
        kind: UpdateKind,
        amount: int,
    ) -> None:
        ts = order.ts + self._uniform_ms(HOUR, 25 * DAY)
        journey.steps.append(Update(ts, order, kind, amount, f"upd-{order.order_id}"))

    # -- traffic that does not buy -------------------------------------------------------------

    def visitor(self, tenant: Tenant) -> Journey:
        """Someone who clicks, looks around and leaves (most visitors)."""
        rng, mix = self.rng, self.mix
        browsers = [self._browser(tenant, rng.choice(agents.PEOPLE), self._consent())]
        if rng.random() < 0.2:
            browsers.append(self._browser(tenant, rng.choice(agents.PEOPLE), self._consent()))
        tag = rng.random() >= 0.1
        clicks: list[Click] = []
        pages: list[Page] = []
        tag_cookies = {id(browser): self._cookie() for browser in browsers}
        ts = self._uniform_ms(self.world.start_ms - 20 * DAY, self.world.end_ms)
        for n in range(rng.choices((1, 2, 3), weights=(0.65, 0.25, 0.10))[0]):
            browser = rng.choice(browsers)
            if n == 0 and tenant.spammer is not None and rng.random() < mix.spam_visitors:
                affiliate, label = tenant.spammer, "click_spam"
            else:
                affiliate, label = self.affiliate(tenant), ""
            campaign = rng.choice(tenant.campaigns)
            link = tenant.links[affiliate.affiliate_id, campaign.campaign_id]
            click = Click(ts, browser, link, browser.tracking_cookie, label=label)
            if not label and rng.random() < 0.01:
                click.query, click.label = f"gclid=Cj0K{rng.getrandbits(40):010x}", "paid_hijack"
            clicks.append(click)
            if tag:
                self._landing(click, tag_cookies[id(browser)], pages)
            ts += HOUR + int(rng.expovariate(1 / (3 * DAY)))
        if tag and rng.random() < 0.1:
            _, email = self._person()
            browser = clicks[-1].browser
            pages.append(
                Page(clicks[-1].ts + 5 * MINUTE, browser, "lead", tag_cookies[id(browser)],
                     "/newsletter", clicks[-1], email_sha256=email)
            )  # fmt: skip
        return Journey(tenant, sorted([*clicks, *pages], key=lambda s: s.ts))

    def bots(self, tenant: Tenant) -> Journey:
        """A crawler, a link checker (HEAD) or a chat app drawing a link's preview."""
        rng = self.rng
        kind = rng.choices(("crawler", "checker", "preview"), weights=(0.5, 0.2, 0.3))[0]
        ua = rng.choice(agents.PREVIEWS if kind == "preview" else agents.CRAWLERS)
        bot = self._browser(tenant, ua, "unknown", bot=True, blocked=True)
        ts = self._uniform_ms(self.world.start_ms - 20 * DAY, self.world.end_ms)
        clicks = []
        for _ in range(rng.randint(1, 6)):
            affiliate = self.affiliate(tenant)
            link = tenant.links[affiliate.affiliate_id, rng.choice(tenant.campaigns).campaign_id]
            clicks.append(Click(ts, bot, link, "", head=kind == "checker"))
            ts += self._uniform_ms(5 * SECOND, 10 * MINUTE)
        return Journey(tenant, list(clicks))

    def stuffing(self, tenant: Tenant) -> Journey:
        """A server dropping the stuffer's cookie into browsers that never saw the link: many
        cookies from one address, no landing visit. Paced under the IP velocity limits."""
        rng = self.rng
        assert tenant.stuffer is not None
        server = self._browser(tenant, rng.choice(agents.DESKTOP), "unknown", bot=True)
        link = tenant.links[tenant.stuffer.affiliate_id, tenant.main.campaign_id]
        ts = self._uniform_ms(self.world.start_ms - 20 * DAY, self.world.end_ms)
        clicks = []
        for _ in range(rng.randint(20, 60)):
            clicks.append(Click(ts, server, link, self._cookie(), label="cookie_stuffing"))
            ts += self._uniform_ms(40 * SECOND, 150 * SECOND)
        return Journey(tenant, list(clicks))

    def _burst_day(self) -> int:
        """The start (UTC midnight) of a day at least 30 days into the period: the affiliate
        has a history to leave by then."""
        world = self.world
        first = world.start_ms + 30 * DAY
        ms = self._uniform_ms(first, max(first + DAY, world.end_ms - DAY))
        return ms - ms % DAY

    def click_burst(self, tenant: Tenant, size: int) -> Iterator[Journey]:
        """A day of bought traffic on the burster's link: `size` visitors from addresses of
        their own (no velocity flag), who land and leave."""
        assert tenant.burster is not None
        rng = self.rng
        day = self._burst_day()
        link = tenant.links[tenant.burster.affiliate_id, tenant.main.campaign_id]
        for _ in range(size):
            browser = self._browser(tenant, rng.choice(agents.PEOPLE), self._consent())
            ts = day + self._uniform_ms(8 * HOUR, 22 * HOUR)
            click = Click(ts, browser, link, browser.tracking_cookie, label="click_burst")
            pages: list[Page] = []
            self._landing(click, self._cookie(), pages, browse=False)
            yield Journey(tenant, [click, *pages])

    def conversion_burst(self, tenant: Tenant, size: int) -> Iterator[Journey]:
        """A day of fake orders through the inflater's own link (stolen cards, bought
        accounts): `size` buyers who click, land and order within the hour, half of them
        charged back. Plain direct journeys: the rules credit them, the truth too."""
        assert tenant.inflater is not None
        rng = self.rng
        day = self._burst_day()
        link = tenant.links[tenant.inflater.affiliate_id, tenant.main.campaign_id]
        for _ in range(size):
            browser = self._browser(tenant, rng.choice(agents.PEOPLE), self._consent())
            click_ts = day + self._uniform_ms(8 * HOUR, 22 * HOUR)
            click = Click(
                click_ts, browser, link, browser.tracking_cookie, label="conversion_burst"
            )
            cookie = self._cookie()
            pages: list[Page] = []
            self._landing(click, cookie, pages, browse=False)
            customer_id, email = self._person()
            order = self._order(tenant, click_ts + self._uniform_ms(16 * MINUTE, 50 * MINUTE),
                                customer_id, email)  # fmt: skip
            order.cookie, order.click = cookie, click
            pages += self._checkout_pages(browser, cookie, order.ts, click)
            order.scenario = "direct"
            order.scenarios = ["direct", "conversion_burst"]
            order.fraud_labels = ["conversion_burst"]
            journey = Journey(tenant, [click, *pages, order])
            if rng.random() < 0.5:
                add(order.scenarios, "chargeback")
                self._add_update(journey, order, "chargeback", order.amount_minor)
            journey.steps.sort(key=lambda step: step.ts)
            yield journey


def plan(world: World, planner: Planner, conversions: int) -> Iterator[Journey]:
    """Every journey of the world, tenant by tenant: its share of the `conversions`
    converting journeys (and what they bring along), the visitors who do not buy, bots,
    cookie-stuffing servers, and the days of bought clicks and fake orders."""
    mix = planner.mix
    total = sum(tenant.weight for tenant in world.tenants)
    counts = [int(conversions * tenant.weight / total) for tenant in world.tenants]
    counts[0] += conversions - sum(counts)
    for tenant, count in zip(world.tenants, counts, strict=True):
        fake = 0 if tenant.inflater is None else round(count * mix.conversion_burst_per_conversion)
        for _ in range(count - fake * mix.burst_days):
            yield planner.converting(tenant)
            yield from planner.pending()
        for _ in range(round(count * mix.visitors_per_conversion)):
            yield planner.visitor(tenant)
        for _ in range(round(count * mix.bot_journeys_per_conversion)):
            yield planner.bots(tenant)
        if tenant.stuffer is not None:
            for _ in range(round(count * mix.stuffing_servers_per_conversion)):
                yield planner.stuffing(tenant)
        for _ in range(mix.burst_days if tenant.burster is not None else 0):
            size = max(30, round(count * mix.click_burst_per_conversion))
            yield from planner.click_burst(tenant, size)
        for _ in range(mix.burst_days if fake else 0):
            yield from planner.conversion_burst(tenant, fake)
