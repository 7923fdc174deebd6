"""What the rules read, aggregated in the warehouse first: per commission, per affiliate and
address, per affiliate and day; never raw clicks. Each frame has a fixed schema (below), so
tests build the same frames by hand (`frame`) and the rules in rules.py never see SQL.

Every query reads the models of the dbt project (fct_commissions, int_touchpoints__evaluated,
the identity graph) and the staging views of the landing tables, in one database, for the
conversions and clicks of the lookback window up to `as_of`, per tenant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from pipelines.fraud.thresholds import Thresholds

TIME = pl.Datetime("ms", "UTC")

# One row per commission judged: those converted in the window, and the first payments of
# its renewals (a renewal inherits its first payment's flags).
COMMISSIONS: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "commission_id": pl.String(),
    "conversion_id": pl.String(),
    "affiliate_id": pl.String(),
    "converted_at": TIME,
    "renewal_number": pl.Int64(),
    "first_conversion_id": pl.String(),  # the subscription's first payment (itself if none)
    "via": pl.String(),  # fct_commissions.via: click | coupon | named | renewal
}
# One row per affiliate touching a judged first payment (int_touchpoints__evaluated).
TOUCHES: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "conversion_id": pl.String(),
    "affiliate_id": pl.String(),
    "last_click_at": TIME,  # its latest eligible click (null: none)
    "last_click_id": pl.String(),
    "last_click_engaged": pl.Boolean(),  # seen again on a page event or an order
    "clicks": pl.Int64(),  # its click touches of the buyer, any exclusion but bot
    "coupon": pl.Boolean(),  # one of its coupons is on the order
}
# One row per judged first-payment commission with any evidence of a shared identity.
IDENTITIES: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "conversion_id": pl.String(),
    "affiliate_id": pl.String(),
    "email_match": pl.Boolean(),  # the affiliate's email hash is the order's
    "same_person": pl.Boolean(),  # the affiliate's email is in the buyer's identity component
    "shared_devices": pl.Int64(),  # (IP hash, user agent) seen on both
    "shared_addresses": pl.Int64(),  # IP hashes seen on both
}
# One row per (affiliate, address) whose unengaged clicks carried many cookies.
ADDRESSES: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "affiliate_id": pl.String(),
    "ip_hash": pl.String(),
    "unengaged_cookies": pl.Int64(),
    "unengaged_clicks": pl.Int64(),
    "first_click_at": TIME,
    "last_click_at": TIME,
}
# One row per affiliate and day with clicks or conversions (UTC days).
DAILY: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "affiliate_id": pl.String(),
    "day": pl.Date(),
    "clicks": pl.Int64(),  # click ids, bots excluded
    "conversions": pl.Int64(),  # payable credits of first payments converted that day
}
# One row per affiliate.
AFFILIATES: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "affiliate_id": pl.String(),
    "status": pl.String(),
    "payout_fingerprint": pl.String(),
}


def frame(
    schema: Mapping[str, pl.DataType], rows: Sequence[Mapping[str, Any]] = ()
) -> pl.DataFrame:
    """A frame of `schema` from rows given as mappings (missing keys are null)."""
    return pl.DataFrame([dict(row) for row in rows], schema=dict(schema), orient="row")


@dataclass(frozen=True)
class Inputs:
    as_of: datetime
    commissions: pl.DataFrame
    touches: pl.DataFrame
    identities: pl.DataFrame
    addresses: pl.DataFrame
    daily: pl.DataFrame
    affiliates: pl.DataFrame

    @classmethod
    def empty(cls, as_of: datetime, **frames: pl.DataFrame) -> Inputs:
        """Inputs with the given frames and empty others (tests)."""
        schemas = {
            "commissions": COMMISSIONS,
            "touches": TOUCHES,
            "identities": IDENTITIES,
            "addresses": ADDRESSES,
            "daily": DAILY,
            "affiliates": AFFILIATES,
        }
        unknown = set(frames) - set(schemas)
        if unknown:
            raise TypeError(f"unknown input frames: {sorted(unknown)}")
        values = {name: frames.get(name, frame(schema)) for name, schema in schemas.items()}
        return cls(as_of=as_of, **values)


# -- the queries ---------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_database(name: str) -> str:
    """`name` if it is a plain identifier (it is spliced into SQL), else ValueError."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a database name: {name!r}")
    return name


