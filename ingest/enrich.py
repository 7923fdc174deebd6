"""Click enrichment: what the edge could not afford to compute on the redirect's hot path.

`enrich_batch` fills, per click row (a dict keyed by `rastro.clicks` column names):
- `browser`, `os`, `device_type` from the user agent (ingest.useragents: uap-core rules);
- `is_bot`, `bot_reason`, `is_preview` from the same classifier the edge uses, plus uap-core's
  spiders. Ingest only ever ADDS a flag: what the edge set (HEAD, preview, empty user agent,
  crawler) is kept, and so is the edge's `bot_reason`; a HEAD request is a bot
  (`head_request`: link checkers);
- `referrer_host`: the referrer's host, lowercase, without port or trailing dot ("" if none);
- `paid_click_markers`: the paid-traffic click ids found in the landing URL's query (sorted),
  Dub's "paid traffic hijacking" signal (FIELD-NOTES), plus Google's and DoubleClick's others.

All the work is per batch: each distinct user agent and referrer is resolved once per batch
and looked up in bounded LRU caches across batches, so per-row cost is a few dict operations
and, only for URLs with a query, one regex scan.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from ingest.useragents import AgentCache, AgentInfo

PAID_CLICK_MARKERS = (
    "dclid",
    "fbclid",
    "gad_source",
    "gbraid",
    "gclid",
    "li_fat_id",
    "msclkid",
    "ttclid",
    "twclid",
    "wbraid",
)
# A marker is a query key, whatever its value (even empty): `?gclid=...`, `&fbclid`, `;msclkid=`.
_MARKER = re.compile(r"[?&;](" + "|".join(PAID_CLICK_MARKERS) + r")(?=[=&;#]|$)")

agents = AgentCache(50_000)


class _HostCache:
    """Bounded LRU map from referrer to host (referrers repeat: the same posts and pages)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.data: OrderedDict[str, str] = OrderedDict()

    def get(self, referrer: str) -> str:
        data = self.data
        host = data.get(referrer)
        if host is not None:
            data.move_to_end(referrer)
            return host
        host = data[referrer] = referrer_host(referrer)
        if len(data) > self.max_entries:
            data.popitem(last=False)
        return host


hosts = _HostCache(50_000)


def referrer_host(referrer: str) -> str:
    """`https://WWW.Example.com:8443/a?b` -> `www.example.com`; "" for no or unparsable
    referrer. A referrer without a scheme (`example.com/page`) is read as a host too."""
    text = referrer.strip()
    if not text:
        return ""
    if "//" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return ""
    return (host or "").rstrip(".")


def paid_click_markers(url: str) -> list[str]:
    """The paid-traffic click-id parameters present in the URL's query, sorted, unique."""
    query_at = url.find("?")
    if query_at < 0:
        return []
    fragment_at = url.find("#", query_at)
    found = _MARKER.findall(url, query_at, len(url) if fragment_at < 0 else fragment_at)
    if not found:
        return []
    return sorted(set(found)) if len(found) > 1 else found


def enrich_batch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Enrich click rows in place and return them (same list, same order)."""
    per_batch_agents: dict[str, AgentInfo] = {}
    per_batch_hosts: dict[str, str] = {}
    agent_of = agents.get
    host_of = hosts.get
    find_markers = _MARKER.findall
    for row in rows:
        user_agent = row.get("user_agent") or ""
        info = per_batch_agents.get(user_agent)
        if info is None:
            info = per_batch_agents[user_agent] = agent_of(user_agent)
        row["browser"] = info.browser
        row["os"] = info.os
        row["device_type"] = info.device_type
        if row.get("is_bot"):  # the edge's verdict and reason stand
            if not row.get("bot_reason"):
                row["bot_reason"] = info.bot_reason or "edge"
        elif info.is_bot:
            row["is_bot"], row["bot_reason"] = True, info.bot_reason
        elif row.get("is_head"):  # link checkers: a HEAD is never a person's click
            row["is_bot"], row["bot_reason"] = True, "head_request"
        elif row.get("is_preview"):
            row["is_bot"], row["bot_reason"] = True, "preview"
        else:
            row["is_bot"], row["bot_reason"] = False, ""
        row["is_preview"] = info.is_preview or bool(row.get("is_preview"))
        row["is_head"] = bool(row.get("is_head"))

        referrer = row.get("referrer") or ""
        if referrer:
            host = per_batch_hosts.get(referrer)
            if host is None:
                host = per_batch_hosts[referrer] = host_of(referrer)
            row["referrer_host"] = host
        else:
            row["referrer_host"] = ""

        # The landing URL (the tag's report) or else where the redirect sent the visitor.
        landing = row.get("landing_url") or row.get("destination_url") or ""
        query_at = landing.find("?")
        if query_at < 0:
            row["paid_click_markers"] = []
            continue
        fragment_at = landing.find("#", query_at)
        found = find_markers(landing, query_at, len(landing) if fragment_at < 0 else fragment_at)
        row["paid_click_markers"] = sorted(set(found)) if len(found) > 1 else found
    return rows
