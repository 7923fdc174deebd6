"""Every Rastro table, defined once: its columns (name, ClickHouse type, comment), engine,
partitioning, sort key, TTL and settings, and the one function that renders its CREATE
statement. Migrations refer to these objects; nothing else spells a column list.

Conventions (docs/data-model.md explains each):
- ids are UUIDv7 in canonical text form, stored as String (time-ordered when sorted as text);
- money is an Int64 amount in minor units (`*_minor`) next to an ISO 4217 `currency`;
- timestamps are DateTime64(3, 'UTC');
- every sort key starts with `tenant_id`; landing tables continue with `toDate(<event time>)`
  and are partitioned by month of the event time (dead letters: by day, for their TTL);
- pseudonymous personal data (IP network and hash, user agent, cookie id, customer id, email
  hash) is cleared by a TTL after `PERSONAL_DATA_TTL_MONTHS`.

Changing a table whose CREATE migration has been applied: add columns with
`Column(..., added_in=N)` and an `AddColumns` operation in migration N; the CREATE of the
earlier migration then renders exactly as before (its checksum is recorded in every database).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rastro.warehouse.sql import quote_literal

PERSONAL_DATA_TTL_MONTHS = 13  # privacy policy: raw pseudonymous identifiers, then cleared
DEAD_LETTER_TTL_DAYS = 30  # privacy policy: raw rejected payloads

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*\Z")
_INDENT = "    "


def _personal(column: str) -> str:
    return f"toDateTime({column}) + INTERVAL {PERSONAL_DATA_TTL_MONTHS} MONTH"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str
    default: str | None = None  # SQL expression, as ClickHouse prints it back
    ttl: str | None = None  # column TTL expression: the value is reset to its default after it
    added_in: int | None = None  # None: created with the table; N: added by migration N

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"column name {self.name!r} is not a plain lowercase identifier")
        if not self.comment:
            raise ValueError(f"column {self.name!r} needs a comment")

    def render(self) -> str:
        parts = [self.name, self.type]
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        parts.append(f"COMMENT {quote_literal(self.comment)}")
        if self.ttl is not None:
            parts.append(f"TTL {self.ttl}")
        return " ".join(parts)


@dataclass(frozen=True)
class Index:
    """A data-skipping index, for point lookups on a column that is not in the sort key."""

    name: str
    expression: str
    type: str
    granularity: int

    def render(self) -> str:
        return (
            f"INDEX {self.name} {self.expression} TYPE {self.type} GRANULARITY {self.granularity}"
        )


@dataclass(frozen=True)
class Table:
    name: str
    comment: str  # starts with the grain: "One row per ..."
    columns: tuple[Column, ...]
    engine: str
    order_by: tuple[str, ...]
    partition_by: str | None = None
    ttl: str | None = None
    settings: tuple[tuple[str, str], ...] = ()
    indexes: tuple[Index, ...] = ()
    event_time: str | None = None  # the column saying when the event happened (landing tables)

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"table name {self.name!r} is not a plain lowercase identifier")
        names = [column.name for column in self.columns]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{self.name}: duplicate columns {duplicates}")
        if self.event_time is not None and self.event_time not in names:
            raise ValueError(f"{self.name}: event_time {self.event_time!r} is not a column")

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def created_columns(self) -> tuple[Column, ...]:
        """The columns its CREATE migration creates (later ones come by `AddColumns`)."""
        return tuple(column for column in self.columns if column.added_in is None)


def sort_key(table: Table) -> str:
    """The ORDER BY expression: a tuple, or the bare column when there is one."""
    keys = ", ".join(table.order_by)
    return keys if len(table.order_by) == 1 else f"({keys})"


def render_create(table: Table, database: str, columns: Sequence[Column] | None = None) -> str:
    """`CREATE TABLE IF NOT EXISTS database.name (...) ENGINE ...`: deterministic, one clause a
    line. `columns` defaults to all of them (the table as it is now)."""
    elements = [column.render() for column in (table.columns if columns is None else columns)]
    elements += [index.render() for index in table.indexes]
    lines = [f"CREATE TABLE IF NOT EXISTS {database}.{table.name}", "("]
    lines += [f"{_INDENT}{element}," for element in elements[:-1]]
    lines += [f"{_INDENT}{elements[-1]}", ")", f"ENGINE = {table.engine}"]
    if table.partition_by is not None:
        lines.append(f"PARTITION BY {table.partition_by}")
    lines.append(f"ORDER BY {sort_key(table)}")
    if table.ttl is not None:
        lines.append(f"TTL {table.ttl}")
    if table.settings:
        lines.append("SETTINGS " + ", ".join(f"{key} = {value}" for key, value in table.settings))
    lines.append(f"COMMENT {quote_literal(table.comment)}")
    return "\n".join(lines)


# -- columns shared by several tables -----------------------------------------------------------

TENANT_ID = Column(
    "tenant_id", "LowCardinality(String)", "The tenant (merchant account) owning the row"
)


def _row_version(*, soft_delete: bool) -> tuple[Column, ...]:
    columns: tuple[Column, ...] = (
        Column("created_at", "DateTime64(3, 'UTC')", "When the row was first created"),
        Column("updated_at", "DateTime64(3, 'UTC')", "When this version of the row was written"),
        Column(
            "version",
            "UInt64",
            "Row version: every write sets a higher one (updated_at in ms); the highest wins",
        ),
    )
    if soft_delete:
        columns += (
            Column(
                "is_deleted",
                "UInt8",
                "1 in the version that deletes the row (hidden by FINAL)",
                default="0",
            ),
        )
    return columns


def _config_engine(*, soft_delete: bool) -> str:
    # With is_deleted, FINAL (and merges with CLEANUP) drop a row whose latest version deletes it.
    return (
        "ReplacingMergeTree(version, is_deleted)" if soft_delete else "ReplacingMergeTree(version)"
    )


def _subs(what: str) -> tuple[Column, ...]:
    return tuple(Column(f"sub{n}", "String", f"Affiliate sub-id {n} ({what})") for n in range(1, 6))


EVENT_ID = Column(
    "event_id",
    "String",
    "Unique id of the event (idempotency key): a replay carries the same one and collapses",
)
RECEIVED_AT = Column(
    "received_at", "DateTime64(3, 'UTC')", "When Rastro's API accepted the event into the log"
)
LOG_POSITION = (
    Column("log_partition", "UInt32", "Event-log partition the row came from (reconciliation)"),
    Column("log_offset", "UInt64", "Event-log offset the row came from (reconciliation)"),
)


def _landing_partition(event_time: str) -> str:
    return f"toYYYYMM({event_time})"


# -- configuration tables: small, updated in place by newer versions ------------------------------

TENANTS = Table(
    name="tenants",
    comment="One row per tenant (a merchant account), latest version wins",
    columns=(
        Column("tenant_id", "String", "The tenant's id (UUIDv7)"),
        Column("name", "String", "Display name of the merchant account"),
        Column("status", "LowCardinality(String)", "active | suspended | closed"),
        Column(
            "default_currency",
            "LowCardinality(String)",
            "ISO 4217 code reports and commissions use unless a merchant or rule says otherwise",
        ),
        Column(
            "timezone",
            "LowCardinality(String)",
            "IANA time zone for the tenant's reports and payout periods",
            default="'UTC'",
        ),
        *_row_version(soft_delete=False),
    ),
    engine=_config_engine(soft_delete=False),
    order_by=("tenant_id",),
)

MERCHANTS = Table(
    name="merchants",
    comment="One row per store or site of a tenant, latest version wins",
    columns=(
        TENANT_ID,
        Column("id", "String", "The store's id (UUIDv7)"),
        Column("name", "String", "Display name of the store"),
        Column(
            "platform",
            "LowCardinality(String)",
            "custom | shopify | woocommerce | nuvemshop | ... (where its orders come from)",
        ),
        Column(
            "domains",
            "Array(String)",
            "Hostnames of the store: pixel origins and the default destination allowlist",
        ),
        Column(
            "tracking_domain",
            "String",
            "Custom hostname serving this store's redirects; empty for the shared one",
        ),
        Column("currency", "LowCardinality(String)", "ISO 4217 code; empty: the tenant's"),
        Column("timezone", "LowCardinality(String)", "IANA time zone; empty: the tenant's"),
        Column("status", "LowCardinality(String)", "active | paused"),
        *_row_version(soft_delete=True),
    ),
    engine=_config_engine(soft_delete=True),
    order_by=("tenant_id", "id"),
)

AFFILIATES = Table(
    name="affiliates",
    comment="One row per affiliate (partner) of a tenant's program, latest version wins",
    columns=(
        TENANT_ID,
        Column("id", "String", "The affiliate's id (UUIDv7)"),
        Column("display_name", "String", "Name shown in reports (the partner's brand or handle)"),
        Column(
            "status",
            "LowCardinality(String)",
            "invited | pending | approved | rejected | suspended",
            default="'pending'",
        ),
        Column(
            "segment",
            "LowCardinality(String)",
            "The affiliate's group (e.g. influencers, coupon sites); rules may target it",
        ),
        Column(
            "email_hash",
            "String",
            "Hex HMAC-SHA256 of the normalized email under the tenant's key (self-referral checks)",
        ),
        Column(
            "contact_ciphertext",
            "String",
            "Encrypted JSON of contact details (email, legal name, address); never plaintext",
        ),
        Column("country", "LowCardinality(String)", "ISO 3166-1 alpha-2 country of the affiliate"),
        Column(
            "payout_method",
            "LowCardinality(String)",
            "paypal | stripe_connect | wise | bank_transfer | pix | crypto; empty: not set",
        ),
        Column(
            "payout_details_ciphertext",
            "String",
            "Encrypted JSON of the payout account details; never plaintext",
        ),
        Column(
            "payout_fingerprint",
            "String",
            "Keyed hash of the normalized payout account: finds accounts shared by affiliates",
        ),
        Column(
            "encryption_key_id",
            "LowCardinality(String)",
            "Id of the key the ciphertext columns are encrypted with (rotation)",
        ),
        *_row_version(soft_delete=False),
    ),
    engine=_config_engine(soft_delete=False),
    order_by=("tenant_id", "id"),
)

CAMPAIGNS = Table(
    name="campaigns",
    comment=(
        "One row per version of a campaign's terms; a version in force is never edited, "
        "new terms get a new terms_version"
    ),
    columns=(
        TENANT_ID,
        Column("campaign_id", "String", "The campaign's id (UUIDv7), the same for all its terms"),
        Column("terms_version", "UInt32", "1, 2, ...: the version of the campaign's terms"),
        Column("name", "String", "Display name of the campaign"),
        Column("status", "LowCardinality(String)", "draft | active | paused | ended"),
        Column("valid_from", "DateTime64(3, 'UTC')", "When these terms take effect"),
        Column(
            "valid_to",
            "Nullable(DateTime64(3, 'UTC'))",
            "When these terms stop applying; NULL: until replaced",
        ),
        Column(
            "destination_domains",
            "Array(String)",
            "Hostnames a link may redirect to (allowlist); empty: the merchants' domains",
        ),
        Column(
            "attribution_window_days",
            "UInt16",
            "Cookie / attribution window: clicks older than this at conversion get no credit",
            default="30",
        ),
        Column(
            "click_id_param",
            "LowCardinality(String)",
            "Query parameter carrying the click id on the destination URL",
            default="'rclid'",
        ),
        Column(
            "landing_params",
            "Array(String)",
            "Landing parameters naming a link code without a redirect (?via=partner)",
            default="['via', 'ref']",
        ),
        Column(
            "consent_policy",
            "LowCardinality(String)",
            "opt_in (track only after consent) | opt_out | none (no consent required)",
            default="'opt_in'",
        ),
        Column(
            "attribution_model",
            "LowCardinality(String)",
            "last_click | first_click | linear | position_based | first_last_split",
            default="'last_click'",
        ),
        Column(
            "hold_days",
            "UInt16",
            "Days a commission stays pending before approval (matched to the refund policy)",
            default="30",
        ),
        Column(
            "attribution_half_life_days",
            "UInt16",
            "time_decay model: a touch this many days older than another gets half its weight",
            default="7",
            added_in=4,
        ),
        Column(
            "commission_rules",
            "String",
            "JSON array of commission rules (percent, flat, recurring, tiers, conditions)",
            default="'[]'",
        ),
        Column(
            "conflict_rules",
            "String",
            "JSON object: how competing claims (coupon vs click, self-referral) are resolved",
            default="'{}'",
        ),
        *_row_version(soft_delete=True),
    ),
    engine=_config_engine(soft_delete=True),
    order_by=("tenant_id", "campaign_id", "terms_version"),
)

LINKS = Table(
    name="links",
    comment=(
        "One row per attribution key of an affiliate in a campaign (a tracked link or a "
        "coupon code), latest version wins"
    ),
    columns=(
        TENANT_ID,
        Column("id", "String", "The link's id (UUIDv7)"),
        Column(
            "kind",
            "LowCardinality(String)",
            "link (code in a tracked URL or landing parameter) | coupon (a coupon code)",
            default="'link'",
        ),
        Column("code", "String", "The short code or coupon code; unique per tenant"),
        Column("affiliate_id", "String", "The affiliate credited (affiliates.id)"),
        Column("campaign_id", "String", "The campaign whose terms apply (campaigns.campaign_id)"),
        Column("destination_url", "String", "Where the redirect sends; empty for coupons"),
        *_subs("default for clicks on this link"),
        Column("status", "LowCardinality(String)", "active | paused | archived"),
        *_row_version(soft_delete=True),
    ),
    engine=_config_engine(soft_delete=True),
    order_by=("tenant_id", "id"),
)

API_KEYS = Table(
    name="api_keys",
    comment="One row per API key of a tenant, latest version wins; the key itself is never stored",
    columns=(
        TENANT_ID,
        Column("id", "String", "The key's id (UUIDv7)"),
        Column("name", "String", "Label given by its creator"),
        Column("prefix", "String", "First characters of the key, shown to tell keys apart"),
        Column(
            "key_hash",
            "String",
            "Hex SHA-256 of the full key (random, high entropy); the key is shown once only",
        ),
        Column(
            "scopes",
            "Array(LowCardinality(String))",
            "What the key may do: admin | analyst | affiliate | ingest",
        ),
        Column(
            "affiliate_id",
            "Nullable(String)",
            "The affiliate an affiliate-scoped key acts for; NULL otherwise",
        ),
        Column("expires_at", "Nullable(DateTime64(3, 'UTC'))", "NULL: never expires"),
        Column("revoked_at", "Nullable(DateTime64(3, 'UTC'))", "NULL: not revoked"),
        *_row_version(soft_delete=False),
    ),
    engine=_config_engine(soft_delete=False),
    order_by=("tenant_id", "id"),
)

# -- landing tables: events as they arrive; a replayed event (same event_id) collapses -----------

CLICKS = Table(
    name="clicks",
    comment="One row per click event on an affiliate link (bots, HEAD and previews flagged, kept)",
    columns=(
        TENANT_ID,
        Column(
            "ts", "DateTime64(3, 'UTC')", "When the click happened (the tracking server's clock)"
        ),
        EVENT_ID,
        Column(
            "click_id",
            "String",
            "Click id appended to the destination and kept in the cookie; a repeat click by the "
            "same visitor within the dedup window reuses it",
        ),
        Column(
            "source",
            "LowCardinality(String)",
            "redirect (our tracked URL) | landing_param (?via= seen by the tag) | api",
        ),
        Column("link_id", "String", "links.id; empty if the code matched no link"),
        Column("link_code", "String", "The code as requested"),
        Column("affiliate_id", "String", "affiliates.id of the link; empty if unknown"),
        Column("campaign_id", "String", "campaigns.campaign_id of the link; empty if unknown"),
        Column("campaign_terms_version", "UInt32", "campaigns.terms_version in force at the click"),
        Column("destination_url", "String", "The URL the visitor was sent to (with the click id)"),
        Column("landing_url", "String", "The URL the visitor landed on, as reported by the tag"),
        *_subs("as recorded for this click"),
        Column("referrer", "String", "Referer header / document.referrer"),
        Column("referrer_host", "LowCardinality(String)", "Hostname of the referrer"),
        Column(
            "user_agent",
            "String",
            "User-Agent header (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column("browser", "LowCardinality(String)", "Browser family parsed from the user agent"),
        Column("os", "LowCardinality(String)", "Operating system parsed from the user agent"),
        Column(
            "device_type", "LowCardinality(String)", "desktop | mobile | tablet | bot | unknown"
        ),
        Column(
            "ip_network",
            "String",
            "Truncated client network (IPv4 /24, IPv6 /48), never the full address "
            "(personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column(
            "ip_hash",
            "String",
            "Hex HMAC of the full IP with a tenant-scoped salt "
            "(personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column("country", "LowCardinality(String)", "ISO 3166-1 alpha-2 country from the IP"),
        Column(
            "cookie_id",
            "String",
            "First-party visitor cookie id (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column("is_bot", "Bool", "Classified as automated traffic (kept, excluded from credit)"),
        Column(
            "bot_reason",
            "LowCardinality(String)",
            "Why is_bot: user_agent | ip_list | ...; empty if not a bot",
        ),
        Column("is_head", "Bool", "A HEAD request (link checkers): never counted as a click"),
        Column("is_preview", "Bool", "A link-preview fetch (unfurlers): never counted as a click"),
        Column(
            "paid_click_markers",
            "Array(LowCardinality(String))",
            "Paid-traffic parameters found on the landing URL (gclid, fbclid, msclkid, ...)",
        ),
        Column(
            "velocity_flags",
            "Array(LowCardinality(String))",
            "Rate rules the click tripped (e.g. repeat_1h, ip_burst)",
        ),
        RECEIVED_AT,
        *LOG_POSITION,
    ),
    engine="ReplacingMergeTree",
    partition_by=_landing_partition("ts"),
    order_by=("tenant_id", "toDate(ts)", "affiliate_id", "event_id"),
    indexes=(Index("idx_click_id", "click_id", "bloom_filter(0.01)", 4),),
    event_time="ts",
)

PAGE_EVENTS = Table(
    name="page_events",
    comment="One row per event from the JS tag or pixel (page view, identify, lead, custom)",
    columns=(
        TENANT_ID,
        Column(
            "ts", "DateTime64(3, 'UTC')", "When the event happened (the tracking server's clock)"
        ),
        EVENT_ID,
        Column("type", "LowCardinality(String)", "page_view | identify | lead | custom name"),
        Column("merchant_id", "String", "merchants.id of the site; empty if the tenant has one"),
        Column("click_id", "String", "Click id found in the URL or the cookie; empty if none"),
        Column(
            "cookie_id",
            "String",
            "First-party visitor cookie id (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column("url", "String", "Page URL"),
        Column("referrer", "String", "document.referrer"),
        Column(
            "customer_id",
            "String",
            "The merchant's customer id (identify, lead) (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column(
            "email_hash",
            "String",
            "Hex HMAC-SHA256 of the normalized email under the tenant's key "
            "(personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column(
            "consent",
            "LowCardinality(String)",
            "Tracking consent the tag saw: granted | denied | unknown",
        ),
        Column("properties", "String", "JSON object of the event's own properties", default="'{}'"),
        Column(
            "user_agent",
            "String",
            "User-Agent header (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column(
            "ip_hash",
            "String",
            "Hex HMAC of the full IP with a tenant-scoped salt "
            "(personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column("country", "LowCardinality(String)", "ISO 3166-1 alpha-2 country from the IP"),
        RECEIVED_AT,
        *LOG_POSITION,
    ),
    engine="ReplacingMergeTree",
    partition_by=_landing_partition("ts"),
    order_by=("tenant_id", "toDate(ts)", "type", "event_id"),
    event_time="ts",
)

CONVERSIONS = Table(
    name="conversions",
    comment=(
        "One row per version of a conversion (an order, or a lead sent server-side) as "
        "received; the highest version of an order_id is its current state"
    ),
    columns=(
        TENANT_ID,
        Column("ts", "DateTime64(3, 'UTC')", "When the order was placed (the source's clock)"),
        EVENT_ID,
        Column(
            "conversion_id",
            "String",
            "Rastro's id of the conversion (a UUIDv5 of tenant and order id), the same for "
            "every version of the order",
        ),
        Column(
            "order_id",
            "String",
            "The merchant's order (or lead) id: unique per tenant, the idempotency key of orders",
        ),
        Column("version", "UInt64", "The order's version: 1, then 2, 3 ... for each correction"),
        Column("kind", "LowCardinality(String)", "sale | lead", default="'sale'"),
        Column("merchant_id", "String", "merchants.id of the store; empty if the tenant has one"),
        Column("amount_minor", "Int64", "Total the customer paid, in minor units of currency"),
        Column(
            "net_minor",
            "Int64",
            "Commission base by default: amount less tax and shipping, in minor units",
        ),
        Column("tax_minor", "Int64", "Tax included in amount_minor, in minor units"),
        Column("shipping_minor", "Int64", "Shipping included in amount_minor, in minor units"),
        Column("discount_minor", "Int64", "Discounts already deducted from amount_minor"),
        Column("currency", "LowCardinality(String)", "ISO 4217 code of every *_minor amount"),
        Column(
            "line_items",
            "Array(Tuple(sku String, product_id String, category String, quantity UInt32, "
            "amount_minor Int64))",
            "The order's lines; amount_minor is the line total after line discounts",
        ),
        Column("coupon_codes", "Array(String)", "Coupon codes used (an attribution key)"),
        Column("click_id", "String", "Click id sent with the order (s2s) or read by the pixel"),
        Column(
            "cookie_id",
            "String",
            "First-party visitor cookie id (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column(
            "customer_id",
            "String",
            "The merchant's customer id (personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column(
            "email_hash",
            "String",
            "Hex HMAC-SHA256 of the customer's normalized email under the tenant's key "
            "(personal data: cleared after the TTL)",
            ttl=_personal("ts"),
        ),
        Column("is_new_customer", "Bool", "The customer's first order, as the source says"),
        Column("country", "LowCardinality(String)", "ISO 3166-1 alpha-2 country of the customer"),
        Column(
            "affiliate_id",
            "String",
            "Set only when the source names the affiliate (manual or API credit); "
            "empty: attribution decides",
        ),
        Column(
            "source",
            "LowCardinality(String)",
            "s2s | pixel | postback | api | import | webhook:<platform> (e.g. webhook:shopify)",
        ),
        Column("subscription_id", "String", "The subscription the order pays for; empty if none"),
        Column(
            "renewal_number",
            "UInt32",
            "0: first payment of a subscription, or a one-off order; n: its n-th renewal",
        ),
        RECEIVED_AT,
        *LOG_POSITION,
    ),
    engine="ReplacingMergeTree",
    partition_by=_landing_partition("ts"),
    order_by=("tenant_id", "toDate(ts)", "order_id", "event_id"),
    indexes=(
        Index("idx_order_id", "order_id", "bloom_filter(0.01)", 4),
        Index("idx_click_id", "click_id", "bloom_filter(0.01)", 4),
    ),
    event_time="ts",
)

ORDER_UPDATES = Table(
    name="order_updates",
    comment="One row per refund, cancellation or chargeback of an order, as received",
    columns=(
        TENANT_ID,
        Column("ts", "DateTime64(3, 'UTC')", "When it happened (the source's clock)"),
        EVENT_ID,
        Column("update_id", "String", "The source's id of the refund or dispute; empty if none"),
        Column("order_id", "String", "conversions.order_id it applies to"),
        Column(
            "kind",
            "LowCardinality(String)",
            "refund (partial or full: see amount_minor) | cancellation | chargeback",
        ),
        Column(
            "amount_minor",
            "Int64",
            "Amount taken back from the order (positive), in minor units of currency",
        ),
        Column("currency", "LowCardinality(String)", "ISO 4217 code of amount_minor"),
        Column("reason", "String", "Reason given by the source"),
        Column("source", "LowCardinality(String)", "s2s | api | import | webhook:<platform>"),
        RECEIVED_AT,
        *LOG_POSITION,
    ),
    engine="ReplacingMergeTree",
    partition_by=_landing_partition("ts"),
    order_by=("tenant_id", "toDate(ts)", "order_id", "event_id"),
    event_time="ts",
)

IDENTITY_LINKS = Table(
    name="identity_links",
    comment=(
        "One row per identity edge observed in an event (cookie = customer, customer = "
        "email hash, ...); rows expire after the personal-data TTL"
    ),
    columns=(
        TENANT_ID,
        Column("ts", "DateTime64(3, 'UTC')", "When the edge was observed"),
        EVENT_ID,
        Column("left_kind", "LowCardinality(String)", "cookie | customer | email_hash | click"),
        Column("left_id", "String", "The identifier on the left"),
        Column("right_kind", "LowCardinality(String)", "cookie | customer | email_hash | click"),
        Column("right_id", "String", "The identifier on the right"),
        Column("source", "LowCardinality(String)", "identify | lead | conversion | login | api"),
        Column(
            "consent",
            "LowCardinality(String)",
            "Consent under which it was observed: granted | denied | unknown",
        ),
        RECEIVED_AT,
        *LOG_POSITION,
    ),
    engine="ReplacingMergeTree",
    partition_by=_landing_partition("ts"),
    order_by=(
        "tenant_id",
        "toDate(ts)",
        "left_kind",
        "left_id",
        "right_kind",
        "right_id",
        "event_id",
    ),
    ttl=_personal("ts"),
    event_time="ts",
)

DEAD_LETTERS = Table(
    name="dead_letters",
    comment="One row per rejected event payload, kept raw for inspection and replay",
    columns=(
        Column(
            "tenant_id",
            "LowCardinality(String)",
            "The tenant, if it could be told; empty otherwise",
        ),
        Column("received_at", "DateTime64(3, 'UTC')", "When the payload was received"),
        Column("source", "LowCardinality(String)", "Where it came from (endpoint or log topic)"),
        Column(
            "event_type_guess",
            "LowCardinality(String)",
            "click | page_event | conversion | order_update | unknown",
        ),
        Column("reason", "String", "Why it was rejected"),
        Column("payload", "String", "The raw payload as received"),
        *LOG_POSITION,
    ),
    engine="MergeTree",
    partition_by="toYYYYMMDD(received_at)",
    order_by=("tenant_id", "toDate(received_at)", "source"),
    ttl=f"toDateTime(received_at) + INTERVAL {DEAD_LETTER_TTL_DAYS} DAY",
    settings=(("ttl_only_drop_parts", "1"),),
    event_time="received_at",
)

# -- decisions and payouts: written by the API, read by the ledger (dbt) ---------------------------

COMMISSION_DECISIONS = Table(
    name="commission_decisions",
    comment=(
        "One row per manual or automatic decision on a commission (approve, reject, hold, "
        "release); decisions are appended, the latest per commission applies"
    ),
    columns=(
        TENANT_ID,
        Column("decision_id", "String", "The decision's id (UUIDv7)"),
        Column(
            "commission_id",
            "String",
            "fct_commissions.commission_id it applies to (conversion_id:affiliate_id)",
        ),
        Column(
            "decision",
            "LowCardinality(String)",
            "approve (before the hold ends) | reject | hold (stop automatic approval, e.g. "
            "for fraud review) | release (undo a hold)",
        ),
        Column("reason", "String", "Why: shown to the affiliate for rejections"),
        Column("decided_by", "String", "Who decided: a user or api key id, or rule:<name>"),
        Column("decided_at", "DateTime64(3, 'UTC')", "When the decision was taken"),
    ),
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(decided_at)",
    order_by=("tenant_id", "commission_id", "decision_id"),
)

PAYOUT_ITEMS = Table(
    name="payout_items",
    comment=(
        "One row per commission paid in a payout; a commission is paid at most once "
        "(later reversals become clawbacks in the ledger)"
    ),
    columns=(
        TENANT_ID,
        Column("payout_id", "String", "The payout (one transfer to one affiliate) it belongs to"),
        Column("commission_id", "String", "fct_commissions.commission_id that was paid"),
        Column("affiliate_id", "String", "affiliates.id paid"),
        Column("amount_minor", "Int64", "Amount paid for this commission, in minor units"),
        Column("currency", "LowCardinality(String)", "ISO 4217 code of amount_minor"),
        Column("method", "LowCardinality(String)", "pix | bank_transfer | paypal | ..."),
        Column("paid_at", "DateTime64(3, 'UTC')", "When the transfer was confirmed"),
    ),
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(paid_at)",
    order_by=("tenant_id", "commission_id", "payout_id"),
)

# -- operations: written by the batch jobs (issue 6), read by ops, the API and the ledger -------

FRAUD_FLAGS = Table(
    name="fraud_flags",
    comment=(
        "One row per fraud rule that fired on a subject (a click, a conversion, a commission "
        "or an affiliate), with its evidence; re-detection replaces the row (same flag_id)"
    ),
    columns=(
        TENANT_ID,
        Column(
            "flag_id", "String", "Hash of (tenant, rule, subject): the same finding, the same id"
        ),
        Column(
            "rule",
            "LowCardinality(String)",
            "self_referral | fast_ctit | late_conversions | cookie_stuffing | click_outlier | "
            "conversion_rate_outlier | coupon_leakage | shared_payout_details",
        ),
        Column(
            "subject_kind", "LowCardinality(String)", "click | conversion | commission | affiliate"
        ),
        Column("subject_id", "String", "The flagged click, conversion, commission or affiliate"),
        Column("affiliate_id", "String", "The affiliate concerned"),
        Column(
            "commission_id",
            "String",
            "The commission put on hold for review; empty when the flag holds none",
        ),
        Column("severity", "LowCardinality(String)", "suspicious | likely"),
        Column("evidence", "String", "JSON object: the facts that fired the rule"),
        Column("threshold", "String", "The rule's threshold as configured, e.g. 'ctit < 5 s'"),
        Column("flagged_at", "DateTime64(3, 'UTC')", "When the rule last found it"),
        Column("run_id", "String", "The detection run that found it (a Dagster run id)"),
    ),
    engine="ReplacingMergeTree(flagged_at)",
    partition_by="toYYYYMM(flagged_at)",
    order_by=("tenant_id", "rule", "subject_id"),
)

RECONCILIATION_DIFFERENCES = Table(
    name="reconciliation_differences",
    comment=(
        "One row per difference a reconciliation found (per check, day, currency and key); "
        "a later run that finds it again replaces it, and records found_at"
    ),
    columns=(
        TENANT_ID,
        Column(
            "check_name",
            "LowCardinality(String)",
            "orders_vs_reported | ledger_vs_orders | log_vs_warehouse",
        ),
        Column("day", "Date", "The day (UTC) the compared facts belong to"),
        Column("currency", "LowCardinality(String)", "ISO 4217 code; empty when not money"),
        Column(
            "key", "String", "What differs: a metric (orders, gross, refunds) or an id (order, ...)"
        ),
        Column("expected", "Int64", "What the reference says (the merchant, the orders, the log)"),
        Column("actual", "Int64", "What Rastro has"),
        Column("details", "String", "JSON object with the context of the difference"),
        Column("found_at", "DateTime64(3, 'UTC')", "When the run found it"),
        Column("run_id", "String", "The reconciliation run that found it"),
    ),
    engine="ReplacingMergeTree(found_at)",
    partition_by="toYYYYMM(day)",
    order_by=("tenant_id", "check_name", "day", "currency", "key"),
)

MERCHANT_REPORTS = Table(
    name="merchant_reports",
    comment=(
        "One row per day and currency of a merchant's own order totals (its platform's "
        "report), the reference orders are reconciled against; latest report wins"
    ),
    columns=(
        TENANT_ID,
        Column("day", "Date", "The day (UTC) the totals are for"),
        Column("currency", "LowCardinality(String)", "ISO 4217 code of the amounts"),
        Column("source", "LowCardinality(String)", "Where the report came from: api | import"),
        Column("orders", "UInt64", "Orders the merchant counts that day"),
        Column("gross_minor", "Int64", "Their total amount, in minor units"),
        Column("refunds_minor", "Int64", "Refunds that day, in minor units (positive)"),
        Column("reported_at", "DateTime64(3, 'UTC')", "When the merchant sent it"),
    ),
    engine="ReplacingMergeTree(reported_at)",
    partition_by="toYYYYMM(day)",
    order_by=("tenant_id", "day", "currency", "source"),
)

PAYOUT_BATCHES = Table(
    name="payout_batches",
    comment=(
        "One row per affiliate and currency in a prepared payout batch: the approved, unpaid "
        "commissions to pay; paying them writes payout_items"
    ),
    columns=(
        TENANT_ID,
        Column("batch_id", "String", "The batch (one preparation run, per tenant)"),
        Column("affiliate_id", "String", "affiliates.id to pay"),
        Column("currency", "LowCardinality(String)", "ISO 4217 code of amount_minor"),
        Column("amount_minor", "Int64", "Total to pay: the approved balance of the commissions"),
        Column("commission_ids", "Array(String)", "The commissions the amount pays"),
        Column(
            "commission_amounts",
            "Array(Int64)",
            "Each commission's approved amount in minor units, in the order of commission_ids "
            "(they sum to amount_minor): what paying writes to payout_items",
            added_in=6,
        ),
        Column("payout_method", "LowCardinality(String)", "The affiliate's method when prepared"),
        Column("prepared_at", "DateTime64(3, 'UTC')", "When the batch was prepared"),
    ),
    engine="ReplacingMergeTree(prepared_at)",
    partition_by="toYYYYMM(prepared_at)",
    order_by=("tenant_id", "batch_id", "affiliate_id", "currency"),
)

# -- the console and integrations (issue 7): users, audit, payout settings, webhooks, what-if --

USERS = Table(
    name="users",
    comment=(
        "One row per console user (a merchant's staff or an affiliate), latest version wins; "
        "the password is stored only as a scrypt hash"
    ),
    columns=(
        TENANT_ID,
        Column("id", "String", "The user's id (UUIDv7)"),
        Column("email", "String", "Login: the normalized (lowercase) email, unique across tenants"),
        Column("display_name", "String", "Name shown in the console and the audit log"),
        Column(
            "role",
            "LowCardinality(String)",
            "admin (configures, decides, pays) | analyst (reads reports) | affiliate (own data)",
        ),
        Column(
            "affiliate_id",
            "Nullable(String)",
            "The affiliate an affiliate user acts for; NULL for merchant staff",
        ),
        Column(
            "password_hash",
            "String",
            "scrypt$n$r$p$salt$hash (hex); empty until an invited user sets a password",
        ),
        Column(
            "invite_token_hash",
            "String",
            "Hex SHA-256 of the one-time invitation token; empty once accepted",
        ),
        Column(
            "invited_at",
            "Nullable(DateTime64(3, 'UTC'))",
            "When the pending invitation was sent (it expires 7 days later); NULL: none pending",
        ),
        Column("locale", "LowCardinality(String)", "pt-BR | en: the console's language"),
        Column("status", "LowCardinality(String)", "invited | active | disabled"),
        *_row_version(soft_delete=False),
    ),
    engine=_config_engine(soft_delete=False),
    order_by=("tenant_id", "id"),
)

AUDIT_LOG = Table(
    name="audit_log",
    comment=(
        "One row per change made through the API or the console: who, when, what and why; "
        "append-only"
    ),
    columns=(
        TENANT_ID,
        Column("at", "DateTime64(3, 'UTC')", "When the change was made"),
        Column("audit_id", "String", "The entry's id (UUIDv7)"),
        Column("actor_kind", "LowCardinality(String)", "user | api_key | system"),
        Column("actor_id", "String", "users.id or api_keys.id of who made it"),
        Column("actor_name", "String", "The user's name or the key's label, as it was then"),
        Column(
            "action",
            "LowCardinality(String)",
            "What was done, as <subject>.<verb>: campaign.update, commission.approve, ...",
        ),
        Column("subject_kind", "LowCardinality(String)", "campaign | affiliate | commission | ..."),
        Column("subject_id", "String", "The id of what was changed"),
        Column("reason", "String", "Why, as given by the actor (required for some actions)"),
        Column("details", "String", "JSON object: the change itself (new values, amounts)"),
    ),
    engine="MergeTree",
    partition_by="toYYYYMM(at)",
    order_by=("tenant_id", "at", "audit_id"),
)

PAYOUT_SETTINGS = Table(
    name="payout_settings",
    comment=(
        "One row per tenant and currency: the program's minimum payout (smaller approved "
        "balances wait for the next batch), latest version wins"
    ),
    columns=(
        TENANT_ID,
        Column("currency", "LowCardinality(String)", "ISO 4217 code the minimum applies to"),
        Column("minimum_minor", "Int64", "Minimum approved balance paid, in minor units"),
        *_row_version(soft_delete=False),
    ),
    engine=_config_engine(soft_delete=False),
    order_by=("tenant_id", "currency"),
)

WEBHOOK_ENDPOINTS = Table(
    name="webhook_endpoints",
    comment=(
        "One row per outgoing webhook endpoint of a tenant (a URL of the merchant's systems), "
        "latest version wins"
    ),
    columns=(
        TENANT_ID,
        Column("id", "String", "The endpoint's id (UUIDv7)"),
        Column("url", "String", "Where events are POSTed (https, or http for local tests)"),
        Column(
            "event_types",
            "Array(LowCardinality(String))",
            "The event types sent to it (conversion.created, commission.approved, ...): at "
            "least one",
        ),
        Column(
            "secret_ciphertext",
            "String",
            "The signing secret, encrypted (rastro.crypto); shown once at creation",
        ),
        Column(
            "encryption_key_id",
            "LowCardinality(String)",
            "Id of the key secret_ciphertext is encrypted with (rotation)",
        ),
        Column("status", "LowCardinality(String)", "active | disabled"),
        Column(
            "disabled_reason",
            "String",
            "Why it was disabled (by its owner, or after repeated failed deliveries)",
        ),
        *_row_version(soft_delete=True),
    ),
    engine=_config_engine(soft_delete=True),
    order_by=("tenant_id", "id"),
)

WEBHOOK_EVENTS = Table(
    name="webhook_events",
    comment=(
        "One row per event to send to the tenant's webhook endpoints (the outbox); an event "
        "is written once (its id is derived from what happened) and delivered per endpoint"
    ),
    columns=(
        TENANT_ID,
        Column(
            "event_id",
            "String",
            "Deterministic id of the event (e.g. commission.approved:<ledger entry id>)",
        ),
        Column("type", "LowCardinality(String)", "conversion.created | commission.approved | ..."),
        Column(
            "endpoint_id",
            "String",
            "The one endpoint it is for (webhook.test); empty: every endpoint subscribed to type",
        ),
        Column("payload", "String", "JSON object sent as the event's data"),
        Column("occurred_at", "DateTime64(3, 'UTC')", "When what the event reports happened"),
        Column("created_at", "DateTime64(3, 'UTC')", "When the event was put in the outbox"),
    ),
    engine="ReplacingMergeTree",
    # By the time of what happened, which is part of the event (unlike created_at): an event
    # written twice lands in the same partition, so its copies collapse.
    partition_by="toYYYYMM(occurred_at)",
    order_by=("tenant_id", "event_id"),
)

WEBHOOK_DELIVERIES = Table(
    name="webhook_deliveries",
    comment=(
        "One row per delivery attempt of an event to an endpoint: the request's outcome, "
        "and when the next attempt is due; append-only"
    ),
    columns=(
        TENANT_ID,
        Column("endpoint_id", "String", "webhook_endpoints.id"),
        Column("delivery_id", "String", "The attempt's id (UUIDv7: sorts by time)"),
        Column("event_id", "String", "webhook_events.event_id"),
        Column("event_type", "LowCardinality(String)", "webhook_events.type"),
        Column(
            "endpoint_version",
            "UInt64",
            "webhook_endpoints.version the attempt was made with: a change of the endpoint "
            "(re-enabled, a new URL) starts a new count of consecutive failures",
        ),
        Column("attempt", "UInt16", "1 for the first attempt, 2 for the first retry, ..."),
        Column(
            "trigger",
            "LowCardinality(String)",
            "automatic (the delivery worker) | manual (a retry asked for through the API)",
        ),
        Column(
            "outcome",
            "LowCardinality(String)",
            "delivered (2xx) | failed (retried at next_attempt_at) | gave_up (no more retries)",
        ),
        Column("response_status", "UInt16", "The HTTP status answered; 0 when none"),
        Column("error", "String", "What went wrong: the status or the connection error"),
        Column("duration_ms", "UInt32", "How long the request took"),
        Column("attempted_at", "DateTime64(3, 'UTC')", "When the attempt was made"),
        Column(
            "next_attempt_at",
            "Nullable(DateTime64(3, 'UTC'))",
            "When the next attempt is due; NULL when delivered or given up",
        ),
    ),
    engine="MergeTree",
    partition_by="toYYYYMM(attempted_at)",
    order_by=("tenant_id", "endpoint_id", "delivery_id"),
)

WHAT_IF_RUNS = Table(
    name="what_if_runs",
    comment=(
        "One row per what-if scenario (a campaign's commissions under another attribution "
        "model or window over a past period), its status and result; latest version wins"
    ),
    columns=(
        TENANT_ID,
        Column("run_id", "String", "The scenario's id (UUIDv7)"),
        Column("campaign_id", "String", "The campaign whose terms are varied"),
        Column("parameters", "String", "JSON object: model, window_days, period"),
        Column("status", "LowCardinality(String)", "queued | running | done | failed"),
        Column("result", "String", "JSON object: actual and scenario totals; empty until done"),
        Column("error", "String", "Why it failed; empty otherwise"),
        Column("requested_by", "String", "users.id or api_keys.id that asked for it"),
        *_row_version(soft_delete=False),
    ),
    engine=_config_engine(soft_delete=False),
    order_by=("tenant_id", "run_id"),
)

# -- bookkeeping ----------------------------------------------------------------------------------

SCHEMA_MIGRATIONS = Table(
    name="schema_migrations",
    comment="One row per migration applied to this database (created by migrate, not a migration)",
    columns=(
        Column("number", "UInt32", "The migration's number"),
        Column("name", "String", "The migration's name, e.g. 0001_config_tables"),
        Column("applied_at", "DateTime64(3, 'UTC')", "When it was applied"),
        Column("checksum", "String", "Hex SHA-256 of the migration's SQL when it was applied"),
    ),
    engine="ReplacingMergeTree(applied_at)",
    order_by=("number",),
)
