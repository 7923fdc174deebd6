"""`ClickHouseSink`: micro-batched Arrow inserts into the landing tables.

Frames are buffered per table and inserted with clickhouse-connect's `insert_arrow` (the
frames of a table concatenated, as Arrow with the table's column types) when a table's buffer
reaches `flush_rows` rows, when its oldest row has waited `flush_interval_s`, and at every
Bytewax snapshot (epoch end).

Inserts run on one background thread, one at a time (the next is handed over once the
previous is done): while the warehouse writes a batch (in another process, on another core),
the flow decodes the next one. A failed insert is raised on the flow's thread at the next flush
or snapshot, and the flow stops.

Flushing and waiting for every insert in `snapshot()` is what makes recovery lose nothing:
Bytewax commits an epoch's source offsets only after every operator's snapshot for it, so no
row whose offset is committed is still only in memory. A crash may re-insert rows already
inserted (at least once); the tables collapse them by event_id (docs/ingest.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import polars as pl
import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ingest.frames import Frames, to_arrow
from ingest.metrics import get_metrics

log = logging.getLogger("rastro.ingest")

SinkItem = tuple[str, Frames]
SINK_KEY = "warehouse"  # one sink partition: the flow keys every item with it


class _ClickHousePartition(StatefulSinkPartition[Frames, None]):
    def __init__(
        self,
        client: Any,
        *,
        flush_rows: int,
        flush_interval_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._buffers: dict[str, list[pl.DataFrame]] = {}
        self._since: dict[str, float] = {}  # table -> when its oldest buffered row came
        self._inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rastro-insert")
        self._pending: Future[None] | None = None

    def write_batch(self, values: list[Frames]) -> None:
        now = self._clock()
        for batch in values:
            for table, frame in batch.items():
                if len(frame):
                    self._buffers.setdefault(table, []).append(frame)
                    self._since.setdefault(table, now)
        for table in list(self._buffers):
            if (
                sum(map(len, self._buffers[table])) >= self._flush_rows
                or now - self._since[table] >= self._flush_interval_s
            ):
                self._flush(table)

    def snapshot(self) -> None:
        self.flush()
        self.wait()

    def close(self) -> None:
        try:
            self.snapshot()
        finally:
            self._inserter.shutdown()
            close = getattr(self._client, "close", None)
            if close is not None:
                close()

    def flush(self) -> None:
        """Hand every buffered row to the inserter."""
        for table in list(self._buffers):
            self._flush(table)

    def wait(self) -> None:
        """Block until the inserts handed over are done; raise the first one's error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _flush(self, table: str) -> None:
        frames = self._buffers.pop(table, [])
        since = self._since.pop(table, None)
        if not frames:
            return
        frame = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
        for start in range(0, len(frame), self._flush_rows):
            arrow = to_arrow(table, frame.slice(start, self._flush_rows))
            self.wait()  # one insert in flight at a time, in order
            self._pending = self._inserter.submit(self._insert, table, arrow, since)

    def _insert(self, table: str, arrow: pa.Table, since: float | None) -> None:
        began = time.perf_counter()
        self._client.insert_arrow(table, arrow)
        elapsed = time.perf_counter() - began
        get_metrics().observe_insert(table, arrow.num_rows, elapsed)
        log.info(
            json.dumps(
                {
                    "event": "ingest_insert",
                    "table": table,
                    "rows": arrow.num_rows,
                    "insert_ms": round(elapsed * 1000, 2),
                    "buffered_s": None if since is None else round(self._clock() - since, 3),
                }
            )
        )


class ClickHouseSink(FixedPartitionedSink[Frames, None]):
    """Inserts `(SINK_KEY, {table: frame})` items into ClickHouse; at least once, with
    duplicates collapsed by the tables (module doc). `client_factory` is called once per run
    (on the worker) and must return a clickhouse-connect client (or anything with
    `insert_arrow(table, arrow_table)`) whose current database holds the landing tables."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        flush_rows: int = 50_000,
        flush_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_rows < 1 or flush_interval_s < 0:
            raise ValueError("flush_rows must be >= 1 and flush_interval_s >= 0")
        self.client_factory = client_factory
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.clock = clock

    def list_parts(self) -> list[str]:
        return [SINK_KEY]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ClickHousePartition:
        return _ClickHousePartition(
            self.client_factory(),
            flush_rows=self.flush_rows,
            flush_interval_s=self.flush_interval_s,
            clock=self.clock,
        )
