"""The tracking edge under load, measured side by side in one run:

1. Saturation: Rastro's redirect (`GET /r/CODE`, a cached link, a click written to the event
   log) and a bare ASGI app answering a fixed 302 (bench/bare_asgi.py), each on one uvicorn
   worker with the same settings, loaded by wrk on the same machine. Reported: requests per
   second, requests per server CPU-second (the fair figure when wrk shares the cores), and
   the ratio Rastro / bare.
2. Latency below saturation: both apps at half of Rastro's saturation rate (wrk with a
   per-connection delay), p50 and p99.
3. Conversions accepted per second (`POST /v1/conversions`, each fsynced before its 201).

Run: `.venv/bin/python -m bench.tracking` (needs `wrk`: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from api import campaigns, links
from api.affiliates import create_affiliate
from api.campaigns import CampaignTerms
from api.state import EdgeState
from api.store import ConfigStore, Principal
from bench.warehouse import machine, print_table, process_cpu
from rastro.schema.migrate import migrate
from rastro.settings import Settings
from rastro.warehouse.client import connect
from tests.endpoint import free_port, start_endpoint

UVICORN_FLAGS = [
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--no-server-header",
    "--host",
    "127.0.0.1",
]
DELAY_SCRIPT = """
local d = tonumber(os.getenv("WRK_DELAY_MS"))
function delay() return d end
"""
CONVERSION_SCRIPT = """
local run = os.getenv("WRK_RUN")
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_KEY")
function request()
  counter = counter + 1
  local body = string.format(
    '{"order_id":"bench-%s-%d","amount":"199.90","currency":"BRL","click_id":"c%d"}',
    run, counter, counter)
  return wrk.format(nil, "/v1/conversions", nil, body)
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx_3xx: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.server_cpu_s


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return (
        float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[match.group(2)]
    )


def wrk(
    url: str,
    server_pid: int,
    seconds: int,
    connections: int,
    script: str | None = None,
    env: dict[str, str] | None = None,
) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            command[1:1] = ["-s", lua.name]
        cpu_before = process_cpu(server_pid)
        output = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **(env or {})},
            timeout=seconds + 30,
        ).stdout
        cpu = process_cpu(server_pid) - cpu_before
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    assert total, output
    duration = float(total.group(2)) * (1 if total.group(3) == "s" else 0.001)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    p50 = re.search(r"50%\s+(\S+)", output)
    p99 = re.search(r"99%\s+(\S+)", output)
    assert p50 and p99, output
    return WrkResult(
        int(total.group(1)),
        duration,
        int(errors.group(1)) if errors else 0,
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        cpu,
    )


@contextmanager
def uvicorn(target: list[str], env: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *target, "--port", str(port), *UVICORN_FLAGS],
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ready when it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rastro-bench-") as tmp:
        endpoint = start_endpoint(Path(tmp) / "warehouse")
        try:
            return run(args, Path(tmp), endpoint.url)
        finally:
            endpoint.stop()


def run(args: argparse.Namespace, tmp: Path, warehouse_url: str) -> int:
    env = {
        "RASTRO_CLICKHOUSE_URL": warehouse_url,
        "RASTRO_CLICKHOUSE_DATABASE": "rastro",
        "RASTRO_DATA_DIR": str(tmp / "state"),
        "RASTRO_LOG_LEVEL": "WARNING",
    }
    settings = Settings(_env_file=None, clickhouse_url=warehouse_url, data_dir=tmp / "state")
    migrate(connect(settings), "rastro")
    store = ConfigStore(settings)
    tenant, key = store.create_tenant("Bench")
    config = store.for_tenant(tenant.tenant_id)
    setup = Principal(tenant_id=tenant.tenant_id, actor_id="bench-setup", scopes=["admin"])
    state = EdgeState(settings)
    affiliate = create_affiliate(config, state, setup, "Bench affiliate", "content", "BR")
    terms = CampaignTerms(name="Bench", destination_domains=["shop.example.com.br"])
    campaign = campaigns.create(state, config, setup, terms)
    link = links.create_link(
        config,
        setup,
        affiliate.id,
        campaign.campaign_id,
        "https://shop.example.com.br/tenis?cor=azul",
        [],
    )
    path = f"/r/{link.code}?sub1=bench"
    s, c = args.seconds, args.connections

    with (
        uvicorn(["api.main:create_app", "--factory"], env) as (rastro, rastro_pid),
        uvicorn(["bench.bare_asgi:app"], {}) as (bare, bare_pid),
    ):
        wrk(f"{rastro}{path}", rastro_pid, 2, c)  # warm-up: caches, connections
        wrk(f"{bare}/r/x", bare_pid, 2, c)
        saturated = {
            "bare ASGI 302": wrk(f"{bare}/r/x", bare_pid, s, c),
            "Rastro redirect": wrk(f"{rastro}{path}", rastro_pid, s, c),
        }
        half_rate = saturated["Rastro redirect"].rate / 2
        delay_ms = max(1, round(c / half_rate * 1000))
        delayed = {"WRK_DELAY_MS": str(delay_ms)}
        paced = {
            "bare ASGI 302": wrk(f"{bare}/r/x", bare_pid, s, c, DELAY_SCRIPT, delayed),
            "Rastro redirect": wrk(f"{rastro}{path}", rastro_pid, s, c, DELAY_SCRIPT, delayed),
        }
        conversions = wrk(
            f"{rastro}/v1/conversions",
            rastro_pid,
            s,
            16,
            CONVERSION_SCRIPT,
            {"WRK_KEY": key, "WRK_RUN": uuid.uuid4().hex[:8]},
        )

    info = machine()
    print(
        "\nmachine: "
        + "; ".join(f"{k} {v}" for k, v in info.items() if k in ("CPU", "RAM", "OS", "Python"))
    )
    print(f"uvicorn: {' '.join(UVICORN_FLAGS)}; load: wrk -t1 -c{c} -d{s}s on the same machine")
    bare_result = saturated["bare ASGI 302"]
    print_table(
        "Saturation (wrk shares the 2 cores with the server)",
        ["app", "req/s", "server CPU s", "req per CPU-s", "ratio", "errors"],
        [
            [
                name,
                f"{r.rate:,.0f}",
                f"{r.server_cpu_s:.2f}",
                f"{r.per_cpu_second:,.0f}",
                f"{r.per_cpu_second / bare_result.per_cpu_second:.2f}",
                str(r.non_2xx_3xx),
            ]
            for name, r in saturated.items()
        ],
    )
    print_table(
        f"Latency at half of Rastro's saturation rate (~{half_rate:,.0f} req/s target, "
        f"{c} connections, {delay_ms} ms between requests per connection)",
        ["app", "req/s", "p50 ms", "p99 ms"],
        [
            [name, f"{r.rate:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}"]
            for name, r in paced.items()
        ],
    )
    print_table(
        "Conversions accepted (POST /v1/conversions, fsynced before 201; wrk -c16)",
        ["", "accepted/s", "p50 ms", "p99 ms", "non-2xx"],
        [
            [
                "conversions",
                f"{conversions.rate:,.0f}",
                f"{conversions.p50_ms:.2f}",
                f"{conversions.p99_ms:.2f}",
                str(conversions.non_2xx_3xx),
            ]
        ],
    )
    ratio = saturated["Rastro redirect"].per_cpu_second / bare_result.per_cpu_second
    goal_met = ratio >= 0.6 and paced["Rastro redirect"].p99_ms <= 5
    print(
        f"\ngoal (ratio >= 0.6, p99 <= 5 ms at half saturation): {'met' if goal_met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
