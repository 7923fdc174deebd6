"""dbt-clickhouse against the warehouse under test, exactly as a deployment would use it.

Two `dbt build`s of tests/dbt/project (seed, views, a table, an append and a delete+insert
incremental model, generic, singular and unit tests) in a database of their own, with new and
changed orders landing in between. After each build the models must hold exactly the rows
the strategies promise.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipelines.dbt import run_dbt

PROJECT_DIR = Path(__file__).parent / "project"
BUILD_TIMEOUT = 120  # seconds; a build takes a few

RAW_ORDERS_DDL = """
CREATE TABLE {database}.raw_orders (
    order_id String,
    affiliate_id UInt64,
    amount Decimal(12, 2),
    status LowCardinality(String),
    ordered_at DateTime('UTC'),
    updated_at DateTime('UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(updated_at)
ORDER BY (updated_at, order_id)
"""
RAW_ORDER_COLUMNS = ["order_id", "affiliate_id", "amount", "status", "ordered_at", "updated_at"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Versions of orders as the merchant reports them; the merchant writes statuses in capitals.
FIRST_BATCH = [
    ("o-1001", 1, Decimal("120.00"), "APPROVED", at("2024-05-01 10:00"), at("2024-05-01 10:00")),
    ("o-1002", 2, Decimal("80.50"), "PENDING", at("2024-05-02 11:00"), at("2024-05-02 11:00")),
    ("o-1003", 1, Decimal("45.25"), "PENDING", at("2024-05-03 12:00"), at("2024-05-03 12:00")),
    ("o-1004", 3, Decimal("300.00"), "APPROVED", at("2024-06-01 09:00"), at("2024-06-01 09:00")),
]
# Between the builds: o-1002 is approved, o-1003 reversed, o-1005 is new.
SECOND_BATCH = [
    ("o-1002", 2, Decimal("80.50"), "APPROVED", at("2024-05-02 11:00"), at("2024-06-05 08:00")),
    ("o-1003", 1, Decimal("45.25"), "REVERSED", at("2024-05-03 12:00"), at("2024-06-06 15:30")),
    ("o-1005", 2, Decimal("60.00"), "PENDING", at("2024-06-07 18:45"), at("2024-06-07 18:45")),
]


def dbt_build(warehouse_url: str, database: str, work_dir: Path) -> dict[str, Any]:
    """Runs `dbt build`; returns its run_results.json. dbt's output goes to stdout, which
    pytest shows when the test fails; its debug log (with every SQL statement) stays in
    work_dir/logs."""
    try:
        result = run_dbt(
            ["build"],
            warehouse_url,
            database,
            work_dir=work_dir,
            project_dir=PROJECT_DIR,
            capture=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as timeout:
        print(timeout.stdout, timeout.stderr)
        pytest.fail(f"dbt build ran over {BUILD_TIMEOUT} s; see {work_dir / 'logs' / 'dbt.log'}")
    print(result.stdout + result.stderr)
    assert result.returncode == 0, (
        f"dbt build exited with {result.returncode}: its output is under 'Captured stdout', "
        f"every statement it sent in {work_dir / 'logs' / 'dbt.log'}"
    )
    run_results: dict[str, Any] = json.loads((work_dir / "target" / "run_results.json").read_text())
    return run_results


def assert_every_node_passed(run_results: dict[str, Any]) -> None:
    statuses = {result["unique_id"]: result["status"] for result in run_results["results"]}
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    # Each kind of node is there: none was left out of the build unnoticed.
    kinds = [unique_id.split(".")[0] for unique_id in statuses]
    assert set(kinds) == {"seed", "model", "test", "unit_test"}, kinds
    assert kinds.count("model") == 5, kinds
    assert "test.rastro_dbt_smoke.assert_credited_revenue_balances" in statuses


def rows(client: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql).result_rows]


def dim_affiliates(client: Any, database: str) -> list[tuple[Any, ...]]:
    return rows(
        client,
        f"SELECT affiliate_id, order_count, credited_revenue, toString(last_ordered_at)"
        f" FROM {database}.dim_affiliates ORDER BY affiliate_id",
    )


@pytest.mark.slow
def test_dbt_build_twice_with_incremental_models(
    warehouse_url: str, database: str, client: Any, tmp_path: Path
) -> None:
    client.command(RAW_ORDERS_DDL.format(database=database))
    client.insert(f"{database}.raw_orders", FIRST_BATCH, column_names=RAW_ORDER_COLUMNS)

    first = dbt_build(warehouse_url, database, tmp_path)
    assert_every_node_passed(first)
    run1 = first["metadata"]["invocation_id"]

    # The seed arrives intact: the comma, the doubled quotes and the apostrophe.
    assert rows(
        client,
        f"SELECT affiliate_id, affiliate_name, toString(joined_on), min_payout"
        f" FROM {database}.stg_seeds__affiliates ORDER BY affiliate_id",
    ) == [
        (1, 'Ana "the deal hunter", SP', "2024-01-15", Decimal("50.00")),
        (2, "Bruno's Reviews", "2024-02-01", Decimal("25.50")),
        (3, "Casa & Cia, Ltda.", "2024-03-10", Decimal("100.00")),
        (4, "Dora Dados", "2024-07-01", Decimal("0.00")),
    ]
    assert rows(
        client,
        f"SELECT order_id, order_status, order_amount, dbt_invocation_id"
        f" FROM {database}.fct_order_events ORDER BY order_id, updated_at",
    ) == [
        ("o-1001", "approved", Decimal("120.00"), run1),
        ("o-1002", "pending", Decimal("80.50"), run1),
        ("o-1003", "pending", Decimal("45.25"), run1),
        ("o-1004", "approved", Decimal("300.00"), run1),
    ]
    assert rows(
        client,
        f"SELECT order_id, affiliate_id, order_status, order_amount, dbt_invocation_id"
        f" FROM {database}.fct_orders ORDER BY order_id",
    ) == [
        ("o-1001", 1, "approved", Decimal("120.00"), run1),
        ("o-1002", 2, "pending", Decimal("80.50"), run1),
        ("o-1003", 1, "pending", Decimal("45.25"), run1),
        ("o-1004", 3, "approved", Decimal("300.00"), run1),
    ]
    # Affiliate 4 never sold: NULL, as the profile's join_use_nulls=1 promises (so the
    # endpoint applied dbt's session settings); 1970-01-01 would mean it did not.
    assert dim_affiliates(client, database) == [
        (1, 2, Decimal("165.25"), "2024-05-03 12:00:00"),
        (2, 1, Decimal("80.50"), "2024-05-02 11:00:00"),
        (3, 1, Decimal("300.00"), "2024-06-01 09:00:00"),
        (4, 0, Decimal("0.00"), None),
    ]

    client.insert(f"{database}.raw_orders", SECOND_BATCH, column_names=RAW_ORDER_COLUMNS)

    second = dbt_build(warehouse_url, database, tmp_path)  # reuses the first parse
    assert_every_node_passed(second)
    run2 = second["metadata"]["invocation_id"]
    assert run2 != run1

    # append: the first build's rows stay as they were, the new versions follow.
    assert rows(
        client,
        f"SELECT order_id, order_status, order_amount, dbt_invocation_id"
        f" FROM {database}.fct_order_events ORDER BY order_id, updated_at",
    ) == [
        ("o-1001", "approved", Decimal("120.00"), run1),
        ("o-1002", "pending", Decimal("80.50"), run1),
        ("o-1002", "approved", Decimal("80.50"), run2),
        ("o-1003", "pending", Decimal("45.25"), run1),
        ("o-1003", "reversed", Decimal("45.25"), run2),
        ("o-1004", "approved", Decimal("300.00"), run1),
        ("o-1005", "pending", Decimal("60.00"), run2),
    ]
    # delete+insert: the changed orders replaced (one row each), the others untouched.
    assert rows(
        client,
        f"SELECT order_id, affiliate_id, order_status, order_amount, dbt_invocation_id"
        f" FROM {database}.fct_orders ORDER BY order_id",
    ) == [
        ("o-1001", 1, "approved", Decimal("120.00"), run1),
        ("o-1002", 2, "approved", Decimal("80.50"), run2),
        ("o-1003", 1, "reversed", Decimal("45.25"), run2),
        ("o-1004", 3, "approved", Decimal("300.00"), run1),
        ("o-1005", 2, "pending", Decimal("60.00"), run2),
    ]
    # The table is rebuilt from the new state: o-1003's reversal takes its revenue back.
    assert dim_affiliates(client, database) == [
        (1, 2, Decimal("120.00"), "2024-05-03 12:00:00"),
        (2, 2, Decimal("140.50"), "2024-06-07 18:45:00"),
        (3, 1, Decimal("300.00"), "2024-06-01 09:00:00"),
        (4, 0, Decimal("0.00"), None),
    ]
    # No intermediate relation (__dbt_new_data_*, __dbt_backup, ...) is left behind.
    assert rows(
        client,
        f"SELECT name FROM system.tables WHERE database = '{database}' ORDER BY name",
    ) == [
        ("affiliates",),
        ("dim_affiliates",),
        ("fct_order_events",),
        ("fct_orders",),
        ("raw_orders",),
        ("stg_seeds__affiliates",),
        ("stg_shop__orders",),
    ]
