"""Conversion capture: orders and leads from merchants' servers (`POST /v1/conversions`),
refunds, cancellations and chargebacks (`POST /v1/order-updates`), and the TUNE-style
postback for platforms that can only fire a URL (`GET /v1/postback`).

Every accepted request is written to the event log with `append_durable` (fsynced) before it
is answered. The tenant is always the API key's: no body names one. Money arrives as decimal
strings or JSON numbers and is converted exactly (no float ever touches it) to integer minor
units of an ISO 4217 currency. Idempotency (by order id, by refund id, by Idempotency-Key)
is decided by the index in `api.idempotency`, whose docstring explains the crash ordering;
docs/tracking.md ("Conversions") is the user-facing description of every rule here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from api.deps import ERROR_RESPONSES, ErrorDetail, ScopeDep, StateDep, StrictBody, require
from api.idempotency import KEY_TTL_S, Entry, Outcome, Transaction
from api.state import EdgeState
from api.store import Principal, TenantScope
from rastro.contracts import Conversion, LineItem, OrderUpdate, encode
from rastro.ids import uuid7
from rastro.money import (
    format_minor,
    parse_amount,
    parse_currency,
    to_minor,
)

# -- limits ------------------------------------------------------------------------------------

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_AGE = timedelta(days=400)
MAX_LINE_ITEMS = 1000


def _epoch_ms(value: object) -> int | None:
    """ISO 8601 with a time zone, or epoch milliseconds; within the accepted window."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time or epoch milliseconds")
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # query strings carry numbers as text
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                "must be an ISO 8601 time with a time zone (2025-03-01T14:30:00-03:00, "
                "...Z) or integer epoch milliseconds"
            ) from None
        if moment.tzinfo is None:
            raise ValueError(
                "needs a time zone: add Z or an offset such as -03:00 (a time without one "
                "is ambiguous)"
            )
        ms = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    else:
        raise ValueError("must be an ISO 8601 time or integer epoch milliseconds")
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    if ms > now_ms + FUTURE_TOLERANCE // timedelta(milliseconds=1):
        raise ValueError(
            f"is in the future ({_iso(ms)}); at most 5 minutes ahead of the server's clock "
            f"({_iso(now_ms)}) is accepted"
        )
    if ms < now_ms - MAX_AGE // timedelta(milliseconds=1):
        hint = " (it looks like epoch seconds: send milliseconds)" if 10**8 <= ms < 10**11 else ""
        raise ValueError(f"is more than {MAX_AGE.days} days old ({_iso(ms)}){hint}")
    return ms


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


_MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^\d+(\.\d+)?$", "examples": ["129.90"]},
        {"type": "number", "minimum": 0},
    ]
}
Money = Annotated[Decimal | None, BeforeValidator(parse_amount), WithJsonSchema(_MONEY_SCHEMA)]
RequiredMoney = Annotated[Decimal, BeforeValidator(parse_amount), WithJsonSchema(_MONEY_SCHEMA)]
Currency = Annotated[
    str | None,
    BeforeValidator(parse_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["BRL"]}),
]
OccurredAt = Annotated[
    int | None,
    BeforeValidator(_epoch_ms),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "description": "epoch milliseconds"},
            ]
        }
    ),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=256)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


# -- request and response schemas ------------------------------------------------------------


class LineItemIn(StrictBody):
    sku: Id
    category: Text = ""
    quantity: int = Field(1, ge=1, le=1_000_000)
    amount: RequiredMoney = Field(
        description="The line's total (quantity x unit price, after the line's own discounts)"
    )


