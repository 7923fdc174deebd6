"""Campaigns: their versioned terms, status changes and the segments their rules target
(docs/campaigns.md).

A campaign is a series of terms versions, one row per `terms_version` in the `campaigns`
table. Terms that may already have priced a conversion are never edited: a change is a new
version, valid from now or from a future instant, and dbt prices each conversion with the
version in force at its time (docs/attribution.md, section 4). Pausing, resuming and
archiving are new versions too, with the same terms.

Versions take effect in the order of their numbers (each one's `valid_from` is at or after
the previous one's), so at any instant the version in force is the latest one already valid.
A scheduled version (valid from a future instant) can be cancelled before it takes effect:
it is the only kind of version that is ever removed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Any, Literal, TypeVar

from fastapi import HTTPException, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api import audit
from api.deps import StrictBody
from api.state import EdgeState
from api.store import Principal, TenantScope, UtcDatetime
from rastro.ids import uuid7

AttributionModel = Literal[
    "last_click", "first_click", "linear", "time_decay", "position_based", "data_driven"
]
CampaignStatus = Literal["draft", "active", "paused", "ended"]
StatusAction = Literal["pause", "resume", "archive"]

_RATE = r"^(0(\.\d{1,9})?|1(\.0{1,9})?)$"  # a fraction 0..1 as text, at most 9 decimals
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")

Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
CouponCode = Annotated[str, StringConstraints(min_length=1, max_length=128)]


# -- the terms: what a merchant writes ---------------------------------------------------------


class CommissionTier(StrictBody):
    min_monthly_conversions: int = Field(ge=1, le=1_000_000)
    rate: str = Field(pattern=_RATE, description='e.g. "0.12" for 12%')


class CommissionRule(StrictBody):
    """One commission rule (docs/attribution.md, section 4). Validated here so that a typo
    is a 422 for the merchant who made it, not a failed ledger build for everyone."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": "base", "type": "percent", "rate": "0.10", "base": "net"},
                {
                    "id": "influencers",
                    "type": "percent",
                    "rate": "0.15",
                    "segment": "influencers",
                    "tiers": [{"min_monthly_conversions": 50, "rate": "0.18"}],
                    "cap_minor": 50000,
                },
                {"id": "sneakers", "type": "percent", "rate": "0.06", "product_ids": ["TEN-42"]},
                {
                    "id": "ana-coupon",
                    "type": "flat",
                    "amount_minor": 1500,
                    "coupon_codes": ["ANA10"],
                },
            ]
        },
    )

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["percent", "flat"]
    rate: str | None = Field(None, pattern=_RATE, description='percent: "0.10" for 10%')
    amount_minor: int | None = Field(
        None, ge=0, le=10**12, description="flat: per conversion, in the order's currency"
    )
    base: Literal["net", "amount"] = Field(
        "net", description="What a percent is of: net (amount less tax and shipping) or amount"
    )
    segment: str | None = Field(
        None, min_length=1, max_length=64, description="Only affiliates of this segment"
    )
    affiliate_id: str | None = Field(
        None, min_length=1, max_length=64, description="Only this affiliate"
    )
    category: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Only the order's lines of this category (case-insensitive): the base is "
        "their amount",
    )
    product_ids: list[ProductId] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Only the order's lines of these products (a line's sku or product_id): "
        "the base is their amount",
    )
    countries: list[Country] | None = Field(
        None,
        min_length=1,
        max_length=250,
        description="Only customers of these countries (ISO 3166-1 alpha-2)",
    )
    coupon_codes: list[CouponCode] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Only orders that used one of these coupon codes (case-insensitive)",
    )
    min_order_minor: int | None = Field(
        None, ge=0, le=10**15, description="Only orders whose amount is at least this"
    )
    new_customers_only: bool = Field(False, description="Only customers' first orders")
    recurring_months: int = Field(
        0, ge=0, le=1200, description="Renewals 1..N of a subscription earn too"
    )
    tiers: list[CommissionTier] = Field(
        default_factory=list,
        max_length=20,
        description="Higher rates from a number of conversions in the month, ascending",
    )
    cap_minor: int | None = Field(
        None, ge=0, le=10**15, description="Most one conversion earns from this rule"
    )

    @field_validator("countries")
    @classmethod
    def _upper_countries(cls, countries: list[str] | None) -> list[str] | None:
        return None if countries is None else [c.upper() for c in countries]

    @field_validator("countries", "product_ids", "coupon_codes")
    @classmethod
    def _no_duplicates(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and len({v.upper() for v in values}) != len(values):
            raise ValueError("lists the same value twice")
        return values

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: list[CommissionTier]) -> list[CommissionTier]:
        minimums = [tier.min_monthly_conversions for tier in tiers]
        if any(later <= earlier for earlier, later in pairwise(minimums)):
            raise ValueError(
                "tiers must be in ascending order of min_monthly_conversions, without repeats"
            )
        return tiers

    @model_validator(mode="after")
    def _priced(self) -> CommissionRule:
        if self.type == "percent" and (self.rate is None or self.amount_minor is not None):
            raise ValueError("a percent rule has a rate and no amount_minor")
        if self.type == "flat" and (self.amount_minor is None or self.rate is not None):
            raise ValueError("a flat rule has an amount_minor and no rate")
        if self.tiers and self.type != "percent":
            raise ValueError("tiers raise a percent rule's rate: a flat rule has none")
        rates = [Decimal(self.rate or "0"), *(Decimal(tier.rate) for tier in self.tiers)]
        if any(later < earlier for earlier, later in pairwise(rates)):
            raise ValueError("tiers raise the rate: a tier's rate is never below the one before")
        return self

    @property
    def is_line_rule(self) -> bool:
        """A category or product rule: it prices only the lines it selects."""
        return self.category is not None or self.product_ids is not None

    @property
    def specificity(self) -> int:
        return 2 * (self.affiliate_id is not None) + (self.segment is not None)


