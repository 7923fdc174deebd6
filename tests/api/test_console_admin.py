"""The console's admin pages (api/console/pages/{webhooks,audit,settings}.py): each renders in
both languages, each action works end to end against the embedded warehouse (what a page
does is read back through the service modules, and a revoked key is refused by the API),
every POST needs the CSRF token, analysts and affiliates get 403, and another tenant's ids
are 404 and stay untouched."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from api import audit, payouts, webhooks
from api.access import api_keys
from api.state import EdgeState
from api.store import ConfigStore, Principal, TenantScope
from rastro.settings import Settings
from tests.api.conftest import TenantFixture
from tests.api.test_console import add_user, csrf_of, logged_in, post
from tests.pipelines.test_webhooks import Receiver, receiver

__all__ = ["receiver"]  # the fixture: a local HTTP receiver of webhook requests

# Never delivered to (no test event is queued for it): the delivery worker other tests run
# must not reach the network.
URL = "https://erp.loja.example.com.br/hooks/rastro"


# -- helpers ---------------------------------------------------------------------------------


def scope_of(settings: Settings, tenant: TenantFixture) -> TenantScope:
    return ConfigStore(settings).for_tenant(tenant.tenant_id)


def admin_client(app: TestClient, settings: Settings, tenant: TenantFixture) -> TestClient:
    """`app` logged in as a new admin user of `tenant`."""
    return logged_in(app, add_user(settings, tenant.tenant_id, "admin"))


def attribute(html: str, testid: str, name: str) -> list[str]:
    """The attribute `name` of every element with data-testid=`testid`, in page order."""
    elements = re.findall(rf'<[^>]*data-testid="{re.escape(testid)}"[^>]*>', html)
    values = []
    for element in elements:
        match = re.search(rf'\s{re.escape(name)}="([^"]*)"', element)
        assert match, f"{testid} has no {name}: {element}"
        values.append(match.group(1))
    return values


def shown(html: str, testid: str) -> str:
    """The value of the read-only field showing a secret once."""
    [value] = attribute(html, testid, "value")
    return value


def flash(html: str) -> str:
    match = re.search(r'data-testid="flash">([^<]*)<', html)
    assert match, "no flash message"
    return match.group(1)


def create_endpoint(
    client: TestClient, url: str = URL, types: tuple[str, ...] = ("payout.paid",)
) -> tuple[str, str]:
    """Creates an endpoint through the page; (its id, the secret shown)."""
    answer = post(
        client, "/console/webhooks", "/console/webhooks", {"url": url, "event_types": list(types)}
    )
    assert answer.status_code == 201, answer.text
    [endpoint_id] = re.findall(r'data-testid="webhook-id">([^<]+)<', answer.text)
    return endpoint_id, shown(answer.text, "webhook-secret")


# -- every page, both languages -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "words"),
    [("pt-BR", ("Configurações", "Auditoria", "Registro de entregas")),
     ("en", ("Settings", "Audit log", "Delivery log"))],
)  # fmt: skip
def test_each_admin_page_renders_in_both_languages(
    app: TestClient, settings: Settings, tenant: TenantFixture, locale: str, words: tuple[str, ...]
) -> None:
    client = logged_in(app, add_user(settings, tenant.tenant_id, "admin", locale=locale))
    endpoint_id, _ = create_endpoint(client)
    pages = {
        "/console/webhooks": "webhook-row",
        f"/console/webhooks/{endpoint_id}": "deliveries-table",
        "/console/audit": "audit-row",
        "/console/settings": "api-key-row",
    }
    text = ""
    for path, testid in pages.items():
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert f'<html lang="{locale}"' in answer.text
        assert f'data-testid="{testid}"' in answer.text, path
        for nav in ("nav-webhooks", "nav-audit", "nav-settings"):
            assert f'data-testid="{nav}"' in answer.text, path
        text += answer.text
    for word in words:
        assert word in text, word


# -- webhooks --------------------------------------------------------------------------------------


def test_a_webhook_endpoint_is_created_edited_disabled_rotated_and_deleted(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    client = admin_client(app, settings, tenant)
    scope, vault = scope_of(settings, tenant), EdgeState(settings).vault

    # Invalid input is refused next to the field, and nothing is created.
    for form, field in (
        ({"url": "ftp://erp.example.com/hooks", "event_types": ["payout.paid"]}, "url"),
        ({"url": "https://user:pw@erp.example.com/", "event_types": ["payout.paid"]}, "url"),
        ({"url": URL}, "event_types"),
        ({"url": URL, "event_types": ["webhook.test"]}, "event_types"),
    ):
        answer = post(client, "/console/webhooks", "/console/webhooks", form)
        assert answer.status_code == 422, form
        assert f'data-testid="error-{field}"' in answer.text, form
    assert webhooks.endpoints(scope) == []

    endpoint_id, secret = create_endpoint(client, types=("payout.paid", "commission.approved"))
    stored = webhooks.endpoint(scope, endpoint_id)
    assert stored is not None and stored.url == URL and stored.status == "active"
    assert stored.event_types == ["commission.approved", "payout.paid"]
    assert webhooks.endpoint_secret(scope, vault, stored) == secret  # the one shown
    page = client.get(f"/console/webhooks/{endpoint_id}").text
    assert secret not in page and 'data-testid="webhook-secret"' not in page  # shown once
    assert attribute(client.get("/console/webhooks").text, "webhook-row", "data-endpoint-id") == [
        endpoint_id
    ]

    detail = f"/console/webhooks/{endpoint_id}"
    new_url = "https://hooks.loja.example.com.br/rastro"
    answer = post(client, detail, detail, {"url": "not a url", "event_types": ["payout.paid"]})
    assert answer.status_code == 422 and 'data-testid="error-url"' in answer.text
    answer = post(client, detail, detail, {"url": new_url, "event_types": ["commission.created"]})
    assert answer.status_code == 303
    stored = webhooks.endpoint(scope, endpoint_id)
    assert stored is not None
    assert (stored.url, stored.event_types) == (new_url, ["commission.created"])

    answer = post(client, detail, f"{detail}/status", {"action": "disable"})
    assert answer.status_code == 303
    assert flash(client.get(detail).text) == "Endpoint agora: Desativado."
    stored = webhooks.endpoint(scope, endpoint_id)
    assert stored is not None and stored.status == "disabled"
    # A disabled endpoint gets no test event.
    answer = post(client, detail, f"{detail}/test", {})
    assert answer.status_code == 303
    assert "desativado" in flash(client.get(detail).text)
    assert post(client, detail, f"{detail}/status", {"action": "pause"}).status_code == 422
    post(client, detail, f"{detail}/status", {"action": "enable"})
    stored = webhooks.endpoint(scope, endpoint_id)
    assert stored is not None and stored.status == "active"

    answer = post(client, detail, f"{detail}/rotate-secret", {})
    assert answer.status_code == 200
    rotated = shown(answer.text, "webhook-secret")
    assert rotated.startswith("whsec_") and rotated != secret
    stored = webhooks.endpoint(scope, endpoint_id)
    assert stored is not None and webhooks.endpoint_secret(scope, vault, stored) == rotated

    # Deleting needs the confirmation.
    assert post(client, detail, f"{detail}/delete", {}).status_code == 303
    assert webhooks.endpoint(scope, endpoint_id) is not None
    answer = post(client, detail, f"{detail}/delete", {"confirm": "yes"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/webhooks"
    assert webhooks.endpoint(scope, endpoint_id) is None
    assert client.get(detail).status_code == 404

    actions = [e.action for e in audit.entries(scope, "webhook_endpoint", endpoint_id)]
    assert actions == [
        "webhook.delete",
        "webhook.rotate_secret",
        "webhook.update",  # enabled
        "webhook.update",  # disabled
        "webhook.update",  # URL and events
        "webhook.create",
    ]


def test_a_test_event_its_delivery_log_and_a_retry(
    app: TestClient, settings: Settings, tenant: TenantFixture, receiver: Receiver
) -> None:
    client = admin_client(app, settings, tenant)
    scope = scope_of(settings, tenant)
    endpoint_id, secret = create_endpoint(client, url=receiver.url)
    detail = f"/console/webhooks/{endpoint_id}"
    assert 'data-testid="delivery-row"' not in client.get(detail).text

    assert post(client, detail, f"{detail}/test", {}).status_code == 303
    [event] = scope.rows(
        "SELECT event_id FROM webhook_events WHERE endpoint_id = {e:String}", e=endpoint_id
    )
    event_id = event["event_id"]
    assert event_id.startswith("webhook.test:")

    # Sent by hand twice (the worker would send it too): the receiver fails, then accepts.
    receiver.answer([503])
    answer = post(client, detail, f"{detail}/retry", {"event_id": event_id})
    assert answer.status_code == 303
    assert flash(client.get(detail).text) == "Evento enviado de novo: Falhou."
    answer = post(client, detail, f"{detail}/retry", {"event_id": event_id})
    assert flash(client.get(detail).text) == "Evento enviado de novo: Entregue."
    assert [r.event["id"] for r in receiver.received] == [event_id, event_id]
    assert receiver.received[1].signed_with(secret)

    page = client.get(detail).text
    assert attribute(page, "delivery-row", "data-outcome") == ["delivered", "failed"]
    assert attribute(page, "delivery-row", "data-event-id") == [event_id, event_id]
    assert re.findall(r'data-testid="delivery-status">([^<]*)<', page) == ["200", "503"]
    assert "HTTP 503" in re.findall(r'data-testid="delivery-error">([^<]*)<', page)[1]
    failed = client.get(detail, params={"outcome": "failed"}).text
    assert attribute(failed, "delivery-row", "data-outcome") == ["failed"]
    gave_up = client.get(detail, params={"outcome": "gave_up"}).text
    assert 'data-testid="delivery-row"' not in gave_up
    assert client.get(detail, params={"outcome": "lost"}).status_code == 422

    # An event that is not this endpoint's is a 404; nothing is sent.
    answer = post(client, detail, f"{detail}/retry", {"event_id": "payout.paid:nope:BRL"})
    assert answer.status_code == 404 and len(receiver.received) == 2
    actions = [e.action for e in audit.entries(scope, "webhook_endpoint", endpoint_id)]
    assert actions == ["webhook.retry", "webhook.retry", "webhook.test", "webhook.create"]


# -- the audit log ---------------------------------------------------------------------------------


def test_the_audit_log_filters_pages_and_shows_details(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    scope = scope_of(settings, tenant)
    robot = Principal(
        tenant_id=tenant.tenant_id, actor_id="key-robot", actor_name="Robot", scopes=["admin"]
    )
    for n in range(55):
        audit.record(scope, robot, "link.create", "link", f"link-{n:02d}", details={"n": n})
    audit.record(scope, robot, "campaign.update", "campaign", "camp-1", "new terms",
                 details={"name": "Verão", "rules": [{"rate": "0.1"}]})  # fmt: skip
    client = admin_client(app, settings, tenant)

    def rows(**query: str) -> list[str]:
        answer = client.get("/console/audit", params=query)
        assert answer.status_code == 200, answer.text
        return attribute(answer.text, "audit-row", "data-action")

    everything = client.get("/console/audit").text
    assert len(attribute(everything, "audit-row", "data-audit-id")) == 50
    assert rows(subject_kind="campaign") == ["campaign.update", "campaign.create"]  # the fixture's
    assert rows(subject_kind="link", subject_id="link-07") == ["link.create"]
    assert rows(action="campaign.update", actor_id="key-robot") == ["campaign.update"]
    assert rows(actor_id="someone-else") == []
    # Details and reason are shown with the entry.
    page = client.get("/console/audit", params={"subject_id": "camp-1"}).text
    assert "new terms" in page and "Verão" in page and "&#34;rate&#34;: &#34;0.1&#34;" in page

    # The period is whole days of the tenant's calendar.
    today = datetime.now(UTC).date()
    assert len(rows(first=str(today - timedelta(days=1)), last=str(today + timedelta(days=1)),
                    action="link.create")) == 50  # fmt: skip
    assert rows(first="2020-01-01", last="2020-01-31") == []
    bad = client.get("/console/audit", params={"first": "2026-02-30"})
    assert bad.status_code == 422 and 'data-testid="error-first"' in bad.text
    backwards = client.get("/console/audit", params={"first": "2026-03-02", "last": "2026-03-01"})
    assert backwards.status_code == 422 and 'data-testid="error-last"' in backwards.text

    # Pages: the next one continues where the first stopped, with the same filters.
    first_page = client.get("/console/audit", params={"action": "link.create"}).text
    [next_url] = attribute(first_page, "page-next", "href")
    second_page = client.get(next_url.replace("&amp;", "&")).text
    first_ids = attribute(first_page, "audit-row", "data-audit-id")
    second_ids = attribute(second_page, "audit-row", "data-audit-id")
    assert len(first_ids) == 50 and len(second_ids) == 5 and not set(first_ids) & set(second_ids)
    assert 'data-testid="page-next"' not in second_page

    # Another tenant's admin sees none of it.
    other = TestClient(app.app, follow_redirects=False)
    logged_in(other, add_user(settings, other_tenant.tenant_id, "admin"))
    answer = other.get("/console/audit", params={"subject_id": "camp-1"})
    assert answer.status_code == 200 and 'data-testid="audit-row"' not in answer.text


# -- settings: API keys, users, payout minimums, language ------------------------------------------


def test_an_api_key_is_shown_once_and_once_revoked_the_api_refuses_it(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    client = admin_client(app, settings, tenant)
    scope = scope_of(settings, tenant)
    tomorrow = str(datetime.now(UTC).date() + timedelta(days=2))
    for form, field in (
        ({"name": "", "scopes": ["admin"]}, "key_name"),
        ({"name": "K"}, "key_scopes"),
        ({"name": "K", "scopes": ["root"]}, "key_scopes"),
        ({"name": "K", "scopes": ["affiliate", "admin"], "affiliate_id": tenant.affiliate_id},
         "key_scopes"),
        ({"name": "K", "scopes": ["affiliate"]}, "key_affiliate"),
        ({"name": "K", "scopes": ["admin"], "affiliate_id": tenant.affiliate_id}, "key_affiliate"),
        # Another tenant's affiliate is unknown here.
        ({"name": "K", "scopes": ["affiliate"], "affiliate_id": other_tenant.affiliate_id},
         "key_affiliate"),
        ({"name": "K", "scopes": ["admin"], "expires_on": "2020-01-01"}, "key_expires"),
        ({"name": "K", "scopes": ["admin"], "expires_on": "soon"}, "key_expires"),
    ):  # fmt: skip
        answer = post(client, "/console/settings", "/console/settings/api-keys", form)
        assert answer.status_code == 422, form
        assert f'data-testid="error-{field}"' in answer.text, form
    assert [k.name for k in api_keys(scope)] == ["first admin key"]  # the fixture's only

    answer = post(client, "/console/settings", "/console/settings/api-keys",
                  {"name": "ERP", "scopes": ["admin"], "expires_on": tomorrow})  # fmt: skip
    assert answer.status_code == 201
    key = shown(answer.text, "new-api-key")
    [issued] = [k for k in api_keys(scope) if k.name == "ERP"]
    assert issued.scopes == ["admin"] and issued.expires_at is not None
    assert key.startswith(issued.prefix) and key not in client.get("/console/settings").text
    assert app.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    answer = post(client, "/console/settings", f"/console/settings/api-keys/{issued.id}/revoke",
                  {"reason": "leaked"})  # fmt: skip
    assert answer.status_code == 303
    assert app.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    page = client.get("/console/settings").text
    assert "revoked" in attribute(page, "api-key-row", "data-status")
    [entry] = audit.entries(scope, "api_key", issued.id, action="api_key.revoke")
    assert entry.reason == "leaked"

    form = {"name": "Blog", "scopes": ["affiliate"], "affiliate_id": tenant.affiliate_id}
    answer = post(client, "/console/settings", "/console/settings/api-keys", form)
    assert answer.status_code == 201
    affiliate_key = shown(answer.text, "new-api-key")
    principal = ConfigStore(settings).authenticate(affiliate_key)
    assert principal is not None and principal.affiliate_id == tenant.affiliate_id


def test_staff_are_invited_disabled_enabled_and_invited_again(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    client = admin_client(app, settings, tenant)
    state, scope = EdgeState(settings), scope_of(settings, tenant)
    email = f"marina-{uuid.uuid4().hex[:6]}@example.com"
    form = {"display_name": "Marina", "email": email, "role": "analyst", "locale": "en"}
    for changes, field in (
        ({"email": "not-an-email"}, "user_email"),
        ({"display_name": " "}, "user_name"),
        ({"role": "affiliate"}, "user_role"),
        ({"locale": "fr"}, "user_locale"),
    ):
        answer = post(client, "/console/settings", "/console/settings/users", {**form, **changes})
        assert answer.status_code == 422, changes
        assert f'data-testid="error-{field}"' in answer.text, changes

    answer = post(client, "/console/settings", "/console/settings/users", form)
    assert answer.status_code == 201
    url = shown(answer.text, "invitation-url")
    assert url.startswith("http://testserver/console/invite/")
    [user] = [u for u in state.users.users(scope) if u.email == email]
    assert (user.role, user.status, user.locale) == ("analyst", "invited", "en")
    invitation = url.removeprefix("http://testserver")
    assert email in TestClient(app.app).get(invitation).text
    again = post(client, "/console/settings", "/console/settings/users", form)
    assert again.status_code == 409 and 'data-testid="error-user_email"' in again.text

    # A new invitation replaces the old one.
    answer = post(client, "/console/settings", f"/console/settings/users/{user.id}/reinvite", {})
    assert answer.status_code == 200
    renewed = shown(answer.text, "invitation-url")
    assert renewed != url
    assert TestClient(app.app).get(invitation).status_code == 404
    assert TestClient(app.app).get(renewed.removeprefix("http://testserver")).status_code == 200

    status_path = f"/console/settings/users/{user.id}/status"
    post(client, "/console/settings", status_path, {"action": "disable", "reason": "left"})
    found = state.users.user(scope, user.id)
    assert found is not None and found.status == "disabled"
    answer = post(client, "/console/settings", f"/console/settings/users/{user.id}/reinvite", {})
    assert answer.status_code == 303  # not invited any more: nothing to renew
    post(client, "/console/settings", status_path, {"action": "enable"})
    found = state.users.user(scope, user.id)
    assert found is not None and found.status == "invited"  # it never set a password

    # An admin cannot disable themselves (no button; a forged form changes nothing).
    page = client.get("/console/settings").text
    [me] = [u for u in state.users.users(scope) if u.role == "admin"]
    rows = {
        user_id: row
        for row in page.split('<tr data-testid="user-row"')[1:]
        for user_id in re.findall(r'^ data-user-id="([^"]+)"', row)
    }
    assert set(rows) == {me.id, user.id}
    assert 'data-testid="disable-user"' not in rows[me.id]
    assert 'data-testid="disable-user"' in rows[user.id]
    answer = post(client, "/console/settings", f"/console/settings/users/{me.id}/status",
                  {"action": "disable"})  # fmt: skip
    assert answer.status_code == 303
    still = state.users.user(scope, me.id)
    assert still is not None and still.status == "active"
    assert client.get("/console/settings").status_code == 200


def test_payout_minimums_are_read_exactly_in_the_users_language(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    client = admin_client(app, settings, tenant)
    scope = scope_of(settings, tenant)
    path = "/console/settings/payout-minimums"
    for form, field in (
        ({"currency": "BRL", "minimum": "12.50"}, "minimum_amount"),  # pt-BR: 12,50
        ({"currency": "JPY", "minimum": "1,5"}, "minimum_amount"),  # no decimals in yen
        ({"currency": "BRL", "minimum": "-5"}, "minimum_amount"),
        ({"currency": "BRL", "minimum": ""}, "minimum_amount"),
        ({"currency": "XXX", "minimum": "10"}, "minimum_currency"),
    ):
        answer = post(client, "/console/settings", path, form)
        assert answer.status_code == 422, form
        assert f'data-testid="error-{field}"' in answer.text, form
    assert payouts.payout_settings(scope).minimums == []

    answer = post(client, "/console/settings", path, {"currency": "BRL", "minimum": "1.234,56"})
    assert answer.status_code == 303
    assert flash(client.get("/console/settings").text) == "Mínimo de BRL salvo: R$ 1.234,56."
    post(client, "/console/settings", "/console/locale", {"locale": "en"})
    post(client, "/console/settings", path, {"currency": "USD", "minimum": "2,000.05"})
    minimums = {m.currency: m.minimum_minor for m in payouts.payout_settings(scope).minimums}
    assert minimums == {"BRL": 123456, "USD": 200005}
    page = client.get("/console/settings").text
    assert attribute(page, "minimum-row", "data-minimum-minor") == ["123456", "200005"]
    assert "R$1,234.56" in page and "$2,000.05" in page


def test_the_language_switch_saves_the_users_own_language(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    email = add_user(settings, tenant.tenant_id, "admin")
    client = logged_in(app, email)
    state, scope = EdgeState(settings), scope_of(settings, tenant)
    assert '<html lang="pt-BR"' in client.get("/console/settings").text
    answer = post(client, "/console/settings", "/console/locale",
                  {"locale": "en", "back": "/console/settings#language"})  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/console/settings#language"
    [user] = [u for u in state.users.users(scope) if u.email == email]
    assert user.locale == "en"
    # Another browser (no language cookie) speaks the user's language.
    elsewhere = logged_in(TestClient(app.app, follow_redirects=False), email)
    assert '<html lang="en"' in elsewhere.get("/console/settings").text


# -- CSRF, roles, tenancy --------------------------------------------------------------------------


def _posts(endpoint_id: str, key_id: str, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every POST of the admin pages, with a valid form."""
    detail = f"/console/webhooks/{endpoint_id}"
    return [
        ("/console/webhooks", {"url": URL, "event_types": ["payout.paid"]}),
        (detail, {"url": "https://forged.example.com/", "event_types": ["payout.paid"]}),
        (f"{detail}/status", {"action": "disable"}),
        (f"{detail}/rotate-secret", {}),
        (f"{detail}/test", {}),
        (f"{detail}/retry", {"event_id": "webhook.test:x"}),
        (f"{detail}/delete", {"confirm": "yes"}),
        ("/console/settings/api-keys", {"name": "Forged", "scopes": ["admin"]}),
        (f"/console/settings/api-keys/{key_id}/revoke", {}),
        ("/console/settings/users", {"display_name": "X", "email": "x@example.com",
                                     "role": "admin", "locale": "en"}),
        (f"/console/settings/users/{user_id}/status", {"action": "disable"}),
        (f"/console/settings/users/{user_id}/reinvite", {}),
        ("/console/settings/payout-minimums", {"currency": "BRL", "minimum": "1"}),
    ]  # fmt: skip


