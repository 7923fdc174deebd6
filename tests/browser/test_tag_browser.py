"""The acceptance test of the first-party tag, in a real browser with third-party cookies
blocked: a visitor follows an affiliate link on the tracking host, lands on the merchant's
shop (another site), browses a second page without the click id in the URL, identifies
and signs up; the event log must tie all of it to the same click id and visitor id.

Headless Debian Chromium driven by Playwright (never `playwright install`: the machine's
chromium is used). Two local servers on 127.0.0.1 play two sites through host-resolver
rules: the API as `track.test` (the tracking host) and a tiny shop as `shop.test`.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
import uvicorn
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

from api.main import create_app
from api.state import EdgeState
from rastro.contracts import Click, Event, IdentityLink, PageEvent, decode, encode
from rastro.eventlog import LogReader, Offset
from rastro.settings import Settings
from tests.api.conftest import TenantFixture, make_tenant
from tests.conftest import migrated_database

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# What the brief of this test fixes; plus the two sites mapped to the local servers.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP track.test 127.0.0.1, MAP shop.test 127.0.0.1",
]
# cookie_controls_mode: 0 allows third-party cookies, 1 blocks them (what Chrome's "Block
# third-party cookies" setting writes). `--test-third-party-cookie-phaseout` does not override
# an explicit 0 in this Chromium, so the profile's preference is what decides.
BLOCK_3PC = 1
ALLOW_3PC = 0

EMAIL = " Ana.Souza@Example.com "
EMAIL_SHA256 = hashlib.sha256(b"ana.souza@example.com").hexdigest()


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# -- the tracking host: the whole API, served by uvicorn in a thread -----------------------------


@dataclass
class Site:
    port: int
    settings: Settings

    @property
    def origin(self) -> str:
        """The tracking host, as browsers reach it."""
        return f"http://track.test:{self.port}"

    @property
    def api(self) -> str:
        """The same, for the test's own calls (no host-resolver rules there)."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def browser_database(warehouse_url: str) -> Iterator[str]:
    with migrated_database(warehouse_url, "rastro_browser") as name:
        yield name


@pytest.fixture(scope="module")
def tracking(
    warehouse_url: str, browser_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    sock = _free_socket()
    port = sock.getsockname()[1]
    settings = Settings(
        _env_file=None,
        clickhouse_url=warehouse_url,
        clickhouse_database=browser_database,
        data_dir=tmp_path_factory.mktemp("browser") / "state",
        public_url=f"http://track.test:{port}",
        fallback_url=f"http://track.test:{port}/link-unavailable",
        secret_key="browser-test-secret",
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield Site(port, settings)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


# -- the merchant's shop: static pages with the tag, on another site -----------------------------

SNIPPET = (
    "<script>window.rastro = window.rastro || function () "
    "{ (rastro.q = rastro.q || []).push(arguments) };</script>"
)


@dataclass
class Shop:
    port: int
    tracking_origin: str

    def url(self, path: str) -> str:
        return f"http://shop.test:{self.port}{path}"

    def page(self, tenant: TenantFixture, page: str) -> str:
        """A page of the shop with the tag of `tenant` (one shop server plays every tenant)."""
        return self.url(f"/{tenant.tenant_id}{page}")


def _shop_handler(
    api_origin: str, shop_port: list[int]
) -> type[http.server.BaseHTTPRequestHandler]:
    extra = {
        "/landing": "",
        "/second": "",
        # A call made before the tag loaded: the tag replays the snippet's queue.
        "/account": (
            "<script>rastro('identify', "
            f"{{customer_id: 'cus_42', email: {json.dumps(EMAIL)}}});</script>"
        ),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            tenant_id, _, page = path.lstrip("/").partition("/")
            if path == "/probe":
                # Served as track.test (cookies ignore ports: the tracking host's jar). Framed by
                # a shop.test page it is a third party: can it keep a cookie?
                body = (
                    "<script>document.cookie = 'probe=1; Path=/; Max-Age=600; SameSite=None;"
                    " Secure'; parent.postMessage({cookie: document.cookie}, '*');</script>"
                )
            elif path == "/probe-host":
                body = (
                    "<script>window.probe = null; addEventListener('message', "
                    "(e) => { window.probe = e.data.cookie; });</script>"
                    f'<iframe src="http://track.test:{shop_port[0]}/probe"></iframe>'
                )
            elif f"/{page}" in extra:
                tag = f"{api_origin}/t.js?t={tenant_id}"
                body = (
                    "<!doctype html><html><head><meta charset='utf-8'><title>Loja</title>"
                    f"{SNIPPET}{extra[f'/{page}']}<script async src='{tag}'></script></head>"
                    f"<body><h1>{page}</h1></body></html>"
                )
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def shop(tracking: Site) -> Iterator[Shop]:
    port: list[int] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _shop_handler(tracking.origin, port))
    port.append(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Shop(port[0], tracking.origin)
    server.shutdown()
    server.server_close()


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`apt-get install -y chromium`, which `make test` does through `make browser`)",
            pytrace=False,
        )
    with sync_playwright() as p:
        yield p


def _launch(p: Playwright, profile: Path, cookie_controls_mode: int, shop: Shop) -> BrowserContext:
    """A browser with its own profile, whose preferences set third-party cookie blocking.
    The test's http origins count as secure (as the https shop and tracking host of a real
    deployment do): crypto.subtle exists there, and Secure cookies can be set."""
    (profile / "Default").mkdir(parents=True)
    preferences = {"profile": {"cookie_controls_mode": cookie_controls_mode}}
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    secure = [shop.url(""), f"http://track.test:{shop.port}", shop.tracking_origin]
    return p.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=False,  # --headless=new is in the arguments
        args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={','.join(secure)}"],
    )