def _within(narrow: list[str] | None, wide: list[str] | None) -> bool:
    """Whether a condition listing `narrow` holds only where one listing `wide` does."""
    if wide is None:
        return True
    return narrow is not None and {v.upper() for v in narrow} <= {v.upper() for v in wide}


def _covers(a: CommissionRule, b: CommissionRule) -> bool:
    """Whether rule `a` applies to every order, and every line, that rule `b` applies to."""
    same_category = a.category is None or (
        b.category is not None and a.category.lower() == b.category.lower()
    )
    return (
        a.affiliate_id in (None, b.affiliate_id)
        and a.segment in (None, b.segment)
        and (a.min_order_minor or 0) <= (b.min_order_minor or 0)
        and (not a.new_customers_only or b.new_customers_only)
        and a.recurring_months >= b.recurring_months
        and _within(b.countries, a.countries)
        and _within(b.coupon_codes, a.coupon_codes)
        and a.is_line_rule == b.is_line_rule
        and same_category
        and _within(b.product_ids, a.product_ids)
    )


def _rank(rule: CommissionRule, index: int) -> tuple[int, int, int]:
    """Precedence between applicable rules, as int_commissions__priced orders them: for a
    line, a rule naming products first; then the most specific; then the earlier."""
    names_products = rule.is_line_rule and rule.product_ids is not None
    return (int(names_products), rule.specificity, -index)


def shadowed_rules(rules: list[CommissionRule]) -> list[tuple[int, str]]:
    """(index, why) of each rule that can never price anything: another rule applies wherever
    it does and takes precedence (rules do not stack). Almost always a mistake of order."""
    problems = []
    for j, b in enumerate(rules):
        for i, a in enumerate(rules):
            if i != j and _rank(a, i) > _rank(b, j) and _covers(a, b):
                how = "is more specific" if _rank(a, i)[:2] > _rank(b, j)[:2] else "comes first"
                problems.append(
                    (
                        j,
                        f"rule {b.id!r} can never apply: rule {a.id!r} applies to every order "
                        f"it would and {how}. Put {b.id!r} before {a.id!r}, or narrow "
                        f"{a.id!r} (docs/attribution.md, section 4: rules do not stack)",
                    )
                )
                break
    return problems


