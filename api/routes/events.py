"""The first-party tag (`GET /t.js`), the events it sends (`POST /v1/events`) and the no-JS
pixel (`GET /px.gif`): public endpoints, called by visitors' browsers on merchants' sites with
no API key. docs/tracking.md, "The first-party tag and pixel", is the reference.

What reaches the event log: one `PageEvent` per accepted event, `IdentityLink` records for the
identifiers an identify or lead carries, and a `Click` (source `landing_param`) when the tag saw
a link code in a landing parameter (`?via=CODE`) rather than a click id from the redirect.
The server adds what a browser must not be trusted with: the time received, the tenant-scoped
IP hash (never the address), the user agent, the email re-keyed under the tenant's key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any, Literal, TypedDict
from urllib.parse import SplitResult, parse_qs, urlsplit

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from api import visitors
from api.campaigns import in_force
from api.deps import StateDep
from api.state import EdgeState
from rastro.contracts import Click, Consent, IdentityLink, PageEvent, encode
from rastro.ids import uuid7

router = APIRouter(tags=["tracking"])
log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # also what browsers let sendBeacon queue per page
MAX_EVENTS = 50  # per batch
TAG_MAX_AGE_S = 300  # how long browsers and CDNs keep t.js: config changes show within it
DEFAULT_CLICK_PARAM = "rclid"
DEFAULT_WINDOW_DAYS = 30
# A browser's clock is not trusted: an event's time is the receipt time less the age the
# browser reports (sent_at - ts), and never older than this.
MAX_EVENT_AGE_MS = 24 * 3600 * 1000
MAX_PROPERTIES = 20

_TENANT = r"^[A-Za-z0-9-]{1,64}$"
_ID = r"^[A-Za-z0-9_-]{0,64}$"
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RAW_EMAIL = (
    "raw emails are refused: send email_sha256, the hex SHA-256 of the trimmed, lower-cased "
    "address (the tag does this)"
)
_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


# -- what browsers send --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Properties = dict[str, str | int | float | bool | None]


class _BrowserEvent(_Strict):
    ts: int | None = Field(
        None,
        ge=0,
        lt=32503680000000,
        description="When it happened, epoch milliseconds by the browser's clock (corrected "
        "with the batch's `sent_at`); absent: when received",
    )
    url: str = Field(
        "",
        max_length=2048,
        description="The page's absolute URL; its host must be one of the tenant's domains",
    )
    referrer: str = Field("", max_length=2048)
    click_id: str = Field("", pattern=_ID, description="The click id the visitor landed with")
    cookie_id: str = Field(
        "", pattern=_ID, description="The first-party visitor id (empty without consent)"
    )
    consent: Literal["granted", "denied", "unknown"] = Field(
        "unknown", description="The visitor's choice as the tag knows it"
    )
    properties: Properties = Field(
        default_factory=dict,
        description=f"Flat: at most {MAX_PROPERTIES} keys, strings of at most 512 characters, "
        "numbers, booleans; no email addresses",
    )

    @field_validator("properties", mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if len(value) > MAX_PROPERTIES:
            raise ValueError(f"at most {MAX_PROPERTIES} properties")
        for key, item in value.items():
            if not _PROPERTY_KEY.match(key):
                raise ValueError(f"property name {key[:70]!r} is not [A-Za-z0-9_.-]{{1,64}}")
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValueError(f"property {key!r} must be a string, number, boolean or null")
            if isinstance(item, str) and len(item) > 512:
                raise ValueError(f"property {key!r} is longer than 512 characters")
            if isinstance(item, str) and _EMAIL.search(item):
                raise ValueError(f"property {key!r} looks like an email address: {_RAW_EMAIL}")
        return value


class PageView(_BrowserEvent):
    """A page was shown. `properties` carries the landing parameters of its URL."""

    kind: Literal["page_view"]
    landing_click: bool = Field(
        False,
        description="The tag minted `click_id` for a link code in a landing parameter "
        "(`?via=CODE`): the server records that click",
    )


class _Identified(_BrowserEvent):
    customer_id: str = Field("", max_length=128, description="The merchant's id of the person")
    email_sha256: str = Field(
        "",
        pattern=r"^([0-9a-f]{64})?$",
        description="Hex SHA-256 of the trimmed, lower-cased email: raw emails are refused",
    )


class Identify(_Identified):
    """The visitor is a known customer: links the visitor id (and click id) to them."""

    kind: Literal["identify"]

    @model_validator(mode="after")
    def _someone(self) -> Identify:
        if not self.customer_id and not self.email_sha256:
            raise ValueError("identify needs customer_id or email_sha256")
        return self


class Lead(_Identified):
    """A sign-up, a form sent, a trial started: a conversion without a purchase."""

    kind: Literal["lead"]


BrowserEvent = Annotated[PageView | Identify | Lead, Field(discriminator="kind")]
_EVENT: TypeAdapter[PageView | Identify | Lead] = TypeAdapter(BrowserEvent)
_KINDS = ("page_view", "identify", "lead")


class _BatchHead(_Strict):
    t: str = Field(pattern=_TENANT, description="The tenant id")
    sent_at: int | None = Field(
        None, ge=0, description="When the browser sent the batch, epoch ms by its clock"
    )


class EventBatch(_BatchHead):
    """What the tag posts (as text/plain, so that browsers send it without a preflight)."""

    events: list[BrowserEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class _Envelope(_BatchHead):
    events: list[Any] = Field(min_length=1)  # each event is validated on its own


class RejectedEvent(BaseModel):
    index: int = Field(description="Its position in the batch")
    kind: str = Field(description="Its `kind`, when it had a readable one")
    errors: list[str] = Field(description="`field: problem`, one per problem")


class EventsResult(BaseModel):
    accepted: int = Field(description="Events written")
    rejected: list[RejectedEvent] = Field(description="Events refused, with the reasons")


class _Reject(Exception):
    pass


def _split(url: str) -> SplitResult | None:
    """The URL's parts, or None when it cannot be parsed (`http://[bad`)."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 (raises for a bad IPv6 literal)
    except ValueError:
        return None
    return parts


