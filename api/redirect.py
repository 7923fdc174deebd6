"""GET/HEAD /r/{code}: the click redirect, in raw ASGI (the hottest path; see docs/tracking.md,
"The redirect").

Per request: resolve the code (the store's cache, or the warehouse in a thread on a miss),
decide the click id (a new UUIDv7, or the one this visitor got on this link within the hour),
write one `Click` record to this process's event log, and answer 302 to the destination with
the click id in the URL. The record is written before the answer: a 302 is never sent for a
click that is not in the log (a failed append answers 503).

Per-link work (splitting the destination, the allowlist check, cookie attributes, the link's
part of the record as JSON) is done once per worker and cached by code, so a request costs
~20 us of CPU in process; the record's JSON is written directly rather than through
json.dumps of a dict (a third of the cost), and tests hold it to `rastro.contracts.Click`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import re
import time
import weakref
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote_plus, urlsplit, urlunsplit

import anyio

from api import visitors
from api.state import EdgeState
from api.store import ResolvedLink, host_allowed
from rastro.ids import uuid7

log = logging.getLogger("rastro.api.redirect")

REPEAT_WINDOW_S = 3600  # a repeat click by the same visitor on the same link reuses the id
CLICK_COOKIE = "rastro_repeat"  # Path=/r/{code}: this link's click id for the hour, signed
VISITOR_COOKIE = "rastro_vid"  # Path=/: the tracking host's visitor id
SUB_PARAMS = ("sub1", "sub2", "sub3", "sub4", "sub5")
MAX_SUB_CHARS = 256
MAX_USER_AGENT_CHARS = 1024
MAX_REFERRER_CHARS = 2048
NEGATIVE_TTL_S = 5.0  # unknown codes are not looked up again for this long (per worker)
MAX_LINKS = 20_000  # per-link plans kept per worker
MAX_REPEATS = 200_000  # visitors remembered per worker for cookieless repeat detection

_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")
_UNSAFE_QUERY = re.compile(rb"[^\x21-\x7e]|#")  # what cannot go into a Location as it came
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
_SUB_INDEX = {name: i for i, name in enumerate(SUB_PARAMS)}
_COUNTRY = re.compile(r"[A-Z]{2}")
_random_bits = random.getrandbits  # reseeded in each forked worker by the random module
_json = json.encoder.encode_basestring_ascii  # a JSON string literal, quotes included
_TRUE, _FALSE = "true", "false"

_BODY = {"type": "http.response.body", "body": b""}
_NO_STORE = (b"cache-control", b"no-store, private")
_REFERRER_POLICY = (b"referrer-policy", b"no-referrer-when-downgrade")
_EMPTY = (b"content-length", b"0")


class _Plan:
    """What the redirect needs about one link, computed once per worker."""

    __slots__ = (
        "base",
        "click_cookie",
        "click_cookie_attrs",
        "dest_pairs",
        "fragment",
        "link",
        "ok",
        "param",
        "record_head",
        "simple_prefix",
        "visitor_cookie_attrs",
    )

    def __init__(self, link: ResolvedLink, secure: bool) -> None:
        self.link = link
        self.param = link.click_id_param or "rclid"
        destination = _ascii_url(link.destination_url)
        self.ok = destination is not None and host_allowed(destination, link.allowed_hosts)
        url = destination or ""
        hash_at = url.find("#")
        self.fragment = url[hash_at:] if hash_at >= 0 else ""
        url = url[:hash_at] if hash_at >= 0 else url
        base, _, query = url.partition("?")
        self.base = base
        # (decoded name, raw pair) of the destination's own parameters, minus the click id's
        self.dest_pairs = [
            (_decode(pair.partition("=")[0]), pair) for pair in query.split("&") if pair
        ]
        self.dest_pairs = [(n, p) for n, p in self.dest_pairs if n != self.param]
        kept = "&".join(pair for _, pair in self.dest_pairs)
        self.simple_prefix = f"{base}?{kept}{'&' if kept else ''}{self.param}="
        # The link's part of every Click record, as the opening of a JSON object.
        head = {
            "v": 1,
            "type": "click",
            "source": "redirect",
            "tenant_id": link.tenant_id,
            "link_id": link.link_id,
            "link_code": link.code,
            "affiliate_id": link.affiliate_id,
            "campaign_id": link.campaign_id,
            "campaign_terms_version": link.terms_version,
            "destination_url": link.destination_url,
        }
        self.record_head = json.dumps(head, separators=(",", ":"))[:-1] + ","
        flags = "; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
        self.click_cookie = f"{CLICK_COOKIE}="
        self.click_cookie_attrs = f"; Path=/r/{link.code}{flags}; Max-Age="
        self.visitor_cookie_attrs = (
            f"; Path=/; Max-Age={max(link.cookie_max_age_s, REPEAT_WINDOW_S)}{flags}"
        )

    def location(self, query: str, click_id: str, subs: list[str]) -> str:
        """The destination with the visitor's parameters (they override the destination's
        of the same name), sub1..sub5 taken out into `subs`, and the click id."""
        if not query:
            return f"{self.simple_prefix}{click_id}{self.fragment}"
        extra: list[str] = []
        names: set[str] = set()
        for pair in query.split("&"):
            if not pair:
                continue
            raw_name, _, raw_value = pair.partition("=")
            name = _decode(raw_name)
            index = _SUB_INDEX.get(name)
            if index is not None:
                subs[index] = _decode(raw_value)[:MAX_SUB_CHARS]
            elif name != self.param:
                extra.append(pair)
                names.add(name)
        if not extra:
            return f"{self.simple_prefix}{click_id}{self.fragment}"
        pairs = [pair for name, pair in self.dest_pairs if name not in names]
        pairs.extend(extra)
        return f"{self.base}?{'&'.join(pairs)}&{self.param}={click_id}{self.fragment}"


def _decode(raw: str) -> str:
    return unquote_plus(raw) if "%" in raw or "+" in raw else raw


def _ascii_url(url: str) -> str | None:
    """The destination as it can go into a Location header (IDN hosts in punycode, other
    non-ASCII characters percent-encoded), or None if it cannot."""
    if url.isascii():
        return url
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").encode("idna").decode("ascii")
        netloc = host + (f":{parts.port}" if parts.port else "")
    except (ValueError, UnicodeError):
        return None
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, safe=_URL_SAFE),
            quote(parts.query, safe=_URL_SAFE),
            quote(parts.fragment, safe=_URL_SAFE),
        )
    )


def _click_time_ms(click_id: str) -> int:
    """The creation time of a UUIDv7, from its first 48 bits."""
    return int(click_id[:8] + click_id[9:13], 16)


class _Lookup:
    __slots__ = ("done", "link", "ok")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.link: ResolvedLink | None = None
        self.ok = False


class LookupFailed(Exception):
    """The warehouse could not be asked about a code (the link may well exist)."""


class Redirector:
    """One per `EdgeState` (one per worker process): the per-link plans, the unknown codes,
    the lookups in flight and the repeat clicks seen without cookies."""

    def __init__(self, state: EdgeState) -> None:
        settings = state.settings
        self.state = state
        self.store = state.store
        self.fallback = settings.fallback_url.encode("latin-1")
        self.fallback_url = settings.fallback_url
        self.secure = settings.public_url.lower().startswith("https://")
        self.trusted = visitors.trusted_proxies(settings.trusted_proxies)
        self.plans: visitors.BoundedCache[str, _Plan] = visitors.BoundedCache(MAX_LINKS)
        self.unknown: visitors.BoundedCache[str, float] = visitors.BoundedCache(MAX_LINKS)
        # "code ip-hash user-agent-hash" -> click id (whose UUIDv7 time says when it expires).
        # Strings, not tuples: nothing here for the garbage collector to scan.
        self.repeats: visitors.BoundedCache[str, str] = visitors.BoundedCache(MAX_REPEATS)
        self.inflight: dict[str, _Lookup] = {}
        self._last_append_error = 0.0

    # -- the request ----------------------------------------------------------------------------

    async def handle(self, scope: dict[str, Any], send: Any) -> None:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await _answer(send, 405, [(b"allow", b"GET, HEAD"), _NO_STORE, _EMPTY])
            return
        code = scope["path"][3:]
        if not _CODE.fullmatch(code):
            await self._fallback(send)
            return
        link: ResolvedLink | None = self.store.links.get(code)
        if link is None:
            try:
                link = await self._lookup(code)
            except LookupFailed:
                await _answer(send, 503, [(b"retry-after", b"1"), _NO_STORE, _EMPTY])
                return
            if link is None:
                await self._fallback(send)
                return
        plan = self.plans.data.get(code)
        if plan is None or plan.link is not link:
            plan = self.plans.put(code, _Plan(link, self.secure))
            if not plan.ok:
                log.warning("link %s: destination fails the allowlist; sending to fallback", code)
        await self._click(scope, send, link, plan, method == "HEAD")

    async def _click(
        self, scope: dict[str, Any], send: Any, link: ResolvedLink, plan: _Plan, is_head: bool
    ) -> None:
        state = self.state
        tenant_id = link.tenant_id
        now_ms = time.time_ns() // 1_000_000
        headers: dict[bytes, bytes] = dict(scope["headers"])
        user_agent = headers.get(b"user-agent", b"").decode("utf-8", "replace")
        user_agent = user_agent[:MAX_USER_AGENT_CHARS]
        kind = visitors.classify(user_agent)

        # The client's address: hashed and truncated, never kept whole.
        peer = scope.get("client")
        peer_host: str = peer[0] if peer else ""
        ip, country = peer_host, ""
        if self.trusted.any and peer_host in self.trusted:
            ip = visitors.client_ip(peer_host, self._forwarded_for(scope), self.trusted)
            country = self._country(headers)
        address = visitors.anonymize(ip)
        if address is not None:
            ip_network = address.network
            ip_hash = state.pseudonym(tenant_id, "ip", address.ip)
        else:
            ip_network = ip_hash = ""

        raw_query: bytes = scope["query_string"]
        if raw_query and _UNSAFE_QUERY.search(raw_query):
            query = quote_from_bytes(raw_query, safe=_QUERY_SAFE)
        else:
            query = raw_query.decode("ascii")
        subs = list(link.subs)

        active = plan.ok and link.status == "active"
        cookies: list[tuple[bytes, bytes]] = []
        cookie_id = ""
        if not active:
            # Paused link, inactive campaign or a destination off the allowlist: the visitor
            # goes to the fallback page; the hit is recorded with a click id nobody receives.
            if query:
                plan.location(query, "", subs)
            click_id = uuid7()
            new_click = True
            location = self.fallback_url
        else:
            objection = visitors.objects_to_tracking(
                headers.get(b"sec-gpc", b""), headers.get(b"dnt", b"")
            )
            with_cookies = visitors.cookies_allowed(link.consent_policy, objection)
            click_cookie = visitor_cookie = ""
            if with_cookies:
                raw_cookies = headers.get(b"cookie")
                if raw_cookies:
                    click_cookie, visitor_cookie = _read_cookies(raw_cookies.decode("latin-1"))
            click_id = ""
            if click_cookie:
                click_id = self._verified_click(tenant_id, link.code, click_cookie, now_ms)
            reused_from_cookie = bool(click_id)
            repeat_key = f"{link.code} {ip_hash} {hash(user_agent):x}" if ip_hash else ""
            if not click_id and repeat_key:
                seen = self.repeats.data.get(repeat_key)
                if seen is not None and now_ms - _click_time_ms(seen) < REPEAT_WINDOW_S * 1000:
                    click_id = seen
            new_click = not click_id
            if new_click:
                click_id = uuid7()
                if repeat_key:
                    self.repeats.put(repeat_key, click_id)
            if with_cookies:
                if not reused_from_cookie:
                    cookies.append(self._click_cookie(tenant_id, plan, click_id, now_ms))
                if not _VISITOR_ID.fullmatch(visitor_cookie):
                    # Not a secret (any client can send any value): no syscall per visitor.
                    visitor_cookie = f"{_random_bits(128):032x}"
                cookie_id = state.pseudonym(tenant_id, "cookie", visitor_cookie)
                cookies.append(
                    (
                        b"set-cookie",
                        f"{VISITOR_COOKIE}={visitor_cookie}{plan.visitor_cookie_attrs}".encode(),
                    )
                )
            location = plan.location(query, click_id, subs)

        referrer = headers.get(b"referer", b"").decode("utf-8", "replace")[:MAX_REFERRER_CHARS]
        # The Click record, serialized by hand around the link's pre-encoded fields (a third
        # of the cost of json.dumps on a dict). Ids, hashes, networks and the country are
        # made or checked here and need no escaping; every other string goes through the
        # JSON encoder's own escaping. Tests hold this to rastro.contracts.Click.
        # A new click's id is new too: it doubles as the event id (one uuid7 less per click).
        event_id = click_id if new_click else uuid7()
        payload = (
            f'{plan.record_head}"event_id":"{event_id}","ts":{now_ms},"received_at":{now_ms},'
            f'"click_id":"{click_id}","landing_url":{_json(location)},'
            f'"sub1":{_json(subs[0])},"sub2":{_json(subs[1])},"sub3":{_json(subs[2])},'
            f'"sub4":{_json(subs[3])},"sub5":{_json(subs[4])},'
            f'"referrer":{_json(referrer)},"user_agent":{_json(user_agent)},'
            f'"ip_network":"{ip_network}","ip_hash":"{ip_hash}","country":"{country}",'
            f'"cookie_id":"{cookie_id}","is_bot":{_TRUE if kind.is_bot else _FALSE},'
            f'"bot_reason":{_json(kind.reason)},"is_head":{_TRUE if is_head else _FALSE},'
            f'"is_preview":{_TRUE if kind.is_preview else _FALSE}}}'
        )
        try:
            # One os.write to the page cache (a few us): cheaper inline than a thread hop.
            state.log.append(payload.encode())
        except Exception:
            self._append_failed()
            await _answer(send, 503, [(b"retry-after", b"1"), _NO_STORE, _EMPTY])
            return
        response = [
            (b"location", location.encode("latin-1")),
            _NO_STORE,
            _REFERRER_POLICY,
            _EMPTY,
        ]
        response.extend(cookies)
        await _answer(send, 302, response)

    # -- pieces ---------------------------------------------------------------------------------

    async def _lookup(self, code: str) -> ResolvedLink | None:
        """The warehouse's answer for a code missing from the cache; concurrent misses for
        the same code share one query; unknown codes are remembered for NEGATIVE_TTL_S."""
        until = self.unknown.data.get(code)
        if until is not None and until > time.monotonic():
            return None
        pending = self.inflight.get(code)
        if pending is not None:
            await pending.done.wait()
            if not pending.ok:
                raise LookupFailed(code)
            return pending.link
        pending = self.inflight[code] = _Lookup()
        try:
            pending.link = await anyio.to_thread.run_sync(self.store.resolve_link, code)
            pending.ok = True
        except Exception as exc:
            log.exception("cannot resolve link code %r", code)
            raise LookupFailed(code) from exc
        finally:
            del self.inflight[code]
            pending.done.set()
        if pending.link is None:
            self.unknown.put(code, time.monotonic() + NEGATIVE_TTL_S)
        return pending.link

    async def _fallback(self, send: Any) -> None:
        await _answer(send, 302, [(b"location", self.fallback), _NO_STORE, _EMPTY])

    @staticmethod
    def _forwarded_for(scope: dict[str, Any]) -> str:
        values = [v for k, v in scope["headers"] if k == b"x-forwarded-for"]
        return b",".join(values).decode("latin-1")

    @staticmethod
    def _country(headers: dict[bytes, bytes]) -> str:
        """The country a trusted CDN in front of us resolved (Cloudflare, CloudFront)."""
        raw = headers.get(b"cf-ipcountry") or headers.get(b"cloudfront-viewer-country") or b""
        country = raw.decode("latin-1").strip().upper()
        return country if _COUNTRY.fullmatch(country) and country not in ("XX", "T1") else ""

    def _signature(self, tenant_id: str, code: str, click_id: str) -> str:
        # Keyed BLAKE2b: a MAC in one call, a third of HMAC-SHA256's cost.
        key = self.state.tenant_key(tenant_id, "click-cookie")
        return hashlib.blake2b(f"{code}/{click_id}".encode(), key=key, digest_size=16).hexdigest()

    def _verified_click(self, tenant_id: str, code: str, cookie: str, now_ms: int) -> str:
        """The click id in this link's cookie, if we signed it for this link within the hour."""
        click_id, _, signature = cookie.partition(".")
        if len(click_id) != 36 or len(signature) != 32 or not _UUID.fullmatch(click_id):
            return ""
        if not hmac.compare_digest(signature, self._signature(tenant_id, code, click_id)):
            return ""
        age_ms = now_ms - _click_time_ms(click_id)
        return click_id if -60_000 <= age_ms < REPEAT_WINDOW_S * 1000 else ""

    def _click_cookie(
        self, tenant_id: str, plan: _Plan, click_id: str, now_ms: int
    ) -> tuple[bytes, bytes]:
        # A reused id keeps its first click's deadline: the window does not slide.
        left_ms = _click_time_ms(click_id) + REPEAT_WINDOW_S * 1000 - now_ms
        left_s = min(REPEAT_WINDOW_S, left_ms // 1000)
        signature = self._signature(tenant_id, plan.link.code, click_id)
        value = f"{plan.click_cookie}{click_id}.{signature}{plan.click_cookie_attrs}{left_s}"
        return (b"set-cookie", value.encode())

    def _append_failed(self) -> None:
        now = time.monotonic()
        if now - self._last_append_error >= 10.0:  # a dead writer fails every call: log less
            self._last_append_error = now
            log.exception("cannot append a click to the event log: answering 503")


def _read_cookies(header: str) -> tuple[str, str]:
    """This link's click cookie and the visitor cookie (the first of each name: the most
    specific path comes first)."""
    click = visitor = ""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == CLICK_COOKIE and not click:
            click = value.strip('"')
        elif name == VISITOR_COOKIE and not visitor:
            visitor = value.strip('"')
    return click, visitor


async def _answer(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(_BODY)


_redirectors: weakref.WeakKeyDictionary[EdgeState, Redirector] = weakref.WeakKeyDictionary()


async def handle(scope: dict[str, Any], receive: Any, send: Any, state: EdgeState) -> None:
    """The ASGI entry point for `/r/...` (see api/main.py's TrackingEdge)."""
    redirector = _redirectors.get(state)
    if redirector is None:
        redirector = _redirectors[state] = Redirector(state)
    await redirector.handle(scope, send)
