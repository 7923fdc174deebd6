"""A 10M-row result streams through the endpoint without the endpoint holding it: its resident
memory grows by far less than the result's size (~150 MB) while a client reads it, be the client
fast (clickhouse-connect's block stream) or slow (a raw HTTP read that stops for a while: the
endpoint must wait for it rather than run ahead and buffer the result)."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Iterator

import clickhouse_connect
import psutil
import pytest

from tests.endpoint import Endpoint, start_endpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("CLICKHOUSE_TEST_URL")),
        reason="measures the memory of a private embedded endpoint process",
    ),
]

ROWS = 10_000_000
QUERY = "SELECT number, toString(number) FROM numbers({rows})"
MAX_GROWTH = 300 << 20  # bytes of endpoint RSS growth allowed while streaming
# 300 MB would let an endpoint that buffers the whole ~150 MB result pass: it may not keep even
# half of it either.
SAMPLE_EVERY = 0.05  # seconds


def native_size(rows: int) -> int:
    """Bytes of the result's columns in Native: UInt64s, then strings of one length byte and
    the decimal digits."""
    digits = sum(
        (min(rows, int(10**d)) - (int(10 ** (d - 1)) if d > 1 else 0)) * d
        for d in range(1, len(str(rows)) + 1)
    )
    return rows * 8 + rows + digits


class RssSampler:
    """Samples the resident set size of a process (and of this one, for comparison)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.client = psutil.Process()
        self.server_samples: list[int] = []
        self.client_samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.server_samples.append(self.process.memory_info().rss)
            self.client_samples.append(self.client.memory_info().rss)
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    endpoint = start_endpoint(tmp_path_factory.mktemp("streaming") / "data")
    try:
        yield endpoint
        assert endpoint.stop() == 0, endpoint.log()
    finally:
        if endpoint.process.poll() is None:
            endpoint.kill()


def endpoint_process(endpoint: Endpoint) -> psutil.Process:
    server = psutil.Process(endpoint.process.pid)
    # The endpoint is its own process: what is sampled is not this (client) process.
    assert server.pid != os.getpid() and server.ppid() == os.getpid()
    assert "warehouse" in server.cmdline() and "serve" in server.cmdline()
    return server


def warm_up(endpoint: Endpoint) -> None:
    """The same query, smaller, so that the engine's thread pools and arenas exist."""
    client = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port)
    assert len(client.query(QUERY.format(rows=200_000)).result_rows) == 200_000
    client.close()
    time.sleep(0.5)


def check_growth(
    label: str, elapsed: float, before: int, client_before: int, sampler: RssSampler
) -> None:
    assert len(sampler.server_samples) >= 3, "too few RSS samples"
    growth = max(sampler.server_samples) - before
    client_growth = max(sampler.client_samples) - client_before
    print(
        f"\n{label}: {ROWS:,} rows (~{native_size(ROWS) >> 20} MB as Native) in {elapsed:.1f} s; "
        f"endpoint pid {sampler.process.pid} RSS {before >> 20} MB before, max "
        f"{max(sampler.server_samples) >> 20} MB during: growth {growth / 2**20:.1f} MB "
        f"({len(sampler.server_samples)} samples); client pid {os.getpid()} RSS growth "
        f"{client_growth / 2**20:.1f} MB"
    )
    assert growth < MAX_GROWTH, f"endpoint RSS grew by {growth >> 20} MB while streaming"
    assert growth < native_size(ROWS) // 2, (
        f"endpoint RSS grew by {growth >> 20} MB: it holds much of the "
        f"{native_size(ROWS) >> 20} MB result"
    )


def test_10m_rows_stream_to_clickhouse_connect(endpoint: Endpoint) -> None:
    server = endpoint_process(endpoint)
    warm_up(endpoint)
    client = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port)
    before, client_before = server.memory_info().rss, psutil.Process().memory_info().rss
    rows = total = 0
    started = time.monotonic()
    with (
        RssSampler(server.pid) as sampler,
        client.query_column_block_stream(QUERY.format(rows=ROWS)) as stream,
    ):
        for numbers, strings in stream:  # Native blocks, decoded and dropped one by one
            if numbers:
                assert strings[-1] == str(numbers[-1]) and len(strings) == len(numbers)
            rows += len(numbers)
            total += sum(numbers)
            assert time.monotonic() - started < 60, "streaming took too long"
    elapsed = time.monotonic() - started
    client.close()

    assert rows == ROWS
    assert total == ROWS * (ROWS - 1) // 2
    check_growth("clickhouse-connect", elapsed, before, client_before, sampler)


def test_10m_rows_wait_for_a_slow_raw_http_reader(endpoint: Endpoint) -> None:
    server = endpoint_process(endpoint)
    warm_up(endpoint)
    before, client_before = server.memory_info().rss, psutil.Process().memory_info().rss
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    rows = 0
    tail = b""
    started = time.monotonic()
    with RssSampler(server.pid) as sampler:
        connection.request("POST", "/", body=QUERY.format(rows=ROWS).encode() + b" FORMAT TSV")
        response = connection.getresponse()
        assert response.status == 200, response.read(1000)
        for index in range(100_000):  # 64 KiB reads: ~2,500 of them
            chunk = response.read(1 << 16)
            if not chunk:
                break
            rows += chunk.count(b"\n")
            tail = (tail + chunk)[-64:]
            if index == 10:
                time.sleep(3.0)  # a stalled reader: the endpoint must not race ahead meanwhile
            assert time.monotonic() - started < 60, "streaming took too long"
    elapsed = time.monotonic() - started
    connection.close()

    assert rows == ROWS
    assert tail.endswith(f"{ROWS - 1}\t{ROWS - 1}\n".encode())
    check_growth("raw HTTP, 3 s stall", elapsed, before, client_before, sampler)
