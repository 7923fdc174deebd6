"""The warehouse endpoint against chDB in-process, side by side in one run.

Two measures, each taken (1) through `rastro warehouse serve` with clickhouse-connect, as every
Rastro process reaches the warehouse, and (2) with chDB in this process on a data directory of
its own, which is the floor the endpoint adds its cost to:

- the round trip of `SELECT 1` (median and p95 over N queries, after a warm-up);
- the throughput of inserting a 1M-row click-like pandas DataFrame (rows/s).

Run from the repository root: `.venv/bin/python -m bench.warehouse [--help]`. See README.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import chdb
import clickhouse_connect
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa

if __package__ in (None, ""):  # run as `python bench/warehouse.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.endpoint import Endpoint, start_endpoint

DATABASE = "bench"
TABLE = "clicks"
DDL = f"""
CREATE TABLE {DATABASE}.{TABLE}
(
    click_id     UInt64,
    ts           DateTime64(3),
    affiliate_id UInt32,
    campaign     LowCardinality(String),
    country      LowCardinality(String),
    device       LowCardinality(String),
    landing_url  String,
    sub_id       String,
    is_bot       UInt8,
    is_unique    UInt8,
    amount       Int64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (campaign, ts, click_id)
"""
# Same rows, same values: both paths must store exactly the same data (checked after each run).
CHECKSUM = f"""
SELECT count(), sum(cityHash64(click_id, toUnixTimestamp64Milli(ts), affiliate_id, campaign,
                               country, device, landing_url, sub_id, is_bot, is_unique, amount))
FROM {DATABASE}.{TABLE}
"""
MERGES_RUNNING = f"SELECT count() FROM system.merges WHERE database = '{DATABASE}'"

COUNTRIES = [
    *("BR", "MX", "AR", "CO", "CL", "PE", "US", "CA", "GB", "DE", "FR", "ES", "PT", "IT"),
    *("NL", "PL", "SE", "NO", "IN", "ID", "JP", "KR", "AU", "ZA", "NG", "EG", "TR"),
]


def click_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    """A realistic batch of affiliate clicks: ids, ms timestamps over a month, strings of
    several cardinalities, flags and an amount in micro-units."""
    rng = np.random.default_rng(seed)
    start_ms = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
    ts_ms = start_ms + np.sort(rng.integers(0, 30 * 86_400_000, rows))
    affiliates = rng.integers(1, 5_000, rows, dtype=np.uint32)
    products = rng.integers(0, 200_000, rows)
    subs = rng.integers(0, 2**63 - 1, rows, dtype=np.int64)
    return pd.DataFrame(
        {
            "click_id": np.arange(10_000_000_000, 10_000_000_000 + rows, dtype=np.uint64),
            "ts": ts_ms.astype("datetime64[ms]"),
            "affiliate_id": affiliates,
            "campaign": rng.choice(np.array([f"campaign-{i:04d}" for i in range(300)]), rows),
            "country": rng.choice(np.array(COUNTRIES), rows),
            "device": rng.choice(
                np.array(["desktop", "mobile", "tablet"]), rows, p=[0.3, 0.6, 0.1]
            ),
            "landing_url": [
                f"https://shop.example.com/p/{p}?utm_source=aff{a}&utm_medium=cpc"
                for p, a in zip(products.tolist(), affiliates.tolist(), strict=True)
            ],
            "sub_id": [f"{s:016x}" for s in subs.tolist()],
            "is_bot": (rng.random(rows) < 0.04).astype(np.uint8),
            "is_unique": (rng.random(rows) < 0.7).astype(np.uint8),
            "amount": rng.integers(0, 50_000_000, rows, dtype=np.int64),
        }
    )


# -- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical cores ({usable} usable)",
        "RAM": f"{ram / 2**30:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "chdb": f"{chdb.__version__} (ClickHouse {chdb.engine_version})",
        "clickhouse-connect": package_version("clickhouse-connect"),
        "pandas / pyarrow": f"{pd.__version__} / {pa.__version__}",
        "native_codec": f"{clickhouse_connect.common.get_setting('native_codec')} "
        "(clickhouse-connect's Native codec for insert_df / query)",
    }


# -- measuring -----------------------------------------------------------------------------------


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Latency:
    label: str
    run: Callable[[], object]
    samples: list[float]


@dataclass
class Insert:
    label: str
    run: Callable[[pd.DataFrame], None]
    checksum: Callable[[], tuple[int, int]]
    endpoint_pid: int | None  # None: in-process
    seconds: list[float] = field(default_factory=list)
    cpu_here: list[float] = field(default_factory=list)  # CPU s of this process (all threads)
    cpu_endpoint: list[float] = field(default_factory=list)  # CPU s of the endpoint process


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) of this process or of `pid`."""
    if pid is None:
        return time.process_time()
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def wait_for_merges(count_merges: Callable[[], int], limit: float = 20.0) -> None:
    """Background merges of the previous run steal CPU from the next one: wait them out."""
    deadline = time.monotonic() + limit
    while count_merges() and time.monotonic() < deadline:
        time.sleep(0.05)


class InProcess:
    """chDB in this process, on its own data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.conn = chdb.connect(str(data_dir))  # type: ignore[no-untyped-call]

    def scalar_row(self, sql: str) -> list[str]:
        return str(self.conn.query(sql, "TabSeparated").bytes().decode()).strip().split("\t")

    def select_one(self) -> bytes:
        return bytes(self.conn.query("SELECT 1", "TabSeparated").bytes())

    def insert(self, frame: pd.DataFrame) -> None:
        # chDB's Python() table function reads the DataFrame's columns in place (no
        # serialisation); it resolves the name `frame` from this function's locals.
        self.conn.query(f"INSERT INTO {DATABASE}.{TABLE} SELECT * FROM Python(frame)")

    def command(self, sql: str) -> None:
        self.conn.query(sql)

    def recreate(self) -> None:
        self.command(f"DROP TABLE IF EXISTS {DATABASE}.{TABLE} SYNC")
        self.command(DDL)

    def close(self) -> None:
        self.conn.close()

    def checksum(self) -> tuple[int, int]:
        count, total = self.scalar_row(CHECKSUM)
        return int(count), int(total)

    def merges(self) -> int:
        return int(self.scalar_row(MERGES_RUNNING)[0])


class ThroughEndpoint:
    """The endpoint through clickhouse-connect (and, for the latency, raw HTTP)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.admin = self.client()
        self._raw: http.client.HTTPConnection | None = None

    def client(self, **kwargs: Any) -> Any:
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.endpoint.port, **kwargs)

    def raw_select_one(self) -> bytes:
        """One keep-alive HTTP/1.1 connection, no client library: the endpoint's own cost."""
        if self._raw is None:
            self._raw = http.client.HTTPConnection("127.0.0.1", self.endpoint.port, timeout=30)
        self._raw.request("POST", "/", body=b"SELECT 1")
        response = self._raw.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"SELECT 1 failed: {response.status} {body!r}")
        return body

    def command(self, sql: str) -> None:
        self.admin.command(sql)

    def recreate(self) -> None:
        self.command(f"DROP TABLE IF EXISTS {DATABASE}.{TABLE} SYNC")
        self.command(DDL)

    def checksum(self) -> tuple[int, int]:
        count, total = self.admin.query(CHECKSUM).result_rows[0]
        return int(count), int(total)

    def merges(self) -> int:
        return int(self.admin.command(MERGES_RUNNING))

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        self.admin.close()


