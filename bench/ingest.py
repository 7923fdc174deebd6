"""The ingest job: the Bytewax flow against a plain Python loop doing the same work, and the
freshness of a running flow (write to the log -> queryable in the warehouse), in one run.

- (a) the flow (`build_flow` with `EventLogSource` and `ClickHouseSink`, one worker, recovery
  on, epoch 1 s, bounded: it stops at the end of the log), log -> ClickHouse, events/s;
- (b) a plain loop that reads the same log with `LogReader` and calls the flow's own step
  functions per batch (validate_batch, to_frames, enrich_frames with enrich_clicks, the velocity
  counters per tenant) and the sink's partition (`write_batch`, `close`), into a second
  database, events/s; the ratio flow / loop;
- (c) freshness: the flow running unbounded in a subprocess while this process appends clicks
  at a steady rate; p50/p95 of append -> first seen by a query polling the warehouse.

Run from the repository root: `.venv/bin/python -m bench.ingest [--events 1000000]`.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from datetime import timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import clickhouse_connect
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

if __package__ in (None, ""):  # run as `python bench/ingest.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.warehouse import endpoint_running, machine, percentile, print_table, process_cpu
from ingest.enrich import agents as agent_cache
from ingest.enrich import enrich_clicks
from ingest.flow import build_flow, enrich_frames, to_frames, validate_batch
from ingest.frames import Frames
from ingest.metrics import IngestMetrics
from ingest.run import ensure_recovery_dir
from ingest.settings import IngestSettings
from ingest.sink import SINK_KEY, ClickHouseSink
from ingest.source import EventLogSource
from ingest.velocity import DEFAULT_RULES, VelocityCounter, _by_tenant
from rastro.contracts import decode, encode
from rastro.eventlog import LogReader, LogWriter, Offset
from rastro.schema import tables
from rastro.schema.migrate import migrate

LANDING = ("clicks", "page_events", "conversions")
FRESH_TENANT = "t-fresh"
TS0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CHUNK = 10_000  # events per append_many


# -- the events ----------------------------------------------------------------------------------


def user_agents(count: int = 300, seed: int = 3) -> list[str]:
    """`count` distinct, realistic user agents: browsers on desktop and phones, a few bots."""
    rng = random.Random(seed)
    agents: set[str] = {
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "curl/8.5.0",
        "python-requests/2.32.3",
    }
    phones = ["SM-S918B", "SM-A546E", "Pixel 8", "Pixel 7a", "moto g84 5G", "M2101K6G", "CPH2581"]
    while len(agents) < count:
        v = rng.randint(110, 131)
        kind = rng.random()
        if kind < 0.35:
            agents.add(
                f"Mozilla/5.0 (Linux; Android {rng.randint(10, 15)}; {rng.choice(phones)}) "
                f"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{rng.randint(5000, 6800)}"
                f".{rng.randint(0, 200)} Mobile Safari/537.36"
            )
        elif kind < 0.6:
            major, minor = rng.randint(15, 18), rng.randint(0, 6)
            agents.add(
                f"Mozilla/5.0 (iPhone; CPU iPhone OS {major}_{minor} like Mac OS X) "
                f"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{major}.{minor} "
                "Mobile/15E148 Safari/604.1"
            )
        elif kind < 0.85:
            agents.add(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                f"Gecko) Chrome/{v}.0.{rng.randint(5000, 6800)}.{rng.randint(0, 200)} "
                "Safari/537.36"
            )
        elif kind < 0.93:
            agents.add(
                f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{rng.randint(1, 7)}) "
                f"Gecko/20100101 Firefox/{rng.randint(115, 133)}.0"
            )
        else:
            agents.add(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                f"Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{rng.randint(2000, 3000)}.0"
            )
    return sorted(agents)


class Events:
    """Event payloads as the API writes them (dicts encoded by `rastro.contracts.encode`):
    ~85% clicks (300 user agents, Zipf-like), ~10% page events, ~5% conversions; 5 tenants,
    500 links, 50 affiliates, 200k visitor addresses; one event per ms of event time."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.agents = user_agents()
        self.agent_weights = [1 / (rank + 1) for rank in range(len(self.agents))]
        self.referrers = [
            "",
            "https://www.instagram.com/",
            "https://l.facebook.com/",
            "https://www.google.com/",
            "https://t.co/abc",
            "https://www.youtube.com/watch?v=x",
            "https://blog.example.com/review",
        ]

    def click(self, i: int, tenant: str, ts: int, agent: str) -> dict[str, Any]:
        rng = self.rng
        link = rng.randrange(500)
        click_id = f"c{i:012x}"
        query = "gclid=abc" if i % 17 == 0 else "utm_source=ig"
        return {
            "v": 1,
            "type": "click",
            "event_id": f"e-{i}",
            "tenant_id": tenant,
            "ts": ts,
            "received_at": ts + 3,
            "click_id": click_id,
            "source": "redirect",
            "link_id": f"l{link}",
            "link_code": f"code{link}",
            "affiliate_id": f"a{link % 50}",
            "campaign_id": f"k{link % 20}",
            "campaign_terms_version": 1,
            "destination_url": f"https://shop{link % 20}.example/p/{link}",
            "landing_url": f"https://shop{link % 20}.example/p/{link}?{query}&rclid={click_id}",
            "sub1": f"s{rng.randrange(30)}",
            "sub2": "",
            "sub3": "",
            "sub4": "",
            "sub5": "",
            "referrer": rng.choice(self.referrers),
            "user_agent": agent,
            "ip_network": f"198.51.{rng.randrange(256)}.0/24",
            "ip_hash": f"h{rng.randrange(200_000):06d}",
            "country": rng.choice(("BR", "BR", "BR", "MX", "AR", "US", "PT")),
            "cookie_id": f"ck{rng.randrange(500_000)}",
            "is_bot": False,
            "bot_reason": "",
            "is_head": False,
            "is_preview": False,
        }

    def page_event(self, i: int, tenant: str, ts: int, agent: str) -> dict[str, Any]:
        identify = i % 10 == 0
        return {
            "v": 1,
            "type": "page_event",
            "event_id": f"e-{i}",
            "tenant_id": tenant,
            "ts": ts,
            "received_at": ts + 40,
            "kind": "identify" if identify else "page_view",
            "merchant_id": "m1",
            "click_id": f"c{i - 7:012x}",
            "cookie_id": f"ck{self.rng.randrange(500_000)}",
            "url": f"https://shop.example/p/{i % 500}",
            "referrer": "https://www.instagram.com/",
            "customer_id": f"cust{i % 9000}" if identify else "",
            "consent": "granted",
            "properties": {"plan": "pro", "n": i % 5} if identify else {},
            "user_agent": agent,
            "country": "BR",
        }

    def conversion(self, i: int, tenant: str, ts: int) -> dict[str, Any]:
        amount = self.rng.randrange(1_000, 100_000)
        return {
            "v": 1,
            "type": "conversion",
            "event_id": f"e-{i}",
            "tenant_id": tenant,
            "ts": ts,
            "received_at": ts + 900,
            "conversion_id": f"cv{i}",
            "order_id": f"o{i}",
            "version": 1,
            "merchant_id": "m1",
            "amount_minor": amount,
            "net_minor": amount * 9 // 10,
            "currency": "BRL",
            "line_items": [
                {"sku": f"sku{i % 300}", "category": "shoes", "quantity": 1, "amount_minor": amount}
            ],
            "coupon_codes": ["ANA10"] if i % 4 == 0 else [],
            "click_id": f"c{i - 11:012x}",
            "source": "s2s",
        }

    def payloads(self, start: int, count: int) -> list[bytes]:
        rng = self.rng
        agents = rng.choices(self.agents, weights=self.agent_weights, k=count)
        out = []
        for n in range(count):
            i = start + n
            tenant = f"t-{i % 5}"
            ts = TS0 + i
            kind = rng.random()
            if kind < 0.85:
                event = self.click(i, tenant, ts, agents[n])
            elif kind < 0.95:
                event = self.page_event(i, tenant, ts, agents[n])
            else:
                event = self.conversion(i, tenant, ts)
            out.append(encode(event))
        return out