def _untouched(settings: Settings, tenant: TenantFixture, endpoint_id: str, key: str) -> None:
    scope = scope_of(settings, tenant)
    stored = webhooks.endpoint(scope, endpoint_id)
    assert stored is not None and stored.status == "active" and stored.url == URL
    assert [e.url for e in webhooks.endpoints(scope)] == [URL]
    assert "Forged" not in [k.name for k in api_keys(scope)]
    assert ConfigStore(settings).authenticate(key) is not None
    assert payouts.payout_settings(scope).minimums == []
    assert [u.display_name for u in EdgeState(settings).users.users(scope)].count("X") == 0


@pytest.fixture
def victim(settings: Settings, tenant: TenantFixture) -> tuple[str, str, str, str]:
    """Tenant A's endpoint, API key (id and key) and invited user: what others try to touch."""
    state, scope = EdgeState(settings), scope_of(settings, tenant)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    stored, _ = webhooks.create_endpoint(scope, setup, state.vault, URL, ["payout.paid"])
    key = scope.create_api_key("victim", ["analyst"])
    [key_id] = [k.id for k in api_keys(scope) if k.name == "victim"]
    user, _ = state.users.invite(scope, f"v-{uuid.uuid4().hex[:6]}@example.com", "V", "analyst")
    return stored.id, key_id, key, user.id


