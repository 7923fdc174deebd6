"""Campaigns, segments, links and coupons (api/routes/config.py): versioned terms that never
rewrite what a past conversion used, status changes that stop redirects, validation with
clear errors, scopes, tenancy, and an audit entry for every change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from api import audit
from api.affiliates import create_affiliate
from api.state import EdgeState
from api.store import ConfigStore, Principal
from rastro.settings import Settings
from tests.api.conftest import TenantFixture

FALLBACK = "https://fallback.example/unavailable"  # tests/api/conftest.py's settings


# -- helpers -----------------------------------------------------------------------------------


def _key(
    settings: Settings, tenant: TenantFixture, scope: str, affiliate_id: str | None = None
) -> dict[str, str]:
    key = (
        ConfigStore(settings)
        .for_tenant(tenant.tenant_id)
        .create_api_key(f"{scope} key", [scope], affiliate_id=affiliate_id)
    )
    return {"Authorization": f"Bearer {key}"}


def _affiliate(settings: Settings, tenant: TenantFixture, name: str, segment: str = "") -> str:
    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    return create_affiliate(scope, EdgeState(settings), setup, name, segment, "BR").id


def _terms(tenant: TenantFixture, **values: Any) -> dict[str, Any]:
    return {"name": "Programa", "destination_domains": [tenant.domain], **values}


def _campaign(app: TestClient, tenant: TenantFixture, **values: Any) -> dict[str, Any]:
    response = app.post("/v1/campaigns", headers=tenant.auth, json=_terms(tenant, **values))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _link(
    app: TestClient,
    tenant: TenantFixture,
    destination: str | None = None,
    campaign_id: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> httpx2.Response:
    return app.post(
        "/v1/links",
        headers=headers or tenant.auth,
        json={
            "affiliate_id": tenant.affiliate_id,
            "campaign_id": campaign_id or tenant.campaign_id,
            "destination_url": destination or f"https://{tenant.domain}/",
            **extra,
        },
    )


def _actions(settings: Settings, tenant: TenantFixture, subject_id: str) -> list[str]:
    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    return [entry.action for entry in reversed(audit.entries(scope, subject_id=subject_id))]


def _stored_versions(settings: Settings, tenant: TenantFixture, campaign_id: str) -> list[Any]:
    """Every row ever written for the campaign (no FINAL): what was written, not what shows."""
    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    return [
        (row["terms_version"], row["commission_rules"], row["valid_from"], row["is_deleted"])
        for row in scope.rows(
            "SELECT terms_version, commission_rules, valid_from, is_deleted FROM campaigns "
            "WHERE campaign_id = {id:String} ORDER BY terms_version, version",
            id=campaign_id,
        )
    ]


_BASE: dict[str, object] = {"id": "base", "type": "percent", "rate": "0.10"}


# -- creating and listing ----------------------------------------------------------------------


def test_create_and_list_campaigns(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    created = _campaign(
        app,
        tenant,
        name="Black Friday",
        destination_domains=["Shop.Example.com.br."],
        click_id_param="bfclid",
        attribution_window_days=7,
        attribution_model="time_decay",
        attribution_half_life_days=3,
        conflict_rules={"coupon": "click", "self_referral": "allow"},
    )
    assert created["destination_domains"] == ["shop.example.com.br"]
    assert (created["terms_version"], created["status"], created["valid_to"]) == (1, "active", None)
    assert created["conflict_rules"] == {
        "coupon": "click",
        "exclude_paid_traffic": True,
        "exclude_velocity": True,
        "self_referral": "allow",
        "affiliate_priorities": {},
    }
    listed = {c["name"]: c for c in app.get("/v1/campaigns", headers=tenant.auth).json()}
    assert set(listed) == {"Programa", "Black Friday"}
    assert listed["Black Friday"] == created
    assert _actions(settings, tenant, created["campaign_id"]) == ["campaign.create"]


def test_commission_rules_are_stored_as_written(app: TestClient, tenant: TenantFixture) -> None:
    rules = [
        {"id": "signup", "type": "flat", "amount_minor": 2000, "new_customers_only": True},
        {"id": "vip", "type": "percent", "rate": "0.15", "segment": "content",
         "tiers": [{"min_monthly_conversions": 50, "rate": "0.18"}], "cap_minor": 50000},
        {"id": "ana", "type": "percent", "rate": "0.2", "affiliate_id": tenant.affiliate_id},
        {"id": "tenis", "type": "percent", "rate": "0.06", "product_ids": ["TEN-42", "p-1"],
         "countries": ["BR", "PT"], "coupon_codes": ["ana10"]},
        _BASE,
    ]  # fmt: skip
    created = _campaign(app, tenant, name="Regras", commission_rules=rules)
    # Fields left out stay out: the dbt models apply the documented defaults.
    assert created["commission_rules"] == rules
    listed = {c["name"]: c for c in app.get("/v1/campaigns", headers=tenant.auth).json()}
    assert listed["Regras"]["commission_rules"] == rules


def test_countries_are_stored_upper_cased(app: TestClient, tenant: TenantFixture) -> None:
    rule = {**_BASE, "countries": ["br", "Pt"]}
    created = _campaign(app, tenant, commission_rules=[rule])
    assert created["commission_rules"] == [{**_BASE, "countries": ["BR", "PT"]}]


def _rules(*rules: Mapping[str, object]) -> dict[str, object]:
    return {"name": "x", "destination_domains": ["a.com"], "commission_rules": list(rules)}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "x", "destination_domains": []}, "destination_domains", "at least 1"),
        ({"name": "x", "destination_domains": ["not a host"]}, "destination_domains", "not a host"),
        ({"name": "", "destination_domains": ["a.com"]}, "name", "at least 1"),
        ({"name": "x", "destination_domains": ["a.com"], "click_id_param": "a b"},
         "click_id_param", "pattern"),
        ({"name": "x", "destination_domains": ["a.com"], "attribution_window_days": 0},
         "attribution_window_days", "greater than or equal to 1"),
        ({"name": "x", "destination_domains": ["a.com"], "attribution_model": "u_shaped"},
         "attribution_model", "last_click"),
        ({"name": "x", "destination_domains": ["a.com"], "hold_days": 400}, "hold_days", "365"),
        ({"name": "x", "destination_domains": ["a.com"], "surprise": 1}, "surprise", "Extra"),
        ({"name": "x", "destination_domains": ["a.com"], "status": "ended"}, "status", "active"),
        ({"name": "x", "destination_domains": ["a.com"], "conflict_rules": {"coupon": "maybe"}},
         "coupon", "wins"),
        ({"name": "x", "destination_domains": ["a.com"],
          "conflict_rules": {"exclude_paid_trafic": False}}, "exclude_paid_trafic", "Extra"),
        (_rules({"id": "r", "type": "percent"}), "commission_rules", "a percent rule has a rate"),
        (_rules({"id": "r", "type": "percent", "rate": "10%"}), "rate", "pattern"),
        (_rules({"id": "r", "type": "percent", "rate": "1.5"}), "rate", "pattern"),
        (_rules({"id": "r", "type": "flat", "rate": "0.1"}), "commission_rules",
         "a flat rule has an amount_minor"),
        (_rules({"id": "r", "type": "flat", "amount_minor": -1}), "amount_minor", "greater"),
        (_rules({**_BASE, "sgment": "x"}), "sgment", "Extra"),
        (_rules({"id": "r", "type": "bonus", "rate": "0.1"}), "type", "percent"),
        (_rules(_BASE, _BASE), "commission_rules", "must be unique"),
        (_rules({**_BASE, "tiers": [{"min_monthly_conversions": 50, "rate": "0.2"},
                                    {"min_monthly_conversions": 10, "rate": "0.3"}]}),
         "tiers", "ascending order"),
        (_rules({**_BASE, "tiers": [{"min_monthly_conversions": 5, "rate": "0.2"},
                                    {"min_monthly_conversions": 5, "rate": "0.3"}]}),
         "tiers", "without repeats"),
        (_rules({**_BASE, "tiers": [{"min_monthly_conversions": 5, "rate": "0.05"}]}),
         "commission_rules", "never below"),
        (_rules({"id": "r", "type": "flat", "amount_minor": 1,
                 "tiers": [{"min_monthly_conversions": 5, "rate": "0.05"}]}),
         "commission_rules", "a flat rule has none"),
        (_rules({**_BASE, "countries": ["BRA"]}), "countries", "pattern"),
        (_rules({**_BASE, "countries": []}), "countries", "at least 1"),
        (_rules({**_BASE, "countries": ["BR", "br"]}), "countries", "the same value twice"),
        (_rules({**_BASE, "product_ids": [""]}), "product_ids", "at least 1"),
        (_rules({**_BASE, "coupon_codes": ["ANA10", "ana10"]}), "coupon_codes", "twice"),
        (_rules({**_BASE, "segment": ""}), "segment", "at least 1"),
        # Rules do not stack: a rule another one always outranks would silently never pay.
        (_rules(_BASE, {"id": "signup", "type": "flat", "amount_minor": 2000,
                        "new_customers_only": True}),
         "commission_rules", "rule 'signup' can never apply: rule 'base'"),
        (_rules({"id": "shoes", "type": "percent", "rate": "0.05", "category": "Shoes"},
                {"id": "shoes2", "type": "percent", "rate": "0.07", "category": "shoes",
                 "countries": ["BR"]}),
         "commission_rules", "rule 'shoes2' can never apply"),
    ],
)  # fmt: skip
def test_campaign_validation(
    app: TestClient, tenant: TenantFixture, body: dict[str, object], field: str, message: str
) -> None:
    response = app.post("/v1/campaigns", headers=tenant.auth, json=body)
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(field in map(str, p["loc"]) and message in p["msg"] for p in problems), problems


def test_the_documented_rules_are_accepted(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    # docs/attribution.md, section 4: the example must be what the API takes, and putting
    # its signup rule after base must be refused (base would always win).
    doc = (Path(__file__).parents[2] / "docs" / "attribution.md").read_text()
    example = doc.split("## 4. Commissions")[1].split("```json")[1].split("```")[0]
    rules = json.loads(example)
    _affiliate(settings, tenant, "Canal do Léo", segment="influencers")
    assert _campaign(app, tenant, commission_rules=rules)["commission_rules"] == rules
    signup = next(r for r in rules if r["id"] == "signup")
    reordered = [r for r in rules if r is not signup] + [signup]
    response = app.post("/v1/campaigns", headers=tenant.auth, json=_rules(*reordered))
    assert response.status_code == 422
    assert "rule 'signup' can never apply: rule 'base'" in response.text


def test_rules_in_a_narrower_order_are_fine(app: TestClient, tenant: TenantFixture) -> None:
    # The reverse of the shadowing cases: the narrower rule first, or more specific.
    signup = {"id": "signup", "type": "flat", "amount_minor": 2000, "new_customers_only": True}
    vip = {"id": "vip", "type": "percent", "rate": "0.2", "segment": "content"}
    hero = {"id": "hero", "type": "percent", "rate": "0.2", "product_ids": ["TEN-42"]}
    shoes = {"id": "shoes", "type": "percent", "rate": "0.05", "category": "shoes"}
    _campaign(app, tenant, commission_rules=[signup, _BASE, vip, shoes, hero])


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ({**_BASE, "affiliate_id": "nobody"}, "affiliate_id", "rule 'base': no affiliate 'nobody'"),
        ({**_BASE, "segment": "influencers"}, "segment",
         "rule 'base': no affiliate is in segment 'influencers'"),
    ],
)  # fmt: skip
def test_rules_must_name_affiliates_and_segments_of_the_tenant(
    app: TestClient,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    rule: dict[str, object],
    field: str,
    message: str,
) -> None:
    response = app.post("/v1/campaigns", headers=tenant.auth, json=_rules(rule))
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "commission_rules", 0, field]
    assert problem["msg"].startswith(message)
    # Another tenant's affiliate is no affiliate here either.
    other = {**_BASE, "affiliate_id": other_tenant.affiliate_id}
    response = app.post("/v1/campaigns", headers=tenant.auth, json=_rules(other))
    assert response.status_code == 422


def test_priorities_must_name_affiliates_of_the_tenant(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    body = _terms(tenant, conflict_rules={"affiliate_priorities": {other_tenant.affiliate_id: 2}})
    response = app.post("/v1/campaigns", headers=tenant.auth, json=body)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == [
        "body",
        "conflict_rules",
        "affiliate_priorities",
        other_tenant.affiliate_id,
    ]
    body = _terms(tenant, conflict_rules={"affiliate_priorities": {tenant.affiliate_id: 2}})
    assert app.post("/v1/campaigns", headers=tenant.auth, json=body).status_code == 201


# -- versions ----------------------------------------------------------------------------------


def test_new_terms_are_a_new_version_and_the_old_one_is_never_rewritten(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    first = _campaign(app, tenant, commission_rules=[_BASE])
    campaign_id = first["campaign_id"]
    before_update = datetime.now(UTC)
    raised = {**_BASE, "rate": "0.12"}
    response = app.put(
        f"/v1/campaigns/{campaign_id}",
        headers=tenant.auth,
        json={**_terms(tenant, commission_rules=[raised], hold_days=15), "reason": "new policy"},
    )
    assert response.status_code == 200, response.text
    second = response.json()
    assert (second["terms_version"], second["status"]) == (2, "active")
    assert second["commission_rules"] == [raised] and second["hold_days"] == 15
    valid_from = datetime.fromisoformat(second["valid_from"])
    assert before_update <= valid_from <= datetime.now(UTC)

    # Version 1 reads exactly as it was written, and only one row of it was ever written.
    assert app.get(f"/v1/campaigns/{campaign_id}/versions/1", headers=tenant.auth).json() == first
    stored = _stored_versions(settings, tenant, campaign_id)
    assert [(v, rules, deleted) for v, rules, _, deleted in stored] == [
        (1, '[{"id": "base", "type": "percent", "rate": "0.10"}]', 0),
        (2, '[{"id": "base", "type": "percent", "rate": "0.12"}]', 0),
    ]

    # The new version is in force; the history closes version 1 where version 2 starts.
    detail = app.get(f"/v1/campaigns/{campaign_id}", headers=tenant.auth).json()
    assert detail["terms_version"] == 2 and detail["commission_rules"] == [raised]
    assert [(v["terms_version"], v["state"]) for v in detail["versions"]] == [
        (1, "past"),
        (2, "current"),
    ]
    assert detail["versions"][0]["valid_until"] == second["valid_from"]
    assert detail["versions"][1]["valid_until"] is None
    listed = {c["campaign_id"]: c for c in app.get("/v1/campaigns", headers=tenant.auth).json()}
    assert listed[campaign_id]["terms_version"] == 2

    [update] = audit.entries(
        ConfigStore(settings).for_tenant(tenant.tenant_id), "campaign", campaign_id, limit=1
    )
    assert (update.action, update.reason) == ("campaign.update", "new policy")
    assert update.details["changed"] == ["commission_rules", "hold_days"]
    assert (update.details["terms_version"], update.details["previous_version"]) == (2, 1)


def test_scheduled_terms_wait_and_can_be_cancelled(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    campaign_id = _campaign(app, tenant, commission_rules=[_BASE])["campaign_id"]
    url = f"/v1/campaigns/{campaign_id}"
    later = datetime.now(UTC) + timedelta(days=3)
    raised = {**_BASE, "rate": "0.15"}
    body = {**_terms(tenant, commission_rules=[raised]), "effective_from": later.isoformat()}
    scheduled = app.put(url, headers=tenant.auth, json=body)
    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["terms_version"] == 2
    assert datetime.fromisoformat(scheduled.json()["valid_from"]) == later.replace(
        microsecond=later.microsecond // 1000 * 1000
    )

    # Until then version 1 stays in force.
    detail = app.get(url, headers=tenant.auth).json()
    assert detail["terms_version"] == 1 and detail["commission_rules"] == [_BASE]
    assert [v["state"] for v in detail["versions"]] == ["current", "scheduled"]

    # Versions take effect in order: nothing may take effect before the scheduled one.
    assert app.post(f"{url}/pause", headers=tenant.auth).status_code == 409
    conflict = app.put(url, headers=tenant.auth, json=_terms(tenant))
    assert conflict.status_code == 409
    assert "scheduled" in conflict.json()["detail"]
    after = {**_terms(tenant), "effective_from": (later + timedelta(days=1)).isoformat()}
    assert app.put(url, headers=tenant.auth, json=after).json()["terms_version"] == 3

    # A scheduled version can be cancelled; one that took effect never.
    assert app.delete(f"{url}/versions/3?reason=oops", headers=tenant.auth).status_code == 204
    assert app.delete(f"{url}/versions/2", headers=tenant.auth).status_code == 204
    assert app.get(f"{url}/versions/2", headers=tenant.auth).status_code == 404
    refused = app.delete(f"{url}/versions/1", headers=tenant.auth)
    assert refused.status_code == 409
    assert "never changed" in refused.json()["detail"]
    assert app.delete(f"{url}/versions/9", headers=tenant.auth).status_code == 404
    # A cancelled version's number is never given to another version.
    assert app.post(f"{url}/pause", headers=tenant.auth).json()["terms_version"] == 4
    assert _actions(settings, tenant, campaign_id) == [
        "campaign.create",
        "campaign.update",
        "campaign.update",
        "campaign.cancel_version",
        "campaign.cancel_version",
        "campaign.pause",
    ]


def test_effective_from_is_never_in_the_past(app: TestClient, tenant: TenantFixture) -> None:
    url = f"/v1/campaigns/{tenant.campaign_id}"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = app.put(url, headers=tenant.auth, json={**_terms(tenant), "effective_from": past})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "effective_from"]
    naive = {**_terms(tenant), "effective_from": "2099-01-01T00:00:00"}
    assert app.put(url, headers=tenant.auth, json=naive).status_code == 422
    detail = app.get(url, headers=tenant.auth).json()
    assert [v["terms_version"] for v in detail["versions"]] == [1]


def test_update_validates_like_create(app: TestClient, tenant: TenantFixture) -> None:
    url = f"/v1/campaigns/{tenant.campaign_id}"
    bad_rule = _terms(tenant, commission_rules=[{**_BASE, "affiliate_id": "nobody"}])
    response = app.put(url, headers=tenant.auth, json=bad_rule)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "commission_rules", 0, "affiliate_id"]
    assert app.put(url, headers=tenant.auth, json={"name": "x"}).status_code == 422
    assert len(app.get(url, headers=tenant.auth).json()["versions"]) == 1


# -- pause, resume, archive --------------------------------------------------------------------


def test_pause_resume_and_archive_are_versions_and_control_redirects(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    campaign = _campaign(app, tenant, commission_rules=[_BASE])
    campaign_id, url = campaign["campaign_id"], f"/v1/campaigns/{campaign['campaign_id']}"
    code = _link(app, tenant, campaign_id=campaign_id).json()["code"]
    destination = f"https://{tenant.domain}/"
    assert app.get(f"/r/{code}").headers["location"].startswith(destination)

    paused = app.post(f"{url}/pause", headers=tenant.auth, json={"reason": "stock ended"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["terms_version"], paused.json()["status"]) == (2, "paused")
    assert paused.json()["commission_rules"] == [_BASE]  # the same terms
    assert app.get(f"/r/{code}").headers["location"] == FALLBACK
    assert app.post(f"{url}/pause", headers=tenant.auth).status_code == 409

    resumed = app.post(f"{url}/resume", headers=tenant.auth)
    assert (resumed.json()["terms_version"], resumed.json()["status"]) == (3, "active")
    assert app.get(f"/r/{code}").headers["location"].startswith(destination)
    assert app.post(f"{url}/resume", headers=tenant.auth).status_code == 409

    archived = app.post(f"{url}/archive", headers=tenant.auth).json()
    assert (archived["terms_version"], archived["status"]) == (4, "ended")
    # The terms end where the archived version starts: orders after it earn nothing.
    assert archived["valid_to"] == archived["valid_from"]
    assert app.get(f"/r/{code}").headers["location"] == FALLBACK
    for action in ("resume", "pause", "archive"):
        refused = app.post(f"{url}/{action}", headers=tenant.auth)
        assert refused.status_code == 409
        assert "archived" in refused.json()["detail"]
    assert app.put(url, headers=tenant.auth, json=_terms(tenant)).status_code == 409
    assert _link(app, tenant, campaign_id=campaign_id).status_code == 409

    # Archived campaigns leave the default list; ?status= finds them.
    def listed(query: str = "") -> set[str]:
        return {
            c["campaign_id"] for c in app.get(f"/v1/campaigns{query}", headers=tenant.auth).json()
        }

    assert campaign_id not in listed()
    assert listed("?status=ended") == {campaign_id}
    assert listed("?status=all") == {campaign_id, tenant.campaign_id}
    assert listed("?status=active") == {tenant.campaign_id}
    assert app.get("/v1/campaigns?status=gone", headers=tenant.auth).status_code == 422

    scope = ConfigStore(settings).for_tenant(tenant.tenant_id)
    entries = list(reversed(audit.entries(scope, "campaign", campaign_id)))
    assert [(e.action, e.details.get("to")) for e in entries] == [
        ("campaign.create", None),
        ("campaign.pause", "paused"),
        ("campaign.resume", "active"),
        ("campaign.archive", "ended"),
    ]
    assert entries[1].reason == "stock ended"


def test_a_campaign_created_paused_does_not_redirect(
    app: TestClient, tenant: TenantFixture
) -> None:
    campaign = _campaign(app, tenant, status="paused")
    code = _link(app, tenant, campaign_id=campaign["campaign_id"]).json()["code"]
    assert app.get(f"/r/{code}").headers["location"] == FALLBACK


# -- who may call ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/campaigns"),
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/x"),
        ("PUT", "/v1/campaigns/x"),
        ("GET", "/v1/campaigns/x/versions/1"),
        ("DELETE", "/v1/campaigns/x/versions/1"),
        ("POST", "/v1/campaigns/x/pause"),
        ("POST", "/v1/campaigns/x/resume"),
        ("POST", "/v1/campaigns/x/archive"),
        ("GET", "/v1/segments"),
        ("GET", "/v1/links"),
        ("POST", "/v1/links"),
        ("GET", "/v1/links/x"),
        ("POST", "/v1/links/x/pause"),
        ("POST", "/v1/links/x/resume"),
        ("POST", "/v1/coupons"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer rk_not_a_key"}, {"Authorization": "Basic abc"}],
)
def test_every_route_needs_a_valid_key(
    app: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = app.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_scopes(app: TestClient, settings: Settings, tenant: TenantFixture) -> None:
    analyst = _key(settings, tenant, "analyst")
    ingest = _key(settings, tenant, "ingest")
    affiliate = _key(settings, tenant, "affiliate", tenant.affiliate_id)
    campaign_url = f"/v1/campaigns/{tenant.campaign_id}"
    link_id = _link(app, tenant).json()["id"]
    coupon = {
        "code": "ANA10",
        "affiliate_id": tenant.affiliate_id,
        "campaign_id": tenant.campaign_id,
    }
    writes = [
        ("POST", "/v1/campaigns", _terms(tenant)),
        ("PUT", campaign_url, _terms(tenant)),
        ("POST", f"{campaign_url}/pause", None),
        ("POST", f"{campaign_url}/archive", None),
        ("DELETE", f"{campaign_url}/versions/1", None),
        ("POST", f"/v1/links/{link_id}/pause", None),
        ("POST", "/v1/coupons", coupon),
    ]
    for headers in (analyst, ingest, affiliate):
        for method, path, body in writes:
            response = app.request(method, path, headers=headers, json=body)
            assert response.status_code == 403, (method, path, response.text)
    # Reading: admin and analyst; the affiliate its published terms; ingest nothing.
    for path in ("/v1/campaigns", campaign_url, "/v1/links", f"/v1/links/{link_id}"):
        assert app.get(path, headers=analyst).status_code == 200
        assert app.get(path, headers=affiliate).status_code == 200
        assert app.get(path, headers=ingest).status_code == 403
    for path in (f"{campaign_url}/versions/1", "/v1/segments"):
        assert app.get(path, headers=analyst).status_code == 200
        assert app.get(path, headers=affiliate).status_code == 403
    assert _link(app, tenant, headers=analyst).status_code == 403
    assert _link(app, tenant, headers=ingest).status_code == 403
    # Nothing changed.
    assert len(app.get(campaign_url, headers=tenant.auth).json()["versions"]) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/campaigns/{id}"),
        ("PUT", "/v1/campaigns/{id}"),
        ("GET", "/v1/campaigns/{id}/versions/1"),
        ("DELETE", "/v1/campaigns/{id}/versions/1"),
        ("POST", "/v1/campaigns/{id}/pause"),
        ("POST", "/v1/campaigns/{id}/resume"),
        ("POST", "/v1/campaigns/{id}/archive"),
    ],
)
def test_another_tenants_campaign_is_not_found_and_unchanged(
    app: TestClient,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    method: str,
    path: str,
) -> None:
    theirs = path.format(id=tenant.campaign_id)
    body = _terms(other_tenant) if method == "PUT" else None
    response = app.request(method, theirs, headers=other_tenant.auth, json=body)
    assert response.status_code == 404, response.text
    assert tenant.campaign_id in response.json()["detail"]
    unknown = app.request(method, path.format(id="no-such-id"), headers=tenant.auth, json=body)
    assert unknown.status_code == 404
    detail = app.get(f"/v1/campaigns/{tenant.campaign_id}", headers=tenant.auth).json()
    assert (detail["status"], len(detail["versions"])) == ("active", 1)
    assert tenant.campaign_id not in {
        c["campaign_id"]
        for c in app.get("/v1/campaigns?status=all", headers=other_tenant.auth).json()
    }


def test_another_tenants_affiliate_or_campaign_cannot_be_linked(
    app: TestClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    stolen = _link(
        app, other_tenant, campaign_id=tenant.campaign_id, destination=f"https://{tenant.domain}/"
    )
    assert stolen.status_code == 422
    assert stolen.json()["detail"][0]["loc"] == ["body", "campaign_id"]
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
    assert stolen.json()["detail"][0]["loc"] == ["body", "affiliate_id"]
    coupon = {
        "code": "X1",
        "affiliate_id": other_tenant.affiliate_id,
        "campaign_id": tenant.campaign_id,
    }
    assert app.post("/v1/coupons", headers=other_tenant.auth, json=coupon).status_code == 422
    assert app.get("/v1/links", headers=tenant.auth).json()["items"] == []


# -- what an affiliate sees and does -----------------------------------------------------------


def test_affiliates_see_active_campaigns_with_the_rules_that_apply_to_them(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    leo = _affiliate(settings, tenant, "Canal do Léo", segment="influencers")
    mine = {"id": "mine", "type": "percent", "rate": "0.2", "affiliate_id": tenant.affiliate_id}
    content = {"id": "content", "type": "percent", "rate": "0.15", "segment": "content"}
    theirs = {"id": "leo", "type": "percent", "rate": "0.3", "affiliate_id": leo}
    influencers = {"id": "influencers", "type": "percent", "rate": "0.25", "segment": "influencers"}
    rules = [mine, theirs, content, influencers, _BASE]
    priorities = {tenant.affiliate_id: 1, leo: 2}
    active = _campaign(
        app, tenant, commission_rules=rules, conflict_rules={"affiliate_priorities": priorities}
    )
    paused = _campaign(app, tenant, name="Pausada", status="paused")
    affiliate = _key(settings, tenant, "affiliate", tenant.affiliate_id)

    listed = {c["campaign_id"]: c for c in app.get("/v1/campaigns", headers=affiliate).json()}
    assert set(listed) == {tenant.campaign_id, active["campaign_id"]}
    published = listed[active["campaign_id"]]
    assert published["commission_rules"] == [mine, content, _BASE]
    assert published["conflict_rules"]["affiliate_priorities"] == {tenant.affiliate_id: 1}
    assert app.get("/v1/campaigns?status=paused", headers=affiliate).json() == []

    detail = app.get(f"/v1/campaigns/{active['campaign_id']}", headers=affiliate).json()
    assert detail["commission_rules"] == [mine, content, _BASE]
    assert app.get(f"/v1/campaigns/{paused['campaign_id']}", headers=affiliate).status_code == 404


def test_affiliates_create_and_read_only_their_own_links(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    leo = _affiliate(settings, tenant, "Canal do Léo")
    affiliate = _key(settings, tenant, "affiliate", tenant.affiliate_id)
    leos_link = app.post(
        "/v1/links",
        headers=tenant.auth,
        json={"affiliate_id": leo, "campaign_id": tenant.campaign_id,
              "destination_url": f"https://{tenant.domain}/"},
    ).json()  # fmt: skip

    own = app.post(
        "/v1/links",
        headers=affiliate,
        json={"campaign_id": tenant.campaign_id, "destination_url": f"https://{tenant.domain}/x"},
    )
    assert own.status_code == 201, own.text
    assert own.json()["affiliate_id"] == tenant.affiliate_id
    assert _link(app, tenant, headers=affiliate).status_code == 201  # naming itself is fine
    for_leo = app.post(
        "/v1/links",
        headers=affiliate,
        json={"affiliate_id": leo, "campaign_id": tenant.campaign_id,
              "destination_url": f"https://{tenant.domain}/"},
    )  # fmt: skip
    assert for_leo.status_code == 403

    # Only active campaigns take an affiliate's links.
    paused = _campaign(app, tenant, name="Pausada", status="paused")["campaign_id"]
    assert _link(app, tenant, campaign_id=paused, headers=affiliate).status_code == 422
    assert _link(app, tenant, campaign_id=paused).status_code == 201  # the admin may

    listed = app.get("/v1/links", headers=affiliate).json()["items"]
    assert {link["affiliate_id"] for link in listed} == {tenant.affiliate_id}
    assert len(listed) == 3  # its two, and the admin's one for it
    assert app.get(f"/v1/links?affiliate_id={leo}", headers=affiliate).json()["items"] == []
    assert app.get(f"/v1/links/{leos_link['id']}", headers=affiliate).status_code == 404
    assert app.get(f"/v1/links/{own.json()['id']}", headers=affiliate).status_code == 200
    assert _actions(settings, tenant, own.json()["id"]) == ["link.create"]


def test_a_suspended_affiliate_cannot_add_links(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    affiliate = _key(settings, tenant, "affiliate", tenant.affiliate_id)
    suspended = app.post(
        f"/v1/affiliates/{tenant.affiliate_id}/suspend",
        headers=tenant.auth,
        json={"reason": "fraud"},
    )
    assert suspended.status_code == 200, suspended.text
    response = _link(app, tenant, headers=affiliate)
    assert response.status_code == 403
    assert "suspended" in response.json()["detail"]


# -- segments ----------------------------------------------------------------------------------


def test_segments_show_their_affiliates_and_overrides(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    _affiliate(settings, tenant, "Canal do Léo", segment="influencers")
    _affiliate(settings, tenant, "Canal da Bia", segment="influencers")
    override = {"id": "vip", "type": "percent", "rate": "0.2", "segment": "influencers"}
    campaign = _campaign(app, tenant, name="VIP", commission_rules=[override, _BASE])
    archived = _campaign(app, tenant, name="Old", commission_rules=[override])
    app.post(f"/v1/campaigns/{archived['campaign_id']}/archive", headers=tenant.auth)

    segments = {s["segment"]: s for s in app.get("/v1/segments", headers=tenant.auth).json()}
    assert set(segments) == {"content", "influencers"}
    assert (segments["content"]["affiliates"], segments["content"]["rules"]) == (1, [])
    influencers = segments["influencers"]
    assert (influencers["affiliates"], influencers["approved_affiliates"]) == (2, 2)
    assert influencers["rules"] == [
        {
            "campaign_id": campaign["campaign_id"],
            "campaign_name": "VIP",
            "campaign_status": "active",
            "terms_version": 1,
            "rule": override,
        }
    ]
    theirs = app.get("/v1/segments", headers=other_tenant.auth).json()
    assert [s["segment"] for s in theirs] == ["content"]
    assert theirs[0]["affiliates"] == 1


# -- links and coupons -------------------------------------------------------------------------


def test_link_has_an_unguessable_code_and_a_tracked_url(
    app: TestClient, settings: Settings, tenant: TenantFixture
) -> None:
    response = _link(app, tenant, f"https://{tenant.domain}/tenis?cor=azul#topo", sub1="ig")
    assert response.status_code == 201, response.text
    link = response.json()
    assert len(link["code"]) == 10 and link["code"].isalnum()
    assert link["url"] == f"http://testserver/r/{link['code']}"
    assert (link["sub1"], link["kind"], link["status"]) == ("ig", "link", "active")
    assert app.get(f"/v1/links/{link['id']}", headers=tenant.auth).json() == link
    codes = {_link(app, tenant, f"https://{tenant.domain}/").json()["code"] for _ in range(5)}
    assert len(codes) == 5
    assert _actions(settings, tenant, link["id"]) == ["link.create"]


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
    assert response.json()["detail"][0]["loc"] == ["body", "destination_url"]
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


@pytest.mark.parametrize(
    "body",
    [
        {"campaign_id": "x", "destination_url": "https://a.com/"},  # admin: affiliate required
        {"affiliate_id": "a", "destination_url": "https://a.com/"},
        {"affiliate_id": "a", "campaign_id": "c", "destination_url": "https://a.com/", "sub6": "x"},
        {"affiliate_id": "a", "campaign_id": "c", "destination_url": "h" * 5000},
    ],
)
def test_link_validation(app: TestClient, tenant: TenantFixture, body: dict[str, str]) -> None:
    assert app.post("/v1/links", headers=tenant.auth, json=body).status_code == 422


def test_links_filter_and_paginate(app: TestClient, tenant: TenantFixture) -> None:
    created = [_link(app, tenant, f"https://{tenant.domain}/{i}").json()["id"] for i in range(3)]
    first = app.get("/v1/links?limit=2", headers=tenant.auth).json()
    assert [link["id"] for link in first["items"]] == created[:2]
    rest = app.get(f"/v1/links?limit=2&after={first['next_after']}", headers=tenant.auth).json()
    assert [link["id"] for link in rest["items"]] == created[2:]
    assert rest["next_after"] is None
    other = _campaign(app, tenant, name="Outra")["campaign_id"]
    in_other = _link(app, tenant, campaign_id=other).json()["id"]
    by_campaign = app.get(f"/v1/links?campaign_id={other}", headers=tenant.auth).json()
    assert [link["id"] for link in by_campaign["items"]] == [in_other]
    assert app.get("/v1/links?limit=0", headers=tenant.auth).status_code == 422


def test_pausing_a_link_stops_its_redirect(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    link = _link(app, tenant).json()
    url = f"/v1/links/{link['id']}"
    assert app.post(f"{url}/pause", headers=other_tenant.auth).status_code == 404
    assert app.get(url, headers=other_tenant.auth).status_code == 404
    assert app.get(f"/r/{link['code']}").headers["location"].startswith(f"https://{tenant.domain}/")

    paused = app.post(f"{url}/pause", headers=tenant.auth, json={"reason": "spam"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert app.get(f"/r/{link['code']}").headers["location"] == FALLBACK
    assert app.post(f"{url}/pause", headers=tenant.auth).status_code == 409
    assert app.get(url, headers=tenant.auth).json()["status"] == "paused"

    assert app.post(f"{url}/resume", headers=tenant.auth).json()["status"] == "active"
    assert app.get(f"/r/{link['code']}").headers["location"].startswith(f"https://{tenant.domain}/")
    assert app.post("/v1/links/no-such-link/pause", headers=tenant.auth).status_code == 404
    assert _actions(settings, tenant, link["id"]) == ["link.create", "link.pause", "link.resume"]


def test_coupons_are_unique_per_tenant_in_any_case(
    app: TestClient, settings: Settings, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    body = {"code": "Ana10", "affiliate_id": tenant.affiliate_id, "campaign_id": tenant.campaign_id}
    created = app.post("/v1/coupons", headers=tenant.auth, json=body)
    assert created.status_code == 201, created.text
    coupon = created.json()
    assert (coupon["kind"], coupon["code"], coupon["url"]) == ("coupon", "Ana10", None)
    assert coupon["destination_url"] == ""

    duplicate = app.post("/v1/coupons", headers=tenant.auth, json={**body, "code": "ANA10"})
    assert duplicate.status_code == 409
    assert "taken" in duplicate.json()["detail"]
    # Another tenant has its own codes.
    theirs = {
        **body,
        "affiliate_id": other_tenant.affiliate_id,
        "campaign_id": other_tenant.campaign_id,
    }
    assert app.post("/v1/coupons", headers=other_tenant.auth, json=theirs).status_code == 201

    coupons = app.get("/v1/links?kind=coupon", headers=tenant.auth).json()["items"]
    assert [c["id"] for c in coupons] == [coupon["id"]]
    # A coupon cannot be paused on its own (links keep only their latest status).
    refused = app.post(f"/v1/links/{coupon['id']}/pause", headers=tenant.auth)
    assert refused.status_code == 409
    assert _actions(settings, tenant, coupon["id"]) == ["coupon.create"]


@pytest.mark.parametrize("code", ["", "has space", "-lead", "x" * 65, "ção"])
def test_coupon_codes_are_validated(app: TestClient, tenant: TenantFixture, code: str) -> None:
    body = {"code": code, "affiliate_id": tenant.affiliate_id, "campaign_id": tenant.campaign_id}
    response = app.post("/v1/coupons", headers=tenant.auth, json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "code"]


# -- documentation -----------------------------------------------------------------------------


def test_openapi_documents_every_route(app: TestClient) -> None:
    spec = app.get("/openapi.json").json()
    routes = {
        ("post", "/v1/campaigns"): "201",
        ("get", "/v1/campaigns"): "200",
        ("get", "/v1/campaigns/{campaign_id}"): "404",
        ("put", "/v1/campaigns/{campaign_id}"): "409",
        ("get", "/v1/campaigns/{campaign_id}/versions/{terms_version}"): "404",
        ("delete", "/v1/campaigns/{campaign_id}/versions/{terms_version}"): "409",
        ("post", "/v1/campaigns/{campaign_id}/pause"): "409",
        ("post", "/v1/campaigns/{campaign_id}/resume"): "409",
        ("post", "/v1/campaigns/{campaign_id}/archive"): "409",
        ("get", "/v1/segments"): "200",
        ("post", "/v1/links"): "201",
        ("get", "/v1/links"): "200",
        ("get", "/v1/links/{link_id}"): "404",
        ("post", "/v1/links/{link_id}/pause"): "409",
        ("post", "/v1/links/{link_id}/resume"): "404",
        ("post", "/v1/coupons"): "409",
    }
    for (method, path), status_code in routes.items():
        operation = spec["paths"][path][method]
        assert operation["summary"] and operation["description"], path
        assert {"401", "403", "422", status_code} <= set(operation["responses"]), path
    body = spec["paths"]["/v1/campaigns"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"program", "conditions"}
    schemas = spec["components"]["schemas"]
    assert schemas["CommissionRule"]["examples"] and schemas["Campaign"]["examples"]
    assert app.get("/docs").status_code == 200
