"""Shared by the quality and reconciliation tests: inserting hand-made rows, and the marts as
hand-made tables (a real `dbt build` takes ~50 s; tests/dbt builds them for real).

The mart tables have the columns, names and types `dbt build` gives them (a subset:
what the checks and reconciliations read). The clean story is the one tests/dbt/test_ledger.py
builds, after its second build: Ana's o-1 (refunded by a quarter, approved, corrected to 800),
Leo's o-2 (paid 1800, then 450 clawed back) and Ana's o-3 (rejected).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rastro.warehouse.client import insert_rows

TENANT = "t-quality"
BRL = "BRL"

ANA_O1 = "conv-o-1:aff-ana"
LEO_O2 = "conv-o-2:aff-leo"
ANA_O3 = "conv-o-3:aff-ana"


def at(text: str | datetime) -> datetime:
    if isinstance(text, datetime):
        return text
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rows(client: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql).result_rows]


# -- the marts, hand-made --------------------------------------------------------------------------

MART_TABLES = {
    "fct_attributions": """
        tenant_id LowCardinality(String), conversion_id String, order_id String,
        converted_at DateTime64(3, 'UTC'), model String, affiliate_id String, share Float64,
        credited_amount_minor Int64, credited_net_minor Int64, order_amount_minor Int64,
        order_net_minor Int64, currency LowCardinality(String), is_payable UInt8
    """,
    "fct_commissions": """
        commission_id String, tenant_id LowCardinality(String), conversion_id String,
        order_id String, affiliate_id String, converted_at DateTime64(3, 'UTC'),
        currency LowCardinality(String), commission_minor Int64
    """,
    "fct_ledger_entries": """
        entry_id String, tenant_id LowCardinality(String), commission_id String,
        affiliate_id String, conversion_id String, currency LowCardinality(String),
        entry_type LowCardinality(String), effective_at DateTime64(3, 'UTC'),
        earned_delta_minor Int64, pending_delta_minor Int64, approved_delta_minor Int64,
        paid_delta_minor Int64, rejected_delta_minor Int64, source_id String,
        recorded_at DateTime64(3, 'UTC'), dbt_invocation_id String
    """,
    "dim_affiliate_balances": """
        tenant_id LowCardinality(String), affiliate_id String, currency LowCardinality(String),
        commissions UInt64, accrued_minor Int64, corrected_minor Int64, reversed_minor Int64,
        rejected_minor Int64, earned_minor Int64, pending_minor Int64, approved_minor Int64,
        paid_minor Int64, last_entry_at DateTime64(3, 'UTC')
    """,
}


def create_marts(client: Any) -> None:
    for name, columns in MART_TABLES.items():
        client.command(f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY tuple()")


def attribution(
    conversion: str, model: str, affiliate: str, share: float, amount: int, net: int
) -> dict[str, Any]:
    order_amount, order_net = ORDERS[conversion]
    return {
        "tenant_id": TENANT,
        "conversion_id": conversion,
        "order_id": conversion.removeprefix("conv-"),
        "converted_at": at("2024-02-10 12:00"),
        "model": model,
        "affiliate_id": affiliate,
        "share": share,
        "credited_amount_minor": amount,
        "credited_net_minor": net,
        "order_amount_minor": order_amount,
        "order_net_minor": order_net,
        "currency": BRL,
        "is_payable": int(model == "last_click"),
    }


# Current amount and net of each order.
ORDERS = {"conv-o-1": (10000, 8000), "conv-o-2": (20000, 18000), "conv-o-3": (5000, 5000)}

CLEAN_ATTRIBUTIONS = [
    attribution("conv-o-1", "last_click", "aff-ana", 1.0, 10000, 8000),
    attribution("conv-o-2", "last_click", "aff-leo", 1.0, 20000, 18000),
    attribution("conv-o-3", "last_click", "aff-ana", 1.0, 5000, 5000),
    # Thirds: the largest remainder gives the odd cent to one of them.
    attribution("conv-o-1", "linear", "aff-ana", 1 / 3, 3334, 2667),
    attribution("conv-o-1", "linear", "aff-leo", 1 / 3, 3333, 2667),
    attribution("conv-o-1", "linear", "aff-bia", 1 / 3, 3333, 2666),
    attribution("conv-o-2", "linear", "aff-leo", 0.5, 10000, 9000),
    attribution("conv-o-2", "linear", "aff-ana", 0.5, 10000, 9000),
]


def commission(commission_id: str, converted_at: str, amount: int) -> dict[str, Any]:
    conversion, affiliate = commission_id.split(":")
    return {
        "commission_id": commission_id,
        "tenant_id": TENANT,
        "conversion_id": conversion,
        "order_id": conversion.removeprefix("conv-"),
        "affiliate_id": affiliate,
        "converted_at": at(converted_at),
        "currency": BRL,
        "commission_minor": amount,
    }


CLEAN_COMMISSIONS = [
    commission(ANA_O1, "2024-02-10 12:00", 800),
    commission(LEO_O2, "2024-02-11 12:00", 1800),
    commission(ANA_O3, "2024-04-10 12:00", 750),
]


def entry(
    commission_id: str,
    entry_type: str,
    effective_at: str,
    earned: int,
    pending: int,
    approved: int,
    paid: int,
    rejected: int,
    source_id: str,
) -> dict[str, Any]:
    conversion, affiliate = commission_id.split(":")
    return {
        "entry_id": f"{commission_id}|{entry_type}|{source_id}",
        "tenant_id": TENANT,
        "commission_id": commission_id,
        "affiliate_id": affiliate,
        "conversion_id": conversion,
        "currency": BRL,
        "entry_type": entry_type,
        "effective_at": at(effective_at),
        "earned_delta_minor": earned,
        "pending_delta_minor": pending,
        "approved_delta_minor": approved,
        "paid_delta_minor": paid,
        "rejected_delta_minor": rejected,
        "source_id": source_id,
        "recorded_at": at("2024-05-01 00:00"),
        "dbt_invocation_id": "inv-1",
    }


# tests/dbt/test_ledger.py's ledger after its two builds, entry for entry.
CLEAN_LEDGER = [
    entry(ANA_O1, "accrual", "2024-02-10 12:00", 900, 900, 0, 0, 0, "conv-o-1"),
    entry(ANA_O1, "reversal", "2024-02-20 08:00", -225, -225, 0, 0, 0, "ev-rf-1"),
    entry(ANA_O1, "approval", "2024-03-11 12:00", 0, -675, 675, 0, 0, "hold_end"),
    entry(LEO_O2, "accrual", "2024-02-11 12:00", 1800, 1800, 0, 0, 0, "conv-o-2"),
    entry(LEO_O2, "approval", "2024-03-12 12:00", 0, -1800, 1800, 0, 0, "hold_end"),
    entry(LEO_O2, "payment", "2024-03-20 15:00", 0, 0, -1800, 1800, 0, "payout-1"),
    entry(ANA_O1, "correction", "2024-04-30 23:59:59", -75, 0, -75, 0, 0, "after-3"),
    entry(LEO_O2, "clawback", "2024-04-05 10:00", -450, 0, -450, 0, 0, "ev-rf-2"),
    entry(ANA_O3, "accrual", "2024-04-10 12:00", 750, 750, 0, 0, 0, "conv-o-3"),
    entry(ANA_O3, "rejection", "2024-04-15 09:00", -750, -750, 0, 0, 750, "dec-1"),
]


def build_balances(client: Any) -> None:
    """dim_affiliate_balances from fct_ledger_entries, as its dbt model computes it."""
    client.command("TRUNCATE TABLE dim_affiliate_balances")
    client.command(
        """
        INSERT INTO dim_affiliate_balances
        SELECT
            tenant_id, affiliate_id, currency,
            uniqExact(commission_id),
            sumIf(earned_delta_minor, entry_type = 'accrual'),
            sumIf(earned_delta_minor, entry_type = 'correction'),
            -sumIf(earned_delta_minor, entry_type in ('reversal', 'clawback')),
            sum(rejected_delta_minor),
            sum(earned_delta_minor),
            sum(pending_delta_minor),
            sum(approved_delta_minor),
            sum(paid_delta_minor),
            max(effective_at)
        FROM fct_ledger_entries
        GROUP BY tenant_id, affiliate_id, currency
        """
    )


def land_clean_marts(client: Any) -> None:
    create_marts(client)
    insert_rows(client, "fct_attributions", CLEAN_ATTRIBUTIONS)
    insert_rows(client, "fct_commissions", CLEAN_COMMISSIONS)
    insert_rows(client, "fct_ledger_entries", CLEAN_LEDGER)
    build_balances(client)


def conversion(
    order_id: str,
    version: int,
    ts: str | datetime,
    amount: int,
    net: int,
    currency: str = BRL,
    **extra: Any,
) -> dict[str, Any]:
    """A conversions row (received a minute after it happened)."""
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{order_id}-v{version}",
        "conversion_id": f"conv-{order_id}",
        "order_id": order_id,
        "version": version,
        "amount_minor": amount,
        "net_minor": net,
        "currency": currency,
        "source": "s2s",
        "received_at": at(ts) + timedelta(minutes=1),
        **extra,
    }


def order_update(
    update_id: str,
    order_id: str,
    ts: str | datetime,
    amount: int,
    currency: str = BRL,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{update_id}",
        "update_id": update_id,
        "order_id": order_id,
        "kind": "refund",
        "amount_minor": amount,
        "currency": currency,
        "source": "api",
        "received_at": at(ts) + timedelta(minutes=1),
        **extra,
    }
