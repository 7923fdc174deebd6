"""`python -m ingest.run` killed with SIGKILL at random moments and restarted: in the end
every event is visible exactly once through the dedup views."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rastro.contracts import encode
from rastro.eventlog import LogWriter
from rastro.schema.migrate import migrate
from tests.conftest import client_for
from tests.ingest import helpers as h

TABLES = ("clicks", "page_events", "conversions", "order_updates", "identity_links")


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest.run"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill9(process: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the job's process group; whether it was still running."""
    alive = process.poll() is None
    if alive:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return alive


def visible(client: Any) -> tuple[int, int]:
    """(rows, distinct event ids) across the dedup views."""
    union = " UNION ALL ".join(f"SELECT event_id FROM {t}_dedup" for t in TABLES)
    rows, distinct = client.query(
        f"SELECT count(), uniqExact(event_id) FROM ({union})"
    ).result_rows[0]
    return int(rows), int(distinct)


@pytest.mark.timeout(240)
def test_kill_9_five_times_then_exact_counts(
    tmp_path: Path, warehouse_url: str, database: str
) -> None:
    client = client_for(warehouse_url, database=database)
    migrate(client, database)
    data_dir = tmp_path / "state"
    env = {
        **os.environ,
        "RASTRO_CLICKHOUSE_URL": warehouse_url,
        "RASTRO_CLICKHOUSE_DATABASE": database,
        "RASTRO_DATA_DIR": str(data_dir),
        "RASTRO_SECRET_KEY": "test-secret",
    }
    rng = random.Random(4)
    events = h.mixed(6000)
    chunks = [events[i : i + 1000] for i in range(0, 6000, 1000)]
    # Chunks 3 on go to a second partition, created while the job runs (it must find it).
    with LogWriter(data_dir / "eventlog") as first, LogWriter(data_dir / "eventlog") as second:
        first.append_many([encode(e) for e in chunks[0]])
        for number, chunk in enumerate(chunks[1:], start=1):
            process = start(env)
            time.sleep(rng.uniform(0.5, 3.0))
            writer = second if number >= 3 else first
            writer.append_many([encode(e) for e in chunk])
            time.sleep(rng.uniform(0.0, 1.0))
            assert kill9(process), "the ingest job exited by itself"
        assert (data_dir / "ingest-recovery").is_dir()
    process = start(env)
    try:
        deadline = time.monotonic() + 90
        while visible(client)[0] < len(events) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.5)  # anything still in flight would show up as an extra row
        assert visible(client) == (len(events), len(events))
    finally:
        kill9(process)
        client.close()
