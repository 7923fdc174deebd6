"""The demo tenant's traffic (`seed_demo_traffic`, for `rastro up`) and `rastro simulate`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.simulate import seed_demo_traffic
from pipelines.simulate.demo import demo_world
from rastro import contracts, demo
from rastro.schema.migrate import migrate
from tests.simulate.helpers import make_settings, read_log


def test_demo_world_is_the_seeded_demo(
    tmp_path: Path, warehouse_url: str, database: str, client: Any
) -> None:
    """The simulator's picture of the demo tenant has the ids rastro/demo.py writes."""
    migrate(client, database)
    demo.seed_demo(make_settings(tmp_path, warehouse_url, database))
    rows = client.query(
        "SELECT id, kind, upper(code), affiliate_id, campaign_id FROM links FINAL"
    ).result_rows
    tenant = demo_world(demo.TENANT_ID, 0, 1).tenants[0]
    simulated = [
        (link.link_id, link.kind, link.code.upper(), link.affiliate.affiliate_id,
         link.campaign.campaign_id)
        for link in [*tenant.links.values(), *tenant.coupons.values()]
    ]  # fmt: skip
    assert sorted(rows) == sorted(simulated)
    affiliates = client.query("SELECT id, segment FROM affiliates FINAL").result_rows
    assert sorted(affiliates) == sorted((a.affiliate_id, a.segment) for a in tenant.affiliates)


def test_seed_demo_traffic_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    summary = seed_demo_traffic(settings, journeys=500)
    assert summary is not None and summary.orders >= 100
    events = read_log(settings.event_log_dir)
    assert {e.tenant_id for e in events} == {demo.TENANT_ID}
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["Conversion"] == summary.orders and kinds["Click"] > 300
    codes = {e.link_code for e in events if isinstance(e, contracts.Click)}
    assert codes <= {code for _, _, _, _, code, _ in demo.AFFILIATES}
    coupons = {c for e in events if isinstance(e, contracts.Conversion) for c in e.coupon_codes}
    assert {"CERTO10", "LEO15"} & {c.upper() for c in coupons}
    # Recent: the last 30 days.
    newest = max(e.ts for e in events if isinstance(e, contracts.Conversion))
    oldest = min(e.ts for e in events if isinstance(e, contracts.Conversion))
    assert newest - oldest > 20 * 86_400_000
    # Seeded once per data directory.
    assert seed_demo_traffic(settings, journeys=500) is None
    assert len(read_log(settings.event_log_dir)) == len(events)
    truth = pl.read_parquet(summary.out / "orders.parquet")
    assert truth.height == summary.orders


def test_rastro_simulate_command(
    tmp_path: Path, warehouse_url: str, database: str, client: Any
) -> None:
    migrate(client, database)
    env = {
        **os.environ,
        "RASTRO_CLICKHOUSE_URL": warehouse_url,
        "RASTRO_CLICKHOUSE_DATABASE": database,
        "RASTRO_DATA_DIR": str(tmp_path / "state"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "rastro.cli", "simulate", "--conversions", "40", "--seed", "7",
         "--cookie-lost-share", "0.5", "--out", str(tmp_path / "truth")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "simulated" in result.stdout and "cookie lost" in result.stdout
    orders = pl.read_parquet(tmp_path / "truth" / "orders.parquet")
    assert orders.filter(pl.col("renewal_number") == 0).height == 40
    landed = client.query("SELECT count() FROM tenants FINAL").result_rows[0][0]
    assert landed == 4
    assert list((tmp_path / "state" / "eventlog").iterdir())
    bad = subprocess.run(
        [sys.executable, "-m", "rastro.cli", "simulate", "--cookie-lost-share", "1.5"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "between 0 and 1" in bad.stderr
