-- Rastro's warehouse schema for database `rastro`, in migration order.
-- Generated from rastro/schema/tables.py by `python -m rastro.schema.snapshot`: do not edit by hand.

-- created by migrate() before any migration
CREATE TABLE IF NOT EXISTS rastro.schema_migrations
(
    number UInt32 COMMENT 'The migration\'s number',
    name String COMMENT 'The migration\'s name, e.g. 0001_config_tables',
    applied_at DateTime64(3, 'UTC') COMMENT 'When it was applied',
    checksum String COMMENT 'Hex SHA-256 of the migration\'s SQL when it was applied'
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY number
COMMENT 'One row per migration applied to this database (created by migrate, not a migration)';

-- 0001_config_tables
CREATE TABLE IF NOT EXISTS rastro.tenants
(
    tenant_id String COMMENT 'The tenant\'s id (UUIDv7)',
    name String COMMENT 'Display name of the merchant account',
    status LowCardinality(String) COMMENT 'active | suspended | closed',
    default_currency LowCardinality(String) COMMENT 'ISO 4217 code reports and commissions use unless a merchant or rule says otherwise',
    timezone LowCardinality(String) DEFAULT 'UTC' COMMENT 'IANA time zone for the tenant\'s reports and payout periods',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id
COMMENT 'One row per tenant (a merchant account), latest version wins';

CREATE TABLE IF NOT EXISTS rastro.merchants
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    id String COMMENT 'The store\'s id (UUIDv7)',
    name String COMMENT 'Display name of the store',
    platform LowCardinality(String) COMMENT 'custom | shopify | woocommerce | nuvemshop | ... (where its orders come from)',
    domains Array(String) COMMENT 'Hostnames of the store: pixel origins and the default destination allowlist',
    tracking_domain String COMMENT 'Custom hostname serving this store\'s redirects; empty for the shared one',
    currency LowCardinality(String) COMMENT 'ISO 4217 code; empty: the tenant\'s',
    timezone LowCardinality(String) COMMENT 'IANA time zone; empty: the tenant\'s',
    status LowCardinality(String) COMMENT 'active | paused',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins',
    is_deleted UInt8 DEFAULT 0 COMMENT '1 in the version that deletes the row (hidden by FINAL)'
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant_id, id)
COMMENT 'One row per store or site of a tenant, latest version wins';

CREATE TABLE IF NOT EXISTS rastro.affiliates
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    id String COMMENT 'The affiliate\'s id (UUIDv7)',
    display_name String COMMENT 'Name shown in reports (the partner\'s brand or handle)',
    status LowCardinality(String) DEFAULT 'pending' COMMENT 'invited | pending | approved | rejected | suspended',
    segment LowCardinality(String) COMMENT 'The affiliate\'s group (e.g. influencers, coupon sites); rules may target it',
    email_hash String COMMENT 'Hex HMAC-SHA256 of the normalized email under the tenant\'s key (self-referral checks)',
    contact_ciphertext String COMMENT 'Encrypted JSON of contact details (email, legal name, address); never plaintext',
    country LowCardinality(String) COMMENT 'ISO 3166-1 alpha-2 country of the affiliate',
    payout_method LowCardinality(String) COMMENT 'paypal | stripe_connect | wise | bank_transfer | pix | crypto; empty: not set',
    payout_details_ciphertext String COMMENT 'Encrypted JSON of the payout account details; never plaintext',
    payout_fingerprint String COMMENT 'Keyed hash of the normalized payout account: finds accounts shared by affiliates',
    encryption_key_id LowCardinality(String) COMMENT 'Id of the key the ciphertext columns are encrypted with (rotation)',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id)
COMMENT 'One row per affiliate (partner) of a tenant\'s program, latest version wins';

