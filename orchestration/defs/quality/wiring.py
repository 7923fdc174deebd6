"""From pipelines.quality's results to Dagster asset check results, and the alert a failed
blocking check raises. The checks themselves (great-expectations suites) live in
pipelines/quality.py; docs/quality.md lists them."""

from collections.abc import Iterable, Iterator, Mapping

import dagster as dg

from orchestration.defs.environment import settings
from pipelines.quality import CheckResult
from rastro.alerts import send_alert


def check_spec(
    name: str, asset: dg.AssetKey, *, blocking: bool, description: str
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)


def check_results(
    results: Iterable[CheckResult], keys: Mapping[str, dg.AssetKey]
) -> Iterator[dg.AssetCheckResult]:
    """One AssetCheckResult per check (severity ERROR for blocking checks, WARN otherwise),
    with the observed values and expectations as metadata; alerts for failed blocking ones."""
    for result in results:
        if not result.passed and result.blocking:
            send_alert(
                settings(),
                "check_failed",
                f"blocking check {result.name} failed on {result.asset}",
                {"observed": result.observed, "samples": result.samples},
            )
        yield dg.AssetCheckResult(
            asset_key=keys[result.asset],
            check_name=result.name,
            passed=result.passed,
            severity=dg.AssetCheckSeverity(result.severity),
            metadata={
                key: dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
                for key, value in result.metadata().items()
            },
        )
