"""Payouts: the program's minimums, batches of approved balances (prepared with
pipelines/payouts.py, the same SQL as the monthly Dagster asset), their export files for
Pix, Brazilian bank transfers and PayPal Payouts, and paying them (payout_items, which the
ledger books as payments at its next build). Also the merchant's own daily totals and the
differences reconciliation found. docs/payouts.md explains each part.

**Paying never pays twice.** A commission is paid at most once: paying writes a payout item
only for the commissions of the batch that have none yet, from any payout, so paying the
same batch again, or another batch listing the same commissions, pays nothing more. The
check and the write happen under an exclusive lock (a lock file in the data directory,
shared by every API worker of the host, as the idempotency index is): two workers paying at
once are serialized, and the second finds the first's items. A payout's id is a hash of
(tenant, batch, affiliate, currency), so a retried write of the same payout replaces its
items instead of adding to them (payout_items is a ReplacingMergeTree on
(tenant, commission, payout)); two items of *different* payouts for one commission would both
be booked by the ledger, which is what the lock prevents.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.affiliates import BankTransferDetails, PaypalDetails, PixDetails, payout_details
from api.review import LEDGER_NOTE, as_utc
from api.store import Principal, TenantScope, UtcDatetime
from pipelines.payouts import BATCH_COLUMNS, BATCH_SQL, DEFAULT_MINIMUM_MINOR, batch_parameters
from rastro.crypto import Vault
from rastro.ids import uuid7
from rastro.money import CURRENCY_EXPONENTS

ExportFormat = Literal["pix", "bank_transfer", "paypal"]
RowStatus = Literal["unpaid", "paid", "blocked"]
NO_DETAILS = "no payout details: the affiliate must set them before it can be exported or paid"


# -- the program's minimums ------------------------------------------------------------------------


class PayoutMinimum(BaseModel):
    currency: str = Field(examples=["BRL"])
    minimum_minor: int = Field(description="Smallest approved balance paid, in minor units")
    updated_at: UtcDatetime


class PayoutSettings(BaseModel):
    default_minimum_minor: int = Field(
        DEFAULT_MINIMUM_MINOR, description="The minimum of every currency not listed"
    )
    minimums: list[PayoutMinimum]


def payout_settings(scope: TenantScope) -> PayoutSettings:
    rows = scope.rows(
        "SELECT toString(currency) AS currency, minimum_minor, updated_at "
        "FROM payout_settings FINAL ORDER BY currency"
    )
    return PayoutSettings(minimums=[PayoutMinimum(**row) for row in rows])


def set_minimums(scope: TenantScope, actor: Principal, minimums: dict[str, int]) -> PayoutSettings:
    """Sets the minimum of each currency given (the others keep theirs); audited."""
    before = {m.currency: m.minimum_minor for m in payout_settings(scope).minimums}
    at = datetime.now(UTC)
    for currency, minimum in minimums.items():
        scope.write_version("payout_settings", {"currency": currency, "minimum_minor": minimum}, at)
    audit.record(
        scope, actor, "payout_settings.update", "payout_settings", scope.tenant_id,
        details={c: [before.get(c, DEFAULT_MINIMUM_MINOR), m] for c, m in minimums.items()},
    )  # fmt: skip
    return payout_settings(scope)


# -- batches -------------------------------------------------------------------------------------


def payout_id(tenant_id: str, batch_id: str, affiliate_id: str, currency: str) -> str:
    """The payout (one transfer) of a batch row: the same in every call, 27 characters, so it
    also serves as PayPal's Customer ID (at most 30, no spaces) and the Pix identifier."""
    key = "\x1f".join(("payout", tenant_id, batch_id, affiliate_id, currency))
    return "po_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass
class _Line:
    commission_id: str
    amount_minor: int
    paid_by: str  # the payout that paid it, '' if none
    paid_at: datetime | None


@dataclass
class _Row:
    """A row of a batch as stored, with what happened to its commissions since."""

    batch_id: str
    affiliate_id: str
    affiliate_name: str
    currency: str
    amount_minor: int
    method: str  # the affiliate's payout method now ('' when not set)
    has_details: bool
    prepared_at: datetime
    payout_id: str
    lines: list[_Line] = field(default_factory=list)

    @property
    def unpaid(self) -> list[_Line]:
        return [line for line in self.lines if not line.paid_by]

    @property
    def paid_here(self) -> list[_Line]:
        return [line for line in self.lines if line.paid_by == self.payout_id]

    @property
    def status(self) -> RowStatus:
        if not self.unpaid:
            return "paid"
        return "unpaid" if self.has_details and self.method else "blocked"