_JUDGED = """
in_window AS (
    SELECT tenant_id, commission_id, conversion_id, affiliate_id, converted_at,
           toInt64(renewal_number) AS renewal_number, toString(via) AS via
    FROM {db}.fct_commissions
    WHERE converted_at > {since:DateTime64(3, 'UTC')}
      AND converted_at <= {as_of:DateTime64(3, 'UTC')}
      AND (empty({tenants:Array(String)}) OR tenant_id IN {tenants:Array(String)})
),
subscriptions AS (
    SELECT tenant_id, conversion_id, subscription_id, renewal_number
    FROM {db}.int_conversions__current
    WHERE subscription_id != ''
      AND (empty({tenants:Array(String)}) OR tenant_id IN {tenants:Array(String)})
),
first_payments AS (
    -- The first payment of each subscription renewed in the window.
    SELECT renewals.conversion_id AS conversion_id, firsts.conversion_id AS first_conversion_id
    FROM subscriptions AS renewals
    INNER JOIN subscriptions AS firsts
        ON firsts.tenant_id = renewals.tenant_id
        AND firsts.subscription_id = renewals.subscription_id
    WHERE renewals.renewal_number > 0 AND firsts.renewal_number = 0
      AND renewals.conversion_id IN (SELECT conversion_id FROM in_window)
),
judged AS (
    SELECT in_window.*,
           if(in_window.renewal_number > 0 AND first_payments.first_conversion_id IS NOT NULL,
              first_payments.first_conversion_id, in_window.conversion_id) AS first_conversion_id
    FROM in_window
    LEFT JOIN first_payments ON first_payments.conversion_id = in_window.conversion_id
    UNION ALL
    -- First payments before the window whose renewals are in it.
    SELECT tenant_id, commission_id, conversion_id, affiliate_id, converted_at,
           toInt64(renewal_number), toString(via), conversion_id
    FROM {db}.fct_commissions
    WHERE conversion_id IN (SELECT first_conversion_id FROM first_payments)
      AND conversion_id NOT IN (SELECT conversion_id FROM in_window)
)"""

COMMISSIONS_SQL = (
    "WITH"
    + _JUDGED
    + """
SELECT tenant_id, commission_id, conversion_id, affiliate_id, converted_at, renewal_number,
       first_conversion_id, via
FROM judged
"""
)

TOUCHES_SQL = (
    "WITH"
    + _JUDGED
    + """,
touches AS (
    SELECT
        tenant_id,
        conversion_id,
        affiliate_id,
        countIf(touch_type = 'click' AND exclusion_reason = '') > 0 AS has_eligible_click,
        maxIf(touched_at, touch_type = 'click' AND exclusion_reason = '') AS latest_click_at,
        argMaxIf(touch_id, touched_at, touch_type = 'click' AND exclusion_reason = '')
            AS latest_touch_id,
        toInt64(countIf(touch_type = 'click' AND exclusion_reason != 'bot')) AS clicks,
        countIf(touch_type = 'coupon') > 0 AS coupon
    FROM {db}.int_touchpoints__evaluated
    WHERE conversion_id IN (SELECT conversion_id FROM judged WHERE renewal_number = 0)
      AND affiliate_id != ''
    GROUP BY tenant_id, conversion_id, affiliate_id
),
latest AS (
    SELECT *, if(has_eligible_click, substring(latest_touch_id, 7), '') AS click_id
    FROM touches
),
engaged AS (
    -- A click engaged when its id came back: on a page of the site, or with the order.
    SELECT DISTINCT tenant_id, click_id FROM {db}.stg_rastro__page_events
    WHERE click_id IN (SELECT click_id FROM latest WHERE click_id != '')
    UNION DISTINCT
    SELECT DISTINCT tenant_id, click_id FROM {db}.int_conversions__current
    WHERE click_id IN (SELECT click_id FROM latest WHERE click_id != '')
)
SELECT
    latest.tenant_id AS tenant_id,
    latest.conversion_id AS conversion_id,
    latest.affiliate_id AS affiliate_id,
    if(latest.has_eligible_click, latest.latest_click_at, NULL) AS last_click_at,
    latest.click_id AS last_click_id,
    engaged.click_id IS NOT NULL AS last_click_engaged,
    latest.clicks AS clicks,
    latest.coupon AS coupon
FROM latest
LEFT JOIN engaged ON engaged.tenant_id = latest.tenant_id AND engaged.click_id = latest.click_id
"""
)