CREATE TABLE IF NOT EXISTS rastro.campaigns
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    campaign_id String COMMENT 'The campaign\'s id (UUIDv7), the same for all its terms',
    terms_version UInt32 COMMENT '1, 2, ...: the version of the campaign\'s terms',
    name String COMMENT 'Display name of the campaign',
    status LowCardinality(String) COMMENT 'draft | active | paused | ended',
    valid_from DateTime64(3, 'UTC') COMMENT 'When these terms take effect',
    valid_to Nullable(DateTime64(3, 'UTC')) COMMENT 'When these terms stop applying; NULL: until replaced',
    destination_domains Array(String) COMMENT 'Hostnames a link may redirect to (allowlist); empty: the merchants\' domains',
    attribution_window_days UInt16 DEFAULT 30 COMMENT 'Cookie / attribution window: clicks older than this at conversion get no credit',
    click_id_param LowCardinality(String) DEFAULT 'rclid' COMMENT 'Query parameter carrying the click id on the destination URL',
    landing_params Array(String) DEFAULT ['via', 'ref'] COMMENT 'Landing parameters naming a link code without a redirect (?via=partner)',
    consent_policy LowCardinality(String) DEFAULT 'opt_in' COMMENT 'opt_in (track only after consent) | opt_out | none (no consent required)',
    attribution_model LowCardinality(String) DEFAULT 'last_click' COMMENT 'last_click | first_click | linear | position_based | first_last_split',
    hold_days UInt16 DEFAULT 30 COMMENT 'Days a commission stays pending before approval (matched to the refund policy)',
    attribution_half_life_days UInt16 DEFAULT 7 COMMENT 'time_decay model: a touch this many days older than another gets half its weight',
    commission_rules String DEFAULT '[]' COMMENT 'JSON array of commission rules (percent, flat, recurring, tiers, conditions)',
    conflict_rules String DEFAULT '{}' COMMENT 'JSON object: how competing claims (coupon vs click, self-referral) are resolved',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins',
    is_deleted UInt8 DEFAULT 0 COMMENT '1 in the version that deletes the row (hidden by FINAL)'
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant_id, campaign_id, terms_version)
COMMENT 'One row per version of a campaign\'s terms; a version in force is never edited, new terms get a new terms_version';

CREATE TABLE IF NOT EXISTS rastro.links
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    id String COMMENT 'The link\'s id (UUIDv7)',
    kind LowCardinality(String) DEFAULT 'link' COMMENT 'link (code in a tracked URL or landing parameter) | coupon (a coupon code)',
    code String COMMENT 'The short code or coupon code; unique per tenant',
    affiliate_id String COMMENT 'The affiliate credited (affiliates.id)',
    campaign_id String COMMENT 'The campaign whose terms apply (campaigns.campaign_id)',
    destination_url String COMMENT 'Where the redirect sends; empty for coupons',
    sub1 String COMMENT 'Affiliate sub-id 1 (default for clicks on this link)',
    sub2 String COMMENT 'Affiliate sub-id 2 (default for clicks on this link)',
    sub3 String COMMENT 'Affiliate sub-id 3 (default for clicks on this link)',
    sub4 String COMMENT 'Affiliate sub-id 4 (default for clicks on this link)',
    sub5 String COMMENT 'Affiliate sub-id 5 (default for clicks on this link)',
    status LowCardinality(String) COMMENT 'active | paused | archived',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins',
    is_deleted UInt8 DEFAULT 0 COMMENT '1 in the version that deletes the row (hidden by FINAL)'
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant_id, id)
COMMENT 'One row per attribution key of an affiliate in a campaign (a tracked link or a coupon code), latest version wins';

CREATE TABLE IF NOT EXISTS rastro.api_keys
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    id String COMMENT 'The key\'s id (UUIDv7)',
    name String COMMENT 'Label given by its creator',
    prefix String COMMENT 'First characters of the key, shown to tell keys apart',
    key_hash String COMMENT 'Hex SHA-256 of the full key (random, high entropy); the key is shown once only',
    scopes Array(LowCardinality(String)) COMMENT 'What the key may do: admin | analyst | affiliate | ingest',
    affiliate_id Nullable(String) COMMENT 'The affiliate an affiliate-scoped key acts for; NULL otherwise',
    expires_at Nullable(DateTime64(3, 'UTC')) COMMENT 'NULL: never expires',
    revoked_at Nullable(DateTime64(3, 'UTC')) COMMENT 'NULL: not revoked',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id)
COMMENT 'One row per API key of a tenant, latest version wins; the key itself is never stored';

