"""The reconciliations (pipelines/reconcile.py): none finds a difference on clean data, each
finds the difference planted for it (a missing order, a wrong gross, an accrual missing, a
ledger entry without its order, a click in the log and not in the warehouse), and what they
write to reconciliation_differences is idempotent per run."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.reconcile import (
    DIFFERENCE_SCHEMA,
    reconcile_all,
    reconcile_ledger_vs_orders,
    reconcile_log_vs_warehouse,
    reconcile_orders_vs_reported,
)
from rastro.contracts import Click, PageEvent, encode
from rastro.eventlog import LogReader, LogWriter, Offset, Record
from rastro.eventlog.format import segment_name
from rastro.schema.migrate import migrate
from rastro.warehouse.client import insert_rows
from tests.pipelines.helpers import (
    ANA_O3,
    BRL,
    CLEAN_COMMISSIONS,
    CLEAN_LEDGER,
    TENANT,
    at,
    commission,
    conversion,
    create_marts,
    entry,
    order_update,
    rows,
)

NOW = datetime.now(UTC).replace(microsecond=0)
RUN = "run-1"
D1, D2, D3 = date(2024, 2, 10), date(2024, 2, 11), date(2024, 2, 12)


def stored(client: Any) -> list[tuple[Any, ...]]:
    return rows(
        client,
        "SELECT tenant_id, check_name, day, currency, key, expected, actual, run_id"
        " FROM reconciliation_differences FINAL ORDER BY check_name, tenant_id, day, currency, key",
    )


def found(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    """(day, currency, key, expected, actual) of each difference."""
    return list(frame.select("day", "currency", "key", "expected", "actual").iter_rows())


# -- orders vs the merchant's report ---------------------------------------------------------------


def report(day: date, currency: str, orders: int, gross: int, refunds: int, **extra: Any) -> Any:
    return {
        "tenant_id": TENANT,
        "day": day,
        "currency": currency,
        "source": "api",
        "orders": orders,
        "gross_minor": gross,
        "refunds_minor": refunds,
        "reported_at": at("2024-02-13 06:00"),
        **extra,
    }


def land_orders(client: Any) -> None:
    migrate(client, client.database)
    insert_rows(
        client,
        "conversions",
        [
            conversion("o-1", 1, "2024-02-10 09:00", 10000, 9000),
            conversion("o-1", 2, "2024-02-10 09:00", 9000, 8000),  # corrected: 9000 counts
            conversion("o-2", 1, "2024-02-10 10:00", 0, 0, kind="lead"),  # not an order
            conversion("o-5", 1, "2024-02-10 23:59:59", 3000, 3000, "USD"),
            conversion("o-3", 1, "2024-02-11 00:00", 20000, 18000),
            conversion("o-4", 1, "2024-02-12 08:00", 7000, 7000),  # a day nobody reported
        ],
    )
    # A replayed event (the same event twice) counts once.
    insert_rows(client, "conversions", [conversion("o-3", 1, "2024-02-11 00:00", 20000, 18000)])
    insert_rows(client, "order_updates", [order_update("rf-1", "o-1", "2024-02-11 14:00", 2500)])
    insert_rows(
        client,
        "merchant_reports",
        [
            report(D1, BRL, 1, 9000, 0),
            report(D1, "USD", 1, 3000, 0),
            report(D2, BRL, 1, 20000, 2500),
            # An earlier report of D2 from an import, superseded by the later one.
            report(D2, BRL, 5, 1, 1, source="import", reported_at=at("2024-02-12 06:00")),
        ],
    )


def reconcile_orders(client: Any, **kwargs: Any) -> pl.DataFrame:
    return reconcile_orders_vs_reported(
        client, client.database, run_id=RUN, now=NOW, since=D1, until=D3, **kwargs
    )


def test_orders_agree_with_the_report(client: Any, database: str) -> None:
    land_orders(client)

    frame = reconcile_orders(client)

    assert frame.is_empty()
    assert frame.schema == pl.Schema(DIFFERENCE_SCHEMA)
    assert stored(client) == []


PLANTED_ORDERS: list[tuple[str, Callable[[Any], None], list[tuple[Any, ...]]]] = [
    (
        "an order Rastro never received",
        lambda client: insert_rows(client, "merchant_reports", [report(D2, BRL, 2, 25000, 2500)]),
        [(D2, BRL, "gross", 25000, 20000), (D2, BRL, "orders", 2, 1)],
    ),
    (
        "a wrong gross",
        lambda client: insert_rows(
            client,
            "conversions",
            [conversion("o-1", 3, "2024-02-10 09:00", 9100, 8000)],  # the report says 9000
        ),
        [(D1, BRL, "gross", 9000, 9100)],
    ),
    (
        "a refund Rastro never received",
        lambda client: insert_rows(client, "merchant_reports", [report(D2, BRL, 1, 20000, 4000)]),
        [(D2, BRL, "refunds", 4000, 2500)],
    ),
    (
        "an order in a currency the merchant did not report that day",
        lambda client: insert_rows(
            client, "conversions", [conversion("o-6", 1, "2024-02-10 12:00", 500, 500, "EUR")]
        ),
        [(D1, "EUR", "gross", 0, 500), (D1, "EUR", "orders", 0, 1)],
    ),
    (
        "a reported currency Rastro has nothing in",
        lambda client: insert_rows(client, "merchant_reports", [report(D1, "ARS", 1, 100, 0)]),
        [(D1, "ARS", "gross", 100, 0), (D1, "ARS", "orders", 1, 0)],
    ),
]


@pytest.mark.parametrize(
    ("plant", "expected"),
    [case[1:] for case in PLANTED_ORDERS],
    ids=[case[0] for case in PLANTED_ORDERS],
)
def test_orders_differences_are_found(
    client: Any,
    database: str,
    plant: Callable[[Any], None],
    expected: list[tuple[Any, ...]],
) -> None:
    land_orders(client)
    plant(client)

    frame = reconcile_orders(client)

    assert found(frame) == expected
    assert set(frame["check_name"]) == {"orders_vs_reported"}
    assert set(frame["tenant_id"]) == {TENANT}
    details = json.loads(frame["details"][0])
    assert details["difference"] == expected[0][4] - expected[0][3]
    assert stored(client) == [
        (TENANT, "orders_vs_reported", day, currency, key, want, got, RUN)
        for day, currency, key, want, got in expected
    ]


def test_orders_outside_the_range_are_not_compared(client: Any, database: str) -> None:
    land_orders(client)
    insert_rows(client, "merchant_reports", [report(D2, BRL, 2, 25000, 2500)])

    assert reconcile_orders_vs_reported(
        client, database, run_id=RUN, now=NOW, since=D1, until=D1
    ).is_empty()


def test_written_differences_are_idempotent_per_run(client: Any, database: str) -> None:
    land_orders(client)
    insert_rows(client, "merchant_reports", [report(D2, BRL, 2, 25000, 2500)])

    first = reconcile_orders(client)
    again = reconcile_orders(client)  # the same run, retried

    assert first.equals(again)
    assert len(stored(client)) == 2
    # A later run finding the same differences replaces the rows (key: tenant, check, day,
    # currency, key), recording itself.
    later = reconcile_orders_vs_reported(
        client, database, run_id="run-2", now=NOW + timedelta(days=1), since=D1, until=D3
    )
    assert found(later) == found(first)
    assert {row[-1] for row in stored(client)} == {"run-2"}
    assert len(stored(client)) == 2
    # write=False only computes.
    client.command("TRUNCATE TABLE reconciliation_differences")
    assert found(reconcile_orders(client, write=False)) == found(first)
    assert stored(client) == []


# -- ledger vs orders ------------------------------------------------------------------------------

LEDGER_CLOCK = at("2024-04-30 23:59:59")


def land_ledger(client: Any, ledger: list[dict[str, Any]] = CLEAN_LEDGER) -> None:
    migrate(client, client.database)
    create_marts(client)
    insert_rows(
        client,
        "conversions",
        [
            conversion("o-1", 1, "2024-02-10 12:00", 10000, 9000),
            conversion("o-1", 2, "2024-02-10 12:00", 10000, 8000),
            conversion("o-2", 1, "2024-02-11 12:00", 20000, 18000),
            conversion("o-3", 1, "2024-04-10 12:00", 5000, 5000),
        ],
    )
    insert_rows(client, "fct_commissions", CLEAN_COMMISSIONS)
    insert_rows(client, "fct_ledger_entries", ledger)


def reconcile_ledger(client: Any, ledger_as_of: datetime = LEDGER_CLOCK) -> pl.DataFrame:
    return reconcile_ledger_vs_orders(
        client, client.database, run_id=RUN, now=NOW, ledger_as_of=ledger_as_of
    )


def test_ledger_agrees_with_the_orders(client: Any, database: str) -> None:
    land_ledger(client)
    # A commission that earns nothing has no accrual, and needs none.
    insert_rows(client, "fct_commissions", [commission("conv-o-1:aff-bia", "2024-02-10 12:00", 0)])

    assert reconcile_ledger(client).is_empty()
    assert stored(client) == []


def test_an_accrual_missing_is_found(client: Any, database: str) -> None:
    land_ledger(client, [e for e in CLEAN_LEDGER if e["commission_id"] != ANA_O3])

    frame = reconcile_ledger(client)

    assert found(frame) == [(date(2024, 4, 10), BRL, f"accrual_missing:{ANA_O3}", 750, 0)]
    details = json.loads(frame["details"][0])
    assert details["order_id"] == "o-3" and details["affiliate_id"] == "aff-ana"
    assert stored(client) == [
        (
            TENANT,
            "ledger_vs_orders",
            date(2024, 4, 10),
            BRL,
            f"accrual_missing:{ANA_O3}",
            750,
            0,
            RUN,
        )
    ]
    # With the ledger's clock before o-3 converted, its accrual is not due yet.
    assert reconcile_ledger(client, ledger_as_of=at("2024-03-31 23:59:59")).is_empty()


def test_a_ledger_entry_without_its_order_is_found(client: Any, database: str) -> None:
    ghost = "conv-o-9:aff-leo"
    land_ledger(
        client,
        [
            *CLEAN_LEDGER,
            entry(ghost, "accrual", "2024-03-01 10:00", 500, 500, 0, 0, 0, "conv-o-9"),
            entry(ghost, "approval", "2024-03-31 10:00", 0, -500, 500, 0, 0, "hold_end"),
        ],
    )

    frame = reconcile_ledger(client)

    assert found(frame) == [(date(2024, 3, 1), BRL, f"conversion_missing:{ghost}", 0, 2)]
    details = json.loads(frame["details"][0])
    assert details["conversion_id"] == "conv-o-9"
    assert details["entry_types"] == ["accrual", "approval"]
    assert (details["earned_minor"], details["approved_minor"]) == (500, 500)


# -- event log vs warehouse ------------------------------------------------------------------------


def click(tenant: str, n: int) -> bytes:
    ts = int(NOW.timestamp() * 1000)
    return encode(
        Click(
            event_id=f"ev-click-{tenant}-{n}",
            tenant_id=tenant,
            ts=ts,
            received_at=ts,
            click_id=f"clk-{n}",
            source="redirect",
            link_id="link-1",
            link_code="ANA",
            affiliate_id="aff-ana",
            campaign_id="camp-1",
            campaign_terms_version=1,
            destination_url="https://shop.example/",
            landing_url=f"https://shop.example/?rclid=clk-{n}",
        )
    )


def redirect_click(tenant: str, n: int) -> bytes:
    """A click as the redirect writes it: its own JSON, `v` and `type` first."""
    body = json.loads(click(tenant, n))
    return json.dumps({"v": 1, "type": "click", **body}, separators=(",", ":")).encode()


def page_view(tenant: str) -> bytes:
    ts = int(NOW.timestamp() * 1000)
    return encode(
        PageEvent(event_id="ev-page-1", tenant_id=tenant, ts=ts, received_at=ts, kind="page_view")
    )


def write_log(root: Path, payloads: list[bytes]) -> list[Record]:
    """Appends the payloads to a new partition; returns them as read back."""
    with LogWriter(root) as writer:
        writer.append_many(payloads)
        partition = writer.partition
    assert partition is not None
    records = LogReader(root).read(partition, Offset.start(), max_records=10_000)
    assert len(records) == len(payloads)
    return records


def land_click(client: Any, record: Record, tenant: str) -> None:
    insert_rows(
        client,
        "clicks",
        [
            {
                "tenant_id": tenant,
                "ts": NOW,
                "event_id": f"ev-{record.offset_int()}",
                "click_id": "clk",
                "source": "redirect",
                "received_at": NOW,
                "log_partition": int(record.partition.removeprefix("p-")),
                "log_offset": record.offset_int(),
            }
        ],
    )


def land_page_view(client: Any, record: Record) -> None:
    insert_rows(
        client,
        "page_events",
        [
            {
                "tenant_id": "t1",
                "ts": NOW,
                "event_id": "ev-page-1",
                "type": "page_view",
                "received_at": NOW,
                "log_partition": int(record.partition.removeprefix("p-")),
                "log_offset": record.offset_int(),
            }
        ],
    )


def dead_letter(client: Any, record: Record, tenant: str) -> None:
    insert_rows(
        client,
        "dead_letters",
        [
            {
                "tenant_id": tenant,
                "received_at": NOW,
                "source": "eventlog",
                "event_type_guess": "click",
                "reason": "Expected `str`, got `int`",
                "payload": record.payload,
                "log_partition": int(record.partition.removeprefix("p-")),
                "log_offset": record.offset_int(),
            }
        ],
    )


# t1: clicks 0-2 (1 as the redirect writes it), t2: click 0, then a page view and a record
# that is not JSON (ingest dead-letters it as unknown; not a click).
LOG = [
    click("t1", 0),
    redirect_click("t1", 1),
    click("t2", 0),
    click("t1", 2),
    page_view("t1"),
    b"\x00not json",
]
TENANTS = ["t1", "t1", "t2", "t1"]


def reconcile_log(client: Any, root: Path) -> pl.DataFrame:
    return reconcile_log_vs_warehouse(client, client.database, root, run_id=RUN, now=NOW)


def test_log_agrees_with_the_warehouse(client: Any, database: str, tmp_path: Path) -> None:
    migrate(client, database)
    records = write_log(tmp_path, LOG)
    for record, tenant in zip(records[:2] + records[3:4], ["t1", "t1", "t1"], strict=True):
        land_click(client, record, tenant)
    dead_letter(client, records[2], "t2")  # t2's click was rejected: accounted for
    land_page_view(client, records[4])

    assert reconcile_log(client, tmp_path).is_empty()


def test_a_click_in_the_log_not_in_the_warehouse_is_found(
    client: Any, database: str, tmp_path: Path
) -> None:
    migrate(client, database)
    records = write_log(tmp_path, LOG)
    for record, tenant in zip(records[:4], TENANTS, strict=True):
        if record is not records[1]:  # t1's second click never landed
            land_click(client, record, tenant)
    land_page_view(client, records[4])
    # Appended (in a new segment) after what ingest reached, just now: not ingested yet, so
    # not a difference.
    with LogWriter(tmp_path) as writer:
        writer.append_many([click("t1", 7), click("t2", 8)])
        assert writer.partition == "p-0000"

    frame = reconcile_log(client, tmp_path)

    assert list(frame.select("tenant_id", "key", "expected", "actual").iter_rows()) == [
        ("t1", "p-0000", 3, 2)
    ]
    assert frame["day"][0] == NOW.date() and frame["currency"][0] == ""
    details = json.loads(frame["details"][0])
    assert details["landed"] == 2 and details["dead_lettered"] == 0
    assert details["undecodable_records"] == 1
    assert details["ingest_high_water"] == records[4].offset.to_str()
    assert details["clicks_not_ingested_yet"] == 2
    assert stored(client) == [("t1", "log_vs_warehouse", NOW.date(), "", "p-0000", 3, 2, RUN)]


def test_a_partition_ingest_never_read_is_compared_once_settled(
    client: Any, database: str, tmp_path: Path
) -> None:
    migrate(client, database)
    # Two writers at once: two partitions. Ingest read p-0000 and never p-0001.
    with LogWriter(tmp_path) as first, LogWriter(tmp_path) as second:
        first.append_many([click("t1", 0), click("t1", 1)])
        second.append(click("t2", 5))
        assert (first.partition, second.partition) == ("p-0000", "p-0001")
    for record in LogReader(tmp_path).read("p-0000", Offset.start()):
        land_click(client, record, "t1")

    assert reconcile_log(client, tmp_path).is_empty()  # written just now: not due yet

    an_hour_ago = time.time() - 3600
    segment = tmp_path / "p-0001" / segment_name(LogReader(tmp_path).segments("p-0001")[0])
    os.utime(segment, (an_hour_ago, an_hour_ago))

    frame = reconcile_log(client, tmp_path)
    assert list(frame.select("tenant_id", "key", "expected", "actual").iter_rows()) == [
        ("t2", "p-0001", 1, 0)
    ]
    assert json.loads(frame["details"][0])["ingest_high_water"] is None


def test_clicks_in_the_warehouse_the_log_does_not_have_are_found(
    client: Any, database: str, tmp_path: Path
) -> None:
    migrate(client, database)
    records = write_log(tmp_path, LOG)
    for record, tenant in zip(records[:4], TENANTS, strict=True):
        land_click(client, record, tenant)
    land_click(client, records[4], "t1")  # the page view's position, landed as a click

    frame = reconcile_log(client, tmp_path)

    assert list(frame.select("tenant_id", "key", "expected", "actual").iter_rows()) == [
        ("t1", "p-0000", 3, 4)
    ]


def test_reconcile_all_on_an_empty_warehouse(client: Any, database: str, tmp_path: Path) -> None:
    migrate(client, database)
    create_marts(client)

    frame = reconcile_all(client, database, run_id=RUN, now=NOW, event_log_dir=tmp_path)

    assert frame.is_empty() and frame.schema == pl.Schema(DIFFERENCE_SCHEMA)
