"""The simulated world: tenants (merchants), campaigns with versioned terms, affiliates,
their links and coupons; and the configuration rows that describe it to the warehouse.

Everything here is derived from the seed and the period, so the same seed gives the same ids
and the same rows (the configuration tables keep the highest version of each id: writing the
world twice changes nothing).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from rastro.ids import stable_uuid7
from rastro.settings import Settings
from rastro.warehouse.client import insert_rows

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Model = Literal["last_click", "first_click", "linear", "time_decay", "position_based"]
CouponRule = Literal["wins", "click", "touch"]
SEGMENTS = ("content", "coupon_sites", "influencers", "cashback")


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True)
class ConflictRules:
    """`campaigns.conflict_rules` (docs/attribution.md, section 2); defaults are the doc's."""

    coupon: CouponRule = "wins"
    exclude_paid_traffic: bool = True
    exclude_velocity: bool = True
    self_referral: Literal["exclude", "allow"] = "exclude"
    affiliate_priorities: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "coupon": self.coupon,
                "exclude_paid_traffic": self.exclude_paid_traffic,
                "exclude_velocity": self.exclude_velocity,
                "self_referral": self.self_referral,
                "affiliate_priorities": dict(self.affiliate_priorities),
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class Terms:
    """One version of a campaign's terms, in force for valid_from <= t < valid_to."""

    version: int
    valid_from: int  # epoch ms
    valid_to: int | None
    model: Model
    window_days: int
    half_life_days: int = 7
    conflict: ConflictRules = ConflictRules()
    commission_rules: tuple[Mapping[str, Any], ...] = ()

    def in_force(self, ts: int) -> bool:
        return self.valid_from <= ts and (self.valid_to is None or ts < self.valid_to)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    name: str
    terms: tuple[Terms, ...]
    destination: str  # https://host/ the links send to

    def terms_at(self, ts: int) -> Terms:
        """The terms in force at `ts`: the highest version whose validity covers it."""
        found = [terms for terms in self.terms if terms.in_force(ts)]
        if not found:
            raise ValueError(f"campaign {self.name} has no terms in force at {to_datetime(ts)}")
        return max(found, key=lambda terms: terms.version)


@dataclass(frozen=True)
class Affiliate:
    affiliate_id: str
    name: str
    segment: str
    status: str  # approved | suspended
    email_sha256: str  # of the affiliate's email; "" when unknown
    email_hash: str  # the same, keyed per tenant as the edge keys buyers' emails
    weight: float  # relative popularity: share of the clicks it gets
    payout_fingerprint: str = ""  # keyed hash of its payout account; "" when none is set


@dataclass(frozen=True)
class Link:
    link_id: str
    kind: Literal["link", "coupon"]
    code: str
    affiliate: Affiliate
    campaign: Campaign

    @property
    def destination_url(self) -> str:
        return self.campaign.destination if self.kind == "link" else ""


@dataclass
class Tenant:
    tenant_id: str
    slug: str
    name: str
    currency: str
    domain: str
    merchant_id: str
    campaigns: list[Campaign]
    affiliates: list[Affiliate]
    links: dict[tuple[str, str], Link]  # (affiliate id, campaign id) -> its tracked link
    coupons: dict[str, Link]  # affiliate id -> its coupon (in the main campaign)
    weight: float = 1.0  # share of the world's conversions
    categories: tuple[str, ...] = ("geral",)
    subscriptions: bool = False  # a SaaS: first payments renew monthly
    # Affiliates playing a fraud role (None: nobody does in this tenant).
    spammer: Affiliate | None = None  # click spamming
    stuffer: Affiliate | None = None  # cookie stuffing
    poacher: Affiliate | None = None  # last-second click injection (fast CTIT)
    burster: Affiliate | None = None  # bought traffic: days of clicks far above its history
    inflater: Affiliate | None = None  # fake orders: days of conversions far above its history
    payout_ring: tuple[Affiliate, ...] = ()  # accounts of one person sharing a payout account

    def fraud_roles(self) -> list[tuple[str, Affiliate]]:
        """(label, affiliate) of every affiliate playing a fraud role."""
        roles = [
            ("click_spam", self.spammer),
            ("cookie_stuffing", self.stuffer),
            ("fast_ctit", self.poacher),
            ("click_burst", self.burster),
            ("conversion_burst", self.inflater),
        ]
        found = [(label, affiliate) for label, affiliate in roles if affiliate is not None]
        return found + [("shared_payout_details", affiliate) for affiliate in self.payout_ring]

    @property
    def main(self) -> Campaign:
        """The campaign coupons belong to and most journeys run in."""
        return self.campaigns[0]

    def affiliate(self, affiliate_id: str) -> Affiliate:
        for affiliate in self.affiliates:
            if affiliate.affiliate_id == affiliate_id:
                return affiliate
        raise KeyError(affiliate_id)

    def coupon_owner(self, code: str) -> Link | None:
        """The affiliate coupon behind a code typed at checkout (compared case-insensitively,
        as the rules compare them)."""
        return self._by_code.get(code.upper())

    def __post_init__(self) -> None:
        self._by_code = {link.code.upper(): link for link in self.coupons.values()}


