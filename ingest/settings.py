"""Knobs of the ingest job (the dataflow's batching and polling), separate from Rastro's
process settings so tests can shrink them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IngestSettings:
    read_max_records: int = 10_000  # per read of one log partition (one item in the flow)
    read_max_bytes: int = 16 << 20  # payload bytes per read
    poll_interval_s: float = 0.1  # wait before reading an idle partition again
    flush_rows: int = 50_000  # insert a table's buffer once it holds this many rows
    flush_interval_s: float = 1.0  # ... or once its oldest row waited this long
    snapshot_interval_s: float = 1.0  # Bytewax epoch: recovery snapshot (and a flush) each
    rescan_interval_s: float = 5.0  # look for new log partitions (API workers) this often
    stop_at_end: bool = False  # bounded run: stop once every partition is read to its end
    metrics_port: int | None = None  # Prometheus /metrics on 127.0.0.1:<port>; None: log only
    metrics_log_interval_s: float = 10.0  # an `ingest_metrics` JSON line this often
