"""Click enrichment: what the edge could not afford to compute on the redirect's hot path.

`enrich_clicks` fills, on a frame of click rows (`rastro.clicks` columns):
- `browser`, `os`, `device_type` from the user agent (ingest.useragents: uap-core rules);
- `is_bot`, `bot_reason`, `is_preview` from the same classifier the edge uses, plus uap-core's
  spiders. Ingest only ever ADDS a flag: what the edge set (HEAD, preview, empty user agent,
  crawler) is kept, and so is the edge's `bot_reason`; a HEAD request is a bot
  (`head_request`: link checkers);
- `referrer_host`: the referrer's host, lowercase, without port or trailing dot ("" if none);
- `paid_click_markers`: the paid-traffic click ids found in the landing URL's query (sorted),
  Dub's "paid traffic hijacking" signal (FIELD-NOTES), plus Google's and DoubleClick's others.

All the work is per batch and per column: each distinct user agent and referrer is resolved
once per batch (bounded LRU caches across batches) and joined back; only landing URLs that may
carry a marker are scanned in Python.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from urllib.parse import urlsplit

import polars as pl

from ingest.frames import lists_at
from ingest.useragents import AgentCache

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


_AGENT_SCHEMA = {
    "user_agent": pl.String,
    "browser": pl.String,
    "os": pl.String,
    "device_type": pl.String,
    "_ua_bot": pl.Boolean,
    "_ua_preview": pl.Boolean,
    "_ua_reason": pl.String,
}
_AGENT_COLUMNS = tuple(name for name in _AGENT_SCHEMA if name != "user_agent")
# A pre-filter in polars' regex dialect (no lookahead): every URL `paid_click_markers` finds
# a marker in matches it; only those go through the exact Python scan.
_MAYBE_MARKED = "[?&;](?:" + "|".join(PAID_CLICK_MARKERS) + ")"


def _agent_table(user_agents: pl.Series) -> pl.DataFrame:
    """One row per distinct user agent of the batch, with what it says (cached across batches)."""
    distinct = user_agents.unique().to_list()
    infos = [agents.get(agent) for agent in distinct]
    return pl.DataFrame(
        {
            "user_agent": distinct,
            "browser": [info.browser for info in infos],
            "os": [info.os for info in infos],
            "device_type": [info.device_type for info in infos],
            "_ua_bot": [info.is_bot for info in infos],
            "_ua_preview": [info.is_preview for info in infos],
            "_ua_reason": [info.bot_reason for info in infos],
        },
        schema=_AGENT_SCHEMA,
    )


def _host_table(referrers: pl.Series) -> pl.DataFrame:
    distinct = referrers.unique().to_list()
    return pl.DataFrame(
        {"referrer": distinct, "referrer_host": [hosts.get(r) for r in distinct]},
        schema={"referrer": pl.String, "referrer_host": pl.String},
    )


def _markers(landing: pl.Series) -> pl.Series:
    """`paid_click_markers` of each URL; only the few URLs the pre-filter lets through are
    scanned in Python, the others get [] without leaving polars."""
    maybe = landing.str.contains(_MAYBE_MARKED).arg_true()
    found = [paid_click_markers(url) for url in landing.gather(maybe).to_list()]
    return lists_at(
        "paid_click_markers", len(landing), maybe, pl.Series(found, dtype=pl.List(pl.String))
    )


def enrich_clicks(clicks: pl.DataFrame) -> pl.DataFrame:
    """The click frame with `browser`, `os`, `device_type`, `is_bot`, `bot_reason`,
    `is_preview`, `is_head`, `referrer_host` and `paid_click_markers` filled (same rows, same
    order). Each distinct user agent and referrer is resolved once (and cached across
    batches); the rest is column arithmetic."""
    if clicks.is_empty():
        return clicks
    edge_bot, edge_reason = pl.col("is_bot"), pl.col("bot_reason")
    ua_bot, ua_reason = pl.col("_ua_bot"), pl.col("_ua_reason")
    landing = pl.when(pl.col("landing_url") != "").then("landing_url").otherwise("destination_url")
    enriched = (
        clicks.drop([c for c in (*_AGENT_COLUMNS, "referrer_host") if c in clicks.columns])
        .join(
            _agent_table(clicks["user_agent"]), on="user_agent", how="left", maintain_order="left"
        )
        .join(_host_table(clicks["referrer"]), on="referrer", how="left", maintain_order="left")
        .with_columns(
            # The edge's verdict and reason stand; ingest only adds: the user agent's verdict,
            # then a HEAD (link checkers: never a person's click), then a preview fetch.
            is_bot=edge_bot | ua_bot | pl.col("is_head") | pl.col("is_preview"),
            bot_reason=pl.when(edge_bot & (edge_reason != ""))
            .then(edge_reason)
            .when(edge_bot)
            .then(pl.when(ua_reason != "").then(ua_reason).otherwise(pl.lit("edge")))
            .when(ua_bot)
            .then(ua_reason)
            .when(pl.col("is_head"))
            .then(pl.lit("head_request"))
            .when(pl.col("is_preview"))
            .then(pl.lit("preview"))
            .otherwise(pl.lit("")),
            is_preview=pl.col("_ua_preview") | pl.col("is_preview"),
        )
        .with_columns(_markers(clicks.select(landing.alias("landing"))["landing"]))
        .drop("_ua_bot", "_ua_preview", "_ua_reason")
    )
    added = [column for column in enriched.columns if column not in clicks.columns]
    return enriched.select(*clicks.columns, *added)
