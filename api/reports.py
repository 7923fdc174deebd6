"""Reports: performance metrics by dimension, the period summary, one conversion explained,
and what-if scenarios. This module holds the SQL; api/routes/reports.py is the HTTP side.
docs/reports.md defines every metric and where each number comes from.

Every read goes through the caller's `TenantScope`, so the warehouse itself limits it to the
caller's tenant and, for an affiliate, to the rows of every table with an affiliate_id
column. The tables read here are chosen with that in mind: clicks, links, fct_attributions,
fct_commissions, int_attribution__journeys and fraud_flags carry affiliate_id; the ones that
do not (fct_conversion_journeys, int_conversions__current) are read for an affiliate only
for a conversion it is known to earn a commission on. A commission's status, ledger and
decisions come from api/review.py, which decides them for the review queue too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from api import review
from api.store import Principal, TenantScope, UtcDatetime
from pipelines.what_if import WhatIfResult
from rastro.ids import uuid7
from rastro.money import CURRENCY_EXPONENTS

MAX_RANGE_DAYS = 366
# Days a period may cover: the warehouse's DateTime64 spans 1900..2299; Rastro's data none of
# it before 2000.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)
DEFAULT_RANGE_DAYS = 30
MAX_PAGE_ROWS = 1000
CSV_PAGE_ROWS = 10_000

# Dimension name -> column of the report's unified rows (see _unified_rows).
DIMENSIONS: dict[str, str] = {
    "day": "day",
    "campaign": "campaign_id",
    "affiliate": "affiliate_id",
    "link": "link_id",
    "sub1": "sub1",
    "sub2": "sub2",
    "sub3": "sub3",
    "sub4": "sub4",
    "sub5": "sub5",
    "country": "country",
    "device": "device",
}
# The dimensions a conversion takes from its credited touch (the rest come with the credit).
TOUCH_COLUMNS = ("link_id", "sub1", "sub2", "sub3", "sub4", "sub5", "country", "device")
FILTERS = ("campaign_id", "affiliate_id", "link_id", "country", "device", "sub1")
METRICS = (
    "clicks",
    "unique_visitors",
    "conversions",
    "revenue_minor",
    "commission_minor",
    "epc_minor",
    "conversion_rate",
)
# How each sortable metric is ordered in SQL; ratios without clicks sort last.
_METRIC_ORDER = {
    "clicks": "clicks",
    "unique_visitors": "unique_visitors",
    "conversions": "conversions",
    "revenue_minor": "revenue_minor",
    "commission_minor": "commission_minor",
    "epc_minor": "if(clicks = 0, NULL, commission_minor / clicks)",
    "conversion_rate": "if(clicks = 0, NULL, conversions / clicks)",
}
# The dbt models the reports read (api/review.py's included): until dbt has built them the
# API answers 503.
REQUIRED_MODELS = frozenset(
    {
        "int_conversions__current",
        "int_touchpoints__evaluated",
        "int_attribution__journeys",
        "fct_attributions",
        "fct_conversion_journeys",
        "fct_commissions",
        "int_commission_events__replayed",
        "fct_ledger_entries",
    }
)
AttributionModel = Literal[
    "first_click", "last_click", "linear", "time_decay", "position_based", "data_driven"
]
ATTRIBUTION_MODELS: tuple[str, ...] = get_args(AttributionModel)


class ReportError(ValueError):
    """A report request that cannot be answered as asked (the API answers 422)."""


# -- periods -------------------------------------------------------------------------------------


def today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Period:
    """Whole days `first`..`last` (inclusive) in a time zone: the tenant's, so that "a day"
    is the merchant's day."""

    first: date
    last: date
    timezone: str

    @classmethod
    def of(cls, first: date | None, last: date | None, timezone: str) -> Period:
        """The period asked for: `last` defaults to today, `first` to DEFAULT_RANGE_DAYS
        days before and including `last`."""
        last = last or today(timezone)
        first = first or last - timedelta(DEFAULT_RANGE_DAYS - 1)
        if first > last:
            raise ReportError(f"from ({first}) is after to ({last})")
        if first < FIRST_DAY or last > LAST_DAY:
            raise ReportError(f"days must be between {FIRST_DAY} and {LAST_DAY}")
        if (last - first).days + 1 > MAX_RANGE_DAYS:
            raise ReportError(
                f"the period is {(last - first).days + 1} days; at most {MAX_RANGE_DAYS}"
            )
        return cls(first, last, timezone)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def start(self) -> datetime:
        """The first instant of the period, in UTC."""
        return datetime.combine(self.first, time(), ZoneInfo(self.timezone)).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the period, in UTC (exclusive)."""
        following = self.last + timedelta(1)
        return datetime.combine(following, time(), ZoneInfo(self.timezone)).astimezone(UTC)

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(self.first - timedelta(self.days), self.first - timedelta(1), self.timezone)


class PeriodPublic(BaseModel):
    from_: date = Field(alias="from", description="First day (inclusive)")
    to: date = Field(description="Last day (inclusive)")
    timezone: str = Field(description="The tenant's time zone: days are its calendar days")

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def of(cls, period: Period) -> PeriodPublic:
        return cls(from_=period.first, to=period.last, timezone=period.timezone)


# -- money ---------------------------------------------------------------------------------------


def decimal_text(minor: int, currency: str) -> str:
    """Minor units as the currency's decimal text: 12345 BRL -> "123.45", 500 JPY -> "500"."""
    exponent = CURRENCY_EXPONENTS[currency]
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


