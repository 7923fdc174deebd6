"""ingest.enrich: user-agent parsing, bot flags (added, never cleared), referrer host and
paid-traffic markers on click frames (given here as rows)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from ingest import enrich
from ingest.enrich import PAID_CLICK_MARKERS, enrich_clicks, paid_click_markers, referrer_host
from ingest.useragents import AgentCache, parse_agent
from tests.ingest.helpers import enrich_rows as enrich_batch

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36"
)
CHROME_ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15"
)
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/131.0.2903.86"
INSTAGRAM_IN_APP = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 Instagram 345.0.0.0.0 (iPhone15,2; iOS 17_5; en_US)"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SLACK_UNFURL = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
CURL = "curl/8.5.0"


def click(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tenant_id": "t1",
        "ts": 1_767_225_600_000,
        "user_agent": CHROME_WINDOWS,
        "referrer": "",
        "landing_url": "https://shop.example/p?rclid=abc",
        "destination_url": "https://shop.example/p?rclid=abc",
        "is_bot": False,
        "bot_reason": "",
        "is_head": False,
        "is_preview": False,
    }
    row.update(fields)
    return row


@pytest.mark.parametrize(
    ("agent", "browser", "os", "device"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", "desktop"),
        (EDGE_WINDOWS, "Edge", "Windows", "desktop"),
        (FIREFOX_LINUX, "Firefox", "Ubuntu", "desktop"),
        (SAFARI_MAC, "Safari", "Mac OS X", "desktop"),
        (SAFARI_IPHONE, "Mobile Safari", "iOS", "mobile"),
        (INSTAGRAM_IN_APP, "Instagram", "iOS", "mobile"),
        (CHROME_ANDROID_PHONE, "Chrome Mobile", "Android", "mobile"),
        (SAFARI_IPAD, "Mobile Safari", "iOS", "tablet"),
        (CHROME_ANDROID_TABLET, "Chrome", "Android", "tablet"),
        (GOOGLEBOT, "Googlebot", "", "bot"),
        ("", "", "", "unknown"),
    ],
)
def test_parses_browser_os_and_device(agent: str, browser: str, os: str, device: str) -> None:
    [row] = enrich_batch([click(user_agent=agent)])
    assert (row["browser"], row["os"], row["device_type"]) == (browser, os, device)


def test_people_are_not_bots() -> None:
    rows = enrich_batch([click(user_agent=ua) for ua in (CHROME_WINDOWS, INSTAGRAM_IN_APP)])
    assert [(r["is_bot"], r["bot_reason"], r["is_preview"]) for r in rows] == [
        (False, "", False)
    ] * 2


def test_crawlers_are_flagged_with_the_match() -> None:
    googlebot, curl = enrich_batch([click(user_agent=GOOGLEBOT), click(user_agent=CURL)])
    assert googlebot["is_bot"] and googlebot["bot_reason"].startswith("crawler:")
    assert "googlebot" in googlebot["bot_reason"].lower()
    assert curl["is_bot"] and curl["bot_reason"].startswith("crawler:")


def test_preview_fetchers_are_previews_and_bots_like_at_the_edge() -> None:
    [row] = enrich_batch([click(user_agent=SLACK_UNFURL)])
    assert (row["is_bot"], row["is_preview"], row["bot_reason"]) == (
        True,
        True,
        "preview:Slackbot-LinkExpanding",
    )


def test_never_clears_or_rewrites_what_the_edge_flagged() -> None:
    edge_bot = click(user_agent=CHROME_WINDOWS, is_bot=True, bot_reason="ip_list")
    edge_preview = click(
        user_agent=CHROME_WINDOWS, is_bot=True, is_preview=True, bot_reason="preview:Facebot"
    )
    edge_head = click(user_agent=CHROME_WINDOWS, is_head=True)
    empty = click(user_agent="", is_bot=True, bot_reason="empty_user_agent")
    rows = enrich_batch([edge_bot, edge_preview, edge_head, empty])
    assert [(r["is_bot"], r["is_preview"], r["is_head"], r["bot_reason"]) for r in rows] == [
        (True, False, False, "ip_list"),
        (True, True, False, "preview:Facebot"),
        (True, False, True, "head_request"),
        (True, False, False, "empty_user_agent"),
    ]
    # The browser is still parsed for an edge-flagged click.
    assert rows[0]["browser"] == "Chrome"


def test_a_bot_the_edge_missed_is_added() -> None:
    [row] = enrich_batch([click(user_agent=GOOGLEBOT, is_bot=False, bot_reason="")])
    assert row["is_bot"] is True and row["device_type"] == "bot"


@pytest.mark.parametrize(
    ("referrer", "host"),
    [
        ("", ""),
        ("https://WWW.Instagram.com/p/abc?x=1", "www.instagram.com"),
        ("http://blog.example.com:8080/post", "blog.example.com"),
        ("https://user:pw@Example.org./", "example.org"),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("https://[2001:DB8::1]:443/x", "2001:db8::1"),
        ("example.net/page", "example.net"),
        ("https://[broken", ""),
        ("not a url", "not a url"),
    ],
)
def test_referrer_host(referrer: str, host: str) -> None:
    if referrer == "not a url":
        # Garbage in: whatever comes out is lowercase and has no port or path.
        assert referrer_host(referrer) == referrer_host(referrer).lower()
        return
    assert referrer_host(referrer) == host
    [row] = enrich_batch([click(referrer=referrer)])
    assert row["referrer_host"] == host


@pytest.mark.parametrize(
    ("url", "markers"),
    [
        ("https://shop.example/p", []),
        ("https://shop.example/p?rclid=abc&utm_source=x", []),
        ("https://shop.example/p?gclid=Cj0K&rclid=abc", ["gclid"]),
        (
            "https://shop.example/p?rclid=1&msclkid=a&fbclid=b&gclid=c",
            ["fbclid", "gclid", "msclkid"],
        ),
        (
            "https://shop.example/p?gad_source=1&gbraid=x&wbraid=y",
            ["gad_source", "gbraid", "wbraid"],
        ),
        (
            "https://shop.example/p?ttclid=1;twclid=2&li_fat_id=3&dclid=4",
            ["dclid", "li_fat_id", "ttclid", "twclid"],
        ),
        ("https://shop.example/p?gclid&x=1", ["gclid"]),  # present without a value
        ("https://shop.example/p?gclid=1&gclid=2", ["gclid"]),
        ("https://shop.example/p?xgclid=1&gclid_old=2&utm=gclid", []),  # not the key itself
        ("https://shop.example/p?a=1#gclid=2", []),  # in the fragment, not the query
        ("https://shop.example/p/gclid=1", []),  # in the path
    ],
)
def test_paid_click_markers(url: str, markers: list[str]) -> None:
    assert paid_click_markers(url) == markers
    [row] = enrich_batch([click(landing_url=url)])
    assert row["paid_click_markers"] == markers


def test_markers_fall_back_to_the_destination_when_no_landing_url() -> None:
    [row] = enrich_batch([click(landing_url="", destination_url="https://s.example/?fbclid=1")])
    assert row["paid_click_markers"] == ["fbclid"]


def test_marker_list_is_the_documented_one() -> None:
    assert sorted(PAID_CLICK_MARKERS) == list(PAID_CLICK_MARKERS)
    assert {"gclid", "gad_source", "fbclid", "msclkid", "ttclid", "li_fat_id", "twclid"} <= set(
        PAID_CLICK_MARKERS
    )


def test_keeps_the_rows_their_order_and_the_other_columns() -> None:
    agents = (GOOGLEBOT, CHROME_WINDOWS, SAFARI_IPHONE, CHROME_WINDOWS, GOOGLEBOT)
    rows = [click(user_agent=ua, event_id=f"e{i}") for i, ua in enumerate(agents)]
    out = enrich_batch(rows)
    assert [r["event_id"] for r in out] == [f"e{i}" for i in range(5)]
    assert [r["browser"] for r in out] == [
        "Googlebot",
        "Chrome",
        "Mobile Safari",
        "Chrome",
        "Googlebot",
    ]
    assert all(out[i]["ts"] == rows[i]["ts"] for i in range(5))  # other columns ride along
    empty = pl.DataFrame(schema={"user_agent": pl.String})
    assert enrich_clicks(empty).is_empty()


def test_user_agents_are_parsed_once_and_cached() -> None:
    agent = CHROME_WINDOWS + " rastro-cache-test"
    before = enrich.agents.misses
    enrich_batch([click(user_agent=agent) for _ in range(50)])
    enrich_batch([click(user_agent=agent) for _ in range(50)])
    assert enrich.agents.misses == before + 1
    assert enrich.agents.data[agent] == parse_agent(agent)


def test_agent_cache_is_a_bounded_lru() -> None:
    cache = AgentCache(max_entries=2)
    cache.get(CHROME_WINDOWS)
    cache.get(SAFARI_IPHONE)
    cache.get(CHROME_WINDOWS)  # now the most recently used
    cache.get(FIREFOX_LINUX)  # evicts SAFARI_IPHONE, the least recently used
    assert list(cache.data) == [CHROME_WINDOWS, FIREFOX_LINUX]
    assert (cache.hits, cache.misses) == (1, 3)
