"""The minimal configuration API: affiliates, campaigns and links of the caller's tenant."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, field_validator, model_validator

from api.deps import ERROR_RESPONSES, ScopeDep, StateDep, StrictBody, require
from api.store import Affiliate, Campaign, Link, host_allowed

router = APIRouter(
    prefix="/v1",
    tags=["configuration"],
    dependencies=[require("admin")],
    responses=ERROR_RESPONSES,
)

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


class AffiliateCreate(StrictBody):
    display_name: str = Field(min_length=1, max_length=200)
    segment: str = Field("", max_length=64)
    country: str = Field("", pattern=r"^([A-Z]{2})?$")


_RATE = r"^(0(\.\d{1,9})?|1(\.0{1,9})?)$"  # a fraction 0..1 as text, at most 9 decimals


class CommissionTier(StrictBody):
    min_monthly_conversions: int = Field(ge=1)
    rate: str = Field(pattern=_RATE, description='e.g. "0.12" for 12%')


class CommissionRule(StrictBody):
    """One commission rule (docs/attribution.md, section 4). Validated here so that a typo
    is a 422 for the merchant who made it, not a failed ledger build for everyone."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["percent", "flat"]
    rate: str | None = Field(None, pattern=_RATE, description='percent: "0.10" for 10%')
    amount_minor: int | None = Field(None, ge=0, le=10**12, description="flat, per conversion")
    base: Literal["net", "amount"] = "net"
    segment: str | None = Field(None, max_length=64)
    affiliate_id: str | None = Field(None, max_length=64)
    category: str | None = Field(None, max_length=128)
    min_order_minor: int | None = Field(None, ge=0, le=10**15)
    new_customers_only: bool = False
    recurring_months: int = Field(0, ge=0, le=1200)
    tiers: list[CommissionTier] = Field(default_factory=list, max_length=20)
    cap_minor: int | None = Field(None, ge=0, le=10**15)

    @model_validator(mode="after")
    def _priced(self) -> CommissionRule:
        if self.type == "percent" and (self.rate is None or self.amount_minor is not None):
            raise ValueError("a percent rule has a rate and no amount_minor")
        if self.type == "flat" and (self.amount_minor is None or self.rate is not None):
            raise ValueError("a flat rule has an amount_minor and no rate")
        if self.tiers and self.type != "percent":
            raise ValueError("tiers raise a percent rule's rate")
        return self


class CampaignCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    status: Literal["active", "paused"] = "active"
    destination_domains: list[str] = Field(
        min_length=1, description="Hosts links may send to (subdomains included)"
    )
    attribution_window_days: int = Field(30, ge=1, le=365)
    click_id_param: str = Field("rclid", pattern=r"^[A-Za-z0-9_]{1,32}$")
    landing_params: list[str] = Field(default_factory=lambda: ["via"])
    consent_policy: Literal["opt_in", "opt_out", "none"] = "opt_out"
    attribution_model: Literal[
        "last_click", "first_click", "linear", "time_decay", "position_based", "data_driven"
    ] = "last_click"
    hold_days: int = Field(30, ge=0, le=365)
    commission_rules: list[CommissionRule] = Field(default_factory=list, max_length=100)

    @field_validator("commission_rules")
    @classmethod
    def _unique_rule_ids(cls, rules: list[CommissionRule]) -> list[CommissionRule]:
        ids = [rule.id for rule in rules]
        if len(ids) != len(set(ids)):
            raise ValueError("commission rule ids must be unique within the terms")
        return rules

    @field_validator("destination_domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        cleaned = [d.strip().lower().rstrip(".") for d in domains]
        bad = [d for d in cleaned if not _DOMAIN.match(d)]
        if bad:
            raise ValueError(f"not a host name: {', '.join(bad)}")
        return cleaned


class LinkCreate(StrictBody):
    affiliate_id: str
    campaign_id: str
    destination_url: str = Field(max_length=4096)
    sub1: str = Field("", max_length=256)
    sub2: str = Field("", max_length=256)
    sub3: str = Field("", max_length=256)
    sub4: str = Field("", max_length=256)
    sub5: str = Field("", max_length=256)


class LinkPublic(Link):
    url: str = Field(description="The tracked URL to share")


class LinkList(BaseModel):
    items: list[LinkPublic]
    next_after: str | None = Field(description="Pass as `after` for the next page")


@router.post("/affiliates", status_code=status.HTTP_201_CREATED)
def create_affiliate(body: AffiliateCreate, tenant: ScopeDep) -> Affiliate:
    return tenant.create_affiliate(body.display_name, body.segment, body.country)


@router.get("/affiliates")
def list_affiliates(tenant: ScopeDep) -> list[Affiliate]:
    return tenant.affiliates()


@router.post("/campaigns", status_code=status.HTTP_201_CREATED)
def create_campaign(body: CampaignCreate, tenant: ScopeDep) -> Campaign:
    values = body.model_dump()
    # Stored as the rules were written: fields left out stay out (the models apply defaults).
    values["commission_rules"] = [
        rule.model_dump(exclude_unset=True) for rule in body.commission_rules
    ]
    return tenant.create_campaign(values)


@router.get("/campaigns")
def list_campaigns(tenant: ScopeDep) -> list[Campaign]:
    return tenant.campaigns()


def _public(link: Link, state: StateDep) -> LinkPublic:
    return LinkPublic(**link.model_dump(), url=f"{state.settings.public_url}/r/{link.code}")


@router.post("/links", status_code=status.HTTP_201_CREATED)
def create_link(body: LinkCreate, tenant: ScopeDep, state: StateDep) -> LinkPublic:
    if tenant.affiliate(body.affiliate_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"no affiliate {body.affiliate_id!r} in this tenant",
        )
    campaigns = tenant.campaigns(body.campaign_id)
    if not campaigns:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"no campaign {body.campaign_id!r} in this tenant",
        )
    allowed = tenant.allowed_hosts(campaigns[0])
    if not host_allowed(body.destination_url, allowed):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "destination_url must be an http(s) URL on one of the campaign's destination "
            f"domains ({', '.join(sorted(allowed)) or 'none configured'}): no open redirects",
        )
    subs = [body.sub1, body.sub2, body.sub3, body.sub4, body.sub5]
    link = tenant.create_link(body.affiliate_id, body.campaign_id, body.destination_url, subs)
    return _public(link, state)


@router.get("/links")
def list_links(
    tenant: ScopeDep,
    state: StateDep,
    affiliate_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    after: str = Query("", description="The last id of the previous page"),
) -> LinkList:
    links = tenant.links(affiliate_id, limit, after)
    return LinkList(
        items=[_public(link, state) for link in links],
        next_after=links[-1].id if len(links) == limit else None,
    )
