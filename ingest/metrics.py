"""The ingest job's metrics: counters, gauges and latencies, exposed for Prometheus (when
`prometheus_client` is installed) on a 127.0.0.1 port, and logged as one JSON line on the
`rastro.ingest` logger every `log_interval_s`.

    metrics = get_metrics()                         # one per process (the flow's steps share it)
    metrics.count_batch(records, good, dead)        # validate: events in / out / dead-lettered
    metrics.observe_insert(table, rows, seconds)    # the sink, per insert_arrow
    metrics.set_lag(partition, bytes_behind)        # the source, at each snapshot
    metrics.serve(9464)                             # /metrics on 127.0.0.1:9464

Lag is in bytes: from the offset the source commits (its snapshot) to the end of the
partition's files as they are now (`lag_bytes`), framing and segment headers included. It
needs no read of the records (a listing and a `stat` per segment), so it is cheap enough for
every snapshot.

Every value is also kept as a plain number here, so the JSON line (and `snapshot()`) work
without prometheus_client.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rastro.eventlog import LogReader, Offset
from rastro.eventlog.format import segment_name

try:
    import prometheus_client as prom
except ImportError:  # pragma: no cover - the metrics then only go to the log
    prom = None  # type: ignore[assignment]

log = logging.getLogger("rastro.ingest")

LOG_INTERVAL_S = 10.0
DEFAULT_HOST = "127.0.0.1"
BATCH_BUCKETS = (1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000)
INSERT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def lag_bytes(reader: LogReader, partition: str, offset: Offset) -> int:
    """Bytes of `partition` on disk after `offset` (the next record to read): what the
    consumer at `offset` is behind the partition's end, framing included."""
    behind = 0
    directory = Path(reader.root) / partition
    for seq in reader.segments(partition):
        if seq < offset.segment:
            continue
        try:
            size = (directory / segment_name(seq)).stat().st_size
        except FileNotFoundError:  # removed by retention meanwhile
            continue
        behind += max(0, size - offset.position) if seq == offset.segment else size
    return behind


class IngestMetrics:
    """Counters (events in/out/dead-lettered, batches, rows inserted), the batch size and
    insert latency distributions, and per-partition lag. Thread-safe."""

    def __init__(
        self,
        *,
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        prometheus: bool = True,
    ) -> None:
        self.log_interval_s = log_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_log = clock()
        self.batches = 0
        self.events_in = 0
        self.events_out = 0
        self.dead_letters = 0
        self.max_batch = 0
        self.inserts = 0
        self.rows_inserted = 0
        self.insert_s_total = 0.0
        self.insert_s_max = 0.0
        self.lag: dict[str, int] = {}
        self.registry: Any = None
        self._server: Any = None
        if prometheus and prom is not None:
            self._init_prometheus()

    def _init_prometheus(self) -> None:
        assert prom is not None
        # A registry per instance: tests (and two flows in one process) never collide.
        registry = self.registry = prom.CollectorRegistry()
        self._p_events_in = prom.Counter(
            "rastro_ingest_events_in", "Log records read", registry=registry
        )
        self._p_events_out = prom.Counter(
            "rastro_ingest_events_out", "Records that passed validation", registry=registry
        )
        self._p_dead = prom.Counter(
            "rastro_ingest_dead_letters", "Records sent to dead_letters", registry=registry
        )
        self._p_batch = prom.Histogram(
            "rastro_ingest_batch_records",
            "Records per batch read from the log",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self._p_rows = prom.Counter(
            "rastro_ingest_rows_inserted", "Rows inserted", ["table"], registry=registry
        )
        self._p_insert = prom.Histogram(
            "rastro_ingest_insert_seconds",
            "Duration of one insert_arrow",
            ["table"],
            buckets=INSERT_BUCKETS,
            registry=registry,
        )
        self._p_lag = prom.Gauge(
            "rastro_ingest_lag_bytes",
            "Bytes of the log partition after the committed offset",
            ["partition"],
            registry=registry,
        )

    # -- recording -----------------------------------------------------------------------------

    def count_batch(self, records: int, good: int, dead: int) -> None:
        """One batch validated: `records` read, `good` events, `dead` dead letters."""
        with self._lock:
            self.batches += 1
            self.events_in += records
            self.events_out += good
            self.dead_letters += dead
            self.max_batch = max(self.max_batch, records)
        if self.registry is not None:
            self._p_events_in.inc(records)
            self._p_events_out.inc(good)
            self._p_dead.inc(dead)
            self._p_batch.observe(records)
        self.maybe_log()

    def observe_insert(self, table: str, rows: int, seconds: float) -> None:
        """One insert of `rows` rows into `table` that took `seconds`."""
        with self._lock:
            self.inserts += 1
            self.rows_inserted += rows
            self.insert_s_total += seconds
            self.insert_s_max = max(self.insert_s_max, seconds)
        if self.registry is not None:
            self._p_rows.labels(table).inc(rows)
            self._p_insert.labels(table).observe(seconds)
        self.maybe_log()

    def set_lag(self, partition: str, behind: int) -> None:
        """What the committed offset of `partition` is behind its end (bytes)."""
        with self._lock:
            self.lag[partition] = behind
        if self.registry is not None:
            self._p_lag.labels(partition).set(behind)
        self.maybe_log()

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The JSON line's fields."""
        with self._lock:
            return {
                "event": "ingest_metrics",
                "batches": self.batches,
                "events_in": self.events_in,
                "events_out": self.events_out,
                "dead_letters": self.dead_letters,
                "max_batch": self.max_batch,
                "mean_batch": round(self.events_in / self.batches, 1) if self.batches else 0,
                "inserts": self.inserts,
                "rows_inserted": self.rows_inserted,
                "insert_ms_mean": (
                    round(self.insert_s_total / self.inserts * 1000, 2) if self.inserts else 0
                ),
                "insert_ms_max": round(self.insert_s_max * 1000, 2),
                "lag_bytes": dict(sorted(self.lag.items())),
                "lag_bytes_total": sum(self.lag.values()),
            }

    def maybe_log(self) -> bool:
        """Log the JSON line if `log_interval_s` passed since the last one."""
        now = self._clock()
        with self._lock:
            if now - self._last_log < self.log_interval_s:
                return False
            self._last_log = now
        self.log_now()
        return True

    def log_now(self) -> None:
        log.info(json.dumps(self.snapshot(), separators=(",", ":")))

    def prometheus_text(self) -> bytes:
        """The exposition text (b"" without prometheus_client)."""
        if self.registry is None or prom is None:
            return b""
        return bytes(prom.generate_latest(self.registry))

    def serve(self, port: int, host: str = DEFAULT_HOST) -> int | None:
        """Serve /metrics on host:port (port 0: a free one) in a daemon thread; returns the
        port, or None when prometheus_client is not installed (then only the log has them)."""
        if self.registry is None or prom is None:
            log.warning("prometheus_client is not installed: ingest metrics only in the log")
            return None
        server, _thread = prom.start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


_default: IngestMetrics | None = None
_default_lock = threading.Lock()


def get_metrics() -> IngestMetrics:
    """The process's metrics, shared by the source, the flow's steps and the sink."""
    global _default
    with _default_lock:
        if _default is None:
            _default = IngestMetrics()
        return _default