-- 0002_landing_tables
CREATE TABLE IF NOT EXISTS rastro.clicks
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    ts DateTime64(3, 'UTC') COMMENT 'When the click happened (the tracking server\'s clock)',
    event_id String COMMENT 'Unique id of the event (idempotency key): a replay carries the same one and collapses',
    click_id String COMMENT 'Click id appended to the destination and kept in the cookie; a repeat click by the same visitor within the dedup window reuses it',
    source LowCardinality(String) COMMENT 'redirect (our tracked URL) | landing_param (?via= seen by the tag) | api',
    link_id String COMMENT 'links.id; empty if the code matched no link',
    link_code String COMMENT 'The code as requested',
    affiliate_id String COMMENT 'affiliates.id of the link; empty if unknown',
    campaign_id String COMMENT 'campaigns.campaign_id of the link; empty if unknown',
    campaign_terms_version UInt32 COMMENT 'campaigns.terms_version in force at the click',
    destination_url String COMMENT 'The URL the visitor was sent to (with the click id)',
    landing_url String COMMENT 'The URL the visitor landed on, as reported by the tag',
    sub1 String COMMENT 'Affiliate sub-id 1 (as recorded for this click)',
    sub2 String COMMENT 'Affiliate sub-id 2 (as recorded for this click)',
    sub3 String COMMENT 'Affiliate sub-id 3 (as recorded for this click)',
    sub4 String COMMENT 'Affiliate sub-id 4 (as recorded for this click)',
    sub5 String COMMENT 'Affiliate sub-id 5 (as recorded for this click)',
    referrer String COMMENT 'Referer header / document.referrer',
    referrer_host LowCardinality(String) COMMENT 'Hostname of the referrer',
    user_agent String COMMENT 'User-Agent header (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    browser LowCardinality(String) COMMENT 'Browser family parsed from the user agent',
    os LowCardinality(String) COMMENT 'Operating system parsed from the user agent',
    device_type LowCardinality(String) COMMENT 'desktop | mobile | tablet | bot | unknown',
    ip_network String COMMENT 'Truncated client network (IPv4 /24, IPv6 /48), never the full address (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    ip_hash String COMMENT 'Hex HMAC of the full IP with a tenant-scoped salt (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    country LowCardinality(String) COMMENT 'ISO 3166-1 alpha-2 country from the IP',
    cookie_id String COMMENT 'First-party visitor cookie id (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    is_bot Bool COMMENT 'Classified as automated traffic (kept, excluded from credit)',
    bot_reason LowCardinality(String) COMMENT 'Why is_bot: user_agent | ip_list | ...; empty if not a bot',
    is_head Bool COMMENT 'A HEAD request (link checkers): never counted as a click',
    is_preview Bool COMMENT 'A link-preview fetch (unfurlers): never counted as a click',
    paid_click_markers Array(LowCardinality(String)) COMMENT 'Paid-traffic parameters found on the landing URL (gclid, fbclid, msclkid, ...)',
    velocity_flags Array(LowCardinality(String)) COMMENT 'Rate rules the click tripped (e.g. repeat_1h, ip_burst)',
    received_at DateTime64(3, 'UTC') COMMENT 'When Rastro\'s API accepted the event into the log',
    log_partition UInt32 COMMENT 'Event-log partition the row came from (reconciliation)',
    log_offset UInt64 COMMENT 'Event-log offset the row came from (reconciliation)',
    INDEX idx_click_id click_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, toDate(ts), affiliate_id, event_id)
COMMENT 'One row per click event on an affiliate link (bots, HEAD and previews flagged, kept)';

CREATE TABLE IF NOT EXISTS rastro.page_events
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    ts DateTime64(3, 'UTC') COMMENT 'When the event happened (the tracking server\'s clock)',
    event_id String COMMENT 'Unique id of the event (idempotency key): a replay carries the same one and collapses',
    type LowCardinality(String) COMMENT 'page_view | identify | lead | custom name',
    merchant_id String COMMENT 'merchants.id of the site; empty if the tenant has one',
    click_id String COMMENT 'Click id found in the URL or the cookie; empty if none',
    cookie_id String COMMENT 'First-party visitor cookie id (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    url String COMMENT 'Page URL',
    referrer String COMMENT 'document.referrer',
    customer_id String COMMENT 'The merchant\'s customer id (identify, lead) (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    email_hash String COMMENT 'Hex HMAC-SHA256 of the normalized email under the tenant\'s key (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    consent LowCardinality(String) COMMENT 'Tracking consent the tag saw: granted | denied | unknown',
    properties String DEFAULT '{}' COMMENT 'JSON object of the event\'s own properties',
    user_agent String COMMENT 'User-Agent header (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    ip_hash String COMMENT 'Hex HMAC of the full IP with a tenant-scoped salt (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    country LowCardinality(String) COMMENT 'ISO 3166-1 alpha-2 country from the IP',
    received_at DateTime64(3, 'UTC') COMMENT 'When Rastro\'s API accepted the event into the log',
    log_partition UInt32 COMMENT 'Event-log partition the row came from (reconciliation)',
    log_offset UInt64 COMMENT 'Event-log offset the row came from (reconciliation)'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, toDate(ts), type, event_id)