class BatchRow(BaseModel):
    affiliate_id: str
    affiliate_name: str
    currency: str
    amount_minor: int = Field(description="The approved balance when the batch was prepared")
    commission_ids: list[str]
    method: str = Field(description="The affiliate's payout method now; empty: not set")
    payout_id: str = Field(description="This row's transfer: the reference in export files")
    status: RowStatus = Field(
        description="paid: every commission is paid; blocked: unpaid and no payout details"
    )
    problem: str | None = Field(description="Why the row cannot be exported or paid")
    payable_minor: int = Field(description="What paying now pays: its commissions still unpaid")
    paid_minor: int = Field(description="What this row's payout paid")
    paid_at: UtcDatetime | None
    paid_elsewhere_commission_ids: list[str] = Field(
        description="Commissions of the row paid by another payout since it was prepared"
    )


class CurrencyTotal(BaseModel):
    currency: str
    affiliates: int
    amount_minor: int
    payable_minor: int
    paid_minor: int


class BatchSummary(BaseModel):
    batch_id: str
    prepared_at: UtcDatetime
    status: Literal["unpaid", "partly_paid", "paid"]
    affiliates: int = Field(description="Rows: affiliates x currencies")
    blocked: int = Field(description="Rows without payout details")
    totals: list[CurrencyTotal] = Field(description="Per currency: money is never summed across")


class BatchDetail(BatchSummary):
    rows: list[BatchRow]


class BatchPage(BaseModel):
    items: list[BatchSummary]
    next_after: str | None = Field(description="Pass as `after` for the next page")


def _rows(scope: TenantScope, batch_ids: list[str]) -> dict[str, list[_Row]]:
    """The rows of these batches, each with its commissions and who paid them, by batch."""
    lines = scope.rows(
        """
        WITH
        batch_lines AS (
            SELECT batch_id, affiliate_id, toString(currency) AS currency, amount_minor,
                   prepared_at, commission_id, commission_amount, position
            FROM payout_batches FINAL
            ARRAY JOIN commission_ids AS commission_id,
                       commission_amounts AS commission_amount,
                       arrayEnumerate(commission_ids) AS position
            WHERE batch_id IN {batch_ids:Array(String)}
        ),
        paid AS (
            SELECT commission_id, argMin(payout_id, (paid_at, payout_id)) AS first_payout_id,
                   min(paid_at) AS first_paid_at
            FROM payout_items FINAL
            WHERE commission_id IN (SELECT commission_id FROM batch_lines)
            GROUP BY commission_id
        ),
        people AS (
            SELECT id, display_name, toString(payout_method) AS payout_method,
                   payout_details_ciphertext != '' AS has_details
            FROM affiliates FINAL
        )
        SELECT batch_lines.batch_id AS batch_id, batch_lines.affiliate_id AS affiliate_id,
               batch_lines.currency AS currency, batch_lines.amount_minor AS amount_minor,
               batch_lines.prepared_at AS prepared_at,
               batch_lines.commission_id AS commission_id,
               batch_lines.commission_amount AS commission_amount,
               people.display_name AS affiliate_name,
               people.payout_method AS method, people.has_details AS has_details,
               paid.first_payout_id AS paid_by, paid.first_paid_at AS paid_at
        FROM batch_lines
        LEFT JOIN paid ON paid.commission_id = batch_lines.commission_id
        LEFT JOIN people ON people.id = batch_lines.affiliate_id
        ORDER BY batch_id, affiliate_id, currency, batch_lines.position
        """,
        batch_ids=batch_ids,
    )
    rows: dict[tuple[str, str, str], _Row] = {}
    for line in lines:
        key = (line["batch_id"], line["affiliate_id"], line["currency"])
        if key not in rows:
            rows[key] = _Row(
                batch_id=line["batch_id"],
                affiliate_id=line["affiliate_id"],
                affiliate_name=line["affiliate_name"],
                currency=line["currency"],
                amount_minor=line["amount_minor"],
                method=line["method"],
                has_details=bool(line["has_details"]),
                prepared_at=line["prepared_at"],
                payout_id=payout_id(scope.tenant_id, *key),
            )
        rows[key].lines.append(
            _Line(
                commission_id=line["commission_id"],
                amount_minor=line["commission_amount"],
                paid_by=line["paid_by"],
                paid_at=line["paid_at"] if line["paid_by"] else None,
            )
        )
    by_batch: dict[str, list[_Row]] = {}
    for row in rows.values():
        by_batch.setdefault(row.batch_id, []).append(row)
    return by_batch


