"""HTTP mode against a real API process (`rastro api`): the redirect's click ids, the tag's
events and the orders land in the log the API writes, and the journeys as executed are still
joinable by the identity rules."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from api.store import ConfigStore
from pipelines.simulate import Mix, Options, simulate
from pipelines.simulate.journeys import Journey, Planner, plan
from pipelines.simulate.run import email_hashes
from pipelines.simulate.to_http import HttpDriver
from pipelines.simulate.truth import TruthRecorder
from pipelines.simulate.world import DAY, Keys, build_world, write_config
from rastro import contracts
from rastro.schema.migrate import migrate
from rastro.settings import Settings
from tests.api.conftest import running_api
from tests.conftest import client_for
from tests.simulate.helpers import assert_recoverable, make_settings, read_log


@pytest.fixture(scope="module")
def api(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str]]:
    """A migrated database and the API serving it, believing X-Forwarded-For from 127.0.0.1
    (the driver gives every browser an address of its own)."""
    database = f"test_sim_{uuid.uuid4().hex[:10]}"
    admin = client_for(warehouse_url)
    migrate(admin, database)
    settings = make_settings(tmp_path_factory.mktemp("api") / "state", warehouse_url, database)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RASTRO_TRUSTED_PROXIES", "127.0.0.1")
        with running_api(settings) as (_, port):
            yield settings, f"http://127.0.0.1:{port}"
    admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    admin.close()


def test_simulate_through_the_api(api: tuple[Settings, str], tmp_path: Path) -> None:
    settings, url = api
    summary = simulate(
        settings, Options(seed=21, conversions=6, to="http", api_url=url, out=tmp_path)
    )
    events = read_log(settings.event_log_dir)
    redirected = {
        e.click_id for e in events if isinstance(e, contracts.Click) and e.source == "redirect"
    }
    clicks = pl.read_parquet(tmp_path / "clicks.parquet")
    assert clicks.height == summary.clicks > 10
    assert set(clicks["click_id"]) <= redirected
    orders = pl.read_parquet(tmp_path / "orders.parquet")
    converted = {e.order_id for e in events if isinstance(e, contracts.Conversion)}
    assert set(orders["order_id"]) <= converted and orders.height == summary.orders >= 6
    # The edge saw each browser's own address, not the proxy's.
    addresses = {e.ip_hash for e in events if isinstance(e, contracts.PageEvent)}
    assert len(addresses) > 10


def test_executed_journeys_are_joinable_and_credited(api: tuple[Settings, str]) -> None:
    settings, url = api
    keys = Keys(settings)
    now = time.time_ns() // 1_000_000
    world = build_world(22, now - 90 * DAY, now, keys)
    store = ConfigStore(settings)
    write_config(store.client, settings.clickhouse_database, world)
    api_keys = {
        t.tenant_id: store.for_tenant(t.tenant_id).create_api_key("sim", ["ingest"])
        for t in world.tenants
    }
    # Every path, coupons and fraud more often than by default: a few journeys see them all.
    mix = Mix(cookie_lost_share=0.5, coupon_and_click=0.3, click_spam=0.3, cookie_stuffing=0.3)
    planner = Planner(world, mix, keys, 22)
    planner.order_prefix = f"H{now}"
    driver = HttpDriver(url, api_keys)
    recorder = TruthRecorder()
    journeys: list[Journey] = []
    try:
        for journey in plan(world, planner, 16):
            emails = email_hashes(keys, journey)
            driver.drive(journey, emails)
            recorder.record(journey, emails)
            journeys.append(journey)
    finally:
        driver.close()
    events = [e for e in read_log(settings.event_log_dir) if e.tenant_id in api_keys]
    assert assert_recoverable(events, journeys) > 5
    # The server keyed buyers' emails as the simulator keys affiliates' (self-referral).
    for e in events:
        if isinstance(e, contracts.Conversion) and e.email_hash:
            order = next(o for j in journeys for o in j.orders() if o.order_id == e.order_id)
            assert e.email_hash == keys.email_hash(e.tenant_id, order.email_sha256)
    # The truth of the executed journeys credits the clicks that reached the API.
    orders = recorder.orders_frame()
    assert orders.filter(pl.col("expected").list.len() > 0).height > 5
