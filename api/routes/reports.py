"""Reports: performance by dimension (JSON or CSV), the period summary, one conversion
explained, what-if scenarios. The SQL is in api/reports.py; the metrics are defined in
docs/reports.md."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api import reports
from api.deps import (
    ERROR_RESPONSES,
    ErrorDetail,
    PrincipalDep,
    ScopeDep,
    StateDep,
    StrictBody,
    require,
)
from api.store import Tenant
from pipelines.what_if import RUNNER, Scenario
from rastro.money import parse_currency

router = APIRouter(
    prefix="/v1",
    tags=["reports"],
    responses={
        **ERROR_RESPONSES,
        503: {"model": ErrorDetail, "description": "The dbt models are not built yet"},
    },
)

_ID = r"^[A-Za-z0-9_:.-]{1,200}$"
_NOT_FOUND = {"model": ErrorDetail, "description": "No such id in your tenant"}
_CONFLICT = {"model": ErrorDetail, "description": "Too many scenarios are waiting"}

FromQuery = Annotated[
    date | None,
    Query(
        alias="from",
        description="First day, inclusive, in the tenant's time zone (default: 29 days "
        "before `to`)",
        examples=["2026-10-01"],
    ),
]
ToQuery = Annotated[
    date | None,
    Query(
        alias="to",
        description="Last day, inclusive (default: today in the tenant's time zone)",
        examples=["2026-10-31"],
    ),
]
CurrencyQuery = Annotated[
    str | None,
    Query(
        description="ISO 4217 code of the amounts (default: the tenant's currency). Amounts "
        "in different currencies are never added: ask once per currency",
        examples=["BRL"],
    ),
]
_FilterQuery = Annotated[str | None, Query(max_length=256)]


def _models_built(state: StateDep) -> None:
    """Reports read the dbt models: before their first build there is nothing to report."""
    missing = reports.REQUIRED_MODELS - state.store.scoped_columns().keys()
    if missing:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the models are not built yet in this warehouse ({', '.join(sorted(missing))}): "
            "run `rastro dbt build`, or wait for its schedule",
        )


# After the scope check, so a caller without the scope learns that first.
MODELS_BUILT = Depends(_models_built)


def _period(tenant: Tenant, first: date | None, last: date | None) -> reports.Period:
    try:
        return reports.Period.of(first, last, tenant.timezone)
    except reports.ReportError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error


def _currency(tenant: Tenant, currency: str | None) -> str:
    if currency is None:
        return tenant.default_currency
    try:
        code = parse_currency(currency)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    assert code is not None
    return code


def _report_filters(
    campaign_id: _FilterQuery = None,
    affiliate_id: _FilterQuery = None,
    link_id: _FilterQuery = None,
    country: _FilterQuery = None,
    device: _FilterQuery = None,
    sub1: _FilterQuery = None,
) -> dict[str, str]:
    """The filters both reports take, as {dimension: value} for those given."""
    given = {
        "campaign_id": campaign_id,
        "affiliate_id": affiliate_id,
        "link_id": link_id,
        "country": country,
        "device": device,
        "sub1": sub1,
    }
    return {name: value for name, value in given.items() if value is not None}


FiltersDep = Annotated[dict[str, str], Depends(_report_filters)]


_CSV_EXAMPLE = (
    "day,currency,clicks,unique_visitors,conversions,revenue,revenue_minor,commission,"
    "commission_minor,epc,epc_minor,conversion_rate\r\n"
    "2026-10-01,BRL,120,97,6,1548.90,154890,123.91,12391,1.03,103,0.05\r\n"
)


@router.get(
    "/reports/performance",
    dependencies=[require("analyst", "affiliate"), MODELS_BUILT],
    summary="Clicks, visitors, conversions, revenue, commissions, EPC and conversion rate "
    "by dimension",
    description=(
        "Groups by one or more of `day, campaign, affiliate, link, sub1..sub5, country, "
        "device` (comma-separated) over whole days of the tenant's time zone, at most 366 of "
        "them. Clicks exclude bots, HEAD requests and link previews; conversions and revenue "
        "are the payable model's credits (fct_attributions); commissions are fct_commissions. "
        "Clicks and conversions meet by dimension values: a conversion counts on its "
        "conversion day, with the link, sub-ids, country and device of its credited touch. "
        "Every amount is in one currency (`currency`); `other_currencies` lists the others "
        "with conversions in the period. `format=csv` (or `Accept: text/csv`) streams every "
        "row as CSV, amounts both as decimals of the currency and in minor units. Affiliate "
        "keys see only their own rows. docs/reports.md defines every metric."
    ),
    response_model=reports.PerformanceReport,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}},
            "description": "The report: JSON, or CSV with `format=csv`",
        }
    },
)
def performance(
    request: Request,
    scope: ScopeDep,
    filters: FiltersDep,
    first: FromQuery = None,
    last: ToQuery = None,
    group_by: Annotated[
        str,
        Query(
            description="Comma-separated dimensions: day, campaign, affiliate, link, "
            "sub1..sub5, country, device; empty: one row of totals",
            examples=["day,affiliate"],
            max_length=200,
        ),
    ] = "",
    currency: CurrencyQuery = None,
    sort: Annotated[
        str,
        Query(
            description="A grouped dimension or a metric, `-` first for descending; ties are "
            "broken by the dimensions in order",
            examples=["-commission_minor"],
            max_length=40,
        ),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=reports.MAX_PAGE_ROWS)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="csv: every row (limit and offset ignored), streamed"),
    ] = None,
) -> Any:
    tenant = scope.tenant()
    period = _period(tenant, first, last)
    try:
        report_request = reports.ReportRequest(
            period=period,
            currency=_currency(tenant, currency),
            group_by=tuple(name.strip() for name in group_by.split(",") if name.strip()),
            filters=filters,
            sort=sort,
            limit=limit,
            offset=offset,
        )
    except reports.ReportError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        filename = f"performance-{period.first}-{period.last}.csv"
        return StreamingResponse(
            reports.csv_lines(scope, report_request),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return reports.performance(scope, report_request)


@router.get(
    "/reports/summary",
    dependencies=[require("analyst", "affiliate"), MODELS_BUILT],
    summary="Totals for a period, with the previous period of the same length",
    description=(
        "The dashboard's numbers: clicks, unique visitors, conversions, revenue, commissions, "
        "EPC and conversion rate over the period (default: the last 30 days), the same over "
        "the period of the same length just before it, and the change in percent. Same "
        "definitions and filters as /v1/reports/performance; affiliate keys see their own."
    ),
)
def summary(
    scope: ScopeDep,
    filters: FiltersDep,
    first: FromQuery = None,
    last: ToQuery = None,
    currency: CurrencyQuery = None,
) -> reports.Summary:
    tenant = scope.tenant()
    return reports.summary(
        scope, _period(tenant, first, last), _currency(tenant, currency), filters
    )


@router.get(
    "/conversions/{conversion_id}/explain",
    dependencies=[require("analyst", "affiliate"), MODELS_BUILT],
    summary="Why a conversion was credited as it was, and what it earned",
    description=(
        "The conversion's journey (every candidate touch with its time, affiliate, campaign "
        "and kind; excluded touches and why), each attribution model's shares per affiliate, "
        "the governing campaign's terms that make one model payable, the commissions with "
        "the rules that priced them (base, rate, tier, cap, amount), their ledger entries, "
        "decisions and fraud flags. Affiliate keys may explain only conversions they earn a "
        "commission on, see only their own credit lines and commissions, see other "
        "affiliates' touches without ids, and see no fraud flags. The ledger reflects "
        "decisions and payouts at the next build of the models."
    ),
    responses={404: _NOT_FOUND},
)
def explain(
    conversion_id: Annotated[str, Path(pattern=_ID)],
    scope: ScopeDep,
    principal: PrincipalDep,
    state: StateDep,
) -> reports.Explanation:
    # The whole tenant's data, read only for the journey's touches (masked for affiliates).
    tenant = state.store.for_tenant(principal.tenant_id)
    explanation = reports.explain(scope, tenant, conversion_id)
    if explanation is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no conversion {conversion_id!r} you can see (it may not be attributed yet: the "
            "models update at the next build)",
        )
    return explanation


class WhatIfCreate(StrictBody):
    campaign_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    from_: date = Field(alias="from", description="First day of conversions, inclusive")
    to: date = Field(description="Last day of conversions, inclusive, not after today")
    attribution_model: reports.AttributionModel | None = Field(
        None, description="The payable model to use instead of the campaign's"
    )
    attribution_window_days: int | None = Field(
        None, ge=1, le=365, description="The attribution window to use instead of the campaign's"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "campaign_id": "0197b8fb-d000-7b71-a120-e5ff68c06fbf",
                    "from": "2026-08-01",
                    "to": "2026-10-31",
                    "attribution_model": "linear",
                    "attribution_window_days": 14,
                }
            ]
        }
    )

    @model_validator(mode="after")
    def _varies_something(self) -> WhatIfCreate:
        if self.attribution_model is None and self.attribution_window_days is None:
            raise ValueError("give attribution_model, attribution_window_days or both")
        return self


class WhatIfAccepted(BaseModel):
    run_id: str
    status: Literal["queued"]
    url: str = Field(description="Where to follow the run")


@router.post(
    "/reports/what-if",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[require("analyst"), MODELS_BUILT],
    summary="Start a what-if scenario: a campaign's commissions under another model or window",
    description=(
        "Recomputes a past period's commissions with the campaign's payable attribution model "
        "and/or window replaced, by the production dbt models themselves (built into a "
        "scratch database, then dropped), and compares them with the actual ones. Answers "
        "202 with a run id at once; the run goes queued -> running -> done | failed (follow it "
        "at GET /v1/reports/what-if/{run_id}). Scenarios run one at a time per API process."
    ),
    responses={404: _NOT_FOUND, 409: _CONFLICT},
)
def start_what_if(
    body: WhatIfCreate, scope: ScopeDep, principal: PrincipalDep, response: Response
) -> WhatIfAccepted:
    if not reports.campaign_exists(scope, body.campaign_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {body.campaign_id!r}")
    period = _period(scope.tenant(), body.from_, body.to)
    if period.last > reports.today(period.timezone):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "a scenario replays the past: `to` is after today",
        )
    if not RUNNER.has_room():
        raise HTTPException(
            status.HTTP_409_CONFLICT, "too many scenarios are waiting; try again in a few minutes"
        )
    parameters = reports.WhatIfParameters(
        campaign_id=body.campaign_id,
        period=reports.PeriodPublic.of(period),
        start=period.start,
        end=period.end,
        attribution_model=body.attribution_model,
        attribution_window_days=body.attribution_window_days,
    )
    run = reports.queue_what_if(scope, principal, parameters)
    scenario = Scenario(
        campaign_id=body.campaign_id,
        start=period.start,
        end=period.end,
        attribution_model=body.attribution_model,
        window_days=body.attribution_window_days,
    )
    RUNNER.submit(scope, run.run_id, scenario, run.updated_at)
    url = f"/v1/reports/what-if/{run.run_id}"
    response.headers["Location"] = url
    return WhatIfAccepted(run_id=run.run_id, status="queued", url=url)


@router.get(
    "/reports/what-if/{run_id}",
    dependencies=[require("analyst"), MODELS_BUILT],
    summary="A what-if scenario's status and, when done, its result",
    description=(
        "`result` (when `status` is done): per currency, the campaign's actual and scenario "
        "commission totals and their difference, the conversions counted on each side, the "
        "same per affiliate, and `all_campaigns`, the tenant's totals over every campaign "
        "(moving one campaign's credit can move commissions priced by another's terms)."
    ),
    responses={404: _NOT_FOUND},
)
def get_what_if(run_id: Annotated[str, Path(pattern=_ID)], scope: ScopeDep) -> reports.WhatIfRun:
    run = reports.what_if_run(scope, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no what-if run {run_id!r}")
    return run