def measure_latency(variants: list[Latency], count: int, warmup: int, rounds: int) -> None:
    """Warm-up each variant, then take `count` samples each, interleaved in `rounds` rounds so
    that any drift of the machine hits every variant alike."""
    for variant in variants:
        for _ in range(warmup):
            variant.run()
    per_round = [count // rounds + (1 if i < count % rounds else 0) for i in range(rounds)]
    for n in per_round:
        for variant in variants:
            for _ in range(n):
                started = time.perf_counter()
                variant.run()
                variant.samples.append(time.perf_counter() - started)


def measure_inserts(
    variants: list[Insert],
    frame: pd.DataFrame,
    repeats: int,
    prepare: Callable[[], None],
) -> tuple[int, int]:
    """Each variant inserts the whole frame into a fresh table, `repeats` times, interleaved;
    a first, untimed, pass over a small slice warms up every path. After each timed run the
    table's checksum must be the same for every path: the same rows, the same values."""
    warm = frame.iloc[: min(len(frame), 20_000)]
    for variant in variants:
        prepare()
        variant.run(warm)
    expected: tuple[int, int] | None = None
    for _ in range(repeats):
        for variant in variants:
            prepare()
            here, there = process_cpu(None), process_cpu(variant.endpoint_pid)
            started = time.perf_counter()
            variant.run(frame)
            variant.seconds.append(time.perf_counter() - started)
            variant.cpu_here.append(process_cpu(None) - here)
            if variant.endpoint_pid is not None:
                variant.cpu_endpoint.append(process_cpu(variant.endpoint_pid) - there)
            checksum = variant.checksum()
            expected = expected or checksum
            if checksum != expected or checksum[0] != len(frame):
                raise RuntimeError(f"{variant.label} stored other data: {checksum} != {expected}")
    assert expected is not None
    return expected


# -- reporting -----------------------------------------------------------------------------------


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def report_latency(variants: list[Latency], reference: Latency) -> None:
    ref_median = statistics.median(reference.samples)
    ref_p95 = percentile(reference.samples, 95)
    rows = []
    for v in variants:
        median, p95 = statistics.median(v.samples), percentile(v.samples, 95)
        rows.append(
            [
                v.label,
                f"{median * 1e3:.3f}",
                f"{p95 * 1e3:.3f}",
                f"{median / ref_median:.2f}x",
                f"{p95 / ref_p95:.2f}x",
            ]
        )
    print_table(
        f"SELECT 1 round trip ({len(reference.samples)} samples per path)",
        ["path", "median ms", "p95 ms", "ratio median", "ratio p95"],
        rows,
    )


def report_inserts(variants: list[Insert], reference: Insert, rows_count: int) -> None:
    ref_rate = rows_count / statistics.median(reference.seconds)
    rows = []
    for v in variants:
        median = statistics.median(v.seconds)
        rate = rows_count / median
        cpu_endpoint = f"{statistics.median(v.cpu_endpoint):.2f}" if v.cpu_endpoint else "-"
        rows.append(
            [
                v.label,
                f"{median:.3f}",
                f"{rows_count / max(v.seconds):,.0f}",
                f"{rate:,.0f}",
                f"{rows_count / min(v.seconds):,.0f}",
                f"{rate / ref_rate:.2f}x",
                f"{statistics.median(v.cpu_here):.2f}",
                cpu_endpoint,
            ]
        )
    print_table(
        f"insert of a {rows_count:,}-row DataFrame (fresh table, median of "
        f"{len(reference.seconds)}; CPU s = median CPU time of the bench process, which is the "
        "client or the in-process engine, and of the endpoint process)",
        [
            "path",
            "median s",
            "worst rows/s",
            "median rows/s",
            "best rows/s",
            "ratio",
            "CPU s here",
            "CPU s endpoint",
        ],
        rows,
    )


# -- the run -------------------------------------------------------------------------------------


@contextmanager
def endpoint_running(data_dir: Path) -> Iterator[Endpoint]:
    endpoint = start_endpoint(data_dir)
    try:
        yield endpoint
    finally:
        code = endpoint.stop()
        if code != 0:
            print(f"warning: the endpoint exited with {code}:\n{endpoint.log()}", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.warehouse", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--select-n", type=int, default=2000, help="timed SELECT 1 per path")
    parser.add_argument("--warmup", type=int, default=200, help="untimed SELECT 1 per path")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of SELECT 1")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the inserted frame")
    parser.add_argument("--insert-repeats", type=int, default=5, help="timed inserts per path")
    args = parser.parse_args(argv)
    if min(args.select_n, args.rounds, args.rows, args.insert_repeats) < 1 or args.warmup < 0:
        parser.error("counts must be positive")
    args.rounds = min(args.rounds, args.select_n)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    info = machine()
    load_before = os.getloadavg()
    frame = click_frame(args.rows)
    with ExitStack() as stack:  # closed in reverse: clients, engine, endpoint, directory
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rastro-bench-")))
        endpoint = stack.enter_context(endpoint_running(workdir / "endpoint"))
        in_process = InProcess(workdir / "in-process")
        stack.callback(in_process.close)
        remote = ThroughEndpoint(endpoint)
        stack.callback(remote.close)
        info["endpoint"] = f"ClickHouse {remote.admin.server_version} (pid {endpoint.process.pid})"

        def client(**kwargs: Any) -> Any:
            created = remote.client(**kwargs)
            stack.callback(created.close)
            return created

        default = client()
        no_session = client(autogenerate_session_id=False)
        plain = client(autogenerate_session_id=False, compress=False)
        latency = [
            Latency("in-process chdb conn.query", in_process.select_one, []),
            Latency("endpoint, raw HTTP keep-alive (http.client)", remote.raw_select_one, []),
            Latency("endpoint, clickhouse-connect defaults", lambda: default.query("SELECT 1"), []),
            Latency(
                "endpoint, clickhouse-connect, no session", lambda: no_session.query("SELECT 1"), []
            ),
            Latency(
                "endpoint, clickhouse-connect, no session, compress=False",
                lambda: plain.query("SELECT 1"),
                [],
            ),
        ]
        measure_latency(latency, args.select_n, args.warmup, args.rounds)

        off, lz4, zstd = client(compress=False), client(compress="lz4"), client(compress="zstd")

        def arrow_insert(frame: pd.DataFrame) -> None:
            # The DataFrame -> Arrow conversion is part of the cost of this path.
            off.insert_arrow(TABLE, pa.Table.from_pandas(frame, preserve_index=False), DATABASE)

        def via(c: Any) -> Callable[[pd.DataFrame], None]:
            return lambda f: c.insert_df(TABLE, f, database=DATABASE)

        pid = endpoint.process.pid
        inserts = [
            Insert(
                "in-process chdb INSERT INTO t SELECT * FROM Python(df)",
                in_process.insert,
                in_process.checksum,
                None,
            ),
            Insert("endpoint, insert_df, compress=False", via(off), remote.checksum, pid),
            Insert("endpoint, insert_df, compress='lz4' (default)", via(lz4), remote.checksum, pid),
            Insert("endpoint, insert_df, compress='zstd'", via(zstd), remote.checksum, pid),
            Insert(
                "endpoint, Arrow: from_pandas + insert_arrow, compress=False",
                arrow_insert,
                remote.checksum,
                pid,
            ),
        ]

        def prepare() -> None:
            for side in (in_process, remote):
                side.recreate()
                wait_for_merges(side.merges)

        for side in (in_process, remote):
            side.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        expected = measure_inserts(inserts, frame, args.insert_repeats, prepare)

    load_after = os.getloadavg()
    info["load average"] = (
        f"{load_before[0]:.2f} at start, {load_after[0]:.2f} at end (1 min; other processes "
        "on the machine compete for the same cores)"
    )
    print("\nmachine")
    for key, value in info.items():
        print(f"  {key:<19} {value}")
    report_latency(latency, latency[0])
    report_inserts(inserts, inserts[0], args.rows)
    print(
        f"\nratio = endpoint / in-process. Every insert stored the same {expected[0]:,} rows "
        f"(checksum {expected[1]}). Whole run: {time.monotonic() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