class ConflictRules(StrictBody):
    """How competing claims on a conversion are resolved (docs/attribution.md, section 2):
    what dbt's int_campaign_terms__in_force reads from `campaigns.conflict_rules`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "coupon": "wins",
                    "exclude_paid_traffic": True,
                    "exclude_velocity": True,
                    "self_referral": "exclude",
                    "affiliate_priorities": {"0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e99": 1},
                }
            ]
        },
    )

    coupon: Literal["wins", "click", "touch"] = Field(
        "wins",
        description="wins: an affiliate's coupon on the order takes the whole credit; click: "
        "coupons count only when no click is eligible; touch: a coupon is one more touch",
    )
    exclude_paid_traffic: bool = Field(
        True, description="Clicks whose landing URL carries paid-click markers earn nothing"
    )
    exclude_velocity: bool = Field(
        True, description="Clicks flagged by IP velocity (automated traffic) earn nothing"
    )
    self_referral: Literal["exclude", "allow"] = Field(
        "exclude", description="exclude: an affiliate buying through their own link earns nothing"
    )
    affiliate_priorities: dict[str, Annotated[int, Field(ge=-1000, le=1000)]] = Field(
        default_factory=dict,
        max_length=1000,
        description="affiliate id -> priority (default 0): only the touches of the "
        "highest-priority affiliates in a journey stay in it",
    )


class CampaignTerms(StrictBody):
    """A campaign's terms: everything one terms version holds but its status."""

    name: str = Field(min_length=1, max_length=200)
    destination_domains: list[str] = Field(
        min_length=1, max_length=50, description="Hosts links may send to (subdomains included)"
    )
    attribution_window_days: int = Field(
        30, ge=1, le=365, description="Clicks older than this at the conversion earn nothing"
    )
    attribution_model: AttributionModel = Field(
        "last_click", description="The payable model: which credits earn commissions"
    )
    attribution_half_life_days: int = Field(
        7, ge=1, le=365, description="time_decay: a touch this many days older weighs half"
    )
    hold_days: int = Field(
        30, ge=0, le=365, description="Days a commission stays pending before approval"
    )
    click_id_param: str = Field(
        "rclid",
        pattern=r"^[A-Za-z0-9_]{1,32}$",
        description="Query parameter carrying the click id",
    )
    landing_params: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,32}$")]] = (
        Field(
            default_factory=lambda: ["via"],
            max_length=10,
            description="Landing parameters naming a link code without a redirect (?via=CODE)",
        )
    )
    consent_policy: Literal["opt_in", "opt_out", "none"] = "opt_out"
    conflict_rules: ConflictRules = Field(default_factory=ConflictRules)
    commission_rules: list[CommissionRule] = Field(default_factory=list, max_length=100)

    @field_validator("commission_rules")
    @classmethod
    def _rules(cls, rules: list[CommissionRule]) -> list[CommissionRule]:
        ids = [rule.id for rule in rules]
        if len(ids) != len(set(ids)):
            raise ValueError("commission rule ids must be unique within the terms")
        problems = shadowed_rules(rules)
        if problems:
            raise ValueError("; ".join(why for _, why in problems))
        return rules

    @field_validator("destination_domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        cleaned = [d.strip().lower().rstrip(".") for d in domains]
        bad = [d for d in cleaned if not _DOMAIN.match(d)]
        if bad:
            raise ValueError(f"not a host name: {', '.join(bad)}")
        return cleaned

    def stored_rules(self) -> list[dict[str, Any]]:
        """The rules as the merchant wrote them: fields left out stay out (dbt applies the
        documented defaults), so the stored JSON reads like the request."""
        return [rule.model_dump(exclude_unset=True) for rule in self.commission_rules]


EXAMPLE_TERMS: dict[str, Any] = {
    "name": "Programa de Afiliados",
    "destination_domains": ["loja.example.com.br"],
    "attribution_window_days": 30,
    "attribution_model": "last_click",
    "hold_days": 30,
    "conflict_rules": {"coupon": "wins", "self_referral": "exclude"},
    "commission_rules": [
        {"id": "influencers", "type": "percent", "rate": "0.15", "segment": "influencers"},
        {"id": "tenis", "type": "percent", "rate": "0.06", "category": "calcados"},
        {"id": "base", "type": "percent", "rate": "0.10"},
    ],
}


# -- what the API answers ----------------------------------------------------------------------


class Campaign(BaseModel):
    """One version of a campaign's terms."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE_TERMS,
                    "campaign_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e77",
                    "terms_version": 2,
                    "status": "active",
                    "valid_from": "2026-03-01T00:00:00Z",
                    "valid_to": None,
                    "attribution_half_life_days": 7,
                    "click_id_param": "rclid",
                    "landing_params": ["via"],
                    "consent_policy": "opt_out",
                    "conflict_rules": {
                        "coupon": "wins",
                        "exclude_paid_traffic": True,
                        "exclude_velocity": True,
                        "self_referral": "exclude",
                        "affiliate_priorities": {},
                    },
                    "created_at": "2026-02-20T14:03:11.412Z",
                }
            ]
        }
    )

    campaign_id: str
    terms_version: int = Field(description="1, 2, ...: this version of the campaign's terms")
    name: str
    status: CampaignStatus
    valid_from: UtcDatetime = Field(description="When these terms take effect")
    valid_to: UtcDatetime | None = Field(
        description="When these terms stop applying (an archived campaign's last version "
        "ends where it starts); null: until the next version"
    )
    destination_domains: list[str]
    attribution_window_days: int
    attribution_model: str
    attribution_half_life_days: int
    hold_days: int
    click_id_param: str
    landing_params: list[str]
    consent_policy: str
    conflict_rules: ConflictRules
    commission_rules: list[dict[str, Any]] = Field(
        description="The rules as written (see CommissionRule); left-out fields take the "
        "documented defaults"
    )
    created_at: UtcDatetime = Field(description="When this version was written")


class TermsVersion(BaseModel):
    """One version in a campaign's history."""

    terms_version: int
    status: CampaignStatus
    valid_from: UtcDatetime
    valid_until: UtcDatetime | None = Field(
        description="When the next version (or its own valid_to) ends it; null: open-ended"
    )
    state: Literal["past", "current", "scheduled"] = Field(
        description="current: the version the campaign shows now; scheduled: takes effect "
        "at valid_from and can still be cancelled"
    )
    created_at: UtcDatetime


class CampaignDetail(Campaign):
    versions: list[TermsVersion] = Field(description="Every version, oldest first")


Published = TypeVar("Published", Campaign, CampaignDetail)


class SegmentRule(BaseModel):
    campaign_id: str
    campaign_name: str
    campaign_status: CampaignStatus
    terms_version: int
    rule: dict[str, Any] = Field(description="The rule as written")


class Segment(BaseModel):
    """A segment (a group or tier of affiliates) and the commission overrides that target
    it in the campaigns' current terms."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segment": "influencers",
                    "affiliates": 12,
                    "approved_affiliates": 9,
                    "rules": [
                        {
                            "campaign_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e77",
                            "campaign_name": "Programa de Afiliados",
                            "campaign_status": "active",
                            "terms_version": 2,
                            "rule": {
                                "id": "influencers",
                                "type": "percent",
                                "rate": "0.15",
                                "segment": "influencers",
                            },
                        }
                    ],
                }
            ]
        }
    )

    segment: str
    affiliates: int = Field(description="Affiliates in the segment, whatever their status")
    approved_affiliates: int
    rules: list[SegmentRule]


# -- reading -----------------------------------------------------------------------------------

_COLUMNS = (
    "campaign_id, terms_version, name, status, valid_from, valid_to, destination_domains, "
    "attribution_window_days, attribution_model, attribution_half_life_days, hold_days, "
    "click_id_param, landing_params, consent_policy, conflict_rules, commission_rules, created_at"
)


def _campaign(row: dict[str, Any]) -> Campaign:
    row["commission_rules"] = json.loads(row["commission_rules"])
    row["conflict_rules"] = ConflictRules.model_validate_json(row["conflict_rules"] or "{}")
    return Campaign(**row)


def in_force(scope: TenantScope, campaign_id: str = "") -> list[Campaign]:
    """The current terms of each campaign (of one, with `campaign_id`): its latest version
    already valid, whatever its status."""
    rows = scope.rows(
        f"SELECT {_COLUMNS} FROM campaigns FINAL "
        "WHERE tenant_id = {tenant:String} AND is_deleted = 0 AND valid_from <= now64(3) "
        "AND ({id:String} = '' OR campaign_id = {id:String}) "
        "ORDER BY campaign_id, terms_version DESC LIMIT 1 BY campaign_id",
        id=campaign_id,
    )
    return [_campaign(row) for row in rows]


def missing(campaign_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id!r}")


def current(scope: TenantScope, campaign_id: str) -> Campaign:
    """The campaign's current terms; 404 if the tenant has no such campaign."""
    found = in_force(scope, campaign_id)
    if not found:
        raise missing(campaign_id)
    return found[0]


def versions(scope: TenantScope, campaign_id: str) -> list[Campaign]:
    """Every version of the campaign, oldest first (scheduled ones included)."""
    rows = scope.rows(
        f"SELECT {_COLUMNS} FROM campaigns FINAL WHERE tenant_id = {{tenant:String}} "
        "AND campaign_id = {id:String} AND is_deleted = 0 ORDER BY terms_version",
        id=campaign_id,
    )
    return [_campaign(row) for row in rows]


def version(scope: TenantScope, campaign_id: str, terms_version: int) -> Campaign:
    for found in versions(scope, campaign_id):
        if found.terms_version == terms_version:
            return found
    raise HTTPException(
        status.HTTP_404_NOT_FOUND, f"campaign {campaign_id!r} has no terms version {terms_version}"
    )


def history(all_versions: list[Campaign], now: datetime | None = None) -> list[TermsVersion]:
    now = now or datetime.now(UTC)
    started = [v for v in all_versions if v.valid_from <= now]
    current_version = started[-1].terms_version if started else None
    entries = []
    for i, v in enumerate(all_versions):
        # A version ends at its own valid_to or where the next one starts, the earlier.
        next_from = all_versions[i + 1].valid_from if i + 1 < len(all_versions) else None
        ends = [t for t in (v.valid_to, next_from) if t is not None]
        state: Literal["past", "current", "scheduled"] = "past"
        if v.valid_from > now:
            state = "scheduled"
        elif v.terms_version == current_version:
            state = "current"
        entries.append(
            TermsVersion(
                terms_version=v.terms_version,
                status=v.status,
                valid_from=v.valid_from,
                valid_until=min(ends) if ends else None,
                state=state,
                created_at=v.created_at,
            )
        )
    return entries


def detail(scope: TenantScope, campaign_id: str) -> CampaignDetail:
    all_versions = versions(scope, campaign_id)
    now = datetime.now(UTC)
    started = [v for v in all_versions if v.valid_from <= now]
    if not started:
        raise missing(campaign_id)
    return CampaignDetail(**started[-1].model_dump(), versions=history(all_versions, now))


def as_published(campaign: Published, affiliate_id: str, segment: str) -> Published:
    """The terms as one affiliate sees them: the rules that can apply to them and their own
    priority, never the rates or ids of other affiliates' overrides."""
    rules = [
        rule
        for rule in campaign.commission_rules
        if rule.get("affiliate_id") in (None, affiliate_id)
        and rule.get("segment") in (None, segment or None)
    ]
    priorities = {
        k: v for k, v in campaign.conflict_rules.affiliate_priorities.items() if k == affiliate_id
    }
    conflict = campaign.conflict_rules.model_copy(update={"affiliate_priorities": priorities})
    return campaign.model_copy(update={"commission_rules": rules, "conflict_rules": conflict})


def segments(scope: TenantScope) -> list[Segment]:
    """Every segment with affiliates in it or targeted by a rule of a campaign's current
    terms (archived campaigns left out), by name."""
    counts = {
        row["segment"]: row
        for row in scope.rows(
            "SELECT segment, count() AS affiliates, countIf(status = 'approved') AS approved "
            "FROM affiliates FINAL WHERE tenant_id = {tenant:String} AND segment != '' "
            "GROUP BY segment"
        )
    }
    rules: dict[str, list[SegmentRule]] = {}
    for campaign in in_force(scope):
        if campaign.status == "ended":
            continue
        for rule in campaign.commission_rules:
            if isinstance(rule.get("segment"), str):
                rules.setdefault(rule["segment"], []).append(
                    SegmentRule(
                        campaign_id=campaign.campaign_id,
                        campaign_name=campaign.name,
                        campaign_status=campaign.status,
                        terms_version=campaign.terms_version,
                        rule=rule,
                    )
                )
    return [
        Segment(
            segment=name,
            affiliates=int(counts[name]["affiliates"]) if name in counts else 0,
            approved_affiliates=int(counts[name]["approved"]) if name in counts else 0,
            rules=rules.get(name, []),
        )
        for name in sorted(set(counts) | set(rules))
    ]


def allowed_hosts(scope: TenantScope, campaign: Campaign) -> frozenset[str]:
    """Where the campaign's links may send: its destination domains, or the merchants'."""
    if campaign.destination_domains:
        return frozenset(d.lower() for d in campaign.destination_domains)
    rows = scope.rows(
        "SELECT groupArrayArray(domains) AS domains FROM merchants FINAL "
        "WHERE tenant_id = {tenant:String} AND is_deleted = 0"
    )
    return frozenset(d.lower() for d in rows[0]["domains"]) if rows else frozenset()


# -- writing -----------------------------------------------------------------------------------


def check_references(scope: TenantScope, terms: CampaignTerms) -> None:
    """422 unless every affiliate and segment the terms name exists in the tenant: a rule
    for a misspelt segment would silently never apply."""
    rows = scope.rows("SELECT id, segment FROM affiliates FINAL WHERE tenant_id = {tenant:String}")
    affiliate_ids = {row["id"] for row in rows}
    segment_names = {row["segment"] for row in rows if row["segment"]}
    problems: list[dict[str, Any]] = []

    def problem(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append({"loc": ["body", *loc], "msg": msg, "type": "reference_error"})

    for i, rule in enumerate(terms.commission_rules):
        if rule.affiliate_id is not None and rule.affiliate_id not in affiliate_ids:
            problem(
                ("commission_rules", i, "affiliate_id"),
                f"rule {rule.id!r}: no affiliate {rule.affiliate_id!r} in this tenant",
            )
        if rule.segment is not None and rule.segment not in segment_names:
            problem(
                ("commission_rules", i, "segment"),
                f"rule {rule.id!r}: no affiliate is in segment {rule.segment!r} (put "
                "affiliates in it first; GET /v1/segments lists the segments in use)",
            )
    for affiliate_id in terms.conflict_rules.affiliate_priorities:
        if affiliate_id not in affiliate_ids:
            problem(
                ("conflict_rules", "affiliate_priorities", affiliate_id),
                f"no affiliate {affiliate_id!r} in this tenant",
            )
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)


# The columns of a version that are its terms (status and validity are the version's own).
_TERM_FIELDS = (
    "name",
    "destination_domains",
    "attribution_window_days",
    "attribution_model",
    "attribution_half_life_days",
    "hold_days",
    "click_id_param",
    "landing_params",
    "consent_policy",
)


def _new_terms(terms: CampaignTerms) -> dict[str, Any]:
    """The stored columns of new terms."""
    return {
        **terms.model_dump(include=set(_TERM_FIELDS)),
        "conflict_rules": terms.conflict_rules.model_dump_json(),
        "commission_rules": json.dumps(terms.stored_rules()),
    }


def _same_terms(campaign: Campaign) -> dict[str, Any]:
    """The stored columns of a version's terms, copied as they are (the rules verbatim: a
    status change never re-interprets what the merchant wrote)."""
    return {
        **campaign.model_dump(include=set(_TERM_FIELDS)),
        "conflict_rules": campaign.conflict_rules.model_dump_json(),
        "commission_rules": json.dumps(campaign.commission_rules),
    }


def _forget_cached(state: EdgeState, scope: TenantScope, campaign_id: str) -> None:
    """Drops this worker's cached copies of what the change affects: its links' redirects
    (other workers' expire within CACHE_TTL_S) and the tenant's tag settings."""
    for row in scope.rows(
        "SELECT code FROM links FINAL WHERE tenant_id = {tenant:String} "
        "AND campaign_id = {id:String} AND kind = 'link'",
        id=campaign_id,
    ):
        state.store.links.drop(row["code"])
    state.tag_settings.drop(scope.tenant_id)


def _ms(at: datetime) -> datetime:
    """`at` as the warehouse keeps it (DateTime64(3)): what is answered is what is read back."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _write(
    scope: TenantScope,
    campaign_id: str,
    terms_version: int,
    terms: dict[str, Any],
    campaign_status: str,
    valid_from: datetime,
    valid_to: datetime | None = None,
) -> Campaign:
    now = _ms(datetime.now(UTC))
    row = {
        "campaign_id": campaign_id,
        "terms_version": terms_version,
        "status": campaign_status,
        "valid_from": _ms(valid_from),
        "valid_to": None if valid_to is None else _ms(valid_to),
        **terms,
        "created_at": now,
    }
    scope.write_version("campaigns", row, now)
    return _campaign(dict(row))


def create(
    state: EdgeState,
    scope: TenantScope,
    actor: Principal,
    terms: CampaignTerms,
    campaign_status: Literal["active", "paused"] = "active",
) -> Campaign:
    check_references(scope, terms)
    campaign_id = uuid7()
    created = _write(scope, campaign_id, 1, _new_terms(terms), campaign_status, datetime.now(UTC))
    state.tag_settings.drop(scope.tenant_id)
    audit.record(
        scope,
        actor,
        "campaign.create",
        "campaign",
        campaign_id,
        details={"terms_version": 1, "status": campaign_status},
    )
    return created


def _next_version(scope: TenantScope, campaign_id: str) -> int:
    # Without FINAL: a cancelled version's number is not given to another version.
    rows = scope.rows(
        "SELECT max(terms_version) AS latest FROM campaigns "
        "WHERE tenant_id = {tenant:String} AND campaign_id = {id:String}",
        id=campaign_id,
    )
    return int(rows[0]["latest"]) + 1


def _latest(scope: TenantScope, campaign_id: str) -> Campaign:
    """The campaign's latest version (a scheduled one, if any); 404 if there is none."""
    all_versions = versions(scope, campaign_id)
    if not all_versions:
        raise missing(campaign_id)
    return all_versions[-1]


def _refuse_if_archived(latest: Campaign) -> None:
    if latest.status == "ended":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"campaign {latest.campaign_id!r} is archived: its terms are final (create a new "
            "campaign instead)",
        )


