"""Webhooks (merchant admins): the tenant's endpoints, creating one (its signing secret shown
once), changing its URL and event types, disabling and re-enabling, deleting, rotating the
secret (shown once), sending a test event, and the delivery log of an endpoint with retries
by hand. The rules and the audit are api/webhooks.py's; delivering is pipelines/webhooks.py;
docs/webhooks.md is what the receiver's developer reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Form, HTTPException, Query, status
from fastapi.responses import Response

from api import webhooks
from api.console.web import PREFIX, Admin, AdminPost, Page
from api.webhooks import StoredEndpoint, SubscribableType
from pipelines.webhooks import deliver_now

router = APIRouter()

EVENT_TYPES: tuple[str, ...] = get_args(SubscribableType)
OUTCOMES = ("delivered", "failed", "gave_up")
DELIVERIES_PER_PAGE = 50
OutcomeFilter = Literal["", "delivered", "failed", "gave_up"]


def _endpoint(current: Page, endpoint_id: str) -> StoredEndpoint:
    # Another tenant's endpoint is not in this scope: a 404, like an id that never existed.
    stored = webhooks.endpoint(current.scope, endpoint_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return stored


def _problems(current: Page, url: str, event_types: list[str]) -> dict[str, str]:
    """Field -> catalog key of what is wrong with an endpoint's form."""
    errors = {}
    if not url.strip():
        errors["url"] = "form.required"
    elif webhooks.url_problem(url.strip(), current.state.settings):
        errors["url"] = "webhooks.bad_url"
    if not event_types:
        errors["event_types"] = "webhooks.pick_events"
    elif not set(event_types) <= set(EVENT_TYPES):
        errors["event_types"] = "webhooks.unknown_event"
    return errors


# -- the list and creating -----------------------------------------------------------------------


def _list_page(
    current: Page,
    errors: dict[str, str] | None = None,
    values: Mapping[str, object] | None = None,
    status_code: int = 200,
) -> Response:
    return current.render(
        "webhooks.html",
        status_code=status_code,
        endpoints=webhooks.endpoints(current.scope),
        event_types=EVENT_TYPES,
        errors=errors or {},
        values=values or {"url": "", "event_types": []},
    )


@router.get("/webhooks")
def endpoint_list(current: Admin) -> Response:
    return _list_page(current)


@router.post("/webhooks")
def create(
    current: AdminPost,
    url: Annotated[str, Form(max_length=2048)] = "",
    event_types: Annotated[list[str] | None, Form()] = None,
) -> Response:
    chosen = event_types or []
    errors = _problems(current, url, chosen)
    if errors:
        values = {"url": url, "event_types": chosen}
        return _list_page(current, errors=errors, values=values, status_code=422)
    stored, secret = webhooks.create_endpoint(
        current.scope, current.user, current.state.vault, url.strip(), chosen
    )
    # Rendered, not redirected: the secret must not travel in a URL or a cookie. It is in
    # this answer only (stored encrypted, never shown again).
    return _detail_page(current, stored, secret=secret, status_code=status.HTTP_201_CREATED)


# -- one endpoint and its delivery log -----------------------------------------------------------


def _detail_page(
    current: Page,
    stored: StoredEndpoint,
    outcome: str = "",
    before: str = "",
    secret: str = "",
    errors: dict[str, str] | None = None,
    values: Mapping[str, object] | None = None,
    status_code: int = 200,
) -> Response:
    found = webhooks.deliveries(
        current.scope, stored.id, outcome=outcome, limit=DELIVERIES_PER_PAGE + 1, before=before
    )
    shown = found[:DELIVERIES_PER_PAGE]
    next_url = ""
    if len(found) > DELIVERIES_PER_PAGE:
        next_url = (
            f"{PREFIX}/webhooks/{stored.id}?outcome={outcome}&before={shown[-1].delivery_id}"
            "#deliveries"
        )
    return current.render(
        "webhook.html",
        status_code=status_code,
        endpoint=stored,
        secret=secret,
        event_types=EVENT_TYPES,
        deliveries=shown,
        outcomes=OUTCOMES,
        outcome=outcome,
        next_url=next_url,
        errors=errors or {},
        values=values or {"url": stored.url, "event_types": stored.event_types},
    )