COMMENT 'One row per event from the JS tag or pixel (page view, identify, lead, custom)';

CREATE TABLE IF NOT EXISTS rastro.conversions
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    ts DateTime64(3, 'UTC') COMMENT 'When the order was placed (the source\'s clock)',
    event_id String COMMENT 'Unique id of the event (idempotency key): a replay carries the same one and collapses',
    conversion_id String COMMENT 'Rastro\'s id of the conversion (a UUIDv5 of tenant and order id), the same for every version of the order',
    order_id String COMMENT 'The merchant\'s order (or lead) id: unique per tenant, the idempotency key of orders',
    version UInt64 COMMENT 'The order\'s version: 1, then 2, 3 ... for each correction',
    kind LowCardinality(String) DEFAULT 'sale' COMMENT 'sale | lead',
    merchant_id String COMMENT 'merchants.id of the store; empty if the tenant has one',
    amount_minor Int64 COMMENT 'Total the customer paid, in minor units of currency',
    net_minor Int64 COMMENT 'Commission base by default: amount less tax and shipping, in minor units',
    tax_minor Int64 COMMENT 'Tax included in amount_minor, in minor units',
    shipping_minor Int64 COMMENT 'Shipping included in amount_minor, in minor units',
    discount_minor Int64 COMMENT 'Discounts already deducted from amount_minor',
    currency LowCardinality(String) COMMENT 'ISO 4217 code of every *_minor amount',
    line_items Array(Tuple(sku String, product_id String, category String, quantity UInt32, amount_minor Int64)) COMMENT 'The order\'s lines; amount_minor is the line total after line discounts',
    coupon_codes Array(String) COMMENT 'Coupon codes used (an attribution key)',
    click_id String COMMENT 'Click id sent with the order (s2s) or read by the pixel',
    cookie_id String COMMENT 'First-party visitor cookie id (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    customer_id String COMMENT 'The merchant\'s customer id (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    email_hash String COMMENT 'Hex HMAC-SHA256 of the customer\'s normalized email under the tenant\'s key (personal data: cleared after the TTL)' TTL toDateTime(ts) + INTERVAL 13 MONTH,
    is_new_customer Bool COMMENT 'The customer\'s first order, as the source says',
    country LowCardinality(String) COMMENT 'ISO 3166-1 alpha-2 country of the customer',
    affiliate_id String COMMENT 'Set only when the source names the affiliate (manual or API credit); empty: attribution decides',
    source LowCardinality(String) COMMENT 's2s | pixel | postback | api | import | webhook:<platform> (e.g. webhook:shopify)',
    subscription_id String COMMENT 'The subscription the order pays for; empty if none',
    renewal_number UInt32 COMMENT '0: first payment of a subscription, or a one-off order; n: its n-th renewal',
    received_at DateTime64(3, 'UTC') COMMENT 'When Rastro\'s API accepted the event into the log',
    log_partition UInt32 COMMENT 'Event-log partition the row came from (reconciliation)',
    log_offset UInt64 COMMENT 'Event-log offset the row came from (reconciliation)',
    INDEX idx_order_id order_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_click_id click_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, toDate(ts), order_id, event_id)
COMMENT 'One row per version of a conversion (an order, or a lead sent server-side) as received; the highest version of an order_id is its current state';

