"""Traffic for the demo tenant `rastro up` seeds (rastro/demo.py): a month of visitors,
clicks on its three affiliates' links, coupons and orders, written to the event log, so that
a fresh installation has something to show."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pipelines.simulate.journeys import Mix, Planner
from pipelines.simulate.run import Summary, drive, summarize
from pipelines.simulate.to_log import LogDriver
from pipelines.simulate.truth import TruthRecorder
from pipelines.simulate.world import (
    DAY,
    Affiliate,
    Campaign,
    ConflictRules,
    Keys,
    Link,
    Tenant,
    Terms,
    World,
)
from rastro import demo
from rastro.eventlog import LogWriter
from rastro.ids import stable_uuid7
from rastro.settings import Settings

log = logging.getLogger("rastro.simulate")

DEMO_DAYS = 30
_POPULARITY = {"ana": 1.0, "cupom": 0.6, "leo": 0.8}


def demo_world(tenant_id: str, start_ms: int, end_ms: int) -> World:
    """The demo tenant as rastro/demo.py seeds it: its ids, its campaign's terms (last click,
    30 days, the default conflict rules), its affiliates, links and coupons."""
    anchor = int(demo.SEEDED_AT.timestamp() * 1000)
    campaign = Campaign(
        campaign_id=demo.CAMPAIGN_ID,
        name="Programa de Afiliados",
        terms=(Terms(1, anchor, None, "last_click", 30, conflict=ConflictRules()),),
        destination=f"https://{demo.STORE_DOMAIN}/",
    )
    affiliates, links, coupons = [], {}, {}
    for key, name, segment, _country, code, coupon in demo.AFFILIATES:
        affiliate = Affiliate(
            affiliate_id=stable_uuid7(anchor, f"demo-affiliate-{key}"),
            name=name,
            segment=segment,
            status="approved",
            email_sha256="",  # the demo has no affiliate emails: no self-referral
            email_hash="",
            weight=_POPULARITY.get(key, 0.5),
        )
        affiliates.append(affiliate)
        links[affiliate.affiliate_id, campaign.campaign_id] = Link(
            stable_uuid7(anchor, f"demo-link-{code}"), "link", code, affiliate, campaign
        )
        if coupon:
            coupons[affiliate.affiliate_id] = Link(
                stable_uuid7(anchor, f"demo-coupon-{coupon}"), "coupon", coupon, affiliate, campaign
            )
    tenant = Tenant(
        tenant_id=tenant_id,
        slug="demo",
        name="Loja Demo",
        currency="BRL",
        domain=demo.STORE_DOMAIN,
        merchant_id=demo.MERCHANT_ID,
        campaigns=[campaign],
        affiliates=affiliates,
        links=links,
        coupons=coupons,
        categories=("eletronicos", "casa", "moda"),
        # The coupon site injects last-second clicks: the demo has fraud flags to review.
        poacher=next(a for a in affiliates if a.name == "Cupom Certo"),
    )
    return World(seed=0, start_ms=start_ms, end_ms=end_ms, tenants=[tenant])


def seed_demo_traffic(
    settings: Settings,
    tenant_id: str = demo.TENANT_ID,
    *,
    journeys: int = 2000,
    seed: int = 2026,
    force: bool = False,
) -> Summary | None:
    """About `journeys` visitor journeys (a fifth of them buy) of the last 30 days for the
    demo tenant, into the event log; the truth goes to <data dir>/simulate/demo.

    Once per data directory: a marker file remembers it was done (the times are relative to
    now, so a second run would add a second month of orders, not replay the first); `force`
    seeds again. Returns None when skipped."""
    out = settings.data_dir / "simulate" / "demo"
    marker = out / "seeded.json"
    if marker.exists() and not force:
        log.info("demo traffic already seeded (%s)", marker)
        return None
    began = time.perf_counter()
    mix = Mix()
    conversions = max(1, round(journeys / (1 + mix.visitors_per_conversion)))
    end_ms = time.time_ns() // 1_000_000
    world = demo_world(tenant_id, end_ms - DEMO_DAYS * DAY, end_ms)
    keys = Keys(settings)
    recorder = TruthRecorder()
    with LogWriter(settings.event_log_dir) as writer:
        driver = LogDriver(writer, seed)
        drive(world, Planner(world, mix, keys, seed), conversions, driver, keys, recorder)
    recorder.write(out)
    summary = summarize(out, world, recorder, dict(driver.counts), began)
    _write_marker(marker, seed, journeys, end_ms)
    log.info("demo traffic seeded: %s", "; ".join(summary.lines()))
    return summary


def _write_marker(marker: Path, seed: int, journeys: int, end_ms: int) -> None:
    marker.write_text(json.dumps({"seed": seed, "journeys": journeys, "end_ms": end_ms}) + "\n")