def _scheduled_conflict(latest: Campaign) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"terms version {latest.terms_version} is scheduled to take effect at "
        f"{latest.valid_from.isoformat()}: versions take effect in order, so cancel it first "
        f"(DELETE /v1/campaigns/{latest.campaign_id}/versions/{latest.terms_version}) or give "
        "an effective_from at or after it",
    )


def revise(
    state: EdgeState,
    scope: TenantScope,
    actor: Principal,
    campaign_id: str,
    terms: CampaignTerms,
    effective_from: datetime | None = None,
    reason: str = "",
) -> Campaign:
    """New terms: a new version from now (or from `effective_from`, in the future). The
    versions before it are not touched: conversions they priced keep their terms."""
    latest = _latest(scope, campaign_id)
    _refuse_if_archived(latest)
    now = datetime.now(UTC)
    if effective_from is not None and effective_from <= now:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "effective_from"],
                    "msg": "effective_from must be in the future: terms a past conversion "
                    "used are never changed (leave it out to take effect now)",
                    "type": "value_error",
                }
            ],
        )
    valid_from = effective_from or now
    if valid_from < latest.valid_from:
        raise _scheduled_conflict(latest)
    check_references(scope, terms)
    before, after = _same_terms(latest), _new_terms(terms)
    changed = sorted(name for name in after if after[name] != before[name])
    terms_version = _next_version(scope, campaign_id)
    revised = _write(scope, campaign_id, terms_version, after, latest.status, valid_from)
    _forget_cached(state, scope, campaign_id)
    audit.record(
        scope,
        actor,
        "campaign.update",
        "campaign",
        campaign_id,
        reason,
        {
            "terms_version": terms_version,
            "previous_version": latest.terms_version,
            "valid_from": valid_from.isoformat(),
            "changed": changed,
        },
    )
    return revised


