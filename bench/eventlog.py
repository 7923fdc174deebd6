"""The embedded event log: how fast the API can put events in it, and the ingest job read them.

- `append` (the record survives kill -9 on return; the background thread fsyncs every 0.2 s),
  from one thread and from 8;
- `append_many` in batches of 100;
- `append_durable` (returns once fsynced) from 1, 8 and 32 threads at once: appends/s, fsyncs/s
  (group commit: how many appends share one fsync), latency median and p99;
- reading everything back with `LogReader.read` (page cache warm: the records were just
  written), in MB/s of payload.

Payloads are click-like JSON objects of about 300 bytes. Run from the repository root:
`.venv/bin/python -m bench.eventlog [--help]`. fsync costs depend on the disk under `--dir`
(default: a temporary directory), which is printed with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/eventlog.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.warehouse import machine, percentile, print_table
from rastro.eventlog import LogReader, LogWriter, Offset


def payload(i: int) -> bytes:
    """A click as the API would log it (~300 bytes of JSON)."""
    return json.dumps(
        {
            "event_id": f"0190a0b2-7c4e-7d3a-9f1b-{i:012d}",
            "type": "click",
            "tenant_id": "0190a0b2-0000-7000-8000-000000000001",
            "link_id": f"0190a0b2-1111-7000-8000-{i % 5000:012d}",
            "affiliate_id": i % 5000,
            "ts": "2026-01-01T12:00:00.000Z",
            "ip_net": "203.0.113.0/24",
            "user_agent": "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126 Mobile",
            "landing_url": f"https://shop.example.com/p/{i % 200_000}?utm_source=aff",
        },
        separators=(",", ":"),
    ).encode()


def filesystem(path: Path) -> str:
    """The file system `path` is on, from /proc/mounts: device, type, mount point."""
    best = ("?", "?", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
            if inside and len(mount) > len(best[2]):
                best = (device, kind, mount)
    except OSError:
        pass
    return f"{best[1]} on {best[0]} (mounted at {best[2]})"


class FsyncCounter:
    """Counts fsyncs of the process (the writer calls os.fsync)."""

    def __init__(self) -> None:
        self.count = 0
        self._real = os.fsync
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        self._real(fd)
        with self._lock:
            self.count += 1

    def __enter__(self) -> FsyncCounter:
        setattr(os, "fsync", self)  # noqa: B010 (a stand-in, not of os.fsync's type)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(os, "fsync", self._real)  # noqa: B010


def run_threads(threads: int, work: Callable[[int], None]) -> float:
    """Run `work(t)` in `threads` threads started together; the wall time in seconds."""
    barrier = threading.Barrier(threads + 1)

    def body(t: int) -> None:
        barrier.wait()
        work(t)

    workers = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def bench_appends(root: Path, records: int, threads: int, batch: int) -> list[str]:
    data = [payload(i) for i in range(records)]
    per_thread = records // threads
    with LogWriter(root) as writer:
        writer.append(b"warm-up")

        def work(t: int) -> None:
            mine = data[t * per_thread : (t + 1) * per_thread]
            if batch == 1:
                for p in mine:
                    writer.append(p)
            else:
                for i in range(0, len(mine), batch):
                    writer.append_many(mine[i : i + batch])

        seconds = run_threads(threads, work)
    count = per_thread * threads
    megabytes = sum(len(p) for p in data[:count]) / 1e6
    label = "append" if batch == 1 else f"append_many (batches of {batch})"
    return [
        f"{label}, {threads} thread{'s' if threads > 1 else ''}",
        f"{count:,}",
        f"{count / seconds:,.0f}",
        f"{megabytes / seconds:.1f}",
    ]


def bench_durable(root: Path, threads: int, seconds: float) -> list[str]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    with LogWriter(root) as writer, FsyncCounter() as fsyncs:
        writer.append_durable(b"warm-up")
        fsyncs.count = 0
        deadline = time.perf_counter() + seconds

        def work(t: int) -> None:
            i = 0
            while (now := time.perf_counter()) < deadline:
                writer.append_durable(payload(t * 10_000_000 + i))
                latencies[t].append(time.perf_counter() - now)
                i += 1

        wall = run_threads(threads, work)
        syncs = fsyncs.count
    samples = [s for per in latencies for s in per]
    return [
        f"append_durable, {threads} thread{'s' if threads > 1 else ''}",
        f"{len(samples):,}",
        f"{len(samples) / wall:,.0f}",
        f"{syncs / wall:,.0f}",
        f"{len(samples) / max(syncs, 1):.1f}",
        f"{statistics.median(samples) * 1e3:.2f}",
        f"{percentile(samples, 99) * 1e3:.2f}",
    ]


def bench_read(root: Path) -> list[str]:
    reader = LogReader(root)
    count = size = 0
    started = time.perf_counter()
    for partition in reader.partitions():
        offset = Offset.start()
        while batch := reader.read(partition, offset, max_records=10_000, max_bytes=4 << 20):
            count += len(batch)
            size += sum(len(r.payload) for r in batch)
            offset = batch[-1].next_offset
    seconds = time.perf_counter() - started
    return [
        f"{count:,}",
        f"{size / 1e6:.1f}",
        f"{count / seconds:,.0f}",
        f"{size / 1e6 / seconds:.0f}",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eventlog", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary dir)")
    parser.add_argument("--records", type=int, default=200_000, help="records per append run")
    parser.add_argument("--seconds", type=float, default=3.0, help="per append_durable run")
    args = parser.parse_args(argv)
    if args.records < 32 or args.seconds <= 0:
        parser.error("--records must be >= 32 and --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    base = args.dir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rastro-bench-eventlog-", dir=base) as workdir:
        root = Path(workdir)
        info = {**machine(), "log directory": f"{root}: {filesystem(root.resolve())}"}
        print("\n".join(f"{k:>20}: {v}" for k, v in info.items()))
        print(f"{'payload':>20}: {len(payload(0))} bytes of JSON per record")
        appends = [
            bench_appends(root / "a1", args.records, 1, 1),
            bench_appends(root / "a8", args.records, 8, 1),
            bench_appends(root / "m1", args.records, 1, 100),
        ]
        print_table(
            "Appends, no fsync waited for (the background thread fsyncs every 0.2 s)",
            ["", "records", "records/s", "MB/s"],
            appends,
        )
        durable = [bench_durable(root / f"d{t}", t, args.seconds) for t in (1, 8, 32)]
        print_table(
            f"append_durable, {args.seconds:g} s each (group commit)",
            ["", "appends", "appends/s", "fsyncs/s", "appends/fsync", "p50 ms", "p99 ms"],
            durable,
        )
        print_table(
            "Reading back everything written above (warm page cache)",
            ["records", "MB payload", "records/s", "MB/s"],
            [bench_read(root / name) for name in ("a1",)],
        )
    load_after = os.getloadavg()
    print(f"\nload average: {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
