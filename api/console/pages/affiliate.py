"""The affiliate's own pages: dashboard (clicks, conversions, earnings by status and a
chart), links (make one for an active campaign, copy it), commissions (status and the
reason of a rejection) and payout details. Every read goes through the affiliate user's
scope, which the warehouse limits to its own rows; the services hide what affiliates
must not see (fraud flags, who decided, the reasons of holds)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from api import affiliates, links, review
from api.console.pages.links import link_page_values, make_link
from api.console.pages.reports import dashboard_values
from api.console.pages.review import STATUSES
from api.console.web import PREFIX, AffiliatePost, AffiliateUser, Page

router = APIRouter(prefix="/affiliate")

PAGE_SIZE = 50
EARNING_STATUSES = ("pending", "on_hold", "approved", "paid")
PIX_KEY_TYPES = ("cpf", "cnpj", "email", "phone", "random")
ACCOUNT_TYPES = ("checking", "savings", "payment")
_DETAILS: TypeAdapter[affiliates.PayoutDetails] = TypeAdapter(affiliates.PayoutDetails)


def earnings_by_status(scope: Any) -> dict[str, dict[str, int]]:
    """currency -> status -> the sum of the affiliate's commissions, exact (every page)."""
    totals: dict[str, dict[str, int]] = {}
    after = ""
    while True:
        found = review.list_commissions(scope, review.Filters(), 1000, after)
        for c in found.items:
            by_status = totals.setdefault(c.currency, dict.fromkeys(EARNING_STATUSES, 0))
            if c.status in by_status:
                by_status[c.status] += c.amount_minor
        if not found.next_after:
            return totals
        after = found.next_after


@router.get("")
def dashboard(current: AffiliateUser, first: str = "", last: str = "") -> Response:
    return current.render(
        "affiliate_dashboard.html",
        earnings=earnings_by_status(current.scope),
        earning_statuses=EARNING_STATUSES,
        **dashboard_values(current, first, last),
    )


def _links_page(
    current: Page,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    created: str = "",
    status_code: int = 200,
) -> Response:
    values_of_page = link_page_values(current)
    values_of_page["campaigns"] = [c for c in values_of_page["campaigns"] if c.status == "active"]
    return current.render(
        "affiliate_links.html",
        status_code=status_code,
        links=links.list_links(current.scope, kind="link", limit=1000),
        values=values or {},
        problems=problems or {},
        created=created,
        **values_of_page,
    )


@router.get("/links")
def my_links(current: AffiliateUser, created: str = "") -> Response:
    return _links_page(current, created=created)


@router.post("/links")
def create_my_link(
    current: AffiliatePost,
    campaign_id: Annotated[str, Form(max_length=64)] = "",
    destination_url: Annotated[str, Form(max_length=4096)] = "",
    sub1: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    link, problems = make_link(current, None, campaign_id, destination_url, sub1)
    if link is None:
        values = {"campaign_id": campaign_id, "destination_url": destination_url, "sub1": sub1}
        return _links_page(current, values=values, problems=problems, status_code=422)
    return current.redirect(f"{PREFIX}/affiliate/links?created={link.id}", flash="link_created")


@router.get("/commissions")
def my_commissions(current: AffiliateUser, status: str = "", after: str = "") -> Response:
    filters = review.Filters(status=status if status in STATUSES else None)  # type: ignore[arg-type]
    try:
        found = review.list_commissions(current.scope, filters, PAGE_SIZE, after)
    except ValueError:
        found = review.list_commissions(current.scope, filters, PAGE_SIZE)
    next_url = ""
    if found.next_after:
        next_url = f"{PREFIX}/affiliate/commissions?status={status}&after={found.next_after}"
    return current.render(
        "affiliate_commissions.html",
        commissions=found.items,
        statuses=STATUSES,
        status_filter=status,
        next_url=next_url,
    )


@router.get("/commissions/{commission_id}")
def my_commission(current: AffiliateUser, commission_id: str) -> Response:
    found = review.commission(current.scope, commission_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.render("commission.html", c=found, decisions=())


def _payout_page(
    current: Page,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    affiliate_id = current.user.affiliate_id or ""
    view = affiliates.payout_details_view(
        current.scope, current.state, current.user, affiliate_id, reveal=False
    )
    return current.render(
        "affiliate_payout.html",
        status_code=status_code,
        view=view,
        values=values or {"method": view.method if view else "pix"},
        problems=problems or {},
        pix_key_types=PIX_KEY_TYPES,
        account_types=ACCOUNT_TYPES,
    )


@router.get("/payout-details")
def payout_details(current: AffiliateUser) -> Response:
    return _payout_page(current)


_FIELDS = {
    "pix": ("key_type", "key"),
    "bank_transfer": (
        "bank_code",
        "branch",
        "account",
        "account_type",
        "holder_name",
        "holder_tax_id",
    ),
    "paypal": ("email",),
}


@router.post("/payout-details")
async def save_payout_details(current: AffiliatePost, request: Request) -> Response:
    form = await request.form()
    method = str(form.get("method", ""))
    values = {"method": method}
    for field in _FIELDS.get(method, ()):
        values[field] = str(form.get(f"{method}-{field}", "")).strip()
    try:
        details = _DETAILS.validate_python(values)
    except ValidationError as invalid:
        problems = {}
        for problem in invalid.errors():
            field = str(problem["loc"][-1]) if problem["loc"] else "method"
            problems[f"{method}-{field}" if field != "method" else "method"] = problem["msg"]
        return _payout_page(current, values=values, problems=problems, status_code=422)
    affiliates.set_payout_details(
        current.scope, current.state, current.user, current.user.affiliate_id or "", details
    )
    return current.redirect(f"{PREFIX}/affiliate/payout-details", flash="payout_details_saved")
