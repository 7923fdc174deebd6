"""The console (api/console/): sessions, CSRF, roles and tenancy, both languages on every
page, money formatting, the asset installer, and a headless Chromium check that the pages
load their JS/CSS and draw the chart. Through starlette's TestClient against the embedded
warehouse: `settings` (a migrated database, fresh tenants) or `built_warehouse` (simulated
traffic and a dbt build: real commissions)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from api import affiliates, review
from api.auth import MAX_FAILED_LOGINS
from api.campaigns import in_force
from api.console import assets
from api.console.formatting import format_money, parse_money, parse_percent
from api.console.i18n import EN, PT_BR, negotiate
from api.links import list_links
from api.main import create_app
from api.state import EdgeState
from api.store import ConfigStore
from rastro.settings import Settings
from tests.api.conftest import BuiltWarehouse, TenantFixture

PASSWORD = "correct horse battery"


# -- helpers ---------------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def add_user(
    settings: Settings,
    tenant_id: str,
    role: str,
    affiliate_id: str | None = None,
    locale: str = "pt-BR",
) -> str:
    """An active console user of the tenant; returns its email."""
    state = EdgeState(settings)
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    state.users.invite(
        state.store.for_tenant(tenant_id),
        email,
        f"{role.title()} User",
        role,  # type: ignore[arg-type]
        affiliate_id=affiliate_id,
        locale=locale,  # type: ignore[arg-type]
        password=PASSWORD,
    )
    return email


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
    )


def logged_in(client: TestClient, email: str) -> TestClient:
    answer = login(client, email)
    assert answer.status_code == 303, answer.text
    return client


def post(client: TestClient, page: str, path: str, data: dict[str, Any]) -> Any:
    """Posts a form the way a browser does: with the CSRF token of the page it came from."""
    token = csrf_of(client.get(page).text)
    return client.post(path, data={**data, "csrf_token": token})


# -- formatting and languages (no warehouse) -----------------------------------------------------


def test_money_is_formatted_exactly_per_currency_and_language() -> None:
    assert format_money(123456, "BRL", "pt-BR") == "R$ 1.234,56"
    assert format_money(123456, "USD", "en") == "$1,234.56"
    assert format_money(123456, "BRL", "en") == "R$1,234.56"
    assert format_money(123456, "USD", "pt-BR") == "US$ 1.234,56"
    assert format_money(1234, "JPY", "en") == "¥1,234"  # no minor unit
    assert format_money(1234567, "KWD", "pt-BR") == "KWD 1.234,567"  # three decimals
    assert format_money(-5, "BRL", "pt-BR") == "-R$ 0,05"
    assert format_money(0, "EUR", "en") == "€0.00"
    # 2**53 + 1 cents: a float would round it; the console must not.
    assert format_money(9007199254740993, "BRL", "en") == "R$90,071,992,547,409.93"


def test_money_typed_in_forms_is_read_exactly_or_refused() -> None:
    assert parse_money("1.234,56", "BRL", "pt-BR") == 123456
    assert parse_money("1234,5", "BRL", "pt-BR") == 123450
    assert parse_money("1,234.56", "USD", "en") == 123456
    assert parse_money("20", "BRL", "pt-BR") == 2000
    for typed in ("12.50", "1,234", "abc", "", "-3", "1,2,3"):
        with pytest.raises(ValueError):
            parse_money(typed, "BRL", "pt-BR")
    with pytest.raises(ValueError):
        parse_money("1.5", "JPY", "en")  # yen have no decimals
    assert parse_percent("12,5") == "0.125"
    assert parse_percent("10") == "0.1"
    assert parse_percent("100") == "1"
    for typed in ("101", "-1", "ten", "1e2"):
        with pytest.raises(ValueError):
            parse_percent(typed)


def test_both_catalogs_have_the_same_keys_and_placeholders() -> None:
    assert set(PT_BR) == set(EN)
    for key in PT_BR:
        assert set(re.findall(r"\{(\w+)\}", PT_BR[key])) == set(
            re.findall(r"\{(\w+)\}", EN[key])
        ), key


def test_every_literal_key_in_the_templates_is_in_the_catalogs() -> None:
    templates = Path(assets.HERE, "templates")
    used: set[str] = set()
    for template in templates.glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_]+\.[a-z_0-9.]+)'", template.read_text()))
    assert used, "no keys found: the pattern no longer matches the templates"
    assert sorted(used - set(PT_BR)) == []


def test_accept_language_picks_the_language_before_login() -> None:
    assert negotiate("en-US,en;q=0.9") == "en"
    assert negotiate("fr-FR, en;q=0.5, pt-BR;q=0.8") == "pt-BR"
    assert negotiate("de") == "pt-BR"
    assert negotiate("") == "pt-BR"


# -- the asset installer ----------------------------------------------------------------------


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _lock(tarball: str, integrity: str, files: dict[str, str]) -> assets.Lock:
    return assets.Lock(
        packages=[
            assets.Package(
                name="demo-lib",
                version="1.0.0",
                license="MIT",
                tarball=tarball,
                integrity=integrity,
                files=files,
            )
        ]
    )


def test_asset_installer_verifies_integrity_and_extracts_only_listed_files(tmp_path: Path) -> None:
    data = _tarball({"package/dist/lib.js": b"console.log(1)", "package/evil.sh": b"rm -rf"})
    local = tmp_path / "demo-lib-1.0.0.tgz"
    local.write_bytes(data)
    url = "https://registry.npmjs.org/demo-lib/-/demo-lib-1.0.0.tgz"
    served = {url: local}  # the tarball from a local file: no network in tests

    def fetch(wanted: str) -> bytes:
        return served[wanted].read_bytes()

    dest = tmp_path / "vendor"
    lock = _lock(url, _integrity(data), {"package/dist/lib.js": "demo/lib.js"})
    assert assets.install(lock, dest, fetch) == ["demo-lib@1.0.0"]
    assert (dest / "demo" / "lib.js").read_bytes() == b"console.log(1)"
    assert not list(dest.rglob("evil.sh"))
    assert assets.install(lock, dest, fetch) == []  # stamped: nothing fetched again

    # A tarball that is not the one the lock pins is refused before anything is written.
    tampered = _tarball({"package/dist/lib.js": b"alert('pwned')"})
    local.write_bytes(tampered)
    other = tmp_path / "other"
    with pytest.raises(assets.AssetError, match="integrity mismatch"):
        assets.install(lock, other, fetch)
    assert not (other / "demo" / "lib.js").exists()


def test_asset_installer_refuses_paths_outside_vendor_and_other_hosts(tmp_path: Path) -> None:
    data = _tarball({"package/a.js": b"1"})
    lock = _lock("https://x", _integrity(data), {"package/a.js": "../escape.js"})
    with pytest.raises(assets.AssetError, match="not a path inside"):
        assets.install(lock, tmp_path / "vendor", lambda _: data)
    assert not (tmp_path / "escape.js").exists()
    with pytest.raises(assets.AssetError, match=r"only https://registry\.npmjs\.org"):
        assets.download("https://cdn.example.com/htmx.tgz")


def test_the_committed_lock_pins_npm_tarballs_by_sha512() -> None:
    lock = assets.load_lock()
    names = {package.name for package in lock.packages}
    assert {"htmx.org", "chart.js"} <= names
    for package in lock.packages:
        assert package.tarball.startswith(f"https://registry.npmjs.org/{package.name}/-/")
        assert package.integrity.startswith("sha512-")


# -- sessions, CSRF and roles (a migrated database, fresh tenants) -------------------------------


def test_pages_redirect_to_login_and_login_sets_a_safe_session_cookie(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    answer = app.get("/console/campaigns")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/campaigns"

    email = add_user(settings, tenant.tenant_id, "admin")
    assert login(app, email, "wrong password!").status_code == 401
    assert "rastro_session" not in app.cookies

    answer = login(app, email)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "rastro_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower() and "Path=/console" in cookie
    assert "Secure" not in cookie  # public_url is http in tests
    assert app.get("/console/campaigns").status_code == 200

    logout = post(app, "/console/campaigns", "/console/logout", {})
    assert logout.status_code == 303
    assert app.get("/console/campaigns").status_code == 303


def test_repeated_failed_logins_lock_the_email_for_a_while(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    email = add_user(settings, tenant.tenant_id, "admin")
    for _ in range(MAX_FAILED_LOGINS):
        assert login(app, email, "wrong password!").status_code == 401
    # Locked: even the right password is refused, with a message that says why.
    locked = login(app, email)
    assert locked.status_code == 429 and "Muitas tentativas" in locked.text
    assert "rastro_session" not in app.cookies
    # Another email is not affected.
    assert login(app, add_user(settings, tenant.tenant_id, "admin")).status_code == 303


def test_session_cookie_is_secure_when_the_console_is_public_over_https(
    settings: Settings, tenant: TenantFixture
) -> None:
    email = add_user(settings, tenant.tenant_id, "admin")
    https = settings.model_copy(update={"public_url": "https://rastro.example.com"})
    with TestClient(create_app(https), base_url="https://testserver", follow_redirects=False) as c:
        assert "Secure" in login(c, email).headers["set-cookie"]


def test_a_login_next_path_never_leaves_the_console(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    email = add_user(settings, tenant.tenant_id, "admin")
    form = app.get("/console/login")
    answer = app.post(
        "/console/login",
        data={
            "email": email,
            "password": PASSWORD,
            "next": "https://evil.example/",
            "csrf_token": csrf_of(form.text),
        },
    )
    assert answer.headers["location"] == "/console/"


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    logged_in(app, add_user(settings, tenant.tenant_id, "admin"))
    body = {"display_name": "Forged", "segment": "", "country": ""}
    assert app.post("/console/affiliates", data=body).status_code == 403
    assert app.post("/console/affiliates", data={**body, "csrf_token": "0" * 64}).status_code == 403
    names = [
        a.display_name
        for a in affiliates.list_affiliates(ConfigStore(settings).for_tenant(tenant.tenant_id))
    ]
    assert "Forged" not in names
    # The header htmx sends works as well as the form field.
    token = csrf_of(app.get("/console/affiliates").text)
    answer = app.post("/console/affiliates", data=body, headers={"X-CSRF-Token": token})
    assert answer.status_code == 303
    # A login form posted without the browser's CSRF cookie (from another site) is refused.
    fresh = TestClient(app.app, follow_redirects=False)
    assert fresh.post("/console/login", data={"email": "a@b.c", "password": "x"}).status_code == 403


def test_each_role_sees_only_its_pages(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    analyst = add_user(settings, tenant.tenant_id, "analyst")
    affiliate = add_user(settings, tenant.tenant_id, "affiliate", tenant.affiliate_id)
    admin = add_user(settings, tenant.tenant_id, "admin")
    with TestClient(app.app, follow_redirects=False) as client:
        logged_in(client, analyst)
        for path in (
            "/console/campaigns",
            "/console/commissions",
            "/console/payouts",
            "/console/affiliate",
        ):
            answer = client.get(path)
            assert answer.status_code == 403, path
            assert 'data-testid="error-page"' in answer.text
        # Read-only: an analyst cannot change anything, even with a valid token.
        token = csrf_of(client.get("/console/reports").text)
        answer = client.post("/console/campaigns/new", data={"name": "X", "csrf_token": token})
        assert answer.status_code == 403
    with TestClient(app.app, follow_redirects=False) as client:
        logged_in(client, affiliate)
        for path in ("/console/", "/console/campaigns", "/console/commissions", "/console/reports"):
            assert client.get(path).status_code == 403, path
        assert client.get("/console/affiliate/links").status_code == 200
        assert client.get("/console/affiliate/payout-details").status_code == 200
    with TestClient(app.app, follow_redirects=False) as client:
        logged_in(client, admin)
        assert client.get("/console/affiliate/links").status_code == 403


def test_invitation_sets_a_password_once_and_logs_in(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    state = EdgeState(settings)
    admin = state.store.authenticate(tenant.admin_key)
    assert admin is not None
    email = f"ana-{uuid.uuid4().hex[:6]}@example.com"
    _, _, token = affiliates.invite_affiliate(
        state.store.for_tenant(tenant.tenant_id), state, admin, email, "Ana Blog", locale="en"
    )
    page = app.get(f"/console/invite/{token}")
    assert page.status_code == 200 and email in page.text
    path = f"/console/invite/{token}"
    mismatch = app.post(
        path,
        data={"password": PASSWORD, "confirm": "other password", "csrf_token": csrf_of(page.text)},
    )
    assert mismatch.status_code == 422 and 'data-testid="invite-error"' in mismatch.text
    weak = app.post(
        path, data={"password": "short", "confirm": "short", "csrf_token": csrf_of(page.text)}
    )
    assert weak.status_code == 422
    done = app.post(
        path, data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": csrf_of(page.text)}
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/affiliate"
    # The user's locale (en) speaks on its pages.
    assert '<html lang="en"' in app.get("/console/affiliate/links").text
    again = TestClient(app.app, follow_redirects=False)
    assert again.get(path).status_code == 404
    assert app.get("/console/invite/not-a-token").status_code == 404


def test_the_language_switch_and_accept_language(app: TestClient) -> None:
    assert '<html lang="en"' in app.get("/console/login", headers={"Accept-Language": "en-US"}).text
    assert '<html lang="pt-BR"' in app.get("/console/login").text
    answer = post(
        app, "/console/login", "/console/locale", {"locale": "en", "back": "/console/login"}
    )
    assert answer.status_code == 303
    assert '<html lang="en"' in app.get("/console/login").text
    assert post(app, "/console/login", "/console/locale", {"locale": "fr"}).status_code == 422


# -- merchant pages on a fresh tenant ------------------------------------------------------------


def _campaign_form(**changes: str) -> dict[str, str]:
    form = {
        "name": "Verão 2026",
        "status": "active",
        "destination_domains": "shop.example.com.br",
        "attribution_model": "last_click",
        "attribution_window_days": "30",
        "hold_days": "14",
        "click_id_param": "rclid",
        "landing_params": "via",
        "consent_policy": "opt_out",
        "rule_count": "2",
        "rule-0-id": "base",
        "rule-0-type": "percent",
        "rule-0-base": "net",
        "rule-0-rate": "10",
        "rule-0-cap": "150,00",
        "rule-0-tier-0-min": "50",
        "rule-0-tier-0-rate": "12,5",
        "rule-1-id": "signup",
        "rule-1-type": "flat",
        "rule-1-base": "net",
        "rule-1-amount": "20,00",
        "rule-1-category": "calcados",
        "rule-1-min_order": "1.000,00",
        "rule-1-new_customers_only": "1",
        "rule-1-countries": "br, pt",
        "rule-1-coupon_codes": "VERAO10",
        "action": "save",
    }
    form.update(changes)
    return form


def test_a_merchant_creates_a_campaign_with_rules(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    logged_in(app, add_user(settings, tenant.tenant_id, "admin"))
    more = post(
        app, "/console/campaigns/new", "/console/campaigns/new", _campaign_form(action="add_rule")
    )
    assert more.status_code == 200 and 'data-testid="rule-2"' in more.text

    bad = post(
        app,
        "/console/campaigns/new",
        "/console/campaigns/new",
        _campaign_form(**{"rule-0-rate": "dez"}),
    )
    assert bad.status_code == 422
    assert 'data-testid="error-rule-0-rate"' in bad.text and "Percentual inválido" in bad.text
    refused = post(
        app,
        "/console/campaigns/new",
        "/console/campaigns/new",
        _campaign_form(destination_domains="not a host!"),
    )
    assert refused.status_code == 422 and 'data-testid="error-destination_domains"' in refused.text

    answer = post(app, "/console/campaigns/new", "/console/campaigns/new", _campaign_form())
    assert answer.status_code == 303
    campaign_id = answer.headers["location"].rsplit("/", 1)[1]
    stored = in_force(ConfigStore(settings).for_tenant(tenant.tenant_id), campaign_id)[0]
    assert stored.hold_days == 14
    assert stored.commission_rules == [
        {
            "id": "base",
            "type": "percent",
            "base": "net",
            "rate": "0.1",
            "cap_minor": 15000,
            "tiers": [{"min_monthly_conversions": 50, "rate": "0.125"}],
        },
        {
            "id": "signup",
            "type": "flat",
            "base": "net",
            "amount_minor": 2000,
            "category": "calcados",
            "min_order_minor": 100000,
            "new_customers_only": True,
            "countries": ["BR", "PT"],
            "coupon_codes": ["VERAO10"],
        },
    ]
    # Editing starts from the terms in force, conditions included.
    edit = app.get(f"/console/campaigns/{campaign_id}/edit")
    assert 'value="BR PT"' in edit.text and 'value="VERAO10"' in edit.text
    detail = app.get(answer.headers["location"])
    assert "Campanha &#34;Verão 2026&#34; criada." in detail.text or "Verão 2026" in detail.text
    assert "R$ 150,00" in detail.text and "12,5%" in detail.text and "R$ 1.000,00" in detail.text
    assert "BR, PT" in detail.text and "VERAO10" in detail.text


def test_links_are_made_for_an_affiliate_and_never_open_redirects(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    logged_in(app, add_user(settings, tenant.tenant_id, "admin"))
    base = {"affiliate_id": tenant.affiliate_id, "campaign_id": tenant.campaign_id, "sub1": "ig"}
    bad = post(
        app,
        "/console/links",
        "/console/links",
        {**base, "destination_url": "https://evil.example/"},
    )
    assert bad.status_code == 422 and 'data-testid="error-destination_url"' in bad.text
    answer = post(
        app,
        "/console/links",
        "/console/links",
        {**base, "destination_url": f"https://{tenant.domain}/tenis"},
    )
    assert answer.status_code == 303
    listed = app.get(answer.headers["location"])
    assert 'data-created="true"' in listed.text
    assert re.search(r'value="http://testserver/r/[A-Za-z0-9]{10}"', listed.text)


def test_another_tenants_ids_are_404_and_change_nothing(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    logged_in(app, add_user(settings, other_tenant.tenant_id, "admin"))
    assert app.get(f"/console/campaigns/{tenant.campaign_id}").status_code == 404
    answer = post(
        app,
        "/console/affiliates",
        f"/console/affiliates/{tenant.affiliate_id}/segment",
        {"segment": "stolen"},
    )
    assert answer.status_code == 404
    victim = affiliates.affiliate(
        ConfigStore(settings).for_tenant(tenant.tenant_id), tenant.affiliate_id
    )
    assert victim is not None and victim.segment == "content"
    # A link for tenant A's affiliate and campaign cannot be made from tenant B.
    answer = post(app, "/console/links", "/console/links", {
        "affiliate_id": tenant.affiliate_id, "campaign_id": tenant.campaign_id,
        "destination_url": f"https://{tenant.domain}/",
    })  # fmt: skip
    assert answer.status_code == 422
    assert list_links(ConfigStore(settings).for_tenant(tenant.tenant_id)) == []


def test_static_files_are_served_locally_with_long_cache(app: TestClient) -> None:
    page = app.get("/console/login")
    for asset in ("vendor/htmx/htmx.min.js", "vendor/chartjs/chart.umd.min.js", "console.css"):
        match = re.search(rf'"(/console/static/{re.escape(asset)}\?v=[0-9a-f]+)"', page.text)
        assert match, f"{asset} is not linked with a version (are the assets installed? make setup)"
        answer = app.get(match.group(1))
        assert answer.status_code == 200
        assert "immutable" in answer.headers["cache-control"]
    assert "//" not in re.sub(
        r"https?://[^\"']*w3\.org[^\"']*",
        "",
        "".join(re.findall(r'(?:src|href)="([^"]+)"', page.text)),
    )


# -- every page, both languages, on real data ----------------------------------------------------


@dataclass
class BuiltUsers:
    settings: Settings
    tenant_id: str
    admin: str
    analyst: str
    affiliate: str
    affiliate_id: str
    commission_id: str
    conversion_id: str
    campaign_id: str


@pytest.fixture(scope="module")
def built_users(built_warehouse: BuiltWarehouse) -> BuiltUsers:
    settings = built_warehouse.settings
    store = ConfigStore(settings)
    tenant_id = built_warehouse.tenant_ids[0]
    scope = store.for_tenant(tenant_id)
    found = review.list_commissions(scope, review.Filters(), 1000)
    assert found.items, "the built warehouse has no commissions for its first tenant"
    # The affiliate with most commissions: its pages have data.
    counts: dict[str, int] = {}
    for item in found.items:
        counts[item.affiliate_id] = counts.get(item.affiliate_id, 0) + 1
    affiliate_id = max(counts, key=lambda a: counts[a])
    commission = next(c for c in found.items if c.affiliate_id == affiliate_id)
    return BuiltUsers(
        settings=settings,
        tenant_id=tenant_id,
        admin=add_user(settings, tenant_id, "admin"),
        analyst=add_user(settings, tenant_id, "analyst"),
        affiliate=add_user(settings, tenant_id, "affiliate", affiliate_id),
        affiliate_id=affiliate_id,
        commission_id=commission.commission_id,
        conversion_id=commission.conversion_id,
        campaign_id=commission.campaign_id,
    )


@pytest.fixture
def built_app(built_users: BuiltUsers) -> Iterator[TestClient]:
    with TestClient(create_app(built_users.settings), follow_redirects=False) as client:
        yield client


def _pages(users: BuiltUsers) -> dict[str, list[str]]:
    merchant = ["/console/", "/console/reports", "/console/reports?group_by=affiliate",
                f"/console/conversions/{users.conversion_id}"]  # fmt: skip
    return {
        users.admin: [
            *merchant,
            "/console/campaigns",
            "/console/campaigns/new",
            f"/console/campaigns/{users.campaign_id}",
            "/console/affiliates",
            "/console/links",
            "/console/commissions",
            "/console/commissions?flagged=yes",
            f"/console/commissions/{users.commission_id}",
            "/console/payouts",
        ],
        users.analyst: merchant,
        users.affiliate: [
            "/console/affiliate",
            "/console/affiliate/links",
            "/console/affiliate/commissions",
            f"/console/affiliate/commissions/{users.commission_id}",
            "/console/affiliate/payout-details",
        ],
    }


@pytest.mark.parametrize("locale", ["pt-BR", "en"])
def test_every_page_renders_in_both_languages(
    built_app: TestClient, built_users: BuiltUsers, locale: str
) -> None:
    for email, paths in _pages(built_users).items():
        with TestClient(built_app.app, follow_redirects=False) as client:
            client.cookies.set("rastro_locale", locale)
            logged_in(client, email)
            for path in paths:
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.text[-2000:])
                assert f'<html lang="{locale}"' in answer.text, path
                assert 'data-testid="nav-' in answer.text


def test_a_conversion_page_shows_every_models_credit_and_the_payable_one(
    built_app: TestClient, built_users: BuiltUsers
) -> None:
    logged_in(built_app, built_users.analyst)
    page = built_app.get(f"/console/conversions/{built_users.conversion_id}").text
    models = set(re.findall(r'data-testid="model-row" data-model="(\w+)"', page))
    assert models == {
        "first_click",
        "last_click",
        "linear",
        "time_decay",
        "position_based",
        "data_driven",
    }
    payable = re.findall(r'data-model="(\w+)" data-payable="true"', page)
    assert len(set(payable)) == 1, payable
    assert 'data-testid="explained-commission"' in page


def test_the_dashboard_shows_money_in_the_users_language(
    built_app: TestClient, built_users: BuiltUsers
) -> None:
    logged_in(built_app, built_users.admin)
    page = built_app.get("/console/?first=2026-08-01&last=2026-11-01").text
    assert 'data-testid="daily-chart"' in page
    spec = json.loads(re.search(r'id="daily-chart-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert len(spec["labels"]) == 93 and sum(spec["datasets"][0]["data"]) > 0
    assert re.search(r"R\$ \d{1,3}(\.\d{3})*,\d{2}", page), "no BRL amount in pt-BR form"


def test_a_merchant_approves_a_commission_and_an_affiliate_sees_only_its_own(
    built_app: TestClient, built_users: BuiltUsers
) -> None:
    scope = ConfigStore(built_users.settings).for_tenant(built_users.tenant_id)
    pending = review.list_commissions(scope, review.Filters(status="pending"), 1).items
    assert pending, "no pending commission to approve"
    target = pending[0].commission_id
    with TestClient(built_app.app, follow_redirects=False) as client:
        logged_in(client, built_users.admin)
        refused = post(client, "/console/commissions", "/console/commissions/decide",
                       {"decision": "reject", "commission_id": target, "reason": ""})  # fmt: skip
        assert refused.status_code == 303
        assert review.commission(scope, target).status == "pending"  # type: ignore[union-attr]
        answer = post(client, "/console/commissions", "/console/commissions/decide",
                      {"decision": "approve", "commission_id": target})  # fmt: skip
        assert answer.status_code == 303
        assert review.commission(scope, target).status == "approved"  # type: ignore[union-attr]
        after = client.get(answer.headers["location"]).text
        assert "1 comissão(ões) aprovada(s). O extrato atualiza na próxima execução." in after
    with TestClient(built_app.app, follow_redirects=False) as client:
        logged_in(client, built_users.affiliate)
        page = client.get("/console/affiliate/commissions").text
        shown = re.findall(r'data-commission-id="([^"]+)"', page)
        assert shown and all(c.endswith(":" + built_users.affiliate_id) for c in shown)
        assert "fraud-flag" not in page
        other = next(
            c
            for c in review.list_commissions(scope, review.Filters(), 1000).items
            if c.affiliate_id != built_users.affiliate_id
        )
        assert (
            client.get(f"/console/affiliate/commissions/{other.commission_id}").status_code == 404
        )


def test_another_tenants_commission_conversion_and_batch_are_404(
    built_app: TestClient, built_users: BuiltUsers, built_warehouse: BuiltWarehouse
) -> None:
    outsider = add_user(built_users.settings, built_warehouse.tenant_ids[1], "admin")
    logged_in(built_app, outsider)
    assert built_app.get(f"/console/commissions/{built_users.commission_id}").status_code == 404
    assert built_app.get(f"/console/conversions/{built_users.conversion_id}").status_code == 404
    assert built_app.get(f"/console/campaigns/{built_users.campaign_id}").status_code == 404
    forged = {"decision": "reject", "commission_id": built_users.commission_id, "reason": "x"}
    answer = post(built_app, "/console/commissions", "/console/commissions/decide", forged)
    assert answer.status_code == 404
    scope = ConfigStore(built_users.settings).for_tenant(built_users.tenant_id)
    decided = review.commission(scope, built_users.commission_id)
    assert decided is not None and all(d.reason != "x" for d in decided.decisions)
    assert built_app.get("/console/payouts/not-a-batch").status_code == 404


# -- headless Chromium: the JS and CSS load and the chart draws ---------------------------------


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.slow
def test_pages_load_their_assets_and_draw_the_chart_in_chromium(
    built_users: BuiltUsers, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = built_users.settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    failed: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            origin = f"http://127.0.0.1:{port}"
            page.goto(f"{origin}/console/login")
            page.fill("[data-testid=login-email]", built_users.admin)
            page.fill("[data-testid=login-password]", PASSWORD)
            page.click("[data-testid=login-submit]")
            page.wait_for_url(f"{origin}/console/")
            page.goto(f"{origin}/console/?first=2026-08-01&last=2026-11-01")
            page.wait_for_function(
                "document.getElementById('daily-chart').dataset.rendered === 'true'"
            )
            assert page.evaluate("typeof htmx") == "object"
            assert page.evaluate("Chart.getChart('daily-chart').data.labels.length") == 93
            # Pico's styles apply (the sidebar is a grid column, not a stacked block).
            assert (
                page.evaluate("getComputedStyle(document.querySelector('.shell')).display")
                == "grid"
            )
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            page.goto(f"{origin}/console/commissions")
            page.check("[data-testid=select-commission] >> nth=0")
            page.select_option("[data-testid=decision]", "hold")
            page.fill("[data-testid=decision-reason]", "checking the order")
            page.click("[data-testid=decide]")  # htmx posts and swaps the queue
            page.wait_for_selector("#review [data-testid=flash]")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert failed == []