def _public_row(row: _Row) -> BatchRow:
    paid_here = row.paid_here
    return BatchRow(
        affiliate_id=row.affiliate_id,
        affiliate_name=row.affiliate_name,
        currency=row.currency,
        amount_minor=row.amount_minor,
        commission_ids=[line.commission_id for line in row.lines],
        method=row.method,
        payout_id=row.payout_id,
        status=row.status,
        problem=NO_DETAILS if row.status == "blocked" else None,
        payable_minor=sum(line.amount_minor for line in row.unpaid),
        paid_minor=sum(line.amount_minor for line in paid_here),
        paid_at=max((line.paid_at for line in paid_here if line.paid_at), default=None),
        paid_elsewhere_commission_ids=[
            line.commission_id
            for line in row.lines
            if line.paid_by and line.paid_by != row.payout_id
        ],
    )


def _summary(batch_id: str, rows: list[_Row]) -> dict[str, Any]:
    public = [_public_row(row) for row in rows]
    totals: dict[str, CurrencyTotal] = {}
    for row in public:
        total = totals.setdefault(
            row.currency,
            CurrencyTotal(
                currency=row.currency, affiliates=0, amount_minor=0, payable_minor=0, paid_minor=0
            ),
        )
        total.affiliates += 1
        total.amount_minor += row.amount_minor
        total.payable_minor += row.payable_minor
        total.paid_minor += row.paid_minor
    statuses = {row.status for row in public}
    status: Literal["unpaid", "partly_paid", "paid"] = (
        "paid" if statuses == {"paid"} else "partly_paid" if "paid" in statuses else "unpaid"
    )
    return {
        "batch_id": batch_id,
        "prepared_at": max(row.prepared_at for row in rows),
        "status": status,
        "affiliates": len(public),
        "blocked": sum(row.status == "blocked" for row in public),
        "totals": [totals[c] for c in sorted(totals)],
        "rows": public,
    }


def batch(scope: TenantScope, batch_id: str) -> BatchDetail | None:
    rows = _rows(scope, [batch_id]).get(batch_id)
    return BatchDetail(**_summary(batch_id, rows)) if rows else None


def list_batches(scope: TenantScope, limit: int = 50, after: str = "") -> BatchPage:
    """Batches newest first, `limit` per page after the cursor `after` (a previous page's
    next_after). ValueError for a malformed cursor."""
    after_ms, after_id = (2**62, "")
    if after:
        millis, sep, after_id = after.partition("~")
        if not sep or not millis.isdigit() or len(millis) > 15 or not after_id:
            raise ValueError("`after` must be a next_after value from a previous page")
        after_ms = int(millis)
    heads = scope.rows(
        "SELECT batch_id, toUnixTimestamp64Milli(max(prepared_at)) AS prepared_ms "
        "FROM payout_batches FINAL GROUP BY batch_id "
        "HAVING (prepared_ms, batch_id) < ({after_ms:Int64}, {after_id:String}) "
        "   OR {after_id:String} = '' "
        "ORDER BY prepared_ms DESC, batch_id DESC LIMIT {limit:UInt32}",
        after_ms=after_ms,
        after_id=after_id,
        limit=limit + 1,
    )
    page = heads[:limit]
    rows = _rows(scope, [head["batch_id"] for head in page])
    items = []
    for head in page:
        summary = _summary(head["batch_id"], rows[head["batch_id"]])
        del summary["rows"]
        items.append(BatchSummary(**summary))
    next_after = None
    if len(heads) > limit:
        last = page[-1]
        next_after = f"{last['prepared_ms']}~{last['batch_id']}"
    return BatchPage(items=items, next_after=next_after)


class NothingToPay(Exception):
    """No affiliate's approved, unpaid balance reaches its currency's minimum (409)."""


