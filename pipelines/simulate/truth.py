"""The ground truth: who should be paid for each order, computed in Python from the journey
the person really made, by the rules of docs/attribution.md (sections 2 and 3), without the
identity graph (the planner made every true click joinable, see journeys.py).

Where the rules leave a choice, this reads them as follows (docs/simulator.md repeats it):
- a touch's exclusions use the conflict rules and window of its own campaign's terms in force
  at the conversion; the governing campaign is the campaign of the last eligible touch, in
  time order, ties by click id; a coupon touch is at the conversion's time;
- the coupon rule applies first, then affiliate priorities (the order the rules list them);
- shares below 1e-12 are no credit (a model's zero is not a credited affiliate).
The planner avoids the cases where another reading would give another answer (a coupon and
clicks of another campaign in one journey; priorities with a coupon rule other than "touch").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from api.visitors import classify
from ingest.enrich import paid_click_markers
from ingest.velocity import DEFAULT_RULES, HOUR, MINUTE
from pipelines.simulate.journeys import PATHS, Click, Journey, Order
from pipelines.simulate.world import DAY, Affiliate, Campaign, Tenant, World, to_datetime

EPSILON = 1e-12

# (window ms, most clicks per address in the window): ingest's default IP velocity rules.
_VELOCITY = tuple(
    (window, limit)
    for window, limit in (
        (MINUTE, DEFAULT_RULES.ip_per_minute),
        (HOUR, DEFAULT_RULES.ip_per_hour),
    )
    if limit is not None
)


@dataclass(frozen=True)
class Touch:
    ts: int
    click_id: str  # "" for a coupon touch
    affiliate: Affiliate
    campaign: Campaign
    coupon: bool = False


@dataclass
class Credit:
    """The expected payable credit of one order."""

    model: str  # the governing terms' payable model ("" when nothing is eligible)
    shares: dict[str, float]  # affiliate id -> share (empty: unattributed)
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> touches excluded


def is_bot(click: Click) -> bool:
    """What the edge and ingest decide: a bot or preview user agent, or a HEAD request."""
    return click.head or classify(click.browser.ua).is_bot


def velocity_flagged(clicks: Iterable[Click]) -> set[int]:
    """The clicks (by `id`) that trip an IP velocity rule: more than `limit` clicks from one
    address in (t - window, t]. Bots, HEADs and previews are not counted, as in ingest.
    Every simulated address belongs to one journey, so a journey's clicks are all its own."""
    by_address: dict[str, list[Click]] = defaultdict(list)
    for click in clicks:
        if not is_bot(click):
            by_address[click.browser.ip].append(click)
    flagged: set[int] = set()
    for group in by_address.values():
        if len(group) <= min(limit for _, limit in _VELOCITY):
            continue
        group.sort(key=lambda c: c.ts)
        for i, click in enumerate(group):
            for window, limit in _VELOCITY:
                if i >= limit and group[i - limit].ts > click.ts - window:
                    flagged.add(id(click))
    return flagged


def _touches(order: Order, clicks: Iterable[Click]) -> list[Touch]:
    """The candidate clicks: one touch per click id, at its latest time not after the
    conversion; clicks after the conversion are not candidates."""
    latest: dict[str, Click] = {}
    for click in clicks:
        if click.ts > order.ts:
            continue
        seen = latest.get(click.click_id)
        if seen is None or click.ts > seen.ts:
            latest[click.click_id] = click
    return [
        Touch(click.ts, click.click_id, click.link.affiliate, click.link.campaign)
        for click in latest.values()
    ]


def expected_credit(
    tenant: Tenant,
    order: Order,
    clicks: Iterable[Click],
    buyer_email_hashes: Container[str],
    flagged: Container[int] = frozenset(),
) -> Credit:
    """The payable credit of a first payment (or one-off order) whose buyer made `clicks`
    (all of them: the truth knows the person) and is known by `buyer_email_hashes`."""
    clicks = list(clicks)
    by_id = {c.click_id: c for c in clicks}
    excluded: dict[str, int] = defaultdict(int)
    eligible: list[Touch] = []
    candidates = _touches(order, clicks)
    for code in dict.fromkeys(order.coupons):
        owner = tenant.coupon_owner(code)
        if owner is not None:
            candidates.append(Touch(order.ts, "", owner.affiliate, owner.campaign, coupon=True))
    for touch in candidates:
        reason = _exclusion(touch, order, by_id.get(touch.click_id), buyer_email_hashes, flagged)
        if reason:
            excluded[reason] += 1
        else:
            eligible.append(touch)
    if not eligible:
        return Credit("", {}, dict(excluded))
    eligible.sort(key=lambda t: (t.ts, t.coupon, t.click_id))
    terms = eligible[-1].campaign.terms_at(order.ts)  # the governing campaign's
    rules = terms.conflict
    coupons = [t for t in eligible if t.coupon]
    clicked = [t for t in eligible if not t.coupon]
    if rules.coupon == "wins" and coupons:
        journey = coupons
    elif rules.coupon == "click" and clicked:
        journey = clicked
    else:
        journey = eligible
    priorities = rules.affiliate_priorities
    if priorities:
        top = max(priorities.get(t.affiliate.affiliate_id, 0) for t in journey)
        journey = [t for t in journey if priorities.get(t.affiliate.affiliate_id, 0) == top]
    weights = model_weights(terms.model, [order.ts - t.ts for t in journey], terms.half_life_days)
    shares: dict[str, float] = defaultdict(float)
    for touch, weight in zip(journey, weights, strict=True):
        shares[touch.affiliate.affiliate_id] += weight
    return Credit(terms.model, {a: s for a, s in shares.items() if s > EPSILON}, dict(excluded))


