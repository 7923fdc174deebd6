"""The configuration API: authentication, tenancy, and links that never open-redirect."""

from __future__ import annotations

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.api.conftest import TenantFixture


def _link(
    app: TestClient, tenant: TenantFixture, destination: str, **extra: str
) -> httpx2.Response:
    return app.post(
        "/v1/links",
        headers=tenant.auth,
        json={
            "affiliate_id": tenant.affiliate_id,
            "campaign_id": tenant.campaign_id,
            "destination_url": destination,
            **extra,
        },
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer rk_not_a_key"}, {"Authorization": "Basic abc"}],
)
def test_every_call_needs_a_valid_key(app: TestClient, headers: dict[str, str]) -> None:
    response = app.get("/v1/links", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_create_and_list_affiliates_and_campaigns(app: TestClient, tenant: TenantFixture) -> None:
    created = app.post(
        "/v1/affiliates",
        headers=tenant.auth,
        json={"display_name": "Canal do Léo", "segment": "influencers", "country": "BR"},
    )
    assert created.status_code == 201, created.text
    names = [a["display_name"] for a in app.get("/v1/affiliates", headers=tenant.auth).json()]
    assert sorted(names) == ["Blog da Ana", "Canal do Léo"]

    campaign = app.post(
        "/v1/campaigns",
        headers=tenant.auth,
        json={
            "name": "Black Friday",
            "destination_domains": ["Shop.Example.com.br."],
            "click_id_param": "bfclid",
            "attribution_window_days": 7,
        },
    )
    assert campaign.status_code == 201, campaign.text
    assert campaign.json()["destination_domains"] == ["shop.example.com.br"]
    listed = {c["name"]: c for c in app.get("/v1/campaigns", headers=tenant.auth).json()}
    assert listed["Black Friday"]["click_id_param"] == "bfclid"
    assert listed["Black Friday"]["terms_version"] == 1


def test_commission_rules_are_stored_as_written(app: TestClient, tenant: TenantFixture) -> None:
    rules = [
        {"id": "base", "type": "percent", "rate": "0.10"},
        {"id": "vip", "type": "percent", "rate": "0.15", "segment": "influencers",
         "tiers": [{"min_monthly_conversions": 50, "rate": "0.18"}], "cap_minor": 50000},
        {"id": "signup", "type": "flat", "amount_minor": 2000, "new_customers_only": True},
    ]  # fmt: skip
    created = app.post(
        "/v1/campaigns",
        headers=tenant.auth,
        json={"name": "Regras", "destination_domains": ["a.com"], "commission_rules": rules},
    )
    assert created.status_code == 201, created.text
    listed = {c["name"]: c for c in app.get("/v1/campaigns", headers=tenant.auth).json()}
    # Fields left out stay out: the dbt models apply the documented defaults.
    assert listed["Regras"]["commission_rules"] == rules


_PERCENT: dict[str, object] = {"id": "r", "type": "percent", "rate": "0.1"}


def _rules(*rules: dict[str, object]) -> dict[str, object]:
    return {"name": "x", "destination_domains": ["a.com"], "commission_rules": list(rules)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "destination_domains": []}, "at least 1"),
        ({"name": "x", "destination_domains": ["not a host"]}, "not a host name"),
        ({"name": "x", "destination_domains": ["a.com"], "click_id_param": "a b"}, "pattern"),
        ({"name": "x", "destination_domains": ["a.com"], "attribution_window_days": 0}, "1"),
        ({"name": "x", "destination_domains": ["a.com"], "surprise": 1}, "Extra inputs"),
        (_rules({"id": "r", "type": "percent"}), "a percent rule has a rate"),
        (_rules({"id": "r", "type": "percent", "rate": "10%"}), "pattern"),
        (_rules({"id": "r", "type": "percent", "rate": "1.5"}), "pattern"),
        (_rules({"id": "r", "type": "flat", "rate": "0.1"}), "a flat rule has an amount_minor"),
        (_rules({"id": "r", "type": "percent", "rate": "0.1", "sgment": "x"}), "Extra inputs"),
        (_rules({"id": "r", "type": "bonus", "rate": "0.1"}), "percent"),
        (_rules(_PERCENT, _PERCENT), "must be unique"),
    ],
)
def test_campaign_validation(
    app: TestClient, tenant: TenantFixture, body: dict[str, object], message: str
) -> None:
    response = app.post("/v1/campaigns", headers=tenant.auth, json=body)
    assert response.status_code == 422
    assert message in response.text


