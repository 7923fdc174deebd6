"""The marts' invariants as blocking asset checks (great-expectations suites in
pipelines/quality.py), in addition to the dbt tests dagster-dbt already shows: attribution
splits exact on fct_attributions (a failure stops the ledger in the same run: it is
downstream), the ledger balancing, and balances (a failure stops payout preparation)."""

from collections.abc import Iterator

import dagster as dg

from orchestration.defs.environment import Warehouse
from orchestration.defs.quality.wiring import check_results, check_spec
from pipelines.quality import check_marts

KEYS = {
    name: dg.AssetKey([name])
    for name in ("fct_attributions", "fct_ledger_entries", "dim_affiliate_balances")
}

MART_CHECKS = [
    check_spec(
        "attribution_splits_exact",
        KEYS["fct_attributions"],
        blocking=True,
        description="Shares sum to 1 and credited money to the order's, per conversion and model.",
    ),
    check_spec(
        "ledger_balances",
        KEYS["fct_ledger_entries"],
        blocking=True,
        description="Per commission, earned = pending + approved + paid.",
    ),
    check_spec(
        "balances_not_negative_without_reversal",
        KEYS["dim_affiliate_balances"],
        blocking=True,
        description="A negative balance only after something was taken back (a clawback).",
    ),
    check_spec(
        "balances_match_ledger",
        KEYS["dim_affiliate_balances"],
        blocking=True,
        description="Balances are the sums of the ledger's entries.",
    ),
]


def _run(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> Iterator[dg.AssetCheckResult]:
    client = warehouse.client()
    try:
        selected = {key.name for key in context.selected_asset_check_keys}
        results = check_marts(client, warehouse.database, names=selected)
        yield from check_results(results, KEYS)
    finally:
        client.close()


# Two check steps, so that the attribution check runs before the ledger is built (and
# blocks it), while the ledger's checks run after it (and block payout preparation).
@dg.multi_asset_check(specs=MART_CHECKS[:1], name="attribution_checks")
def attribution_checks(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> Iterator[dg.AssetCheckResult]:
    yield from _run(context, warehouse)


@dg.multi_asset_check(specs=MART_CHECKS[1:], name="ledger_checks", can_subset=True)
def ledger_checks(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> Iterator[dg.AssetCheckResult]:
    yield from _run(context, warehouse)


defs = dg.Definitions(asset_checks=[attribution_checks, ledger_checks])