def _exclusion(
    touch: Touch,
    order: Order,
    click: Click | None,
    buyer_email_hashes: Container[str],
    flagged: Container[int],
) -> str:
    """The first reason (docs/attribution.md, section 2) that excludes the touch, or ""."""
    terms = touch.campaign.terms_at(order.ts)  # the touch's own campaign's terms
    rules = terms.conflict
    if click is not None:
        if is_bot(click):
            return "bot"
        if order.ts - touch.ts > terms.window_days * DAY:
            return "outside_window"
        if rules.exclude_paid_traffic and paid_click_markers(click.landing_url):
            return "paid_hijack"
        if rules.exclude_velocity and id(click) in flagged:
            return "velocity"
    email_hash = touch.affiliate.email_hash
    if rules.self_referral == "exclude" and email_hash and email_hash in buyer_email_hashes:
        return "self_referral"
    if touch.affiliate.status in ("suspended", "rejected"):
        return "affiliate_inactive"
    return ""


def model_weights(model: str, ages_ms: list[int], half_life_days: float = 7) -> list[float]:
    """Each touch's share under `model`, the touches in time order (docs/attribution.md,
    section 3). `ages_ms`: conversion time minus touch time."""
    n = len(ages_ms)
    if model == "last_click":
        return [0.0] * (n - 1) + [1.0]
    if model == "first_click":
        return [1.0] + [0.0] * (n - 1)
    if model == "linear":
        return [1.0 / n] * n
    if model == "time_decay":
        raw = [2.0 ** (-(age / DAY) / half_life_days) for age in ages_ms]
        total = sum(raw)
        return [w / total for w in raw]
    if model == "position_based":
        if n == 1:
            return [1.0]
        if n == 2:
            return [0.5, 0.5]
        return [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]
    raise ValueError(f"no ground truth for the {model!r} model")


def journey_truth(journey: Journey, email_hash: Mapping[str, str]) -> list[tuple[Order, Credit]]:
    """Every order of the journey with its expected credit; a renewal inherits its first
    payment's. `email_hash`: each email SHA-256 of the journey keyed for its tenant."""
    clicks = journey.clicks()
    flagged = velocity_flagged(clicks)
    emails = {email_hash[sha] for sha in journey.email_sha256s()}
    out: list[tuple[Order, Credit]] = []
    firsts: dict[int, Credit] = {}
    for order in journey.orders():
        if order.first is not None:
            first = firsts[id(order.first)]
            out.append((order, Credit(first.model, dict(first.shares))))
            continue
        credit = expected_credit(journey.tenant, order, clicks, emails, flagged)
        firsts[id(order)] = credit
        out.append((order, credit))
    return out


# Exclusions worth a scenario of their own in the score (the others have one already).
_REASON_SCENARIOS = ("outside_window", "velocity", "affiliate_inactive")

ORDERS_SCHEMA: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "order_id": pl.String(),
    "scenario": pl.String(),
    "scenarios": pl.List(pl.String()),
    "fraud_labels": pl.List(pl.String()),
    "cookie_lost": pl.Boolean(),
    "payable_model": pl.String(),
    "expected": pl.List(pl.Struct({"affiliate_id": pl.String(), "share": pl.Float64()})),
    "converted_at": pl.Datetime("ms", "UTC"),
    "renewal_number": pl.Int64(),
}
CLICKS_SCHEMA: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "click_id": pl.String(),
    "affiliate_id": pl.String(),
    "label": pl.String(),
    "is_bot": pl.Boolean(),
}
FRAUD_SCHEMA: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "label": pl.String(),
    "subject": pl.String(),  # order | affiliate
    "order_id": pl.String(),  # "" for an affiliate's role
    "affiliate_id": pl.String(),
}