def write_log(root: Path, events: int) -> tuple[int, float]:
    """`events` events into 2 partitions (chunks alternate); their payload bytes, seconds."""
    maker = Events()
    began = time.perf_counter()
    size = 0
    with LogWriter(root) as first, LogWriter(root) as second:
        for n, start in enumerate(range(0, events, CHUNK)):
            payloads = maker.payloads(start, min(CHUNK, events - start))
            if n == 0:
                for payload in payloads[:1000]:
                    decode(payload)  # the shape is the contract's
            size += sum(map(len, payloads))
            (first if n % 2 == 0 else second).append_many(payloads)
    return size, time.perf_counter() - began


# -- the warehouse -------------------------------------------------------------------------------


def client_for(url: str, database: str = "") -> Any:
    port = int(url.rsplit(":", 1)[1])
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=port, database=database, autogenerate_session_id=False
    )


def fresh_database(url: str, database: str) -> None:
    admin = client_for(url)
    try:
        migrate(admin, database)
    finally:
        admin.close()


def counts(url: str, database: str) -> dict[str, int]:
    client = client_for(url, database)
    try:
        return {
            t: int(client.query(f"SELECT count() FROM {t}_dedup").result_rows[0][0])
            for t in LANDING
        }
    finally:
        client.close()


def factory(url: str, database: str) -> Callable[[], Any]:
    return lambda: client_for(url, database)