def test_link_has_an_unguessable_code_and_a_tracked_url(
    app: TestClient, tenant: TenantFixture
) -> None:
    response = _link(app, tenant, f"https://{tenant.domain}/tenis?cor=azul#topo", sub1="ig")
    assert response.status_code == 201, response.text
    link = response.json()
    assert len(link["code"]) == 10 and link["code"].isalnum()
    assert link["url"] == f"http://testserver/r/{link['code']}"
    assert link["sub1"] == "ig"
    codes = {_link(app, tenant, f"https://{tenant.domain}/").json()["code"] for _ in range(5)}
    assert len(codes) == 5


@pytest.mark.parametrize(
    "destination",
    [
        "https://evil.example/",
        "https://shop.example.com.br.evil.example/",
        "https://evil.example/?next=https://shop.example.com.br/",
        "//evil.example/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://shop.example.com.br/",
        "https://user:pw@evil.example/",
        "https://shop.example.com.br@evil.example/",
        "https:/\\evil.example",
        "https://evil.example\\.shop.example.com.br/",
        "https://shop.example.com.br\t.evil.example/",
        "not a url",
    ],
)
def test_destinations_outside_the_allowlist_are_refused(
    app: TestClient, tenant: TenantFixture, destination: str
) -> None:
    response = _link(app, tenant, destination)
    assert response.status_code == 422
    assert "no open redirects" in response.text


@pytest.mark.parametrize(
    "destination",
    [
        "https://shop.example.com.br/p/1?x=1",
        "http://www.shop.example.com.br/",
        "https://SHOP.example.com.br/caps",
    ],
)
def test_deep_links_to_allowed_hosts(
    app: TestClient, tenant: TenantFixture, destination: str
) -> None:
    assert _link(app, tenant, destination).status_code == 201


def test_tenants_never_see_or_use_each_other(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    mine = _link(app, tenant, f"https://{tenant.domain}/").json()
    theirs = app.get("/v1/links", headers=other_tenant.auth).json()
    assert mine["id"] not in [link["id"] for link in theirs["items"]]
    assert [a["id"] for a in app.get("/v1/affiliates", headers=other_tenant.auth).json()] == [
        other_tenant.affiliate_id
    ]
    # Another tenant's affiliate or campaign cannot be used, even with a valid destination.
    stolen = app.post(
        "/v1/links",
        headers=other_tenant.auth,
        json={
            "affiliate_id": tenant.affiliate_id,
            "campaign_id": other_tenant.campaign_id,
            "destination_url": f"https://{other_tenant.domain}/",
        },
    )
    assert stolen.status_code == 422
    stolen = app.post(
        "/v1/links",
        headers=other_tenant.auth,
        json={
            "affiliate_id": other_tenant.affiliate_id,
            "campaign_id": tenant.campaign_id,
            "destination_url": f"https://{tenant.domain}/",
        },
    )
    assert stolen.status_code == 422


def test_links_paginate(app: TestClient, tenant: TenantFixture) -> None:
    created = [_link(app, tenant, f"https://{tenant.domain}/{i}").json()["id"] for i in range(3)]
    first = app.get("/v1/links?limit=2", headers=tenant.auth).json()
    assert [link["id"] for link in first["items"]] == created[:2]
    rest = app.get(f"/v1/links?limit=2&after={first['next_after']}", headers=tenant.auth).json()
    assert [link["id"] for link in rest["items"]] == created[2:]
    assert rest["next_after"] is None


def test_openapi_documents_the_routes(app: TestClient) -> None:
    spec = app.get("/openapi.json").json()
    assert {"/v1/links", "/v1/affiliates", "/v1/campaigns"} <= set(spec["paths"])
    assert app.get("/docs").status_code == 200
