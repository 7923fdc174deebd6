"""Tracked links (merchant side): the list by affiliate, and making a link for an affiliate
in a campaign through api/links.py (the API's rules: no open redirects; audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException
from fastapi.responses import Response

from api import links
from api.affiliates import list_affiliates
from api.campaigns import in_force
from api.console.web import PREFIX, Admin, AdminPost, Page

router = APIRouter()

PAGE_SIZE = 50


def make_link(
    current: Page, affiliate_id: str | None, campaign_id: str, destination_url: str, sub1: str
) -> tuple[links.Link | None, dict[str, str]]:
    """The new link, or the service's refusal by form field (its own words: they name the
    allowed domains)."""
    try:
        link = links.create_link(
            current.scope,
            current.user,
            affiliate_id,
            campaign_id,
            destination_url.strip(),
            [sub1.strip(), "", "", "", ""],
        )
    except HTTPException as refused:
        problems: dict[str, str] = {}
        if isinstance(refused.detail, list):
            for problem in refused.detail:
                problems[str(problem["loc"][-1])] = str(problem["msg"])
        else:
            problems["form"] = str(refused.detail)
        return None, problems
    return link, {}


def link_page_values(current: Page) -> dict[str, Any]:
    campaigns = in_force(current.scope)
    return {
        "campaigns": campaigns,
        "campaign_names": {c.campaign_id: c.name for c in campaigns},
    }


def _links_page(
    current: Page,
    affiliate_id: str = "",
    after: str = "",
    created: str = "",
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    found = links.list_links(current.scope, affiliate_id, kind="link", limit=PAGE_SIZE, after=after)
    next_url = ""
    if len(found) == PAGE_SIZE:
        next_url = f"{PREFIX}/links?affiliate_id={affiliate_id}&after={found[-1].id}"
    affiliates = list_affiliates(current.scope, limit=1000)
    return current.render(
        "links.html",
        status_code=status_code,
        links=found,
        affiliates=affiliates,
        names={a.id: a.display_name for a in affiliates},
        affiliate_id=affiliate_id,
        next_url=next_url,
        values=values or {},
        problems=problems or {},
        created=created,
        **link_page_values(current),
    )


@router.get("/links")
def link_list(
    current: Admin, affiliate_id: str = "", after: str = "", created: str = ""
) -> Response:
    return _links_page(current, affiliate_id, after, created)


@router.post("/links")
def create_link(
    current: AdminPost,
    affiliate_id: Annotated[str, Form(max_length=64)] = "",
    campaign_id: Annotated[str, Form(max_length=64)] = "",
    destination_url: Annotated[str, Form(max_length=4096)] = "",
    sub1: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    link, problems = make_link(current, affiliate_id or None, campaign_id, destination_url, sub1)
    if link is None:
        values = {
            "affiliate_id": affiliate_id,
            "campaign_id": campaign_id,
            "destination_url": destination_url,
            "sub1": sub1,
        }
        return _links_page(current, values=values, problems=problems, status_code=422)
    return current.redirect(f"{PREFIX}/links?created={link.id}", flash="link_created")
