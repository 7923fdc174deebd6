"""The first-party tag, browser events and the pixel: what is served, what is written to the
event log (read back and validated against the contracts), and what is refused."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from api.main import create_app
from api.routes.events import MAX_BODY_BYTES, MAX_EVENTS, TagSettings, _event_time, render_tag
from api.state import EdgeState
from rastro.contracts import Click, Event, IdentityLink, PageEvent, decode
from rastro.eventlog import LogReader, Offset
from rastro.settings import Settings
from tests.api.conftest import TenantFixture, make_tenant

ORIGIN = "https://shop.example.com.br"
PAGE = f"{ORIGIN}/produto/42"
COOKIE = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
EMAIL = "  Ana.Souza@Example.COM "
EMAIL_SHA256 = hashlib.sha256(b"ana.souza@example.com").hexdigest()


def _raw_log(settings: Settings) -> list[bytes]:
    reader = LogReader(settings.event_log_dir)
    if not settings.event_log_dir.exists():
        return []
    return [
        record.payload
        for partition in reader.partitions()
        for record in reader.read(partition, Offset.start(), max_records=100_000)
    ]


def _log(settings: Settings) -> list[Event]:
    """Every record written so far, each validated by the contracts."""
    return [decode(payload) for payload in _raw_log(settings)]


def _post(
    app: TestClient,
    tenant_id: str,
    events: list[Any],
    origin: str | None = ORIGIN,
    **headers: str,
) -> httpx2.Response:
    body = json.dumps({"t": tenant_id, "sent_at": 1_000_000, "events": events})
    sent = {"Content-Type": "text/plain;charset=UTF-8", **headers}
    if origin is not None:
        sent["Origin"] = origin
    return app.post("/v1/events", content=body, headers=sent)


def _page_view(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "page_view",
        "ts": 1_000_000,
        "url": PAGE,
        "click_id": "clk_1",
        "cookie_id": COOKIE,
        **fields,
    }


def _state(app: TestClient) -> EdgeState:
    state: EdgeState = app.app.app.state.edge  # type: ignore[attr-defined]
    return state


# -- t.js ----------------------------------------------------------------------------------------


def _config(body: str) -> dict[str, Any]:
    start = body.index("const C = ") + len("const C = ")
    config: dict[str, Any] = json.loads(body[start : body.index(";\n", start)])
    return config


def test_tag_carries_the_tenant_settings_and_caches(app: TestClient, tenant: TenantFixture) -> None:
    campaign = app.post(
        "/v1/campaigns",
        headers=tenant.auth,
        json={
            "name": "Black Friday",
            "destination_domains": ["promo.example.com.br"],
            "click_id_param": "bfclid",
            "landing_params": ["via", "ref"],
            "attribution_window_days": 60,
        },
    )
    assert campaign.status_code == 201, campaign.text

    response = app.get("/t.js", params={"t": tenant.tenant_id})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["etag"].startswith('"')
    assert len(response.content) < 10_000  # small: comments and indentation stripped
    assert "RASTRO_CONFIG" not in response.text
    assert _config(response.text) == {
        "t": tenant.tenant_id,
        "collector": "http://testserver/v1/events",
        "clickParams": ["rclid", "bfclid"],
        "landingParams": ["via", "ref"],
        "consent": "opt_out",
        "maxAge": 60 * 86400,
        "domains": ["promo.example.com.br", "shop.example.com.br"],
    }
    again = app.get(
        "/t.js",
        params={"t": tenant.tenant_id},
        headers={"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.content == b""


def test_tag_takes_the_strictest_consent_policy(app: TestClient, settings: Settings) -> None:
    tenant = make_tenant(settings, consent_policy="opt_in")
    assert _config(app.get("/t.js", params={"t": tenant.tenant_id}).text)["consent"] == "opt_in"


def test_tag_config_cannot_break_out_of_the_script() -> None:
    tag = TagSettings("t1", ("rclid",), ("via",), "opt_out", 86400, (), frozenset())
    body = render_tag(tag, "https://x.example/</script><script>alert(1)//").decode()
    assert "</script>" not in body
    assert "\\u003c/script\\u003e" in body


@pytest.mark.parametrize("tenant_id", ["0190f5c2-0000-7000-8000-000000000000", "../../etc"])
def test_tag_of_an_unknown_tenant_is_404(app: TestClient, tenant_id: str) -> None:
    response = app.get("/t.js", params={"t": tenant_id})
    assert response.status_code == 404
    assert "unknown tenant" in response.json()["detail"]
    assert app.get("/t.js").status_code == 422  # no t at all


# -- POST /v1/events: what is written ------------------------------------------------------------


def test_a_batch_is_written_as_page_events(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    response = _post(
        app,
        tenant.tenant_id,
        [
            _page_view(referrer="https://blog.example.org/", properties={"via": "ana"}),
            {
                "kind": "lead",
                "ts": 999_000,
                "url": f"{ORIGIN}/newsletter",
                "cookie_id": COOKIE,
                "properties": {"form": "newsletter", "step": 2},
            },
        ],
        **{"User-Agent": "Mozilla/5.0 test"},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2, "rejected": []}
    records = _log(settings)
    assert [type(r) for r in records] == [PageEvent, PageEvent]
    view, lead = records
    assert isinstance(view, PageEvent) and isinstance(lead, PageEvent)
    assert (view.kind, view.tenant_id, view.url, view.click_id) == (
        "page_view",
        tenant.tenant_id,
        PAGE,
        "clk_1",
    )
    assert view.cookie_id == COOKIE
    assert view.referrer == "https://blog.example.org/"
    assert view.properties == {"via": "ana"}
    assert view.user_agent == "Mozilla/5.0 test"
    assert view.merchant_id  # the merchant whose domain the page is on
    assert view.consent == "unknown"
    # Browser clocks are not believed: times are the receipt time less the reported age.
    assert view.ts == view.received_at
    assert lead.ts == lead.received_at - 1000
    assert lead.kind == "lead" and lead.properties == {"form": "newsletter", "step": 2}


def test_identify_links_identifiers_and_rekeys_the_email_per_tenant(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture, settings: Settings
) -> None:
    identify = _page_view(kind="identify", customer_id="cus_7", email_sha256=EMAIL_SHA256)
    assert _post(app, tenant.tenant_id, [identify]).json()["accepted"] == 1
    other = {**identify, "url": "https://other-shop.example.com/conta"}
    assert (
        _post(app, other_tenant.tenant_id, [other], origin="https://other-shop.example.com").json()[
            "accepted"
        ]
        == 1
    )

    records = _log(settings)
    mine = [r for r in records if r.tenant_id == tenant.tenant_id]
    page = next(r for r in mine if isinstance(r, PageEvent))
    links = {
        (r.left_kind, r.left_id, r.right_kind, r.right_id)
        for r in mine
        if isinstance(r, IdentityLink)
    }
    expected_hash = _state(app).pseudonym(tenant.tenant_id, "email", EMAIL_SHA256)
    assert page.email_hash == expected_hash and page.customer_id == "cus_7"
    assert links == {
        ("cookie", COOKIE, "customer", "cus_7"),
        ("cookie", COOKIE, "email_hash", expected_hash),
        ("cookie", COOKIE, "click", "clk_1"),
    }
    assert all(r.source == "tag" for r in mine if isinstance(r, IdentityLink))
    theirs = next(
        r for r in records if r.tenant_id == other_tenant.tenant_id and isinstance(r, PageEvent)
    )
    assert theirs.email_hash and theirs.email_hash != expected_hash  # no join across tenants
    everything = b"".join(_raw_log(settings)).lower()
    assert b"ana.souza" not in everything
    assert EMAIL_SHA256.encode() not in everything  # only the tenant-keyed hash is stored


def test_identify_without_a_cookie_links_to_the_customer(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    event = _page_view(kind="identify", cookie_id="", customer_id="cus_8")
    assert _post(app, tenant.tenant_id, [event]).json()["accepted"] == 1
    links = [r for r in _log(settings) if isinstance(r, IdentityLink)]
    assert [(r.left_kind, r.right_kind, r.right_id) for r in links] == [
        ("customer", "click", "clk_1")
    ]


def test_the_ip_is_hashed_per_tenant_never_stored(settings: Settings) -> None:
    behind_proxy = settings.model_copy(update={"trusted_proxies": "testclient"})
    tenant = make_tenant(behind_proxy)
    with TestClient(create_app(behind_proxy)) as app:
        response = _post(
            app, tenant.tenant_id, [_page_view()], **{"X-Forwarded-For": "203.0.113.7"}
        )
        assert response.status_code == 200, response.text
        expected = _state(app).pseudonym(tenant.tenant_id, "ip", "203.0.113.7")
    (page,) = _log(behind_proxy)
    assert isinstance(page, PageEvent) and page.ip_hash == expected
    assert b"203.0.113" not in b"".join(_raw_log(behind_proxy))


def test_a_landing_parameter_naming_a_link_records_the_click(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    link = app.post(
        "/v1/links",
        headers=tenant.auth,
        json={
            "affiliate_id": tenant.affiliate_id,
            "campaign_id": tenant.campaign_id,
            "destination_url": f"{ORIGIN}/",
            "sub1": "stories",
        },
    ).json()
    events = [
        _page_view(click_id="minted1", landing_click=True, properties={"via": link["code"]}),
        # Not a link of this tenant: the page view is kept, no click is made up.
        _page_view(click_id="minted2", landing_click=True, properties={"via": "nope"}),
    ]
    assert _post(app, tenant.tenant_id, events).json()["accepted"] == 2

    clicks = [r for r in _log(settings) if isinstance(r, Click)]
    assert len(clicks) == 1
    click = clicks[0]
    assert (click.click_id, click.source, click.link_code) == (
        "minted1",
        "landing_param",
        link["code"],
    )
    assert (click.affiliate_id, click.campaign_id, click.sub1) == (
        tenant.affiliate_id,
        tenant.campaign_id,
        "stories",
    )
    assert click.landing_url == PAGE


# -- consent -------------------------------------------------------------------------------------


def test_opt_in_without_consent_keeps_no_visitor_id(app: TestClient, settings: Settings) -> None:
    tenant = make_tenant(settings, consent_policy="opt_in")
    events = [_page_view(), _page_view(consent="granted")]
    assert _post(app, tenant.tenant_id, events).json()["accepted"] == 2
    unknown, granted = _log(settings)
    assert isinstance(unknown, PageEvent) and isinstance(granted, PageEvent)
    assert (unknown.cookie_id, unknown.click_id, unknown.consent) == ("", "clk_1", "unknown")
    assert (granted.cookie_id, granted.consent) == (COOKIE, "granted")


def test_opt_out_honours_global_privacy_control(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    assert _post(app, tenant.tenant_id, [_page_view()], **{"Sec-GPC": "1"}).status_code == 200
    (page,) = _log(settings)
    assert isinstance(page, PageEvent)
    assert (page.consent, page.cookie_id, page.click_id) == ("denied", "", "clk_1")


# -- POST /v1/events: what is refused ------------------------------------------------------------


def test_bad_events_are_refused_and_good_ones_kept(
    app: TestClient,
    tenant: TenantFixture,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[Any] = [
        _page_view(),
        _page_view(kind="identify", email="ana@example.com"),
        _page_view(ts="yesterday"),
        _page_view(kind="purchase"),
        _page_view(url="https://evil.example/x"),
        _page_view(kind="identify"),
        _page_view(properties={"contact": "ana@example.com"}),
        "page_view",
        _page_view(url="http://[oops/"),
    ]
    with caplog.at_level(logging.WARNING, logger="api.routes.events"):
        response = _post(app, tenant.tenant_id, events)

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    errors = {r["index"]: r["errors"] for r in body["rejected"]}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert any(e.startswith("email: raw emails are refused") for e in errors[1])
    assert errors[2] == ["ts: Input should be a valid integer"]
    assert "does not match any of the expected tags" in errors[3][0]
    assert errors[4] == ["url: evil.example is not one of this tenant's domains"]
    assert errors[5] == ["identify needs customer_id or email_sha256"]
    assert "looks like an email address" in errors[6][0]
    assert errors[8] == ["url: must be the page's absolute http(s) URL"]
    assert body["rejected"][0]["kind"] == "identify"
    assert len(_log(settings)) == 1
    (warning,) = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert tenant.tenant_id in warning.getMessage()
    assert "ana@example.com" not in warning.getMessage()  # raw input is never logged


def test_a_batch_with_nothing_valid_is_422(app: TestClient, tenant: TenantFixture) -> None:
    response = _post(app, tenant.tenant_id, [_page_view(cookie_id="not a cookie id!")])
    assert response.status_code == 422
    assert response.json()["accepted"] == 0
    assert response.json()["rejected"][0]["errors"][0].startswith("cookie_id: String should")


@pytest.mark.parametrize(
    ("body", "content_type", "code", "message"),
    [
        ("{not json", "text/plain", 400, "not JSON"),
        ('{"events": []}', "text/plain", 422, "t: Field required"),
        ('{"t": "x", "events": [{}], "extra": 1}', "application/json", 422, "extra: unknown"),
        ('{"t": "x", "events": {}}', "application/json", 422, "events: Input should be"),
        ('{"t": "x", "events": [{}]}', "application/x-www-form-urlencoded", 415, "text/plain"),
    ],
)
def test_malformed_batches_are_refused_clearly(
    app: TestClient, body: str, content_type: str, code: int, message: str
) -> None:
    response = app.post("/v1/events", content=body, headers={"Content-Type": content_type})
    assert response.status_code == code
    assert message in json.dumps(response.json()["detail"])


def test_unknown_tenant_is_404(app: TestClient) -> None:
    response = _post(app, "0190f5c2-0000-7000-8000-000000000000", [_page_view()])
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == ORIGIN  # readable by the page


def test_size_limits(app: TestClient, tenant: TenantFixture, settings: Settings) -> None:
    big = _page_view(properties={f"p{i}": "x" * 500 for i in range(20)})
    too_many = _post(app, tenant.tenant_id, [_page_view()] * (MAX_EVENTS + 1))
    assert too_many.status_code == 413
    assert f"at most {MAX_EVENTS} events" in too_many.json()["detail"]
    too_big = _post(app, tenant.tenant_id, [big] * 8)
    assert too_big.status_code == 413
    assert f"larger than {MAX_BODY_BYTES} bytes" in too_big.json()["detail"]
    assert _post(app, tenant.tenant_id, [big] * 5).json()["accepted"] == 5
    assert len(_log(settings)) == 5


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "https://shop.example.com.br.evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Referer": "http://[bad/"},
    ],
)
def test_events_from_other_sites_are_403(
    app: TestClient, tenant: TenantFixture, settings: Settings, headers: dict[str, str]
) -> None:
    response = _post(app, tenant.tenant_id, [_page_view()], origin=None, **headers)
    assert response.status_code == 403
    assert "not one of this tenant's domains" in response.json()["detail"]
    assert "access-control-allow-origin" not in response.headers
    assert _log(settings) == []


def test_a_subdomain_of_a_merchant_domain_is_the_merchant(
    app: TestClient, tenant: TenantFixture
) -> None:
    event = _page_view(url="https://www.shop.example.com.br/")
    response = _post(app, tenant.tenant_id, [event], origin="https://www.shop.example.com.br")
    assert response.json() == {"accepted": 1, "rejected": []}


def test_cors_answers_the_merchant_origin(app: TestClient, tenant: TenantFixture) -> None:
    response = _post(app, tenant.tenant_id, [_page_view()])
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers

    preflight = app.options(
        "/v1/events",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"].lower() == "content-type"


# -- the pixel -----------------------------------------------------------------------------------


def test_pixel_answers_a_gif_and_records_the_event(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    response = app.get(
        "/px.gif",
        params={
            "t": tenant.tenant_id,
            "e": "page_view",
            "rclid": "clk_9",
            "url": PAGE,
            "via": "ana",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["cache-control"] == "no-store"
    assert response.content.startswith(b"GIF89a") and len(response.content) < 100
    assert "set-cookie" not in response.headers
    (page,) = _log(settings)
    assert isinstance(page, PageEvent)
    assert (page.kind, page.click_id, page.url, page.cookie_id) == ("page_view", "clk_9", PAGE, "")
    assert page.properties == {"via": "ana"}


def test_pixel_reads_the_click_id_from_the_referring_page(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    landing = f"{ORIGIN}/?rclid=clk_10"
    response = app.get(
        "/px.gif",
        params={"t": tenant.tenant_id, "e": "lead", "customer_id": "cus_1"},
        headers={"Referer": landing},
    )
    assert response.status_code == 200
    page, link = _log(settings)
    assert isinstance(page, PageEvent) and isinstance(link, IdentityLink)
    assert (page.kind, page.click_id, page.url) == ("lead", "clk_10", landing)
    assert (link.left_kind, link.right_kind, link.source) == ("customer", "click", "pixel")


def test_pixel_refuses_other_sites_and_unknown_tenants(
    app: TestClient, tenant: TenantFixture, settings: Settings
) -> None:
    params = {"t": tenant.tenant_id}
    assert (
        app.get("/px.gif", params=params, headers={"Referer": "https://evil.example/"}).status_code
        == 403
    )
    assert app.get("/px.gif", params={**params, "url": "https://evil.example/"}).status_code == 403
    assert (
        app.get("/px.gif", params={"t": "0190f5c2-0000-7000-8000-000000000000"}).status_code == 404
    )
    assert app.get("/px.gif", params={**params, "e": "purchase"}).status_code == 422
    assert _log(settings) == []


# -- the rest ------------------------------------------------------------------------------------


def test_event_times_correct_the_browser_clock() -> None:
    received = 10_000_000
    assert _event_time(None, None, received) == received
    # The browser's clock is an hour behind: only the age it reports counts.
    assert _event_time(5_000, 6_000, received) == received - 1_000
    assert _event_time(7_000, 6_000, received) == received  # ts after sent_at: nonsense
    assert _event_time(0, 10**12, received) == received - 24 * 3600 * 1000  # capped
    assert _event_time(received - 500, None, received) == received - 500
    assert _event_time(received + 3_600_000, None, received) == received


def test_every_tracking_route_is_documented(app: TestClient) -> None:
    spec = app.get("/openapi.json").json()
    for path, method in [
        ("/t.js", "get"),
        ("/v1/events", "post"),
        ("/v1/events", "options"),
        ("/px.gif", "get"),
    ]:
        operation = spec["paths"][path][method]
        assert operation["summary"] and operation["description"], (path, method)
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert set(body) == {"text/plain", "application/json"}
    assert body["text/plain"]["example"]["events"][0]["kind"] == "page_view"
    assert "email_sha256" in json.dumps(body["text/plain"]["schema"])
    pixel_params = {p["name"] for p in spec["paths"]["/px.gif"]["get"]["parameters"]}
    assert {"t", "e", "url", "rclid"} <= pixel_params
