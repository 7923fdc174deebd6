"""Who is on the other end of a tracking request: bot and link-preview detection, the client
address behind trusted proxies, IP anonymization, and the visitor's objection to tracking.

Shared by the tracking endpoints (the redirect, the tag, the pixel). Everything here is
per-request work on the hot path, so the slow parts (crawler regexes, address parsing) are
cached per worker in bounded maps keyed by the raw header value.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from functools import lru_cache
from typing import Generic, NamedTuple, TypeVar

from crawlerdetect import CrawlerDetect

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A map that forgets its oldest entries past `max_entries` (insertion order): for
    memoizing functions of header values, whose variety is attacker-controlled. An
    OrderedDict: evicting the oldest key of a plain dict gets slower with every deletion
    (the iteration walks over the deleted slots), ~17 us per insert at 200k entries."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.data: OrderedDict[K, V] = OrderedDict()

    def put(self, key: K, value: V) -> V:
        data = self.data
        data[key] = value
        if len(data) > self.max_entries:
            data.popitem(last=False)
        return value


# -- bots and link previews ---------------------------------------------------------------------


class Classification(NamedTuple):
    is_bot: bool  # not a person: a crawler, a preview fetcher or no user agent at all
    is_preview: bool  # a link-preview (unfurl) fetcher: the link was shared, not clicked
    reason: str  # "" for people; "preview:<name>", "crawler:<match>", "empty_user_agent"


HUMAN = Classification(False, False, "")
EMPTY_USER_AGENT = Classification(True, False, "empty_user_agent")

# Fetchers that load a shared link to draw its card in a chat or a feed. Checked before the
# generic crawler list so that they are told apart from crawlers. Apple's Messages, Signal and
# others send one of these names too (Facebot, Twitterbot, WhatsApp). Only names no in-app
# browser carries: Instagram's, Facebook's, LINE's, Viber's and Tumblr's browsers are people.
PREVIEW_FETCHERS = (
    "Slackbot-LinkExpanding",
    "Slack-ImgProxy",
    "Slackbot",
    "facebookexternalhit",
    "Facebot",
    "Twitterbot",
    "WhatsApp/",
    "TelegramBot",
    "Discordbot",
    "LinkedInBot",
    "SkypeUriPreview",
    "MicrosoftPreview",
    "BingPreview",
    "Iframely",
    "Embedly",
    "redditbot",
    "Pinterestbot",
    "Google-InspectionTool",
    "vkShare",
    "Mastodon/",
    "Bluesky Cardyb",
    "Mattermost-Bot",
    "Snap URL Preview",
    "Quora Link Preview",
    "Yahoo Link Preview",
)
_PREVIEW = re.compile("|".join(re.escape(name) for name in PREVIEW_FETCHERS), re.IGNORECASE)
_PREVIEW_NAMES = {name.lower(): name for name in PREVIEW_FETCHERS}

_crawlers = CrawlerDetect()
_classified: BoundedCache[str, Classification] = BoundedCache(20_000)


def classify(user_agent: str) -> Classification:
    """Bot, preview fetcher or person, by user agent. The crawler list is a few hundred
    regexes (100-400 us per call), so results are cached per user-agent string."""
    cached = _classified.data.get(user_agent)
    if cached is not None:
        return cached
    return _classified.put(user_agent, _classify(user_agent))


def _classify(user_agent: str) -> Classification:
    agent = user_agent.strip()
    if not agent:
        return EMPTY_USER_AGENT
    preview = _PREVIEW.search(agent)
    if preview is not None:
        name = _PREVIEW_NAMES.get(preview.group(0).lower(), preview.group(0)).rstrip("/")
        return Classification(True, True, f"preview:{name}")
    if _crawlers.is_crawler(agent):
        return Classification(True, False, f"crawler:{_crawlers.get_matches() or 'unknown'}")
    return HUMAN


# -- the client's address -----------------------------------------------------------------------


class TrustedProxies:
    """The peers whose `X-Forwarded-For` is believed: `settings.trusted_proxies`, a comma-
    separated list of addresses or networks (`10.0.0.0/8`). Other entries (`testclient`) are
    compared with the peer's host as text."""

    def __init__(self, spec: str) -> None:
        names: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                names.add(entry)
                continue
            if network.num_addresses == 1:
                names.add(str(network.network_address))
            else:
                networks.append(network)
        self.names = frozenset(names)
        self.networks = tuple(networks)
        self.any = bool(names or networks)
        self._in_networks: BoundedCache[str, bool] = BoundedCache(10_000)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self.any:
            return False
        if host in self.names:
            return True
        if not self.networks:
            return False
        known = self._in_networks.data.get(host)
        if known is not None:
            return known
        address = _parse(host)[0]
        inside = address is not None and any(address in net for net in self.networks)
        return self._in_networks.put(host, inside)


