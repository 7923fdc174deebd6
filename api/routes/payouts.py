"""Payouts: the program's minimums, batches, their export files and paying them; and for
reconciliation, the merchant's own daily totals and the differences found. The logic is
api/payouts.py; docs/payouts.md explains batches, files and why paying never pays twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from api import payouts
from api.deps import (
    ERROR_RESPONSES,
    ErrorDetail,
    PrincipalDep,
    ScopeDep,
    StateDep,
    StrictBody,
    require,
)
from api.payouts import (
    BatchDetail,
    BatchPage,
    ExportFormat,
    MerchantDay,
    PayoutSettings,
    PayResult,
    ReconciliationDifference,
)
from api.routes.conversions import RequiredMoney
from rastro.money import MAX_MINOR, parse_currency, to_minor

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)

_ADMIN = require("admin")
_NOT_BUILT: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorDetail, "description": "The ledger has not been built yet"}
}
_NO_BATCH: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such batch in the caller's tenant"}
}
# Payments are recorded after the transfer; a little clock skew is fine, a future date is not.
_FUTURE_TOLERANCE = timedelta(minutes=5)
_FIRST_REPORTED_DAY = date(2000, 1, 1)

BatchId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _currency(value: str) -> str:
    code = parse_currency(value)
    assert code is not None
    return code


Currency = Annotated[
    str,
    AfterValidator(_currency),
    Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217", examples=["BRL"]),
]


def _not_found(batch_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no payout batch {batch_id!r}")


# -- settings -------------------------------------------------------------------------------------


class MinimumSet(StrictBody):
    currency: Currency
    minimum_minor: int = Field(
        ge=0, le=MAX_MINOR, strict=True, description="In minor units: 5000 = R$ 50.00"
    )


class PayoutSettingsUpdate(StrictBody):
    minimums: list[MinimumSet] = Field(
        min_length=1,
        max_length=200,
        description="The currencies to set; currencies not listed keep their minimum",
        examples=[[{"currency": "BRL", "minimum_minor": 10000}]],
    )

    @field_validator("minimums")
    @classmethod
    def _one_per_currency(cls, minimums: list[MinimumSet]) -> list[MinimumSet]:
        currencies = [m.currency for m in minimums]
        if len(currencies) != len(set(currencies)):
            raise ValueError("each currency may be listed once")
        return minimums


@router.get(
    "/payout-settings",
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="The program's minimum payout per currency",
)
def get_payout_settings(scope: ScopeDep) -> PayoutSettings:
    """An affiliate's approved balance in a currency is paid once it reaches that currency's
    minimum; smaller balances wait for a later batch. Currencies not listed use
    `default_minimum_minor`."""
    return payouts.payout_settings(scope)


@router.put(
    "/payout-settings",
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="Set the minimum payout of one or more currencies",
)
def put_payout_settings(
    body: PayoutSettingsUpdate, scope: ScopeDep, principal: PrincipalDep
) -> PayoutSettings:
    """Sets each currency listed (the others keep theirs) and answers with every setting.
    Applies to the batches prepared from now on. Audited."""
    minimums = {m.currency: m.minimum_minor for m in body.minimums}
    return payouts.set_minimums(scope, principal, minimums)


# -- batches --------------------------------------------------------------------------------------


@router.post(
    "/payouts/batches",
    status_code=status.HTTP_201_CREATED,
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="Prepare a payout batch now",
    responses={
        409: {"model": ErrorDetail, "description": "Nothing reaches the minimum: no batch"},
        **_NOT_BUILT,
    },
)
def create_batch(scope: ScopeDep, principal: PrincipalDep) -> BatchDetail:
    """A batch of every affiliate's approved, unpaid commissions per currency whose sum
    reaches the currency's minimum, with the SQL of the monthly batch (pipelines/payouts.py).
    Approved means approved in the ledger's last build, and not rejected or held since.
    Affiliates without payout details are listed as `blocked` and are neither exported nor
    paid until they set them. Audited."""
    try:
        return payouts.prepare_batch(scope, principal)
    except payouts.NothingToPay as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


@router.get(
    "/payouts/batches",
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="List payout batches, newest first",
)
def list_batches(
    scope: ScopeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str, Query(max_length=200, description="A previous page's next_after")] = "",
) -> BatchPage:
    """The monthly batches (id `YYYY-MM`) and those prepared through the API (a UUID), with
    their totals per currency and whether they are paid."""
    try:
        return payouts.list_batches(scope, limit, after)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.get(
    "/payouts/batches/{batch_id}",
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="One payout batch, row by row",
    responses=_NO_BATCH,
)
def get_batch(scope: ScopeDep, batch_id: BatchId) -> BatchDetail:
    """Per affiliate and currency: the amount when prepared, its commissions, the payout
    method, the payout id (the reference in export files), whether it is paid, and what
    paying it now would pay (`payable_minor`: commissions paid by another batch since are
    left out)."""
    found = payouts.batch(scope, batch_id)
    if found is None:
        raise _not_found(batch_id)
    return found


@router.get(
    "/payouts/batches/{batch_id}/export",
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="The batch's transfers as a CSV file for Pix, bank transfers or PayPal",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "The CSV (docs/payouts.md has every column). `X-Rastro-Rows`: "
            "transfers in it; `X-Rastro-Excluded`: unpaid rows of this method left out (no "
            "usable payout details, or another currency)",
        },
        **_NO_BATCH,
    },
)
def export_batch(
    scope: ScopeDep,
    state: StateDep,
    principal: PrincipalDep,
    batch_id: BatchId,
    export_format: Annotated[
        ExportFormat,
        Query(
            alias="format",
            description="pix: Pix transfers (BRL); bank_transfer: Brazilian bank transfers "
            "(BRL); paypal: PayPal Payouts' bulk file (one currency per file)",
        ),
    ],
    currency: Annotated[
        str | None, Query(description="Required for paypal when the batch has several")
    ] = None,
) -> Response:
    """The rows still unpaid whose affiliate is paid by this method, each for what is still
    unpaid of it, with the row's payout id as the transfer's reference. Exporting writes
    nothing but an audit entry: a file can be exported again; pay the batch once the
    transfers are made."""
    try:
        asked = _currency(currency) if currency is not None else None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"currency {error}") from None
    try:
        exported = payouts.export_batch(
            scope, state.vault, principal, batch_id, export_format, asked
        )
    except payouts.ExportRefused as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    if exported is None:
        raise _not_found(batch_id)
    return Response(
        exported.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{exported.filename}"',
            "X-Rastro-Rows": str(exported.rows),
            "X-Rastro-Excluded": str(exported.excluded),
        },
    )


class PayBody(StrictBody):
    affiliate_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="Pay only these affiliates' rows (default: every row with payout details)",
    )
    paid_at: AwareDatetime | None = Field(
        None, description="When the transfers were made (default: now); not in the future"
    )
    reference: str = Field(
        "", max_length=200, description="Your reference of the transfers (a bank batch id)"
    )

    @model_validator(mode="after")
    def _not_in_the_future(self) -> PayBody:
        if self.paid_at is not None and self.paid_at > datetime.now(UTC) + _FUTURE_TOLERANCE:
            raise ValueError("paid_at is in the future: record a payment once it is made")
        return self


@router.post(
    "/payouts/batches/{batch_id}/pay",
    dependencies=[_ADMIN],
    tags=["payouts"],
    summary="Record the batch's transfers as made",
    responses=_NO_BATCH,
)
def pay_batch(
    scope: ScopeDep,
    principal: PrincipalDep,
    batch_id: BatchId,
    body: Annotated[
        PayBody | None,
        Body(
            openapi_examples={
                "all": {"summary": "Every row with payout details", "value": {}},
                "some": {
                    "summary": "Two affiliates, paid yesterday, with the bank's reference",
                    "value": {
                        "affiliate_ids": [
                            "0197b8fb-d000-714a-9dd8-e1b7a8687fca",
                            "0197b8fb-d000-7b50-a55e-7a144b70992e",
                        ],
                        "paid_at": "2026-11-27T15:00:00-03:00",
                        "reference": "itau-lote-2026-11-27",
                    },
                },
            }
        ),
    ] = None,
) -> PayResult:
    """Writes a payout item per commission still unpaid in the rows paid (those with payout
    details), which the ledger books as payments at its next build. Idempotent: a commission
    already paid by any payout is never paid again, so calling again answers 200 with the
    rows under `already_paid` and nothing under `newly_paid`; two calls at once are
    serialized. Each payout written is audited (`payout.paid`)."""
    body = body or PayBody()
    paid_at = (body.paid_at or datetime.now(UTC)).astimezone(UTC)
    try:
        result = payouts.pay_batch(
            scope, principal, batch_id, body.affiliate_ids, paid_at, body.reference
        )
    except payouts.PaymentRefused as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    if result is None:
        raise _not_found(batch_id)
    return result


# -- reconciliation -------------------------------------------------------------------------------


class MerchantDayIn(StrictBody):
    day: date = Field(description="The UTC day the totals are for")
    currency: Currency
    orders: int = Field(ge=0, le=10**9, strict=True, description="Sales the merchant counts")
    gross: RequiredMoney = Field(description='Their total amount (decimal: "1234.50")')
    refunds: RequiredMoney = Field(Decimal(0), description="Refunds that day (positive)")

    @field_validator("day")
    @classmethod
    def _a_past_day(cls, day: date) -> date:
        if day > datetime.now(UTC).date():
            raise ValueError("is in the future: report a day once it is over")
        if day < _FIRST_REPORTED_DAY:
            raise ValueError(f"is before {_FIRST_REPORTED_DAY}: not an order day of this program")
        return day

    def minor(self, amount: Decimal) -> int:
        return to_minor(amount, self.currency)


class MerchantReportCreate(StrictBody):
    days: list[MerchantDayIn] = Field(min_length=1, max_length=400)

    @model_validator(mode="after")
    def _exact_and_unique(self) -> MerchantReportCreate:
        keys = [(d.day, d.currency) for d in self.days]
        if len(keys) != len(set(keys)):
            raise ValueError("each day and currency may be listed once")
        for day in self.days:
            day.minor(day.gross)  # raises for more decimals than the currency has
            day.minor(day.refunds)
        return self


class MerchantReportRecorded(BaseModel):
    days: list[MerchantDay]


@router.post(
    "/merchant-reports",
    status_code=status.HTTP_201_CREATED,
    dependencies=[require("ingest")],
    tags=["reconciliation"],
    summary="The merchant's own daily order totals, to reconcile against",
)
def create_merchant_report(
    scope: ScopeDep,
    principal: PrincipalDep,
    body: Annotated[
        MerchantReportCreate,
        Body(
            openapi_examples={
                "one_day": {
                    "summary": "Yesterday's totals from the store platform",
                    "value": {
                        "days": [
                            {
                                "day": "2026-11-27",
                                "currency": "BRL",
                                "orders": 42,
                                "gross": "12873.40",
                                "refunds": "259.90",
                            }
                        ]
                    },
                }
            }
        ),
    ],
) -> MerchantReportRecorded:
    """Per UTC day and currency: orders, gross amount and refunds as the merchant's platform
    counts them. The daily reconciliation compares them with the orders Rastro received and
    records every difference (`GET /v1/reconciliation/differences`). Sending a day again
    replaces it. Amounts are exact decimals in the currency (no float rounding)."""
    days = [
        {
            "day": d.day,
            "currency": d.currency,
            "orders": d.orders,
            "gross_minor": d.minor(d.gross),
            "refunds_minor": d.minor(d.refunds),
        }
        for d in body.days
    ]
    return MerchantReportRecorded(days=payouts.record_merchant_report(scope, principal, days))


@router.get(
    "/reconciliation/differences",
    dependencies=[require("analyst")],
    tags=["reconciliation"],
    summary="Differences the reconciliations found",
)
def list_differences(
    scope: ScopeDep,
    check_name: Annotated[
        Literal["orders_vs_reported", "ledger_vs_orders", "log_vs_warehouse"] | None, Query()
    ] = None,
    day_from: Annotated[date | None, Query(alias="from", description="First day (UTC)")] = None,
    day_to: Annotated[date | None, Query(alias="to", description="Last day (UTC)")] = None,
    latest_run_only: Annotated[
        bool, Query(description="Only each check's latest run that found any for you")
    ] = True,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[ReconciliationDifference]:
    """Newest day first. A later run that finds a difference again replaces it; one that is
    gone stays recorded, which `latest_run_only=false` shows (docs/quality.md)."""
    if day_from and day_to and day_from > day_to:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`from` is after `to`")
    return payouts.differences(scope, check_name, day_from, day_to, latest_run_only, limit)
