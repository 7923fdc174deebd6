"""Everything Dagster runs for Rastro, merged from one module per domain (defs/<domain>/):

- dbt:            the dbt models as assets (tests as checks); refresh schedule and sensor
- landing:        the landing tables, observed, with their data-quality checks
- quality:        data-quality checks on the marts (attribution, commissions, ledger)
- fraud:          fraud batch detection (flags, holds for review)
- reconciliation: orders vs merchants' reports, ledger vs orders, event log vs warehouse
- payouts:        monthly payout batch preparation
- alerts:         failed runs

`rastro up` serves them at http://127.0.0.1:3000 (webserver and daemon); ops run from there.
"""

import dagster as dg

from orchestration.defs.alerts import sensors as alerts
from orchestration.defs.dbt import assets as dbt_assets
from orchestration.defs.dbt import schedules as dbt_schedules
from orchestration.defs.environment import warehouse
from orchestration.defs.fraud import assets as fraud
from orchestration.defs.landing import assets as landing
from orchestration.defs.payouts import assets as payouts
from orchestration.defs.quality import checks as quality
from orchestration.defs.reconciliation import assets as reconciliation

defs = dg.Definitions.merge(
    dbt_assets.defs,
    dbt_schedules.defs,
    landing.defs,
    quality.defs,
    fraud.defs,
    reconciliation.defs,
    payouts.defs,
    alerts.defs,
    dg.Definitions(resources={"warehouse": warehouse()}),
)