@router.get("/webhooks/{endpoint_id}")
def endpoint_detail(
    current: Admin,
    endpoint_id: str,
    outcome: OutcomeFilter = "",
    before: Annotated[str, Query(max_length=64)] = "",  # the last delivery_id seen
) -> Response:
    return _detail_page(current, _endpoint(current, endpoint_id), outcome, before)


@router.post("/webhooks/{endpoint_id}")
def update(
    current: AdminPost,
    endpoint_id: str,
    url: Annotated[str, Form(max_length=2048)] = "",
    event_types: Annotated[list[str] | None, Form()] = None,
) -> Response:
    stored = _endpoint(current, endpoint_id)
    chosen = event_types or []
    errors = _problems(current, url, chosen)
    if errors:
        values = {"url": url, "event_types": chosen}
        return _detail_page(current, stored, errors=errors, values=values, status_code=422)
    webhooks.update_endpoint(
        current.scope, current.user, stored, url=url.strip(), event_types=chosen
    )
    return current.redirect(f"{PREFIX}/webhooks/{endpoint_id}", flash="webhook_saved")


@router.post("/webhooks/{endpoint_id}/status")
def change_status(
    current: AdminPost, endpoint_id: str, action: Annotated[str, Form()] = ""
) -> Response:
    """Disable (nothing is sent; events wait in the outbox) or enable (the missed events
    younger than 7 days are delivered, and the count of failures starts again)."""
    if action not in ("enable", "disable"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT)
    stored = _endpoint(current, endpoint_id)
    new_status: Literal["active", "disabled"] = "active" if action == "enable" else "disabled"
    webhooks.update_endpoint(current.scope, current.user, stored, status=new_status)
    return current.redirect(
        f"{PREFIX}/webhooks/{endpoint_id}",
        flash="webhook_status",
        status=current.t.label("endpoint_status", new_status),
    )


@router.post("/webhooks/{endpoint_id}/delete")
def delete(current: AdminPost, endpoint_id: str, confirm: Annotated[str, Form()] = "") -> Response:
    stored = _endpoint(current, endpoint_id)
    if confirm != "yes":
        return current.redirect(f"{PREFIX}/webhooks/{endpoint_id}", flash="confirm_delete")
    webhooks.delete_endpoint(current.scope, current.user, stored)
    return current.redirect(f"{PREFIX}/webhooks", flash="webhook_deleted", url=stored.url)


@router.post("/webhooks/{endpoint_id}/rotate-secret")
def rotate_secret(current: AdminPost, endpoint_id: str) -> Response:
    """A new secret, in force at once; shown in this answer only (as when created)."""
    rotated, secret = webhooks.rotate_secret(
        current.scope, current.user, current.state.vault, _endpoint(current, endpoint_id)
    )
    return _detail_page(current, rotated, secret=secret)


@router.post("/webhooks/{endpoint_id}/test")
def send_test(current: AdminPost, endpoint_id: str) -> Response:
    stored = _endpoint(current, endpoint_id)
    if stored.status != "active":
        return current.redirect(f"{PREFIX}/webhooks/{endpoint_id}", flash="webhook_disabled")
    webhooks.enqueue_test_event(current.scope, current.user, stored)
    return current.redirect(f"{PREFIX}/webhooks/{endpoint_id}", flash="webhook_test_queued")


@router.post("/webhooks/{endpoint_id}/retry")
def retry(
    current: AdminPost, endpoint_id: str, event_id: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Sends one event to the endpoint again, now (waiting up to the delivery timeout), and
    shows the attempt's outcome; it lands in the log like any attempt."""
    stored = _endpoint(current, endpoint_id)
    if stored.status != "active":
        return current.redirect(f"{PREFIX}/webhooks/{endpoint_id}", flash="webhook_disabled")
    event = webhooks.event_for(current.scope, stored, event_id)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    delivery = deliver_now(current.scope, current.state.vault, stored, event, current.user)
    return current.redirect(
        f"{PREFIX}/webhooks/{endpoint_id}#deliveries",
        flash="webhook_retried",
        outcome=current.t.label("delivery_outcome", delivery.outcome),
    )