@dataclass
class World:
    seed: int
    start_ms: int  # conversions happen in [start_ms, end_ms)
    end_ms: int
    tenants: list[Tenant]


# -- the default world -------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignSpec:
    key: str
    name: str
    # (model, window days, half-life days); several: the terms change at mid-period
    terms: tuple[tuple[Model, int, int], ...]
    conflict: ConflictRules
    rules: tuple[Mapping[str, Any], ...]
    priorities: tuple[int, ...] = ()  # affiliate_priorities of the most popular affiliates


@dataclass(frozen=True)
class TenantSpec:
    slug: str
    name: str
    currency: str
    weight: float
    affiliates: int
    categories: tuple[str, ...]
    campaigns: tuple[CampaignSpec, ...]
    subscriptions: bool = False


BASE_RULES: tuple[Mapping[str, Any], ...] = (
    {"id": "base", "type": "percent", "rate": "0.08", "base": "net"},
    {
        "id": "influencers",
        "type": "percent",
        "rate": "0.12",
        "segment": "influencers",
        "tiers": [{"min_monthly_conversions": 50, "rate": "0.15"}],
        "cap_minor": 30000,
    },
    {"id": "eletronicos", "type": "percent", "rate": "0.03", "category": "eletronicos"},
    {
        "id": "primeira_compra",
        "type": "flat",
        "amount_minor": 1500,
        "new_customers_only": True,
        "min_order_minor": 10000,
    },
)

# Every payable model but data_driven (it has no per-journey truth), windows from 7 to 90
# days, each coupon rule, priorities, and the two rule switches (paid traffic, self-referral).
DEFAULT_TENANTS: tuple[TenantSpec, ...] = (
    TenantSpec(
        slug="verde",
        name="Loja Verde",
        currency="BRL",
        weight=0.4,
        affiliates=40,
        categories=("eletronicos", "casa", "moda"),
        campaigns=(
            CampaignSpec(
                "geral",
                "Programa Geral",
                (("last_click", 30, 7), ("linear", 14, 7)),  # new terms at mid-period
                ConflictRules(coupon="wins"),
                BASE_RULES,
            ),
            CampaignSpec(
                "premium",
                "Parceiros Premium",
                (("position_based", 60, 7),),
                ConflictRules(coupon="wins"),
                ({"id": "premium", "type": "percent", "rate": "0.10", "base": "amount"},),
            ),
        ),
    ),
    TenantSpec(
        slug="rio",
        name="Moda Rio",
        currency="BRL",
        weight=0.25,
        affiliates=25,
        categories=("moda", "calcados", "acessorios"),
        campaigns=(
            CampaignSpec(
                "moda",
                "Afiliados Moda Rio",
                (("first_click", 45, 7),),
                ConflictRules(coupon="touch"),
                ({"id": "base", "type": "percent", "rate": "0.10", "base": "net"},),
                priorities=(2, 1, 1),
            ),
        ),
    ),
    TenantSpec(
        slug="cloud",
        name="CloudApp",
        currency="USD",
        weight=0.15,
        affiliates=15,
        categories=("software",),
        subscriptions=True,
        campaigns=(
            CampaignSpec(
                "saas",
                "CloudApp Partners",
                (("time_decay", 90, 10),),
                ConflictRules(coupon="wins"),
                ({"id": "saas", "type": "percent", "rate": "0.30", "recurring_months": 12},),
            ),
        ),
    ),
    TenantSpec(
        slug="sul",
        name="Mercado Sul",
        currency="BRL",
        weight=0.2,
        affiliates=20,
        categories=("mercado", "casa"),
        campaigns=(
            CampaignSpec(
                "sul",
                "Parceiros Mercado Sul",
                (("last_click", 7, 7),),
                ConflictRules(coupon="click", exclude_paid_traffic=False, self_referral="allow"),
                ({"id": "base", "type": "percent", "rate": "0.05", "base": "net"},),
            ),
        ),
    ),
)