def prepare_batch(scope: TenantScope, actor: Principal) -> BatchDetail:
    """A new batch of what can be paid now (pipelines/payouts.py), stored and audited.
    Raises NothingToPay when it would be empty (nothing is stored then)."""
    batch_id = uuid7()
    rows = scope.rows(BATCH_SQL, **batch_parameters(batch_id))
    if not rows:
        raise NothingToPay(
            "nothing to pay: no affiliate's approved, unpaid balance reaches the minimum of "
            "its currency (see GET /v1/payout-settings); approvals reach the ledger at its "
            "next build"
        )
    scope.insert("payout_batches", [{c: row[c] for c in BATCH_COLUMNS} for row in rows])
    prepared = batch(scope, batch_id)
    assert prepared is not None
    audit.record(
        scope, actor, "payout_batch.prepare", "payout_batch", batch_id,
        details={"affiliates": prepared.affiliates,
                 "amount_minor": {t.currency: t.amount_minor for t in prepared.totals}},
    )  # fmt: skip
    return prepared


# -- export files ----------------------------------------------------------------------------------


class ExportRefused(Exception):
    """The export cannot be made as asked (422): the message says why and what to send."""


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content: str
    rows: int
    excluded: int  # unpaid rows of the format's method left out: no details, another currency


# Banco Central's DICT names of the Pix key types (EVP: the random key).
_PIX_KEY_TYPES = {"cpf": "CPF", "cnpj": "CNPJ", "email": "EMAIL", "phone": "PHONE", "random": "EVP"}
_ACCOUNT_TYPES = {"checking": "corrente", "savings": "poupanca", "payment": "pagamento"}
PIX_COLUMNS = (
    "chave_pix",
    "tipo_chave",
    "valor",
    "nome_favorecido",
    "cpf_cnpj_favorecido",
    "identificador",
    "descricao",
)
BANK_TRANSFER_COLUMNS = (
    "banco",
    "agencia",
    "conta",
    "tipo_conta",
    "titular",
    "cpf_cnpj_titular",
    "valor",
    "identificador",
    "descricao",
)
PAYPAL_NOTE = "Affiliate commissions"


def decimal_amount(minor: int, currency: str) -> str:
    """Minor units as a decimal with the currency's decimals and a point: 12345 BRL -> 123.45."""
    exponent = CURRENCY_EXPONENTS[currency]
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (names are the affiliates' own)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_batch(
    scope: TenantScope,
    vault: Vault,
    actor: Principal,
    batch_id: str,
    export_format: ExportFormat,
    currency: str | None,
) -> ExportFile | None:
    """The transfers still to make in a batch, for the rows whose affiliate is paid by
    `export_format`, as the CSV that format takes (docs/payouts.md); None if there is no
    such batch. Only commissions not paid yet are in the amounts. Audited."""
    rows = _rows(scope, [batch_id]).get(batch_id)
    if rows is None:
        return None
    candidates = [row for row in rows if row.status != "paid" and row.method == export_format]
    currency = _export_currency(export_format, currency, {row.currency for row in candidates})
    lines: list[list[str]] = []
    excluded = 0
    for row in candidates:
        details = payout_details(scope, vault, row.affiliate_id) if row.has_details else None
        if row.currency != currency or details is None or details.method != export_format:
            excluded += 1
            continue
        amount = decimal_amount(sum(line.amount_minor for line in row.unpaid), row.currency)
        lines.append(_line(details, row, amount, batch_id))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if export_format == "pix":
        writer.writerow(PIX_COLUMNS)
    elif export_format == "bank_transfer":
        writer.writerow(BANK_TRANSFER_COLUMNS)
    # PayPal's Payouts file has no header row: every line is a payment.
    writer.writerows(lines)
    audit.record(
        scope, actor, "payout_batch.export", "payout_batch", batch_id,
        details={"format": export_format, "currency": currency, "rows": len(lines),
                 "excluded": excluded},
    )  # fmt: skip
    return ExportFile(
        filename=f"rastro-payouts-{batch_id}-{export_format}-{currency}.csv",
        content=buffer.getvalue(),
        rows=len(lines),
        excluded=excluded,
    )


def _export_currency(export_format: ExportFormat, asked: str | None, present: set[str]) -> str:
    if export_format in ("pix", "bank_transfer"):
        # Pix and TED move reais between Brazilian accounts.
        if asked not in (None, "BRL"):
            raise ExportRefused(f"{export_format} transfers are in BRL only (asked: {asked})")
        return "BRL"
    if asked is not None:
        return asked
    if len(present) > 1:
        # PayPal: "Each file must contain only one currency type".
        raise ExportRefused(
            "PayPal takes one currency per file and this batch has several: pass "
            f"currency= one of {', '.join(sorted(present))}"
        )
    return next(iter(present), "USD")


