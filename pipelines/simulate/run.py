"""`simulate`: build the world, plan its journeys, drive them (to the event log or through
the API), record the truth; `ingest_and_build`: what `rastro simulate --score` runs next."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from api.store import ConfigStore
from ingest.run import run_ingest
from ingest.settings import IngestSettings
from pipelines.dbt import run_dbt
from pipelines.simulate.journeys import Journey, Mix, Planner, plan
from pipelines.simulate.to_http import HttpDriver
from pipelines.simulate.to_log import LogDriver
from pipelines.simulate.truth import TruthRecorder, cookie_lost_share
from pipelines.simulate.world import DAY, Keys, World, build_world, write_config
from rastro.eventlog import LogWriter
from rastro.settings import Settings
from rastro.warehouse.client import connect

log = logging.getLogger("rastro.simulate")

# The default period ends here, not "now": the same seed gives the same events on any day.
DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULT_DAYS = 90


class Driver(Protocol):
    def drive(self, journey: Journey, email_hash: Mapping[str, str]) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class Options:
    seed: int = 1
    conversions: int = 1000  # converting journeys (first payments), renewals come on top
    mix: Mix = field(default_factory=Mix)
    end: datetime = DEFAULT_END  # conversions happen in the `days` before it
    days: int = DEFAULT_DAYS
    out: Path | None = None  # where the truth goes (default: <data dir>/simulate)
    to: Literal["log", "http"] = "log"
    api_url: str = ""  # --to http: the API's base URL


@dataclass(frozen=True)
class Summary:
    out: Path
    tenants: list[str]
    orders: int  # first payments and renewals
    renewals: int
    clicks: int  # click ids
    records: dict[str, int]  # what the driver wrote or sent, per record type
    cookie_lost_share: float  # of converting click journeys
    seconds: float

    def lines(self) -> list[str]:
        records = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.records.items()))
        return [
            f"simulated {self.orders:,} orders ({self.renewals:,} renewals) and "
            f"{self.clicks:,} click ids for {len(self.tenants)} tenants in {self.seconds:.1f} s",
            f"records: {records}",
            f"cookie lost before the order: {self.cookie_lost_share:.1%} of converting "
            "click journeys",
            f"truth: {self.out / 'orders.parquet'}, {self.out / 'clicks.parquet'}",
        ]


def email_hashes(keys: Keys, journey: Journey) -> dict[str, str]:
    """Each email of the journey, keyed for its tenant as the edge keys it."""
    tenant_id = journey.tenant.tenant_id
    return {sha: keys.email_hash(tenant_id, sha) for sha in journey.email_sha256s()}


def drive(
    world: World,
    planner: Planner,
    conversions: int,
    driver: Driver,
    keys: Keys,
    recorder: TruthRecorder,
) -> None:
    """Plan, drive and record each journey in turn (nothing holds the whole run)."""
    for journey in plan(world, planner, conversions):
        emails = email_hashes(keys, journey)
        driver.drive(journey, emails)
        recorder.record(journey, emails)
    driver.flush()


def simulate(settings: Settings, options: Options) -> Summary:
    """Generate the world and its traffic; write the truth under `options.out`."""
    began = time.perf_counter()
    out = options.out or settings.data_dir / "simulate"
    keys = Keys(settings)
    end_ms = int(options.end.timestamp() * 1000)
    if options.to == "http":
        # The server stamps events with its clock: the period ends now (the order of steps
        # is what the plan keeps; see to_http.py).
        end_ms = time.time_ns() // 1_000_000
    world = build_world(options.seed, end_ms - options.days * DAY, end_ms, keys)
    planner = Planner(world, options.mix, keys, options.seed)
    recorder = TruthRecorder()
    records: dict[str, int]
    if options.to == "log":
        client = connect(settings, database=settings.clickhouse_database)
        try:
            write_config(client, settings.clickhouse_database, world)
        finally:
            client.close()
        with LogWriter(settings.event_log_dir) as writer:
            log_driver = LogDriver(writer, options.seed)
            drive(world, planner, options.conversions, log_driver, keys, recorder)
        records = dict(log_driver.counts)
    else:
        if not options.api_url:
            raise ValueError("--to http needs --api-url")
        # Order ids must be new to the server: its idempotency index remembers every order.
        planner.order_prefix = f"PED{time.time_ns() // 1_000_000 % 10**8}"
        store = ConfigStore(settings)
        write_config(store.client, settings.clickhouse_database, world)
        api_keys = {
            tenant.tenant_id: store.for_tenant(tenant.tenant_id).create_api_key(
                "simulator", ["ingest"]
            )
            for tenant in world.tenants
        }
        http_driver = HttpDriver(options.api_url, api_keys)
        try:
            drive(world, planner, options.conversions, http_driver, keys, recorder)
        finally:
            http_driver.close()
        records = dict(http_driver.counts)
    recorder.record_roles(world)
    recorder.write(out)
    return summarize(out, world, recorder, records, began)


def summarize(
    out: Path, world: World, recorder: TruthRecorder, records: dict[str, int], began: float
) -> Summary:
    orders = recorder.orders_frame()
    return Summary(
        out=out,
        tenants=[tenant.tenant_id for tenant in world.tenants],
        orders=orders.height,
        renewals=int((orders["renewal_number"] > 0).sum()),
        clicks=len(recorder.clicks["click_id"]),
        records=records,
        cookie_lost_share=cookie_lost_share(orders),
        seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True)
class Build:
    returncode: int  # dbt's
    output: str  # dbt's whole output

    @property
    def summary(self) -> str:
        """dbt's last "Done. PASS=.. ERROR=.." line (or its last line)."""
        lines = [line for line in self.output.splitlines() if line.strip()]
        done = [line for line in lines if "Done. PASS=" in line]
        return (done or lines or ["dbt printed nothing"])[-1].strip()


def ingest_and_build(settings: Settings) -> Build:
    """Load the event log into the warehouse (the ingest job, bounded: it stops once the log
    is read) and build the dbt project."""
    began = time.perf_counter()
    run_ingest(settings, IngestSettings(stop_at_end=True))
    log.info("ingest done in %.1f s", time.perf_counter() - began)
    began = time.perf_counter()
    result = run_dbt(["build"], settings.warehouse_url, settings.clickhouse_database, capture=True)
    log.info("dbt build exited %d in %.1f s", result.returncode, time.perf_counter() - began)
    return Build(result.returncode, result.stdout + result.stderr)
