"""`ClickHouseSink`: micro-batched Arrow inserts into the landing tables.

Rows are buffered per table and inserted with clickhouse-connect's `insert_arrow` (one
pyarrow Table per table, built column by column) when a table's buffer reaches `flush_rows`
rows, when its oldest row has waited `flush_interval_s`, and at every Bytewax snapshot
(epoch end). Flushing in `snapshot()` is what makes recovery lose nothing: Bytewax commits an
epoch's source offsets only after every operator's snapshot for it, so no row whose offset is
committed is still only in memory. A crash may re-insert rows already inserted (at least
once); the tables collapse them by event_id (docs/ingest.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from ingest.metrics import get_metrics
from ingest.rows import TableRows, to_arrow

log = logging.getLogger("rastro.ingest")

SinkItem = tuple[str, TableRows]
SINK_KEY = "warehouse"  # one sink partition: the flow keys every item with it


class _ClickHousePartition(StatefulSinkPartition[TableRows, None]):
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
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._since: dict[str, float] = {}  # table -> when its oldest buffered row came

    def write_batch(self, values: list[TableRows]) -> None:
        now = self._clock()
        for batch in values:
            for table, rows in batch.items():
                if rows:
                    self._buffers.setdefault(table, []).extend(rows)
                    self._since.setdefault(table, now)
        for table in list(self._buffers):
            if (
                len(self._buffers[table]) >= self._flush_rows
                or now - self._since[table] >= self._flush_interval_s
            ):
                self._flush(table)

    def snapshot(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def flush(self) -> None:
        for table in list(self._buffers):
            self._flush(table)

    def _flush(self, table: str) -> None:
        rows = self._buffers.pop(table, [])
        since = self._since.pop(table, None)
        if not rows:
            return
        for start in range(0, len(rows), self._flush_rows):
            chunk = rows[start : start + self._flush_rows]
            began = time.perf_counter()
            self._client.insert_arrow(table, to_arrow(table, chunk))
            elapsed = time.perf_counter() - began
            get_metrics().observe_insert(table, len(chunk), elapsed)
            log.info(
                json.dumps(
                    {
                        "event": "ingest_insert",
                        "table": table,
                        "rows": len(chunk),
                        "insert_ms": round(elapsed * 1000, 2),
                        "buffered_s": None if since is None else round(self._clock() - since, 3),
                    }
                )
            )


class ClickHouseSink(FixedPartitionedSink[TableRows, None]):
    """Inserts `(SINK_KEY, {table: rows})` items into ClickHouse; at least once, with
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
