"""ClickHouseSink: micro-batches by rows and by time, Arrow inserts on a background thread,
flush and wait at snapshot, insert errors raised on the flow's thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import pyarrow as pa
import pytest
from bytewax.testing import TestingSource, run_main

from ingest.flow import build_flow
from ingest.frames import COLUMNS, Frames, events_frame
from ingest.sink import ClickHouseSink
from ingest.source import LogBatch
from tests.ingest import helpers as h


class FakeClient:
    def __init__(self) -> None:
        self.inserts: list[tuple[str, pa.Table]] = []
        self.closed = False

    def insert_arrow(self, table: str, arrow_table: pa.Table) -> None:
        assert isinstance(arrow_table, pa.Table)
        self.inserts.append((table, arrow_table))

    def close(self) -> None:
        self.closed = True

    def sizes(self) -> list[tuple[str, int]]:
        return [(table, arrow.num_rows) for table, arrow in self.inserts]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame_of(events: list[Any]) -> Any:
    return events_frame(type(events[0]), events, [0] * len(events), list(range(len(events))))


def clicks(start: int, n: int) -> Frames:
    return {"clicks": frame_of([h.click(i) for i in range(start, start + n)])}


def partition(client: FakeClient, clock: Clock, rows: int = 5, seconds: float = 1.0) -> Any:
    sink = ClickHouseSink(lambda: client, flush_rows=rows, flush_interval_s=seconds, clock=clock)
    return sink.build_part("write_warehouse", "warehouse", None)


def test_flushes_by_rows_in_chunks_of_at_most_flush_rows() -> None:
    client, clock = FakeClient(), Clock()
    part = partition(client, clock, rows=5, seconds=60)
    part.write_batch([clicks(0, 3)])
    part.wait()  # inserts run on the sink's thread
    assert client.inserts == []
    part.write_batch([clicks(3, 9)])  # 12 buffered: 5 + 5 + 2
    part.wait()  # inserts run on the sink's thread
    assert client.sizes() == [("clicks", 5), ("clicks", 5), ("clicks", 2)]
    ids = [i for _, arrow in client.inserts for i in arrow.column("event_id").to_pylist()]
    assert ids == [f"click-{i}" for i in range(12)]
    assert client.inserts[0][1].column_names == list(COLUMNS["clicks"])


def test_flushes_by_time_per_table() -> None:
    client, clock = FakeClient(), Clock()
    part = partition(client, clock, rows=1000, seconds=1.0)
    part.write_batch([clicks(0, 2)])
    clock.now += 0.6
    part.write_batch([{"page_events": frame_of([h.page_event(9)])}])
    part.wait()  # inserts run on the sink's thread
    assert client.inserts == []
    clock.now += 0.5  # clicks waited 1.1 s, page_events 0.5 s
    part.write_batch([clicks(2, 1)])
    part.wait()  # inserts run on the sink's thread
    assert client.sizes() == [("clicks", 3)]
    clock.now += 0.6
    part.write_batch([])
    part.wait()  # inserts run on the sink's thread
    assert client.sizes() == [("clicks", 3), ("page_events", 1)]


def test_snapshot_and_close_flush_everything() -> None:
    client, clock = FakeClient(), Clock()
    part = partition(client, clock, rows=1000, seconds=60)
    part.write_batch([clicks(0, 2)])
    assert part.snapshot() is None
    assert client.sizes() == [("clicks", 2)]
    part.write_batch([clicks(2, 1)])
    part.close()
    assert client.sizes() == [("clicks", 2), ("clicks", 1)] and client.closed


def test_in_the_flow_every_row_is_inserted_once() -> None:
    client = FakeClient()
    sink = ClickHouseSink(lambda: client, flush_rows=7, flush_interval_s=60)
    events = h.mixed(50)
    batches: list[LogBatch] = [
        [h.record(e, i * 10 + j) for j, e in enumerate(events[i : i + 10])]
        for i in range(0, 50, 10)
    ]
    run_main(build_flow(TestingSource(batches), sink, enricher=None))  # type: ignore[no-untyped-call]
    per_table: dict[str, int] = {}
    for table, arrow in client.inserts:
        assert arrow.num_rows <= 7
        per_table[table] = per_table.get(table, 0) + arrow.num_rows
    assert per_table == {
        t: 10 for t in ("clicks", "page_events", "conversions", "order_updates", "identity_links")
    }


class FailingClient(FakeClient):
    def insert_arrow(self, table: str, arrow_table: pa.Table) -> None:
        raise ConnectionError("warehouse gone")


def test_a_failed_insert_is_raised_at_the_next_snapshot() -> None:
    client, clock = FailingClient(), Clock()
    part = partition(client, clock, rows=2, seconds=60)
    part.write_batch([clicks(0, 2)])  # handed to the inserter, which fails
    with pytest.raises(ConnectionError, match="warehouse gone"):
        part.snapshot()


def test_inserts_run_off_the_flow_thread_one_at_a_time() -> None:
    threads: list[str] = []
    in_flight = threading.Semaphore(1)

    class Slow(FakeClient):
        def insert_arrow(self, table: str, arrow_table: pa.Table) -> None:
            assert in_flight.acquire(blocking=False), "two inserts at once"
            threads.append(threading.current_thread().name)
            time.sleep(0.01)
            in_flight.release()
            super().insert_arrow(table, arrow_table)

    client, clock = Slow(), Clock()
    part = partition(client, clock, rows=1, seconds=60)
    for i in range(5):
        part.write_batch([clicks(i, 1)])
    part.snapshot()
    assert client.sizes() == [("clicks", 1)] * 5
    assert set(threads) != {threading.current_thread().name}
