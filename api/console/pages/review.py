"""Commissions (merchant side): the review queue with filters, checkboxes and decisions
(approve, reject, hold, release, with a reason), fraud flags and their evidence, and one
commission's detail. Everything goes through api/review.py, which audits each decision; a
commission's status changes at once, the ledger's balances at its next build (the page
says so)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, status
from fastapi.responses import Response

from api import review
from api.affiliates import list_affiliates
from api.campaigns import in_force
from api.console.web import PREFIX, Admin, AdminPost, Page

router = APIRouter()

PAGE_SIZE = 50
STATUSES = ("pending", "on_hold", "approved", "rejected", "paid", "reversed")
DECISIONS = ("approve", "reject", "hold", "release")


def queue_filters(
    status_filter: str, affiliate_id: str, campaign_id: str, flagged: str
) -> review.Filters:
    return review.Filters(
        status=status_filter if status_filter in STATUSES else None,  # type: ignore[arg-type]
        affiliate_id=affiliate_id or None,
        campaign_id=campaign_id or None,
        flagged={"yes": True, "no": False}.get(flagged),
    )


def _queue(
    current: Page,
    query: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    filters = queue_filters(
        query["status"], query["affiliate_id"], query["campaign_id"], query["flagged"]
    )
    try:
        found = review.list_commissions(current.scope, filters, PAGE_SIZE, query["after"])
    except ValueError:  # a tampered cursor: start from the first page
        found = review.list_commissions(current.scope, filters, PAGE_SIZE)
    next_url = ""
    if found.next_after:
        next_url = f"{PREFIX}/commissions?" + urlencode({**query, "after": found.next_after})
    return current.render(
        "commissions.html",
        status_code=status_code,
        commissions=found.items,
        query=query,
        statuses=STATUSES,
        decisions=DECISIONS,
        affiliates=list_affiliates(current.scope, limit=1000),
        campaigns=in_force(current.scope),
        next_url=next_url,
        errors=errors or {},
        back=f"{PREFIX}/commissions?" + urlencode({k: v for k, v in query.items() if k != "after"}),
    )


@router.get("/commissions")
def commission_queue(
    current: Admin,
    status: str = "",
    affiliate_id: str = "",
    campaign_id: str = "",
    flagged: str = "",
    after: str = "",
) -> Response:
    query = {
        "status": status,
        "affiliate_id": affiliate_id,
        "campaign_id": campaign_id,
        "flagged": flagged,
        "after": after,
    }
    return _queue(current, query)


@router.post("/commissions/decide")
def decide(
    current: AdminPost,
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    commission_id: Annotated[list[str] | None, Form()] = None,
    back: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    """The decision on the ticked commissions, all or none (the service refuses the whole
    batch if one of them cannot take it)."""
    target = back if back.startswith(f"{PREFIX}/commissions") else f"{PREFIX}/commissions"
    ids = [cid for cid in commission_id or [] if cid]
    if decision not in DECISIONS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT)
    if not ids:
        return current.redirect(target, flash="pick_commissions")
    if len(ids) > review.MAX_DECISIONS:
        return current.redirect(target, flash="too_many", limit=review.MAX_DECISIONS)
    try:
        recorded = review.decide(current.scope, current.user, decision, ids, reason)  # type: ignore[arg-type]
    except ValueError:
        return current.redirect(target, flash="reason_required")
    except review.UnknownCommissions:
        raise HTTPException(status.HTTP_404_NOT_FOUND) from None
    except review.DecisionConflict as conflict:
        statuses = ", ".join(
            sorted({current.t.label("status", s) for s in conflict.conflicts.values()})
        )
        return current.redirect(
            target, flash="decision_conflict", count=len(conflict.conflicts), statuses=statuses
        )
    return current.redirect(
        target,
        flash=f"decided_{decision}",
        count=len(recorded.commissions),
    )


@router.get("/commissions/{commission_id}")
def commission_detail(current: Admin, commission_id: str) -> Response:
    found = review.commission(current.scope, commission_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.render("commission.html", c=found, decisions=DECISIONS)