IDENTITIES_SQL = (
    "WITH"
    + _JUDGED
    + """,
pairs AS (
    SELECT DISTINCT tenant_id, conversion_id, affiliate_id FROM judged WHERE renewal_number = 0
),
affiliates AS (
    SELECT tenant_id, affiliate_id, email_hash,
           cityHash64(tenant_id, 'email_hash', email_hash) AS email_node
    FROM {db}.stg_rastro__affiliates
    WHERE email_hash != '' AND affiliate_id IN (SELECT affiliate_id FROM pairs)
),
affiliate_persons AS (
    -- The identity component of the affiliate's own email, if the graph ever saw it.
    SELECT affiliates.tenant_id AS tenant_id, affiliates.affiliate_id AS affiliate_id,
           affiliates.email_hash AS email_hash, persons.person_key AS person_key
    FROM affiliates
    LEFT JOIN {db}.int_identity__persons AS persons ON persons.node = affiliates.email_node
),
affiliate_nodes AS (
    SELECT persons.node AS node, affiliate_persons.tenant_id AS tenant_id,
           affiliate_persons.affiliate_id AS affiliate_id
    FROM {db}.int_identity__persons AS persons
    INNER JOIN affiliate_persons ON affiliate_persons.person_key = persons.person_key
    WHERE affiliate_persons.person_key IS NOT NULL
),
sightings AS (
    -- Where a browser was seen: the tag's events by cookie, the clicks by their anchor.
    SELECT tenant_id, ip_hash, user_agent, cookie_id,
           cityHash64(tenant_id, 'cookie', cookie_id) AS node
    FROM {db}.stg_rastro__page_events
    WHERE ip_hash != '' AND cookie_id != ''
    UNION ALL
    SELECT tenant_id, ip_hash, user_agent, cookie_id,
           if(cookie_id != '', cityHash64(tenant_id, 'cookie', cookie_id),
              cityHash64(tenant_id, 'click', click_id)) AS node
    FROM {db}.stg_rastro__clicks
    WHERE ip_hash != '' AND NOT (is_bot OR is_head OR is_preview)
),
affiliate_devices AS (
    SELECT DISTINCT affiliate_nodes.tenant_id AS tenant_id,
           affiliate_nodes.affiliate_id AS affiliate_id,
           sightings.ip_hash AS ip_hash, sightings.user_agent AS user_agent
    FROM sightings
    INNER JOIN affiliate_nodes ON affiliate_nodes.node = sightings.node
),
private_addresses AS (
    -- Addresses few enough browsers used to say something about who is behind them.
    SELECT tenant_id, ip_hash
    FROM sightings
    WHERE ip_hash IN (SELECT ip_hash FROM affiliate_devices)
    GROUP BY tenant_id, ip_hash
    HAVING uniqExactIf(cookie_id, cookie_id != '') <= {max_cookies:UInt32}
),
shared AS (
    -- Browsers seen on an affiliate's address, the person they belong to.
    SELECT affiliate_devices.tenant_id AS tenant_id,
           affiliate_devices.affiliate_id AS affiliate_id,
           sightings.ip_hash AS ip_hash,
           sightings.user_agent = affiliate_devices.user_agent AS same_agent,
           coalesce(persons.person_key, sightings.node) AS person_key
    FROM sightings
    INNER JOIN affiliate_devices
        ON affiliate_devices.tenant_id = sightings.tenant_id
        AND affiliate_devices.ip_hash = sightings.ip_hash
    LEFT JOIN {db}.int_identity__persons AS persons ON persons.node = sightings.node
    WHERE (sightings.tenant_id, sightings.ip_hash) IN (SELECT * FROM private_addresses)
),
buyers AS (
    SELECT pairs.tenant_id AS tenant_id, pairs.conversion_id AS conversion_id,
           pairs.affiliate_id AS affiliate_id, persons.person_key AS person_key,
           persons.email_hash AS email_hash
    FROM pairs
    INNER JOIN {db}.int_conversions__persons AS persons
        ON persons.conversion_id = pairs.conversion_id
),
devices AS (
    SELECT buyers.conversion_id AS conversion_id, buyers.affiliate_id AS affiliate_id,
           toInt64(uniqExactIf(shared.ip_hash, shared.same_agent)) AS shared_devices,
           toInt64(uniqExact(shared.ip_hash)) AS shared_addresses
    FROM buyers
    INNER JOIN shared
        ON shared.tenant_id = buyers.tenant_id
        AND shared.affiliate_id = buyers.affiliate_id
        AND shared.person_key = buyers.person_key
    GROUP BY buyers.conversion_id, buyers.affiliate_id
),
final AS (
    SELECT
        buyers.tenant_id AS tenant_id,
        buyers.conversion_id AS conversion_id,
        buyers.affiliate_id AS affiliate_id,
        ifNull(affiliate_persons.email_hash = buyers.email_hash, false) AS email_match,
        ifNull(affiliate_persons.person_key = buyers.person_key, false) AS same_person,
        ifNull(devices.shared_devices, 0) AS shared_devices,
        ifNull(devices.shared_addresses, 0) AS shared_addresses
    FROM buyers
    INNER JOIN affiliate_persons
        ON affiliate_persons.tenant_id = buyers.tenant_id
        AND affiliate_persons.affiliate_id = buyers.affiliate_id
    LEFT JOIN devices
        ON devices.conversion_id = buyers.conversion_id
        AND devices.affiliate_id = buyers.affiliate_id
)
SELECT * FROM final
WHERE email_match OR same_person OR shared_addresses > 0
"""
)

