"""Bot classification against a maintained public list: crawlerdetect's own test fixtures
(real crawler and real browser user agents, tests/ingest/fixtures/README.md). Prints the
detection rate (crawlers flagged / crawlers) and the false-positive rate (browsers flagged /
browsers) of `ingest.enrich` and holds them to floors."""

from __future__ import annotations

from pathlib import Path

from ingest.useragents import is_uap_spider
from tests.ingest.helpers import enrich_rows

FIXTURES = Path(__file__).parent / "fixtures"


def agents(name: str) -> list[str]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def flagged(user_agents: list[str]) -> list[str]:
    rows = enrich_rows([{"user_agent": ua} for ua in user_agents])
    return [row["user_agent"] for row in rows if row["is_bot"]]


def test_detection_and_false_positive_rates() -> None:
    crawlers = agents("crawlerdetect_crawlers.txt")
    browsers = agents("crawlerdetect_devices_sample.txt")
    assert len(crawlers) > 3000 and len(browsers) > 8000

    caught = flagged(crawlers)
    false_positives = flagged(browsers)
    detection = len(caught) / len(crawlers)
    false_positive_rate = len(false_positives) / len(browsers)
    print(
        f"\nbot detection {len(caught)}/{len(crawlers)} = {detection:.2%}; "
        f"false positives {len(false_positives)}/{len(browsers)} = {false_positive_rate:.3%}"
    )
    # For scale: uap-core's own spider rules alone (a second, independent list).
    spiders = sum(map(is_uap_spider, crawlers))
    spider_fp = sum(map(is_uap_spider, browsers))
    print(
        f"uap-core spider rules alone: detection {spiders / len(crawlers):.2%}, "
        f"false positives {spider_fp / len(browsers):.3%}"
    )
    for agent in false_positives[:10]:
        print("  false positive:", agent)
    assert detection >= 0.95
    assert false_positive_rate <= 0.01


def test_bots_get_the_bot_device_type_and_a_reason() -> None:
    rows = enrich_rows([{"user_agent": ua} for ua in agents("crawlerdetect_crawlers.txt")[:200]])
    bots = [row for row in rows if row["is_bot"]]
    assert bots
    assert all(row["device_type"] == "bot" for row in bots)
    assert all(row["bot_reason"].startswith(("crawler:", "preview:")) for row in bots)