_EMAIL_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class ConversionCreate(StrictBody):
    """An order (`sale`) or a `lead`, as the merchant's server knows it."""

    order_id: Id = Field(description="The merchant's order (or lead) id: unique per tenant")
    kind: Literal["sale", "lead"] = "sale"
    amount: Money = Field(
        None, description="Total paid, tax and shipping included (required for a sale)"
    )
    net: Money = Field(None, description="Commission base; default: amount - tax - shipping")
    tax: Money = Field(None, description="Tax included in amount")
    shipping: Money = Field(None, description="Shipping included in amount")
    discount: Money = Field(None, description="Order-level discounts already taken off amount")
    currency: Currency = Field(None, description="ISO 4217 code; required with an amount")
    line_items: list[LineItemIn] = Field(default_factory=list, max_length=MAX_LINE_ITEMS)
    coupon_codes: list[Id] = Field(default_factory=list, max_length=20)
    click_id: Text = Field("", description="The click id the redirect appended (rclid, ...)")
    cookie_id: Text = ""
    customer_id: Text = ""
    email_sha256: str | None = Field(
        None, description="Hex SHA-256 of the trimmed, lower-case email (preferred to email)"
    )
    email: str | None = Field(
        None, max_length=254, description="Hashed on arrival as email_sha256; never stored"
    )
    is_new_customer: bool = False
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")
    subscription_id: Text = ""
    renewal_number: int = Field(
        0, ge=0, le=100_000, description="0: first payment; n: n-th renewal"
    )
    occurred_at: OccurredAt = Field(
        None, description="When the order was placed; default: when it is received"
    )


class ConversionAccepted(BaseModel):
    """What was recorded. `duplicate` is true when nothing new was written."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "conversion_id": "3f1c7f43-5b0e-5a8e-9a51-0d4f8d1f6a2b",
                    "order_id": "PED-10293",
                    "version": 1,
                    "event_id": "6a2f0d1e-8c4b-5f7a-b0c9-3e5d7a1b2c4d",
                    "kind": "sale",
                    "amount_minor": 25990,
                    "net_minor": 21659,
                    "currency": "BRL",
                    "duplicate": False,
                }
            ]
        }
    )

    conversion_id: str = Field(description="Rastro's id of the order, the same for every version")
    order_id: str
    version: int = Field(description="1, then 2, 3, ... when the order is sent again changed")
    event_id: str = Field(description="The id of this version's event")
    kind: Literal["sale", "lead"]
    amount_minor: int
    net_minor: int
    currency: str
    duplicate: bool = False


class OrderUpdateCreate(StrictBody):
    """A refund (partial or full), cancellation or chargeback of an order."""

    order_id: Id
    kind: Literal["refund", "cancellation", "chargeback"]
    amount: Money = Field(
        None,
        description="What leaves the merchant (positive); default: all that is left of the order",
    )
    currency: Currency = Field(None, description="Must be the order's; required if unknown here")
    update_id: Text = Field("", description="The source's id of the refund or dispute (dedupes)")
    reason: str = Field("", max_length=500)
    occurred_at: OccurredAt = None


class OrderUpdateAccepted(BaseModel):
    event_id: str
    order_id: str
    update_id: str
    kind: Literal["refund", "cancellation", "chargeback"]
    amount_minor: int
    currency: str
    remaining_minor: int | None = Field(
        description="What is left of the order after this; null when the order is not known "
        "to this server (the amount could not be checked)"
    )
    duplicate: bool = False


class PostbackQuery(StrictBody):
    api_key: str = Field(description="An API key with only the ingest scope (URLs get logged)")
    transaction_id: Id = Field(description="The click id")
    order_id: Id
    amount: Money = None
    currency: Currency = Field(None, description="Default: the tenant's currency")
    kind: Literal["sale", "lead"] = "sale"
    coupon_code: Text = ""
    occurred_at: OccurredAt = None


_M = TypeVar("_M", ConversionAccepted, OrderUpdateAccepted)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Any unique string (a UUID): a retry with the same key and body is "
        "answered with the original result; the same key with another body is a 409",
    ),
]


# -- exact JSON numbers, clear errors --------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a number JSON allows", name, 0)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 40:  # no field takes more; spares int() a huge parse
        raise json.JSONDecodeError("an integer with more than 40 digits", text[:50], 0)
    return int(text)


class _ExactJSONRequest(Request):
    """JSON numbers with a fraction become `Decimal`, never float: 0.1 stays 0.1."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(
                await self.body(),
                parse_float=Decimal,
                parse_int=_bounded_int,
                parse_constant=_no_constants,
            )
        return self._json


_HINTS = {
    "tenant_id": "the tenant is the API key's; a body never names one",
    "ts": "did you mean 'occurred_at'?",
    "total": "did you mean 'amount'?",
    "value": "did you mean 'amount'?",
    "transaction_id": "did you mean 'click_id'?",
    "email_hash": "did you mean 'email_sha256'?",
    "coupon_code": "did you mean 'coupon_codes' (a list)?",
    "items": "did you mean 'line_items'?",
    "price": "a line item's 'amount' is the line's total",
}
_FIELD_NAMES = sorted(
    {
        name
        for model in (ConversionCreate, LineItemIn, OrderUpdateCreate, PostbackQuery)
        for name in model.model_fields
    }
)


