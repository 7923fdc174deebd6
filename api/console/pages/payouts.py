"""Payouts (merchant side): batches of approved balances, prepared, viewed, exported as the
files the bank or PayPal takes, and marked paid. Everything goes through api/payouts.py,
which never pays a commission twice and audits each step; payments reach the ledger at its
next build (the page says so)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, status
from fastapi.responses import Response

from api import payouts
from api.console.web import PREFIX, Admin, AdminPost

router = APIRouter()

EXPORT_FORMATS = ("pix", "bank_transfer", "paypal")


@router.get("/payouts")
def batch_list(current: Admin, after: str = "") -> Response:
    try:
        found = payouts.list_batches(current.scope, 50, after)
    except ValueError:  # a tampered cursor: the first page
        found = payouts.list_batches(current.scope, 50)
    next_url = f"{PREFIX}/payouts?after={found.next_after}" if found.next_after else ""
    return current.render(
        "payouts.html",
        batches=found.items,
        next_url=next_url,
        minimums=payouts.payout_settings(current.scope),
    )


@router.post("/payouts")
def prepare(current: AdminPost) -> Response:
    try:
        prepared = payouts.prepare_batch(current.scope, current.user)
    except payouts.NothingToPay:
        return current.redirect(f"{PREFIX}/payouts", flash="nothing_to_pay")
    return current.redirect(f"{PREFIX}/payouts/{prepared.batch_id}", flash="batch_prepared")


@router.get("/payouts/{batch_id}")
def batch_detail(current: Admin, batch_id: str) -> Response:
    found = payouts.batch(current.scope, batch_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.render("payout.html", b=found, formats=EXPORT_FORMATS)


@router.get("/payouts/{batch_id}/export/{export_format}/{currency}")
def export(current: Admin, batch_id: str, export_format: str, currency: str) -> Response:
    """The transfer file of one method and currency (a download; audited)."""
    if export_format not in EXPORT_FORMATS:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    try:
        file = payouts.export_batch(
            current.scope,
            current.state.vault,
            current.user,
            batch_id,
            export_format,  # type: ignore[arg-type]  # checked against EXPORT_FORMATS
            currency,
        )
    except payouts.ExportRefused:
        return current.redirect(f"{PREFIX}/payouts/{batch_id}", flash="export_refused")
    if file is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return Response(
        file.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


@router.post("/payouts/{batch_id}/pay")
def pay(
    current: AdminPost,
    batch_id: str,
    reference: Annotated[str, Form(max_length=200)] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Records the batch's transfers as made (after the merchant made them)."""
    if confirm != "yes":
        return current.redirect(f"{PREFIX}/payouts/{batch_id}", flash="confirm_paid")
    result = payouts.pay_batch(
        current.scope, current.user, batch_id, None, datetime.now(UTC), reference.strip()
    )
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.redirect(
        f"{PREFIX}/payouts/{batch_id}",
        flash="batch_paid",
        paid=len(result.newly_paid),
        skipped=len(result.skipped),
    )