def _per_click(amount_minor: int, clicks: int) -> int | None:
    """amount / clicks rounded half to even to the minor unit, exactly (no float)."""
    if clicks == 0:
        return None
    ratio = Decimal(amount_minor) / Decimal(clicks)
    return int(ratio.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _rate(conversions: int, clicks: int) -> float | None:
    return None if clicks == 0 else round(conversions / clicks, 6)


# -- the performance report ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRequest:
    period: Period
    currency: str
    group_by: tuple[str, ...] = ()
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = ""  # a dimension or metric, "-" first for descending; empty: by dimensions
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.group_by if name not in DIMENSIONS]
        if unknown:
            raise ReportError(
                f"unknown dimension {', '.join(unknown)}: group_by takes {', '.join(DIMENSIONS)}"
            )
        if len(set(self.group_by)) != len(self.group_by):
            raise ReportError("a dimension appears twice in group_by")
        key = self.sort.removeprefix("-")
        if key and key not in self.group_by and key not in METRICS:
            raise ReportError(
                f"cannot sort by {key!r}: sort by a grouped dimension "
                f"({', '.join(self.group_by) or 'none'}) or a metric ({', '.join(METRICS)})"
            )
        unknown = [name for name in self.filters if name not in FILTERS]
        if unknown:
            raise ReportError(f"unknown filter {', '.join(unknown)}: filters are {FILTERS}")


class PerformanceRow(BaseModel):
    """One group of the report: its dimension values (null when not grouped by that
    dimension), labels for the ids, and the metrics."""

    day: date | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    affiliate_id: str | None = None
    affiliate_name: str | None = None
    link_id: str | None = None
    link_code: str | None = None
    sub1: str | None = None
    sub2: str | None = None
    sub3: str | None = None
    sub4: str | None = None
    sub5: str | None = None
    country: str | None = None
    device: str | None = None
    clicks: int = Field(description="Clicks on affiliate links, bots and previews excluded")
    unique_visitors: int = Field(description="Distinct visitors (tracking cookie) among them")
    conversions: int = Field(description="Conversions with a payable credit in the group")
    revenue_minor: int = Field(description="Order amounts credited (payable model), minor units")
    commission_minor: int = Field(description="Commissions earned (fct_commissions), minor units")
    epc_minor: int | None = Field(
        description="Commission per click, rounded half to even; null without clicks"
    )
    conversion_rate: float | None = Field(description="conversions / clicks; null without clicks")


class PerformanceReport(BaseModel):
    period: PeriodPublic
    currency: str = Field(description="ISO 4217 code of every *_minor amount")
    other_currencies: list[str] = Field(
        description="Currencies with conversions in the period not in this report (ask for "
        "each with `currency`): amounts in different currencies are never added"
    )
    group_by: list[str]
    total_rows: int = Field(description="Groups in the whole report, before limit and offset")
    limit: int
    offset: int
    rows: list[PerformanceRow]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period": {
                        "from": "2026-10-01",
                        "to": "2026-10-31",
                        "timezone": "America/Sao_Paulo",
                    },
                    "currency": "BRL",
                    "other_currencies": [],
                    "group_by": ["day", "affiliate"],
                    "total_rows": 1,
                    "limit": 100,
                    "offset": 0,
                    "rows": [
                        {
                            "day": "2026-10-01",
                            "affiliate_id": "0197b8fb-d000-772a-8ac9-89f43ab706a2",
                            "affiliate_name": "Blog da Ana",
                            "clicks": 120,
                            "unique_visitors": 97,
                            "conversions": 6,
                            "revenue_minor": 154890,
                            "commission_minor": 12391,
                            "epc_minor": 103,
                            "conversion_rate": 0.05,
                        }
                    ],
                }
            ]
        }
    )