# Which statuses each action leaves from, and the status it sets.
_TRANSITIONS: dict[StatusAction, tuple[frozenset[str], CampaignStatus]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused", "draft"}), "active"),
    "archive": (frozenset({"draft", "active", "paused"}), "ended"),
}


def change_status(
    state: EdgeState,
    scope: TenantScope,
    actor: Principal,
    campaign_id: str,
    action: StatusAction,
    reason: str = "",
) -> Campaign:
    """Pause, resume or archive: a new version from now with the same terms. Archiving ends
    the terms (valid_to = valid_from): orders after it earn nothing, and it is final."""
    latest = _latest(scope, campaign_id)
    _refuse_if_archived(latest)
    now = datetime.now(UTC)
    if latest.valid_from > now:
        raise _scheduled_conflict(latest)
    sources, target = _TRANSITIONS[action]
    if latest.status not in sources:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"campaign {campaign_id!r} is already {latest.status}"
        )
    terms_version = _next_version(scope, campaign_id)
    changed = _write(
        scope,
        campaign_id,
        terms_version,
        _same_terms(latest),
        target,
        now,
        valid_to=now if target == "ended" else None,
    )
    _forget_cached(state, scope, campaign_id)
    audit.record(
        scope,
        actor,
        f"campaign.{action}",
        "campaign",
        campaign_id,
        reason,
        {"terms_version": terms_version, "from": latest.status, "to": target},
    )
    return changed


def cancel_scheduled(
    state: EdgeState,
    scope: TenantScope,
    actor: Principal,
    campaign_id: str,
    terms_version: int,
    reason: str = "",
) -> None:
    """Removes a version that has not taken effect yet; any other is 409."""
    found = version(scope, campaign_id, terms_version)
    now = datetime.now(UTC)
    if found.valid_from <= now:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"terms version {terms_version} took effect at {found.valid_from.isoformat()}: "
            "terms a conversion may have used are never changed (write a new version instead)",
        )
    # The deleting row must outrank the one it deletes, even within the same millisecond.
    at = max(now, found.created_at + timedelta(milliseconds=1))
    row = {
        "campaign_id": campaign_id,
        "terms_version": terms_version,
        "status": found.status,
        "valid_from": found.valid_from,
        "valid_to": found.valid_to,
        **_same_terms(found),
        "created_at": found.created_at,
        "is_deleted": 1,
    }
    scope.write_version("campaigns", row, at)
    _forget_cached(state, scope, campaign_id)
    audit.record(
        scope,
        actor,
        "campaign.cancel_version",
        "campaign",
        campaign_id,
        reason,
        {"terms_version": terms_version, "valid_from": found.valid_from.isoformat()},
    )
