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

State is compact and bounded: per counted column (the minute and hour rules of a column share
it), one frame of (key, ts), the key a hash of (tenant, value), holding each key's newest L+1
click times (L the column's largest limit), because "more than L clicks in (t - w, t]" holds
exactly when the L-th click before this one (in ts order) is later than t - w. A batch is
judged column-wise: the history of the keys it touches is put together with its clicks,
sorted by (key, ts), and each click compares its ts with the ts L positions before it in its
key's run. A click older than the newest one already seen for its key is
judged in place, on the clicks before it; one older than all the history kept for its key is
not judged. Keys idle for longer than their window are dropped (a sweep each minute of event
time). Snapshots pickle those frames (Arrow IPC underneath): cheap, unlike a dict of deques.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import bytewax.operators as op
import polars as pl
from bytewax.dataflow import Stream, operator

from ingest.frames import lists_at

MINUTE = 60_000
HOUR = 60 * MINUTE


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

# A key is the hash of (tenant, value): one UInt64 column joins and sorts several times faster
# than two strings. polars' hash is stable within a polars version only, so after an upgrade
# the restored history no longer matches and the windows start empty (docs/ingest.md).
_HISTORY_SCHEMA = {"key": pl.UInt64, "ts": pl.Int64}
# polars' default, the streaming engine, costs ~2x on batch-sized queries like these.
ENGINE: Final = "in-memory"


@dataclass(frozen=True)
class _Rule:
    index: int  # in RULES: the order flags are listed in
    name: str
    window: int
    field: str  # of VelocityRules


@dataclass(frozen=True)
class _Counted:
    """The rules counting by one column, sharing one history: each key's newest `keep` times
    (the largest limit of those rules + 1)."""

    column: str
    rules: tuple[_Rule, ...]
    keep: int

    @property
    def horizon(self) -> int:
        return max(rule.window for rule in self.rules)


def _epoch_ms(frame: pl.DataFrame) -> pl.Expr:
    """The click's event time in epoch ms, whether `ts` is a datetime or already an int."""
    return pl.col("ts").dt.epoch("ms") if frame.schema["ts"].is_temporal() else pl.col("ts")


class VelocityCounter:
    """Sliding-window counts for one stream of click frames (one tenant, or several: keys
    include the tenant). `observe` returns each click's new flags; `apply` adds them to the
    frame's `velocity_flags`. `windows` holds one history frame per counted column."""

    def __init__(
        self,
        rules: VelocityRules = DEFAULT_RULES,
        per_campaign: Mapping[str, VelocityRules] | None = None,
    ) -> None:
        self.windows: dict[str, pl.DataFrame] = {}
        self.watermark = 0  # the newest ts observed
        self.swept_at = 0
        self.configure(rules, per_campaign)

    def configure(
        self, rules: VelocityRules, per_campaign: Mapping[str, VelocityRules] | None = None
    ) -> None:
        """Set the limits (also after a restore: limits come from configuration, the history
        from the snapshot). A history is cut when its largest limit shrinks."""
        self.rules = rules
        self.per_campaign = dict(per_campaign or {})
        every = [rules, *self.per_campaign.values()]
        by_column: dict[str, list[tuple[_Rule, int]]] = {}
        for index, (name, column, window, field) in enumerate(RULES):
            limits = [limit for r in every if (limit := getattr(r, field)) is not None]
            if limits:
                by_column.setdefault(column, []).append(
                    (_Rule(index, name, window, field), max(limits))
                )
        self._counted = tuple(
            _Counted(column, tuple(rule for rule, _ in found), max(top for _, top in found) + 1)
            for column, found in by_column.items()
        )
        for column in set(self.windows) - set(by_column):
            del self.windows[column]
        for counted in self._counted:
            history = self.windows.get(counted.column)
            self.windows[counted.column] = (
                pl.DataFrame(schema=_HISTORY_SCHEMA)
                if history is None
                else _newest(history.sort("key", "ts", maintain_order=True), counted.keep)
            )

    def _limit(self, rule: _Rule) -> pl.Expr:
        """Each click's limit for `rule`: its campaign's, else the default (null: off)."""
        default = getattr(self.rules, rule.field)
        special = {c: getattr(r, rule.field) for c, r in self.per_campaign.items()}
        if not special:
            return pl.lit(default, dtype=pl.Int64)
        return pl.col("campaign_id").replace_strict(special, default=default, return_dtype=pl.Int64)

    def apply(self, clicks: pl.DataFrame) -> pl.DataFrame:
        """The frame with each click's new flags appended to its `velocity_flags`."""
        fired = self.observe(clicks)
        if "velocity_flags" not in clicks.columns:
            return clicks.with_columns(fired)
        return clicks.with_columns(pl.concat_list(pl.col("velocity_flags"), fired))

    def observe(self, clicks: pl.DataFrame) -> pl.Series:
        """Count the frame's clicks and return each one's new flags (`velocity_flags`,
        List[String]), in the frame's order; bots, HEADs and previews are neither counted nor
        flagged. One polars query for the whole batch and every rule (`collect_all`): polars
        takes ~0.1-0.3 ms to start any query, so a query per rule and step would cost more
        than the work."""
        if clicks.is_empty():
            return pl.Series("velocity_flags", [], dtype=pl.List(pl.String))
        counted = (
            clicks.lazy()
            .with_row_index("row")
            .filter(~(pl.col("is_bot") | pl.col("is_head") | pl.col("is_preview")))
            .select(
                "row",
                "tenant_id",
                "campaign_id",
                _epoch_ms(clicks).cast(pl.Int64).alias("ts"),
                *{c.column for c in self._counted},
            )
        )
        flags: list[pl.LazyFrame] = []
        histories: list[pl.LazyFrame] = []
        for by in self._counted:
            new = counted.filter(pl.col(by.column) != "").select(
                pl.struct("tenant_id", by.column).hash().alias("key"),
                "ts",
                "row",
                *(self._limit(rule).alias(rule.name) for rule in by.rules),
            )
            rule_flags, history = self._count(by, new)
            flags.extend(rule_flags)
            histories.append(history)
        fired_all = (
            pl.concat(flags).sort("row", "rule").group_by("row", maintain_order=True).agg("flag")
            if flags
            else pl.LazyFrame(schema={"row": pl.UInt32, "flag": pl.List(pl.String)})
        )
        fired, newest, *updated = pl.collect_all(
            [fired_all, counted.select(pl.col("ts").max()), *histories], engine=ENGINE
        )
        for by, kept in zip(self._counted, updated, strict=True):
            self.windows[by.column] = kept
        if newest.item() is not None:
            self.watermark = max(self.watermark, int(newest.item()))
        if self.watermark - self.swept_at >= MINUTE:
            self.expire()
        return lists_at("velocity_flags", len(clicks), fired["row"], fired["flag"])

    def _count(self, by: _Counted, new: pl.LazyFrame) -> tuple[list[pl.LazyFrame], pl.LazyFrame]:
        """The query for one counted column: its clicks judged against the history of their
        keys (the flags each rule fired, as (row, rule, flag)), and the column's new history."""
        history = self.windows[by.column].lazy()
        touched = new.select("key").unique()
        run = (
            pl.concat(
                [history.join(touched, on="key", how="semi"), new],
                how="diagonal_relaxed",  # history rows have no row and no limits: nulls
            )
            # Stable: at equal times the history comes first, then the batch in its order.
            .sort("key", "ts", maintain_order=True)
            .with_row_index("pos")
            .with_columns(
                first=pl.col("pos").min().over("key"), last=pl.col("pos").max().over("key")
            )
        )
        pos = pl.col("pos").cast(pl.Int64)
        fired = []
        for rule in by.rules:
            limit = pl.col(rule.name)
            back = (pos - limit).clip(0).fill_null(0)
            hit = (
                pl.col("row").is_not_null()
                & (pos - pl.col("first").cast(pl.Int64) >= limit)
                & (pl.col("ts").gather(back) > pl.col("ts") - rule.window)
            )
            fired.append(
                run.filter(hit).select(
                    "row",
                    pl.lit(rule.index, dtype=pl.UInt8).alias("rule"),
                    pl.format("{}>{}", pl.lit(rule.name), limit).alias("flag"),
                )
            )
        kept = run.filter(pl.col("last") - pl.col("pos") < by.keep).select(*_HISTORY_SCHEMA)
        updated = pl.concat([history.join(touched, on="key", how="anti"), kept])
        return fired, updated

    def expire(self) -> None:
        """Forget keys with no click inside their windows (relative to the watermark)."""
        self.swept_at = self.watermark
        for by in self._counted:
            horizon = self.watermark - by.horizon
            history = self.windows[by.column]
            self.windows[by.column] = history.filter(pl.col("ts").max().over("key") > horizon)

    def __len__(self) -> int:
        """Keys held, over all counted columns (a measure of the state's size)."""
        return sum(history["key"].n_unique() for history in self.windows.values())


def _newest(history: pl.DataFrame, keep: int) -> pl.DataFrame:
    """Each key's newest `keep` times (history sorted by key and ts)."""
    return history.filter(pl.int_range(pl.len()).reverse().over("key") < keep)


# -- Bytewax --------------------------------------------------------------------------------


def _by_tenant(clicks: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """Split a frame per tenant: counts are per tenant, so one tenant's window state lives in
    one place (Bytewax routes a key to one worker) whatever log partition a click came from."""
    if clicks.is_empty():
        return []
    tenants = clicks["tenant_id"]
    if tenants.n_unique() == 1:
        return [(str(tenants[0]), clicks)]
    return [
        (str(key[0]), part) for key, part in clicks.partition_by("tenant_id", as_dict=True).items()
    ]


@operator
def add_velocity(
    step_id: str,
    up: Stream[pl.DataFrame],
    rules: VelocityRules = DEFAULT_RULES,
    per_campaign: Mapping[str, VelocityRules] | None = None,
) -> Stream[pl.DataFrame]:
    """Add velocity flags to a stream of click frames (enriched `clicks` rows).

    Frames are split per tenant and keyed by tenant; a `stateful_flat_map` keeps one
    `VelocityCounter` per tenant, which Bytewax snapshots at each epoch for recovery. The
    work is per frame (a few operator calls per batch, none per click), which is what keeps
    Bytewax's per-item overhead (~7 us) out of the per-click cost. Emits one frame per tenant
    per input frame.
    """
    campaigns = dict(per_campaign or {})

    def count(state: VelocityCounter | None, clicks: pl.DataFrame) -> tuple[VelocityCounter, Any]:
        if state is None:
            state = VelocityCounter(rules, campaigns)
        elif state.rules != rules or state.per_campaign != campaigns:
            state.configure(rules, campaigns)  # restored under changed limits
        return state, (state.apply(clicks),)

    keyed = op.flat_map("by_tenant", up, _by_tenant)
    flagged = op.stateful_flat_map("windows", keyed, count)
    return op.map("unkey", flagged, _value)


def _value(item: tuple[str, pl.DataFrame]) -> pl.DataFrame:
    return item[1]
