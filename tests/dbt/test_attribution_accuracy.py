"""The whole attribution path at small volume: simulated traffic (with its ground truth)
into the event log, the ingest job into the warehouse, `dbt build` of Rastro's project (every
model, unit test and data test), then the payable attribution scored against the truth.
`rastro simulate --score` does the same at any volume (docs/simulator.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.simulate import Options, format_score, ingest_and_build, score, simulate
from rastro.schema.migrate import migrate
from rastro.settings import Settings

CONVERSIONS = 400
ACCURACY_GOAL = 0.995  # issue 5's goal; the seed's threshold is 0.98


@pytest.mark.slow
def test_simulated_traffic_is_attributed_as_the_truth_says(
    tmp_path: Path, warehouse_url: str, database: str, client: Any
) -> None:
    migrate(client, database)
    settings = Settings(
        data_dir=tmp_path / "state", clickhouse_url=warehouse_url, clickhouse_database=database
    )
    summary = simulate(settings, Options(seed=11, conversions=CONVERSIONS, out=tmp_path / "truth"))
    assert summary.cookie_lost_share >= 0.3  # the mix: 30% of journeys lose the cookie

    build = ingest_and_build(settings)
    assert build.returncode == 0, build.output[-20_000:]
    assert "ERROR=0" in build.summary and "SKIP=0" in build.summary, build.summary

    result = score(client, database, summary.out)
    assert result.total == summary.orders
    assert result.accuracy >= ACCURACY_GOAL, format_score(result)
    # Each way a journey reaches its order was exercised, not just the easy ones.
    scored = {group.name for group in result.scenarios if group.count > 0}
    assert {
        "cookie_lost_url",
        "js_cookie_capped",
        "tag_blocked",
        "private_window",
        "cross_device_login",
        "cross_device_email",
        "coupon_only",
        "renewal",
    } <= scored, scored