def test_every_post_needs_the_csrf_token(
    app: TestClient, settings: Settings, tenant: TenantFixture, victim: tuple[str, str, str, str]
) -> None:
    endpoint_id, key_id, key, user_id = victim
    client = admin_client(app, settings, tenant)
    for path, form in _posts(endpoint_id, key_id, user_id):
        assert client.post(path, data=form).status_code == 403, path
        answer = client.post(path, data={**form, "csrf_token": "0" * 64})
        assert answer.status_code == 403 and 'data-testid="error-page"' in answer.text, path
    _untouched(settings, tenant, endpoint_id, key)


def test_analysts_and_affiliates_get_403_and_strangers_the_login(
    app: TestClient, settings: Settings, tenant: TenantFixture, victim: tuple[str, str, str, str]
) -> None:
    endpoint_id, key_id, key, user_id = victim
    pages = ["/console/webhooks", f"/console/webhooks/{endpoint_id}", "/console/audit",
             "/console/settings"]  # fmt: skip
    stranger = TestClient(app.app, follow_redirects=False)
    for path in pages:
        answer = stranger.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith(
            "/console/login?next="
        ), path
    for role, home in (("analyst", "/console/reports"), ("affiliate", "/console/affiliate/links")):
        client = TestClient(app.app, follow_redirects=False)
        logged_in(client, add_user(settings, tenant.tenant_id, role, (
            tenant.affiliate_id if role == "affiliate" else None)))  # fmt: skip
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 403 and 'data-testid="error-page"' in answer.text, path
        assert 'data-testid="nav-settings"' not in client.get(home).text
        token = csrf_of(client.get(home).text)
        for path, form in _posts(endpoint_id, key_id, user_id):
            assert client.post(path, data={**form, "csrf_token": token}).status_code == 403, path
    _untouched(settings, tenant, endpoint_id, key)


def test_another_tenants_ids_are_404_and_change_nothing(
    app: TestClient,
    settings: Settings,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    victim: tuple[str, str, str, str],
) -> None:
    endpoint_id, key_id, key, user_id = victim
    client = admin_client(app, settings, other_tenant)
    assert client.get(f"/console/webhooks/{endpoint_id}").status_code == 404
    for path, form in _posts(endpoint_id, key_id, user_id):
        if "/" + endpoint_id in path or key_id in path or user_id in path:
            answer = post(client, "/console/settings", path, form)
            assert answer.status_code == 404 and 'data-testid="error-page"' in answer.text, path
    _untouched(settings, tenant, endpoint_id, key)
    # And the other tenant's lists do not show them.
    assert endpoint_id not in client.get("/console/webhooks").text
    settings_page = client.get("/console/settings").text
    assert key_id not in settings_page and user_id not in settings_page