def _line(
    details: PixDetails | BankTransferDetails | PaypalDetails, row: _Row, amount: str, batch: str
) -> list[str]:
    description = f"Rastro {batch}"
    if isinstance(details, PixDetails):
        tax_id = details.key if details.key_type in ("cpf", "cnpj") else ""
        return [
            details.key,
            _PIX_KEY_TYPES[details.key_type],
            amount,
            _cell(row.affiliate_name),
            tax_id,
            row.payout_id,
            description,
        ]
    if isinstance(details, BankTransferDetails):
        return [
            details.bank_code,
            details.branch,
            details.account,
            _ACCOUNT_TYPES[details.account_type],
            _cell(details.holder_name),
            details.holder_tax_id,
            amount,
            row.payout_id,
            description,
        ]
    # Recipient, amount, currency, Customer ID, note to recipient, recipient wallet.
    return [details.email, amount, row.currency, row.payout_id, PAYPAL_NOTE, "PAYPAL"]


# -- paying -------------------------------------------------------------------------------------


class PaidPayout(BaseModel):
    payout_id: str
    affiliate_id: str
    currency: str
    method: str
    amount_minor: int
    commissions: int


class SkippedRow(BaseModel):
    affiliate_id: str
    currency: str
    reason: str


class PayResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "2026-11",
                    "paid_at": "2026-11-28T15:00:00Z",
                    "reference": "itau-lote-2026-11-28",
                    "newly_paid": [
                        {
                            "payout_id": "po_c4d0e5f23fa3ccc6fe962a32",
                            "affiliate_id": "0197b8fb-d000-710a-a901-7ea9c9401376",
                            "currency": "BRL",
                            "method": "pix",
                            "amount_minor": 5568,
                            "commissions": 3,
                        }
                    ],
                    "already_paid": [],
                    "skipped": [
                        {
                            "affiliate_id": "0197b8fb-d000-72d8-bdd9-a83ea1991228",
                            "currency": "BRL",
                            "reason": NO_DETAILS,
                        }
                    ],
                    "ledger": LEDGER_NOTE,
                }
            ]
        }
    )

    batch_id: str
    paid_at: UtcDatetime
    reference: str
    newly_paid: list[PaidPayout] = Field(description="Payout items written by this call")
    already_paid: list[PaidPayout] = Field(
        description="Rows with nothing left to pay: what their payout had paid"
    )
    skipped: list[SkippedRow] = Field(description="Rows not paid, and why")
    ledger: str = Field(LEDGER_NOTE, description="Payment entries are booked at the next build")


class PaymentRefused(Exception):
    """The payment cannot be recorded as asked (422): the message says why."""


@contextmanager
def _payments_lock(scope: TenantScope) -> Iterator[None]:
    """Exclusive among every process of this host that pays (the API's workers)."""
    path = scope.settings.data_dir / "payouts.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pay_batch(
    scope: TenantScope,
    actor: Principal,
    batch_id: str,
    affiliate_ids: list[str] | None,
    paid_at: datetime,
    reference: str,
) -> PayResult | None:
    """Records the batch's transfers as made: a payout item per commission still unpaid, in
    the rows with payout details (of `affiliate_ids` only, if given). None if there is no
    such batch; PaymentRefused if an affiliate asked for has no row or `paid_at` is before
    the batch. Each payout written
    is audited (`payout.paid`)."""
    with _payments_lock(scope):
        # Read under the lock: a payment another worker just made is seen here.
        rows = _rows(scope, [batch_id]).get(batch_id)
        if rows is None:
            return None
        prepared_at = as_utc(min(row.prepared_at for row in rows))
        if paid_at < prepared_at:
            # The transfers follow the batch's file: a date before it is a mistake.
            raise PaymentRefused(
                f"paid_at {paid_at.isoformat()} is before the batch was prepared "
                f"({prepared_at.isoformat()})"
            )
        if affiliate_ids is not None:
            unknown = sorted(set(affiliate_ids) - {row.affiliate_id for row in rows})
            if unknown:
                raise PaymentRefused(f"not in batch {batch_id}: {', '.join(unknown)}")
            rows = [row for row in rows if row.affiliate_id in set(affiliate_ids)]
        result = PayResult(
            batch_id=batch_id,
            paid_at=paid_at,
            reference=reference,
            newly_paid=[],
            already_paid=[],
            skipped=[],
        )
        items: list[dict[str, Any]] = []
        for row in rows:
            payout = {
                "payout_id": row.payout_id,
                "affiliate_id": row.affiliate_id,
                "currency": row.currency,
                "method": row.method,
            }
            if row.status == "paid":
                paid_here = row.paid_here
                result.already_paid.append(
                    PaidPayout(
                        **payout,
                        amount_minor=sum(line.amount_minor for line in paid_here),
                        commissions=len(paid_here),
                    )
                )
                continue
            if row.status == "blocked":
                result.skipped.append(
                    SkippedRow(
                        affiliate_id=row.affiliate_id, currency=row.currency, reason=NO_DETAILS
                    )
                )
                continue
            unpaid = row.unpaid
            items.extend(
                {
                    "payout_id": row.payout_id,
                    "commission_id": line.commission_id,
                    "affiliate_id": row.affiliate_id,
                    "amount_minor": line.amount_minor,
                    "currency": row.currency,
                    "method": row.method,
                    "paid_at": paid_at,
                }
                for line in unpaid
            )
            result.newly_paid.append(
                PaidPayout(
                    **payout,
                    amount_minor=sum(line.amount_minor for line in unpaid),
                    commissions=len(unpaid),
                )
            )
        if items:
            scope.insert("payout_items", items)
    for paid in result.newly_paid:
        audit.record(
            scope, actor, "payout.paid", "payout", paid.payout_id,
            details={"batch_id": batch_id, "affiliate_id": paid.affiliate_id,
                     "currency": paid.currency, "amount_minor": paid.amount_minor,
                     "commissions": paid.commissions, "method": paid.method,
                     "paid_at": paid_at.isoformat(), "reference": reference},
        )  # fmt: skip
    return result


