"""Commission review: the list and review queue, one commission in full, and decisions
(approve, reject, hold, release). The logic is api/review.py; docs/payouts.md the workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from pydantic import Field, field_validator

from api import review
from api.deps import ERROR_RESPONSES, ErrorDetail, PrincipalDep, ScopeDep, StrictBody, require
from api.review import (
    MAX_DECISIONS,
    CommissionDetail,
    CommissionPage,
    DecisionKind,
    DecisionsRecorded,
    Status,
)

router = APIRouter(prefix="/v1", tags=["commissions"], responses=ERROR_RESPONSES)

_READERS = require("analyst", "affiliate")
_ADMIN = require("admin")
_NOT_BUILT: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorDetail, "description": "The ledger has not been built yet"}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such commission in the caller's tenant"}
}
_DECISION_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorDetail,
        "description": "Some ids are not commissions of the caller's tenant (all listed); "
        "nothing was written",
    },
    409: {
        "model": ErrorDetail,
        "description": "Some commissions' status refuses the decision (all listed with their "
        "status); nothing was written",
    },
    **_NOT_BUILT,
}

CommissionId = Annotated[
    str,
    Field(
        min_length=3,
        max_length=300,
        pattern=r"^[^:\s]+:[^:\s]+$",
        description="conversion_id:affiliate_id",
        examples=["0197b8fb-d000-7a8d-b12a-114bc21b523a:0197b8fb-d000-714a-9dd8-e1b7a8687fca"],
    ),
]


class DecisionCreate(StrictBody):
    decision: DecisionKind = Field(
        description="approve (before the hold ends, or after a hold), reject, hold (stop its "
        "approval and payment for review), release (undo a hold)"
    )
    commission_ids: list[CommissionId] = Field(min_length=1, max_length=MAX_DECISIONS)
    reason: str = Field(
        "",
        max_length=1000,
        description="Why: required for reject (the affiliate reads it) and hold",
    )

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, reason: str) -> str:
        return reason.strip()


class ReasonBody(StrictBody):
    reason: str = Field("", max_length=1000, description="Why (required to reject)")


_DECISION_EXAMPLES: dict[str, Any] = {
    "approve": {
        "summary": "Approve two commissions before their hold period ends",
        "value": {
            "decision": "approve",
            "commission_ids": [
                "0197b8fb-d000-7a8d-b12a-114bc21b523a:0197b8fb-d000-714a-9dd8-e1b7a8687fca",
                "0197b8fb-d000-7b50-a55e-7a144b70992e:0197b8fb-d000-714a-9dd8-e1b7a8687fca",
            ],
            "reason": "Order delivered and confirmed by the customer",
        },
    },
    "reject": {
        "summary": "Reject a self-referral",
        "value": {
            "decision": "reject",
            "commission_ids": [
                "0197b8fb-d000-7a8d-b12a-114bc21b523a:0197b8fb-d000-714a-9dd8-e1b7a8687fca"
            ],
            "reason": "The affiliate bought through its own link (self-referral)",
        },
    },
}


@router.get(
    "/commissions",
    dependencies=[_READERS],
    summary="List commissions: the review queue",
    responses=_NOT_BUILT,
)
def list_commissions(
    scope: ScopeDep,
    status_: Annotated[
        Status | None,
        Query(
            alias="status",
            description="pending | on_hold (the review queue) | approved | rejected | paid | "
            "reversed: the status now, decisions since the last build applied",
        ),
    ] = None,
    affiliate_id: Annotated[str | None, Query(max_length=64)] = None,
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    flagged: Annotated[
        bool | None, Query(description="Only commissions with (true) or without fraud flags")
    ] = None,
    converted_from: Annotated[
        datetime | None,
        Query(alias="from", description="Converted at or after (ISO 8601; UTC if no zone)"),
    ] = None,
    converted_to: Annotated[
        datetime | None, Query(alias="to", description="Converted before (ISO 8601)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str, Query(max_length=400, description="A previous page's next_after")] = "",
) -> CommissionPage:
    """Oldest conversion first. `status` is computed now with the ledger's rules from every
    decision and payment recorded, so a commission approved a minute ago is `approved` with
    `awaiting_ledger: true` until the ledger's next build moves its `ledger` balances.
    Affiliate keys see only their own commissions, without fraud flags, hold reasons or who
    decided; `flagged` is ignored for them."""
    if scope.affiliate_id is not None:
        flagged = None  # affiliates never learn which of theirs are flagged
    # A time without a zone is UTC, as the warehouse's.
    converted_from = converted_from and review.as_utc(converted_from)
    converted_to = converted_to and review.as_utc(converted_to)
    if converted_from and converted_to and converted_from >= converted_to:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`from` must be before `to`")
    filters = review.Filters(
        status=status_,
        affiliate_id=affiliate_id,
        campaign_id=campaign_id,
        flagged=flagged,
        converted_from=converted_from,
        converted_to=converted_to,
    )
    try:
        return review.list_commissions(scope, filters, limit, after)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.get(
    "/commissions/{commission_id}",
    dependencies=[_READERS],
    summary="One commission: pricing, ledger entries, decisions, payments",
    responses={**_NOT_FOUND, **_NOT_BUILT},
)
def get_commission(
    scope: ScopeDep, commission_id: Annotated[str, Path(max_length=300)]
) -> CommissionDetail:
    """`ledger_entries` are the ledger's as of its last build; `decisions` and `payments`
    include those taken since (`booked: false`)."""
    found = review.commission(scope, commission_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no commission {commission_id!r}")
    return found


def _decide(
    scope: ScopeDep, principal: PrincipalDep, decision: DecisionKind, ids: list[str], reason: str
) -> DecisionsRecorded:
    try:
        return review.decide(scope, principal, decision, ids, reason)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    except review.UnknownCommissions as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except review.DecisionConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


@router.post(
    "/commissions/decisions",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_ADMIN],
    summary="Approve, reject, hold or release commissions",
    responses=_DECISION_ERRORS,
)
def create_decisions(
    body: Annotated[DecisionCreate, Body(openapi_examples=_DECISION_EXAMPLES)],
    scope: ScopeDep,
    principal: PrincipalDep,
) -> DecisionsRecorded:
    """One decision per commission (at most 1000), all or nothing: unknown ids are a 404 and
    statuses that refuse the decision a 409, both listing every offending id. Refused: approve
    a rejected, paid or fully reversed commission; reject a rejected one; hold a rejected,
    paid or reversed one; release one that is not on hold. A reason is required to reject and
    to hold. Each decision is written to `commission_decisions` (decided_by: the caller) and
    audited; the status changes now, the ledger's balances at its next build."""
    return _decide(scope, principal, body.decision, body.commission_ids, body.reason)


@router.post(
    "/commissions/{commission_id}/approve",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_ADMIN],
    summary="Approve one commission",
    responses=_DECISION_ERRORS,
)
def approve_commission(
    scope: ScopeDep,
    principal: PrincipalDep,
    commission_id: Annotated[str, Path(max_length=300)],
    body: ReasonBody | None = None,
) -> DecisionsRecorded:
    """`POST /v1/commissions/decisions` with one id and `approve`; the body is optional."""
    reason = body.reason if body else ""
    return _decide(scope, principal, "approve", [commission_id], reason)


@router.post(
    "/commissions/{commission_id}/reject",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_ADMIN],
    summary="Reject one commission",
    responses=_DECISION_ERRORS,
)
def reject_commission(
    scope: ScopeDep,
    principal: PrincipalDep,
    commission_id: Annotated[str, Path(max_length=300)],
    body: ReasonBody,
) -> DecisionsRecorded:
    """`POST /v1/commissions/decisions` with one id and `reject`; the reason is required and
    shown to the affiliate."""
    return _decide(scope, principal, "reject", [commission_id], body.reason)
