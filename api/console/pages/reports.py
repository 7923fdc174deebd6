"""Dashboards and reports: the merchant's dashboard (the period's totals and a chart by
day), the performance report by dimension with filters, its CSV, and one conversion
explained. Numbers come from api/reports.py (docs/reports.md defines each metric); the
affiliate's dashboard (pages/affiliate.py) reuses `dashboard_values` with its own scope,
which the warehouse limits to its rows."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response, StreamingResponse

from api import reports
from api.affiliates import list_affiliates
from api.campaigns import in_force
from api.console.web import PREFIX, Merchant, Page
from rastro.money import CURRENCY_EXPONENTS

router = APIRouter()

CHART_METRICS = ("clicks", "conversions", "commission_minor")
REPORT_DIMENSIONS = tuple(reports.DIMENSIONS)
PAGE_ROWS = 50


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def period_of(current: Page, first: str, last: str) -> reports.Period:
    """The period asked for in the query (days in the tenant's time zone); the default
    30 days when a date is missing or the range is not one the reports accept."""
    try:
        return reports.Period.of(_day(first), _day(last), current.timezone)
    except reports.ReportError:
        return reports.Period.of(None, None, current.timezone)


def daily_chart(current: Page, report: reports.PerformanceReport) -> dict[str, Any]:
    """Chart.js data: clicks and conversions (bars, left axis) and commissions (a line, in
    major units on the right axis: a chart needs numbers, the table has the exact money)."""
    by_day = {row.day: row for row in report.rows if row.day is not None}
    period = report.period
    days = [date.fromordinal(n) for n in range(period.from_.toordinal(), period.to.toordinal() + 1)]
    exponent = 10 ** CURRENCY_EXPONENTS[report.currency]
    return {
        "type": "bar",
        "labels": [current.fmt.day(day) for day in days],
        "datasets": [
            {
                "label": current.t("metric.clicks"),
                "data": [by_day[d].clicks if d in by_day else 0 for d in days],
            },
            {
                "label": current.t("metric.conversions"),
                "data": [by_day[d].conversions if d in by_day else 0 for d in days],
            },
            {
                "label": current.t("metric.commission_major", currency=report.currency),
                "type": "line",
                "axis": "money",
                "data": [by_day[d].commission_minor / exponent if d in by_day else 0 for d in days],
            },
        ],
        "scales": {
            "y": {"beginAtZero": True, "position": "left"},
            "money": {"beginAtZero": True, "position": "right", "grid": {"drawOnChartArea": False}},
        },
    }


def dashboard_values(current: Page, first: str = "", last: str = "") -> dict[str, Any]:
    period = period_of(current, first, last)
    summary = reports.summary(current.scope, period, current.currency, {})
    daily = reports.performance(
        current.scope,
        reports.ReportRequest(
            period=period,
            currency=current.currency,
            group_by=("day",),
            limit=reports.MAX_RANGE_DAYS,
        ),
    )
    return {
        "summary": summary,
        "chart": daily_chart(current, daily),
        "first": period.first.isoformat(),
        "last": period.last.isoformat(),
        "built_at": reports.last_build_at(current.scope),
    }


@router.get("/")
def dashboard(current: Merchant, first: str = "", last: str = "") -> Response:
    return current.render("dashboard.html", **dashboard_values(current, first, last))


def _report_request(
    current: Page, query: dict[str, str], limit: int, offset: int
) -> reports.ReportRequest:
    group_by = query["group_by"] if query["group_by"] in REPORT_DIMENSIONS else "day"
    filters = {name: query[name] for name in ("campaign_id", "affiliate_id") if query[name]}
    return reports.ReportRequest(
        period=period_of(current, query["first"], query["last"]),
        currency=current.currency,
        group_by=(group_by,),
        filters=filters,
        limit=limit,
        offset=offset,
    )


def _query(
    group_by: str, first: str, last: str, campaign_id: str, affiliate_id: str
) -> dict[str, str]:
    return {
        "group_by": group_by,
        "first": first,
        "last": last,
        "campaign_id": campaign_id,
        "affiliate_id": affiliate_id,
    }


@router.get("/reports")
def report(
    current: Merchant,
    group_by: str = "day",
    first: str = "",
    last: str = "",
    campaign_id: str = "",
    affiliate_id: str = "",
    offset: int = 0,
) -> Response:
    query = _query(group_by, first, last, campaign_id, affiliate_id)
    request = _report_request(current, query, PAGE_ROWS, max(offset, 0))
    found = reports.performance(current.scope, request)
    query.update(first=request.period.first.isoformat(), last=request.period.last.isoformat())
    next_url = prev_url = ""
    if request.offset + PAGE_ROWS < found.total_rows:
        next_url = f"{PREFIX}/reports?" + urlencode({**query, "offset": request.offset + PAGE_ROWS})
    if request.offset:
        prev_url = f"{PREFIX}/reports?" + urlencode(
            {**query, "offset": max(request.offset - PAGE_ROWS, 0)}
        )
    chart = None
    if request.group_by == ("day",):
        chart = daily_chart(
            current,
            reports.performance(
                current.scope, _report_request(current, query, reports.MAX_RANGE_DAYS, 0)
            ),
        )
    return current.render(
        "reports.html",
        report=found,
        dimension=request.group_by[0],
        dimensions=REPORT_DIMENSIONS,
        query=query,
        chart=chart,
        csv_url=f"{PREFIX}/reports.csv?" + urlencode(query),
        next_url=next_url,
        prev_url=prev_url,
        campaigns=in_force(current.scope),
        affiliates=list_affiliates(current.scope, limit=1000),
    )


@router.get("/reports.csv")
def report_csv(
    current: Merchant,
    group_by: str = "day",
    first: str = "",
    last: str = "",
    campaign_id: str = "",
    affiliate_id: str = "",
) -> Response:
    """The whole report as CSV (the API's columns: exact decimal amounts, no pages)."""
    request = _report_request(
        current, _query(group_by, first, last, campaign_id, affiliate_id), reports.CSV_PAGE_ROWS, 0
    )

    name = f"rastro-{request.group_by[0]}-{request.period.first}-{request.period.last}.csv"
    return StreamingResponse(
        reports.csv_lines(current.scope, request),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/conversions/{conversion_id}")
def explain(current: Merchant, conversion_id: str) -> Response:
    tenant = current.state.store.for_tenant(current.user.tenant_id)
    found = reports.explain(current.scope, tenant, conversion_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    return current.render("explain.html", x=found)
