"""Affiliates: onboarding, review, segments, payout details encrypted at rest, the affiliate's
own view, and who may do what (tenancy, scopes)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from api import affiliates
from api.affiliates import TRANSITIONS, PixDetails, create_affiliate, payout_details, reseal
from api.audit import entries
from api.state import EdgeState
from api.store import ConfigStore, Principal, TenantScope
from pipelines.fraud.inputs import AFFILIATES, Inputs, frame
from pipelines.fraud.rules import shared_payout_details
from pipelines.fraud.thresholds import Thresholds
from rastro.crypto import DecryptionError, Vault
from rastro.settings import Settings
from tests.api.conftest import TenantFixture

CPF = "529.982.247-25"  # a valid CPF (check digits 2, 5)
CNPJ = "11.222.333/0001-81"
PIX = {"method": "pix", "key_type": "cpf", "key": CPF}
BANK = {
    "method": "bank_transfer",
    "bank_code": "341",
    "branch": "0001",
    "account": "12345-6",
    "account_type": "checking",
    "holder_name": "Ana Lima",
    "holder_tax_id": CNPJ,
}


def _edge(app: TestClient) -> EdgeState:
    state: EdgeState = app.app.state  # type: ignore[attr-defined]
    return state


def _scope(settings: Settings, tenant: TenantFixture) -> TenantScope:
    return ConfigStore(settings).for_tenant(tenant.tenant_id)


def _key(
    settings: Settings, tenant: TenantFixture, scope: str, affiliate: str = ""
) -> dict[str, str]:
    key = _scope(settings, tenant).create_api_key(
        f"{scope} key", [scope], affiliate_id=affiliate or None
    )
    return {"Authorization": f"Bearer {key}"}


def _affiliate(app: TestClient, tenant: TenantFixture, **body: Any) -> dict[str, Any]:
    response = app.post(
        "/v1/affiliates",
        headers=tenant.auth,
        json={"display_name": "Canal do Léo", "segment": "influencers", "country": "BR", **body},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _stored(settings: Settings, tenant: TenantFixture, affiliate_id: str) -> dict[str, Any]:
    rows = _scope(settings, tenant).rows(
        "SELECT * FROM affiliates FINAL WHERE id = {id:String}", id=affiliate_id
    )
    assert len(rows) == 1
    return rows[0]


def _actions(settings: Settings, tenant: TenantFixture, subject_id: str) -> list[str]:
    return [e.action for e in entries(_scope(settings, tenant), "affiliate", subject_id)]


# -- creating and inviting ------------------------------------------------------------------


def test_created_affiliates_are_approved_and_audited(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    created = _affiliate(app, tenant)
    assert created["status"] == "approved"
    assert created["payout_method"] == ""
    listed = app.get("/v1/affiliates", headers=tenant.auth).json()
    assert {a["display_name"] for a in listed["items"]} == {"Blog da Ana", "Canal do Léo"}
    [entry] = entries(_scope(settings, tenant), "affiliate", created["id"])
    assert entry.action == "affiliate.create"
    assert entry.actor_kind == "api_key" and entry.actor_name == "first admin key"
    assert entry.details["segment"] == "influencers"


def test_an_email_is_stored_only_hashed_and_encrypted(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    created = _affiliate(app, tenant, email="  Leo@Example.COM ")
    row = _stored(settings, tenant, created["id"])
    assert "leo@example.com" not in json.dumps(row, default=str).lower()
    # The hash a customer's order with this email gets: self-referral is a join.
    sha = hashlib.sha256(b"leo@example.com").hexdigest()
    assert row["email_hash"] == _edge(app).pseudonym(tenant.tenant_id, "email", sha)
    contact = _edge(app).vault.decrypt(
        row["encryption_key_id"],
        row["contact_ciphertext"],
        f"affiliates:{tenant.tenant_id}:{created['id']}:contact_ciphertext",
    )
    assert json.loads(contact) == {"email": "leo@example.com"}
    assert "example.com" not in json.dumps([e.details for e in entries(_scope(settings, tenant))])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "display_name"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "x", "country": "br"}, "country"),
        ({"display_name": "x", "segment": "s" * 65}, "segment"),
        ({"display_name": "x", "email": "not-an-email"}, "email"),
        ({"display_name": "x", "status": "approved"}, "status"),  # not settable: unknown field
    ],
)
def test_create_refuses_invalid_bodies(
    app: TestClient, tenant: TenantFixture, body: dict[str, Any], field: str
) -> None:
    response = app.post("/v1/affiliates", headers=tenant.auth, json=body)
    assert response.status_code == 422, response.text
    assert field in {e["loc"][-1] for e in response.json()["detail"]}


def test_invite_creates_an_invited_affiliate_and_its_user(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    response = app.post(
        "/v1/affiliates/invite",
        headers=tenant.auth,
        json={"email": "bia@example.com", "display_name": "Bia Cupons", "segment": "coupon_sites",
              "country": "BR", "locale": "en"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    invited = response.json()
    assert invited["affiliate"]["status"] == "invited"
    prefix = "http://testserver/console/invite/"
    assert invited["invitation_url"].startswith(prefix)
    users = {u["id"]: u for u in app.get("/v1/users", headers=tenant.auth).json()}
    user = users[invited["user_id"]]
    assert (user["role"], user["affiliate_id"], user["locale"], user["status"]) == (
        "affiliate", invited["affiliate"]["id"], "en", "invited",
    )  # fmt: skip
    # The invitation makes an affiliate principal: it sees its own affiliate only.
    token = invited["invitation_url"].removeprefix(prefix)
    principal = _edge(app).users.accept_invite(token, "uma senha longa")
    assert principal is not None and principal.affiliate_id == invited["affiliate"]["id"]
    row = _stored(settings, tenant, invited["affiliate"]["id"])
    sha = hashlib.sha256(b"bia@example.com").hexdigest()
    assert row["email_hash"] == _edge(app).pseudonym(tenant.tenant_id, "email", sha)
    assert _actions(settings, tenant, invited["affiliate"]["id"]) == [
        "affiliate.invite",
        "affiliate.create",
    ]
    # The email is a login: a second invitation (any tenant) is a conflict, not a second user.
    again = app.post(
        "/v1/affiliates/invite",
        headers=tenant.auth,
        json={"email": "BIA@example.com", "display_name": "Bia de novo"},
    )
    assert again.status_code == 409, again.text
    assert "already" in again.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": "x"},
        {"email": "x@example.com", "display_name": "x", "locale": "fr"},
        {"email": "x@example.com", "display_name": "x", "role": "admin"},
    ],
)
def test_invite_refuses_invalid_bodies(
    app: TestClient, tenant: TenantFixture, body: dict[str, Any]
) -> None:
    assert app.post("/v1/affiliates/invite", headers=tenant.auth, json=body).status_code == 422


# -- listing and reading --------------------------------------------------------------------


def test_lists_filter_and_paginate(app: TestClient, tenant: TenantFixture) -> None:
    ids = [_affiliate(app, tenant, segment=f"s{i % 2}")["id"] for i in range(4)]
    app.post(f"/v1/affiliates/{ids[0]}/suspend", headers=tenant.auth, json={"reason": "fraude"})

    def listed(query: str) -> list[str]:
        response = app.get(f"/v1/affiliates?{query}", headers=tenant.auth)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["items"]]

    assert listed("segment=s0") == [ids[0], ids[2]]
    assert listed("segment=s0&status=approved") == [ids[2]]
    assert listed("status=suspended") == [ids[0]]
    first = app.get("/v1/affiliates?limit=3", headers=tenant.auth).json()
    assert [a["id"] for a in first["items"]] == [tenant.affiliate_id, *ids[:2]]
    rest = app.get(f"/v1/affiliates?limit=3&after={first['next_after']}", headers=tenant.auth)
    assert [a["id"] for a in rest.json()["items"]] == ids[2:]
    assert rest.json()["next_after"] is None
    for bad in ("status=banned", "limit=0", "limit=1001"):
        assert app.get(f"/v1/affiliates?{bad}", headers=tenant.auth).status_code == 422


def test_reading_one_affiliate(app: TestClient, tenant: TenantFixture) -> None:
    got = app.get(f"/v1/affiliates/{tenant.affiliate_id}", headers=tenant.auth)
    assert got.status_code == 200 and got.json()["display_name"] == "Blog da Ana"
    missing = app.get("/v1/affiliates/no-such-id", headers=tenant.auth)
    assert missing.status_code == 404 and "no-such-id" in missing.json()["detail"]


# -- changing -------------------------------------------------------------------------------


def test_patch_changes_only_what_is_given(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    created = _affiliate(app, tenant)
    patched = app.patch(
        f"/v1/affiliates/{created['id']}", headers=tenant.auth, json={"segment": "vip"}
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["segment"], patched.json()["display_name"]) == ("vip", "Canal do Léo")
    assert app.get(f"/v1/affiliates/{created['id']}", headers=tenant.auth).json()["segment"] == (
        "vip"
    )
    [update] = [e for e in entries(_scope(settings, tenant), "affiliate", created["id"])
                if e.action == "affiliate.update"]  # fmt: skip
    assert update.details == {"segment": ["influencers", "vip"]}
    for body in ({}, {"segment": None}, {"country": "Brazil"}, {"status": "approved"}):
        response = app.patch(f"/v1/affiliates/{created['id']}", headers=tenant.auth, json=body)
        assert response.status_code == 422, body
    missing = app.patch("/v1/affiliates/nope", headers=tenant.auth, json={"segment": "x"})
    assert missing.status_code == 404


_STATUSES = ["invited", "pending", "approved", "rejected", "suspended"]


@pytest.mark.parametrize("action", list(TRANSITIONS))
def test_only_valid_transitions_are_allowed(
    app: TestClient, settings: Settings, tenant: TenantFixture, action: str
) -> None:
    sources, target = TRANSITIONS[action]  # type: ignore[index]
    scope, state = _scope(settings, tenant), _edge(app)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    for status in _STATUSES:
        created = create_affiliate(scope, state, setup, f"Status {status}", status=status)  # type: ignore[arg-type]
        response = app.post(
            f"/v1/affiliates/{created.id}/{action}",
            headers=tenant.auth,
            json={"reason": "conferido pela equipe"},
        )
        after = affiliates.affiliate(scope, created.id)
        assert after is not None
        if status in sources:
            assert response.status_code == 200, (status, response.text)
            assert response.json()["status"] == after.status == target
            [decision] = entries(scope, "affiliate", created.id, action=f"affiliate.{action}")
            assert decision.reason == "conferido pela equipe"
            assert decision.details == {"from": status, "to": target}
        else:
            assert response.status_code == 409, (status, response.text)
            assert f"cannot {action} an affiliate that is {status}" in response.json()["detail"]
            assert after.status == status


def test_reject_and_suspend_need_a_reason(app: TestClient, tenant: TenantFixture) -> None:
    path = f"/v1/affiliates/{tenant.affiliate_id}/suspend"
    for body in (None, {}, {"reason": ""}, {"reason": "   "}):
        assert app.post(path, headers=tenant.auth, json=body).status_code == 422, body
    # approve and reactivate take no body at all, or a reason.
    approved = _affiliate(app, tenant)
    assert app.post(path, headers=tenant.auth, json={"reason": "cupom vazado"}).status_code == 200
    reactivate = f"/v1/affiliates/{tenant.affiliate_id}/reactivate"
    assert app.post(reactivate, headers=tenant.auth).status_code == 200
    assert (
        app.post(f"/v1/affiliates/{approved['id']}/approve", headers=tenant.auth).status_code == 409
    )
    assert app.post("/v1/affiliates/nope/approve", headers=tenant.auth).status_code == 404


# -- payout details -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "key", "stored"),
    [
        ("cpf", CPF, "52998224725"),
        ("cpf", "52998224725", "52998224725"),
        ("cnpj", CNPJ, "11222333000181"),
        ("cnpj", "12.ABC.345/01DE-35", "12ABC34501DE35"),  # alphanumeric CNPJ (Receita's example)
        ("phone", "+55 (11) 98765-4321", "+5511987654321"),
        ("email", " Ana@Example.com", "ana@example.com"),
        ("random", "9F0B4C5E-3D2A-4B1C-8E7F-6A5B4C3D2E1F", "9f0b4c5e-3d2a-4b1c-8e7f-6a5b4c3d2e1f"),
    ],
)
def test_pix_keys_are_validated_and_normalized(
    app: TestClient, settings: Settings, tenant: TenantFixture, key_type: str, key: str, stored: str
) -> None:
    response = app.put(
        f"/v1/affiliates/{tenant.affiliate_id}/payout-details",
        headers=tenant.auth,
        json={"method": "pix", "key_type": key_type, "key": key},
    )
    assert response.status_code == 200, response.text
    details = payout_details(_scope(settings, tenant), _edge(app).vault, tenant.affiliate_id)
    assert isinstance(details, PixDetails)
    assert (details.key_type, details.key) == (key_type, stored)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**PIX, "key": "529.982.247-24"}, "not a valid CPF"),
        ({**PIX, "key": "111.111.111-11"}, "not a valid CPF"),
        ({**PIX, "key_type": "cnpj", "key": "11.222.333/0001-80"}, "not a valid CNPJ"),
        ({**PIX, "key_type": "phone", "key": "11987654321"}, "E.164"),
        ({**PIX, "key_type": "email", "key": "ana@"}, "not an email"),
        ({**PIX, "key_type": "random", "key": "not-a-uuid"}, "UUID"),
        ({**PIX, "key_type": "iban"}, "key_type"),
        ({**BANK, "holder_tax_id": "123"}, "neither a CPF"),
        ({**BANK, "bank_code": "34"}, "bank_code"),
        ({**BANK, "account_type": "investment"}, "account_type"),
        ({"method": "paypal", "email": "nope"}, "not an email"),
        ({"method": "cheque"}, "method"),
        ({**PIX, "extra": "x"}, "extra"),
    ],
)
def test_invalid_payout_details_are_refused(
    app: TestClient, tenant: TenantFixture, body: dict[str, Any], message: str
) -> None:
    response = app.put(
        f"/v1/affiliates/{tenant.affiliate_id}/payout-details", headers=tenant.auth, json=body
    )
    assert response.status_code == 422, response.text
    assert message in response.text


def test_payout_details_are_encrypted_and_shown_masked(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    path = f"/v1/affiliates/{tenant.affiliate_id}/payout-details"
    assert app.get(path, headers=tenant.auth).status_code == 404  # none set yet
    put = app.put(path, headers=tenant.auth, json=BANK)
    assert put.status_code == 200, put.text
    assert put.json()["masked"] is True
    assert put.json()["details"]["account"] == "****5-6"
    assert put.json()["details"]["holder_tax_id"] == "**********0181"
    row = _stored(settings, tenant, tenant.affiliate_id)
    assert row["payout_method"] == "bank_transfer" and row["payout_fingerprint"]
    assert row["encryption_key_id"] == _edge(app).vault.current_key_id
    assert "12345" not in json.dumps(row, default=str)
    assert "11222333000181" not in json.dumps(row, default=str)

    masked = app.get(path, headers=tenant.auth).json()
    assert masked["masked"] is True and masked["details"]["account"] == "****5-6"
    assert "affiliate.reveal_payout_details" not in _actions(settings, tenant, tenant.affiliate_id)
    revealed = app.get(f"{path}?reveal=true", headers=tenant.auth).json()
    assert revealed["masked"] is False
    assert revealed["details"] == {k: v for k, v in BANK.items() if k != "method"} | {
        "holder_tax_id": "11222333000181"
    }
    actions = _actions(settings, tenant, tenant.affiliate_id)
    assert actions[:2] == ["affiliate.reveal_payout_details", "affiliate.set_payout_details"]
    assert (
        app.put("/v1/affiliates/nope/payout-details", headers=tenant.auth, json=PIX).status_code
        == 404
    )
    missing = app.get("/v1/affiliates/nope/payout-details", headers=tenant.auth)
    assert missing.status_code == 404 and "no affiliate" in missing.json()["detail"]


def test_a_ciphertext_moved_to_another_affiliate_does_not_decrypt(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    app.put(f"/v1/affiliates/{tenant.affiliate_id}/payout-details", headers=tenant.auth, json=PIX)
    other = _affiliate(app, tenant)
    scope = _scope(settings, tenant)
    stolen = _stored(settings, tenant, tenant.affiliate_id)
    target = _stored(settings, tenant, other["id"])
    for column in ("tenant_id", "updated_at", "version"):
        target.pop(column)
    for column in ("payout_details_ciphertext", "encryption_key_id", "payout_method"):
        target[column] = stolen[column]
    scope.write_version("affiliates", target)
    with pytest.raises(DecryptionError):
        payout_details(scope, _edge(app).vault, other["id"])


def test_the_fraud_rule_finds_a_payout_account_shared_by_affiliates(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    """The same account typed two ways gets one fingerprint within a tenant (and another in
    another tenant), which is what shared_payout_details groups by."""
    second = _affiliate(app, tenant)["id"]
    third = _affiliate(app, tenant)["id"]
    writes = [
        (tenant, tenant.affiliate_id, PIX),
        (tenant, second, {**PIX, "key": "52998224725"}),
        (tenant, third, {**PIX, "key_type": "email", "key": "x@example.com"}),
        (other_tenant, other_tenant.affiliate_id, PIX),
    ]
    for owner, affiliate_id, body in writes:
        response = app.put(
            f"/v1/affiliates/{affiliate_id}/payout-details", headers=owner.auth, json=body
        )
        assert response.status_code == 200, response.text
    rows = [
        row
        for owner in (tenant, other_tenant)
        for row in _scope(settings, owner).rows(
            "SELECT tenant_id, id AS affiliate_id, toString(status) AS status, payout_fingerprint "
            "FROM affiliates FINAL"
        )
    ]
    inputs = Inputs.empty(datetime.now(UTC), affiliates=frame(AFFILIATES, rows))
    flags = shared_payout_details(inputs, Thresholds())
    assert sorted(flags["affiliate_id"].to_list()) == sorted([tenant.affiliate_id, second])


def test_key_rotation_keeps_old_ciphertexts_readable_until_resealed(
    settings: Settings, tenant: TenantFixture
) -> None:
    old_key, new_key = (base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2))

    def keys(configured: str) -> Settings:
        return settings.model_copy(update={"encryption_keys": SecretStr(configured)})

    before, only_new = keys(f"k1:{old_key}"), keys(f"k2:{new_key}")
    rotated = keys(f"k2:{new_key},k1:{old_key}")  # the new key first: it encrypts
    scope = _scope(settings, tenant)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    details = PixDetails(method="pix", key_type="cpf", key=CPF)
    affiliates.set_payout_details(scope, EdgeState(before), setup, tenant.affiliate_id, details)
    assert _stored(settings, tenant, tenant.affiliate_id)["encryption_key_id"] == "k1"
    with pytest.raises(DecryptionError):
        payout_details(scope, Vault(only_new), tenant.affiliate_id)
    # With the new key first, old ciphertexts still decrypt; resealing moves them to it.
    assert payout_details(scope, Vault(rotated), tenant.affiliate_id) == details
    assert reseal(scope, Vault(rotated)) == 1
    assert reseal(scope, Vault(rotated)) == 0
    assert _stored(settings, tenant, tenant.affiliate_id)["encryption_key_id"] == "k2"
    assert payout_details(scope, Vault(only_new), tenant.affiliate_id) == details


def test_data_under_the_development_key_moves_to_configured_keys(
    settings: Settings, tenant: TenantFixture
) -> None:
    """A deployment that started without RASTRO_ENCRYPTION_KEYS (the key derived from the
    secret key) can configure keys later: what it wrote still decrypts and is resealed."""
    scope = _scope(settings, tenant)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    details = PixDetails(method="pix", key_type="phone", key="+5511987654321")
    affiliates.set_payout_details(scope, EdgeState(settings), setup, tenant.affiliate_id, details)
    assert _stored(settings, tenant, tenant.affiliate_id)["encryption_key_id"] == "derived-1"
    key = base64.b64encode(bytes([3]) * 32).decode()
    configured = Vault(settings.model_copy(update={"encryption_keys": SecretStr(f"k1:{key}")}))
    assert payout_details(scope, configured, tenant.affiliate_id) == details
    assert reseal(scope, configured) == 1
    assert _stored(settings, tenant, tenant.affiliate_id)["encryption_key_id"] == "k1"


@pytest.mark.parametrize("configured", ["k1", "k1:c2hvcnQ=", ":" + "A" * 44, "k1:%%%"])
def test_malformed_encryption_keys_are_refused(settings: Settings, configured: str) -> None:
    with pytest.raises(ValueError, match="id:base64 of 32 random bytes"):
        Vault(settings.model_copy(update={"encryption_keys": SecretStr(configured)}))


# -- the affiliate's own view ----------------------------------------------------------------


def test_me_says_who_is_calling(app: TestClient, settings: Settings, tenant: TenantFixture) -> None:
    admin = app.get("/v1/me", headers=tenant.auth).json()
    assert admin["scopes"] == ["admin"] and admin["affiliate"] is None
    assert admin["tenant"]["tenant_id"] == tenant.tenant_id
    own = app.get("/v1/me", headers=_key(settings, tenant, "affiliate", tenant.affiliate_id))
    assert own.status_code == 200
    assert own.json()["affiliate"]["id"] == tenant.affiliate_id
    assert own.json()["actor_name"] == "affiliate key"
    assert app.get("/v1/me").status_code == 401


def test_affiliates_manage_their_own_payout_details(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    mine = _key(settings, tenant, "affiliate", tenant.affiliate_id)
    assert app.get("/v1/me/payout-details", headers=mine).status_code == 404
    put = app.put("/v1/me/payout-details", headers=mine, json=PIX)
    assert put.status_code == 200, put.text
    assert put.json()["affiliate_id"] == tenant.affiliate_id
    assert put.json()["details"] == {"key_type": "cpf", "key": "*******4725"}
    revealed = app.get("/v1/me/payout-details?reveal=true", headers=mine).json()
    assert revealed["details"]["key"] == "52998224725"
    [entry] = entries(
        _scope(settings, tenant),
        "affiliate",
        tenant.affiliate_id,
        action="affiliate.set_payout_details",
    )
    assert entry.actor_name == "affiliate key"
    assert app.put("/v1/me/payout-details", headers=mine, json={"method": "pix"}).status_code == 422
    # A merchant has no payout details of its own; the merchants' routes are admin only.
    assert app.get("/v1/me/payout-details", headers=tenant.auth).status_code == 403
    own_path = f"/v1/affiliates/{tenant.affiliate_id}/payout-details"
    assert app.get(own_path, headers=mine).status_code == 403
    assert app.put(own_path, headers=mine, json=PIX).status_code == 403


def test_an_affiliate_sees_only_itself(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    other = _affiliate(app, tenant)
    app.put(f"/v1/affiliates/{other['id']}/payout-details", headers=tenant.auth, json=PIX)
    mine = _key(settings, tenant, "affiliate", tenant.affiliate_id)
    listed = app.get("/v1/affiliates", headers=mine).json()
    assert [a["id"] for a in listed["items"]] == [tenant.affiliate_id]
    assert app.get(f"/v1/affiliates/{tenant.affiliate_id}", headers=mine).status_code == 200
    assert app.get(f"/v1/affiliates/{other['id']}", headers=mine).status_code == 404
    # Its payout details are its own: PUT /v1/me never reaches the other affiliate's row.
    app.put("/v1/me/payout-details", headers=mine, json={"method": "paypal", "email": "a@b.co"})
    assert payout_details(_scope(settings, tenant), _edge(app).vault, other["id"]) == PixDetails(
        method="pix", key_type="cpf", key=CPF
    )


# -- who may call ---------------------------------------------------------------------------

_WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/affiliates", {"display_name": "x"}),
    ("POST", "/v1/affiliates/invite", {"email": "w@example.com", "display_name": "x"}),
    ("PATCH", "/v1/affiliates/{id}", {"segment": "x"}),
    ("POST", "/v1/affiliates/{id}/approve", None),
    ("POST", "/v1/affiliates/{id}/reject", {"reason": "x"}),
    ("POST", "/v1/affiliates/{id}/suspend", {"reason": "x"}),
    ("POST", "/v1/affiliates/{id}/reactivate", None),
    ("PUT", "/v1/affiliates/{id}/payout-details", PIX),
    ("GET", "/v1/affiliates/{id}/payout-details", None),
]
_READS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/affiliates", None),
    ("GET", "/v1/affiliates/{id}", None),
]


def _call(
    app: TestClient, method: str, path: str, body: Any, headers: dict[str, str], affiliate_id: str
) -> int:
    url = path.replace("{id}", affiliate_id)
    return app.request(method, url, headers=headers, json=body).status_code


@pytest.mark.parametrize(("method", "path", "body"), _WRITES + _READS)
def test_every_route_needs_a_key(
    app: TestClient, tenant: TenantFixture, method: str, path: str, body: Any
) -> None:
    assert _call(app, method, path, body, {}, tenant.affiliate_id) == 401
    bad = {"Authorization": "Bearer rk_not_a_key"}
    assert _call(app, method, path, body, bad, tenant.affiliate_id) == 401


@pytest.mark.parametrize(("method", "path", "body"), _WRITES)
def test_writes_need_the_admin_scope(
    app: TestClient, settings: Settings, tenant: TenantFixture, method: str, path: str, body: Any
) -> None:
    for scope in ("analyst", "ingest", "affiliate"):
        headers = _key(settings, tenant, scope, tenant.affiliate_id if scope == "affiliate" else "")
        assert _call(app, method, path, body, headers, tenant.affiliate_id) == 403, scope
    assert affiliates.affiliate(_scope(settings, tenant), tenant.affiliate_id).status == "approved"  # type: ignore[union-attr]


@pytest.mark.parametrize(("method", "path", "body"), _READS)
def test_reads_are_for_admins_analysts_and_the_affiliate_itself(
    app: TestClient, settings: Settings, tenant: TenantFixture, method: str, path: str, body: Any
) -> None:
    assert (
        _call(app, method, path, body, _key(settings, tenant, "analyst"), tenant.affiliate_id)
        == 200
    )
    assert (
        _call(app, method, path, body, _key(settings, tenant, "ingest"), tenant.affiliate_id) == 403
    )


@pytest.mark.parametrize(
    ("method", "path", "body"), [call for call in _WRITES + _READS if "{id}" in call[1]]
)
def test_another_tenants_affiliate_is_not_found_and_unchanged(
    app: TestClient,
    settings: Settings,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    method: str,
    path: str,
    body: Any,
) -> None:
    before = _stored(settings, tenant, tenant.affiliate_id)
    status = _call(app, method, path, body, other_tenant.auth, tenant.affiliate_id)
    assert status == 404
    assert _stored(settings, tenant, tenant.affiliate_id) == before
    assert entries(_scope(settings, tenant), "affiliate", tenant.affiliate_id) == entries(
        _scope(settings, tenant), "affiliate", tenant.affiliate_id, actor_id="test-setup"
    )