# -- reconciliation: the merchant's own totals, and the differences found ------------------------


class MerchantDay(BaseModel):
    day: date
    currency: str
    orders: int
    gross_minor: int
    refunds_minor: int
    reported_at: UtcDatetime


def record_merchant_report(
    scope: TenantScope, actor: Principal, days: list[dict[str, Any]]
) -> list[MerchantDay]:
    """Stores the merchant's totals (source `api`; a later report of a day and currency
    replaces the earlier one); audited."""
    at = datetime.now(UTC)
    rows = [{**day, "source": "api", "reported_at": at} for day in days]
    scope.insert("merchant_reports", rows)
    first, last = min(d["day"] for d in days), max(d["day"] for d in days)
    audit.record(
        scope, actor, "merchant_report.record", "merchant_report", f"{first}..{last}",
        details={"days": [f"{d['day']} {d['currency']}" for d in days]},
    )  # fmt: skip
    return [MerchantDay(**{k: row[k] for k in MerchantDay.model_fields}) for row in rows]


_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)


class ReconciliationDifference(BaseModel):
    check_name: str = Field(description="orders_vs_reported | ledger_vs_orders | log_vs_warehouse")
    day: date
    currency: str
    key: str = Field(description="What differs: a metric (orders, gross, refunds) or an id")
    expected: int = Field(description="What the reference says (the merchant, the orders, the log)")
    actual: int = Field(description="What Rastro has")
    details: dict[str, Any]
    found_at: UtcDatetime
    run_id: str


def differences(
    scope: TenantScope,
    check_name: str | None,
    day_from: date | None,
    day_to: date | None,
    latest_run_only: bool,
    limit: int,
) -> list[ReconciliationDifference]:
    """The differences found, newest day first. A difference that is gone is not deleted by
    later runs: `latest_run_only` keeps those of each check's latest run that found any."""
    rows = scope.rows(
        """
        SELECT toString(check_name) AS check_name, day, toString(currency) AS currency, key,
               expected, actual, details, found_at, run_id
        FROM reconciliation_differences FINAL
        WHERE ({check:String} = '' OR check_name = {check:String})
          AND day BETWEEN {day_from:Date} AND {day_to:Date}
          AND (NOT {latest:Bool} OR (check_name, run_id) IN (
                SELECT check_name, argMax(run_id, found_at)
                FROM reconciliation_differences GROUP BY check_name))
        ORDER BY day DESC, check_name, currency, key
        LIMIT {limit:UInt32}
        """,
        check=check_name or "",
        # The range of ClickHouse's Date.
        day_from=max(day_from or _FIRST_DAY, _FIRST_DAY),
        day_to=min(day_to or _LAST_DAY, _LAST_DAY),
        latest=latest_run_only,
        limit=limit,
    )
    for row in rows:
        row["details"] = json.loads(row["details"])
    return [ReconciliationDifference(**row) for row in rows]
