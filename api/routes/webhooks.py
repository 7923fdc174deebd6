"""Outgoing webhooks: a tenant's endpoints, their secrets, test events and delivery log
(admin only). The service is api/webhooks.py; delivering is pipelines/webhooks.py; what a
receiver must do is docs/webhooks.md."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import webhooks
from api.deps import (
    ERROR_RESPONSES,
    ErrorDetail,
    PrincipalDep,
    ScopeDep,
    StateDep,
    StrictBody,
    require,
)
from api.store import TenantScope
from api.webhooks import (
    EVENT_DESCRIPTIONS,
    Delivery,
    EventType,
    StoredEndpoint,
    SubscribableType,
    WebhookEndpoint,
)
from pipelines.webhooks import deliver_now
from rastro.settings import Settings

router = APIRouter(
    prefix="/v1",
    tags=["webhooks"],
    dependencies=[require("admin")],
    responses=ERROR_RESPONSES,
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such endpoint (or event) in this tenant"}
}
_DISABLED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorDetail, "description": "The endpoint is disabled: re-enable it first"}
}

_EXAMPLE_ENDPOINT: dict[str, Any] = {
    "id": "019a3b1e-7c2d-7f00-8a1b-2c3d4e5f6a7b",
    "url": "https://erp.loja.example.com.br/hooks/rastro",
    "event_types": ["commission.approved", "payout.paid"],
    "status": "active",
    "disabled_reason": "",
    "created_at": "2026-03-02T14:05:09.120Z",
    "updated_at": "2026-03-02T14:05:09.120Z",
}


def _check_url(url: str, settings: Settings) -> None:
    problem = webhooks.url_problem(url, settings)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {problem}")


class EventTypes(StrictBody):
    """Shared by create and update: what an endpoint subscribes to."""

    @field_validator("event_types", check_fields=False)
    @classmethod
    def _no_repeats(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("event_types lists a type twice")
        return value


class EndpointCreate(EventTypes):
    url: str = Field(max_length=2048, description="https URL of the receiver")
    event_types: list[SubscribableType] = Field(
        min_length=1, description="What to send (GET /v1/webhooks/event-types lists them)"
    )


class EndpointUpdate(EventTypes):
    url: str | None = Field(None, max_length=2048)
    event_types: list[SubscribableType] | None = Field(None, min_length=1)
    status: Literal["active", "disabled"] | None = Field(
        None, description="active re-enables a disabled endpoint (its failure count restarts)"
    )


class EndpointWithSecret(WebhookEndpoint):
    """An endpoint with its signing secret: shown in this answer only, never again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_EXAMPLE_ENDPOINT, "secret": "whsec_kQ3v9Xo1bC7yR2mN5tL8pA4sD6fG0hJ2wE3rT5yU7iO"}
            ]
        }
    )

    secret: str = Field(description="whsec_...: verify the Rastro-Signature header with it")


class EndpointList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_EXAMPLE_ENDPOINT]}]})

    items: list[WebhookEndpoint]


class EventTypeInfo(BaseModel):
    type: EventType
    description: str
    subscribable: bool = Field(description="False for webhook.test (sent only when asked)")


class TestEventQueued(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "webhook.test:019a3b20-11aa-7b3c-9d4e-5f6a7b8c9d0e",
                    "type": "webhook.test",
                    "delivery": "sent by the delivery worker within seconds",
                }
            ]
        }
    )

    event_id: str
    type: EventType
    delivery: str = Field(description="When to expect it")


class DeliveryList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "delivery_id": "019a3b21-0f00-7c1d-8e2f-3a4b5c6d7e8f",
                            "event_id": "commission.approved:9f0c2b7e61d3a4e5",
                            "event_type": "commission.approved",
                            "attempt": 2,
                            "trigger": "automatic",
                            "outcome": "failed",
                            "response_status": 503,
                            "error": "HTTP 503: upstream unavailable",
                            "duration_ms": 87,
                            "attempted_at": "2026-03-02T14:06:10.004Z",
                            "next_attempt_at": "2026-03-02T14:11:12.530Z",
                        }
                    ],
                    "next_before": None,
                }
            ]
        }
    )

    items: list[Delivery]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page")


EndpointId = Annotated[str, Path(description="The endpoint's id")]


def _endpoint(scope: TenantScope, endpoint_id: str) -> StoredEndpoint:
    # Another tenant's id is unknown here, like an id that never existed: 404, never 403.
    stored = webhooks.endpoint(scope, endpoint_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook endpoint {endpoint_id!r}")
    return stored


def _active(stored: StoredEndpoint) -> StoredEndpoint:
    if stored.status != "active":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"the endpoint is disabled ({stored.disabled_reason}): "
            'PATCH it with {"status": "active"} first',
        )
    return stored


@router.get(
    "/webhooks/event-types",
    summary="The event types endpoints can receive",
    description="Each type with what it means; docs/webhooks.md has their payloads.",
)
def list_event_types() -> list[EventTypeInfo]:
    return [
        EventTypeInfo(
            type=event_type,
            description=EVENT_DESCRIPTIONS[event_type],
            subscribable=event_type is not EventType.WEBHOOK_TEST,
        )
        for event_type in EventType
    ]


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    description=(
        "Events of the chosen types are POSTed to `url`, signed with the endpoint's secret "
        "(`Rastro-Signature`), from now on. The secret is in this answer only: store it."
    ),
    response_description="The endpoint, with its secret (shown once)",
)
def create_endpoint(
    body: Annotated[
        EndpointCreate,
        Body(
            openapi_examples={
                "commissions and payouts": {
                    "value": {
                        "url": "https://erp.loja.example.com.br/hooks/rastro",
                        "event_types": ["commission.approved", "payout.paid"],
                    }
                }
            }
        ),
    ],
    scope: ScopeDep,
    principal: PrincipalDep,
    state: StateDep,
) -> EndpointWithSecret:
    _check_url(body.url, state.settings)
    stored, secret = webhooks.create_endpoint(
        scope, principal, state.vault, body.url, list(body.event_types)
    )
    return EndpointWithSecret(**stored.public().model_dump(), secret=secret)


