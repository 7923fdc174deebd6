"""The endpoint killed with SIGKILL in the middle of a stream of inserts loses nothing it
acknowledged and keeps no partial batch; and a data directory has one owner at a time."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from tests.endpoint import start_endpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("CLICKHOUSE_TEST_URL")),
        reason="kills and restarts a private embedded endpoint; a real server is not ours to kill",
    ),
]

BATCH_ROWS = 20_000
MAX_BATCHES = 100_000
WRITER_LIMIT = 40.0  # seconds the writer may run at most, killed endpoint or not
TABLE = "crash_batches"


def _client(port: int, **kwargs: Any) -> Any:
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, **kwargs)


def write_batches(port: int, ack_log: str) -> None:
    """Inserts numbered batches until an insert fails (the endpoint is gone); after each
    acknowledged one, appends its number to `ack_log` and fsyncs it. The columns that do not
    depend on the batch are built once, so that the writer spends its time inside inserts and
    the kill lands in one more often than not."""
    deadline = time.monotonic() + WRITER_LIMIT
    client = _client(port, query_retries=0)  # an insert is sent once: acknowledged or not
    seqs = list(range(BATCH_ROWS))
    payloads = [f"row {s} " + "x" * 40 for s in seqs]
    with open(ack_log, "a", encoding="ascii") as log:
        for batch in range(MAX_BATCHES):
            if time.monotonic() > deadline:
                break
            try:
                client.insert(
                    TABLE,
                    [
                        [batch] * BATCH_ROWS,
                        seqs,
                        range(batch * BATCH_ROWS, (batch + 1) * BATCH_ROWS),
                        payloads,
                    ],
                    column_names=["batch", "seq", "value", "payload"],
                    column_oriented=True,
                )
            except Exception as exc:
                log.write(
                    f"# stopped at batch {batch}: {type(exc).__name__}: ...{str(exc)[-200:]!r}\n"
                )
                break
            log.write(f"{batch}\n")
            log.flush()
            os.fsync(log.fileno())


def _acknowledged(ack_log: Path) -> list[int]:
    return [int(line) for line in ack_log.read_text().splitlines() if line and line[0] != "#"]


def test_acknowledged_batches_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ack_log = tmp_path / "acknowledged.log"
    endpoint = start_endpoint(data_dir)
    writer = None
    try:
        setup = _client(endpoint.port)
        setup.command(
            f"CREATE TABLE {TABLE} (batch UInt32, seq UInt32, value UInt64, payload String) "
            "ENGINE = MergeTree ORDER BY (batch, seq)"
        )
        setup.close()
        writer = multiprocessing.get_context("spawn").Process(
            target=write_batches, args=(endpoint.port, str(ack_log)), name="batch-writer"
        )
        writer.start()
        time.sleep(random.uniform(2.0, 5.0))
        assert writer.is_alive(), "the writer stopped before the kill"
        endpoint.kill()  # SIGKILL, mid-stream
        assert endpoint.process.returncode == -9
        writer.join(30)
        assert not writer.is_alive(), "the writer did not notice the endpoint was gone"
        assert writer.exitcode == 0

        endpoint = start_endpoint(data_dir)  # same data directory, after the crash
        acked = _acknowledged(ack_log)
        client = _client(endpoint.port)
        stored = {
            batch: (rows, distinct, total, low, high, intact)
            for batch, rows, distinct, total, low, high, intact in client.query(
                "SELECT batch, count(), uniqExact(seq), sum(value), min(seq), max(seq), "
                "countIf(payload = concat('row ', toString(seq), ' ', repeat('x', 40))) "
                f"FROM {TABLE} GROUP BY batch ORDER BY batch"
            ).result_rows
        }
        in_flight = len(acked)
        stopped = [line for line in ack_log.read_text().splitlines() if line.startswith("#")]
        print(
            f"\n{len(acked)} batches acknowledged before the kill, {len(stored)} stored after "
            f"the restart ({sum(s[0] for s in stored.values())} rows); batch {in_flight}, in "
            f"flight at the kill, {'was' if in_flight in stored else 'was not'} committed; "
            f"writer: {stopped[-1] if stopped else 'no error logged'}"
        )
        assert acked, "no batch was acknowledged before the kill"
        assert acked == list(range(len(acked)))
        full = {
            batch: (
                BATCH_ROWS,
                BATCH_ROWS,
                batch * BATCH_ROWS * BATCH_ROWS + BATCH_ROWS * (BATCH_ROWS - 1) // 2,
                0,
                BATCH_ROWS - 1,
                BATCH_ROWS,
            )
            for batch in range(in_flight + 1)
        }
        lost = [batch for batch in acked if batch not in stored]
        assert not lost, f"acknowledged batches lost: {lost}"
        partial = {b: s for b, s in stored.items() if s != full.get(b)}
        assert not partial, f"partial batches: {partial}"
        # Besides the acknowledged batches, only the one in flight at the kill may be there.
        assert set(stored) - set(acked) <= {in_flight}

        # The restarted endpoint takes writes and stops cleanly.
        client.command(
            f"INSERT INTO {TABLE} (batch, seq, value, payload) VALUES (999999, 0, 0, '')"
        )
        assert client.command(f"SELECT count() FROM {TABLE} WHERE batch = 999999") == 1
        client.close()
        code = endpoint.stop()
        assert code == 0, endpoint.log()
    finally:
        if writer is not None and writer.is_alive():
            writer.kill()
            writer.join(10)
        if endpoint.process.poll() is None:
            endpoint.kill()


def test_second_endpoint_on_the_same_directory_fails_clearly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_endpoint(data_dir)
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError) as failure:
            second = start_endpoint(data_dir, timeout=30)
            second.kill()  # it should not have started: don't leave it running
        elapsed = time.monotonic() - started
        message = str(failure.value)
        print(f"the second endpoint failed after {elapsed:.1f} s: {message.splitlines()[-1]}")
        assert "exited with" in message, message  # it failed, rather than hanging until killed
        assert "Only one process may own a chDB data directory" in message, message
        assert elapsed < 30

        # The first one is unharmed.
        client = _client(first.port)
        assert client.command("SELECT 1") == 1
        client.close()
    finally:
        assert first.stop() == 0, first.log()
