"""What the attribution and fraud benchmarks share: a fresh embedded warehouse holding
simulated traffic (pipelines/simulate), landed by the ingest job and built by dbt."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.warehouse import endpoint_running
from pipelines.simulate import Options, ingest_and_build, simulate
from pipelines.simulate.run import Summary
from rastro.schema.migrate import migrate
from rastro.settings import Settings
from rastro.warehouse.client import connect


@dataclass(frozen=True)
class Simulated:
    settings: Settings
    client: Any  # clickhouse-connect, without a default database: name it in the SQL
    database: str
    summary: Summary  # what was simulated; summary.out holds the truth
    simulate_s: float
    build_s: float  # ingest + dbt build


@contextmanager
def simulated_warehouse(database: str, conversions: int, seed: int) -> Iterator[Simulated]:
    """Simulated traffic ingested and built in a fresh embedded warehouse; everything is
    deleted afterwards. Exits the process with the build's output if dbt fails."""
    with tempfile.TemporaryDirectory(prefix="rastro-bench-") as tmp:
        workdir = Path(tmp)
        with endpoint_running(workdir / "endpoint") as endpoint:
            settings = Settings(
                data_dir=workdir / "state",
                clickhouse_url=endpoint.url,
                clickhouse_database=database,
            )
            client = connect(settings, send_receive_timeout=3600)
            migrate(client, database)
            started = time.monotonic()
            summary = simulate(settings, Options(seed=seed, conversions=conversions))
            simulate_s = time.monotonic() - started
            print("\n".join(summary.lines()), flush=True)
            started = time.monotonic()
            build = ingest_and_build(settings)
            build_s = time.monotonic() - started
            print(f"dbt build: {build.summary}", flush=True)
            if build.returncode != 0:
                print(build.output[-20_000:], file=sys.stderr)
                raise SystemExit(1)
            try:
                yield Simulated(settings, client, database, summary, simulate_s, build_s)
            finally:
                client.close()