def _messages(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] in _KINDS:
            loc = loc[1:]  # the union's tag, not a field
        msg = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = _RAW_EMAIL if loc[-1:] == ["email"] else "unknown field"
        out.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return out


# -- a tenant's tag settings, cached per worker --------------------------------------------------


@dataclass(frozen=True)
class TagSettings:
    """What the tag and the event endpoints need to know about a tenant."""

    tenant_id: str
    click_params: tuple[str, ...]  # the click-id parameters of its active campaigns
    landing_params: tuple[str, ...]
    consent_policy: str  # the strictest of its active campaigns'
    max_age_s: int  # the longest attribution window of its active campaigns
    merchants: tuple[tuple[str, tuple[str, ...]], ...]  # (merchant id, its domains)
    hosts: frozenset[str]  # merchants' domains and active campaigns' destination domains

    def allows(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == d or host.endswith("." + d) for d in self.hosts)

    def merchant_id(self, host: str) -> str:
        """The merchant whose domain is the longest match of `host` ("" when none is)."""
        host = host.lower().rstrip(".")
        best, best_len = "", 0
        for merchant_id, domains in self.merchants:
            for d in domains:
                if (host == d or host.endswith("." + d)) and len(d) > best_len:
                    best, best_len = merchant_id, len(d)
        return best


_CONSENT_STRICTNESS = {"none": 0, "opt_out": 1, "opt_in": 2}


def _load_settings(state: EdgeState, tenant_id: str) -> TagSettings | None:
    tenant = state.store.for_tenant(tenant_id)
    if tenant.status() != "active":
        return None
    merchants = tenant.merchant_domains()
    campaigns = [c for c in in_force(tenant) if c.status == "active"]
    click_params = [DEFAULT_CLICK_PARAM]
    landing_params: list[str] = []
    for campaign in campaigns:
        click_params.append(campaign.click_id_param)
        landing_params.extend(campaign.landing_params)
    policies = [c.consent_policy for c in campaigns] or ["opt_out"]
    windows = [c.attribution_window_days for c in campaigns] or [DEFAULT_WINDOW_DAYS]
    merchant_domains = tuple((merchant_id, domains) for merchant_id, domains in merchants)
    hosts = {d for _, domains in merchant_domains for d in domains}
    hosts.update(d.lower() for c in campaigns for d in c.destination_domains)
    return TagSettings(
        tenant_id=tenant_id,
        click_params=tuple(dict.fromkeys(click_params)),
        landing_params=tuple(dict.fromkeys(landing_params)),
        consent_policy=max(policies, key=lambda p: _CONSENT_STRICTNESS.get(p, 2)),
        max_age_s=max(windows) * 86400,
        merchants=merchant_domains,
        hosts=frozenset(hosts),
    )