def _unknown_field(name: str) -> str:
    hint = _HINTS.get(name)
    if hint is None:
        close = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else "see the schema at /docs"
    return f"unknown field '{name}': {hint}"


def _clear_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's errors, with readable messages and without echoing secrets or personal data
    (an api_key, an email, a whole body)."""
    cleared = []
    for error in errors:
        loc: list[Any] = list(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden" and loc:
            message = _unknown_field(str(loc[-1]))
        item: dict[str, Any] = {
            "type": error.get("type", "value_error"),
            "loc": loc,
            "msg": message,
        }
        value = error.get("input")
        sensitive = any(part in ("email", "api_key", "email_sha256") for part in loc)
        if not sensitive and isinstance(value, str | int | Decimal) and len(str(value)) <= 200:
            item["input"] = str(value) if isinstance(value, Decimal) else value
        cleared.append(item)
    return cleared


class _ConversionRoute(APIRoute):
    """Exact decimals in JSON bodies and clear 422s; the postback (a `PlainTextResponse`
    route) answers every error as `success=false;error=...;` with the same status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        plain = self.response_class is PlainTextResponse

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(_ExactJSONRequest(request.scope, request.receive))
            except RequestValidationError as exc:
                errors = _clear_errors(exc.errors())
                if plain:
                    return _postback_answer(422, "; ".join(_line(e) for e in errors))
                raise RequestValidationError(errors, body=exc.body) from None
            except HTTPException as exc:
                if plain:
                    return _postback_answer(exc.status_code, str(exc.detail))
                raise

        return route_handler


def _line(error: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0])
    return f"{path}: {error['msg']}"


def _invalid(where: str, *errors: tuple[tuple[str | int, ...], str]) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, *loc), "msg": msg} for loc, msg in errors]
    )


router = APIRouter(prefix="/v1", tags=["conversions"], route_class=_ConversionRoute)
_INGEST: Any = require("ingest")  # admin or ingest keys


# -- normalization -----------------------------------------------------------------------------

_TENANT_CURRENCY: dict[str, tuple[float, str]] = {}
_TENANT_CURRENCY_LOCK = threading.Lock()