def fraud_affiliates(journey: Journey, order: Order, label: str) -> set[str]:
    """The affiliates committing the fraud `label` of an order: those whose clicks carry the
    label, or for coupon_leakage the owners of the order's coupons the buyer never clicked."""
    first = order.first or order
    clicks = journey.clicks()
    if label == "coupon_leakage":
        clicked = {c.link.affiliate.affiliate_id for c in clicks if c.ts <= first.ts}
        owners = (journey.tenant.coupon_owner(code) for code in first.coupons)
        return {
            owner.affiliate.affiliate_id
            for owner in owners
            if owner is not None and owner.affiliate.affiliate_id not in clicked
        }
    return {c.link.affiliate.affiliate_id for c in clicks if c.label == label}


class TruthRecorder:
    """Collects the truth of each journey as it is driven; writes `orders.parquet` (one row
    per order: its scenarios, labels and expected payable credit) and `clicks.parquet` (one
    row per click id: its affiliate, fraud label and whether it is a bot's) and
    `fraud.parquet` (one row per fraud label of an order and affiliate committing it, and
    per affiliate playing a fraud role)."""

    def __init__(self) -> None:
        self.orders: dict[str, list[Any]] = {name: [] for name in ORDERS_SCHEMA}
        self.clicks: dict[str, list[Any]] = {name: [] for name in CLICKS_SCHEMA}
        self.fraud: dict[str, list[Any]] = {name: [] for name in FRAUD_SCHEMA}

    def _fraud_row(
        self, tenant_id: str, label: str, subject: str, order_id: str, affiliate_id: str
    ) -> None:
        for name, value in zip(
            FRAUD_SCHEMA, (tenant_id, label, subject, order_id, affiliate_id), strict=True
        ):
            self.fraud[name].append(value)

    def record_roles(self, world: World) -> None:
        """The affiliates of `world` playing a fraud role, one row per role."""
        for tenant in world.tenants:
            for label, affiliate in tenant.fraud_roles():
                self._fraud_row(tenant.tenant_id, label, "affiliate", "", affiliate.affiliate_id)

    def record(self, journey: Journey, email_hash: Mapping[str, str]) -> None:
        tenant_id = journey.tenant.tenant_id
        orders = self.orders
        for order, credit in journey_truth(journey, email_hash):
            scenarios = list(order.scenarios)
            scenarios += [r for r in _REASON_SCENARIOS if r in credit.excluded]
            orders["tenant_id"].append(tenant_id)
            orders["order_id"].append(order.order_id)
            orders["scenario"].append(order.scenario)
            orders["scenarios"].append(scenarios)
            orders["fraud_labels"].append(order.fraud_labels)
            orders["cookie_lost"].append(order.cookie_lost)
            orders["payable_model"].append(credit.model)
            orders["expected"].append(
                [{"affiliate_id": a, "share": s} for a, s in sorted(credit.shares.items())]
            )
            orders["converted_at"].append(to_datetime(order.ts))
            orders["renewal_number"].append(order.renewal_number)
            for label in dict.fromkeys(order.fraud_labels):
                for affiliate_id in sorted(fraud_affiliates(journey, order, label)):
                    self._fraud_row(tenant_id, label, "order", order.order_id, affiliate_id)
        clicks = self.clicks
        for click in journey.clicks():
            if click.repeat_of is None:  # a repeat is the same click id
                clicks["tenant_id"].append(tenant_id)
                clicks["click_id"].append(click.click_id)
                clicks["affiliate_id"].append(click.link.affiliate.affiliate_id)
                clicks["label"].append(click.label)
                clicks["is_bot"].append(is_bot(click))

    def orders_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.orders, schema=ORDERS_SCHEMA)

    def clicks_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.clicks, schema=CLICKS_SCHEMA)

    def fraud_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.fraud, schema=FRAUD_SCHEMA)

    def write(self, out: Path) -> tuple[Path, Path]:
        """Writes the three files; returns the orders' and the clicks'."""
        out.mkdir(parents=True, exist_ok=True)
        orders, clicks = out / "orders.parquet", out / "clicks.parquet"
        self.orders_frame().write_parquet(orders)
        self.clicks_frame().write_parquet(clicks)
        self.fraud_frame().write_parquet(out / "fraud.parquet")
        return orders, clicks


def cookie_lost_share(orders: pl.DataFrame) -> float:
    """The share of converting click journeys (first payments whose scenario is an identity
    path) that reached the order without their cookie."""
    journeys = orders.filter(
        (pl.col("renewal_number") == 0) & pl.col("scenario").is_in(list(PATHS))
    )
    return float(journeys.select(pl.col("cookie_lost").mean()).item() or 0.0)