@router.get("/webhooks", summary="List the webhook endpoints")
def list_endpoints(scope: ScopeDep) -> EndpointList:
    return EndpointList(items=[stored.public() for stored in webhooks.endpoints(scope)])


@router.get("/webhooks/{endpoint_id}", summary="One webhook endpoint", responses=_NOT_FOUND)
def get_endpoint(endpoint_id: EndpointId, scope: ScopeDep) -> WebhookEndpoint:
    return _endpoint(scope, endpoint_id).public()


@router.patch(
    "/webhooks/{endpoint_id}",
    summary="Change an endpoint's URL or event types, or disable or re-enable it",
    description=(
        'Fields left out stay as they are. `"status": "active"` re-enables an endpoint '
        "disabled after failed deliveries; any change restarts its count of consecutive "
        "failures. Events created while it was disabled and less than 7 days old are "
        "delivered once it is active again."
    ),
    responses=_NOT_FOUND,
)
def update_endpoint(
    endpoint_id: EndpointId,
    body: Annotated[
        EndpointUpdate,
        Body(
            openapi_examples={
                "re-enable": {"value": {"status": "active"}},
                "new URL": {"value": {"url": "https://hooks.loja.example.com.br/rastro"}},
            }
        ),
    ],
    scope: ScopeDep,
    principal: PrincipalDep,
    state: StateDep,
) -> WebhookEndpoint:
    stored = _endpoint(scope, endpoint_id)
    if body.url is not None:
        _check_url(body.url, state.settings)
    event_types: list[str] | None = None if body.event_types is None else list(body.event_types)
    return webhooks.update_endpoint(
        scope, principal, stored, url=body.url, event_types=event_types, status=body.status
    ).public()


@router.delete(
    "/webhooks/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an endpoint: nothing more is sent to it",
    responses=_NOT_FOUND,
)
def delete_endpoint(endpoint_id: EndpointId, scope: ScopeDep, principal: PrincipalDep) -> Response:
    webhooks.delete_endpoint(scope, principal, _endpoint(scope, endpoint_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    summary="Replace an endpoint's signing secret",
    description=(
        "The new secret applies at once: every request from now on (retries included) is "
        "signed with it only. It is in this answer only."
    ),
    responses=_NOT_FOUND,
)
def rotate_secret(
    endpoint_id: EndpointId, scope: ScopeDep, principal: PrincipalDep, state: StateDep
) -> EndpointWithSecret:
    stored, secret = webhooks.rotate_secret(
        scope, principal, state.vault, _endpoint(scope, endpoint_id)
    )
    return EndpointWithSecret(**stored.public().model_dump(), secret=secret)


@router.post(
    "/webhooks/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a webhook.test event to this endpoint",
    description="Queued for the delivery worker; see its outcome in the delivery log.",
    responses={**_NOT_FOUND, **_DISABLED},
)
def send_test_event(
    endpoint_id: EndpointId, scope: ScopeDep, principal: PrincipalDep
) -> TestEventQueued:
    stored = _active(_endpoint(scope, endpoint_id))
    event = webhooks.enqueue_test_event(scope, principal, stored)
    return TestEventQueued(
        event_id=event.event_id,
        type=event.type,
        delivery="sent by the delivery worker within seconds",
    )


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    summary="The delivery log of an endpoint: every attempt, newest first",
    responses=_NOT_FOUND,
)
def list_deliveries(
    endpoint_id: EndpointId,
    scope: ScopeDep,
    outcome: Literal["delivered", "failed", "gave_up"] | None = None,
    event_type: EventType | None = None,
    event_id: str = Query("", max_length=200, description="Only the attempts of this event"),
    limit: int = Query(100, ge=1, le=1000),
    before: str = Query("", max_length=64, description="`next_before` of the previous page"),
) -> DeliveryList:
    stored = _endpoint(scope, endpoint_id)
    items = webhooks.deliveries(
        scope,
        stored.id,
        outcome=outcome or "",
        event_type=event_type.value if event_type else "",
        event_id=event_id,
        limit=limit,
        before=before,
    )
    return DeliveryList(
        items=items, next_before=items[-1].delivery_id if len(items) == limit else None
    )


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{event_id}/retry",
    summary="Deliver an event to this endpoint again, now",
    description=(
        "One attempt, made during this request (up to 10 s), recorded in the delivery log "
        "and answered. If it fails, automatic retries go on from there, as for any attempt. "
        "Any event of the endpoint's types can be sent again, however old."
    ),
    responses={**_NOT_FOUND, **_DISABLED},
)
def retry_delivery(
    endpoint_id: EndpointId,
    event_id: Annotated[str, Path(max_length=200, description="The event's id")],
    scope: ScopeDep,
    principal: PrincipalDep,
    state: StateDep,
) -> Delivery:
    stored = _active(_endpoint(scope, endpoint_id))
    event = webhooks.event_for(scope, stored, event_id)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r} for this endpoint")
    return deliver_now(scope, state.vault, stored, event, principal)
