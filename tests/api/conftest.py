"""Fixtures for the API: a migrated database shared by the API tests, settings pointing at
it, the ASGI app (in-process, through starlette's TestClient), and fresh tenants (tests are
isolated by tenant, as the product is)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api import campaigns
from api.affiliates import create_affiliate
from api.campaigns import CampaignTerms
from api.main import create_app
from api.state import EdgeState
from api.store import ConfigStore, Principal
from rastro.settings import Settings
from tests.conftest import client_for, migrated_database
from tests.endpoint import free_port


@pytest.fixture(scope="session")
def api_database(warehouse_url: str) -> Iterator[str]:
    with migrated_database(warehouse_url, "rastro_api") as name:
        yield name


@pytest.fixture
def settings(warehouse_url: str, api_database: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        clickhouse_url=warehouse_url,
        clickhouse_database=api_database,
        data_dir=tmp_path / "state",
        public_url="http://testserver",
        fallback_url="https://fallback.example/unavailable",
        secret_key="test-secret",
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[TestClient]:
    """The whole ASGI app (the raw redirect path included). Redirects are not followed."""
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield client


@dataclass
class TenantFixture:
    tenant_id: str
    admin_key: str
    affiliate_id: str
    campaign_id: str
    domain: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


def make_tenant(
    settings: Settings, domain: str = "shop.example.com.br", consent_policy: str = "opt_out"
) -> TenantFixture:
    store = ConfigStore(settings)
    tenant, key = store.create_tenant(f"Loja {uuid.uuid4().hex[:6]}")
    config = store.for_tenant(tenant.tenant_id)
    config.create_merchant("Loja", [domain])
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="test-setup", scopes=["admin"])
    state = EdgeState(settings)
    affiliate = create_affiliate(config, state, setup, "Blog da Ana", "content", "BR")
    terms = CampaignTerms(
        name="Programa", destination_domains=[domain], consent_policy=consent_policy
    )
    campaign = campaigns.create(state, config, setup, terms)
    return TenantFixture(tenant.tenant_id, key, affiliate.id, campaign.campaign_id, domain)


@pytest.fixture
def tenant(settings: Settings) -> TenantFixture:
    return make_tenant(settings)


@pytest.fixture
def other_tenant(settings: Settings) -> TenantFixture:
    return make_tenant(settings, domain="other-shop.example.com")


@contextmanager
def running_api(
    settings: Settings, workers: int = 1
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`rastro api` as a real server process (its own process group: a test may kill -9 it
    whole), ready to serve; stopped afterwards if the test did not."""
    port = free_port()
    env = {
        **os.environ,
        "RASTRO_CLICKHOUSE_URL": str(settings.clickhouse_url),
        "RASTRO_CLICKHOUSE_DATABASE": settings.clickhouse_database,
        "RASTRO_DATA_DIR": str(settings.data_dir),
        "RASTRO_SECRET_KEY": settings.secret_key.get_secret_value(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "rastro.cli", "api", "--port", str(port), "--workers", str(workers)],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the API exited before it was ready"
            assert time.monotonic() < deadline, "the API did not start within 60 s"
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


@dataclass(frozen=True)
class BuiltWarehouse:
    """A database with simulated traffic already ingested and `dbt build` run: the marts
    (fct_attributions, fct_commissions, fct_ledger_entries, ...) hold real rows."""

    settings: Settings
    tenant_ids: list[str]


def build_database(
    warehouse_url: str,
    state: Path,
    prefix: str,
    *,
    seed: int = 7,
    conversions: int = 120,
    up_to_now: bool = False,
    fraud: bool = False,
) -> Iterator[BuiltWarehouse]:
    """A database of its own with simulated traffic ingested and built (~25 s). With
    `up_to_now`, conversions run up to an hour ago, so some commissions are still inside
    their hold period; with `fraud`, the fraud batch has flagged (and held) what it finds."""
    from pipelines.fraud import detect, record
    from pipelines.simulate import Options, ingest_and_build, simulate

    with migrated_database(warehouse_url, prefix) as database:
        settings = Settings(
            _env_file=None,
            clickhouse_url=warehouse_url,
            clickhouse_database=database,
            data_dir=state / "state",
            public_url="http://testserver",
            secret_key="test-secret",
        )
        options = Options(seed=seed, conversions=conversions, out=state / "truth")
        if up_to_now:
            options = replace(options, end=datetime.now(UTC) - timedelta(hours=1), days=75)
        summary = simulate(settings, options)
        build = ingest_and_build(settings)
        assert build.returncode == 0, build.output[-20_000:]
        if fraud:
            client = client_for(warehouse_url, database=database)
            record(client, database, detect(client, database), "test-run")
            client.close()
        yield BuiltWarehouse(settings, summary.tenants)


@pytest.fixture(scope="session")
def built_warehouse(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltWarehouse]:
    """Read-only for the tests that use it: tests that write build a database of their own."""
    yield from build_database(warehouse_url, tmp_path_factory.mktemp("built"), "rastro_api_built")