ADDRESSES_SQL = """
WITH
clicks AS (
    SELECT tenant_id, affiliate_id, ip_hash, cookie_id, click_id, clicked_at
    FROM {db}.stg_rastro__clicks
    WHERE clicked_at > {since:DateTime64(3, 'UTC')}
      AND clicked_at <= {as_of:DateTime64(3, 'UTC')}
      AND (empty({tenants:Array(String)}) OR tenant_id IN {tenants:Array(String)})
      AND affiliate_id != '' AND ip_hash != '' AND cookie_id != ''
      AND NOT (is_bot OR is_head OR is_preview)
),
candidates AS (
    -- Addresses whose clicks on one affiliate's links carried many cookies, engaged or not.
    SELECT tenant_id, affiliate_id, ip_hash
    FROM clicks
    GROUP BY tenant_id, affiliate_id, ip_hash
    HAVING uniqExact(cookie_id) >= {min_cookies:UInt32}
),
suspect AS (
    SELECT * FROM clicks
    WHERE (tenant_id, affiliate_id, ip_hash) IN (SELECT * FROM candidates)
),
engaged AS (
    SELECT DISTINCT click_id FROM {db}.stg_rastro__page_events
    WHERE click_id IN (SELECT click_id FROM suspect)
    UNION DISTINCT
    SELECT DISTINCT click_id FROM {db}.int_conversions__current
    WHERE click_id IN (SELECT click_id FROM suspect)
)
SELECT
    tenant_id, affiliate_id, ip_hash,
    toInt64(uniqExact(cookie_id)) AS unengaged_cookies,
    toInt64(uniqExact(click_id)) AS unengaged_clicks,
    min(clicked_at) AS first_click_at,
    max(clicked_at) AS last_click_at
FROM suspect
WHERE click_id NOT IN (SELECT click_id FROM engaged)
GROUP BY tenant_id, affiliate_id, ip_hash
HAVING unengaged_cookies >= {min_cookies:UInt32}
"""

