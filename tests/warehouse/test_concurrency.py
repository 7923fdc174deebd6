"""Three OS processes write and read the warehouse at once, through one endpoint (or server).

Each process runs a writer and a reader, each with its own client. The writer inserts batches
of rows with ids no other batch uses and counts what the warehouse acknowledged; the reader
runs counting and aggregating queries without pause. No query may fail, what a reader sees may
only grow and never holds a duplicate, a batch acknowledged to a writer is visible to the next
query of its process, and at the end the table holds exactly the acknowledged rows.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import client_for

pytestmark = pytest.mark.slow

PROCESSES = 3
DURATION = 20.0  # seconds of concurrent work
BATCH_ROWS = 2_000
MAX_BATCHES = 50_000  # per writer: a bound on the loop besides the clock
ID_SPACE = 1 << 40  # process p writes ids in [p * ID_SPACE, (p + 1) * ID_SPACE)
TABLE = "concurrent_events"


class _Writer:
    def __init__(self, url: str, database: str, index: int, deadline: float) -> None:
        self.client = client_for(url, database=database)
        self.index, self.deadline = index, deadline
        self.acked_batches = self.acked_rows = self.acked_sum = 0  # read by the reader thread
        self.errors: list[str] = []
        self.insert_seconds: list[float] = []

    def run(self) -> None:
        batch = 0
        while time.monotonic() < self.deadline and batch < MAX_BATCHES:
            first = self.index * ID_SPACE + batch * BATCH_ROWS
            ids = list(range(first, first + BATCH_ROWS))
            values = [(i * 7919) % 100_003 for i in ids]
            try:
                started = time.monotonic()
                self.client.insert(
                    TABLE,
                    [ids, [self.index] * BATCH_ROWS, [batch] * BATCH_ROWS, values],
                    column_names=["id", "writer", "batch", "value"],
                    column_oriented=True,
                )
                self.insert_seconds.append(time.monotonic() - started)
            except Exception:
                self.errors.append(f"writer {self.index} batch {batch}: {traceback.format_exc()}")
                return  # the batch's fate is unknown: the final count could not be checked
            # Acknowledged: the rows are in. Count them only now.
            self.acked_rows += BATCH_ROWS
            self.acked_sum += sum(values)
            self.acked_batches += 1
            batch += 1


class _Reader:
    def __init__(self, url: str, database: str, writer: _Writer) -> None:
        self.client = client_for(url, database=database)
        self.writer, self.deadline = writer, writer.deadline
        self.queries = 0
        self.errors: list[str] = []

    def run(self) -> None:
        last_count = 0
        while time.monotonic() < self.deadline and self.queries < 1_000_000:
            own_acked = self.writer.acked_rows  # acknowledged before the queries start
            try:
                count, _total, distinct = self.client.query(
                    f"SELECT count(), sum(value), uniqExact(id) FROM {TABLE}"
                ).result_rows[0]
                per_writer = dict(
                    self.client.query(
                        f"SELECT writer, count() FROM {TABLE} GROUP BY writer"
                    ).result_rows
                )
                self.client.query(
                    f"SELECT writer, batch % 10 AS b, count(), avg(value), max(id) FROM {TABLE} "
                    "GROUP BY writer, b ORDER BY writer, b"
                )
            except Exception:
                self.errors.append(f"reader {self.writer.index}: {traceback.format_exc()}")
                return
            self.queries += 3
            problems = []
            if count != distinct:
                problems.append(f"{count} rows but {distinct} distinct ids")
            if count < last_count:
                problems.append(f"count went down from {last_count} to {count}")
            if per_writer.get(self.writer.index, 0) < own_acked:
                problems.append(
                    f"{own_acked} rows acknowledged to writer {self.writer.index} but only "
                    f"{per_writer.get(self.writer.index, 0)} visible"
                )
            if problems:
                self.errors.append(f"reader {self.writer.index}: " + "; ".join(problems))
                return
            last_count = count


def work(url: str, database: str, index: int, start_at: float, result_path: str) -> None:
    """One OS process: a writer thread and a reader thread from `start_at` (time.time())
    for DURATION seconds. Writes what happened to `result_path` as JSON."""
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + DURATION
    errors: list[str] = []
    writer = reader = None
    try:
        writer = _Writer(url, database, index, deadline)
        reader = _Reader(url, database, writer)
        threads = [
            threading.Thread(target=writer.run, name=f"writer-{index}"),
            threading.Thread(target=reader.run, name=f"reader-{index}"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DURATION + 60)
            if thread.is_alive():
                errors.append(f"{thread.name} still running {DURATION + 60:.0f} s after start")
        errors += writer.errors + reader.errors
    except Exception:
        errors.append(f"process {index}: {traceback.format_exc()}")
    seconds = sorted(writer.insert_seconds) if writer else []
    result = {
        "index": index,
        "errors": errors,
        "acked_batches": writer.acked_batches if writer else 0,
        "acked_rows": writer.acked_rows if writer else 0,
        "acked_sum": writer.acked_sum if writer else 0,
        "queries": reader.queries if reader else 0,
        "insert_p50_ms": 1e3 * seconds[len(seconds) // 2] if seconds else None,
        "insert_max_ms": 1e3 * seconds[-1] if seconds else None,
    }
    Path(result_path).write_text(json.dumps(result))
    for side in (writer, reader):
        if side is not None:
            side.client.close()


def test_three_processes_write_and_read_at_once(
    warehouse_url: str, database: str, client: Any, tmp_path: Path
) -> None:
    client.command(
        f"CREATE TABLE {TABLE} (id UInt64, writer UInt8, batch UInt32, value UInt64) "
        "ENGINE = MergeTree ORDER BY id"
    )
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # all three begin together once they have imported
    results = [tmp_path / f"worker-{i}.json" for i in range(PROCESSES)]
    processes = [
        context.Process(
            target=work,
            args=(warehouse_url, database, i, start_at, str(results[i])),
            name=f"warehouse-worker-{i}",
        )
        for i in range(PROCESSES)
    ]
    started = time.monotonic()
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(max(1.0, started + DURATION + 90 - time.monotonic()))
    finally:
        hung = [p.name for p in processes if p.is_alive()]
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(10)
    assert not hung, f"worker processes did not finish: {hung}"
    assert [p.exitcode for p in processes] == [0] * PROCESSES

    reports = [json.loads(path.read_text()) for path in results]
    errors = [error for report in reports for error in report["errors"]]
    assert not errors, "\n".join(errors)
    for report in reports:
        assert report["acked_batches"] > 0 and report["queries"] > 0, report
        print(
            f"process {report['index']}: {report['acked_batches']} batches "
            f"({report['acked_rows']} rows) acknowledged, {report['queries']} queries read; "
            f"insert p50 {report['insert_p50_ms']:.1f} ms, max {report['insert_max_ms']:.1f} ms"
        )

    count, total, distinct = client.query(
        f"SELECT count(), sum(value), uniqExact(id) FROM {TABLE}"
    ).result_rows[0]
    assert count == sum(r["acked_rows"] for r in reports)
    assert distinct == count
    assert total == sum(r["acked_sum"] for r in reports)
    per_writer = dict(
        client.query(f"SELECT writer, count() FROM {TABLE} GROUP BY writer").result_rows
    )
    assert per_writer == {r["index"]: r["acked_rows"] for r in reports}