# -- (a) the flow, (b) the loop -------------------------------------------------------------------


def run_flow(root: Path, url: str, database: str, recovery: Path, bounded: bool) -> None:
    """The flow as `ingest.run.build_real_flow` builds it (the same settings), one worker."""
    ingest = IngestSettings(stop_at_end=bounded)
    source = EventLogSource(
        root,
        max_records=ingest.read_max_records,
        max_bytes=ingest.read_max_bytes,
        poll_interval=timedelta(seconds=ingest.poll_interval_s),
        stop_at_end=ingest.stop_at_end,
        rescan_interval=timedelta(seconds=ingest.rescan_interval_s),
    )
    sink = ClickHouseSink(
        factory(url, database),
        flush_rows=ingest.flush_rows,
        flush_interval_s=ingest.flush_interval_s,
    )
    cli_main(  # type: ignore[no-untyped-call]
        build_flow(source, sink, settings=ingest),
        workers_per_process=1,
        epoch_interval=timedelta(seconds=ingest.snapshot_interval_s),
        recovery_config=RecoveryConfig(ensure_recovery_dir(recovery)),  # type: ignore[no-untyped-call]
    )


def run_loop(root: Path, url: str, database: str) -> None:
    """The same work without Bytewax: the flow's step functions per batch, the sink's
    partition for the inserts; partitions read round robin like the source's."""
    ingest = IngestSettings()
    reader = LogReader(root)
    sink = ClickHouseSink(
        factory(url, database),
        flush_rows=ingest.flush_rows,
        flush_interval_s=ingest.flush_interval_s,
    ).build_part("write_warehouse", SINK_KEY, None)
    metrics = IngestMetrics()
    counters: dict[str, VelocityCounter] = {}
    offsets = {partition: Offset.start() for partition in reader.partitions()}
    active = list(offsets)
    while active:
        for partition in list(active):
            records = reader.read(
                partition,
                offsets[partition],
                max_records=ingest.read_max_records,
                max_bytes=ingest.read_max_bytes,
            )
            if not records:
                active.remove(partition)
                continue
            offsets[partition] = records[-1].next_offset
            frames = enrich_frames(to_frames(validate_batch(list(records), metrics)), enrich_clicks)
            clicks = frames.pop(tables.CLICKS.name, None)
            out: list[Frames] = [frames] if frames else []
            for tenant, batch in _by_tenant(clicks) if clicks is not None else []:
                counter = counters.get(tenant)
                if counter is None:
                    counter = counters[tenant] = VelocityCounter(DEFAULT_RULES, {})
                out.append({tables.CLICKS.name: counter.apply(batch)})
            sink.write_batch(out)
    sink.close()


