"""The click redirect, GET/HEAD /r/{code}: where it sends the visitor, what it records in the
event log (every record read back and validated against the `Click` contract), repeat clicks,
consent, bots, and the client address that is never stored whole."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from starlette.testclient import TestClient

from api import redirect
from api.main import create_app
from api.state import EdgeState
from api.store import ConfigStore
from rastro.contracts import Click, decode
from rastro.eventlog import LogReader, LogWriter, Offset
from rastro.ids import stable_uuid7, uuid7
from rastro.settings import Settings
from tests.api.conftest import TenantFixture, make_tenant

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
FALLBACK = "https://fallback.example/unavailable"  # tests/api/conftest.py's settings


# -- helpers ------------------------------------------------------------------------------------


def _link(
    app: TestClient,
    tenant: TenantFixture,
    destination: str | None = None,
    campaign_id: str | None = None,
    **subs: str,
) -> str:
    """A new link through the API; returns its code."""
    response = app.post(
        "/v1/links",
        headers=tenant.auth,
        json={
            "affiliate_id": tenant.affiliate_id,
            "campaign_id": campaign_id or tenant.campaign_id,
            "destination_url": destination or f"https://{tenant.domain}/",
            **subs,
        },
    )
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    assert response.json()["url"] == f"http://testserver/r/{code}"
    return code


def _campaign(app: TestClient, tenant: TenantFixture, **values: Any) -> str:
    response = app.post(
        "/v1/campaigns",
        headers=tenant.auth,
        json={"name": "Outra", "destination_domains": [tenant.domain], **values},
    )
    assert response.status_code == 201, response.text
    campaign_id: str = response.json()["campaign_id"]
    return campaign_id


def _put_link(settings: Settings, tenant: TenantFixture, **fields: Any) -> str:
    """A link row written straight to the warehouse (states and destinations the API would
    refuse); returns its code."""
    now = datetime.now(UTC)
    code: str = fields.pop("code", uuid.uuid4().hex[:10])
    row = {
        "tenant_id": tenant.tenant_id,
        "id": fields.pop("id", uuid7()),
        "code": code,
        "kind": "link",
        "affiliate_id": tenant.affiliate_id,
        "campaign_id": tenant.campaign_id,
        "destination_url": f"https://{tenant.domain}/",
        "sub1": "",
        "sub2": "",
        "sub3": "",
        "sub4": "",
        "sub5": "",
        "status": "active",
        "created_at": now,
        "updated_at": now,
        "version": int(now.timestamp() * 1000),
        **fields,
    }
    ConfigStore(settings).insert("links", row)
    return code


def _records(settings: Settings) -> list[tuple[bytes, Click]]:
    """Every record in the event log, raw and validated against the contract."""
    reader = LogReader(settings.event_log_dir)
    found: list[tuple[bytes, Click]] = []
    for partition in reader.partitions():
        for record in reader.read(partition, Offset.start(), max_records=100_000):
            event = decode(record.payload)
            assert isinstance(event, Click)
            found.append((record.payload, event))
    return found


def _clicks(settings: Settings) -> list[Click]:
    return sorted((click for _, click in _records(settings)), key=lambda c: c.event_id)


def _only_click(settings: Settings) -> Click:
    clicks = _clicks(settings)
    assert len(clicks) == 1, clicks
    return clicks[0]


def _query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


def _set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the whole header line)."""
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def _client(settings: Settings, ip: str = "203.0.113.7") -> TestClient:
    return TestClient(create_app(settings), follow_redirects=False, client=(ip, 50_000))


@pytest.fixture
def visitor(settings: Settings) -> Iterator[TestClient]:
    """The app seen from a client with a real address (the default `testclient` peer is not
    an IP, which turns the in-memory repeat detection off)."""
    with _client(settings) as client:
        yield client


# -- where the visitor goes ---------------------------------------------------------------------


