"""What-if scenarios: what a campaign would have paid over a past period under another
attribution model or window, computed by the production dbt models themselves.

A scenario is `dbt run --select +fct_commissions` of Rastro's own project with the vars
`what_if__*` set (dbt/dbt_project.yml): the models are built into a scratch database,
`<database>_whatif_<run>`, reading the source tables from Rastro's database and only the
scenario's tenant's rows of them (the profile's `additional_table_filters`, the same
per-table filter the API's TenantScope uses); `int_campaign_terms__in_force` replaces the
campaign's payable model or window, and every model after it is the production SQL,
unchanged. The scenario's fct_commissions is then compared with Rastro's, and the scratch
database dropped. The ledger is not built: a scenario pays nobody.

`RUNNER` runs scenarios one at a time in a background thread of the process that asked
(the API), recording each run's status in `what_if_runs`: queued -> running -> done | failed.
A failure (dbt, the warehouse, anything) marks the run failed with its message and the runner
goes on with the next.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, Field

from api.auth import next_write_time
from api.store import TenantScope
from pipelines.dbt import run_dbt
from rastro.settings import Settings
from rastro.warehouse.client import connect
from rastro.warehouse.sql import quote_literal

log = logging.getLogger("rastro.what_if")

DBT_TIMEOUT_S = 1800.0
MAX_QUEUED = 20  # scenarios waiting in one process; the API refuses more (409)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,200}")


class WhatIfError(RuntimeError):
    """A scenario that could not be computed; its message is recorded on the run."""


@dataclass(frozen=True)
class Scenario:
    """One campaign's terms varied over a period of conversions [start, end) (UTC)."""

    campaign_id: str
    start: datetime
    end: datetime
    attribution_model: str | None = None
    window_days: int | None = None


def scratch_database(database: str, run_id: str) -> str:
    """The scenario's own database, next to Rastro's: `<database>_whatif_<last 12 hex>`."""
    name = f"{database}_whatif_{run_id.replace('-', '')[-12:]}"
    if not _IDENTIFIER.fullmatch(name):
        raise WhatIfError(f"cannot name a scratch database after {database!r} and {run_id!r}")
    return name


def source_filters(scope: TenantScope) -> str:
    """The `additional_table_filters` map limiting every table of Rastro's database with a
    tenant_id column to the scope's tenant, as dbt's profile passes it to every query."""
    database = scope.settings.clickhouse_database
    condition = f"tenant_id = {quote_literal(scope.tenant_id)}"
    tables = scope.rows(
        "SELECT table FROM system.columns WHERE database = {db:String} AND name = 'tenant_id' "
        "ORDER BY table",
        db=database,
    )
    entries = ", ".join(
        f"{quote_literal(database + '.' + row['table'])}: {quote_literal(condition)}"
        for row in tables
    )
    return "{" + entries + "}"