def _unified_rows(request: ReportRequest) -> str:
    """One row per counted click and one per payable credit, with the same columns, so that
    clicks and conversions meet by dimension values (never by row): a conversion's day is
    its conversion day, and its link, sub-ids, country and device are those of its credited
    touch (the affiliate's latest touch in the journey: a click, or a coupon's link)."""
    needs_touch = any(DIMENSIONS[name] in TOUCH_COLUMNS for name in request.group_by) or any(
        name in TOUCH_COLUMNS for name in request.filters
    )
    if needs_touch:
        touch_columns = ", ".join(f"touch.{column} AS {column}" for column in TOUCH_COLUMNS)
        touch_join = """
            LEFT JOIN (
                SELECT conversion_id, affiliate_id,
                       argMax(touch_id, (touched_at, touch_id)) AS touch_id
                FROM int_attribution__journeys
                WHERE converted_at >= {start:DateTime64(3)} AND converted_at < {end:DateTime64(3)}
                GROUP BY conversion_id, affiliate_id
            ) AS credited
                ON credited.conversion_id = credit.conversion_id
                AND credited.affiliate_id = credit.affiliate_id
            LEFT JOIN (
                SELECT concat('click:', click_id) AS touch_id,
                       argMax(link_id, ts) AS link_id,
                       argMax(sub1, ts) AS sub1, argMax(sub2, ts) AS sub2,
                       argMax(sub3, ts) AS sub3, argMax(sub4, ts) AS sub4,
                       argMax(sub5, ts) AS sub5,
                       argMax(country, ts) AS country, argMax(device_type, ts) AS device
                FROM clicks FINAL
                WHERE ts < {end:DateTime64(3)} AND click_id IN (
                    SELECT substring(touch_id, 7) FROM int_attribution__journeys
                    WHERE converted_at >= {start:DateTime64(3)}
                      AND converted_at < {end:DateTime64(3)}
                      AND startsWith(touch_id, 'click:'))
                GROUP BY click_id
                UNION ALL
                -- A coupon touch has its link's sub-ids, and no country or device.
                SELECT concat('coupon:', upper(code)), id, sub1, sub2, sub3, sub4, sub5, '', ''
                FROM links FINAL
                WHERE kind = 'coupon' AND is_deleted = 0
            ) AS touch ON touch.touch_id = credited.touch_id"""
    else:
        touch_columns = ", ".join(f"'' AS {column}" for column in TOUCH_COLUMNS)
        touch_join = ""
    return f"""
        SELECT
            'click' AS kind,
            day,
            first.1 AS campaign_id,
            first.2 AS affiliate_id,
            first.3 AS link_id,
            first.4 AS sub1, first.5 AS sub2, first.6 AS sub3, first.7 AS sub4, first.8 AS sub5,
            first.9 AS country,
            first.10 AS device,
            first.11 AS visitor,
            '' AS conversion_id,
            toInt64(0) AS credited_minor,
            toInt64(0) AS earned_minor
        FROM (
            -- A repeat click that reused its click id (same visitor and link within the
            -- dedup window) is one click, on the day of its first event.
            SELECT
                toDate(min(ts), {{tz:String}}) AS day,
                argMin(
                    (campaign_id, affiliate_id, link_id, sub1, sub2, sub3, sub4, sub5, country,
                     device_type,
                     -- A visitor is its tracking cookie, or the click itself when it carried
                     -- none (as the identity graph's click anchor).
                     if(cookie_id != '', cookie_id, click_id)),
                    ts
                ) AS first
            FROM clicks FINAL
            WHERE ts >= {{start:DateTime64(3)}} AND ts < {{end:DateTime64(3)}}
              AND NOT (is_bot OR is_head OR is_preview)
              AND affiliate_id != ''
            GROUP BY click_id
        )

        UNION ALL

        SELECT
            'conversion',
            toDate(credit.converted_at, {{tz:String}}),
            credit.campaign_id,
            credit.affiliate_id,
            {touch_columns},
            '',
            credit.conversion_id,
            credit.credited_amount_minor,
            commission.commission_minor
        FROM fct_attributions AS credit
        LEFT JOIN (
            SELECT conversion_id, affiliate_id, commission_minor
            FROM fct_commissions
            WHERE converted_at >= {{start:DateTime64(3)}} AND converted_at < {{end:DateTime64(3)}}
        ) AS commission
            ON commission.conversion_id = credit.conversion_id
            AND commission.affiliate_id = credit.affiliate_id
        {touch_join}
        WHERE credit.is_payable = 1 AND credit.share > 0 AND credit.currency = {{currency:String}}
          AND credit.converted_at >= {{start:DateTime64(3)}}
          AND credit.converted_at < {{end:DateTime64(3)}}
    """


def _report_sql(request: ReportRequest, paged: bool) -> str:
    columns = [DIMENSIONS[name] for name in request.group_by]
    where = " AND ".join(f"{name} = {{filter_{name}:String}}" for name in request.filters)
    key = request.sort.removeprefix("-")
    order = []
    if key:
        expression = _METRIC_ORDER.get(key, DIMENSIONS.get(key, key))
        direction = "DESC" if request.sort.startswith("-") else "ASC"
        order.append(f"{expression} {direction} NULLS LAST")
    # Every dimension breaks ties, so that pages never overlap or skip a group.
    order += columns
    return f"""
        SELECT
            {"".join(f"{column}, " for column in columns)}
            countIf(kind = 'click') AS clicks,
            uniqExactIf(visitor, kind = 'click') AS unique_visitors,
            uniqExactIf(conversion_id, kind = 'conversion') AS conversions,
            toInt64(sum(credited_minor)) AS revenue_minor,
            toInt64(sum(earned_minor)) AS commission_minor,
            count() OVER () AS total_rows
        FROM ({_unified_rows(request)})
        {f"WHERE {where}" if where else ""}
        {f"GROUP BY {', '.join(columns)}" if columns else ""}
        {f"ORDER BY {', '.join(order)}" if order else ""}
        {"LIMIT {limit:UInt32} OFFSET {offset:UInt32}" if paged else ""}
    """