def test_redirects_to_the_destination_with_a_click_id(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant, f"https://{tenant.domain}/produto/tenis")
    response = app.get(f"/r/{code}", headers={"User-Agent": CHROME})

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"https://{tenant.domain}/produto/tenis?rclid=")
    click_id = _query(location)["rclid"][0]
    assert uuid.UUID(click_id).version == 7
    assert response.headers["cache-control"] == "no-store, private"
    assert response.headers["referrer-policy"] == "no-referrer-when-downgrade"
    assert response.content == b""

    click = _only_click(settings)
    assert click.click_id == click_id
    assert click.event_id == click_id  # a new click: its id doubles as the event id
    assert click.landing_url == location
    assert click.destination_url == f"https://{tenant.domain}/produto/tenis"
    assert (click.tenant_id, click.affiliate_id, click.campaign_id) == (
        tenant.tenant_id,
        tenant.affiliate_id,
        tenant.campaign_id,
    )
    assert click.link_code == code
    assert click.source == "redirect"
    assert click.campaign_terms_version == 1
    assert click.user_agent == CHROME
    assert not (click.is_bot or click.is_preview or click.is_head)
    assert abs(click.ts - datetime.now(UTC).timestamp() * 1000) < 60_000
    assert click.received_at == click.ts


def test_the_campaigns_own_click_id_parameter(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    campaign_id = _campaign(app, tenant, click_id_param="aff_click")
    code = _link(app, tenant, f"https://{tenant.domain}/?rclid=stays", campaign_id=campaign_id)
    location = app.get(f"/r/{code}").headers["location"]
    query = _query(location)
    assert query["rclid"] == ["stays"]  # not ours in this campaign: the merchant's parameter
    assert query["aff_click"] == [_only_click(settings).click_id]


def test_merchant_parameters_kept_subs_recorded_and_stripped(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(
        app,
        tenant,
        f"https://{tenant.domain}/c/tenis?utm_source=afiliados&cor=azul&rclid=stale",
        sub1="blog",
        sub3="default-3",
    )
    location = app.get(
        f"/r/{code}?sub1=post-42&sub2=topo%20da%20p%C3%A1gina&sub5=x+y"
        "&utm_medium=social&cor=preta&q=a%26b&rclid=forged"
    ).headers["location"]

    parts = urlsplit(location)
    assert (parts.netloc, parts.path) == (tenant.domain, "/c/tenis")
    query = _query(location)
    assert not {"sub1", "sub2", "sub3", "sub4", "sub5"} & query.keys()
    assert query["utm_source"] == ["afiliados"]
    assert query["utm_medium"] == ["social"]
    assert query["cor"] == ["preta"]  # the visitor's URL overrides the destination's value
    assert query["q"] == ["a&b"]  # encoded as it came
    click = _only_click(settings)
    assert query["rclid"] == [click.click_id]  # neither the stale nor the forged one
    assert (click.sub1, click.sub2, click.sub3, click.sub4, click.sub5) == (
        "post-42",
        "topo da página",
        "default-3",
        "",
        "x y",
    )
    assert click.landing_url == location
    assert "sub1" not in click.landing_url


def test_link_default_subs_without_a_query(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant, sub1="ig", sub2="stories", sub4="bio")
    location = app.get(f"/r/{code}").headers["location"]
    assert set(_query(location)) == {"rclid"}
    click = _only_click(settings)
    assert (click.sub1, click.sub2, click.sub3, click.sub4, click.sub5) == (
        "ig",
        "stories",
        "",
        "bio",
        "",
    )


def test_deep_link_keeps_path_query_and_fragment(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    destination = f"https://loja.{tenant.domain}/p/t%C3%AAnis-azul?sku=123&tam=42#avaliacoes"
    code = _link(app, tenant, destination)
    with_query = app.get(f"/r/{code}?ref=newsletter").headers["location"]
    without = app.get(f"/r/{code}").headers["location"]
    first, second = (click.click_id for click in _clicks(settings))
    assert with_query == (
        f"https://loja.{tenant.domain}/p/t%C3%AAnis-azul?sku=123&tam=42&ref=newsletter"
        f"&rclid={first}#avaliacoes"
    )
    assert without == (
        f"https://loja.{tenant.domain}/p/t%C3%AAnis-azul?sku=123&tam=42&rclid={second}#avaliacoes"
    )


def test_a_destination_in_unicode_is_sent_encoded(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _put_link(settings, tenant, destination_url=f"https://{tenant.domain}/promoção")
    location = app.get(f"/r/{code}").headers["location"]
    assert location.startswith(f"https://{tenant.domain}/promo%C3%A7%C3%A3o?rclid=")
    assert _only_click(settings).destination_url == f"https://{tenant.domain}/promoção"


@pytest.mark.parametrize("path", ["/r/", "/r/no-such-code", "/r/a/b", "/r/a%2Fb", "/r/" + "x" * 65])
def test_unknown_codes_go_to_the_fallback_and_record_nothing(
    app: TestClient, settings: Settings, path: str
) -> None:
    response = app.get(path)
    assert response.status_code == 302
    assert response.headers["location"] == FALLBACK
    assert response.headers["cache-control"] == "no-store, private"
    assert "set-cookie" not in response.headers
    assert _records(settings) == []


def test_paused_link_goes_to_the_fallback_and_is_recorded_unattributable(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _put_link(settings, tenant, status="paused", sub1="default")
    response = app.get(f"/r/{code}?sub1=from-url&utm_source=x")
    assert response.status_code == 302
    assert response.headers["location"] == FALLBACK
    assert "set-cookie" not in response.headers
    click = _only_click(settings)
    assert click.link_code == code
    assert click.landing_url == FALLBACK
    assert click.click_id not in click.landing_url  # nobody received it: it cannot convert
    assert click.sub1 == "from-url"


def test_a_link_in_a_paused_campaign_goes_to_the_fallback(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    campaign_id = _campaign(app, tenant, status="paused")
    code = _link(app, tenant, campaign_id=campaign_id)
    assert app.get(f"/r/{code}").headers["location"] == FALLBACK
    assert _only_click(settings).landing_url == FALLBACK


@pytest.mark.parametrize(
    "destination",
    [
        "https://evil.example/",
        "https://evil.example\\.{domain}/",  # passes urlsplit's host; browsers go to evil.example
        "javascript://{domain}/%0aalert(1)",
        "https://evil.example%2f.{domain}/",  # only host-name characters in a host
        "https://{domain}/a\nb",  # a control character would break the Location header
    ],
)
def test_a_destination_off_the_allowlist_is_never_redirected_to(
    app: TestClient, settings: Settings, tenant: TenantFixture, destination: str
) -> None:
    code = _put_link(settings, tenant, destination_url=destination.format(domain=tenant.domain))
    assert app.get(f"/r/{code}").headers["location"] == FALLBACK
    assert _only_click(settings).landing_url == FALLBACK


def test_other_methods_are_refused(app: TestClient, tenant: TenantFixture) -> None:
    code = _link(app, tenant)
    response = app.post(f"/r/{code}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


# -- repeat clicks ------------------------------------------------------------------------------


def test_repeat_click_within_the_hour_reuses_the_click_id_by_cookie(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code, other_code = _link(app, tenant), _link(app, tenant)
    first = app.get(f"/r/{code}")
    cookies = _set_cookies(first)
    assert f"Path=/r/{code}" in cookies[redirect.CLICK_COOKIE]
    assert "Max-Age=3600" in cookies[redirect.CLICK_COOKIE]
    second = app.get(f"/r/{code}")  # the TestClient keeps cookies
    elsewhere = app.get(f"/r/{other_code}")
    with TestClient(create_app(settings), follow_redirects=False) as stranger:
        fresh = stranger.get(f"/r/{code}")  # another visitor (same peer, no cookies)

    ids = [_query(r.headers["location"])["rclid"][0] for r in (first, second, elsewhere, fresh)]
    assert ids[1] == ids[0]
    assert len({ids[0], ids[2], ids[3]}) == 3
    assert redirect.CLICK_COOKIE not in _set_cookies(second)  # its deadline does not slide
    clicks = _clicks(settings)
    assert [c.click_id for c in clicks] == ids
    assert len({c.event_id for c in clicks}) == 4
    assert clicks[0].cookie_id == clicks[1].cookie_id == clicks[2].cookie_id != ""
    assert clicks[3].cookie_id not in ("", clicks[0].cookie_id)


def test_a_forged_moved_or_expired_click_cookie_is_not_reused(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code, other_code = _link(app, tenant), _link(app, tenant)
    signer = redirect.Redirector(EdgeState(settings))
    genuine = uuid7()
    old = stable_uuid7(int(datetime.now(UTC).timestamp() * 1000) - 3_601_000, "old click")
    cookies = {
        "forged": f"{genuine}.{'0' * 32}",
        "moved": f"{genuine}.{signer._signature(tenant.tenant_id, other_code, genuine)}",
        "expired": f"{old}.{signer._signature(tenant.tenant_id, code, old)}",
        "genuine": f"{genuine}.{signer._signature(tenant.tenant_id, code, genuine)}",
    }
    seen = {}
    for name, value in cookies.items():
        with TestClient(create_app(settings), follow_redirects=False) as client:
            response = client.get(
                f"/r/{code}", headers={"Cookie": f"{redirect.CLICK_COOKIE}={value}"}
            )
            seen[name] = _query(response.headers["location"])["rclid"][0]
    assert seen["genuine"] == genuine
    assert genuine not in (seen["forged"], seen["moved"])
    assert seen["expired"] != old


def test_repeat_click_without_cookies_reuses_the_click_id_in_memory(settings: Settings) -> None:
    tenant = make_tenant(settings, consent_policy="opt_in")
    worker = create_app(settings)  # one worker, two visitors' addresses
    with TestClient(worker, follow_redirects=False, client=("203.0.113.7", 1)) as visitor:
        elsewhere = TestClient(worker, follow_redirects=False, client=("198.51.100.20", 1))
        code, other_code = _link(visitor, tenant), _link(visitor, tenant)
        chrome = {"User-Agent": CHROME}
        responses = (
            visitor.get(f"/r/{code}", headers=chrome),
            visitor.get(f"/r/{code}", headers=chrome),  # the repeat
            visitor.get(f"/r/{code}", headers={"User-Agent": SAFARI_IPHONE}),
            visitor.get(f"/r/{other_code}", headers=chrome),
            elsewhere.get(f"/r/{code}", headers=chrome),
        )
    assert all("set-cookie" not in r.headers for r in responses)
    ids = [_query(r.headers["location"])["rclid"][0] for r in responses]
    assert ids[1] == ids[0]
    assert len({ids[0], *ids[2:]}) == 4
    assert [c.click_id for c in _clicks(settings)] == ids


def test_gpc_visitors_are_deduplicated_without_cookies(
    settings: Settings, visitor: TestClient, tenant: TenantFixture
) -> None:
    code = _link(visitor, tenant)
    headers = {"User-Agent": CHROME, "Sec-GPC": "1"}
    first, second = (visitor.get(f"/r/{code}", headers=headers) for _ in range(2))
    assert "set-cookie" not in first.headers and "set-cookie" not in second.headers
    assert first.headers["location"] == second.headers["location"]
    assert len(_clicks(settings)) == 2


# -- consent and cookies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "headers", "cookies"),
    [
        ("none", {}, True),
        ("none", {"Sec-GPC": "1"}, True),
        ("opt_out", {}, True),
        ("opt_out", {"Sec-GPC": "1"}, False),
        ("opt_out", {"DNT": "1"}, False),
        ("opt_out", {"Sec-GPC": "0", "DNT": "0"}, True),
        ("opt_in", {}, False),
    ],
)
def test_cookies_follow_the_campaigns_consent_policy(
    app: TestClient, settings: Settings, policy: str, headers: dict[str, str], cookies: bool
) -> None:
    tenant = make_tenant(settings, consent_policy=policy)
    code = _link(app, tenant)
    response = app.get(f"/r/{code}", headers=headers)
    assert response.status_code == 302
    assert "rclid=" in response.headers["location"]  # the click id needs no cookie
    set_cookies = _set_cookies(response)
    click = _only_click(settings)
    if cookies:
        assert set(set_cookies) == {redirect.CLICK_COOKIE, redirect.VISITOR_COOKIE}
        visitor_cookie = set_cookies[redirect.VISITOR_COOKIE]
        assert f"Max-Age={30 * 86400}" in visitor_cookie  # the campaign's window
        for line in set_cookies.values():
            assert "HttpOnly" in line and "SameSite=Lax" in line and "Secure" not in line
        raw_visitor_id = visitor_cookie.split(";")[0].split("=", 1)[1]
        assert click.cookie_id not in ("", raw_visitor_id)  # a tenant-scoped pseudonym
    else:
        assert set_cookies == {}
        assert click.cookie_id == ""


def test_cookies_are_not_read_when_the_visitor_objects(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant)
    first = app.get(f"/r/{code}")
    assert redirect.VISITOR_COOKIE in _set_cookies(first)
    objecting = app.get(f"/r/{code}", headers={"Sec-GPC": "1"})  # the cookies are still sent
    assert objecting.headers["location"] != first.headers["location"]
    clicks = _clicks(settings)
    assert clicks[0].cookie_id != "" and clicks[1].cookie_id == ""


def test_cookies_are_secure_on_an_https_tracking_host(
    settings: Settings, tenant: TenantFixture
) -> None:
    secure = settings.model_copy(update={"public_url": "https://go.example"})
    with TestClient(create_app(secure), follow_redirects=False) as app:
        code = _put_link(settings, tenant)
        response = app.get(f"/r/{code}")
    lines = _set_cookies(response).values()
    assert len(lines) == 2 and all("; Secure" in line for line in lines)


def test_the_visitor_cookie_id_differs_across_tenants(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    app.get(f"/r/{_link(app, tenant)}")
    app.get(f"/r/{_link(app, other_tenant)}")  # the same browser, the same visitor cookie
    first, second = _clicks(settings)
    assert first.tenant_id != second.tenant_id
    assert "" != first.cookie_id != second.cookie_id != ""


# -- bots, previews, HEAD -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "reason"),
    [
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slackbot-LinkExpanding"),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", None),
        ("Twitterbot/1.0", "Twitterbot"),
        ("WhatsApp/2.23.20.0 A", "WhatsApp"),
        ("TelegramBot (like TwitterBot)", "TelegramBot"),
        ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "Discordbot"),
        ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient)", "LinkedInBot"),
        ("Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5", "SkypeUriPreview"),
        ("Iframely/1.3.1 (+https://iframely.com/docs/about)", "Iframely"),
        ("Mozilla/5.0 (compatible; redditbot/1.0)", "redditbot"),
        ("Pinterestbot/1.0 (+http://www.pinterest.com/bot.html)", "Pinterestbot"),
        ("Mozilla/5.0 (compatible; Google-InspectionTool/1.0)", "Google-InspectionTool"),
    ],
)
def test_link_preview_fetchers_are_flagged_and_redirected(
    app: TestClient, settings: Settings, tenant: TenantFixture, user_agent: str, reason: str | None
) -> None:
    code = _link(app, tenant)
    response = app.get(f"/r/{code}", headers={"User-Agent": user_agent})
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"https://{tenant.domain}/?rclid=")
    click = _only_click(settings)
    assert click.is_preview and click.is_bot
    assert click.bot_reason.startswith("preview:")
    if reason is not None:
        assert click.bot_reason == f"preview:{reason}"


@pytest.mark.parametrize(
    ("user_agent", "bot", "reason"),
    [
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            True,
            "crawler",
        ),
        ("curl/8.5.0", True, "crawler"),
        ("python-requests/2.31.0", True, "crawler"),
        ("", True, "empty_user_agent"),
        ("   ", True, "empty_user_agent"),
        (CHROME, False, ""),
        (SAFARI_IPHONE, False, ""),
        (  # Instagram's in-app browser is a person
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 Instagram 329.0.0.28.90",
            False,
            "",
        ),
    ],
)
def test_bots_are_flagged_and_still_redirected(
    app: TestClient,
    settings: Settings,
    tenant: TenantFixture,
    user_agent: str,
    bot: bool,
    reason: str,
) -> None:
    code = _link(app, tenant)
    response = app.get(f"/r/{code}", headers={"User-Agent": user_agent})
    assert response.status_code == 302
    assert "rclid=" in response.headers["location"]
    click = _only_click(settings)
    assert click.is_bot is bot
    assert not click.is_preview
    assert click.bot_reason.split(":")[0] == reason


def test_a_missing_user_agent_is_flagged(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant)
    scope_headers = [(b"host", b"testserver")]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    state: EdgeState = app.app.state  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/r/{code}",
        "query_string": b"",
        "headers": scope_headers,
        "client": ("203.0.113.9", 1),
    }
    app.portal.call(redirect.handle, scope, receive, send, state)  # type: ignore[union-attr]
    assert sent[0]["status"] == 302
    click = _only_click(settings)
    assert (click.is_bot, click.bot_reason, click.user_agent) == (True, "empty_user_agent", "")


def test_head_requests_are_flagged_and_get_the_same_redirect(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant)
    response = app.head(f"/r/{code}", headers={"User-Agent": CHROME})
    assert response.status_code == 302
    assert response.content == b""
    assert "rclid=" in response.headers["location"]
    click = _only_click(settings)
    assert click.is_head and not click.is_bot


# -- the client address -------------------------------------------------------------------------


def test_x_forwarded_for_is_ignored_unless_the_peer_is_trusted(
    settings: Settings, tenant: TenantFixture
) -> None:
    forwarded = {"X-Forwarded-For": "192.0.2.50, 198.51.100.23"}
    with _client(settings, ip="203.0.113.7") as untrusted:
        untrusted.get(f"/r/{_put_link(settings, tenant)}", headers=forwarded)
    trusted = settings.model_copy(update={"trusted_proxies": "203.0.113.7, 10.0.0.0/8"})
    with _client(trusted, ip="203.0.113.7") as proxied:
        proxied.get(f"/r/{_put_link(settings, tenant)}", headers=forwarded)
        proxied.get(  # a chain of our own proxies: the rightmost untrusted address is the client
            f"/r/{_put_link(settings, tenant)}",
            headers={"X-Forwarded-For": "192.0.2.50, 198.51.100.23, 10.1.2.3"},
        )
        proxied.get(f"/r/{_put_link(settings, tenant)}")  # no header: the proxy itself
    networks = [c.ip_network for c in _clicks(settings)]
    assert networks == ["203.0.113.0/24", "198.51.100.0/24", "198.51.100.0/24", "203.0.113.0/24"]


def test_the_country_comes_only_from_a_trusted_proxy(
    settings: Settings, tenant: TenantFixture
) -> None:
    headers = {"CF-IPCountry": "BR"}
    with _client(settings, ip="203.0.113.7") as direct:
        direct.get(f"/r/{_put_link(settings, tenant)}", headers=headers)
    trusted = settings.model_copy(update={"trusted_proxies": "203.0.113.7"})
    with _client(trusted, ip="203.0.113.7") as proxied:
        proxied.get(f"/r/{_put_link(settings, tenant)}", headers=headers)
        proxied.get(f"/r/{_put_link(settings, tenant)}", headers={"CF-IPCountry": "XX"})
    assert [c.country for c in _clicks(settings)] == ["", "BR", ""]


@pytest.mark.parametrize(
    ("ip", "network", "spellings"),
    [
        ("203.0.113.77", "203.0.113.0/24", ["203.0.113.77"]),
        (
            "2001:db8:abcd:12::1",
            "2001:db8:abcd::/48",
            ["2001:db8:abcd:12::1", "2001:0db8:abcd:0012", "2001:db8:abcd:12:"],
        ),
        ("::ffff:198.51.100.4", "198.51.100.0/24", ["198.51.100.4"]),
    ],
)
def test_the_record_never_holds_the_raw_ip(
    settings: Settings, tenant: TenantFixture, ip: str, network: str, spellings: list[str]
) -> None:
    with _client(settings, ip=ip) as client:
        client.get(f"/r/{_put_link(settings, tenant)}")
    [(payload, click)] = _records(settings)
    assert click.ip_network == network
    assert len(click.ip_hash) == 32
    for spelling in spellings:
        assert spelling.encode() not in payload


def test_ip_hashes_differ_across_tenants_and_match_within_one(
    settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    with _client(settings, ip="203.0.113.7") as client:
        for owner in (tenant, other_tenant, tenant):
            client.get(f"/r/{_put_link(settings, owner)}")
    first, second, third = _clicks(settings)
    assert first.ip_hash == third.ip_hash
    assert first.ip_hash != second.ip_hash
    assert first.ip_network == second.ip_network == "203.0.113.0/24"


# -- across workers and tenants -----------------------------------------------------------------


def test_a_new_link_resolves_at_once_on_another_worker(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant, f"https://{tenant.domain}/novo")
    with TestClient(create_app(settings), follow_redirects=False) as other_worker:
        response = other_worker.get(f"/r/{code}")
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"https://{tenant.domain}/novo?rclid=")
    assert _only_click(settings).link_code == code


def test_a_code_resolves_to_its_own_tenants_data_only(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    mine = _link(app, tenant, sub1="mine")
    theirs = _link(app, other_tenant, sub1="theirs")
    mine_at = app.get(f"/r/{mine}").headers["location"]
    theirs_at = app.get(f"/r/{theirs}").headers["location"]
    assert urlsplit(mine_at).netloc == tenant.domain
    assert urlsplit(theirs_at).netloc == other_tenant.domain
    by_code = {c.link_code: c for c in _clicks(settings)}
    assert (by_code[mine].tenant_id, by_code[mine].affiliate_id, by_code[mine].sub1) == (
        tenant.tenant_id,
        tenant.affiliate_id,
        "mine",
    )
    assert (by_code[theirs].tenant_id, by_code[theirs].campaign_id) == (
        other_tenant.tenant_id,
        other_tenant.campaign_id,
    )


# -- the event log ------------------------------------------------------------------------------


def test_a_failed_append_answers_503_and_never_302(
    app: TestClient, settings: Settings, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _link(app, tenant)

    def broken(self: LogWriter, payload: bytes) -> Offset:
        raise OSError("disk full")

    monkeypatch.setattr(LogWriter, "append", broken)
    response = app.get(f"/r/{code}")
    assert response.status_code == 503
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    monkeypatch.undo()
    assert app.get(f"/r/{code}").status_code == 302


def test_the_record_matches_the_contract_field_for_field(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    """The hand-built dict carries every `Click` field, no more (forbid_unknown_fields holds
    the rest), so the edge and the contract cannot drift apart."""
    code = _link(app, tenant)
    app.get(f"/r/{code}", headers={"Referer": "https://blog.example/post"})
    [(payload, click)] = _records(settings)
    assert set(json.loads(payload)) == {"type", *Click.__struct_fields__}
    assert click.referrer == "https://blog.example/post"


# -- looking codes up ---------------------------------------------------------------------------


def _counting_lookups(
    app: TestClient, monkeypatch: pytest.MonkeyPatch, fail: bool = False
) -> list[str]:
    """Counts the warehouse lookups of the app's worker (slowly, so that they overlap)."""
    store = app.app.state.store  # type: ignore[attr-defined]
    real = store.resolve_link
    calls: list[str] = []

    def resolve(code: str) -> Any:
        calls.append(code)
        time.sleep(0.2)
        if fail:
            raise ConnectionError("warehouse down")
        return real(code)

    monkeypatch.setattr(store, "resolve_link", resolve)
    return calls


def test_concurrent_misses_share_one_lookup(
    app: TestClient, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _link(app, tenant)
    calls = _counting_lookups(app, monkeypatch)
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    state: EdgeState = app.app.state  # type: ignore[attr-defined]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": f"/r/{code}"}
    scope |= {"query_string": b"", "headers": [], "client": ("203.0.113.9", 1)}

    async def two_visitors() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(redirect.handle, dict(scope), receive, send, state)

    app.portal.call(two_visitors)  # type: ignore[union-attr]
    assert statuses == [302, 302]
    assert calls == [code]


def test_unknown_codes_are_not_looked_up_again_at_once(
    app: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_lookups(app, monkeypatch)
    assert [app.get("/r/nosuchcode").headers["location"] for _ in range(3)] == [FALLBACK] * 3
    assert calls == ["nosuchcode"]


def test_a_failed_lookup_answers_503_not_the_fallback(
    app: TestClient, settings: Settings, tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _link(app, tenant)
    _counting_lookups(app, monkeypatch, fail=True)
    response = app.get(f"/r/{code}")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "location" not in response.headers
    assert _records(settings) == []


def test_free_text_is_escaped_in_the_record(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    code = _link(app, tenant)
    user_agent = 'Mozilla/5.0 "quoted" \\backslash\\ ","is_head":true}'
    app.get(
        f"/r/{code}?sub1=%22%7D%2C%22is_bot%22%3Atrue&sub2=linha%0Anova%5C&sub3=%C3%A9%F0%9F%9A%80",
        headers={"User-Agent": user_agent, "Referer": 'https://blog.example/"x"'},
    )
    [(payload, click)] = _records(settings)
    assert payload.isascii()
    assert click.user_agent == user_agent
    assert not click.is_head
    assert (click.sub1, click.sub2, click.sub3) == ('"},"is_bot":true', "linha\nnova\\", "é🚀")
    assert click.referrer == 'https://blog.example/"x"'
