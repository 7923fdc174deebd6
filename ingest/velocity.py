"""Real-time velocity signals: clicks per visitor address, per link and per affiliate over
sliding event-time windows, flagged on the click that exceeds a limit (`ip_1m>20`).

The signals follow the field notes' fraud section: Post Affiliate Pro blocks repeat clicks per
IP, Dub's users ask for spikes from one IP to be filtered, and click spamming shows up as
bursts on one link or one affiliate. Velocity is a signal, not a verdict: a flagged click is
kept, and what to do with it (hold, exclude, review) is the attribution step's business.

Defaults (`VelocityRules`), per window ending at the click (event time, the click's `ts`):
- `ip_per_minute=20`, `ip_per_hour=200`: a person follows a handful of links a minute; one
  address sending more than one click every 3 s for a minute, or 200 in an hour, is automated
  or a click farm. The limits leave room for shared addresses (offices, carrier-grade NAT),
  which is also why a campaign whose audience sits behind such networks can raise them.
- `link_per_minute=600` (10/s sustained on one link) and `affiliate_per_minute=3000`
  (50/s across an affiliate's links): above what a viral post or a newsletter drop sends to
  one merchant's link in its first minute, and the usual shape of click spamming / cookie
  stuffing. No hourly limits by default for links and affiliates: legitimate big partners
  reach any fixed hourly number, the minute limits catch the bursts.
`None` disables a rule. Campaigns get their own `VelocityRules` (`per_campaign`), applied to
that campaign's clicks; the counts themselves are per tenant and key, across campaigns (an
address clicking links of five campaigns is one address).

Only clicks that could earn credit are counted and flagged: bots, HEAD requests and preview
fetches are already excluded (run `ingest.enrich` first), and counting them would let a
crawler's sweep flag the people who click the same link.

State is compact and bounded: for a rule with limit L only the newest L+1 timestamps of a key
are kept (a deque with maxlen L+1), because "more than L clicks in (t - w, t]" holds exactly
when the (L+1)-th newest click at or before t is later than t - w. Keys idle for longer than
their window are dropped (a sweep each minute of event time). Batches are processed in `ts`
order; a click older than the newest one already seen for its key is inserted in place and
judged on the clicks before it; only a click older than all the history kept for its key
(L+1 newer ones) is not judged.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

MINUTE = 60_000
HOUR = 60 * MINUTE

Row = dict[str, Any]


@dataclass(frozen=True)
class VelocityRules:
    """Most clicks allowed per window; the next one in the window is flagged. None: off."""

    ip_per_minute: int | None = 20
    ip_per_hour: int | None = 200
    link_per_minute: int | None = 600
    link_per_hour: int | None = None
    affiliate_per_minute: int | None = 3000
    affiliate_per_hour: int | None = None


DEFAULT_RULES = VelocityRules()

# (flag prefix, clicks column counted by, window in ms, VelocityRules field)
RULES: tuple[tuple[str, str, int, str], ...] = (
    ("ip_1m", "ip_hash", MINUTE, "ip_per_minute"),
    ("ip_1h", "ip_hash", HOUR, "ip_per_hour"),
    ("link_1m", "link_code", MINUTE, "link_per_minute"),
    ("link_1h", "link_code", HOUR, "link_per_hour"),
    ("affiliate_1m", "affiliate_id", MINUTE, "affiliate_per_minute"),
    ("affiliate_1h", "affiliate_id", HOUR, "affiliate_per_hour"),
)

_Key = tuple[str, str]  # (tenant_id, value of the column)
_Limit = tuple[int, str] | None  # (limit, flag) for one rule under one campaign's rules


class VelocityCounter:
    """Sliding-window counts for one stream of clicks (one tenant, or several: keys include
    the tenant). `observe` returns each click's flags; `apply` writes them to the rows."""

    def __init__(
        self,
        rules: VelocityRules = DEFAULT_RULES,
        per_campaign: Mapping[str, VelocityRules] | None = None,
    ) -> None:
        self.windows: dict[str, dict[_Key, deque[int]]] = {}
        self.watermark = 0  # the newest ts observed
        self.swept_at = 0
        self.configure(rules, per_campaign)

    def configure(
        self, rules: VelocityRules, per_campaign: Mapping[str, VelocityRules] | None = None
    ) -> None:
        """Set the limits (also after a restore: limits come from configuration, the counts
        from the snapshot). A rule's history is resized when its largest limit changes."""
        self.rules = rules
        self.per_campaign = dict(per_campaign or {})
        every = [rules, *self.per_campaign.values()]
        active: list[tuple[int, str, str, int, int]] = []
        for index, (name, column, window, field) in enumerate(RULES):
            limits = [limit for r in every if (limit := getattr(r, field)) is not None]
            if not limits:
                self.windows.pop(name, None)
                continue
            maxlen = max(limits) + 1
            table = self.windows.get(name)
            if table is None:
                self.windows[name] = {}
            else:
                for key, times in table.items():
                    if times.maxlen != maxlen:
                        table[key] = deque(times, maxlen=maxlen)
            active.append((index, name, column, window, maxlen))
        self._active = tuple(active)
        self._limits: dict[str, tuple[_Limit, ...]] = {}
        self._default_limits = self._limits_of(rules)

    def _limits_of(self, rules: VelocityRules) -> tuple[_Limit, ...]:
        out: list[_Limit] = []
        for index, _name, _column, _window, _maxlen in self._active:
            name, _, _, field = RULES[index]
            limit = getattr(rules, field)
            out.append(None if limit is None else (limit, f"{name}>{limit}"))
        return tuple(out)

    def limits_for(self, campaign_id: str) -> tuple[_Limit, ...]:
        limits = self._limits.get(campaign_id)
        if limits is None:
            rules = self.per_campaign.get(campaign_id)
            limits = self._default_limits if rules is None else self._limits_of(rules)
            self._limits[campaign_id] = limits
        return limits

    def observe(self, batch: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        """Count the batch's clicks (in `ts` order) and return each one's flags, in the
        batch's order."""
        flags: list[list[str]] = [[] for _ in batch]
        order: Iterable[int] = range(len(batch))
        stamps = [_millis(row["ts"]) for row in batch]
        if any(stamps[i] > stamps[i + 1] for i in range(len(stamps) - 1)):
            order = sorted(order, key=stamps.__getitem__)
        limits_for = self.limits_for
        counted: list[tuple[int, int, str, tuple[_Limit, ...]]] = []
        for i in order:
            row = batch[i]
            if row.get("is_bot") or row.get("is_head") or row.get("is_preview"):
                continue
            tenant = row.get("tenant_id") or ""
            counted.append((i, stamps[i], tenant, limits_for(row.get("campaign_id") or "")))
        if not counted:
            return flags
        watermark = max(self.watermark, max(item[1] for item in counted))
        # Rule by rule (each rule's map and limits in locals), clicks in ts order.
        for position, (_index, name, column, window, maxlen) in enumerate(self._active):
            table = self.windows[name]
            get = table.get
            for i, ts, tenant, limits in counted:
                value = batch[i].get(column)
                if not value:
                    continue
                key = (tenant, value)
                times = get(key)
                if times is None:
                    times = table[key] = deque(maxlen=maxlen)
                limit = limits[position]
                if not times or ts >= times[-1]:
                    times.append(ts)
                    if limit is not None:
                        kept = len(times)
                        if kept > limit[0] and times[kept - limit[0] - 1] > ts - window:
                            flags[i].append(limit[1])
                elif limit is None:
                    _insert_late(times, ts, None, window)
                elif _insert_late(times, ts, limit[0], window):
                    flags[i].append(limit[1])
        self.watermark = watermark
        if watermark - self.swept_at >= MINUTE:
            self.expire()
        return flags

    def apply(self, batch: Sequence[Row]) -> Sequence[Row]:
        """Observe the batch and add each click's flags to its `velocity_flags`."""
        for row, fired in zip(batch, self.observe(batch), strict=True):
            existing = row.get("velocity_flags") or []
            row["velocity_flags"] = [*existing, *fired] if existing else fired
        return batch

    def expire(self) -> None:
        """Forget keys with no click inside their window (relative to the watermark)."""
        self.swept_at = self.watermark
        for _index, name, _column, window, _maxlen in self._active:
            table = self.windows[name]
            horizon = self.watermark - window
            for key in [key for key, times in table.items() if not times or times[-1] <= horizon]:
                del table[key]

    def __len__(self) -> int:
        """Keys held, over all rules (a measure of the state's size)."""
        return sum(len(table) for table in self.windows.values())


def _millis(ts: int | datetime) -> int:
    """Event time in epoch ms: the log's integer, or the landing row's aware datetime."""
    if isinstance(ts, datetime):
        return (ts - _EPOCH) // _ONE_MS
    return int(ts)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _insert_late(times: deque[int], ts: int, limit: int | None, window: int) -> bool:
    """Insert an out-of-order timestamp in place; whether more than `limit` of the kept
    clicks (this one included) fall in (ts - window, ts]."""
    at = bisect.bisect_right(times, ts)  # kept clicks at or before ts
    exceeded = limit is not None and at >= limit and (limit == 0 or times[at - limit] > ts - window)
    if times.maxlen is not None and len(times) == times.maxlen:
        if at == 0:
            return exceeded  # older than all the history kept: not kept either
        times.popleft()
        at -= 1
    times.insert(at, ts)
    return exceeded


# -- Bytewax --------------------------------------------------------------------------------


def _by_tenant(batch: list[Row]) -> list[tuple[str, list[Row]]]:
    """Split a batch per tenant: counts are per tenant, so one tenant's window state lives in
    one place (Bytewax routes a key to one worker) whatever log partition a click came from."""
    if not batch:
        return []
    first = batch[0].get("tenant_id") or ""
    if all((row.get("tenant_id") or "") == first for row in batch):
        return [(first, batch)]
    parts: dict[str, list[Row]] = {}
    for row in batch:
        parts.setdefault(row.get("tenant_id") or "", []).append(row)
    return list(parts.items())


@operator
def add_velocity(
    step_id: str,
    up: Stream[list[Row]],
    rules: VelocityRules = DEFAULT_RULES,
    per_campaign: Mapping[str, VelocityRules] | None = None,
) -> Stream[list[Row]]:
    """Add `velocity_flags` to a stream of click batches (lists of enriched click rows).

    Batches are split per tenant and keyed by tenant; a `stateful_flat_map` keeps one
    `VelocityCounter` per tenant, which Bytewax snapshots at each epoch for recovery. The
    work is per batch (a few operator calls per batch, none per click), which is what keeps
    Bytewax's per-item overhead (~7 us) out of the per-click cost. Emits one batch per tenant
    per input batch.
    """
    campaigns = dict(per_campaign or {})

    def count(state: VelocityCounter | None, batch: list[Row]) -> tuple[VelocityCounter, Any]:
        if state is None:
            state = VelocityCounter(rules, campaigns)
        elif state.rules != rules or state.per_campaign != campaigns:
            state.configure(rules, campaigns)  # restored under changed limits
        state.apply(batch)
        return state, (batch,)

    keyed = op.flat_map("by_tenant", up, _by_tenant)
    flagged = op.stateful_flat_map("windows", keyed, count)
    return op.map("unkey", flagged, _value)


def _value(item: tuple[str, list[Row]]) -> list[Row]:
    return item[1]
