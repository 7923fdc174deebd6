"""The demo tenant `rastro up` seeds: a Brazilian store with three affiliates, a campaign and
their links. Ids and versions are fixed, so seeding at every start never duplicates a row
(the configuration tables keep the highest version of each id)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from rastro.ids import stable_uuid7
from rastro.keys import KEY_PREFIX, display_prefix, hash_api_key, hash_password
from rastro.settings import Settings
from rastro.warehouse.client import connect, insert_rows

log = logging.getLogger("rastro.demo")

SEEDED_AT = datetime(2026, 1, 1, tzinfo=UTC)
_MS = int(SEEDED_AT.timestamp() * 1000)
VERSION = 2  # bump to replace the demo rows of running installations

TENANT_ID = stable_uuid7(_MS, "demo-tenant")
MERCHANT_ID = stable_uuid7(_MS, "demo-merchant")
CAMPAIGN_ID = stable_uuid7(_MS, "demo-campaign")
STORE_DOMAIN = "loja-demo.example.com.br"

# (key, display name, segment, country, link code, coupon code or "")
AFFILIATES = [
    ("ana", "Blog da Ana", "content", "BR", "ana-blog", ""),
    ("cupom", "Cupom Certo", "coupon_sites", "BR", "cupom-certo", "CERTO10"),
    ("leo", "Canal do Léo", "influencers", "BR", "canal-leo", "LEO15"),
]


# Console logins: (email, display name, role, affiliate key or "")
USERS = [
    ("admin@loja-demo.example", "Gerente da Loja Demo", "admin", ""),
    ("analista@loja-demo.example", "Analista da Loja Demo", "analyst", ""),
    ("ana@blog-da-ana.example", "Ana (Blog da Ana)", "affiliate", "ana"),
]


def _stamps() -> dict[str, Any]:
    return {"created_at": SEEDED_AT, "updated_at": SEEDED_AT, "version": VERSION}


def demo_api_key(settings: Settings) -> str:
    """The demo tenant's admin key: stable for an installation (derived from its secret), so
    re-seeding keeps it, and unknowable without that secret."""
    digest = hmac.new(
        settings.secret_key.get_secret_value().encode(), b"demo-admin-key", hashlib.sha256
    ).hexdigest()
    return f"{KEY_PREFIX}demo{digest[:36]}"


def demo_password(settings: Settings, email: str) -> str:
    """A demo user's password: stable for an installation, derived from its secret."""
    digest = hmac.new(
        settings.secret_key.get_secret_value().encode(), f"demo-user:{email}".encode(), "sha256"
    ).hexdigest()
    return f"demo-{digest[:12]}"


def seed_demo_users(settings: Settings) -> list[tuple[str, str, str]]:
    """Writes the demo tenant's console users; returns (role, email, password) of each."""
    client = connect(settings, database=settings.clickhouse_database)
    rows, logins = [], []
    for email, name, role, affiliate_key in USERS:
        password = demo_password(settings, email)
        rows.append(
            {
                "tenant_id": TENANT_ID,
                "id": stable_uuid7(_MS, f"demo-user-{email}"),
                "email": email,
                "display_name": name,
                "role": role,
                "affiliate_id": (
                    stable_uuid7(_MS, f"demo-affiliate-{affiliate_key}") if affiliate_key else None
                ),
                "password_hash": hash_password(password),
                "invite_token_hash": "",
                "invited_at": None,
                "locale": "pt-BR",
                "status": "active",
                **_stamps(),
            }
        )
        logins.append((role, email, password))
    insert_rows(client, "users", rows)
    client.close()
    return logins


def seed_demo(settings: Settings) -> str:
    """Writes the demo tenant's configuration; returns its admin API key."""
    client = connect(settings, database=settings.clickhouse_database)
    insert_rows(
        client,
        "tenants",
        [
            {
                "tenant_id": TENANT_ID,
                "name": "Loja Demo",
                "status": "active",
                "default_currency": "BRL",
                "timezone": "America/Sao_Paulo",
                **_stamps(),
            }
        ],
    )
    insert_rows(
        client,
        "merchants",
        [
            {
                "tenant_id": TENANT_ID,
                "id": MERCHANT_ID,
                "name": "Loja Demo",
                "platform": "custom",
                "domains": [STORE_DOMAIN],
                "tracking_domain": "",
                "currency": "BRL",
                "timezone": "",
                "status": "active",
                **_stamps(),
            }
        ],
    )
    insert_rows(
        client,
        "campaigns",
        [
            {
                "tenant_id": TENANT_ID,
                "campaign_id": CAMPAIGN_ID,
                "terms_version": 1,
                "name": "Programa de Afiliados",
                "status": "active",
                "valid_from": SEEDED_AT,
                "valid_to": None,
                "destination_domains": [STORE_DOMAIN],
                "attribution_window_days": 30,
                "click_id_param": "rclid",
                "landing_params": ["via"],
                "consent_policy": "opt_out",
                "attribution_model": "last_click",
                "hold_days": 30,
                "commission_rules": json.dumps(
                    [
                        {"id": "base", "type": "percent", "rate": "0.10", "base": "net"},
                        {
                            "id": "influencers",
                            "type": "percent",
                            "rate": "0.12",
                            "segment": "influencers",
                        },
                    ]
                ),
                "conflict_rules": json.dumps({"coupon": "wins", "self_referral": "exclude"}),
                **_stamps(),
            }
        ],
    )
    affiliates, links = [], []
    for key, name, segment, country, code, coupon in AFFILIATES:
        affiliate_id = stable_uuid7(_MS, f"demo-affiliate-{key}")
        affiliates.append(
            {
                "tenant_id": TENANT_ID,
                "id": affiliate_id,
                "display_name": name,
                "status": "approved",
                "segment": segment,
                "country": country,
                **_stamps(),
            }
        )
        kinds = [("link", code, f"https://{STORE_DOMAIN}/")] + (
            [("coupon", coupon, "")] if coupon else []
        )
        for kind, link_code, destination in kinds:
            links.append(
                {
                    "tenant_id": TENANT_ID,
                    "id": stable_uuid7(_MS, f"demo-{kind}-{link_code}"),
                    "kind": kind,
                    "code": link_code,
                    "affiliate_id": affiliate_id,
                    "campaign_id": CAMPAIGN_ID,
                    "destination_url": destination,
                    "status": "active",
                    **_stamps(),
                }
            )
    insert_rows(client, "affiliates", affiliates)
    insert_rows(client, "links", links)
    key = demo_api_key(settings)
    insert_rows(
        client,
        "api_keys",
        [
            {
                "tenant_id": TENANT_ID,
                "id": stable_uuid7(_MS, "demo-admin-key"),
                "name": "demo admin key",
                "prefix": display_prefix(key),
                "key_hash": hash_api_key(key),
                "scopes": ["admin"],
                "affiliate_id": None,
                "expires_at": None,
                "revoked_at": None,
                **_stamps(),
            }
        ],
    )
    client.close()
    log.info(
        "demo tenant %s seeded: %d affiliates, %d links", TENANT_ID, len(affiliates), len(links)
    )
    return key