def _parameters(request: ReportRequest) -> dict[str, Any]:
    return {
        "tz": request.period.timezone,
        "start": request.period.start,
        "end": request.period.end,
        "currency": request.currency,
        **{f"filter_{name}": value for name, value in request.filters.items()},
    }


def _labels(scope: TenantScope, rows: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Names for the campaign, affiliate and link ids on these rows."""
    labels: dict[str, dict[str, str]] = {"campaign_id": {}, "affiliate_id": {}, "link_id": {}}
    queries = {
        "campaign_id": "SELECT campaign_id AS id, argMax(name, terms_version) AS label "
        "FROM campaigns FINAL WHERE is_deleted = 0 AND campaign_id IN {ids:Array(String)} "
        "GROUP BY campaign_id",
        "affiliate_id": "SELECT id, display_name AS label FROM affiliates FINAL "
        "WHERE id IN {ids:Array(String)}",
        "link_id": "SELECT id, code AS label FROM links FINAL WHERE id IN {ids:Array(String)}",
    }
    for column, sql in queries.items():
        ids = sorted({row[column] for row in rows if row.get(column)})
        if ids:
            labels[column] = {r["id"]: r["label"] for r in scope.rows(sql, ids=ids)}
    return labels


def _public_rows(scope: TenantScope, rows: list[dict[str, Any]]) -> list[PerformanceRow]:
    labels = _labels(scope, rows)
    result = []
    for row in rows:
        values = {key: value for key, value in row.items() if key != "total_rows"}
        for column, name in (
            ("campaign_id", "campaign_name"),
            ("affiliate_id", "affiliate_name"),
            ("link_id", "link_code"),
        ):
            if column in row:
                values[name] = labels[column].get(row[column], "")
        values["epc_minor"] = _per_click(row["commission_minor"], row["clicks"])
        values["conversion_rate"] = _rate(row["conversions"], row["clicks"])
        result.append(PerformanceRow(**values))
    return result


def other_currencies(scope: TenantScope, request: ReportRequest) -> list[str]:
    rows = scope.rows(
        "SELECT DISTINCT currency FROM fct_attributions WHERE is_payable = 1 "
        "AND converted_at >= {start:DateTime64(3)} AND converted_at < {end:DateTime64(3)} "
        "AND currency != {currency:String} ORDER BY currency",
        start=request.period.start,
        end=request.period.end,
        currency=request.currency,
    )
    return [row["currency"] for row in rows]


def performance(scope: TenantScope, request: ReportRequest) -> PerformanceReport:
    rows = scope.rows(
        _report_sql(request, paged=True),
        limit=request.limit,
        offset=request.offset,
        **_parameters(request),
    )
    total = int(rows[0]["total_rows"]) if rows else 0
    if not rows and request.offset:
        # A page past the end: the total still says how many there are.
        total = int(
            scope.rows(
                f"SELECT count() AS n FROM ({_report_sql(request, paged=False)})",
                **_parameters(request),
            )[0]["n"]
        )
    return PerformanceReport(
        period=PeriodPublic.of(request.period),
        currency=request.currency,
        other_currencies=other_currencies(scope, request),
        group_by=list(request.group_by),
        total_rows=total,
        limit=request.limit,
        offset=request.offset,
        rows=_public_rows(scope, rows),
    )


def csv_columns(request: ReportRequest) -> list[str]:
    """The CSV header: the dimensions and their labels, then every metric, amounts both as
    the currency's decimal text and in minor units."""
    columns: list[str] = []
    for name in request.group_by:
        column = DIMENSIONS[name]
        columns.append(column)
        label = {"campaign_id": "campaign_name", "affiliate_id": "affiliate_name"}.get(column)
        if column == "link_id":
            label = "link_code"
        if label:
            columns.append(label)
    return [
        *columns,
        "currency",
        "clicks",
        "unique_visitors",
        "conversions",
        "revenue",
        "revenue_minor",
        "commission",
        "commission_minor",
        "epc",
        "epc_minor",
        "conversion_rate",
    ]


def csv_records(scope: TenantScope, request: ReportRequest) -> Iterator[list[str]]:
    """Every row of the report (limit and offset ignored), in the CSV's columns, read in
    pages of CSV_PAGE_ROWS so a large export never sits in memory whole."""
    columns = csv_columns(request)
    offset = 0
    while True:
        rows = scope.rows(
            _report_sql(request, paged=True),
            limit=CSV_PAGE_ROWS,
            offset=offset,
            **_parameters(request),
        )
        for row in _public_rows(scope, rows):
            values = row.model_dump()
            currency = request.currency
            values["currency"] = currency
            values["revenue"] = decimal_text(row.revenue_minor, currency)
            values["commission"] = decimal_text(row.commission_minor, currency)
            values["epc"] = "" if row.epc_minor is None else decimal_text(row.epc_minor, currency)
            yield ["" if values[c] is None else str(values[c]) for c in columns]
        if len(rows) < CSV_PAGE_ROWS:
            return
        offset += CSV_PAGE_ROWS


def csv_lines(scope: TenantScope, request: ReportRequest) -> Iterator[str]:
    """The whole report as CSV text, in chunks of a few hundred lines, header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(csv_columns(request))
    yield flush()
    for count, record in enumerate(csv_records(scope, request), start=1):
        writer.writerow(record)
        if count % 500 == 0:
            yield flush()
    yield flush()


# -- the summary ---------------------------------------------------------------------------------


class Totals(BaseModel):
    clicks: int
    unique_visitors: int
    conversions: int
    revenue_minor: int
    commission_minor: int
    epc_minor: int | None
    conversion_rate: float | None


class Summary(BaseModel):
    currency: str
    other_currencies: list[str]
    period: PeriodPublic
    previous_period: PeriodPublic
    totals: Totals
    previous_totals: Totals
    change_percent: dict[str, float | None] = Field(
        description="Per metric, (this period - previous) / previous x 100, rounded to 0.1; "
        "null when the previous period is 0 or the metric has no value"
    )
    models_built_at: UtcDatetime | None = Field(
        description="When the models were last built: conversions, revenue and commissions "
        "are as of then (clicks are live)"
    )


def _totals(scope: TenantScope, request: ReportRequest) -> Totals:
    rows = scope.rows(_report_sql(request, paged=False), **_parameters(request))
    row = _public_rows(scope, rows)[0]
    return Totals(**row.model_dump(include=set(Totals.model_fields)))


def summary(scope: TenantScope, period: Period, currency: str, filters: dict[str, str]) -> Summary:
    current = ReportRequest(period=period, currency=currency, filters=filters)
    previous = ReportRequest(period=period.previous(), currency=currency, filters=filters)
    totals, previous_totals = _totals(scope, current), _totals(scope, previous)
    change: dict[str, float | None] = {}
    for metric in METRICS:
        now, before = getattr(totals, metric), getattr(previous_totals, metric)
        change[metric] = (
            None if now is None or not before else round((now - before) / before * 100, 1)
        )
    return Summary(
        currency=currency,
        other_currencies=other_currencies(scope, current),
        period=PeriodPublic.of(period),
        previous_period=PeriodPublic.of(period.previous()),
        totals=totals,
        previous_totals=previous_totals,
        change_percent=change,
        models_built_at=last_build_at(scope),
    )


# -- one conversion explained --------------------------------------------------------------------


class Touch(BaseModel):
    """One candidate touch of the journey. For an affiliate caller, another affiliate's
    touch keeps its time, kind and outcome but not whose it is (ids are null)."""

    position: int | None = Field(
        description="Place in the journey kept (1 = first); null when not kept"
    )
    touched_at: UtcDatetime
    via: str = Field(description="click | coupon")
    touch_id: str | None = Field(description="click:<click id> or coupon:<CODE>")
    affiliate_id: str | None
    campaign_id: str | None
    campaign_terms_version: int | None
    outcome: Literal["kept", "excluded", "dropped_by_conflict_rules"]
    exclusion_reason: str = Field(
        description="Why excluded (bot, unknown_link, no_terms, inactive_campaign, outside_window, "
        "paid_hijack, velocity, self_referral, affiliate_inactive); empty otherwise"
    )
    own: bool | None = Field(None, description="For an affiliate caller: this touch is yours")


class Journey(BaseModel):
    candidate_touches: int
    eligible_touches: int
    journey_touches: int
    excluded_by_reason: dict[str, int]
    touches: list[Touch]


class Governing(BaseModel):
    campaign_id: str | None
    terms_version: int | None
    payable_model: str | None
    why: str


class Credit(BaseModel):
    affiliate_id: str
    share: float
    credited_amount_minor: int
    credited_net_minor: int
    campaign_id: str
    campaign_terms_version: int | None
    touches: int
    via: str


class ModelCredits(BaseModel):
    model: str
    is_payable: bool
    credits: list[Credit]


class RuleLine(BaseModel):
    rule_id: str
    category: str
    base_minor: int
    rate: str | None = Field(description="The rate applied (a tier's when reached); null: flat")
    tier_reached: int | None = Field(description="min_monthly_conversions of the tier reached")
    capped: bool
    amount: str = Field(description="What the rule earns for the whole order (exact decimal)")


class CommissionExplained(review.CommissionDetail):
    """A commission as the review shows it (its status now, with every decision and
    payment applied; its ledger entries and balances as of the last build; decisions;
    payments; fraud flags, never for affiliates), and how its rules priced it."""

    via: str = Field(description="click | coupon | named | renewal: how the credit came")
    prior_monthly_conversions: int = Field(
        description="The affiliate's payable conversions in the campaign earlier in the same "
        "UTC month: what tiers count"
    )
    rules: list[RuleLine] = Field(description="The rules that priced it, in their order")
    gross_amount: str = Field(description="The rules' amounts summed for the whole order")
    commission_exact: str = Field(description="gross_amount x share, before rounding")


class AffiliateFlag(review.FraudFlag):
    affiliate_id: str = Field(description="The credited affiliate the rule fired on")


class Explanation(BaseModel):
    conversion_id: str
    order_id: str
    converted_at: UtcDatetime
    kind: str
    amount_minor: int
    net_minor: int
    currency: str
    renewal_number: int
    renewal_of: str | None = Field(
        description="A renewal inherits the credit of its subscription's first payment: its "
        "conversion id"
    )
    attribution_status: str = Field(description="attributed | unattributed | named | renewal")
    journey: Journey
    governing: Governing
    models: list[ModelCredits]
    commissions: list[CommissionExplained]
    affiliate_flags: list[AffiliateFlag] | None = Field(
        description="Fraud rules that fired on the credited affiliates themselves (the flags "
        "on each commission are in `commissions`); null for affiliate callers"
    )
    ledger: str = Field(
        review.LEDGER_NOTE,
        description="The ledger's balances move at its next build; `status` applies now",
    )


def last_build_at(scope: TenantScope) -> datetime | None:
    """When dbt last rebuilt the models (every build recreates fct_commissions): what the
    marts' figures are as of. None before the first build."""
    rows = scope.rows(
        "SELECT toUnixTimestamp(metadata_modification_time) AS at FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'fct_commissions'"
    )
    return datetime.fromtimestamp(rows[0]["at"], UTC) if rows else None


def _credited(scope: TenantScope, conversion_id: str) -> bool:
    """The caller's scope sees a payable credit on the conversion (for an affiliate: its own)."""
    rows = scope.rows(
        "SELECT count() AS n FROM fct_commissions WHERE conversion_id = {id:String}",
        id=conversion_id,
    )
    return bool(rows[0]["n"])


def _touches(
    tenant: TenantScope, conversion_id: str, viewer_affiliate_id: str | None
) -> list[Touch]:
    rows = tenant.rows(
        """
        SELECT evaluated.touched_at AS touched_at, evaluated.touch_type AS via,
               evaluated.touch_id AS touch_id, evaluated.affiliate_id AS affiliate_id,
               evaluated.campaign_id AS campaign_id,
               evaluated.campaign_terms_version AS campaign_terms_version,
               evaluated.exclusion_reason AS exclusion_reason,
               kept.position AS position
        FROM int_touchpoints__evaluated AS evaluated
        LEFT JOIN (
            SELECT touch_id, position FROM int_attribution__journeys
            WHERE conversion_id = {id:String}
        ) AS kept ON kept.touch_id = evaluated.touch_id
        WHERE evaluated.conversion_id = {id:String}
        ORDER BY evaluated.touched_at, evaluated.touch_id
        """,
        id=conversion_id,
    )
    touches = []
    for row in rows:
        # Without join_use_nulls an unmatched position is 0: the touch was not kept.
        position = int(row["position"]) or None
        outcome: Literal["kept", "excluded", "dropped_by_conflict_rules"] = (
            "excluded"
            if row["exclusion_reason"]
            else "kept"
            if position
            else "dropped_by_conflict_rules"
        )
        own = None if viewer_affiliate_id is None else row["affiliate_id"] == viewer_affiliate_id
        hidden = own is False
        touches.append(
            Touch(
                position=position,
                touched_at=row["touched_at"],
                via=row["via"],
                touch_id=None if hidden else row["touch_id"],
                affiliate_id=None if hidden else row["affiliate_id"],
                campaign_id=None if hidden else row["campaign_id"],
                campaign_terms_version=None if hidden else row["campaign_terms_version"],
                outcome=outcome,
                exclusion_reason=row["exclusion_reason"],
                own=own,
            )
        )
    return touches


def _governing_why(journey: dict[str, Any], status: str) -> str:
    if status == "named":
        return "The order named its affiliate: 100% under every model."
    if status == "renewal":
        return "A renewal inherits every model's credit of its subscription's first payment."
    if not journey["governing_campaign_id"]:
        return "No eligible touch: no affiliate is credited."
    return (
        f"The last eligible touch is of campaign {journey['governing_campaign_id']}; its terms "
        f"version {journey['governing_terms_version']}, in force at the conversion, make "
        f"{journey['payable_model']} the payable model."
    )


def _models(scope: TenantScope, conversion_id: str) -> list[ModelCredits]:
    rows = scope.rows(
        "SELECT model, is_payable, affiliate_id, share, credited_amount_minor, "
        "credited_net_minor, campaign_id, campaign_terms_version, touches, via "
        "FROM fct_attributions WHERE conversion_id = {id:String} "
        "ORDER BY model, share DESC, affiliate_id",
        id=conversion_id,
    )
    by_model: dict[str, ModelCredits] = {}
    for row in rows:
        model = by_model.setdefault(
            row["model"],
            ModelCredits(model=row["model"], is_payable=bool(row["is_payable"]), credits=[]),
        )
        model.credits.append(Credit(**{key: row[key] for key in Credit.model_fields}))
    order = {name: index for index, name in enumerate(ATTRIBUTION_MODELS)}
    return sorted(by_model.values(), key=lambda m: order.get(m.model, len(order)))


def _commissions(scope: TenantScope, conversion_id: str) -> list[CommissionExplained]:
    pricing = scope.rows(
        "SELECT commission_id, via, prior_monthly_conversions, rule_ids, rule_categories, "
        "rule_bases_minor, arrayMap(r -> toString(r), rule_rates) AS rule_rates, "
        "rule_tiers_reached, rule_capped, "
        "arrayMap(a -> toString(a), rule_amounts) AS rule_amounts, "
        "toString(gross_amount) AS gross, toString(commission_exact) AS exact "
        "FROM fct_commissions WHERE conversion_id = {id:String} ORDER BY affiliate_id",
        id=conversion_id,
    )
    explained = []
    for row in pricing:
        # The review's view of the commission: one place decides status and visibility.
        detail = review.commission(scope, row["commission_id"])
        if detail is None:  # rebuilt between the two reads: shown at the next call
            continue
        rules = [
            RuleLine(
                rule_id=rule_id,
                category=category,
                base_minor=base,
                rate=rate,
                tier_reached=tier,
                capped=bool(capped),
                amount=amount,
            )
            for rule_id, category, base, rate, tier, capped, amount in zip(
                row["rule_ids"],
                row["rule_categories"],
                row["rule_bases_minor"],
                row["rule_rates"],
                row["rule_tiers_reached"],
                row["rule_capped"],
                row["rule_amounts"],
                strict=True,
            )
        ]
        explained.append(
            CommissionExplained(
                **detail.model_dump(),
                via=row["via"],
                prior_monthly_conversions=row["prior_monthly_conversions"],
                rules=rules,
                gross_amount=row["gross"],
                commission_exact=row["exact"],
            )
        )
    return explained


def _affiliate_flags(scope: TenantScope, affiliate_ids: Sequence[str]) -> list[AffiliateFlag]:
    rows = scope.rows(
        "SELECT affiliate_id, rule, severity, evidence, threshold, flagged_at "
        "FROM fraud_flags FINAL WHERE subject_kind = 'affiliate' "
        "AND affiliate_id IN {ids:Array(String)} ORDER BY flagged_at, rule, affiliate_id",
        ids=list(affiliate_ids),
    )
    for row in rows:
        row["evidence"] = json.loads(row["evidence"] or "{}")
    return [AffiliateFlag(**row) for row in rows]


def explain(scope: TenantScope, tenant: TenantScope, conversion_id: str) -> Explanation | None:
    """Everything behind one conversion's credit and commissions; None when the caller may
    not see it (unknown, another tenant's, or for an affiliate not credited to it).

    `scope` is the caller's (for an affiliate, its own rows only); `tenant` is the whole
    tenant's and is read only for the journey's touches, which an affiliate sees with other
    affiliates' ids hidden."""
    viewer = scope.affiliate_id
    if viewer is not None and not _credited(scope, conversion_id):
        return None
    journeys = scope.rows(
        "SELECT journey.conversion_id AS conversion_id, journey.order_id AS order_id, "
        "journey.converted_at AS converted_at, journey.conversion_kind AS kind, "
        "journey.renewal_number AS renewal_number, "
        "journey.candidate_touches AS candidate_touches, "
        "journey.eligible_touches AS eligible_touches, "
        "journey.journey_touches AS journey_touches, "
        "journey.excluded_by_reason AS excluded_by_reason, "
        "journey.governing_campaign_id AS governing_campaign_id, "
        "journey.governing_terms_version AS governing_terms_version, "
        "journey.payable_model AS payable_model, "
        "journey.attribution_status AS attribution_status, "
        "orders.amount_minor AS amount_minor, orders.net_minor AS net_minor, "
        "orders.currency AS currency, orders.subscription_id AS subscription_id "
        "FROM fct_conversion_journeys AS journey "
        "INNER JOIN int_conversions__current AS orders "
        "ON orders.conversion_id = journey.conversion_id "
        "WHERE journey.conversion_id = {id:String}",
        id=conversion_id,
    )
    if not journeys:
        return None
    journey = journeys[0]
    renewal_of = None
    if journey["renewal_number"] > 0 and journey["subscription_id"]:
        first = scope.rows(
            "SELECT conversion_id FROM int_conversions__current "
            "WHERE subscription_id = {subscription:String} AND renewal_number = 0 LIMIT 1",
            subscription=journey["subscription_id"],
        )
        renewal_of = first[0]["conversion_id"] if first else None
    status = journey["attribution_status"] or "unattributed"
    commissions = _commissions(scope, conversion_id)
    flags = (
        None
        if viewer is not None
        else _affiliate_flags(scope, sorted({c.affiliate_id for c in commissions}))
    )
    return Explanation(
        conversion_id=journey["conversion_id"],
        order_id=journey["order_id"],
        converted_at=journey["converted_at"],
        kind=journey["kind"],
        amount_minor=journey["amount_minor"],
        net_minor=journey["net_minor"],
        currency=journey["currency"],
        renewal_number=journey["renewal_number"],
        renewal_of=renewal_of,
        attribution_status=status,
        journey=Journey(
            candidate_touches=journey["candidate_touches"],
            eligible_touches=journey["eligible_touches"],
            journey_touches=journey["journey_touches"],
            excluded_by_reason=dict(journey["excluded_by_reason"]),
            touches=_touches(tenant, conversion_id, viewer),
        ),
        governing=Governing(
            campaign_id=journey["governing_campaign_id"],
            terms_version=journey["governing_terms_version"],
            payable_model=journey["payable_model"],
            why=_governing_why(journey, status),
        ),
        models=_models(scope, conversion_id),
        commissions=commissions,
        affiliate_flags=flags,
    )


# -- what-if runs --------------------------------------------------------------------------------


class WhatIfParameters(BaseModel):
    campaign_id: str
    period: PeriodPublic
    start: UtcDatetime = Field(description="The period's first instant, UTC")
    end: UtcDatetime = Field(description="The instant after the period, UTC (exclusive)")
    attribution_model: str | None
    attribution_window_days: int | None


class WhatIfRun(BaseModel):
    run_id: str
    campaign_id: str
    status: Literal["queued", "running", "done", "failed"]
    parameters: WhatIfParameters
    result: WhatIfResult | None = Field(
        description="When done: per currency, the actual and scenario commission totals, per "
        "affiliate, and the conversions counted (docs/reports.md)"
    )
    error: str | None = Field(description="When failed: why")
    requested_by: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


# A run not updated for this long was abandoned by a process that stopped (a restart loses
# its queue): it is reported failed rather than queued forever.
STALE_AFTER = timedelta(hours=3)


def campaign_exists(scope: TenantScope, campaign_id: str) -> bool:
    rows = scope.rows(
        "SELECT count() AS n FROM campaigns FINAL WHERE campaign_id = {id:String} "
        "AND is_deleted = 0",
        id=campaign_id,
    )
    return bool(rows[0]["n"])


def queue_what_if(
    scope: TenantScope, principal: Principal, parameters: WhatIfParameters
) -> WhatIfRun:
    """Records a queued run (the runner, pipelines/what_if.py, takes it from there)."""
    now = datetime.now(UTC)
    run = WhatIfRun(
        run_id=uuid7(),
        campaign_id=parameters.campaign_id,
        status="queued",
        parameters=parameters,
        result=None,
        error=None,
        requested_by=principal.actor_id,
        created_at=now,
        updated_at=now,
    )
    scope.write_version(
        "what_if_runs",
        {
            "run_id": run.run_id,
            "campaign_id": run.campaign_id,
            "parameters": parameters.model_dump_json(by_alias=True),
            "status": run.status,
            "result": "",
            "error": "",
            "requested_by": run.requested_by,
            "created_at": now,
        },
        now,
    )
    return run


def what_if_run(scope: TenantScope, run_id: str) -> WhatIfRun | None:
    rows = scope.rows(
        "SELECT run_id, campaign_id, parameters, status, result, error, requested_by, "
        "created_at, updated_at FROM what_if_runs FINAL WHERE run_id = {id:String}",
        id=run_id,
    )
    if not rows:
        return None
    row = rows[0]
    status, error = row["status"], row["error"] or None
    updated_at = row["updated_at"].replace(tzinfo=UTC)
    if status in ("queued", "running") and datetime.now(UTC) - updated_at > STALE_AFTER:
        status, error = "failed", "abandoned: the process running it stopped; ask again"
    return WhatIfRun(
        run_id=row["run_id"],
        campaign_id=row["campaign_id"],
        status=status,
        parameters=WhatIfParameters.model_validate_json(row["parameters"]),
        result=WhatIfResult.model_validate_json(row["result"]) if row["result"] else None,
        error=error,
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        updated_at=updated_at,
    )