def _third_party_cookie_kept(context: BrowserContext, shop: Shop) -> bool:
    """Whether a frame from the tracking host's site, inside a shop page, keeps a cookie."""
    page = context.new_page()
    page.goto(shop.url("/probe-host"))
    page.wait_for_function("window.probe !== null", timeout=10_000)
    kept: str = page.evaluate("window.probe")
    page.close()
    return "probe=1" in kept


@pytest.fixture(scope="module")
def probe_works(
    playwright: Playwright, shop: Shop, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control: with third-party cookies allowed, the framed tracking site keeps one. So
    the probe can tell blocking apart, and its failing under blocking means something."""
    control = _launch(playwright, tmp_path_factory.mktemp("control"), ALLOW_3PC, shop)
    try:
        assert _third_party_cookie_kept(control, shop), "the probe cannot tell blocking apart"
    finally:
        control.close()


@pytest.fixture
def browser(
    playwright: Playwright, shop: Shop, tmp_path: Path, probe_works: None
) -> Iterator[BrowserContext]:
    """A browser with third-party cookies blocked, checked before it is handed over."""
    context = _launch(playwright, tmp_path / "profile", BLOCK_3PC, shop)
    try:
        assert not _third_party_cookie_kept(context, shop), "third-party cookies are not blocked"
        yield context
    finally:
        context.close()


# -- the event log -------------------------------------------------------------------------------


def _log(settings: Settings, tenant_id: str) -> list[Event]:
    """The tenant's records (the module's tests share one log), each checked by the contracts."""
    if not settings.event_log_dir.exists():
        return []
    reader = LogReader(settings.event_log_dir)
    records = [
        decode(record.payload)
        for partition in reader.partitions()
        for record in reader.read(partition, Offset.start(), max_records=100_000)
    ]
    return [r for r in records if r.tenant_id == tenant_id]


def _wait_for(
    site: Site, tenant: TenantFixture, done: Callable[[list[Event]], bool], timeout: float = 15
) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        records = _log(site.settings, tenant.tenant_id)
        if done(records):
            return records
        if time.monotonic() > deadline:
            kinds = [getattr(r, "kind", type(r).__name__) for r in records]
            raise AssertionError(f"the log has not got there in {timeout} s: {kinds}")
        time.sleep(0.1)


def _page_events(records: list[Event], kind: str) -> list[PageEvent]:
    return [r for r in records if isinstance(r, PageEvent) and r.kind == kind]


def _shop_cookies(context: BrowserContext, shop: Shop) -> dict[str, str]:
    return {c["name"]: c["value"] for c in context.cookies(shop.url("/"))}


# -- the journeys --------------------------------------------------------------------------------


def test_affiliate_journey_with_third_party_cookies_blocked(
    browser: BrowserContext, tracking: Site, shop: Shop
) -> None:
    tenant = make_tenant(tracking.settings, domain="shop.test", consent_policy="opt_out")
    link = httpx2.post(
        f"{tracking.api}/v1/links",
        headers=tenant.auth,
        json={
            "affiliate_id": tenant.affiliate_id,
            "campaign_id": tenant.campaign_id,
            "destination_url": shop.page(tenant, "/landing"),
        },
    )
    assert link.status_code == 201, link.text
    assert link.json()["url"].startswith(f"{tracking.origin}/r/")
    page = browser.new_page()

    # 1. The affiliate link: the redirect sends the visitor to the shop with the click id...
    page.goto(link.json()["url"])
    landing = urlsplit(page.url)
    assert (landing.hostname, landing.port, landing.path) == (
        "shop.test",
        shop.port,
        f"/{tenant.tenant_id}/landing",
    )
    click_id = parse_qs(landing.query)["rclid"][0]
    page.wait_for_function("document.cookie.includes('rastro_vid=')", timeout=10_000)

    # ... which the tag keeps first-party, on the shop's own site: a cookie and localStorage.
    cookies = {c["name"]: c for c in browser.cookies(shop.url("/"))}
    assert cookies["rastro_click"]["value"] == click_id
    assert cookies["rastro_click"]["domain"] in ("shop.test", ".shop.test")
    assert cookies["rastro_click"]["sameSite"] == "Lax"
    visitor_id = cookies["rastro_vid"]["value"]
    stored = json.loads(page.evaluate("localStorage.getItem('rastro_click')"))
    assert stored["id"] == click_id

    # 2. A second page, without the click id in its URL.
    page.goto(shop.page(tenant, "/second"))
    page.wait_for_function("window.rastro && window.rastro.loaded")
    assert page.evaluate("rastro.ids()") == {"click_id": click_id, "cookie_id": visitor_id}

    # 3. Cookies cleared (as browsers cap script-set cookies): localStorage still has the ids,
    # and the tag writes the cookies again. The identify was queued before the tag loaded.
    browser.clear_cookies()
    page.goto(shop.page(tenant, "/account"))
    page.wait_for_function("window.rastro && window.rastro.loaded")
    assert page.evaluate("rastro.ids()") == {"click_id": click_id, "cookie_id": visitor_id}
    assert _shop_cookies(browser, shop)["rastro_click"] == click_id

    # 4. A lead, sent as the visitor leaves the page (pagehide flushes the queue); the
    # command's promise settles once the event is queued (the email hashed).
    page.evaluate("(email) => rastro('lead', {email, plan: 'trial', seats: 3})", EMAIL)
    page.goto("about:blank")

    records = _wait_for(
        tracking,
        tenant,
        lambda rs: (
            len(_page_events(rs, "page_view")) >= 3
            and bool(_page_events(rs, "identify"))
            and bool(_page_events(rs, "lead"))
        ),
    )
    clicks = [r for r in records if isinstance(r, Click)]
    assert [c.click_id for c in clicks] == [click_id]  # the redirect's click
    views = _page_events(records, "page_view")
    assert [urlsplit(v.url).path.rsplit("/", 1)[1] for v in views] == [
        "landing",
        "second",
        "account",
    ]
    assert "rclid" not in views[1].url
    (identify,) = _page_events(records, "identify")
    (lead,) = _page_events(records, "lead")
    for event in [*views, identify, lead]:
        assert (event.click_id, event.cookie_id) == (click_id, visitor_id), event
        assert event.consent == "unknown"
        assert event.merchant_id

    email_hash = EdgeState(tracking.settings).pseudonym(tenant.tenant_id, "email", EMAIL_SHA256)
    assert (identify.customer_id, identify.email_hash) == ("cus_42", email_hash)
    assert (lead.email_hash, lead.properties) == (email_hash, {"plan": "trial", "seats": 3})
    links = {
        (r.left_kind, r.left_id, r.right_kind, r.right_id)
        for r in records
        if isinstance(r, IdentityLink)
    }
    assert links == {
        ("cookie", visitor_id, "customer", "cus_42"),
        ("cookie", visitor_id, "email_hash", email_hash),
        ("cookie", visitor_id, "click", click_id),
    }
    raw = b"".join(encode(r) for r in records).decode().lower()
    assert "ana.souza" not in raw and EMAIL_SHA256 not in raw  # the email only as a keyed hash


def test_opt_in_stores_nothing_until_consent(
    browser: BrowserContext, tracking: Site, shop: Shop
) -> None:
    tenant = make_tenant(tracking.settings, domain="shop.test", consent_policy="opt_in")
    page = browser.new_page()
    page.goto(shop.page(tenant, "/landing?rclid=clk_optin_1"))
    records = _wait_for(tracking, tenant, lambda rs: bool(_page_events(rs, "page_view")))

    # No consent yet: nothing stored, but the page view carries the click id of its URL.
    (view,) = _page_events(records, "page_view")
    assert (view.click_id, view.cookie_id, view.consent) == ("clk_optin_1", "", "unknown")
    assert _shop_cookies(browser, shop) == {}
    assert page.evaluate("localStorage.length") == 0

    page.evaluate("rastro('consent', 'granted')")
    cookies = _shop_cookies(browser, shop)
    assert (cookies["rastro_click"], cookies["rastro_consent"]) == ("clk_optin_1", "granted")
    page.goto(shop.page(tenant, "/second"))  # the choice is remembered by the next page
    records = _wait_for(tracking, tenant, lambda rs: len(_page_events(rs, "page_view")) == 2)
    second = _page_events(records, "page_view")[1]
    assert (second.click_id, second.cookie_id, second.consent) == (
        "clk_optin_1",
        cookies["rastro_vid"],
        "granted",
    )

    # Withdrawn: the identifiers are erased; only the refusal itself is remembered.
    page.evaluate("rastro('consent', 'denied')")
    assert _shop_cookies(browser, shop) == {"rastro_consent": "denied"}
    assert page.evaluate("Object.keys(localStorage)") == ["rastro_consent"]