CREATE TABLE IF NOT EXISTS rastro.order_updates
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    ts DateTime64(3, 'UTC') COMMENT 'When it happened (the source\'s clock)',
    event_id String COMMENT 'Unique id of the event (idempotency key): a replay carries the same one and collapses',
    update_id String COMMENT 'The source\'s id of the refund or dispute; empty if none',
    order_id String COMMENT 'conversions.order_id it applies to',
    kind LowCardinality(String) COMMENT 'refund (partial or full: see amount_minor) | cancellation | chargeback',
    amount_minor Int64 COMMENT 'Amount taken back from the order (positive), in minor units of currency',
    currency LowCardinality(String) COMMENT 'ISO 4217 code of amount_minor',
    reason String COMMENT 'Reason given by the source',
    source LowCardinality(String) COMMENT 's2s | api | import | webhook:<platform>',
    received_at DateTime64(3, 'UTC') COMMENT 'When Rastro\'s API accepted the event into the log',
    log_partition UInt32 COMMENT 'Event-log partition the row came from (reconciliation)',
    log_offset UInt64 COMMENT 'Event-log offset the row came from (reconciliation)'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, toDate(ts), order_id, event_id)
COMMENT 'One row per refund, cancellation or chargeback of an order, as received';

CREATE TABLE IF NOT EXISTS rastro.identity_links
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    ts DateTime64(3, 'UTC') COMMENT 'When the edge was observed',
    event_id String COMMENT 'Unique id of the event (idempotency key): a replay carries the same one and collapses',
    left_kind LowCardinality(String) COMMENT 'cookie | customer | email_hash | click',
    left_id String COMMENT 'The identifier on the left',
    right_kind LowCardinality(String) COMMENT 'cookie | customer | email_hash | click',
    right_id String COMMENT 'The identifier on the right',
    source LowCardinality(String) COMMENT 'identify | lead | conversion | login | api',
    consent LowCardinality(String) COMMENT 'Consent under which it was observed: granted | denied | unknown',
    received_at DateTime64(3, 'UTC') COMMENT 'When Rastro\'s API accepted the event into the log',
    log_partition UInt32 COMMENT 'Event-log partition the row came from (reconciliation)',
    log_offset UInt64 COMMENT 'Event-log offset the row came from (reconciliation)'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, toDate(ts), left_kind, left_id, right_kind, right_id, event_id)
TTL toDateTime(ts) + INTERVAL 13 MONTH
COMMENT 'One row per identity edge observed in an event (cookie = customer, customer = email hash, ...); rows expire after the personal-data TTL';

