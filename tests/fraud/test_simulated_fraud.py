"""The fraud the simulator generates for these rules, and its labels (fraud.parquet): payout
rings, self-referral from the affiliate's own device with another email, days of bought
clicks and of fake orders; deterministic by seed. No warehouse: journeys are planned and
recorded as `rastro simulate` does, without a driver."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pipelines.simulate.journeys import Click, Journey, Mix, Page, Planner, plan
from pipelines.simulate.run import email_hashes
from pipelines.simulate.truth import TruthRecorder, is_bot
from pipelines.simulate.world import DAY, Keys, World, build_world
from rastro.settings import Settings

END_MS = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
CONVERSIONS = 1200


def generate(
    tmp: Path, seed: int, mix: Mix | None = None, conversions: int = CONVERSIONS
) -> tuple[World, list[Journey], TruthRecorder]:
    settings = Settings(_env_file=None, data_dir=tmp, secret_key="test-secret")
    keys = Keys(settings)
    world = build_world(seed, END_MS - 90 * DAY, END_MS, keys)
    planner = Planner(world, mix or Mix(), keys, seed)
    recorder = TruthRecorder()
    journeys = []
    for n, journey in enumerate(plan(world, planner, conversions)):
        for step in journey.steps:  # what a driver fills in
            if isinstance(step, Click):
                step.click_id = f"k{n}-{id(step)}"
        recorder.record(journey, email_hashes(keys, journey))
        journeys.append(journey)
    recorder.record_roles(world)
    return world, journeys, recorder


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[World, list[Journey], TruthRecorder]:
    return generate(tmp_path_factory.mktemp("simulated-fraud"), seed=5)


def test_roles_and_payout_rings(generated: tuple[World, list[Journey], TruthRecorder]) -> None:
    world, _, recorder = generated
    roles = recorder.fraud_frame().filter(pl.col("subject") == "affiliate")
    for tenant in world.tenants:
        mine = roles.filter(pl.col("tenant_id") == tenant.tenant_id)
        labels = Counter(mine["label"].to_list())
        assert {"click_spam", "cookie_stuffing", "fast_ctit", "click_burst",
                "conversion_burst"} <= set(labels)  # fmt: skip
        assert labels["shared_payout_details"] >= 2
        # Each role is a different affiliate; the ring shares one account, nobody else does.
        single = mine.filter(pl.col("label") != "shared_payout_details")["affiliate_id"]
        assert single.n_unique() == single.len()
        ring = {a.payout_fingerprint for a in tenant.payout_ring}
        assert len(ring) == 1 and "" not in ring
        others = [a.payout_fingerprint for a in tenant.affiliates if a not in tenant.payout_ring]
        assert not ring & set(others)
        assert len({f for f in others if f}) == len([f for f in others if f])
        assert "" in others  # some affiliates have no payout account


def test_self_referral_with_another_email_from_the_affiliates_device(
    generated: tuple[World, list[Journey], TruthRecorder],
) -> None:
    _, journeys, recorder = generated
    orders = recorder.orders_frame()
    other_email = orders.filter(pl.col("scenarios").list.contains("self_referral_other_email"))
    assert other_email.height >= 2
    homes = [j for j in journeys if not j.clicks() and not j.orders()]
    logins = {
        (step.browser.ip, step.browser.ua, step.email_sha256)
        for j in homes
        for step in j.steps
        if isinstance(step, Page) and step.kind == "identify"
    }
    found = 0
    for journey in journeys:
        order = next(iter(journey.orders()), None)
        if order is None or "self_referral_other_email" not in order.scenarios:
            continue
        (referrer,) = {c.link.affiliate for c in journey.clicks() if c.label == "self_referral"}
        # Another email on the order; the affiliate's own only in a login on this device.
        assert order.email_sha256 != referrer.email_sha256
        assert referrer.email_sha256 not in journey.email_sha256s()
        # The affiliate's last click (the journey's last): on the device it logged in from.
        buyer = max(
            (c for c in journey.clicks() if c.label == "self_referral"), key=lambda c: c.ts
        ).browser
        assert (buyer.ip, buyer.ua, referrer.email_sha256) in logins
        found += 1
    assert found == other_email.filter(pl.col("renewal_number") == 0).height
    # The truth credits the affiliate (attribution cannot see it), and labels the order.
    labelled = recorder.fraud_frame().filter(
        (pl.col("label") == "self_referral") & (pl.col("subject") == "order")
    )
    assert set(other_email["order_id"]) <= set(labelled["order_id"])


def test_bursts_of_clicks_and_of_fake_orders(
    generated: tuple[World, list[Journey], TruthRecorder],
) -> None:
    world, journeys, recorder = generated
    orders = recorder.orders_frame()
    # Fake orders are part of --conversions: first payments are exactly that many.
    assert orders.filter(pl.col("renewal_number") == 0).height == CONVERSIONS
    fraud = recorder.fraud_frame()
    for tenant in world.tenants:
        assert tenant.burster is not None and tenant.inflater is not None
        bursts = [
            c.ts // DAY
            for j in journeys
            if j.tenant is tenant
            for c in j.clicks()
            if c.label == "click_burst"
        ]
        assert len(set(bursts)) == Mix().burst_days and len(bursts) >= 60
        assert all(world.start_ms + 30 * DAY <= day * DAY < world.end_ms for day in bursts)
    fakes = fraud.filter(pl.col("label") == "conversion_burst")
    inflaters = {t.inflater.affiliate_id for t in world.tenants if t.inflater is not None}
    assert fakes.height > 0 and set(fakes["affiliate_id"]) <= inflaters
    faked = orders.filter(pl.col("order_id").is_in(fakes["order_id"].to_list()))
    # Plain journeys to the truth: credited to the faker alone.
    for expected in faked["expected"].to_list():
        assert len(expected) == 1 and expected[0]["affiliate_id"] in inflaters


def test_no_click_in_the_two_minutes_before_an_order_but_the_injected_ones(
    tmp_path: Path,
) -> None:
    # Every journey with a repeat click: one would land at checkout now and then.
    _, journeys, _ = generate(tmp_path, seed=3, mix=Mix(repeat_click=1.0), conversions=600)
    repeats = 0
    for journey in journeys:
        repeats += sum(1 for c in journey.clicks() if c.repeat_of is not None)
        for order in journey.orders():
            for click in journey.clicks():
                if order.ts - 120_000 < click.ts <= order.ts and not is_bot(click):
                    assert click.label == "fast_ctit", (order.order_id, click.label)
    assert repeats > 200


def test_fraud_labels_are_deterministic_by_seed(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", seed=7)[2].fraud_frame()
    again = generate(tmp_path / "b", seed=7)[2].fraud_frame()
    other = generate(tmp_path / "c", seed=8)[2].fraud_frame()
    assert first.equals(again) and not first.equals(other)