def _tenant_currency(tenant: TenantScope) -> str:
    """The tenant's default currency (for leads and postbacks without one), cached 5 min."""
    cached = _TENANT_CURRENCY.get(tenant.tenant_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    currency = tenant.tenant().default_currency
    with _TENANT_CURRENCY_LOCK:
        _TENANT_CURRENCY[tenant.tenant_id] = (time.monotonic() + 300, currency)
    return currency


def _email_hash(body: ConversionCreate, state: EdgeState, tenant_id: str) -> str:
    if body.email is not None:
        email = body.email.strip().lower()
        if not _EMAIL.match(email):
            raise _invalid("body", (("email",), "is not an email address"))
        sha = hashlib.sha256(email.encode()).hexdigest()
    elif body.email_sha256 is not None:
        if not _EMAIL_SHA256.match(body.email_sha256.strip()):
            raise _invalid(
                "body",
                (
                    ("email_sha256",),
                    "must be 64 hex digits: SHA-256 of the trimmed, lower-case email",
                ),
            )
        sha = body.email_sha256.strip().lower()
    else:
        return ""
    return state.pseudonym(tenant_id, "email", sha)


def normalize_order(
    body: ConversionCreate,
    *,
    source: str,
    where: str,
    default_currency: Callable[[], str],
    email_hash: Callable[[ConversionCreate], str],
) -> dict[str, Any]:
    """The order in the contract's terms (minor units, codes, hashes), or a 422 naming every
    field at fault. The result's canonical JSON is the order's fingerprint."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if body.email is not None and body.email_sha256 is not None:
        errors.append((("email",), "send email or email_sha256, not both"))
    if body.currency is None and body.amount is not None and where == "body":
        errors.append((("currency",), "is required with an amount"))
    if body.kind == "sale" and body.amount is None:
        errors.append((("amount",), "is required for a sale"))
    if body.renewal_number and not body.subscription_id:
        errors.append((("renewal_number",), "needs a subscription_id"))
    if errors:
        raise _invalid(where, *errors)
    currency = body.currency or default_currency()

    def minor(value: Decimal | None, loc: tuple[str | int, ...]) -> int:
        if value is None:
            return 0
        try:
            return to_minor(value, currency)
        except ValueError as exc:
            errors.append((loc, str(exc)))
            return 0

    amount = minor(body.amount, ("amount",))
    tax = minor(body.tax, ("tax",))
    shipping = minor(body.shipping, ("shipping",))
    discount = minor(body.discount, ("discount",))
    net = minor(body.net, ("net",)) if body.net is not None else amount - tax - shipping
    lines: list[dict[str, Any]] = [
        {
            "sku": item.sku,
            "category": item.category,
            "quantity": item.quantity,
            "amount_minor": minor(item.amount, ("line_items", i, "amount")),
        }
        for i, item in enumerate(body.line_items)
    ]
    if not errors:
        if tax + shipping > amount:
            errors.append((("tax",), "tax plus shipping exceed the amount they are part of"))
        if body.net is not None and net > amount:
            errors.append((("net",), "must not exceed the amount"))
        lines_total = sum(line["amount_minor"] for line in lines)
        if lines_total > amount + discount:
            errors.append(
                (
                    ("line_items",),
                    f"the lines add up to {format_minor(lines_total, currency)}, more than "
                    f"the amount plus the order's discount "
                    f"({format_minor(amount + discount, currency)})",
                )
            )
    if errors:
        raise _invalid(where, *errors)
    return {
        "order_id": body.order_id,
        "kind": body.kind,
        "amount_minor": amount,
        "net_minor": net,
        "tax_minor": tax,
        "shipping_minor": shipping,
        "discount_minor": discount,
        "currency": currency,
        "line_items": lines,
        "coupon_codes": list(body.coupon_codes),
        "click_id": body.click_id,
        "cookie_id": body.cookie_id,
        "customer_id": body.customer_id,
        "email_hash": email_hash(body),
        "is_new_customer": body.is_new_customer,
        "country": (body.country or "").upper(),
        "subscription_id": body.subscription_id,
        "renewal_number": body.renewal_number,
        "occurred_at": body.occurred_at,
        "source": source,
    }


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# Ids derived from what identifies a record: the same order sent twice, to two hosts, or again
# after a crash, is the same event (see api/idempotency.py). RFC 9562 name-based (v5) UUIDs.
_ID_NAMESPACE = uuid.UUID("4c1a3f5e-6b0d-5e2a-9f41-7d8c2b9e0a13")


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _key_conflict(key: str) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"Idempotency-Key {key!r} was already used with a different request; use a new key "
        "for a new request (a retry must resend exactly the same body)",
    )


def _replayed_request(tx: Transaction, key: str | None, fingerprint: str) -> Outcome | None:
    """The answer already given to this Idempotency-Key, or None; 409 if the key was used
    for a different request."""
    if key is None:
        return None
    seen = tx.get("request", key, ttl_s=KEY_TTL_S)
    if seen is None:
        return None
    if seen.fingerprint != fingerprint:
        raise _key_conflict(key)
    return Outcome(seen.response, status.HTTP_200_OK, replayed=True)


def _replayed_key(key: str | None, fingerprint: str, seen: Entry) -> list[Entry]:
    """An Idempotency-Key sent with a request that replays an earlier one: remember it."""
    if key is None:
        return []
    return [Entry("request", key, fingerprint, seen.response, seen.event_id)]


def accept_order(
    state: EdgeState, tenant_id: str, order: dict[str, Any], key: str | None
) -> Outcome:
    fingerprint = _digest(order)
    request_fingerprint = _digest("conversion", fingerprint)
    order_id = order["order_id"]
    received_at = _now_ms()

    def decide(tx: Transaction) -> Outcome:
        replayed = _replayed_request(tx, key, request_fingerprint)
        if replayed is not None:
            return replayed
        current = tx.get("order", order_id)
        if current is not None and current.version > 0:
            same = tx.get("version", f"{order_id}\x1f{fingerprint}")
            if same is None and order["source"] == "postback":
                same = current  # a postback never rewrites a known order
            if same is not None:
                entries = _replayed_key(key, request_fingerprint, same)
                return Outcome(same.response, status.HTTP_200_OK, True, entries)
        taken_back = current.taken_back_minor if current is not None else 0
        if current is not None and taken_back and current.currency != order["currency"]:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"order {order_id!r} has refunds or chargebacks recorded in {current.currency}; "
                f"its currency cannot change to {order['currency']}",
            )
        version = current.version + 1 if current is not None else 1
        conversion_id = derived_id("conversion", tenant_id, order_id)
        event_id = derived_id("conversion", tenant_id, order_id, str(version), fingerprint)
        fields = {k: v for k, v in order.items() if k not in ("occurred_at", "line_items")}
        record = Conversion(
            event_id=event_id,
            tenant_id=tenant_id,
            ts=order["occurred_at"] or received_at,
            received_at=received_at,
            conversion_id=conversion_id,
            version=version,
            line_items=[LineItem(**line) for line in order["line_items"]],
            **fields,
        )
        response = ConversionAccepted(
            conversion_id=conversion_id,
            order_id=order_id,
            version=version,
            event_id=event_id,
            kind=order["kind"],
            amount_minor=order["amount_minor"],
            net_minor=order["net_minor"],
            currency=order["currency"],
        ).model_dump(mode="json")
        entries = [
            Entry(
                "order",
                order_id,
                fingerprint,
                response,
                event_id,
                conversion_id=conversion_id,
                version=version,
                currency=order["currency"],
                amount_minor=order["amount_minor"],
                taken_back_minor=taken_back,
            ),
            Entry("version", f"{order_id}\x1f{fingerprint}", fingerprint, response, event_id),
        ]
        if key is not None:
            entries.append(Entry("request", key, request_fingerprint, response, event_id))
        return Outcome(
            response,
            status.HTTP_201_CREATED if version == 1 else status.HTTP_200_OK,
            replayed=False,
            entries=entries,
            record=encode(record),
            event_id=event_id,
        )

    index = state.idempotency
    return index.run(tenant_id, state.log, decide)


def accept_order_update(
    state: EdgeState, tenant_id: str, body: OrderUpdateCreate, key: str | None
) -> Outcome:
    given = {
        "order_id": body.order_id,
        "kind": body.kind,
        "amount": None if body.amount is None else format(body.amount, "f"),
        "currency": body.currency,
        "update_id": body.update_id,
        "reason": body.reason,
        "occurred_at": body.occurred_at,
    }
    fingerprint = _digest(given)
    request_fingerprint = _digest("order_update", fingerprint)
    order_id = body.order_id
    received_at = _now_ms()

    def decide(tx: Transaction) -> Outcome:
        replayed = _replayed_request(tx, key, request_fingerprint)
        if replayed is not None:
            return replayed
        update_key = f"{order_id}\x1f{body.update_id}"
        if body.update_id:
            seen = tx.get("update", update_key)
            if seen is not None:
                if seen.fingerprint != fingerprint:
                    raise HTTPException(
                        status.HTTP_409_CONFLICT,
                        f"update_id {body.update_id!r} of order {order_id!r} was already "
                        "recorded with different values",
                    )
                entries = _replayed_key(key, request_fingerprint, seen)
                return Outcome(seen.response, status.HTTP_200_OK, True, entries)
        current = tx.get("order", order_id)
        currency = body.currency
        if current is not None and current.currency:
            if currency is not None and currency != current.currency:
                raise _invalid(
                    "body", (("currency",), f"order {order_id!r} is in {current.currency}")
                )
            currency = current.currency
        if currency is None:
            raise _invalid(
                "body",
                (("currency",), f"is required: order {order_id!r} is not known to this server"),
            )
        left = None  # unknown: the order has not been seen here
        if current is not None and current.version > 0:
            left = max(0, current.amount_minor - current.taken_back_minor)
        if body.amount is not None:
            try:
                amount = to_minor(body.amount, currency)
            except ValueError as exc:
                raise _invalid("body", (("amount",), str(exc))) from None
            if amount == 0:
                raise _invalid("body", (("amount",), "must be greater than 0"))
            if left is not None and amount > left:
                assert current is not None
                raise _invalid(
                    "body",
                    (
                        ("amount",),
                        f"{format_minor(amount, currency)} exceeds what is left of order "
                        f"{order_id!r}: {format_minor(left, currency)} (its amount, "
                        f"{format_minor(current.amount_minor, currency)}, less "
                        f"{format_minor(current.taken_back_minor, currency)} already "
                        "refunded, cancelled or charged back)",
                    ),
                )
        elif left is None:
            raise _invalid(
                "body",
                (
                    ("amount",),
                    f"is required: order {order_id!r} is not known to this server, so what is "
                    "left of it cannot be computed",
                ),
            )
        elif left == 0 and body.kind == "refund":
            raise _invalid("body", (("amount",), f"nothing is left of order {order_id!r}"))
        else:
            amount = left
        if body.update_id:
            event_id = derived_id("order_update", tenant_id, order_id, body.update_id, fingerprint)
        elif key is not None:
            event_id = derived_id("order_update", tenant_id, "key", key, fingerprint)
        else:
            event_id = uuid7()
        record = OrderUpdate(
            event_id=event_id,
            tenant_id=tenant_id,
            ts=body.occurred_at or received_at,
            received_at=received_at,
            update_id=body.update_id,
            order_id=order_id,
            kind=body.kind,
            amount_minor=amount,
            currency=currency,
            reason=body.reason,
            source="s2s",
        )
        response = OrderUpdateAccepted(
            event_id=event_id,
            order_id=order_id,
            update_id=body.update_id,
            kind=body.kind,
            amount_minor=amount,
            currency=currency,
            remaining_minor=None if left is None else left - amount,
        ).model_dump(mode="json")
        if current is not None:
            order_entry = Entry(
                "order",
                order_id,
                current.fingerprint,
                current.response,
                event_id,
                conversion_id=current.conversion_id,
                version=current.version,
                currency=currency,
                amount_minor=current.amount_minor,
                taken_back_minor=current.taken_back_minor + amount,
            )
        else:  # refunds of an order not seen yet: kept, so that later ones add up
            order_entry = Entry(
                "order", order_id, "", {}, event_id, currency=currency, taken_back_minor=amount
            )
        entries = [order_entry]
        if body.update_id:
            entries.append(Entry("update", update_key, fingerprint, response, event_id))
        if key is not None:
            entries.append(Entry("request", key, request_fingerprint, response, event_id))
        return Outcome(response, status.HTTP_201_CREATED, False, entries, encode(record), event_id)

    index = state.idempotency
    return index.run(tenant_id, state.log, decide)


# -- the routes ---------------------------------------------------------------------------------

_CONVERSION_EXAMPLES: dict[str, Any] = {
    "sale": {
        "summary": "A sale with line items, a coupon and the click id",
        "value": {
            "order_id": "PED-10293",
            "amount": "259.90",
            "tax": "23.41",
            "shipping": "14.90",
            "discount": "26.00",
            "currency": "BRL",
            "line_items": [
                {"sku": "TEN-42", "category": "calcados", "quantity": 1, "amount": "199.90"},
                {"sku": "MEIA-3P", "category": "acessorios", "quantity": 2, "amount": "71.10"},
            ],
            "coupon_codes": ["ANA10"],
            "click_id": "01J8ZQ4T7VX3M2K9R5N6P0B1CD",
            "customer_id": "c-4471",
            "email_sha256": "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514",
            "is_new_customer": True,
            "country": "BR",
        },
    },
    "lead": {
        "summary": "A lead (no amount)",
        "value": {"order_id": "lead-8812", "kind": "lead", "click_id": "01J8ZQ4T7VX3M2K9R5N6P"},
    },
    "renewal": {
        "summary": "The third renewal of a subscription, with its time",
        "value": {
            "order_id": "inv_2025_03_9921",
            "amount": 4990,
            "currency": "JPY",
            "subscription_id": "sub_9921",
            "renewal_number": 3,
            "customer_id": "c-9921",
            "occurred_at": "2025-03-01T14:30:00+09:00",
        },
    },
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    409: {"model": ErrorDetail, "description": "The Idempotency-Key was used for another request"},
}


@router.post(
    "/conversions",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_INGEST],
    summary="Record an order or a lead (server to server)",
    response_description="The order was recorded (fsynced) for the first time",
    responses={
        200: {
            "model": ConversionAccepted,
            "description": "A repeat of a recorded order (`duplicate: true`, nothing written) "
            "or a new version of it (`version` > 1)",
        },
        **_ERRORS,
    },
)
def create_conversion(
    body: Annotated[ConversionCreate, Body(openapi_examples=_CONVERSION_EXAMPLES)],
    tenant: ScopeDep,
    state: StateDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ConversionAccepted:
    """The order is idempotent by `order_id`: the same order again is answered 200 with the
    original ids and writes nothing; the same `order_id` with other values is a new version
    of the order (200, `version` + 1, same `conversion_id`)."""
    order = normalize_order(
        body,
        source="s2s",
        where="body",
        default_currency=lambda: _tenant_currency(tenant),
        email_hash=lambda b: _email_hash(b, state, tenant.tenant_id),
    )
    outcome = accept_order(state, tenant.tenant_id, order, idempotency_key)
    return _answer(ConversionAccepted(**outcome.response), outcome, response)


def _answer(model: _M, outcome: Outcome, response: Response) -> _M:
    response.status_code = outcome.status
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
        model.duplicate = True
    return model


@router.post(
    "/order-updates",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_INGEST],
    summary="Record a refund, cancellation or chargeback of an order",
    responses={
        200: {"model": OrderUpdateAccepted, "description": "A repeat (nothing written)"},
        **_ERRORS,
        409: {"description": "The Idempotency-Key or update_id was used with other values"},
        422: {"description": "Invalid, or more than what is left of the order"},
    },
)
def create_order_update(
    body: Annotated[
        OrderUpdateCreate,
        Body(
            openapi_examples={
                "partial refund": {
                    "value": {
                        "order_id": "PED-10293",
                        "kind": "refund",
                        "amount": "71.10",
                        "currency": "BRL",
                        "update_id": "re_3PqL2x",
                        "reason": "customer returned the socks",
                    }
                },
                "cancellation": {"value": {"order_id": "PED-10293", "kind": "cancellation"}},
            }
        ),
    ],
    tenant: ScopeDep,
    state: StateDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderUpdateAccepted:
    """Checked against what is left of the order when this server knows the order; send
    `update_id` (the refund's or dispute's id at the source) or an Idempotency-Key so that a
    retry is not a second refund."""
    outcome = accept_order_update(state, tenant.tenant_id, body, idempotency_key)
    return _answer(OrderUpdateAccepted(**outcome.response), outcome, response)


def _postback_answer(status_code: int, error: str | None = None) -> PlainTextResponse:
    if error is None:
        return PlainTextResponse("success=true;")
    return PlainTextResponse(
        f"success=false;error={error.replace(';', ',')};", status_code=status_code
    )


def _postback_principal(
    state: StateDep,
    api_key: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> Principal:
    if not api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing api_key")
    principal = state.store.authenticate(api_key)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid, expired or revoked api_key")
    if set(principal.scopes) != {"ingest"}:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "only a key with just the ingest scope may be put in a URL (URLs end up in logs)"
            + (
                "; treat this admin key as leaked and revoke it"
                if "admin" in principal.scopes
                else ""
            ),
        )
    return principal


@router.get(
    "/postback",
    response_class=PlainTextResponse,
    summary="Record an order from a URL (TUNE-style postback)",
    response_description="`success=true;` (also for a repeat of a recorded order)",
    responses={
        401: {"description": "`success=false;error=...;`: no api_key, or an invalid one"},
        403: {"description": "`success=false;error=...;`: the key is not ingest-only"},
        422: {"description": "`success=false;error=...;`: the parameter at fault and why"},
    },
)
def postback(
    params: Annotated[PostbackQuery, Query()],
    principal: Annotated[Principal, Depends(_postback_principal)],
    state: StateDep,
) -> PlainTextResponse:
    """For platforms that can only fire a URL: `?transaction_id=<click id>&order_id=..&amount=
    ..&currency=..&api_key=<ingest key>`. Idempotent by `order_id` like the server-to-server
    call; a postback never changes an order already recorded."""
    tenant = state.store.for_tenant(principal.tenant_id)
    try:
        body = ConversionCreate(
            order_id=params.order_id,
            kind=params.kind,
            amount=params.amount,
            currency=params.currency,
            click_id=params.transaction_id,
            coupon_codes=[params.coupon_code] if params.coupon_code else [],
            occurred_at=params.occurred_at,
        )
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        ) from None
    order = normalize_order(
        body,
        source="postback",
        where="query",
        default_currency=lambda: _tenant_currency(tenant),
        email_hash=lambda _: "",
    )
    accept_order(state, principal.tenant_id, order, None)
    return _postback_answer(200)