CREATE TABLE IF NOT EXISTS rastro.dead_letters
(
    tenant_id LowCardinality(String) COMMENT 'The tenant, if it could be told; empty otherwise',
    received_at DateTime64(3, 'UTC') COMMENT 'When the payload was received',
    source LowCardinality(String) COMMENT 'Where it came from (endpoint or log topic)',
    event_type_guess LowCardinality(String) COMMENT 'click | page_event | conversion | order_update | unknown',
    reason String COMMENT 'Why it was rejected',
    payload String COMMENT 'The raw payload as received',
    log_partition UInt32 COMMENT 'Event-log partition the row came from (reconciliation)',
    log_offset UInt64 COMMENT 'Event-log offset the row came from (reconciliation)'
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (tenant_id, toDate(received_at), source)
TTL toDateTime(received_at) + INTERVAL 30 DAY
SETTINGS ttl_only_drop_parts = 1
COMMENT 'One row per rejected event payload, kept raw for inspection and replay';

-- 0003_ingest_views
CREATE VIEW IF NOT EXISTS rastro.clicks_dedup AS
SELECT * FROM rastro.clicks FINAL;

CREATE VIEW IF NOT EXISTS rastro.page_events_dedup AS
SELECT * FROM rastro.page_events FINAL;

CREATE VIEW IF NOT EXISTS rastro.conversions_dedup AS
SELECT * FROM rastro.conversions FINAL;

CREATE VIEW IF NOT EXISTS rastro.order_updates_dedup AS
SELECT * FROM rastro.order_updates FINAL;

CREATE VIEW IF NOT EXISTS rastro.identity_links_dedup AS
SELECT * FROM rastro.identity_links FINAL;

CREATE VIEW IF NOT EXISTS rastro.dead_letters_dedup AS
SELECT * FROM rastro.dead_letters WHERE source != 'eventlog'
UNION ALL
SELECT * FROM rastro.dead_letters WHERE source = 'eventlog'
LIMIT 1 BY log_partition, log_offset;

-- 0004_ledger_inputs
CREATE TABLE IF NOT EXISTS rastro.commission_decisions
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    decision_id String COMMENT 'The decision\'s id (UUIDv7)',
    commission_id String COMMENT 'fct_commissions.commission_id it applies to (conversion_id:affiliate_id)',
    decision LowCardinality(String) COMMENT 'approve (before the hold ends) | reject | hold (stop automatic approval, e.g. for fraud review) | release (undo a hold)',
    reason String COMMENT 'Why: shown to the affiliate for rejections',
    decided_by String COMMENT 'Who decided: a user or api key id, or rule:<name>',
    decided_at DateTime64(3, 'UTC') COMMENT 'When the decision was taken'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(decided_at)
ORDER BY (tenant_id, commission_id, decision_id)
COMMENT 'One row per manual or automatic decision on a commission (approve, reject, hold, release); decisions are appended, the latest per commission applies';

CREATE TABLE IF NOT EXISTS rastro.payout_items
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    payout_id String COMMENT 'The payout (one transfer to one affiliate) it belongs to',
    commission_id String COMMENT 'fct_commissions.commission_id that was paid',
    affiliate_id String COMMENT 'affiliates.id paid',
    amount_minor Int64 COMMENT 'Amount paid for this commission, in minor units',
    currency LowCardinality(String) COMMENT 'ISO 4217 code of amount_minor',
    method LowCardinality(String) COMMENT 'pix | bank_transfer | paypal | ...',
    paid_at DateTime64(3, 'UTC') COMMENT 'When the transfer was confirmed'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(paid_at)
ORDER BY (tenant_id, commission_id, payout_id)
COMMENT 'One row per commission paid in a payout; a commission is paid at most once (later reversals become clawbacks in the ledger)';

-- 0005_operations
CREATE TABLE IF NOT EXISTS rastro.fraud_flags
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    flag_id String COMMENT 'Hash of (tenant, rule, subject): the same finding, the same id',
    rule LowCardinality(String) COMMENT 'self_referral | fast_ctit | late_conversions | cookie_stuffing | click_outlier | conversion_rate_outlier | coupon_leakage | shared_payout_details',
    subject_kind LowCardinality(String) COMMENT 'click | conversion | commission | affiliate',
    subject_id String COMMENT 'The flagged click, conversion, commission or affiliate',
    affiliate_id String COMMENT 'The affiliate concerned',
    commission_id String COMMENT 'The commission put on hold for review; empty when the flag holds none',
    severity LowCardinality(String) COMMENT 'suspicious | likely',
    evidence String COMMENT 'JSON object: the facts that fired the rule',
    threshold String COMMENT 'The rule\'s threshold as configured, e.g. \'ctit < 5 s\'',
    flagged_at DateTime64(3, 'UTC') COMMENT 'When the rule last found it',
    run_id String COMMENT 'The detection run that found it (a Dagster run id)'
)
ENGINE = ReplacingMergeTree(flagged_at)
PARTITION BY toYYYYMM(flagged_at)
ORDER BY (tenant_id, rule, subject_id)
COMMENT 'One row per fraud rule that fired on a subject (a click, a conversion, a commission or an affiliate), with its evidence; re-detection replaces the row (same flag_id)';

CREATE TABLE IF NOT EXISTS rastro.reconciliation_differences
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    check_name LowCardinality(String) COMMENT 'orders_vs_reported | ledger_vs_orders | log_vs_warehouse',
    day Date COMMENT 'The day (UTC) the compared facts belong to',
    currency LowCardinality(String) COMMENT 'ISO 4217 code; empty when not money',
    key String COMMENT 'What differs: a metric (orders, gross, refunds) or an id (order, ...)',
    expected Int64 COMMENT 'What the reference says (the merchant, the orders, the log)',
    actual Int64 COMMENT 'What Rastro has',
    details String COMMENT 'JSON object with the context of the difference',
    found_at DateTime64(3, 'UTC') COMMENT 'When the run found it',
    run_id String COMMENT 'The reconciliation run that found it'
)
ENGINE = ReplacingMergeTree(found_at)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, check_name, day, currency, key)
COMMENT 'One row per difference a reconciliation found (per check, day, currency and key); a later run that finds it again replaces it, and records found_at';

