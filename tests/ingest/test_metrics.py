"""ingest.metrics: counts, lag in bytes, the JSON line and the Prometheus endpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.request import urlopen

import pytest

from ingest.metrics import IngestMetrics, lag_bytes
from rastro.eventlog import LogReader, LogWriter, Offset


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_counts_are_logged_as_json_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    metrics = IngestMetrics(log_interval_s=10, clock=clock)
    caplog.set_level(logging.INFO, logger="rastro.ingest")
    metrics.count_batch(100, 98, 2)
    metrics.count_batch(50, 50, 0)
    metrics.observe_insert("clicks", 148, 0.012)
    metrics.set_lag("p-0000", 4096)
    assert caplog.records == []  # the interval has not passed
    clock.now = 10.5
    metrics.set_lag("p-0001", 0)
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "ingest_metrics"
    assert (line["batches"], line["events_in"], line["events_out"]) == (2, 150, 148)
    assert (line["dead_letters"], line["max_batch"], line["mean_batch"]) == (2, 100, 75.0)
    assert (line["inserts"], line["rows_inserted"], line["insert_ms_max"]) == (1, 148, 12.0)
    assert line["lag_bytes"] == {"p-0000": 4096, "p-0001": 0}
    assert line["lag_bytes_total"] == 4096


def test_lag_is_the_bytes_after_the_offset(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        writer.append_many([b"x" * 100] * 10)
        partition = writer.partition
        assert partition is not None
        reader = LogReader(tmp_path)
        records = reader.read(partition, Offset.start())
        assert len(records) == 10
        assert lag_bytes(reader, partition, records[-1].next_offset) == 0  # at the end
        size = records[-1].next_offset.position - records[5].offset.position
        assert lag_bytes(reader, partition, records[5].offset) == size
        # from the start: the segment's header too
        assert lag_bytes(reader, partition, Offset.start()) == records[-1].next_offset.position
        writer.append(b"y" * 100)
        assert lag_bytes(reader, partition, records[-1].next_offset) > 100


def test_prometheus_endpoint_serves_the_counters() -> None:
    pytest.importorskip("prometheus_client")
    metrics = IngestMetrics()
    metrics.count_batch(10, 9, 1)
    metrics.observe_insert("clicks", 9, 0.02)
    metrics.set_lag("p-0000", 123)
    port = metrics.serve(0)
    assert port is not None
    try:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    assert "rastro_ingest_events_in_total 10.0" in text
    assert "rastro_ingest_dead_letters_total 1.0" in text
    assert 'rastro_ingest_rows_inserted_total{table="clicks"} 9.0' in text
    assert 'rastro_ingest_lag_bytes{partition="p-0000"} 123.0' in text
    assert 'rastro_ingest_insert_seconds_count{table="clicks"} 1.0' in text
    assert metrics.prometheus_text().startswith(b"# HELP")
