"""Affiliates (merchant side): the list with filters, adding one directly or by invitation,
approving, rejecting, suspending and reactivating, and changing segments. Everything goes
through api/affiliates.py, which audits each change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, status
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from api import affiliates
from api.auth import EmailAddress, StateConflict
from api.console.web import PREFIX, Admin, AdminPost, Page

router = APIRouter()

PAGE_SIZE = 50
STATUSES = ("invited", "pending", "approved", "rejected", "suspended")
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailAddress)


def _list_page(
    current: Page,
    status_filter: str = "",
    segment: str = "",
    after: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    invitation: str = "",
    status_code: int = 200,
) -> Response:
    rows = affiliates.list_affiliates(
        current.scope,
        status=status_filter or None,
        segment=segment or None,
        limit=PAGE_SIZE,
        after=after,
    )
    next_url = ""
    if len(rows) == PAGE_SIZE:
        next_url = (
            f"{PREFIX}/affiliates?status={status_filter}&segment={segment}&after={rows[-1].id}"
        )
    return current.render(
        "affiliates.html",
        status_code=status_code,
        affiliates=rows,
        statuses=STATUSES,
        status_filter=status_filter,
        segment=segment,
        next_url=next_url,
        errors=errors or {},
        values=values or {},
        invitation=invitation,
    )


@router.get("/affiliates")
def affiliate_list(
    current: Admin, status: str = "", segment: str = "", after: str = ""
) -> Response:
    return _list_page(current, status if status in STATUSES else "", segment, after)


def _problems(display_name: str, country: str) -> dict[str, str]:
    errors = {}
    if not display_name.strip():
        errors["display_name"] = "form.required"
    if country and not (len(country) == 2 and country.isalpha() and country.isupper()):
        errors["country"] = "form.country"
    return errors


@router.post("/affiliates")
def add_affiliate(
    current: AdminPost,
    display_name: Annotated[str, Form(max_length=200)] = "",
    segment: Annotated[str, Form(max_length=64)] = "",
    country: Annotated[str, Form(max_length=2)] = "",
) -> Response:
    """An affiliate without a console login (the merchant manages its links)."""
    errors = _problems(display_name, country)
    if errors:
        values = {"display_name": display_name, "segment": segment, "country": country}
        return _list_page(current, errors=errors, values=values, status_code=422)
    created = affiliates.create_affiliate(
        current.scope, current.state, current.user, display_name.strip(), segment.strip(), country
    )
    return current.redirect(
        f"{PREFIX}/affiliates", flash="affiliate_added", name=created.display_name
    )


@router.post("/affiliates/invite")
def invite(
    current: AdminPost,
    display_name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    segment: Annotated[str, Form(max_length=64)] = "",
    country: Annotated[str, Form(max_length=2)] = "",
    locale: Annotated[str, Form()] = "pt-BR",
) -> Response:
    values = {"display_name": display_name, "email": email, "segment": segment, "country": country}
    errors = _problems(display_name, country)
    try:
        email = _EMAIL.validate_python(email)
    except ValidationError:
        errors["email"] = "form.email"
    if locale not in ("pt-BR", "en"):
        errors["locale"] = "error.locale"
    if errors:
        return _list_page(current, errors=errors, values=values, status_code=422)
    try:
        created, _, token = affiliates.invite_affiliate(
            current.scope,
            current.state,
            current.user,
            email,
            display_name.strip(),
            segment.strip(),
            country,
            "en" if locale == "en" else "pt-BR",
        )
    except StateConflict:
        errors["email"] = "affiliates.email_taken"
        return _list_page(current, errors=errors, values=values, status_code=409)
    # The token is shown this once (it is stored only as a hash): the merchant sends it.
    invitation = f"{current.state.settings.public_url}{PREFIX}/invite/{token}"
    return _list_page(current, invitation=invitation, values={"invited": created.display_name})


@router.post("/affiliates/{affiliate_id}/status")
def change_status(
    current: AdminPost,
    affiliate_id: str,
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    if action not in affiliates.TRANSITIONS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT)
    if action in affiliates.REASON_REQUIRED and not reason.strip():
        return current.redirect(f"{PREFIX}/affiliates", flash="reason_required")
    try:
        changed = affiliates.transition(
            current.scope,
            current.user,
            affiliate_id,
            action,  # type: ignore[arg-type]  # checked against TRANSITIONS above
            reason,
        )
    except StateConflict:
        return current.redirect(f"{PREFIX}/affiliates", flash="affiliate_conflict")
    if changed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.redirect(
        f"{PREFIX}/affiliates",
        flash="affiliate_status",
        name=changed.display_name,
        status=current.t.label("status", changed.status),
    )


@router.post("/affiliates/{affiliate_id}/segment")
def change_segment(
    current: AdminPost,
    affiliate_id: str,
    segment: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    changed = affiliates.update_affiliate(
        current.scope, current.user, affiliate_id, {"segment": segment.strip()}
    )
    if changed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.redirect(
        f"{PREFIX}/affiliates", flash="affiliate_segment", name=changed.display_name
    )
