"""Generating traffic in log mode: records that decode, determinism, the scenario mix, and
the promise the truth rests on: every true click of a buyer can be joined to the order by the
identity rules of docs/attribution.md (section 1), and strangers are never joined."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from api.visitors import classify
from ingest.enrich import agents as agent_cache
from pipelines.simulate import Mix, Options, agents, simulate
from pipelines.simulate.journeys import COOKIE_LOST, Journey, Planner, plan
from pipelines.simulate.run import email_hashes
from pipelines.simulate.to_log import LogDriver
from pipelines.simulate.truth import TruthRecorder, cookie_lost_share
from pipelines.simulate.world import DAY, Keys, World, build_world
from rastro import contracts
from rastro.eventlog import LogReader, LogWriter, Offset
from rastro.schema.migrate import migrate
from tests.conftest import client_for
from tests.simulate.helpers import assert_recoverable, make_settings, read_log

END = datetime(2026, 6, 1, tzinfo=UTC)
END_MS = int(END.timestamp() * 1000)


def world_and_journeys(
    tmp: Path, conversions: int, mix: Mix | None = None, seed: int = 5
) -> tuple[World, list[Journey], TruthRecorder]:
    """Journeys driven into a log under `tmp` (no warehouse needed), kept for inspection."""
    settings = make_settings(tmp)
    keys = Keys(settings)
    world = build_world(seed, END_MS - 90 * DAY, END_MS, keys)
    planner = Planner(world, mix or Mix(), keys, seed)
    recorder = TruthRecorder()
    journeys = []
    with LogWriter(settings.event_log_dir) as writer:
        driver = LogDriver(writer, seed)
        for journey in plan(world, planner, conversions):
            emails = email_hashes(keys, journey)
            driver.drive(journey, emails)
            recorder.record(journey, emails)
            journeys.append(journey)
        driver.flush()
    return world, journeys, recorder


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Journey], TruthRecorder]:
    tmp = tmp_path_factory.mktemp("generated")
    _, journeys, recorder = world_and_journeys(tmp, 800)
    return tmp, journeys, recorder


def test_every_true_click_joins_its_order_and_strangers_never_join(
    generated: tuple[Path, list[Journey], TruthRecorder],
) -> None:
    tmp, journeys, _ = generated
    assert assert_recoverable(read_log(tmp / "eventlog"), journeys) > 500


def test_records_decode_and_match_the_truth(
    generated: tuple[Path, list[Journey], TruthRecorder],
) -> None:
    tmp, _, recorder = generated
    events = read_log(tmp / "eventlog")
    kinds = Counter(type(e).__name__ for e in events)
    assert set(kinds) == {"Click", "PageEvent", "Conversion", "OrderUpdate", "IdentityLink"}
    orders = recorder.orders_frame()
    clicks = recorder.clicks_frame()
    assert kinds["Conversion"] == orders.height
    assert {e.click_id for e in events if isinstance(e, contracts.Click)} == set(clicks["click_id"])
    # The bots of the truth are the edge's bots.
    flagged = {
        e.click_id for e in events if isinstance(e, contracts.Click) and (e.is_bot or e.is_head)
    }
    assert flagged == set(clicks.filter(pl.col("is_bot"))["click_id"])
    assert kinds["Click"] > clicks.height  # repeat clicks reuse their click id


def test_scenarios_and_labels_are_all_there(
    generated: tuple[Path, list[Journey], TruthRecorder],
) -> None:
    _, _, recorder = generated
    orders = recorder.orders_frame()
    scenarios = set(orders["scenarios"].explode().to_list())
    for name in (
        "direct", "cookie_lost_url", "js_cookie_capped", "tag_blocked", "private_window",
        "cross_device_login", "cross_device_email", "multi_affiliate", "coupon_only",
        "coupon_and_click", "subscription", "renewal", "refund_full", "refund_partial",
        "cancellation", "paid_hijack", "bot", "organic", "self_referral", "outside_window",
        "click_spam", "cookie_stuffing",
    ):  # fmt: skip
        assert name in scenarios, name
    labels = set(recorder.clicks_frame()["label"].to_list())
    assert {"click_spam", "cookie_stuffing", "paid_hijack", "self_referral"} <= labels
    # Organic orders and bots' orders are never credited; a self-referral never to the buyer.
    uncredited = orders.filter(pl.col("scenario").is_in(["organic", "bot"]))
    assert uncredited["expected"].list.len().max() == 0
    # A direct journey is credited unless a rule excludes every touch it had.
    excluding = ["self_referral", "paid_hijack", "outside_window", "affiliate_inactive"]
    plain = orders.filter(
        (pl.col("scenario") == "direct")
        & ~pl.col("scenarios").list.eval(pl.element().is_in(excluding)).list.any()
    )
    assert plain.height > 100 and plain["expected"].list.len().min() == 1
    models = set(orders["payable_model"].to_list())
    assert {"last_click", "first_click", "linear", "time_decay", "position_based"} <= models


@pytest.mark.parametrize("share", [0.3, 0.6])
def test_cookie_lost_share_is_honoured(tmp_path: Path, share: float) -> None:
    _, _, recorder = world_and_journeys(tmp_path, 1500, Mix(cookie_lost_share=share), seed=9)
    orders = recorder.orders_frame()
    assert cookie_lost_share(orders) == pytest.approx(share, abs=0.04)
    lost = orders.filter(pl.col("cookie_lost") & (pl.col("renewal_number") == 0))
    assert set(lost["scenario"].to_list()) == set(COOKIE_LOST)


def test_user_agents_are_what_the_edge_and_ingest_say() -> None:
    for ua in agents.PEOPLE:
        assert not classify(ua).is_bot and not agent_cache.get(ua).is_bot, ua
    for ua in agents.BOTS:
        assert classify(ua).is_bot and agent_cache.get(ua).is_bot, ua
    for ua in agents.PREVIEWS:
        assert classify(ua).is_preview, ua


# -- simulate(): the configuration rows, the log, the truth files, determinism --------------------


@pytest.fixture
def migrated(warehouse_url: str, database: str) -> Iterator[Any]:
    client = client_for(warehouse_url, database=database)
    migrate(client, database)
    yield client
    client.close()


def run(tmp: Path, warehouse_url: str, database: str, seed: int) -> tuple[Path, list[bytes]]:
    settings = make_settings(tmp, warehouse_url, database)
    summary = simulate(settings, Options(seed=seed, conversions=150, end=END, out=tmp / "truth"))
    assert summary.orders >= 150
    reader = LogReader(settings.event_log_dir)
    payloads = []
    for partition in reader.partitions():
        payloads += [r.payload for r in reader.read(partition, Offset.start(), max_records=10**6)]
    return summary.out, payloads


def test_simulate_is_deterministic_by_seed(
    tmp_path: Path, warehouse_url: str, database: str, migrated: Any
) -> None:
    out_a, log_a = run(tmp_path / "a", warehouse_url, database, seed=3)
    out_b, log_b = run(tmp_path / "b", warehouse_url, database, seed=3)
    out_c, log_c = run(tmp_path / "c", warehouse_url, database, seed=4)
    assert log_a == log_b and log_a != log_c
    for name in ("orders.parquet", "clicks.parquet"):
        a, b, c = (pl.read_parquet(out / name) for out in (out_a, out_b, out_c))
        assert a.equals(b) and not a.equals(c)
    # The configuration went to the warehouse, once per id (the rows of run b replaced a's).
    counts = dict(
        migrated.query(
            "SELECT 'campaigns', count() FROM campaigns FINAL UNION ALL "
            "SELECT 'links', countIf(kind = 'coupon') FROM links FINAL UNION ALL "
            "SELECT 'affiliates', countIf(email_hash != '') FROM affiliates FINAL"
        ).result_rows
    )
    # Two worlds (seeds 3 and 4): 5 campaigns and 6 terms each, coupons, affiliate emails.
    assert counts["campaigns"] == 12
    assert counts["links"] > 10 and counts["affiliates"] == 200
    terms = migrated.query(
        "SELECT attribution_model, attribution_window_days, conflict_rules FROM campaigns FINAL "
        "WHERE name = 'Programa Geral' ORDER BY tenant_id, terms_version LIMIT 2"
    ).result_rows
    assert [(m, w) for m, w, _ in terms] == [("last_click", 30), ("linear", 14)]
    assert '"coupon": "wins"' in terms[0][2]