DAILY_SQL = """
WITH
clicks AS (
    SELECT tenant_id, affiliate_id, toDate(clicked_at) AS day,
           toInt64(uniqExact(click_id)) AS clicks
    FROM {db}.stg_rastro__clicks
    WHERE clicked_at > {history_since:DateTime64(3, 'UTC')}
      AND clicked_at <= {as_of:DateTime64(3, 'UTC')}
      AND (empty({tenants:Array(String)}) OR tenant_id IN {tenants:Array(String)})
      AND affiliate_id != '' AND NOT (is_bot OR is_head OR is_preview)
    GROUP BY tenant_id, affiliate_id, day
),
conversions AS (
    SELECT tenant_id, affiliate_id, toDate(converted_at) AS day,
           toInt64(uniqExact(conversion_id)) AS conversions
    FROM {db}.fct_attributions
    WHERE is_payable = 1 AND via != 'renewal' AND share > 0
      AND converted_at > {history_since:DateTime64(3, 'UTC')}
      AND converted_at <= {as_of:DateTime64(3, 'UTC')}
      AND (empty({tenants:Array(String)}) OR tenant_id IN {tenants:Array(String)})
    GROUP BY tenant_id, affiliate_id, day
)
SELECT
    coalesce(clicks.tenant_id, conversions.tenant_id) AS tenant_id,
    coalesce(clicks.affiliate_id, conversions.affiliate_id) AS affiliate_id,
    coalesce(clicks.day, conversions.day) AS day,
    ifNull(clicks.clicks, 0) AS clicks,
    ifNull(conversions.conversions, 0) AS conversions
FROM clicks
FULL OUTER JOIN conversions
    ON conversions.tenant_id = clicks.tenant_id
    AND conversions.affiliate_id = clicks.affiliate_id
    AND conversions.day = clicks.day
"""

AFFILIATES_SQL = """
SELECT tenant_id, affiliate_id, toString(affiliate_status) AS status, payout_fingerprint
FROM {db}.stg_rastro__affiliates
WHERE empty({tenants:Array(String)}) OR tenant_id IN {tenants:Array(String)}
"""


def fetch(
    client: Any,
    database: str,
    as_of: datetime,
    thresholds: Thresholds,
    tenants: Sequence[str] = (),
) -> Inputs:
    """The rules' inputs from the warehouse, for `tenants` (all when empty)."""
    check_database(database)
    as_of = as_of.astimezone(UTC)
    since = as_of - timedelta(days=thresholds.lookback_days)
    history_since = since - timedelta(days=thresholds.outlier_history_days)
    parameters: dict[str, Any] = {
        "as_of": as_of,
        "since": since,
        "history_since": history_since,
        "tenants": list(tenants),
        "max_cookies": thresholds.self_referral_max_cookies_per_address,
        "min_cookies": thresholds.stuffing_min_cookies_per_address,
    }
    # Standard SQL outer joins (unmatched: NULL), joins in the written order, as dbt runs.
    settings = {"join_use_nulls": 1, "query_plan_optimize_join_order_limit": 0}

    def query(sql: str, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        text = sql.replace("{db}", database)
        got = pl.from_arrow(client.query_arrow(text, parameters=parameters, settings=settings))
        assert isinstance(got, pl.DataFrame)
        if not got.height:
            return frame(schema)
        return got.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])

    return Inputs(
        as_of=as_of,
        commissions=query(COMMISSIONS_SQL, COMMISSIONS),
        touches=query(TOUCHES_SQL, TOUCHES),
        identities=query(IDENTITIES_SQL, IDENTITIES),
        addresses=query(ADDRESSES_SQL, ADDRESSES),
        daily=query(DAILY_SQL, DAILY),
        affiliates=query(AFFILIATES_SQL, AFFILIATES),
    )
