"""`rastro tenant create NAME` prints a tenant id and a working admin key, once."""

from __future__ import annotations

import os
import subprocess
import sys

from starlette.testclient import TestClient

from api.store import ConfigStore
from rastro.settings import Settings


def test_tenant_create_prints_a_working_admin_key(settings: Settings, app: TestClient) -> None:
    env = {
        **os.environ,
        "RASTRO_CLICKHOUSE_URL": str(settings.clickhouse_url),
        "RASTRO_CLICKHOUSE_DATABASE": settings.clickhouse_database,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rastro.cli",
            "tenant",
            "create",
            "Loja Nova",
            "--domain",
            "loja-nova.example",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    tenant_id, key = lines["tenant id"].strip(), lines["admin API key"].strip()
    assert key.startswith("rk_") and len(key) == 43

    auth = {"Authorization": f"Bearer {key}"}
    campaign = app.post(
        "/v1/campaigns",
        headers=auth,
        json={"name": "Programa", "destination_domains": ["loja-nova.example"]},
    )
    assert campaign.status_code == 201, campaign.text
    assert app.get("/v1/links", headers=auth).json() == {"items": [], "next_after": None}
    rows = app.get("/v1/affiliates", headers=auth)
    assert rows.status_code == 200 and rows.json() == {"items": [], "next_after": None}
    # The tenant exists; the key is stored only as its hash, nowhere in clear.
    store = ConfigStore(settings)
    assert store.for_tenant(tenant_id).tenant().name == "Loja Nova"
    stored = store.client.command(
        "SELECT count() FROM api_keys WHERE key_hash = {k:String} OR prefix = {k:String}",
        parameters={"k": key},
    )
    assert stored == 0
