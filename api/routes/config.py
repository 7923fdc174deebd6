"""Campaigns, segments, tracked links and coupons of the caller's tenant. The rules are in
api/campaigns.py and api/links.py; these routes check who may call and document the API.

Who may call: admin writes; admin and analyst read; an affiliate reads the active campaigns'
terms as they apply to it (how programs publish their terms), and creates and reads only its
own links."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from api import campaigns, links
from api.affiliates import affiliate
from api.campaigns import EXAMPLE_TERMS, Campaign, CampaignDetail, CampaignTerms, Segment
from api.deps import ERROR_RESPONSES, ErrorDetail, ScopeDep, StateDep, StrictBody, require
from api.links import LinkPublic
from api.store import Principal

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)

Admin = Annotated[Principal, require("admin")]
Reader = Annotated[Principal, require("analyst", "affiliate")]
Analyst = Annotated[Principal, require("analyst")]
LinkMaker = Annotated[Principal, require("affiliate")]

CAMPAIGN_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No campaign (or version) with this id here"}
}
CAMPAIGN_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorDetail,
        "description": "The campaign's state does not allow this: archived, already in that "
        "status, or a scheduled version must take effect (or be cancelled) first",
    }
}
LINK_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No link with this id in the caller's view"}
}

CampaignId = Annotated[str, Path(max_length=64, description="The campaign's id")]
TermsVersion = Annotated[int, Path(ge=1, le=1_000_000, description="1, 2, ...")]
LinkId = Annotated[str, Path(max_length=64, description="The link's (or coupon's) id")]


# -- bodies ------------------------------------------------------------------------------------


class CampaignCreate(CampaignTerms):
    status: Literal["active", "paused"] = Field(
        "active", description="paused: links do not redirect until it is resumed"
    )


class CampaignUpdate(CampaignTerms):
    effective_from: AwareDatetime | None = Field(
        None,
        description="When the new terms take effect: a future instant with its UTC offset; "
        "left out: now. Never in the past",
    )
    reason: str = Field("", max_length=500, description="Why (kept in the audit log)")


class StatusChange(StrictBody):
    reason: str = Field("", max_length=500, description="Why (kept in the audit log)")


_CREATE_EXAMPLES = {
    "program": {
        "summary": "A program with a segment override and a category rate",
        "value": EXAMPLE_TERMS,
    },
    "conditions": {
        "summary": "Rules with conditions: product, country, coupon, new customers, tiers",
        "value": {
            "name": "Lançamento Tênis X",
            "destination_domains": ["loja.example.com.br"],
            "attribution_model": "position_based",
            "attribution_window_days": 45,
            "hold_days": 15,
            "conflict_rules": {"coupon": "touch", "exclude_paid_traffic": True},
            "commission_rules": [
                {"id": "tenis-x", "type": "percent", "rate": "0.12", "product_ids": ["TEN-42"]},
                {
                    "id": "cupom-ana",
                    "type": "flat",
                    "amount_minor": 1500,
                    "coupon_codes": ["ANA10"],
                    "min_order_minor": 10000,
                },
                {"id": "portugal", "type": "percent", "rate": "0.08", "countries": ["PT"]},
                {
                    "id": "primeira-compra",
                    "type": "flat",
                    "amount_minor": 2000,
                    "new_customers_only": True,
                },
                {
                    "id": "base",
                    "type": "percent",
                    "rate": "0.05",
                    "tiers": [
                        {"min_monthly_conversions": 20, "rate": "0.07"},
                        {"min_monthly_conversions": 100, "rate": "0.09"},
                    ],
                    "cap_minor": 30000,
                },
            ],
        },
    },
}
_UPDATE_EXAMPLES = {
    "now": {
        "summary": "New terms from now",
        "value": {**EXAMPLE_TERMS, "hold_days": 15, "reason": "refund window is 15 days now"},
    },
    "scheduled": {
        "summary": "New terms from a future date",
        "value": {
            **EXAMPLE_TERMS,
            "commission_rules": [{"id": "base", "type": "percent", "rate": "0.12"}],
            "effective_from": "2026-12-01T00:00:00-03:00",
            "reason": "holiday season rate",
        },
    },
}
_REASON_EXAMPLES = {"reason": {"summary": "With a reason", "value": {"reason": "stock ended"}}}


# -- campaigns ---------------------------------------------------------------------------------


@router.post(
    "/campaigns",
    status_code=status.HTTP_201_CREATED,
    tags=["campaigns"],
    summary="Create a campaign (its terms version 1, in force now)",
    description="Admin. Every affiliate and segment a rule or priority names must exist in "
    "the tenant; a rule that another rule always outranks is refused (rules do not stack). "
    "Audited as `campaign.create`.",
)
def create_campaign(
    body: Annotated[CampaignCreate, Body(openapi_examples=_CREATE_EXAMPLES)],
    actor: Admin,
    scope: ScopeDep,
    state: StateDep,
) -> Campaign:
    return campaigns.create(state, scope, actor, body, body.status)


@router.get(
    "/campaigns",
    tags=["campaigns"],
    summary="List campaigns with their current terms",
    description="Admin and analyst: every campaign but archived ones by default; `status` "
    "filters (`ended` lists the archived, `all` everything). An affiliate sees only active "
    "campaigns, with only the commission rules that can apply to it.",
)
def list_campaigns(
    actor: Reader,
    scope: ScopeDep,
    status_: Annotated[
        Literal["draft", "active", "paused", "ended", "all"] | None,
        Query(alias="status", description="Only this status (default: all but ended)"),
    ] = None,
) -> list[Campaign]:
    found = campaigns.in_force(scope)
    if status_ is None:
        found = [c for c in found if c.status != "ended"]
    elif status_ != "all":
        found = [c for c in found if c.status == status_]
    if actor.affiliate_id is not None:
        segment = _segment_of(actor.affiliate_id, scope)
        return [
            campaigns.as_published(c, actor.affiliate_id, segment)
            for c in found
            if c.status == "active"
        ]
    return found


def _segment_of(affiliate_id: str, scope: ScopeDep) -> str:
    me = affiliate(scope, affiliate_id)
    return me.segment if me else ""


@router.get(
    "/campaigns/{campaign_id}",
    tags=["campaigns"],
    summary="A campaign's current terms and its version history",
    description="Admin and analyst; an affiliate only for an active campaign (404 otherwise), "
    "with the rules that can apply to it.",
    responses=CAMPAIGN_NOT_FOUND,
)
def get_campaign(campaign_id: CampaignId, actor: Reader, scope: ScopeDep) -> CampaignDetail:
    found = campaigns.detail(scope, campaign_id)
    if actor.affiliate_id is None:
        return found
    if found.status != "active":
        raise campaigns.missing(campaign_id)
    segment = _segment_of(actor.affiliate_id, scope)
    return campaigns.as_published(found, actor.affiliate_id, segment)


@router.get(
    "/campaigns/{campaign_id}/versions/{terms_version}",
    tags=["campaigns"],
    summary="One version of a campaign's terms (past, current or scheduled)",
    description="Admin and analyst. A version never changes once it can have priced a "
    "conversion: this is exactly what priced the conversions of its period.",
    responses=CAMPAIGN_NOT_FOUND,
)
def get_campaign_version(
    campaign_id: CampaignId, terms_version: TermsVersion, _: Analyst, scope: ScopeDep
) -> Campaign:
    return campaigns.version(scope, campaign_id, terms_version)


@router.put(
    "/campaigns/{campaign_id}",
    tags=["campaigns"],
    summary="New terms: a new version, from now or from `effective_from`",
    description="Admin. The body is the whole new terms (left-out fields take their "
    "defaults). The versions before it are never rewritten: conversions keep the terms in "
    "force at their time, and commissions follow at the next dbt build. The new version keeps "
    "the campaign's status. 409 for an archived campaign, or when a scheduled version would "
    "take effect after this one. Audited as `campaign.update` with the fields that changed.",
    responses={**CAMPAIGN_NOT_FOUND, **CAMPAIGN_CONFLICT},
)
def update_campaign(
    campaign_id: CampaignId,
    body: Annotated[CampaignUpdate, Body(openapi_examples=_UPDATE_EXAMPLES)],
    actor: Admin,
    scope: ScopeDep,
    state: StateDep,
) -> Campaign:
    return campaigns.revise(
        state, scope, actor, campaign_id, body, body.effective_from, body.reason
    )


@router.delete(
    "/campaigns/{campaign_id}/versions/{terms_version}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["campaigns"],
    summary="Cancel a scheduled version before it takes effect",
    description="Admin. Only a version whose `valid_from` is still in the future (409 "
    "otherwise: terms that may have priced a conversion are never removed). Audited as "
    "`campaign.cancel_version`.",
    responses={**CAMPAIGN_NOT_FOUND, **CAMPAIGN_CONFLICT},
)
def cancel_campaign_version(
    campaign_id: CampaignId,
    terms_version: TermsVersion,
    actor: Admin,
    scope: ScopeDep,
    state: StateDep,
    reason: Annotated[str, Query(max_length=500, description="Why (kept in the audit log)")] = "",
) -> Response:
    campaigns.cancel_scheduled(state, scope, actor, campaign_id, terms_version, reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _status_route(action: campaigns.StatusAction, summary: str, description: str) -> None:
    @router.post(
        f"/campaigns/{{campaign_id}}/{action}",
        tags=["campaigns"],
        summary=summary,
        description=f"Admin. A new version with the same terms, from now. {description} "
        f"Audited as `campaign.{action}`.",
        responses={**CAMPAIGN_NOT_FOUND, **CAMPAIGN_CONFLICT},
        name=f"{action}_campaign",
    )
    def change(
        campaign_id: CampaignId,
        actor: Admin,
        scope: ScopeDep,
        state: StateDep,
        body: Annotated[StatusChange | None, Body(openapi_examples=_REASON_EXAMPLES)] = None,
    ) -> Campaign:
        reason = body.reason if body else ""
        return campaigns.change_status(state, scope, actor, campaign_id, action, reason)


_status_route(
    "pause",
    "Pause a campaign: its links stop redirecting",
    "Visitors of its links land on the fallback page; clicks made before still earn within "
    "their window, and coupon codes still credit (pause a program's coupons in the store).",
)
_status_route("resume", "Resume a paused campaign", "Its links redirect again.")
_status_route(
    "archive",
    "Archive a campaign (status ended): final",
    "Its links stop redirecting and its terms end now: orders after it earn nothing. An "
    "archived campaign cannot be resumed or changed (409).",
)


@router.get(
    "/segments",
    tags=["campaigns"],
    summary="Segments in use and the commission overrides that target them",
    description="Admin and analyst. Each segment that has affiliates or that a rule of a "
    "campaign's current terms targets (archived campaigns left out): its affiliate counts "
    "and those rules. A segment rule overrides the campaign's general rules for its "
    "affiliates (more specific rules win; docs/campaigns.md).",
)
def list_segments(_: Analyst, scope: ScopeDep) -> list[Segment]:
    return campaigns.segments(scope)


# -- links and coupons -------------------------------------------------------------------------


class LinkCreate(StrictBody):
    affiliate_id: str | None = Field(
        None,
        max_length=64,
        description="The affiliate credited; an affiliate caller leaves it out (its own)",
    )
    campaign_id: str = Field(max_length=64)
    destination_url: str = Field(
        max_length=4096, description="http(s) on one of the campaign's destination domains"
    )
    sub1: str = Field("", max_length=256)
    sub2: str = Field("", max_length=256)
    sub3: str = Field("", max_length=256)
    sub4: str = Field("", max_length=256)
    sub5: str = Field("", max_length=256)


class CouponCreate(StrictBody):
    code: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The code customers type at checkout (unique in the tenant, any case)",
        examples=["ANA10"],
    )
    affiliate_id: str = Field(max_length=64)
    campaign_id: str = Field(max_length=64)


class LinkList(BaseModel):
    items: list[LinkPublic]
    next_after: str | None = Field(description="Pass as `after` for the next page")


_LINK_EXAMPLES = {
    "admin": {
        "summary": "A link for an affiliate (admin)",
        "value": {
            "affiliate_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e99",
            "campaign_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e77",
            "destination_url": "https://loja.example.com.br/tenis?cor=azul",
            "sub1": "instagram",
        },
    },
    "affiliate": {
        "summary": "An affiliate's own link (affiliate key)",
        "value": {
            "campaign_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e77",
            "destination_url": "https://loja.example.com.br/",
        },
    },
}


@router.post(
    "/links",
    status_code=status.HTTP_201_CREATED,
    tags=["links"],
    summary="Create a tracked link",
    description="Admin, or an affiliate for itself (naming another affiliate is 403) in an "
    "active campaign. The destination must be on the campaign's destination domains: no "
    "open redirects. 409 for an archived campaign. Audited as `link.create`.",
    responses={409: CAMPAIGN_CONFLICT[409]},
)
def create_link(
    body: Annotated[LinkCreate, Body(openapi_examples=_LINK_EXAMPLES)],
    actor: LinkMaker,
    scope: ScopeDep,
    state: StateDep,
) -> LinkPublic:
    subs = [body.sub1, body.sub2, body.sub3, body.sub4, body.sub5]
    link = links.create_link(
        scope, actor, body.affiliate_id, body.campaign_id, body.destination_url, subs
    )
    return links.public(link, state.settings.public_url)


@router.get(
    "/links",
    tags=["links"],
    summary="List tracked links and coupons",
    description="Admin and analyst: the tenant's; an affiliate: only its own. Cursor "
    "pagination by id: pass `next_after` as `after`.",
)
def list_links(
    _: Reader,
    scope: ScopeDep,
    state: StateDep,
    affiliate_id: Annotated[str, Query(max_length=64)] = "",
    campaign_id: Annotated[str, Query(max_length=64)] = "",
    kind: Annotated[Literal["link", "coupon"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str, Query(description="The last id of the previous page")] = "",
) -> LinkList:
    found = links.list_links(scope, affiliate_id, campaign_id, kind or "", limit, after)
    return LinkList(
        items=[links.public(link, state.settings.public_url) for link in found],
        next_after=found[-1].id if len(found) == limit else None,
    )


@router.get(
    "/links/{link_id}",
    tags=["links"],
    summary="One tracked link or coupon",
    description="Admin and analyst; an affiliate only its own (404 for others).",
    responses=LINK_NOT_FOUND,
)
def get_link(link_id: LinkId, _: Reader, scope: ScopeDep, state: StateDep) -> LinkPublic:
    return links.public(links.get(scope, link_id), state.settings.public_url)


def _link_status_route(action: Literal["pause", "resume"]) -> None:
    new_status: Literal["active", "paused"] = "paused" if action == "pause" else "active"

    @router.post(
        f"/links/{{link_id}}/{action}",
        tags=["links"],
        summary=f"{action.capitalize()} a tracked link",
        description="Admin. A paused link's visitors land on the fallback page (this worker at "
        "once, the others within 30 s). Coupons cannot be paused (409): attribution credits a "
        f"code used at checkout whatever its status. Audited as `link.{action}`.",
        responses={
            **LINK_NOT_FOUND,
            409: {"model": ErrorDetail, "description": "Already in that status, or a coupon"},
        },
        name=f"{action}_link",
    )
    def change(
        link_id: LinkId,
        actor: Admin,
        scope: ScopeDep,
        state: StateDep,
        body: Annotated[StatusChange | None, Body(openapi_examples=_REASON_EXAMPLES)] = None,
    ) -> LinkPublic:
        reason = body.reason if body else ""
        link = links.set_status(state, scope, actor, link_id, new_status, reason)
        return links.public(link, state.settings.public_url)


_link_status_route("pause")
_link_status_route("resume")


@router.post(
    "/coupons",
    status_code=status.HTTP_201_CREATED,
    tags=["links"],
    summary="Register an affiliate's coupon code",
    description="Admin. An order that used the code credits the affiliate (an attribution "
    "key of its own, for traffic with no click; docs/attribution.md, section 2). The code "
    "is the merchant's, unique in the tenant regardless of case (409 if taken). Listed by "
    "`GET /v1/links?kind=coupon`. Audited as `coupon.create`.",
    responses={
        409: {"model": ErrorDetail, "description": "The code is taken, or the campaign archived"}
    },
)
def create_coupon(body: CouponCreate, actor: Admin, scope: ScopeDep, state: StateDep) -> LinkPublic:
    coupon = links.create_coupon(scope, actor, body.affiliate_id, body.campaign_id, body.code)
    return links.public(coupon, state.settings.public_url)