@lru_cache(maxsize=8)
def trusted_proxies(spec: str) -> TrustedProxies:
    """Parsed once per worker (settings do not change while it runs)."""
    return TrustedProxies(spec)


def client_ip(peer: str, forwarded_for: str, trusted: TrustedProxies) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
    address in `X-Forwarded-For` that is not itself a trusted proxy (the entries to its left
    were written by the client and prove nothing). "" when unknown."""
    if not forwarded_for or peer not in trusted:
        return peer
    hops = forwarded_for.split(",")
    for hop in reversed(hops):
        address = _strip_port(hop.strip())
        if not address:
            continue
        if address not in trusted:
            return address
    # Every hop is a trusted proxy: the leftmost is as close to the client as we can tell.
    return _strip_port(hops[0].strip())


def _strip_port(hop: str) -> str:
    """`[2001:db8::1]:443` -> `2001:db8::1`, `203.0.113.7:5000` -> `203.0.113.7`."""
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else ""
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


# -- anonymization ------------------------------------------------------------------------------


class Address(NamedTuple):
    ip: str  # canonical text (IPv4-mapped IPv6 as IPv4): what gets hashed, never stored
    network: str  # "203.0.113.0/24", "2001:db8:1::/48": what gets stored


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # canonical dotted quads only
_parsed: BoundedCache[str, Address | None] = BoundedCache(20_000)
_MISSING = Address("", "")


def anonymize(ip: str) -> Address | None:
    """The canonical address (to hash) and its truncated network (to store): IPv4 /24,
    IPv6 /48. None for anything that is not an IP address."""
    if _IPV4.fullmatch(ip):  # the common case, without the ipaddress module (several us)
        return Address(ip, f"{ip[: ip.rindex('.')]}.0/24")
    cached = _parsed.data.get(ip, _MISSING)
    if cached is not _MISSING:
        return cached
    return _parsed.put(ip, _parse(ip)[1] if ip else None)


def _parse(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, Address] | tuple[None, None]:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # no zone ids: fe80::1%eth0
    except ValueError:
        return None, None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return ip, Address(str(ip), str(network))


# -- the visitor's choices ----------------------------------------------------------------------


_ONE = ("1", b"1")


def objects_to_tracking(sec_gpc: str | bytes, dnt: str | bytes) -> bool:
    """Global Privacy Control (`Sec-GPC: 1`) or Do Not Track (`DNT: 1`); the header values
    as text or as ASGI's bytes."""
    return sec_gpc.strip() in _ONE or dnt.strip() in _ONE


def cookies_allowed(consent_policy: str, objection: bool) -> bool:
    """Whether the tracking host may read and set its own cookies for a campaign:
    `none` always, `opt_out` unless the visitor objects, `opt_in` never (consent is given on
    the merchant's site, which the redirect cannot see; the click id in the URL needs none)."""
    if consent_policy == "none":
        return True
    if consent_policy == "opt_out":
        return not objection
    return False