def warm_up(agents: list[str]) -> None:
    """Parse every user agent once, so that neither side pays for filling the caches."""
    for agent in agents:
        agent_cache.get(agent)


def timed(run: Callable[[], None], endpoint_pid: int) -> tuple[float, float, float]:
    """Seconds, CPU s of this process, CPU s of the endpoint."""
    cpu_here, cpu_endpoint = process_cpu(None), process_cpu(endpoint_pid)
    began = time.perf_counter()
    run()
    return (
        time.perf_counter() - began,
        process_cpu(None) - cpu_here,
        process_cpu(endpoint_pid) - cpu_endpoint,
    )


# -- (c) freshness -------------------------------------------------------------------------------


def fresh_click(maker: Events, i: int, ts_ms: int) -> bytes:
    event = maker.click(i, FRESH_TENANT, ts_ms, "Mozilla/5.0 (bench)")
    event["event_id"] = f"fresh-{i}"
    event["ip_hash"] = f"fresh-{i}"
    return encode(event)


def freshness(
    root: Path, url: str, database: str, recovery: Path, rate: int, seconds: float
) -> tuple[list[float], int]:
    """Appends `rate` clicks/s for `seconds` while the flow runs in a subprocess; the seconds
    from each append's return to the first poll that sees its row, and how many were never
    seen (within 30 s of the last append)."""
    poll_s = 0.05
    maker = Events(seed=11)
    with LogWriter(root) as writer, ExitStack() as stack:
        writer.append(fresh_click(maker, 0, int(time.time() * 1000)))  # the partition exists
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ingest",
                "--flow-only",
                str(root),
                url,
                database,
                str(recovery),
            ],
            cwd=Path(__file__).resolve().parent.parent,
        )
        stack.callback(stop_child, child)
        client = client_for(url, database)
        stack.callback(client.close)
        seen: dict[str, float] = {}
        max_offset = -1

        def poll() -> None:
            nonlocal max_offset
            rows = client.query(
                f"SELECT event_id, log_offset FROM clicks WHERE tenant_id = '{FRESH_TENANT}' "
                f"AND log_offset > {max_offset}"
            ).result_rows
            now = time.monotonic()
            for event_id, offset in rows:
                seen.setdefault(event_id, now)
                max_offset = max(max_offset, int(offset))

        deadline = time.monotonic() + 120
        while "fresh-0" not in seen:  # the flow is up and has inserted
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the flow did not ingest the first event")
            poll()
            time.sleep(0.1)

        written: dict[str, float] = {}
        stop = threading.Event()

        def poller() -> None:
            while not stop.is_set():
                poll()
                time.sleep(poll_s)

        thread = threading.Thread(target=poller, daemon=True)
        thread.start()
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        began = time.monotonic()
        i = 1
        while time.monotonic() - began < seconds:
            ms = int(time.time() * 1000)
            batch = [fresh_click(maker, i + k, ms) for k in range(per_tick)]
            writer.append_many(batch)
            appended = time.monotonic()
            for k in range(per_tick):
                written[f"fresh-{i + k}"] = appended
            i += per_tick
            time.sleep(max(0.0, began + (i - 1) / per_tick * tick - time.monotonic()))
        end = time.monotonic() + 30
        while time.monotonic() < end and not all(key in seen for key in written):
            time.sleep(0.1)
        stop.set()
        thread.join()
        delays = [seen[key] - at for key, at in written.items() if key in seen]
        return delays, len(written) - len(delays)


def stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--fresh-rate", type=int, default=1000, help="(c) appends per second")
    parser.add_argument("--fresh-seconds", type=float, default=10.0, help="(c) duration")
    parser.add_argument("--flow-only", nargs=4, metavar=("ROOT", "URL", "DB", "RECOVERY"))
    args = parser.parse_args(argv)
    if args.events < 1 or args.fresh_rate < 1 or args.fresh_seconds <= 0:
        parser.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.flow_only:  # (c)'s subprocess: the flow, unbounded, until SIGINT
        root, url, database, recovery = args.flow_only
        with suppress(KeyboardInterrupt, BytewaxRuntimeError):  # SIGINT
            run_flow(Path(root), url, database, Path(recovery), bounded=False)
        return 0

    started = time.monotonic()
    info = machine()
    info["bytewax"] = package_version("bytewax")
    load_before = os.getloadavg()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rastro-bench-")))
        endpoint = stack.enter_context(endpoint_running(workdir / "endpoint"))
        url, pid = endpoint.url, endpoint.process.pid
        root = workdir / "eventlog"
        size, write_s = write_log(root, args.events)
        print(
            f"wrote {args.events:,} events ({size / 2**20:.0f} MiB of JSON) to 2 partitions "
            f"in {write_s:.1f} s",
            flush=True,
        )
        for database in ("bench_flow", "bench_loop", "bench_fresh"):
            fresh_database(url, database)
        warm_up(Events().agents)

        flow = timed(
            lambda: run_flow(root, url, "bench_flow", workdir / "recovery-a", bounded=True), pid
        )
        print(f"(a) flow done in {flow[0]:.1f} s", flush=True)
        loop = timed(lambda: run_loop(root, url, "bench_loop"), pid)
        print(f"(b) loop done in {loop[0]:.1f} s", flush=True)
        landed = {name: counts(url, name) for name in ("bench_flow", "bench_loop")}

        delays, missing = freshness(
            workdir / "eventlog-fresh",
            url,
            "bench_fresh",
            workdir / "recovery-c",
            args.fresh_rate,
            args.fresh_seconds,
        )

    load_after = os.getloadavg()
    info["load average"] = f"{load_before[0]:.2f} at start, {load_after[0]:.2f} at end (1 min)"
    print("\nmachine")
    for key, value in info.items():
        print(f"  {key:<19} {value}")

    rows = []
    for label, (seconds, here, there), database in (
        ("(a) Bytewax flow, 1 worker", flow, "bench_flow"),
        ("(b) plain loop, same steps", loop, "bench_loop"),
    ):
        total = sum(landed[database].values())
        rows.append(
            [
                label,
                f"{seconds:.1f}",
                f"{args.events / seconds:,.0f}",
                f"{here:.1f}",
                f"{there:.1f}",
                f"{total:,}",
                "yes" if total == args.events else "NO",
            ]
        )
    print_table(
        f"Log -> ClickHouse, {args.events:,} events (2 partitions)",
        ["path", "seconds", "events/s", "CPU s here", "CPU s endpoint", "rows (dedup)", "= N"],
        rows,
    )
    ratio = loop[0] / flow[0]
    print(f"ratio flow / loop (events/s) = {ratio:.2f} (goal >= 0.8)")
    for database, per_table in landed.items():
        print(f"  {database}: {per_table}")

    fresh_rows = [
        [
            f"{args.fresh_rate}/s for {args.fresh_seconds:.0f} s",
            f"{len(delays):,}",
            f"{missing}",
            f"{percentile(delays, 50):.2f}" if delays else "-",
            f"{percentile(delays, 95):.2f}" if delays else "-",
            f"{max(delays):.2f}" if delays else "-",
        ]
    ]
    print_table(
        "Freshness: append -> queryable (flow running, poll every 50 ms)",
        ["appends", "seen", "missing", "p50 s", "p95 s", "max s"],
        fresh_rows,
    )
    print(f"\nWhole run: {time.monotonic() - started:.0f} s.")
    ok = all(sum(c.values()) == args.events for c in landed.values()) and missing == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