CREATE TABLE IF NOT EXISTS rastro.merchant_reports
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    day Date COMMENT 'The day (UTC) the totals are for',
    currency LowCardinality(String) COMMENT 'ISO 4217 code of the amounts',
    source LowCardinality(String) COMMENT 'Where the report came from: api | import',
    orders UInt64 COMMENT 'Orders the merchant counts that day',
    gross_minor Int64 COMMENT 'Their total amount, in minor units',
    refunds_minor Int64 COMMENT 'Refunds that day, in minor units (positive)',
    reported_at DateTime64(3, 'UTC') COMMENT 'When the merchant sent it'
)
ENGINE = ReplacingMergeTree(reported_at)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, currency, source)
COMMENT 'One row per day and currency of a merchant\'s own order totals (its platform\'s report), the reference orders are reconciled against; latest report wins';

CREATE TABLE IF NOT EXISTS rastro.payout_batches
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    batch_id String COMMENT 'The batch (one preparation run, per tenant)',
    affiliate_id String COMMENT 'affiliates.id to pay',
    currency LowCardinality(String) COMMENT 'ISO 4217 code of amount_minor',
    amount_minor Int64 COMMENT 'Total to pay: the approved balance of the commissions',
    commission_ids Array(String) COMMENT 'The commissions the amount pays',
    commission_amounts Array(Int64) COMMENT 'Each commission\'s approved amount in minor units, in the order of commission_ids (they sum to amount_minor): what paying writes to payout_items',
    payout_method LowCardinality(String) COMMENT 'The affiliate\'s method when prepared',
    prepared_at DateTime64(3, 'UTC') COMMENT 'When the batch was prepared'
)
ENGINE = ReplacingMergeTree(prepared_at)
PARTITION BY toYYYYMM(prepared_at)
ORDER BY (tenant_id, batch_id, affiliate_id, currency)
COMMENT 'One row per affiliate and currency in a prepared payout batch: the approved, unpaid commissions to pay; paying them writes payout_items';

-- 0006_console_and_integrations
CREATE TABLE IF NOT EXISTS rastro.users
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    id String COMMENT 'The user\'s id (UUIDv7)',
    email String COMMENT 'Login: the normalized (lowercase) email, unique across tenants',
    display_name String COMMENT 'Name shown in the console and the audit log',
    role LowCardinality(String) COMMENT 'admin (configures, decides, pays) | analyst (reads reports) | affiliate (own data)',
    affiliate_id Nullable(String) COMMENT 'The affiliate an affiliate user acts for; NULL for merchant staff',
    password_hash String COMMENT 'scrypt$n$r$p$salt$hash (hex); empty until an invited user sets a password',
    invite_token_hash String COMMENT 'Hex SHA-256 of the one-time invitation token; empty once accepted',
    invited_at Nullable(DateTime64(3, 'UTC')) COMMENT 'When the pending invitation was sent (it expires 7 days later); NULL: none pending',
    locale LowCardinality(String) COMMENT 'pt-BR | en: the console\'s language',
    status LowCardinality(String) COMMENT 'invited | active | disabled',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id)
COMMENT 'One row per console user (a merchant\'s staff or an affiliate), latest version wins; the password is stored only as a scrypt hash';

CREATE TABLE IF NOT EXISTS rastro.audit_log
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    at DateTime64(3, 'UTC') COMMENT 'When the change was made',
    audit_id String COMMENT 'The entry\'s id (UUIDv7)',
    actor_kind LowCardinality(String) COMMENT 'user | api_key | system',
    actor_id String COMMENT 'users.id or api_keys.id of who made it',
    actor_name String COMMENT 'The user\'s name or the key\'s label, as it was then',
    action LowCardinality(String) COMMENT 'What was done, as <subject>.<verb>: campaign.update, commission.approve, ...',
    subject_kind LowCardinality(String) COMMENT 'campaign | affiliate | commission | ...',
    subject_id String COMMENT 'The id of what was changed',
    reason String COMMENT 'Why, as given by the actor (required for some actions)',
    details String COMMENT 'JSON object: the change itself (new values, amounts)'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (tenant_id, at, audit_id)
COMMENT 'One row per change made through the API or the console: who, when, what and why; append-only';

CREATE TABLE IF NOT EXISTS rastro.payout_settings
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    currency LowCardinality(String) COMMENT 'ISO 4217 code the minimum applies to',
    minimum_minor Int64 COMMENT 'Minimum approved balance paid, in minor units',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, currency)
COMMENT 'One row per tenant and currency: the program\'s minimum payout (smaller approved balances wait for the next batch), latest version wins';

