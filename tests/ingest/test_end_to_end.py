"""The whole job against the embedded warehouse: event log -> flow -> dedup views."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from ingest.flow import build_flow
from ingest.run import ensure_recovery_dir
from ingest.sink import ClickHouseSink
from ingest.source import EventLogSource
from rastro.contracts import encode
from rastro.eventlog import LogWriter
from rastro.schema.migrate import migrate
from tests.conftest import client_for
from tests.ingest import helpers as h

TABLES = ("clicks", "page_events", "conversions", "order_updates", "identity_links")


@pytest.fixture
def warehouse(warehouse_url: str, database: str) -> Iterator[Any]:
    client = client_for(warehouse_url, database=database)
    migrate(client, database)
    yield client
    client.close()


def write_log(root: Path, events: list[Any], extra: list[bytes] = ()) -> None:  # type: ignore[assignment]
    half = len(events) // 2
    with LogWriter(root) as first, LogWriter(root) as second:
        first.append_many([encode(e) for e in events[:half]])
        second.append_many([encode(e) for e in events[half:]] + list(extra))


def ingest_once(
    root: Path, warehouse_url: str, database: str, recovery: Path | None = None
) -> None:
    source = EventLogSource(root, max_records=37, stop_at_end=True)
    sink = ClickHouseSink(
        lambda: client_for(warehouse_url, database=database), flush_rows=100, flush_interval_s=0.2
    )
    run_main(
        build_flow(source, sink, enricher=None),
        epoch_interval=timedelta(milliseconds=200),
        recovery_config=None if recovery is None else RecoveryConfig(recovery),  # type: ignore[no-untyped-call]
    )


def counts(client: Any, suffix: str = "_dedup") -> dict[str, int]:
    return {
        t: int(client.query(f"SELECT count() FROM {t}{suffix}").result_rows[0][0]) for t in TABLES
    }


def test_the_log_lands_once_and_a_replay_adds_no_visible_row(
    tmp_path: Path, warehouse: Any, warehouse_url: str, database: str
) -> None:
    n = 500
    root = tmp_path / "eventlog"
    write_log(root, h.mixed(n), extra=[b"{broken"])
    ingest_once(root, warehouse_url, database)
    assert counts(warehouse) == {t: n // 5 for t in TABLES}
    assert counts(warehouse, "") == {t: n // 5 for t in TABLES}
    dead = warehouse.query("SELECT payload, reason FROM dead_letters_dedup").result_rows
    assert len(dead) == 1 and dead[0][0] == "{broken"

    ingest_once(root, warehouse_url, database)  # the whole log again, from the start
    assert counts(warehouse) == {t: n // 5 for t in TABLES}
    assert counts(warehouse, "") == {t: 2 * n // 5 for t in TABLES}  # before any merge
    assert len(warehouse.query("SELECT 1 FROM dead_letters_dedup").result_rows) == 1

    row = warehouse.query(
        "SELECT toUnixTimestamp64Milli(ts), type, properties FROM page_events_dedup "
        "WHERE event_id = 'page-1'"
    ).result_rows
    assert row == [(h.TS + 1, "identify", '{"plan":"pro","n":3}')]
    items = warehouse.query(
        "SELECT line_items, amount_minor FROM conversions_dedup WHERE event_id = 'conv-2'"
    ).result_rows
    line = {"sku": "sku-1", "product_id": "", "category": "shoes", "quantity": 2}
    assert items == [([{**line, "amount_minor": 12345}], 12345)]


def test_recovery_resumes_where_the_last_run_stopped(
    tmp_path: Path, warehouse: Any, warehouse_url: str, database: str
) -> None:
    root = tmp_path / "eventlog"
    recovery = ensure_recovery_dir(tmp_path / "recovery")
    events = h.mixed(200)
    write_log(root, events[:100])
    ingest_once(root, warehouse_url, database, recovery)
    assert sum(counts(warehouse, "").values()) == 100
    with LogWriter(root) as writer:
        writer.append_many([encode(e) for e in events[100:]])
    ingest_once(root, warehouse_url, database, recovery)
    assert counts(warehouse) == {t: 40 for t in TABLES}
    assert sum(counts(warehouse, "").values()) <= 200 + 37  # at most the last read again
