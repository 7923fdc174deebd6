"""`detect`: fetch the rules' inputs for a run (aggregated in the warehouse) and apply every
rule (pure polars). The Dagster asset and the API call this, then `record`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from pipelines.fraud.inputs import fetch
from pipelines.fraud.rules import RULES, apply
from pipelines.fraud.thresholds import Thresholds


def detect(
    client: Any,
    database: str,
    as_of: datetime | None = None,
    thresholds: Thresholds | None = None,
    *,
    tenants: Sequence[str] = (),
    rules: Iterable[str] = RULES,
) -> pl.DataFrame:
    """The fraud flags (rows of fraud_flags, run_id empty) of `tenants` (default: all), on
    the data up to `as_of` (default: now) within `thresholds.lookback_days`. Reads the dbt
    models: run after `dbt build`."""
    at = (as_of or datetime.now(UTC)).astimezone(UTC)
    settings = thresholds or Thresholds()
    inputs = fetch(client, database, at, settings, tenants)
    return apply(inputs, settings, rules)
