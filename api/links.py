"""Attribution keys of affiliates in campaigns: tracked links and coupon codes (table
`links`, latest version wins; docs/campaigns.md).

A tracked link's code is random and global (the redirect finds the tenant by it); a coupon
code is the merchant's own, unique in the tenant regardless of case (attribution compares
coupon codes upper-cased). An affiliate caller works only with its own affiliate's links:
its TenantScope filters every read to them, and creating one for another affiliate is 403.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api import audit, campaigns
from api.affiliates import affiliate
from api.state import EdgeState
from api.store import Principal, TenantScope, UtcDatetime, host_allowed
from rastro.ids import uuid7
from rastro.keys import new_link_code

LinkKind = Literal["link", "coupon"]
LinkStatus = Literal["active", "paused", "archived"]


class Link(BaseModel):
    id: str
    code: str = Field(description="The link's random code, or the coupon code")
    kind: LinkKind
    affiliate_id: str
    campaign_id: str
    destination_url: str = Field(description="Where the redirect sends; empty for coupons")
    sub1: str = ""
    sub2: str = ""
    sub3: str = ""
    sub4: str = ""
    sub5: str = ""
    status: LinkStatus
    created_at: UtcDatetime
    updated_at: UtcDatetime


class LinkPublic(Link):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190f5d3-1a2b-7c3d-8e4f-5a6b7c8d9e0f",
                    "code": "aZ3kP9qW2m",
                    "kind": "link",
                    "affiliate_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e99",
                    "campaign_id": "0190f5d2-6c1e-7b7e-9d55-5f3c2a1b0e77",
                    "destination_url": "https://loja.example.com.br/tenis?cor=azul",
                    "sub1": "instagram",
                    "sub2": "",
                    "sub3": "",
                    "sub4": "",
                    "sub5": "",
                    "status": "active",
                    "created_at": "2026-03-02T10:15:00Z",
                    "updated_at": "2026-03-02T10:15:00Z",
                    "url": "https://track.example.com/r/aZ3kP9qW2m",
                }
            ]
        }
    )

    url: str | None = Field(description="The tracked URL to share; null for a coupon")


def public(link: Link, public_url: str) -> LinkPublic:
    url = f"{public_url}/r/{link.code}" if link.kind == "link" else None
    return LinkPublic(**link.model_dump(), url=url)


_COLUMNS = (
    "id, code, kind, affiliate_id, campaign_id, destination_url, sub1, sub2, sub3, sub4, "
    "sub5, status, created_at, updated_at"
)


def _missing(link_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no link {link_id!r}")


def get(scope: TenantScope, link_id: str) -> Link:
    """The link (or coupon); 404 if the scope has no such link."""
    rows = scope.rows(
        f"SELECT {_COLUMNS} FROM links FINAL WHERE tenant_id = {{tenant:String}} "
        "AND id = {id:String} AND is_deleted = 0",
        id=link_id,
    )
    if not rows:
        raise _missing(link_id)
    return Link(**rows[0])


def list_links(
    scope: TenantScope,
    affiliate_id: str = "",
    campaign_id: str = "",
    kind: str = "",
    limit: int = 100,
    after: str = "",
) -> list[Link]:
    """Links by id (creation order), `limit` after the id `after`; "" filters nothing."""
    rows = scope.rows(
        f"SELECT {_COLUMNS} FROM links FINAL WHERE tenant_id = {{tenant:String}} "
        "AND is_deleted = 0 AND ({aff:String} = '' OR affiliate_id = {aff:String}) "
        "AND ({campaign:String} = '' OR campaign_id = {campaign:String}) "
        "AND ({kind:String} = '' OR kind = {kind:String}) "
        "AND id > {after:String} ORDER BY id LIMIT {limit:UInt32}",
        aff=affiliate_id,
        campaign=campaign_id,
        kind=kind,
        after=after,
        limit=limit,
    )
    return [Link(**row) for row in rows]


def _now() -> datetime:
    # Milliseconds, as the warehouse keeps them: what is answered is what is read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _unprocessable(field: str, msg: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", field], "msg": msg, "type": "reference_error"}],
    )


def _target(
    scope: TenantScope, actor: Principal, affiliate_id: str | None, campaign_id: str
) -> tuple[str, campaigns.Campaign]:
    """The affiliate and campaign a new link or coupon belongs to, checked: both in the
    tenant, the campaign not archived, and an affiliate caller only for itself and only in
    active campaigns (the ones it can see)."""
    if actor.affiliate_id is not None:
        if affiliate_id not in (None, actor.affiliate_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "an affiliate key creates links only for its own affiliate (leave "
                "affiliate_id out)",
            )
        affiliate_id = actor.affiliate_id
    if affiliate_id is None:
        raise _unprocessable("affiliate_id", "required: the affiliate the link credits")
    found = affiliate(scope, affiliate_id)
    if found is None:
        raise _unprocessable("affiliate_id", f"no affiliate {affiliate_id!r} in this tenant")
    if actor.affiliate_id is not None and found.status in ("suspended", "rejected"):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"this affiliate is {found.status}: it cannot add links"
        )
    terms = campaigns.in_force(scope, campaign_id)
    visible = [c for c in terms if actor.affiliate_id is None or c.status == "active"]
    if not visible:
        raise _unprocessable("campaign_id", f"no campaign {campaign_id!r} in this tenant")
    if visible[0].status == "ended":
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"campaign {campaign_id!r} is archived: it takes no links"
        )
    return affiliate_id, visible[0]


def create_link(
    scope: TenantScope,
    actor: Principal,
    affiliate_id: str | None,
    campaign_id: str,
    destination_url: str,
    subs: list[str],
) -> Link:
    affiliate_id, campaign = _target(scope, actor, affiliate_id, campaign_id)
    allowed = campaigns.allowed_hosts(scope, campaign)
    if not host_allowed(destination_url, allowed):
        raise _unprocessable(
            "destination_url",
            "must be an http(s) URL on one of the campaign's destination domains "
            f"({', '.join(sorted(allowed)) or 'none configured'}): no open redirects",
        )
    now = _now()
    link = Link(
        id=uuid7(),
        code=new_link_code(),
        kind="link",
        affiliate_id=affiliate_id,
        campaign_id=campaign_id,
        destination_url=destination_url,
        status="active",
        created_at=now,
        updated_at=now,
        **{f"sub{i + 1}": value for i, value in enumerate(subs)},
    )
    scope.write_version("links", link.model_dump(exclude={"updated_at"}), now)
    audit.record(
        scope,
        actor,
        "link.create",
        "link",
        link.id,
        details={"affiliate_id": affiliate_id, "campaign_id": campaign_id},
    )
    return link


def create_coupon(
    scope: TenantScope, actor: Principal, affiliate_id: str, campaign_id: str, code: str
) -> Link:
    affiliate_id, _ = _target(scope, actor, affiliate_id, campaign_id)
    taken = scope.rows(
        "SELECT id FROM links FINAL WHERE tenant_id = {tenant:String} AND kind = 'coupon' "
        "AND upper(code) = upper({code:String}) AND is_deleted = 0 LIMIT 1",
        code=code,
    )
    if taken:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"coupon code {code!r} is taken in this tenant (by link {taken[0]['id']}); codes "
            "are unique regardless of case",
        )
    now = _now()
    coupon = Link(
        id=uuid7(),
        code=code,
        kind="coupon",
        affiliate_id=affiliate_id,
        campaign_id=campaign_id,
        destination_url="",
        status="active",
        created_at=now,
        updated_at=now,
    )
    scope.write_version("links", coupon.model_dump(exclude={"updated_at"}), now)
    audit.record(
        scope,
        actor,
        "coupon.create",
        "link",
        coupon.id,
        details={"code": code, "affiliate_id": affiliate_id, "campaign_id": campaign_id},
    )
    return coupon


def set_status(
    state: EdgeState,
    scope: TenantScope,
    actor: Principal,
    link_id: str,
    new_status: Literal["active", "paused"],
    reason: str = "",
) -> Link:
    """Pauses or resumes a tracked link: a paused link's redirect goes to the fallback page."""
    link = get(scope, link_id)
    if link.kind != "link":
        # A link keeps only its latest status, so attribution cannot tell when a coupon was
        # paused: pausing one would take back what it earned before. Campaigns are paused by
        # a new terms version, which attribution reads as of each conversion.
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "a coupon cannot be paused on its own: pause its campaign (coupons earn nothing "
            "while it is paused), or disable the code in the store",
        )
    if link.status == new_status:
        raise HTTPException(status.HTTP_409_CONFLICT, f"link {link_id!r} is already {new_status}")
    # The new version must outrank the current one, even within the same millisecond.
    at = max(_now(), link.updated_at + timedelta(milliseconds=1))
    changed = link.model_copy(update={"status": new_status, "updated_at": at})
    row: dict[str, Any] = changed.model_dump(exclude={"updated_at"})
    scope.write_version("links", row, at)
    state.store.links.drop(link.code)
    action = "link.pause" if new_status == "paused" else "link.resume"
    audit.record(
        scope,
        actor,
        action,
        "link",
        link_id,
        reason,
        {"from": link.status, "to": new_status},
    )
    return changed