def build(scope: TenantScope, scratch: str, scenario: Scenario, work_dir: Path) -> None:
    """Builds the attribution and commission models of the scenario into `scratch`."""
    variables = {
        "what_if__sources_schema": scope.settings.clickhouse_database,
        "what_if__source_filters": source_filters(scope),
        "what_if__campaign_id": scenario.campaign_id,
        "what_if__attribution_model": scenario.attribution_model or "",
        "what_if__window_days": scenario.window_days or 0,
    }
    result = run_dbt(
        ["run", "--select", "+fct_commissions", "--vars", json.dumps(variables)],
        scope.settings.warehouse_url,
        scratch,
        work_dir=work_dir,
        capture=True,
        timeout=DBT_TIMEOUT_S,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise WhatIfError(f"dbt run failed (exit {result.returncode}):\n{output[-4000:]}")


def _sides(scratch: str, campaign_only: bool) -> str:
    """The actual commissions (Rastro's fct_commissions) and the scenario's, of conversions
    in the period. The scenario's are limited to the conversions the last build knew
    (fct_conversion_journeys): orders that landed since are in the sources the scenario read,
    but not yet in the actual side, and would make the two differ for no reason of terms."""
    campaign = "AND campaign_id = {campaign:String}" if campaign_only else ""
    period = "converted_at >= {start:DateTime64(3)} AND converted_at < {end:DateTime64(3)}"
    return f"""
        SELECT 'actual' AS side, currency, affiliate_id, conversion_id, commission_minor
        FROM fct_commissions
        WHERE {period} {campaign}
        UNION ALL
        SELECT 'scenario', currency, affiliate_id, conversion_id, commission_minor
        FROM {scratch}.fct_commissions
        WHERE tenant_id = {{tenant:String}} AND {period} {campaign}
          AND conversion_id IN (SELECT conversion_id FROM fct_conversion_journeys)
    """


_TOTALS = """
    toInt64(sumIf(commission_minor, side = 'actual')) AS actual_commission_minor,
    toInt64(sumIf(commission_minor, side = 'scenario')) AS scenario_commission_minor,
    uniqExactIf(conversion_id, side = 'actual') AS actual_conversions,
    uniqExactIf(conversion_id, side = 'scenario') AS scenario_conversions
"""


class Comparison(BaseModel):
    actual_commission_minor: int = Field(description="fct_commissions as of the last build")
    scenario_commission_minor: int = Field(description="The scenario's fct_commissions")
    difference_minor: int = Field(description="scenario - actual")
    actual_conversions: int
    scenario_conversions: int

    @classmethod
    def of(cls, row: dict[str, Any], **extra: Any) -> Self:
        difference = row["scenario_commission_minor"] - row["actual_commission_minor"]
        return cls(**row, difference_minor=difference, **extra)


class AffiliateComparison(Comparison):
    affiliate_id: str


class CurrencyComparison(Comparison):
    currency: str
    affiliates: list[AffiliateComparison]


class TenantComparison(Comparison):
    currency: str


class WhatIfResult(BaseModel):
    currencies: list[CurrencyComparison] = Field(
        description="The campaign's commissions (priced by its terms), per currency"
    )
    all_campaigns: list[TenantComparison] = Field(
        description="The tenant's commissions over every campaign, per currency: moving credit "
        "in conversions one campaign governs can move commissions priced by another's terms"
    )
    dbt_seconds: float = Field(description="How long dbt took to build the scenario")
    total_seconds: float


def compare(scope: TenantScope, scratch: str, scenario: Scenario) -> list[CurrencyComparison]:
    """Per currency: the campaign's actual and scenario commission totals, per affiliate,
    and the conversions counted."""
    parameters = {"campaign": scenario.campaign_id, "start": scenario.start, "end": scenario.end}
    by_affiliate = scope.rows(
        f"SELECT currency, affiliate_id, {_TOTALS} FROM ({_sides(scratch, True)}) "
        "GROUP BY currency, affiliate_id ORDER BY currency, affiliate_id",
        **parameters,
    )
    totals = scope.rows(
        f"SELECT currency, {_TOTALS} FROM ({_sides(scratch, True)}) "
        "GROUP BY currency ORDER BY currency",
        **parameters,
    )
    return [
        CurrencyComparison.of(
            total,
            affiliates=[
                AffiliateComparison.of({k: v for k, v in row.items() if k != "currency"})
                for row in by_affiliate
                if row["currency"] == total["currency"]
            ],
        )
        for total in totals
    ]


def compare_tenant(scope: TenantScope, scratch: str, scenario: Scenario) -> list[TenantComparison]:
    """The same totals over every campaign of the tenant."""
    rows = scope.rows(
        f"SELECT currency, {_TOTALS} FROM ({_sides(scratch, False)}) "
        "GROUP BY currency ORDER BY currency",
        start=scenario.start,
        end=scenario.end,
    )
    return [TenantComparison.of(row) for row in rows]


def drop(settings: Settings, scratch: str) -> None:
    client = connect(settings)
    try:
        client.command(f"DROP DATABASE IF EXISTS {scratch} SYNC")
    finally:
        client.close()


def drop_abandoned(settings: Settings, age_s: float = 2 * DBT_TIMEOUT_S) -> list[str]:
    """Drops the scratch databases of scenarios whose process stopped mid-run (a run drops
    its own in any other case): those whose newest table is `age_s` old, longer than any run
    lasts. Returns their names."""
    client = connect(settings)
    try:
        result = client.query(
            "SELECT database FROM system.tables WHERE startsWith(database, {prefix:String}) "
            "GROUP BY database "
            "HAVING max(metadata_modification_time) <= now() - toIntervalSecond({age:UInt32})",
            parameters={
                "prefix": f"{settings.clickhouse_database}_whatif_",
                "age": int(age_s),
            },
        )
        abandoned = [row[0] for row in result.result_rows]
    finally:
        client.close()
    for scratch in abandoned:
        log.warning("dropping the abandoned what-if database %s", scratch)
        drop(settings, scratch)
    return abandoned


def run_scenario(
    scope: TenantScope, run_id: str, scenario: Scenario, work_root: Path
) -> WhatIfResult:
    """Builds the scenario, compares it with the actual commissions, cleans up."""
    scratch = scratch_database(scope.settings.clickhouse_database, run_id)
    work_dir = work_root / run_id
    began = time.perf_counter()
    try:
        build(scope, scratch, scenario, work_dir)
        built = time.perf_counter() - began
        return WhatIfResult(
            currencies=compare(scope, scratch, scenario),
            all_campaigns=compare_tenant(scope, scratch, scenario),
            dbt_seconds=round(built, 1),
            total_seconds=round(time.perf_counter() - began, 1),
        )
    finally:
        drop(scope.settings, scratch)
        shutil.rmtree(work_dir, ignore_errors=True)


@dataclass
class _Job:
    scope: TenantScope
    run_id: str
    scenario: Scenario
    written_at: datetime  # when the run's row was last written: versions must increase


class WhatIfRunner:
    """Runs scenarios one at a time in a daemon thread, started on the first submission
    (after uvicorn forked the worker that owns it)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def has_room(self) -> bool:
        """Fewer than MAX_QUEUED scenarios are waiting: a new one may be queued."""
        return self._queue.qsize() < MAX_QUEUED

    def submit(
        self, scope: TenantScope, run_id: str, scenario: Scenario, queued_at: datetime
    ) -> None:
        """Queues a run already recorded as queued at `queued_at`."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="what-if", daemon=True)
                self._thread.start()
        self._queue.put(_Job(scope, run_id, scenario, queued_at))

    def wait_idle(self) -> None:
        """Blocks until every queued scenario has finished (tests, shutdown)."""
        self._queue.join()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            except Exception:  # the thread must outlive any failure, even in recording it
                log.exception("what-if run %s could not be recorded", job.run_id)
            finally:
                self._queue.task_done()

    def _run(self, job: _Job) -> None:
        self._record(job, "running")
        try:
            drop_abandoned(job.scope.settings)
            work_root = job.scope.settings.data_dir / "what_if"
            result = run_scenario(job.scope, job.run_id, job.scenario, work_root)
        except Exception as error:
            log.warning("what-if run %s failed: %s", job.run_id, error)
            self._record(job, "failed", error=f"{type(error).__name__}: {error}"[-8000:])
            return
        self._record(job, "done", result=result)

    def _record(
        self, job: _Job, status: str, result: WhatIfResult | None = None, error: str = ""
    ) -> None:
        rows = job.scope.rows(
            "SELECT campaign_id, parameters, requested_by, created_at FROM what_if_runs FINAL "
            "WHERE run_id = {id:String}",
            id=job.run_id,
        )
        job.written_at = next_write_time(job.written_at)
        job.scope.write_version(
            "what_if_runs",
            {
                **rows[0],
                "run_id": job.run_id,
                "status": status,
                "result": result.model_dump_json() if result is not None else "",
                "error": error,
            },
            job.written_at,
        )


# One runner per process: scenarios of every tenant take turns.
RUNNER = WhatIfRunner()