_FIRST_NAMES = (
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Fabio", "Gabi", "Hugo", "Iara", "Joao",
    "Karina", "Lucas", "Marina", "Nando", "Olivia", "Paulo", "Queila", "Rafa", "Sofia", "Tiago",
)  # fmt: skip
_KINDS = {
    "content": "Blog",
    "coupon_sites": "Cupons",
    "influencers": "Canal",
    "cashback": "Cashback",
}


class Keys:
    """Tenant-scoped pseudonyms computed exactly as the edge computes them (its IP hashes and
    re-keyed email hashes), so simulated rows look like the API's and an affiliate's
    `email_hash` matches the hash of the same email sent with an order."""

    def __init__(self, settings: Settings) -> None:
        from api.state import EdgeState  # the edge's own derivation, not a copy of it

        self._state = EdgeState(settings)

    def email_hash(self, tenant_id: str, email_sha256: str) -> str:
        return self._state.pseudonym(tenant_id, "email", email_sha256) if email_sha256 else ""

    def ip_hash(self, tenant_id: str, ip: str) -> str:
        return self._state.pseudonym(tenant_id, "ip", ip)


def email_sha256(address: str) -> str:
    """What the tag and the API hash: SHA-256 of the trimmed, lower-cased address."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def build_world(
    seed: int,
    start_ms: int,
    end_ms: int,
    keys: Keys,
    specs: Sequence[TenantSpec] = DEFAULT_TENANTS,
) -> World:
    """The tenants of `specs`, their campaigns (terms valid from long before the first click;
    a second version at mid-period where a spec lists two), affiliates, links and coupons."""
    rng = random.Random(f"world-{seed}")
    anchor = start_ms - 400 * DAY  # ids' time part; terms start here too
    middle = start_ms + (end_ms - start_ms) // 2
    tenants = []
    for spec in specs:
        tenant_id = stable_uuid7(anchor, f"sim-{seed}-tenant-{spec.slug}")
        slug = f"{spec.slug}{tenant_id[-6:]}"  # codes are global: the tenant id keeps them apart
        domain = f"{spec.slug}-{tenant_id[-6:]}.example.com.br"
        affiliates = _affiliates(rng, spec, tenant_id, slug, anchor, keys)
        campaigns = []
        for cspec in spec.campaigns:
            priorities = {
                affiliates[i].affiliate_id: p for i, p in enumerate(cspec.priorities) if p
            }
            conflict = ConflictRules(
                coupon=cspec.conflict.coupon,
                exclude_paid_traffic=cspec.conflict.exclude_paid_traffic,
                exclude_velocity=cspec.conflict.exclude_velocity,
                self_referral=cspec.conflict.self_referral,
                affiliate_priorities=priorities,
            )
            versions = []
            for n, (model, window, half_life) in enumerate(cspec.terms):
                last = n == len(cspec.terms) - 1
                versions.append(
                    Terms(
                        version=n + 1,
                        valid_from=anchor if n == 0 else middle,
                        valid_to=None if last else middle,
                        model=model,
                        window_days=window,
                        half_life_days=half_life,
                        conflict=conflict,
                        commission_rules=cspec.rules,
                    )
                )
            campaigns.append(
                Campaign(
                    campaign_id=stable_uuid7(anchor, f"{tenant_id}-campaign-{cspec.key}"),
                    name=cspec.name,
                    terms=tuple(versions),
                    destination=f"https://{domain}/",
                )
            )
        links, coupons = _links(rng, tenant_id, slug, anchor, affiliates, campaigns)
        approved = [a for a in affiliates if a.status == "approved"]
        ring = tuple(affiliates[i] for i in _ring(spec.affiliates))
        # A click spammer lives off its spam: a small partner (its own traffic is little),
        # so that what it earns is mostly the spam's (where the windows let spam earn).
        spammer = _role(approved, "cashback", 10, ring)
        stuffer = _role(approved, "content", 4)
        poacher = _role(approved, "coupon_sites", 5)
        taken = (*ring, spammer, stuffer, poacher)
        tenants.append(
            Tenant(
                tenant_id=tenant_id,
                slug=slug,
                name=spec.name,
                currency=spec.currency,
                domain=domain,
                merchant_id=stable_uuid7(anchor, f"{tenant_id}-merchant"),
                campaigns=campaigns,
                affiliates=affiliates,
                links=links,
                coupons=coupons,
                weight=spec.weight,
                categories=spec.categories,
                subscriptions=spec.subscriptions,
                # Mid-popularity affiliates: the top ones carry priorities in some campaigns.
                spammer=spammer,
                stuffer=stuffer,
                poacher=poacher,
                burster=_role(approved, "influencers", 6, taken),
                # The biggest content partner: its daily conversion rate is steady enough
                # for a burst of fake orders to stand out (and be found).
                inflater=_role(approved, "content", 0, taken),
                payout_ring=ring,
            )
        )
    return World(seed=seed, start_ms=start_ms, end_ms=end_ms, tenants=tenants)


def _affiliates(
    rng: random.Random, spec: TenantSpec, tenant_id: str, slug: str, anchor: int, keys: Keys
) -> list[Affiliate]:
    out = []
    for i in range(spec.affiliates):
        segment = SEGMENTS[i % len(SEGMENTS)] if i < 8 else rng.choice(SEGMENTS)
        name = f"{_KINDS[segment]} {_FIRST_NAMES[i % len(_FIRST_NAMES)]} {i + 1}"
        sha = email_sha256(f"afiliado{i + 1}@{slug}.example.com")
        # Payout accounts (no draw from `rng`: the rest of the world stays as it was). Every
        # seventh affiliate has not set one; the ring's accounts, near the tail, share one.
        ring = i in _ring(spec.affiliates)
        account = "" if i % 7 == 6 and not ring else f"{slug}-conta-{'anel' if ring else i + 1}"
        out.append(
            Affiliate(
                affiliate_id=stable_uuid7(anchor, f"{tenant_id}-affiliate-{i}"),
                name=name,
                segment=segment,
                # The last affiliate was suspended: its clicks still arrive, credit never does.
                status="suspended" if i == spec.affiliates - 1 else "approved",
                email_sha256=sha,
                email_hash=keys.email_hash(tenant_id, sha),
                weight=1.0 / (i + 1) ** 0.8,  # a few big partners, a long tail
                payout_fingerprint=payout_fingerprint(tenant_id, account) if account else "",
            )
        )
    return out


def _ring(affiliates: int) -> range:
    """The indices of the affiliates sharing one payout account: tail accounts (one person
    signing up several times), never the suspended last one."""
    return range(affiliates - (4 if affiliates >= 25 else 3), affiliates - 1)


def payout_fingerprint(tenant_id: str, account: str) -> str:
    """What `affiliates.payout_fingerprint` holds: a keyed hash of the normalised account."""
    return hashlib.sha256(f"payout:{tenant_id}:{account.strip().lower()}".encode()).hexdigest()


def _links(
    rng: random.Random,
    tenant_id: str,
    slug: str,
    anchor: int,
    affiliates: list[Affiliate],
    campaigns: list[Campaign],
) -> tuple[dict[tuple[str, str], Link], dict[str, Link]]:
    links: dict[tuple[str, str], Link] = {}
    coupons: dict[str, Link] = {}
    for i, affiliate in enumerate(affiliates):
        for c, campaign in enumerate(campaigns):
            code = f"{slug}-a{i + 1}c{c + 1}"
            links[affiliate.affiliate_id, campaign.campaign_id] = Link(
                link_id=stable_uuid7(anchor, f"{tenant_id}-link-{code}"),
                kind="link",
                code=code,
                affiliate=affiliate,
                campaign=campaign,
            )
        # Coupon sites and most influencers have a code of their own, a few others too.
        chance = {"coupon_sites": 1.0, "influencers": 0.7}.get(affiliate.segment, 0.1)
        if rng.random() < chance:
            word = affiliate.name.split()[1].upper()
            code = f"{word}{i + 1}{rng.choice((10, 15, 20))}"
            coupons[affiliate.affiliate_id] = Link(
                link_id=stable_uuid7(anchor, f"{tenant_id}-coupon-{code}"),
                kind="coupon",
                code=code,
                affiliate=affiliate,
                campaign=campaigns[0],
            )
    return links, coupons


def _role(
    affiliates: list[Affiliate],
    segment: str,
    near: int,
    taken: Sequence[Affiliate | None] = (),
) -> Affiliate | None:
    """An affiliate of `segment` close to popularity rank `near` (None if there is none),
    other than those `taken` by another role."""
    free = [a for a in affiliates if a not in taken]
    candidates = [a for a in free[near:] if a.segment == segment] or [
        a for a in free if a.segment == segment
    ]
    return candidates[0] if candidates else None


# -- configuration rows -----------------------------------------------------------------------


def config_rows(world: World) -> dict[str, list[dict[str, Any]]]:
    """The world as rows of the configuration tables (tenants, merchants, affiliates,
    campaigns, links), stamped at the world's anchor so that rewriting them is idempotent."""
    stamp = to_datetime(world.start_ms - 400 * DAY)
    stamps = {"created_at": stamp, "updated_at": stamp, "version": 1}
    rows: dict[str, list[dict[str, Any]]] = {
        "tenants": [],
        "merchants": [],
        "affiliates": [],
        "campaigns": [],
        "links": [],
    }
    for tenant in world.tenants:
        rows["tenants"].append(
            {
                "tenant_id": tenant.tenant_id,
                "name": tenant.name,
                "status": "active",
                "default_currency": tenant.currency,
                "timezone": "America/Sao_Paulo",
                **stamps,
            }
        )
        rows["merchants"].append(
            {
                "tenant_id": tenant.tenant_id,
                "id": tenant.merchant_id,
                "name": tenant.name,
                "platform": "custom",
                "domains": [tenant.domain],
                "tracking_domain": "",
                "currency": tenant.currency,
                "timezone": "",
                "status": "active",
                **stamps,
            }
        )
        for affiliate in tenant.affiliates:
            rows["affiliates"].append(
                {
                    "tenant_id": tenant.tenant_id,
                    "id": affiliate.affiliate_id,
                    "display_name": affiliate.name,
                    "status": affiliate.status,
                    "segment": affiliate.segment,
                    "email_hash": affiliate.email_hash,
                    "country": "BR",
                    "payout_method": "pix" if affiliate.payout_fingerprint else "",
                    "payout_fingerprint": affiliate.payout_fingerprint,
                    **stamps,
                }
            )
        for campaign in tenant.campaigns:
            for terms in campaign.terms:
                rows["campaigns"].append(
                    {
                        "tenant_id": tenant.tenant_id,
                        "campaign_id": campaign.campaign_id,
                        "terms_version": terms.version,
                        "name": campaign.name,
                        "status": "active",
                        "valid_from": to_datetime(terms.valid_from),
                        "valid_to": None if terms.valid_to is None else to_datetime(terms.valid_to),
                        "destination_domains": [tenant.domain],
                        "attribution_window_days": terms.window_days,
                        "click_id_param": "rclid",
                        "landing_params": ["via"],
                        "consent_policy": "opt_out",
                        "attribution_model": terms.model,
                        "hold_days": 30,
                        "attribution_half_life_days": terms.half_life_days,
                        "commission_rules": json.dumps(list(terms.commission_rules)),
                        "conflict_rules": terms.conflict.to_json(),
                        **stamps,
                    }
                )
        for link in [*tenant.links.values(), *tenant.coupons.values()]:
            rows["links"].append(
                {
                    "tenant_id": tenant.tenant_id,
                    "id": link.link_id,
                    "kind": link.kind,
                    "code": link.code,
                    "affiliate_id": link.affiliate.affiliate_id,
                    "campaign_id": link.campaign.campaign_id,
                    "destination_url": link.destination_url,
                    "status": "active",
                    **stamps,
                }
            )
    return rows


def write_config(client: Any, database: str, world: World) -> dict[str, int]:
    """Insert the world's configuration rows; returns the row count per table."""
    counts = {}
    for table, rows in config_rows(world).items():
        insert_rows(client, table, rows, database)
        counts[table] = len(rows)
    return counts