def tag_settings(state: EdgeState, tenant_id: str) -> TagSettings:
    """The tenant's settings, or 404 for an unknown or inactive tenant."""
    if not re.match(_TENANT, tenant_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown tenant")
    cache = state.tag_settings
    cached: TagSettings | None = cache.get(tenant_id)
    if cached is None:
        cached = _load_settings(state, tenant_id)
        if cached is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown tenant {tenant_id!r}")
        cache.put(tenant_id, cached)
    return cached


# -- GET /t.js -----------------------------------------------------------------------------------


def _compact(source: str) -> str:
    """Drops whole-line `//` comments and indentation (t.js keeps to that rule)."""
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//")) + "\n"


_TAG_SOURCE = _compact((files("api") / "static" / "t.js").read_text(encoding="utf-8"))
_CONFIG_MARKER = "RASTRO_CONFIG;"
assert _TAG_SOURCE.count(_CONFIG_MARKER) == 1, "t.js must hold the marker exactly once"


def _js_literal(value: object) -> str:
    """JSON that is safe inside a script (no `</script>`, no line separators)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_tag(settings: TagSettings, public_url: str) -> bytes:
    config = {
        "t": settings.tenant_id,
        "collector": public_url.rstrip("/") + "/v1/events",
        "clickParams": list(settings.click_params),
        "landingParams": list(settings.landing_params),
        "consent": settings.consent_policy,
        "maxAge": settings.max_age_s,
        "domains": sorted(settings.hosts),
    }
    return _TAG_SOURCE.replace(_CONFIG_MARKER, _js_literal(config) + ";").encode()


@functools.lru_cache(maxsize=1024)
def _rendered(settings: TagSettings, public_url: str) -> tuple[bytes, str]:
    """The tag for these settings and its ETag (settings are immutable: cache by value)."""
    body = render_tag(settings, public_url)
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


_TAG_EXAMPLE = '/*! Rastro first-party tag ... */\n(() => {\n"use strict";\nconst C = {"t":"...'
_TENANT_QUERY = Query(
    description="The tenant id",
    examples=["0190f5c2-3a1b-7c4d-8e9f-0a1b2c3d4e5f"],
    min_length=1,
    max_length=64,
)


@router.get(
    "/t.js",
    summary="The first-party tag: the script merchants put on every page",
    description=(
        "Install it on every page of the store, as early as possible:\n\n"
        "```html\n<script>window.rastro = window.rastro || function () "
        "{ (rastro.q = rastro.q || []).push(arguments) };</script>\n"
        '<script async src="https://TRACKING_HOST/t.js?t=TENANT_ID"></script>\n```\n\n'
        "The script carries the tenant's settings (click-id parameter names, landing "
        "parameters, consent policy, attribution window). In the browser it keeps the click "
        "id of the landing URL in a first-party cookie and in localStorage, sends a page "
        "view, and offers `rastro('identify', {customer_id, email})`, `rastro('lead', {...})` "
        "and `rastro('consent', 'granted' | 'denied')`. Cached for "
        f"{TAG_MAX_AGE_S} s, with an ETag."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The script",
            "content": {"text/javascript": {"example": _TAG_EXAMPLE}},
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        404: {"description": "Unknown or inactive tenant"},
    },
)
def tag(request: Request, state: StateDep, t: Annotated[str, _TENANT_QUERY]) -> Response:
    settings = tag_settings(state, t)
    body, etag = _rendered(settings, state.settings.public_url)
    headers = {
        "Cache-Control": f"public, max-age={TAG_MAX_AGE_S}",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


# -- turning events into log records -------------------------------------------------------------


@dataclass(frozen=True)
class _Visit:
    """What the server knows about the request, whatever its events say."""

    received_at: int
    user_agent: str
    ip_hash: str
    ip_network: str
    objection: bool  # Sec-GPC: 1 or DNT: 1


def _visit(request: Request, state: EdgeState, tenant_id: str) -> _Visit:
    headers = request.headers
    peer = request.client.host if request.client else ""
    trusted = visitors.trusted_proxies(state.settings.trusted_proxies)
    address = visitors.anonymize(
        visitors.client_ip(peer, headers.get("x-forwarded-for", ""), trusted)
    )
    return _Visit(
        received_at=time.time_ns() // 1_000_000,
        user_agent=headers.get("user-agent", "")[:512],
        ip_hash=state.pseudonym(tenant_id, "ip", address.ip) if address else "",
        ip_network=address.network if address else "",
        objection=visitors.objects_to_tracking(headers.get("sec-gpc", ""), headers.get("dnt", "")),
    )


def _event_time(ts: int | None, sent_at: int | None, received_at: int) -> int:
    if ts is None:
        return received_at
    # With sent_at both times are by the browser's clock, whose skew cancels out; without it,
    # that clock is taken as it is.
    age = (received_at if sent_at is None else sent_at) - ts
    return received_at - min(max(age, 0), MAX_EVENT_AGE_MS)


def _consent(event_consent: Consent, policy: str, objection: bool) -> tuple[Consent, bool]:
    """The consent to record and whether the visitor id may be kept: the tag's own rules
    (docs/tracking.md, "Consent and cookies"), enforced again here."""
    if event_consent == "unknown" and policy == "opt_out" and objection:
        event_consent = "denied"
    if event_consent != "unknown":
        return event_consent, event_consent == "granted"
    return "unknown", policy == "none" or policy == "opt_out"


class _Common(TypedDict):
    """What every record of one tag event shares."""

    tenant_id: str
    ts: int
    received_at: int


def _records(
    state: EdgeState,
    settings: TagSettings,
    event: PageView | Identify | Lead,
    visit: _Visit,
    sent_at: int | None,
    source: Literal["tag", "pixel"],
) -> list[bytes]:
    """The log records of one valid event; raises _Reject when it is not the tenant's."""
    parts = _split(event.url)
    host = parts.hostname if parts else None
    if event.url or source == "tag":
        if not parts or parts.scheme not in ("http", "https") or not host:
            raise _Reject("url: must be the page's absolute http(s) URL")
        if not settings.allows(host):
            raise _Reject(f"url: {host} is not one of this tenant's domains")
    tenant_id = settings.tenant_id
    consent, keep_visitor = _consent(event.consent, settings.consent_policy, visit.objection)
    cookie_id = event.cookie_id if keep_visitor else ""
    ts = _event_time(event.ts, sent_at, visit.received_at)
    customer_id = email_hash = ""
    if isinstance(event, Identify | Lead):
        customer_id = event.customer_id
        if event.email_sha256:
            email_hash = state.pseudonym(tenant_id, "email", event.email_sha256)
    common = _Common(tenant_id=tenant_id, ts=ts, received_at=visit.received_at)
    records: list[bytes] = [
        encode(
            PageEvent(
                event_id=uuid7(),
                kind=event.kind,
                merchant_id=settings.merchant_id(host) if host else "",
                click_id=event.click_id,
                cookie_id=cookie_id,
                url=event.url,
                referrer=event.referrer,
                customer_id=customer_id,
                email_hash=email_hash,
                consent=consent,
                properties=event.properties,
                user_agent=visit.user_agent,
                ip_hash=visit.ip_hash,
                **common,
            )
        )
    ]
    if isinstance(event, PageView) and event.landing_click and event.click_id:
        records.extend(_landing_click(state, settings, event, visit, common))
    # Identity: every identifier the event carries, linked to the first of them, so that the
    # identity graph can join this visitor's devices and sessions.
    if isinstance(event, Identify | Lead):
        ids = [
            (kind, value)
            for kind, value in (
                ("cookie", cookie_id),
                ("customer", customer_id),
                ("email_hash", email_hash),
                ("click", event.click_id),
            )
            if value
        ]
        for right_kind, right_id in ids[1:]:
            records.append(
                encode(
                    IdentityLink(
                        event_id=uuid7(),
                        left_kind=ids[0][0],
                        left_id=ids[0][1],
                        right_kind=right_kind,
                        right_id=right_id,
                        source=source,
                        consent=consent,
                        **common,
                    )
                )
            )
    return records


def _landing_click(
    state: EdgeState,
    settings: TagSettings,
    event: PageView,
    visit: _Visit,
    common: _Common,
) -> list[bytes]:
    """The click behind `?via=CODE`: recorded when CODE is an active link of this tenant that
    may send visitors to this page; nothing otherwise (the page view still is)."""
    parts = _split(event.url)
    host = (parts.hostname if parts else None) or ""
    for param in settings.landing_params:
        code = event.properties.get(param)
        if not isinstance(code, str) or not code:
            continue
        link = state.store.resolve_link(code)
        if link is None or link.tenant_id != settings.tenant_id or link.status != "active":
            continue
        if not any(host == d or host.endswith("." + d) for d in link.allowed_hosts):
            continue
        bot = visitors.classify(visit.user_agent)
        click = Click(
            event_id=uuid7(),
            click_id=event.click_id,
            source="landing_param",
            link_id=link.link_id,
            link_code=link.code,
            affiliate_id=link.affiliate_id,
            campaign_id=link.campaign_id,
            campaign_terms_version=link.terms_version,
            destination_url=link.destination_url,
            landing_url=event.url,
            sub1=link.subs[0],
            sub2=link.subs[1],
            sub3=link.subs[2],
            sub4=link.subs[3],
            sub5=link.subs[4],
            referrer=event.referrer,
            user_agent=visit.user_agent,
            ip_network=visit.ip_network,
            ip_hash=visit.ip_hash,
            is_bot=bot.is_bot,
            bot_reason=bot.reason,
            is_preview=bot.is_preview,
            **common,
        )
        return [encode(click)]
    return []


def _write(state: EdgeState, records: list[bytes], durable: bool) -> None:
    if records:
        state.log.append_many(records, durable=durable)


# -- POST /v1/events -----------------------------------------------------------------------------


def _origin(request: Request) -> str:
    """The requesting page's origin: `Origin`, else the `Referer`'s; "" when neither."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin
    referer = _split(request.headers.get("referer", ""))
    if referer is None:
        return "null"  # unparsable: refused as an opaque origin is
    return f"{referer.scheme}://{referer.netloc}" if referer.netloc else ""


def _check_origin(settings: TagSettings, origin: str) -> None:
    if not origin:
        return  # not a browser, or a referrer policy: each event's url is still checked
    parts = _split(origin)
    host = parts.hostname if parts else None
    if not host or not settings.allows(host):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"origin {origin[:200]!r} is not one of this tenant's domains",
        )


def _cors(origin: str) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    if origin and origin != "null":
        headers["Access-Control-Allow-Origin"] = origin
    return headers


async def _body(request: Request, cors: dict[str, str]) -> bytes:
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the body is larger than {MAX_BODY_BYTES} bytes: send smaller batches",
        headers=cors,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` inlined, for a request body OpenAPI must show as is."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_BATCH_EXAMPLE = {
    "t": "0190f5c2-3a1b-7c4d-8e9f-0a1b2c3d4e5f",
    "sent_at": 1767225600500,
    "events": [
        {
            "kind": "page_view",
            "ts": 1767225600000,
            "url": "https://shop.example.com.br/produto?rclid=c1a2b3",
            "referrer": "https://blog.example.org/",
            "click_id": "c1a2b3",
            "cookie_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
            "consent": "unknown",
        },
        {
            "kind": "identify",
            "ts": 1767225640000,
            "url": "https://shop.example.com.br/conta",
            "click_id": "c1a2b3",
            "cookie_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
            "customer_id": "cus_123",
            "email_sha256": "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514",
        },
        {
            "kind": "lead",
            "url": "https://shop.example.com.br/newsletter",
            "cookie_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
            "properties": {"form": "newsletter"},
        },
    ],
}
_BATCH_SCHEMA = _inline(EventBatch.model_json_schema())


@router.post(
    "/v1/events",
    summary="Browser events from the tag: page views, identifies, leads",
    description=(
        "Public (browsers call it, with no API key). The body is one JSON batch, sent as "
        "`text/plain` (what `navigator.sendBeacon` sends, with no CORS preflight) or "
        f"`application/json`: at most {MAX_BODY_BYTES} bytes and {MAX_EVENTS} events. The "
        "request's `Origin` (or `Referer`) and every event's `url` must be on one of the "
        "tenant's domains (merchants' domains and active campaigns' destination domains).\n\n"
        "Events are validated one by one: the valid ones are written even when others are "
        "refused, and the answer lists each refused event with its reasons (they are also "
        "logged as a warning; they are not kept). Emails only ever arrive hashed "
        "(`email_sha256`); the server re-keys the hash under the tenant's key before "
        "storing it. The server adds the time received, the user agent and a tenant-scoped "
        "hash of the IP address (never the address)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": _BATCH_SCHEMA, "example": _BATCH_EXAMPLE}
                for media in ("text/plain", "application/json")
            },
        }
    },
    responses={
        200: {
            "description": "Batch processed: how many events were written, which were refused",
            "content": {
                "application/json": {
                    "example": {
                        "accepted": 2,
                        "rejected": [
                            {
                                "index": 1,
                                "kind": "identify",
                                "errors": ["email: " + _RAW_EMAIL],
                            }
                        ],
                    }
                }
            },
        },
        400: {"description": "The body is not JSON"},
        403: {"description": "The origin is not one of the tenant's domains"},
        404: {"description": "Unknown or inactive tenant"},
        413: {"description": f"More than {MAX_BODY_BYTES} bytes or {MAX_EVENTS} events"},
        415: {"description": "Neither text/plain nor application/json"},
        422: {"description": "Not a batch (`t`, `events`), or no event in it was valid"},
    },
)
async def post_events(request: Request, state: StateDep, response: Response) -> EventsResult:
    origin = _origin(request)
    cors = _cors(request.headers.get("origin", ""))
    body = await _body(request, cors)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("", "text/plain", "application/json"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the batch as text/plain or application/json",
            headers=cors,
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"the body is not JSON: {exc}"[:300], headers=cors
        ) from None
    events = data.get("events") if isinstance(data, dict) else None
    if isinstance(events, list) and len(events) > MAX_EVENTS:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"at most {MAX_EVENTS} events per batch (got {len(events)}): split it",
            headers=cors,
        )
    try:
        envelope = _Envelope.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, _messages(exc), headers=cors
        ) from None
    try:
        result = await run_in_threadpool(_accept, request, state, envelope, origin)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_403_FORBIDDEN:  # a foreign site learns nothing
            exc.headers = {**cors, **(exc.headers or {})}
        raise
    response.headers.update(cors)
    if result.rejected and not result.accepted:
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    return result


def _accept(request: Request, state: EdgeState, envelope: _Envelope, origin: str) -> EventsResult:
    settings = tag_settings(state, envelope.t)
    _check_origin(settings, origin)
    visit = _visit(request, state, settings.tenant_id)
    records: list[bytes] = []
    rejected: list[RejectedEvent] = []
    durable = False
    for index, raw in enumerate(envelope.events):
        kind = raw.get("kind") if isinstance(raw, dict) else None
        try:
            event = _EVENT.validate_python(raw)
            records.extend(_records(state, settings, event, visit, envelope.sent_at, "tag"))
            durable = durable or event.kind == "lead"
        except ValidationError as exc:
            rejected.append(RejectedEvent(index=index, kind=_kind(kind), errors=_messages(exc)))
        except _Reject as exc:
            rejected.append(RejectedEvent(index=index, kind=_kind(kind), errors=[str(exc)]))
    # A lead may be worth a commission: it is on disk before the answer.
    _write(state, records, durable)
    accepted = len(envelope.events) - len(rejected)
    if rejected:
        log.warning(
            "browser events rejected: %s",
            json.dumps(
                {
                    "tenant_id": settings.tenant_id,
                    "origin": origin[:200],
                    "accepted": accepted,
                    "rejected": [r.model_dump() for r in rejected],
                },
                ensure_ascii=False,
            ),
        )
    return EventsResult(accepted=accepted, rejected=rejected)


def _kind(kind: object) -> str:
    return kind if isinstance(kind, str) and kind in _KINDS else ""


@router.options(
    "/v1/events",
    summary="CORS preflight for /v1/events",
    description="Browsers skip it for the tag's text/plain beacons; answered for other clients.",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def preflight_events(request: Request) -> Response:
    headers = _cors(request.headers.get("origin", ""))
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
        }
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)


# -- GET /px.gif ---------------------------------------------------------------------------------


@router.get(
    "/px.gif",
    summary="The pixel: a page view or lead from a page without JavaScript",
    description=(
        "For pages where the tag cannot run (no JavaScript, AMP, e-mail-free thank-you "
        "pages):\n\n"
        '```html\n<img src="https://TRACKING_HOST/px.gif?t=TENANT_ID&e=page_view" '
        'width="1" height="1" alt="">\n```\n\n'
        "Records a page event; the click id is read from any of the tenant's click-id "
        "parameters (`rclid` by default) and the landing parameters (`via`) go into its "
        "properties. `url` defaults to the `Referer`; it, and the `Referer`, must be on one of "
        "the tenant's domains. Sets and reads no cookie. Answers a transparent 1x1 GIF."
    ),
    response_class=Response,
    responses={
        200: {"description": "A transparent 1x1 GIF", "content": {"image/gif": {}}},
        403: {"description": "The page is not on one of the tenant's domains"},
        404: {"description": "Unknown or inactive tenant"},
        422: {"description": "Invalid parameters"},
    },
)
def pixel(
    request: Request,
    state: StateDep,
    t: Annotated[str, _TENANT_QUERY],
    e: Annotated[
        Literal["page_view", "identify", "lead"], Query(description="The event's kind")
    ] = "page_view",
    url: Annotated[
        str,
        Query(
            description="The page's URL (default: the Referer)",
            examples=["https://shop.example.com.br/obrigado?rclid=c1a2b3"],
            max_length=2048,
        ),
    ] = "",
    rclid: Annotated[
        str,
        Query(
            description="The click id, under any of the tenant's click-id parameter names",
            examples=["c1a2b3"],
        ),
    ] = "",
    customer_id: Annotated[str, Query(description="identify/lead: the customer's id")] = "",
    email_sha256: Annotated[
        str, Query(description="identify/lead: hex SHA-256 of the trimmed, lower-cased email")
    ] = "",
) -> Response:
    settings = tag_settings(state, t)
    referer = request.headers.get("referer", "")
    _check_origin(settings, _origin(request))
    query = request.query_params
    page = url or referer
    click_id = rclid or next((query[p] for p in settings.click_params if query.get(p)), "")
    if not click_id:
        click_id = _click_in(page, settings)
    raw: dict[str, Any] = {
        "kind": e,
        "url": page[:2048],
        "referrer": referer[:2048] if url else "",
        "click_id": click_id,
        "properties": {p: query[p][:512] for p in settings.landing_params if query.get(p)},
    }
    if e != "page_view":
        raw.update(customer_id=customer_id, email_sha256=email_sha256)
    try:
        event = _EVENT.validate_python(raw)
        records = _records(state, settings, event, _visit(request, state, t), None, "pixel")
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _messages(exc)) from None
    except _Reject as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    _write(state, records, durable=event.kind == "lead")
    return Response(
        _GIF,
        media_type="image/gif",
        headers={"Cache-Control": "no-store", "Cross-Origin-Resource-Policy": "cross-origin"},
    )


def _click_in(page: str, settings: TagSettings) -> str:
    """The click id in the page's own URL (a pixel on the landing page)."""
    parts = _split(page)
    query = parts.query if parts else ""
    if not query:
        return ""
    params = parse_qs(query)
    for name in settings.click_params:
        if params.get(name):
            return params[name][0]
    return ""
