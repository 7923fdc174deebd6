"""API keys (shown once, stored hashed, scoped, revocable), console users (invited, with
expiring invitations and a password policy, disabled and enabled) and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from api import access
from api.access import UserInvite
from api.audit import entries
from api.auth import InvitationExpired, StateConflict, WeakPassword
from api.state import EdgeState
from api.store import ConfigStore, Principal, TenantScope
from rastro.keys import hash_api_key
from rastro.settings import Settings
from tests.api.conftest import TenantFixture

PREFIX = "http://testserver/console/invite/"


def _edge(app: TestClient) -> EdgeState:
    state: EdgeState = app.app.state  # type: ignore[attr-defined]
    return state


def _scope(settings: Settings, tenant: TenantFixture) -> TenantScope:
    return ConfigStore(settings).for_tenant(tenant.tenant_id)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key(settings: Settings, tenant: TenantFixture, scope: str) -> dict[str, str]:
    affiliate = tenant.affiliate_id if scope == "affiliate" else None
    return _bearer(_scope(settings, tenant).create_api_key(scope, [scope], affiliate))


def _create_key(app: TestClient, tenant: TenantFixture, **body: Any) -> dict[str, Any]:
    response = app.post(
        "/v1/api-keys", headers=tenant.auth, json={"name": "backend", "scopes": ["ingest"], **body}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _invite(app: TestClient, tenant: TenantFixture, email: str, role: str = "analyst") -> Any:
    return app.post(
        "/v1/users",
        headers=tenant.auth,
        json={"email": email, "display_name": "Marina", "role": role},
    )


def _unique_email(tenant: TenantFixture, name: str) -> str:
    # Emails are unique across tenants and the test database is shared by the session.
    return f"{name}.{tenant.tenant_id[-12:]}@example.com"


# -- API keys -------------------------------------------------------------------------------


def test_a_key_is_shown_once_and_stored_hashed(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    created = _create_key(app, tenant, scopes=["analyst", "ingest"])
    key = created["key"]
    assert key.startswith("rk_") and created["prefix"] == key[:9]
    assert (created["status"], created["revoked_at"], created["expires_at"]) == (
        "active",
        None,
        None,
    )
    me = app.get("/v1/me", headers=_bearer(key)).json()
    assert (me["actor_id"], me["scopes"]) == (created["id"], ["analyst", "ingest"])
    listed = app.get("/v1/api-keys", headers=tenant.auth)
    assert listed.status_code == 200
    assert key not in listed.text and hash_api_key(key) not in listed.text
    assert {k["name"] for k in listed.json()} == {"first admin key", "backend"}
    stored = _scope(settings, tenant).rows(
        "SELECT * FROM api_keys FINAL WHERE id = {id:String}", id=created["id"]
    )
    assert stored[0]["key_hash"] == hash_api_key(key) and key not in str(stored)
    [entry] = entries(_scope(settings, tenant), "api_key", created["id"])
    assert entry.action == "api_key.create" and entry.details["scopes"] == ["analyst", "ingest"]


def test_an_affiliate_key_acts_for_its_affiliate_only(
    app: TestClient, tenant: TenantFixture
) -> None:
    other = app.post("/v1/affiliates", headers=tenant.auth, json={"display_name": "Outro"}).json()
    created = _create_key(app, tenant, scopes=["affiliate"], affiliate_id=tenant.affiliate_id)
    assert created["affiliate_id"] == tenant.affiliate_id
    own = _bearer(created["key"])
    assert [a["id"] for a in app.get("/v1/affiliates", headers=own).json()["items"]] == [
        tenant.affiliate_id
    ]
    assert app.get(f"/v1/affiliates/{other['id']}", headers=own).status_code == 404
    assert app.get("/v1/api-keys", headers=own).status_code == 403


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scopes": []}, "at least 1"),
        ({"scopes": ["root"]}, "Input should be"),
        ({"scopes": ["ingest", "ingest"]}, "each scope once"),
        ({"scopes": ["affiliate"]}, "needs the affiliate_id"),
        ({"scopes": ["ingest"], "affiliate_id": "x"}, "only for keys with the affiliate scope"),
        ({"scopes": ["affiliate", "admin"], "affiliate_id": "x"}, "cannot be combined"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "in the future"),
        ({"expires_at": "2999-01-01T00:00:00"}, "timezone"),
        ({"name": ""}, "at least 1"),
        ({"key": "rk_mine"}, "Extra inputs"),
    ],
)
def test_invalid_keys_are_refused(
    app: TestClient, tenant: TenantFixture, body: dict[str, Any], message: str
) -> None:
    response = app.post(
        "/v1/api-keys", headers=tenant.auth, json={"name": "k", "scopes": ["ingest"], **body}
    )
    assert response.status_code == 422, response.text
    assert message in response.text


def test_an_affiliate_key_needs_an_affiliate_of_the_tenant(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    for affiliate_id in ("no-such-affiliate", other_tenant.affiliate_id):
        response = app.post(
            "/v1/api-keys",
            headers=tenant.auth,
            json={"name": "k", "scopes": ["affiliate"], "affiliate_id": affiliate_id},
        )
        assert response.status_code == 422, response.text
        assert "no affiliate" in response.json()["detail"]


def test_an_expired_key_is_refused(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    key = _scope(settings, tenant).create_api_key("old", ["analyst"], expires_at=yesterday)
    assert app.get("/v1/me", headers=_bearer(key)).status_code == 401
    [old] = [k for k in app.get("/v1/api-keys", headers=tenant.auth).json() if k["name"] == "old"]
    assert old["status"] == "expired"
    later = _create_key(
        app, tenant, expires_at=(datetime.now(UTC) + timedelta(days=30)).isoformat()
    )
    assert app.get("/v1/me", headers=_bearer(later["key"])).status_code == 200


def test_a_revoked_key_stops_working(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    created = _create_key(app, tenant, scopes=["analyst"])
    assert app.get("/v1/me", headers=_bearer(created["key"])).status_code == 200  # now cached
    revoked = app.delete(f"/v1/api-keys/{created['id']}?reason=vazou", headers=tenant.auth)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    assert app.get("/v1/me", headers=_bearer(created["key"])).status_code == 401
    # A retried revocation answers the same and changes nothing.
    again = app.delete(f"/v1/api-keys/{created['id']}", headers=tenant.auth)
    assert again.status_code == 200 and again.json() == revoked.json()
    actions = [
        (e.action, e.reason) for e in entries(_scope(settings, tenant), "api_key", created["id"])
    ]
    assert actions == [("api_key.revoke", "vazou"), ("api_key.create", "")]
    assert app.delete("/v1/api-keys/nope", headers=tenant.auth).status_code == 404


def test_a_key_cannot_revoke_itself(app: TestClient, tenant: TenantFixture) -> None:
    me = app.get("/v1/me", headers=tenant.auth).json()
    response = app.delete(f"/v1/api-keys/{me['actor_id']}", headers=tenant.auth)
    assert response.status_code == 409 and "cannot revoke itself" in response.json()["detail"]
    assert app.get("/v1/me", headers=tenant.auth).status_code == 200
    # Another admin key can.
    second = _create_key(app, tenant, scopes=["admin"])
    assert (
        app.delete(f"/v1/api-keys/{me['actor_id']}", headers=_bearer(second["key"])).status_code
        == 200
    )
    assert app.get("/v1/me", headers=tenant.auth).status_code == 401


# -- console users --------------------------------------------------------------------------


def test_inviting_a_user(app: TestClient, settings: Settings, tenant: TenantFixture) -> None:
    email = _unique_email(tenant, "marina")
    response = _invite(app, tenant, email.upper())
    assert response.status_code == 201, response.text
    invited = response.json()
    assert invited["user"]["email"] == email and invited["user"]["status"] == "invited"
    assert invited["invitation_url"].startswith(PREFIX)
    sent = datetime.fromisoformat(invited["user"]["invited_at"])
    assert datetime.fromisoformat(invited["invitation_expires_at"]) == sent + timedelta(days=7)
    listed = app.get("/v1/users", headers=tenant.auth).json()
    assert [u["id"] for u in listed] == [invited["user"]["id"]]
    assert "password" not in str(listed) and "token" not in str(listed)
    principal = _edge(app).users.accept_invite(
        invited["invitation_url"].removeprefix(PREFIX), "s" * 10
    )
    assert principal is not None and principal.scopes == ["analyst"]
    # The token worked once.
    assert (
        _edge(app).users.accept_invite(invited["invitation_url"].removeprefix(PREFIX), "s" * 10)
        is None
    )
    [entry] = entries(_scope(settings, tenant), "user", invited["user"]["id"])
    assert entry.action == "user.invite" and email not in str(entry)


def test_an_email_has_one_user_in_all_tenants(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    email = _unique_email(tenant, "dup")
    assert _invite(app, tenant, email).status_code == 201
    assert _invite(app, tenant, email).status_code == 409
    taken = _invite(app, other_tenant, email)
    assert taken.status_code == 409 and taken.json() == {
        "detail": "a user with this email already exists"
    }


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nope", "display_name": "x", "role": "analyst"},
        {"email": "a@example.com", "display_name": "x", "role": "affiliate"},
        {"email": "a@example.com", "display_name": "x", "role": "root"},
        {"email": "a@example.com", "display_name": "", "role": "admin"},
        {"email": "a@example.com", "display_name": "x", "role": "admin", "locale": "fr"},
        {"email": "a@example.com", "display_name": "x", "role": "admin", "password": "x" * 12},
    ],
)
def test_invalid_invitations_are_refused(
    app: TestClient, tenant: TenantFixture, body: dict[str, Any]
) -> None:
    assert app.post("/v1/users", headers=tenant.auth, json=body).status_code == 422


def test_passwords_need_ten_characters(app: TestClient, tenant: TenantFixture) -> None:
    invited = _invite(app, tenant, _unique_email(tenant, "short")).json()
    token = invited["invitation_url"].removeprefix(PREFIX)
    with pytest.raises(WeakPassword, match="at least 10 characters"):
        _edge(app).users.accept_invite(token, "123456789")
    with pytest.raises(WeakPassword, match="only spaces"):
        _edge(app).users.accept_invite(token, " " * 12)
    # A refused password leaves the invitation usable.
    assert _edge(app).users.accept_invite(token, "1234567890") is not None


def test_invitations_expire_after_seven_days_and_can_be_renewed(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    invited = _invite(app, tenant, _unique_email(tenant, "late")).json()
    user_id, token = invited["user"]["id"], invited["invitation_url"].removeprefix(PREFIX)
    scope = _scope(settings, tenant)
    row = scope.rows(
        "SELECT * EXCEPT (tenant_id, updated_at, version) FROM users FINAL WHERE id = {id:String}",
        id=user_id,
    )[0]
    row["invited_at"] = datetime.now(UTC) - timedelta(days=7, minutes=1)
    scope.write_version("users", row)
    with pytest.raises(InvitationExpired, match="expired"):
        _edge(app).users.accept_invite(token, "uma senha longa")
    renewed = app.post(f"/v1/users/{user_id}/reinvite", headers=tenant.auth)
    assert renewed.status_code == 200, renewed.text
    new_token = renewed.json()["invitation_url"].removeprefix(PREFIX)
    assert new_token != token
    assert _edge(app).users.accept_invite(token, "uma senha longa") is None  # replaced
    assert _edge(app).users.accept_invite(new_token, "uma senha longa") is not None
    # Only invited users get invitations.
    again = app.post(f"/v1/users/{user_id}/reinvite", headers=tenant.auth)
    assert again.status_code == 409 and "active" in again.json()["detail"]
    assert app.post("/v1/users/nope/reinvite", headers=tenant.auth).status_code == 404


def test_disabling_and_enabling_users(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    email = _unique_email(tenant, "ops")
    invited = _invite(app, tenant, email).json()
    user_id = invited["user"]["id"]
    users = _edge(app).users
    users.accept_invite(invited["invitation_url"].removeprefix(PREFIX), "uma senha longa")
    principal = users.login(email, "uma senha longa")
    assert principal is not None
    session = users.session_token(principal)
    assert users.session(session) is not None

    disabled = app.post(
        f"/v1/users/{user_id}/disable", headers=tenant.auth, json={"reason": "saiu"}
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert users.login(email, "uma senha longa") is None
    assert users.session(session) is None  # this worker forgets the user at once
    assert app.post(f"/v1/users/{user_id}/disable", headers=tenant.auth).status_code == 409
    enabled = app.post(f"/v1/users/{user_id}/enable", headers=tenant.auth)
    assert enabled.status_code == 200 and enabled.json()["status"] == "active"
    assert users.login(email, "uma senha longa") is not None
    assert app.post(f"/v1/users/{user_id}/enable", headers=tenant.auth).status_code == 409
    assert app.post("/v1/users/nope/disable", headers=tenant.auth).status_code == 404
    actions = [(e.action, e.reason) for e in entries(_scope(settings, tenant), "user", user_id)]
    assert actions == [("user.enable", ""), ("user.disable", "saiu"), ("user.invite", "")]


def test_an_invited_user_enabled_again_is_still_invited(
    app: TestClient, tenant: TenantFixture
) -> None:
    user_id = _invite(app, tenant, _unique_email(tenant, "never")).json()["user"]["id"]
    app.post(f"/v1/users/{user_id}/disable", headers=tenant.auth)
    assert (
        app.post(f"/v1/users/{user_id}/enable", headers=tenant.auth).json()["status"] == "invited"
    )


def test_users_cannot_disable_themselves(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    scope, state = _scope(settings, tenant), _edge(app)
    admin = Principal(tenant_id=tenant.tenant_id, actor_id="setup", scopes=["admin"])
    user, _ = access.invite_user(
        scope,
        state,
        admin,
        UserInvite(email=_unique_email(tenant, "self"), display_name="Eu", role="admin"),
    )
    me = Principal(
        tenant_id=tenant.tenant_id, actor_kind="user", actor_id=user.id, scopes=["admin"]
    )
    with pytest.raises(StateConflict, match="yourself"):
        access.set_user_enabled(scope, state, me, user.id, enabled=False)
    assert state.users.user(scope, user.id).status == "invited"  # type: ignore[union-attr]


# -- the audit log --------------------------------------------------------------------------


def test_the_audit_log_filters_and_pages(app: TestClient, tenant: TenantFixture) -> None:
    start = datetime.now(UTC)  # after the tenant fixture's own entries
    ids = [
        app.post("/v1/affiliates", headers=tenant.auth, json={"display_name": f"A{i}"}).json()["id"]
        for i in range(3)
    ]
    app.post(f"/v1/affiliates/{ids[1]}/suspend", headers=tenant.auth, json={"reason": "cupom"})
    key = _create_key(app, tenant)
    me = app.get("/v1/me", headers=tenant.auth).json()

    def audit(**query: Any) -> list[dict[str, Any]]:
        response = app.get("/v1/audit", headers=tenant.auth, params=query)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    everything = audit(limit=1000)
    since_start = audit(**{"from": start.isoformat()})
    assert [e["action"] for e in since_start] == [
        "api_key.create", "affiliate.suspend", "affiliate.create", "affiliate.create",
        "affiliate.create",
    ]  # fmt: skip
    assert all(e["actor_id"] == me["actor_id"] for e in since_start)
    before_start = audit(to=start.isoformat())
    assert before_start == everything[len(since_start) :]
    assert tenant.affiliate_id in [e["subject_id"] for e in before_start]  # the fixture's
    [suspension] = audit(action="affiliate.suspend")
    assert (suspension["subject_id"], suspension["reason"]) == (ids[1], "cupom")
    assert suspension["details"] == {"from": "approved", "to": "suspended"}
    about_one = audit(subject_kind="affiliate", subject_id=ids[1])
    assert [e["action"] for e in about_one] == ["affiliate.suspend", "affiliate.create"]
    assert [e["subject_id"] for e in audit(subject_kind="api_key")] == [key["id"]]
    assert audit(actor_id=me["actor_id"]) == since_start
    assert audit(actor_id="someone-else") == []
    # To the millisecond: `from` is inclusive, `to` exclusive.
    newest = datetime.fromisoformat(everything[0]["at"])
    assert audit(**{"from": newest.isoformat()})[0] == everything[0]
    assert audit(**{"from": (newest + timedelta(milliseconds=1)).isoformat()}) == []
    assert audit(to=newest.isoformat()) == everything[1:]
    # Pages, newest first, meet without gaps or repeats.
    first = app.get("/v1/audit?limit=2", headers=tenant.auth).json()
    second = app.get(f"/v1/audit?limit=2&after={first['next_after']}", headers=tenant.auth).json()
    rest = app.get(f"/v1/audit?limit=10&after={second['next_after']}", headers=tenant.auth).json()
    paged = [e["audit_id"] for page in (first, second, rest) for e in page["items"]]
    assert paged == [e["audit_id"] for e in everything]
    assert rest["next_after"] is None


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "from=yesterday",
        "from=2026-01-01T00:00:00",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ],
)
def test_invalid_audit_queries_are_refused(
    app: TestClient, tenant: TenantFixture, query: str
) -> None:
    assert app.get(f"/v1/audit?{query}", headers=tenant.auth).status_code == 422


# -- who may call ---------------------------------------------------------------------------

_ROUTES = [
    ("POST", "/v1/api-keys", {"name": "k", "scopes": ["ingest"]}),
    ("GET", "/v1/api-keys", None),
    ("DELETE", "/v1/api-keys/{key}", None),
    ("POST", "/v1/users", {"email": "who@example.com", "display_name": "x", "role": "admin"}),
    ("GET", "/v1/users", None),
    ("POST", "/v1/users/{user}/disable", None),
    ("POST", "/v1/users/{user}/enable", None),
    ("POST", "/v1/users/{user}/reinvite", None),
    ("GET", "/v1/audit", None),
]


@pytest.fixture
def subjects(app: TestClient, tenant: TenantFixture) -> dict[str, str]:
    """A key and an invited user of `tenant`, for the routes that take an id."""
    key = _create_key(app, tenant)["id"]
    user = _invite(app, tenant, _unique_email(tenant, "subject")).json()["user"]["id"]
    return {"{key}": key, "{user}": user}


def _url(path: str, subjects: dict[str, str]) -> str:
    for placeholder, value in subjects.items():
        path = path.replace(placeholder, value)
    return path


@pytest.mark.parametrize(("method", "path", "body"), _ROUTES)
def test_access_routes_are_for_admins_only(
    app: TestClient,
    settings: Settings,
    tenant: TenantFixture,
    subjects: dict[str, str],
    method: str,
    path: str,
    body: Any,
) -> None:
    url = _url(path, subjects)
    assert app.request(method, url, json=body).status_code == 401
    assert app.request(method, url, json=body, headers=_bearer("rk_wrong")).status_code == 401
    for scope in ("analyst", "ingest", "affiliate"):
        response = app.request(method, url, json=body, headers=_key(settings, tenant, scope))
        assert response.status_code == 403, (scope, response.text)


@pytest.mark.parametrize(("method", "path", "body"), [r for r in _ROUTES if "{" in r[1]])
def test_another_tenants_keys_and_users_are_not_found_and_unchanged(
    app: TestClient,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    subjects: dict[str, str],
    method: str,
    path: str,
    body: Any,
) -> None:
    def state() -> tuple[Any, Any, Any]:
        return (
            app.get("/v1/api-keys", headers=tenant.auth).json(),
            app.get("/v1/users", headers=tenant.auth).json(),
            app.get("/v1/audit?limit=1000", headers=tenant.auth).json(),
        )

    before = state()
    response = app.request(method, _url(path, subjects), json=body, headers=other_tenant.auth)
    assert response.status_code == 404, response.text
    assert state() == before
    # And the other tenant's own lists never show them.
    assert subjects["{key}"] not in app.get("/v1/api-keys", headers=other_tenant.auth).text
    assert subjects["{user}"] not in app.get("/v1/users", headers=other_tenant.auth).text
    theirs = app.get("/v1/audit?limit=1000", headers=other_tenant.auth).json()["items"]
    assert not {e["subject_id"] for e in theirs} & set(subjects.values())
