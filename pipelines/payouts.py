"""Payout batch preparation, one piece of SQL shared by the monthly Dagster asset (every
tenant, orchestration/defs/payouts) and the API (`POST /v1/payouts/batches`, one tenant,
through its TenantScope). docs/payouts.md explains batches and thresholds.

A batch lists, per tenant, affiliate and currency, the commissions that can be paid now:
- approved and unpaid in the ledger (fct_ledger_entries, as of its last build): each
  commission's approved balance, when positive;
- not paid since the build: a commission with any payout item is left out (a commission is
  paid at most once, see payout_items);
- not rejected or held by a decision taken since the build: the ledger books those only at
  its next build, and a commission under review must not be paid meanwhile;
- per affiliate and currency, only when their sum reaches the program's minimum for that
  currency (`payout_settings`, default `DEFAULT_MINIMUM_MINOR`): smaller balances carry over.

Each commission's amount is kept next to its id (`commission_amounts`): paying the batch
writes exactly those amounts to payout_items, whatever later builds of the ledger say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The minimum payout when the program set none for the currency, in its minor units
# (R$ 50.00, US$ 50.00): smaller approved balances wait for the next batch.
DEFAULT_MINIMUM_MINOR = 5000

# The columns BATCH_SQL returns, in order: those of payout_batches.
BATCH_COLUMNS = (
    "tenant_id",
    "batch_id",
    "affiliate_id",
    "currency",
    "amount_minor",
    "commission_ids",
    "commission_amounts",
    "payout_method",
    "prepared_at",
)

# One row of payout_batches per tenant, affiliate and currency to pay. Parameters: batch_id,
# default_minimum (minor units) and tenant ('' for every tenant; a TenantScope binds its own).
BATCH_SQL = """
WITH
payable AS (
    -- Each commission's approved, unpaid balance as of the ledger's last build.
    SELECT tenant_id, affiliate_id, currency, commission_id,
           sum(approved_delta_minor) AS approved_minor
    FROM fct_ledger_entries
    WHERE {tenant:String} = '' OR tenant_id = {tenant:String}
    GROUP BY tenant_id, affiliate_id, currency, commission_id
    HAVING approved_minor > 0
),
paid AS (
    -- Paid by any payout, whether the ledger has booked it yet or not.
    SELECT DISTINCT tenant_id, commission_id
    FROM payout_items
),
stopped AS (
    -- Rejected or held by the decision that applies now (the ledger rule: the latest
    -- approve/reject is the verdict, the latest hold/release/approve says whether it is held).
    SELECT tenant_id, commission_id
    FROM commission_decisions FINAL
    GROUP BY tenant_id, commission_id
    HAVING argMaxIf(decision, (decided_at, decision_id), decision IN ('approve', 'reject'))
               = 'reject'
        OR argMaxIf(decision, (decided_at, decision_id), decision IN ('hold', 'release', 'approve'))
               = 'hold'
),
kept AS (
    SELECT payable.tenant_id AS tenant_id, payable.affiliate_id AS affiliate_id,
           payable.currency AS currency, payable.commission_id AS commission_id,
           payable.approved_minor AS approved_minor
    FROM payable
    LEFT ANTI JOIN paid
        ON paid.tenant_id = payable.tenant_id AND paid.commission_id = payable.commission_id
    LEFT ANTI JOIN stopped
        ON stopped.tenant_id = payable.tenant_id AND stopped.commission_id = payable.commission_id
),
minimums AS (
    -- Nullable, so that a currency without a setting joins as NULL (then the default).
    SELECT tenant_id, currency, toNullable(minimum_minor) AS minimum_minor
    FROM payout_settings FINAL
),
methods AS (
    SELECT tenant_id, id AS affiliate_id, payout_method
    FROM affiliates FINAL
)
SELECT
    kept.tenant_id AS tenant_id,
    {batch_id:String} AS batch_id,
    kept.affiliate_id AS affiliate_id,
    kept.currency AS currency,
    sum(kept.approved_minor) AS amount_minor,
    -- Sorted by commission id, so that a batch prepared twice lists the same arrays.
    arraySort(groupArray((kept.commission_id, kept.approved_minor))) AS lines,
    arrayMap(line -> line.1, lines) AS commission_ids,
    arrayMap(line -> line.2, lines) AS commission_amounts,
    toString(any(methods.payout_method)) AS payout_method,
    now64(3, 'UTC') AS prepared_at
FROM kept
LEFT JOIN methods
    ON methods.tenant_id = kept.tenant_id AND methods.affiliate_id = kept.affiliate_id
LEFT JOIN minimums
    ON minimums.tenant_id = kept.tenant_id AND minimums.currency = kept.currency
GROUP BY kept.tenant_id, kept.affiliate_id, kept.currency
HAVING amount_minor >= ifNull(any(minimums.minimum_minor), {default_minimum:Int64})
ORDER BY tenant_id, affiliate_id, currency
"""


def batch_parameters(
    batch_id: str, default_minimum_minor: int = DEFAULT_MINIMUM_MINOR
) -> dict[str, Any]:
    """BATCH_SQL's parameters other than the tenant."""
    return {"batch_id": batch_id, "default_minimum": default_minimum_minor}


@dataclass(frozen=True)
class Prepared:
    batch_id: str
    rows: int  # affiliates x currencies in the batch
    amount_minor_by_currency: dict[str, int]


def prepare(
    client: Any,
    batch_id: str,
    *,
    tenant_id: str = "",
    default_minimum_minor: int = DEFAULT_MINIMUM_MINOR,
) -> Prepared:
    """Prepare batch `batch_id` for one tenant or ('') every tenant, with a client on Rastro's
    database. Preparing an existing batch id again replaces its rows (payout_batches is a
    ReplacingMergeTree on prepared_at): a month's batch lists what is owed when last prepared.
    """
    columns = ", ".join(BATCH_COLUMNS)
    client.command(
        f"INSERT INTO payout_batches ({columns}) SELECT {columns} FROM ({BATCH_SQL})",
        parameters={"tenant": tenant_id, **batch_parameters(batch_id, default_minimum_minor)},
    )
    result = client.query(
        "SELECT toString(currency), count(), sum(amount_minor) FROM payout_batches FINAL "
        "WHERE batch_id = {batch_id:String} "
        "AND ({tenant:String} = '' OR tenant_id = {tenant:String}) "
        "GROUP BY currency ORDER BY currency",
        parameters={"batch_id": batch_id, "tenant": tenant_id},
    )
    return Prepared(
        batch_id=batch_id,
        rows=sum(int(count) for _, count, _ in result.result_rows),
        amount_minor_by_currency={str(c): int(amount) for c, _, amount in result.result_rows},
    )
