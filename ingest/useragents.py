"""What a user agent says about the visitor: browser, operating system, device type, and
whether it is a bot, a link-preview fetcher or a person.

Parsing uses uap-core's rules (`ua-parser` with `ua-parser-builtins`, and the native matcher
`ua-parser-rs` when installed: ~13 us per new string instead of ~1 ms). Bot classification is
the tracking edge's own (`api.visitors.classify`: preview fetchers, then crawlerdetect's list),
so ingest and the redirect never disagree about a user agent; uap-core's `Spider` device adds
the crawlers that list misses. The crawler list costs 100-400 us per new string, so the
results are cached per user-agent string in a bounded LRU map: the same few thousand strings
make up nearly all traffic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ua_parser import BestAvailableResolver, Domain, load_builtins

from api.visitors import classify

# Schema: clicks.device_type. "unknown" when nothing tells (no user agent, TVs, consoles, ...).
DESKTOP, MOBILE, TABLET, BOT, UNKNOWN = "desktop", "mobile", "tablet", "bot", "unknown"

_MOBILE_OS = frozenset(
    {
        "iOS",
        "Android",
        "Windows Phone",
        "Windows Mobile",
        "BlackBerry OS",
        "BlackBerry Tablet OS",
        "Symbian OS",
        "Symbian^3",
        "KaiOS",
        "Firefox OS",
        "webOS",
        "Bada",
        "Tizen",
        "HarmonyOS",
        "Sailfish",
        "MeeGo",
        "Maemo",
        "Ubuntu Touch",
    }
)
_DESKTOP_OS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Linux",
        "Ubuntu",
        "Chrome OS",
        "Fedora",
        "Debian",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Mint",
        "Arch Linux",
        "Kubuntu",
        "Gentoo",
        "Mageia",
        "Red Hat",
        "SUSE",
        "Solaris",
        "Mandriva",
        "CentOS",
        "Slackware",
    }
)
# Tokens that mark a tablet whatever the OS says (Android tablets omit "Mobile").
_TABLET_TOKENS = (
    "ipad",
    "tablet",
    "kindle",
    "silk/",
    "playbook",
    "sm-t",
    "gt-p",
    "nexus 7",
    "nexus 9",
    "nexus 10",
    "xoom",
    "tab ",
)


class AgentInfo(NamedTuple):
    browser: str
    os: str
    device_type: str
    is_bot: bool
    is_preview: bool
    bot_reason: str


EMPTY = AgentInfo("", "", UNKNOWN, True, False, "empty_user_agent")

_resolver = BestAvailableResolver(load_builtins())


def _family(value: str | None) -> str:
    return "" if value is None or value == "Other" else value


def _device_type(agent: str, os_family: str, device_family: str, browser: str) -> str:
    lowered = agent.lower()
    if device_family == "Spider":
        return BOT
    if device_family == "iPad" or any(token in lowered for token in _TABLET_TOKENS):
        return TABLET
    if os_family == "Android" and "mobile" not in lowered and "opera mini" not in lowered:
        return TABLET  # Android browsers say "Mobile" on phones only (Google's guidance)
    if os_family in _MOBILE_OS or "mobi" in lowered or "Mobile" in browser:
        return MOBILE
    if os_family in _DESKTOP_OS:
        return DESKTOP
    return UNKNOWN


def parse_agent(user_agent: str) -> AgentInfo:
    """Uncached: browser family, OS family, device type and bot verdict of one user agent."""
    agent = user_agent.strip()
    if not agent:
        return EMPTY
    parsed = _resolver(agent, Domain.ALL)
    browser = _family(parsed.user_agent.family if parsed.user_agent else None)
    os_family = _family(parsed.os.family if parsed.os else None)
    device = parsed.device.family if parsed.device else ""
    kind = classify(agent)
    is_bot, reason = kind.is_bot, kind.reason
    if not is_bot and device == "Spider":
        is_bot, reason = True, f"crawler:{browser or 'spider'}"
    device_type = BOT if is_bot else _device_type(agent, os_family, device, browser)
    return AgentInfo(browser, os_family, device_type, is_bot, kind.is_preview, reason)


def is_uap_spider(user_agent: str) -> bool:
    """Whether uap-core's rules alone call the agent a spider (no crawler list involved)."""
    device = _resolver(user_agent.strip(), Domain.DEVICE).device
    return device is not None and device.family == "Spider"


class AgentCache:
    """Bounded LRU map from user-agent string to `AgentInfo`; the variety of user agents is
    attacker-controlled, so the map forgets the least recently used past `max_entries`."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self.data: OrderedDict[str, AgentInfo] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, user_agent: str) -> AgentInfo:
        data = self.data
        info = data.get(user_agent)
        if info is not None:
            self.hits += 1
            data.move_to_end(user_agent)
            return info
        self.misses += 1
        info = data[user_agent] = parse_agent(user_agent)
        if len(data) > self.max_entries:
            data.popitem(last=False)
        return info