CREATE TABLE IF NOT EXISTS rastro.webhook_endpoints
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    id String COMMENT 'The endpoint\'s id (UUIDv7)',
    url String COMMENT 'Where events are POSTed (https, or http for local tests)',
    event_types Array(LowCardinality(String)) COMMENT 'The event types sent to it (conversion.created, commission.approved, ...): at least one',
    secret_ciphertext String COMMENT 'The signing secret, encrypted (rastro.crypto); shown once at creation',
    encryption_key_id LowCardinality(String) COMMENT 'Id of the key secret_ciphertext is encrypted with (rotation)',
    status LowCardinality(String) COMMENT 'active | disabled',
    disabled_reason String COMMENT 'Why it was disabled (by its owner, or after repeated failed deliveries)',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins',
    is_deleted UInt8 DEFAULT 0 COMMENT '1 in the version that deletes the row (hidden by FINAL)'
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (tenant_id, id)
COMMENT 'One row per outgoing webhook endpoint of a tenant (a URL of the merchant\'s systems), latest version wins';

CREATE TABLE IF NOT EXISTS rastro.webhook_events
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    event_id String COMMENT 'Deterministic id of the event (e.g. commission.approved:<ledger entry id>)',
    type LowCardinality(String) COMMENT 'conversion.created | commission.approved | ...',
    endpoint_id String COMMENT 'The one endpoint it is for (webhook.test); empty: every endpoint subscribed to type',
    payload String COMMENT 'JSON object sent as the event\'s data',
    occurred_at DateTime64(3, 'UTC') COMMENT 'When what the event reports happened',
    created_at DateTime64(3, 'UTC') COMMENT 'When the event was put in the outbox'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, event_id)
COMMENT 'One row per event to send to the tenant\'s webhook endpoints (the outbox); an event is written once (its id is derived from what happened) and delivered per endpoint';

CREATE TABLE IF NOT EXISTS rastro.webhook_deliveries
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    endpoint_id String COMMENT 'webhook_endpoints.id',
    delivery_id String COMMENT 'The attempt\'s id (UUIDv7: sorts by time)',
    event_id String COMMENT 'webhook_events.event_id',
    event_type LowCardinality(String) COMMENT 'webhook_events.type',
    endpoint_version UInt64 COMMENT 'webhook_endpoints.version the attempt was made with: a change of the endpoint (re-enabled, a new URL) starts a new count of consecutive failures',
    attempt UInt16 COMMENT '1 for the first attempt, 2 for the first retry, ...',
    trigger LowCardinality(String) COMMENT 'automatic (the delivery worker) | manual (a retry asked for through the API)',
    outcome LowCardinality(String) COMMENT 'delivered (2xx) | failed (retried at next_attempt_at) | gave_up (no more retries)',
    response_status UInt16 COMMENT 'The HTTP status answered; 0 when none',
    error String COMMENT 'What went wrong: the status or the connection error',
    duration_ms UInt32 COMMENT 'How long the request took',
    attempted_at DateTime64(3, 'UTC') COMMENT 'When the attempt was made',
    next_attempt_at Nullable(DateTime64(3, 'UTC')) COMMENT 'When the next attempt is due; NULL when delivered or given up'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (tenant_id, endpoint_id, delivery_id)
COMMENT 'One row per delivery attempt of an event to an endpoint: the request\'s outcome, and when the next attempt is due; append-only';

CREATE TABLE IF NOT EXISTS rastro.what_if_runs
(
    tenant_id LowCardinality(String) COMMENT 'The tenant (merchant account) owning the row',
    run_id String COMMENT 'The scenario\'s id (UUIDv7)',
    campaign_id String COMMENT 'The campaign whose terms are varied',
    parameters String COMMENT 'JSON object: model, window_days, period',
    status LowCardinality(String) COMMENT 'queued | running | done | failed',
    result String COMMENT 'JSON object: actual and scenario totals; empty until done',
    error String COMMENT 'Why it failed; empty otherwise',
    requested_by String COMMENT 'users.id or api_keys.id that asked for it',
    created_at DateTime64(3, 'UTC') COMMENT 'When the row was first created',
    updated_at DateTime64(3, 'UTC') COMMENT 'When this version of the row was written',
    version UInt64 COMMENT 'Row version: every write sets a higher one (updated_at in ms); the highest wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, run_id)
COMMENT 'One row per what-if scenario (a campaign\'s commissions under another attribution model or window over a past period), its status and result; latest version wins';
