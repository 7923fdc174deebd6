"""Data-quality checks on the landing tables and the marts, as great-expectations suites run
offline (an ephemeral context, nothing written to disk, no network).

Each check aggregates in SQL first and fetches a small frame (one row per table, per currency
or per check: counts, minimums, maximums and a few sample ids), then validates that frame with
a great-expectations suite. So a check reads a day of events or a whole mart in ClickHouse,
and Python only ever sees a handful of rows. The Dagster asset checks (orchestration/) call
`check_landing` and `check_marts` and turn each `CheckResult` into an `AssetCheckResult`:
`passed`, `severity` (ERROR for blocking checks, WARN for the rest) and `metadata()`.

docs/quality.md lists every check, its threshold and whether it blocks, and how to
investigate a failure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rastro.schema import tables
from rastro.schema.migrate import check_database_name

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.expectations.expectation import Expectation

CURRENCY_PATTERN = r"^[A-Z]{3}$"  # ISO 4217 alphabetic code, as the contracts require
SAMPLE_LIMIT = 10  # sample ids fetched per failing condition, for whoever investigates


@dataclass(frozen=True)
class Thresholds:
    """What the checks tolerate. The defaults are documented in docs/quality.md."""

    # Landing checks look at the events received in this window before `now`.
    window: timedelta = timedelta(days=1)
    # Clocks differ a little: an event up to this far in the future is not an error.
    clock_skew: timedelta = timedelta(minutes=5)
    # No event of an affiliate program predates this (a smaller ts is a unit bug: s vs ms).
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    # The largest amount one order (or refund) may have, in minor units: 100 million in a
    # currency with cents. Anything above it is a unit or parsing bug, not a sale.
    max_amount_minor: int = 10**10
    # Dead letters / (accepted events + dead letters) over the window: above it, warn.
    dead_letter_rate: float = 0.01
    # Attribution shares of a conversion and model may differ from 1 by float rounding only.
    share_tolerance: float = 1e-9


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: what Dagster shows as an asset check."""

    name: str  # unique, snake_case: the asset check's name
    asset: str  # the table or model it is about (the asset the check belongs to)
    passed: bool
    blocking: bool  # a failure must stop what reads the asset (payouts, reports)
    description: str
    observed: dict[str, Any]  # the aggregated values the expectations saw, and samples
    expectations: list[dict[str, Any]]  # one per expectation: type, kwargs, success, result
    validation: dict[str, Any]  # the suite's summary: success and statistics
    samples: list[dict[str, Any]] = field(default_factory=list)  # offending rows, a few

    @property
    def severity(self) -> str:
        """`AssetCheckSeverity`'s value: ERROR for a blocking check, WARN otherwise."""
        return "ERROR" if self.blocking else "WARN"

    def metadata(self) -> dict[str, Any]:
        """JSON-able metadata for the asset check (Dagster renders dicts and lists as JSON)."""
        return {
            "description": self.description,
            "blocking": self.blocking,
            "observed": self.observed,
            "expectations": self.expectations,
            "validation": self.validation,
            "samples": self.samples,
        }


# -- great-expectations, offline ------------------------------------------------------------------


class _Suites:
    """One ephemeral great-expectations context and pandas data source for a set of checks."""

    def __init__(self) -> None:
        # Telemetry off before the first import; `import great_expectations` takes seconds,
        # so it happens here and not when the module is imported (Dagster loads definitions).
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._source = self._context.data_sources.add_pandas("rastro_quality")

    def validate(
        self, name: str, frame: pd.DataFrame, expectations: Sequence[Expectation]
    ) -> ExpectationSuiteValidationResult:
        asset = self._source.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe(name).get_batch(
            batch_parameters={"dataframe": frame}
        )
        suite = self._gx.ExpectationSuite(name=name, expectations=list(expectations))
        return batch.validate(suite)


def _expectations() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations.expectations as gxe

    return gxe


def _result(
    suites: _Suites,
    *,
    name: str,
    asset: str,
    blocking: bool,
    description: str,
    frame: pd.DataFrame,
    expectations: Sequence[Expectation],
    observed: Mapping[str, Any],
    samples: Iterable[Mapping[str, Any]] = (),
) -> CheckResult:
    validation = suites.validate(name, frame, expectations)
    details = []
    for outcome in validation.results:
        config = outcome.expectation_config
        kwargs = {} if config is None else dict(config.kwargs)
        kwargs.pop("batch_id", None)
        result = dict(outcome.result)
        result.pop("partial_unexpected_index_list", None)  # row numbers of a fetched frame
        details.append(
            {
                "type": None if config is None else config.type,
                "kwargs": _plain(kwargs),
                "success": bool(outcome.success),
                "result": _plain(result),
            }
        )
    return CheckResult(
        name=name,
        asset=asset,
        passed=bool(validation.success),
        blocking=blocking,
        description=description,
        observed=_plain(dict(observed)),
        expectations=details,
        validation={"success": bool(validation.success), **_plain(dict(validation.statistics))},
        samples=[_plain(dict(sample)) for sample in samples],
    )


# -- helpers --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able copy: dates as ISO text, decimals as text, NaN as None, numpy scalars as
    Python ones."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _plain(item())
    return str(value)


def _literal(moment: datetime) -> str:
    """A DateTime64(3, 'UTC') literal for a point in time."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{text}', 3, 'UTC')"


def _frame(client: Any, sql: str, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The result as a pandas frame (great-expectations validates pandas, not polars);
    `columns` names those of an empty result, which may come back without names."""
    import pandas as pd

    result = client.query(sql)
    names = list(result.column_names) or list(columns)
    return pd.DataFrame(list(result.result_rows), columns=names)


def _row(frame: pd.DataFrame) -> dict[str, Any]:
    """The first row, each value of its column's type (iloc would upcast ints to floats)."""
    return {str(column): value for column, value in frame.to_dict(orient="records")[0].items()}


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now


def _check_database(database: str) -> None:
    check_database_name(database)


def _between(column: str, low: float | None, high: float | None) -> Expectation:
    gxe = _expectations()
    expectation: Expectation = gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high
    )
    return expectation


def _zero(column: str) -> Expectation:
    return _between(column, 0, 0)


# -- landing tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Landing:
    table: tables.Table
    ids: tuple[str, ...]  # columns that must never be empty


LANDING: tuple[_Landing, ...] = (
    _Landing(tables.CLICKS, ("event_id", "tenant_id", "click_id")),
    _Landing(tables.PAGE_EVENTS, ("event_id", "tenant_id")),
    _Landing(tables.CONVERSIONS, ("event_id", "tenant_id", "conversion_id", "order_id")),
    _Landing(tables.ORDER_UPDATES, ("event_id", "tenant_id", "order_id")),
    _Landing(tables.IDENTITY_LINKS, ("event_id", "tenant_id", "left_id", "right_id")),
)
_WITH_AMOUNTS = (tables.CONVERSIONS.name, tables.ORDER_UPDATES.name)
# In the order check_landing returns them.
LANDING_CHECKS = (
    *(
        f"{landing.table.name}_{kind}"
        for landing in LANDING
        for kind in ("ids_present", "timestamps_sane", "amounts_valid")
        if kind != "amounts_valid" or landing.table.name in _WITH_AMOUNTS
    ),
    "dead_letter_rate",
)


def check_landing(
    client: Any,
    database: str,
    now: datetime | None = None,
    *,
    thresholds: Thresholds = Thresholds(),
    names: Collection[str] | None = None,
) -> list[CheckResult]:
    """The landing tables' checks over the events received in `thresholds.window` before
    `now` (default: the current time): for each table, ids present (blocking) and timestamps
    sane (warns); for conversions and order updates, amounts and currencies valid (blocking);
    and the dead-letter rate (warns). `names` runs only those checks (of `LANDING_CHECKS`)."""
    _check_database(database)
    selected = _selected(LANDING_CHECKS, names)
    now = _now(now)
    since = now - thresholds.window
    suites = _Suites()
    results: list[CheckResult] = []
    for landing in LANDING:
        table = landing.table.name
        if {f"{table}_ids_present", f"{table}_timestamps_sane"} & selected:
            frame = _landing_profile(client, database, landing, since, now, thresholds)
            if f"{table}_ids_present" in selected:
                results.append(_ids_present(suites, landing, frame, since))
            if f"{table}_timestamps_sane" in selected:
                results.append(_timestamps_sane(suites, landing, frame, since, now, thresholds))
        if landing.table is tables.CONVERSIONS and "conversions_amounts_valid" in selected:
            results.append(_conversion_amounts(suites, client, database, since, thresholds))
        if landing.table is tables.ORDER_UPDATES and "order_updates_amounts_valid" in selected:
            results.append(_update_amounts(suites, client, database, since, thresholds))
    if "dead_letter_rate" in selected:
        results.append(_dead_letter_rate(suites, client, database, since, thresholds))
    return results


def _landing_profile(
    client: Any,
    database: str,
    landing: _Landing,
    since: datetime,
    now: datetime,
    thresholds: Thresholds,
) -> pd.DataFrame:
    """One row: the table's events in the window, ids missing, timestamps out of range."""
    time = landing.table.event_time
    assert time is not None
    latest = _literal(now + thresholds.clock_skew)
    earliest = _literal(thresholds.earliest)
    missing = [f"countIf({column} = '') AS missing_{column}" for column in landing.ids]
    any_missing = " OR ".join(f"{column} = ''" for column in landing.ids)
    bad_time = f"{time} < {earliest} OR {time} > {latest} OR received_at > {latest}"
    sql = f"""
        SELECT
            count() AS rows,
            {", ".join(missing)},
            countIf({time} < {earliest}) AS before_earliest,
            countIf({time} > {latest}) AS in_future,
            countIf(received_at > {latest}) AS received_in_future,
            if(rows = 0, NULL, toString(min({time}))) AS min_{time},
            if(rows = 0, NULL, toString(max({time}))) AS max_{time},
            groupArrayIf({SAMPLE_LIMIT})(
                (tenant_id, event_id, {", ".join(landing.ids)}), {any_missing}
            ) AS missing_id_samples,
            groupArrayIf({SAMPLE_LIMIT})(
                (tenant_id, event_id, toString({time}), toString(received_at)), {bad_time}
            ) AS bad_time_samples
        FROM {database}.{landing.table.name}
        WHERE received_at >= {_literal(since)}
    """
    return _frame(client, sql)


def _ids_present(
    suites: _Suites, landing: _Landing, frame: pd.DataFrame, since: datetime
) -> CheckResult:
    table = landing.table.name
    row = _row(frame)
    columns = [f"missing_{column}" for column in landing.ids]
    keys = ("tenant_id", "event_id", *landing.ids)
    return _result(
        suites,
        name=f"{table}_ids_present",
        asset=table,
        blocking=True,
        description=f"Every {table} row received since {since.isoformat()} has "
        + ", ".join(landing.ids)
        + " (none empty).",
        frame=frame[["rows", *columns]],
        expectations=[_zero(column) for column in columns],
        observed={"rows": row["rows"], **{column: row[column] for column in columns}},
        samples=[dict(zip(keys, sample, strict=True)) for sample in row["missing_id_samples"]],
    )


def _timestamps_sane(
    suites: _Suites,
    landing: _Landing,
    frame: pd.DataFrame,
    since: datetime,
    now: datetime,
    thresholds: Thresholds,
) -> CheckResult:
    table = landing.table.name
    time = landing.table.event_time
    assert time is not None
    row = _row(frame)
    counts = ["before_earliest", "in_future", "received_in_future"]
    return _result(
        suites,
        name=f"{table}_timestamps_sane",
        asset=table,
        blocking=False,
        description=(
            f"No {table} row received since {since.isoformat()} has a {time} before "
            f"{thresholds.earliest.date().isoformat()}, or a {time} or received_at later than "
            f"now + {int(thresholds.clock_skew.total_seconds())} s."
        ),
        frame=frame[["rows", *counts]],
        expectations=[_zero(column) for column in counts],
        observed={
            "rows": row["rows"],
            **{column: row[column] for column in counts},
            f"min_{time}": row[f"min_{time}"],
            f"max_{time}": row[f"max_{time}"],
            "now": now,
        },
        samples=[
            dict(zip(("tenant_id", "event_id", time, "received_at"), sample, strict=True))
            for sample in row["bad_time_samples"]
        ],
    )


def _conversion_amounts(
    suites: _Suites, client: Any, database: str, since: datetime, thresholds: Thresholds
) -> CheckResult:
    bad = (
        f"amount_minor < 0 OR amount_minor > {thresholds.max_amount_minor} OR net_minor < 0 "
        "OR net_minor > amount_minor OR tax_minor < 0 OR shipping_minor < 0 "
        f"OR discount_minor < 0 OR NOT match(currency, '{CURRENCY_PATTERN}')"
    )
    frame = _frame(
        client,
        f"""
        SELECT
            toString(currency) AS currency,
            count() AS rows,
            min(amount_minor) AS min_amount_minor,
            max(amount_minor) AS max_amount_minor,
            min(net_minor) AS min_net_minor,
            countIf(net_minor > amount_minor) AS net_above_amount,
            countIf(tax_minor < 0 OR shipping_minor < 0 OR discount_minor < 0) AS negative_parts,
            groupArrayIf({SAMPLE_LIMIT})(
                (tenant_id, event_id, order_id, amount_minor, net_minor, toString(currency)), {bad}
            ) AS samples
        FROM {database}.conversions
        WHERE received_at >= {_literal(since)}
        GROUP BY currency
        ORDER BY currency
        """,
        columns=[
            "currency",
            "rows",
            "min_amount_minor",
            "max_amount_minor",
            "min_net_minor",
            "net_above_amount",
            "negative_parts",
            "samples",
        ],
    )
    gxe = _expectations()
    keys = ("tenant_id", "event_id", "order_id", "amount_minor", "net_minor", "currency")
    return _result(
        suites,
        name="conversions_amounts_valid",
        asset="conversions",
        blocking=True,
        description=(
            f"Conversions received since {since.isoformat()}: currency is an ISO 4217 code "
            f"(3 upper-case letters); 0 <= net_minor <= amount_minor <= "
            f"{thresholds.max_amount_minor}; tax, shipping and discount never negative."
        ),
        frame=frame.drop(columns=["samples"]),
        expectations=[
            gxe.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY_PATTERN),
            _between("min_amount_minor", 0, None),
            _between("max_amount_minor", None, thresholds.max_amount_minor),
            _between("min_net_minor", 0, None),
            _zero("net_above_amount"),
            _zero("negative_parts"),
        ],
        observed={"currencies": frame.drop(columns=["samples"]).to_dict(orient="records")},
        samples=[
            dict(zip(keys, sample, strict=True))
            for samples in frame["samples"]
            for sample in samples
        ][:SAMPLE_LIMIT],
    )


def _update_amounts(
    suites: _Suites, client: Any, database: str, since: datetime, thresholds: Thresholds
) -> CheckResult:
    bad = (
        f"amount_minor <= 0 OR amount_minor > {thresholds.max_amount_minor} "
        f"OR NOT match(currency, '{CURRENCY_PATTERN}')"
    )
    frame = _frame(
        client,
        f"""
        SELECT
            toString(currency) AS currency,
            count() AS rows,
            min(amount_minor) AS min_amount_minor,
            max(amount_minor) AS max_amount_minor,
            groupArrayIf({SAMPLE_LIMIT})(
                (tenant_id, event_id, order_id, toString(kind), amount_minor, toString(currency)),
                {bad}
            ) AS samples
        FROM {database}.order_updates
        WHERE received_at >= {_literal(since)}
        GROUP BY currency
        ORDER BY currency
        """,
        columns=["currency", "rows", "min_amount_minor", "max_amount_minor", "samples"],
    )
    gxe = _expectations()
    keys = ("tenant_id", "event_id", "order_id", "kind", "amount_minor", "currency")
    return _result(
        suites,
        name="order_updates_amounts_valid",
        asset="order_updates",
        blocking=True,
        description=(
            f"Order updates received since {since.isoformat()}: currency is an ISO 4217 code "
            f"(3 upper-case letters); 0 < amount_minor <= {thresholds.max_amount_minor} "
            "(the amount taken back is positive)."
        ),
        frame=frame.drop(columns=["samples"]),
        expectations=[
            gxe.ExpectColumnValuesToMatchRegex(column="currency", regex=CURRENCY_PATTERN),
            _between("min_amount_minor", 1, None),
            _between("max_amount_minor", None, thresholds.max_amount_minor),
        ],
        observed={"currencies": frame.drop(columns=["samples"]).to_dict(orient="records")},
        samples=[
            dict(zip(keys, sample, strict=True))
            for samples in frame["samples"]
            for sample in samples
        ][:SAMPLE_LIMIT],
    )


def _dead_letter_rate(
    suites: _Suites, client: Any, database: str, since: datetime, thresholds: Thresholds
) -> CheckResult:
    window = f"received_at >= {_literal(since)}"
    accepted = " + ".join(
        f"(SELECT count() FROM {database}.{landing.table.name} WHERE {window})"
        for landing in LANDING
    )
    frame = _frame(
        client,
        f"""
        SELECT
            dead_letters,
            accepted,
            if(dead_letters + accepted = 0, 0., dead_letters / (dead_letters + accepted)) AS rate
        FROM (
            SELECT
                (SELECT count() FROM {database}.dead_letters_dedup WHERE {window})
                    AS dead_letters,
                {accepted} AS accepted
        )
        """,
    )
    reasons = _frame(
        client,
        f"""
        SELECT toString(event_type_guess) AS event_type_guess, toString(source) AS source,
            reason, count() AS dead_letters
        FROM {database}.dead_letters_dedup
        WHERE {window}
        GROUP BY event_type_guess, source, reason
        ORDER BY dead_letters DESC, reason
        LIMIT 5
        """,
        columns=["event_type_guess", "source", "reason", "dead_letters"],
    )
    row = _row(frame)
    return _result(
        suites,
        name="dead_letter_rate",
        asset="dead_letters",
        blocking=False,
        description=(
            f"Dead letters received since {since.isoformat()} are at most "
            f"{thresholds.dead_letter_rate:.2%} of all events received (accepted + dead letters)."
        ),
        frame=frame,
        expectations=[_between("rate", 0, thresholds.dead_letter_rate)],
        observed={
            "dead_letters": row["dead_letters"],
            "accepted": row["accepted"],
            "rate": row["rate"],
            "threshold": thresholds.dead_letter_rate,
            "top_reasons": reasons.to_dict(orient="records"),
        },
    )


# -- marts ----------------------------------------------------------------------------------------


MART_CHECKS = (
    "attribution_splits_exact",
    "ledger_balances",
    "balances_not_negative_without_reversal",
    "balances_match_ledger",
)


def check_marts(
    client: Any,
    database: str,
    *,
    thresholds: Thresholds = Thresholds(),
    names: Collection[str] | None = None,
) -> list[CheckResult]:
    """The marts' invariants, all blocking: attribution splits are exact (fct_attributions),
    the ledger balances (fct_ledger_entries), no negative balance without something taken back
    and balances agree with the ledger (dim_affiliate_balances). `names` runs only those
    checks (of `MART_CHECKS`; the others' tables are not read)."""
    _check_database(database)
    selected = _selected(MART_CHECKS, names)
    suites = _Suites()
    run: dict[str, Callable[[], CheckResult]] = {
        "attribution_splits_exact": lambda: _attribution_splits(
            suites, client, database, thresholds
        ),
        "ledger_balances": lambda: _ledger_balances(suites, client, database),
        "balances_not_negative_without_reversal": lambda: _no_negative_balance(
            suites, client, database
        ),
        "balances_match_ledger": lambda: _balances_match_ledger(suites, client, database),
    }
    return [run[name]() for name in MART_CHECKS if name in selected]


def _selected(known: Sequence[str], names: Collection[str] | None) -> set[str]:
    if names is None:
        return set(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {list(known)}")
    return set(names)


def _samples(row: Mapping[str, Any], column: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    return [dict(zip(keys, sample, strict=True)) for sample in row[column]]


def _attribution_splits(
    suites: _Suites, client: Any, database: str, thresholds: Thresholds
) -> CheckResult:
    tolerance = thresholds.share_tolerance
    bad = (
        f"abs(total_share - 1) > {tolerance!r} OR credited_amount != order_amount "
        "OR credited_net != order_net"
    )
    frame = _frame(
        client,
        f"""
        SELECT
            count() AS splits,
            countIf(abs(total_share - 1) > {tolerance!r}) AS shares_not_one,
            countIf(credited_amount != order_amount) AS amounts_not_order_amount,
            countIf(credited_net != order_net) AS nets_not_order_net,
            countIf(order_amounts > 1 OR order_nets > 1) AS order_amount_differs_by_row,
            max(abs(total_share - 1)) AS max_share_error,
            groupArrayIf({SAMPLE_LIMIT})(
                (tenant_id, conversion_id, model, total_share, credited_amount, order_amount,
                 credited_net, order_net),
                {bad}
            ) AS samples
        FROM (
            SELECT
                tenant_id,
                conversion_id,
                model,
                sum(share) AS total_share,
                sum(credited_amount_minor) AS credited_amount,
                any(order_amount_minor) AS order_amount,
                uniqExact(order_amount_minor) AS order_amounts,
                sum(credited_net_minor) AS credited_net,
                any(order_net_minor) AS order_net,
                uniqExact(order_net_minor) AS order_nets
            FROM {database}.fct_attributions
            GROUP BY tenant_id, conversion_id, model
        )
        """,
    )
    row = _row(frame)
    counts = [
        "shares_not_one",
        "amounts_not_order_amount",
        "nets_not_order_net",
        "order_amount_differs_by_row",
    ]
    return _result(
        suites,
        name="attribution_splits_exact",
        asset="fct_attributions",
        blocking=True,
        description=(
            "Per conversion and model, the affiliates' shares sum to 1 (within "
            f"{tolerance:g}) and their credited amounts and nets sum to the order's, to the cent."
        ),
        frame=frame[["splits", *counts, "max_share_error"]],
        expectations=[
            *(_zero(column) for column in counts),
            _between("max_share_error", 0, tolerance),
        ],
        observed={column: row[column] for column in ["splits", *counts, "max_share_error"]},
        samples=_samples(
            row,
            "samples",
            (
                "tenant_id",
                "conversion_id",
                "model",
                "total_share",
                "credited_amount_minor",
                "order_amount_minor",
                "credited_net_minor",
                "order_net_minor",
            ),
        ),
    )


_BUCKETS = ("earned", "pending", "approved", "paid", "rejected")


def _ledger_balances(suites: _Suites, client: Any, database: str) -> CheckResult:
    frame = _frame(
        client,
        f"""
        WITH
        entries AS (
            SELECT
                count() AS entries,
                countIf(
                    earned_delta_minor
                        != pending_delta_minor + approved_delta_minor + paid_delta_minor
                ) AS unbalanced_entries,
                groupArrayIf({SAMPLE_LIMIT})(
                    (tenant_id, commission_id, entry_id, toString(entry_type), earned_delta_minor,
                     pending_delta_minor, approved_delta_minor, paid_delta_minor),
                    earned_delta_minor
                        != pending_delta_minor + approved_delta_minor + paid_delta_minor
                ) AS entry_samples
            FROM {database}.fct_ledger_entries
        ),
        commissions AS (
            SELECT
                count() AS commissions,
                countIf(earned != pending + approved + paid) AS unbalanced_commissions,
                groupArrayIf({SAMPLE_LIMIT})(
                    (tenant_id, commission_id, earned, pending, approved, paid),
                    earned != pending + approved + paid
                ) AS commission_samples
            FROM (
                SELECT
                    tenant_id,
                    commission_id,
                    sum(earned_delta_minor) AS earned,
                    sum(pending_delta_minor) AS pending,
                    sum(approved_delta_minor) AS approved,
                    sum(paid_delta_minor) AS paid
                FROM {database}.fct_ledger_entries
                GROUP BY tenant_id, commission_id
            )
        )
        SELECT * FROM entries CROSS JOIN commissions
        """,
    )
    row = _row(frame)
    counts = ["entries", "unbalanced_entries", "commissions", "unbalanced_commissions"]
    return _result(
        suites,
        name="ledger_balances",
        asset="fct_ledger_entries",
        blocking=True,
        description=(
            "earned = pending + approved + paid for every ledger entry and for every "
            "commission's balance."
        ),
        frame=frame[counts],
        expectations=[_zero("unbalanced_entries"), _zero("unbalanced_commissions")],
        observed={column: row[column] for column in counts},
        samples=[
            *(
                {"kind": "entry", **sample}
                for sample in _samples(
                    row,
                    "entry_samples",
                    (
                        "tenant_id",
                        "commission_id",
                        "entry_id",
                        "entry_type",
                        "earned_delta_minor",
                        "pending_delta_minor",
                        "approved_delta_minor",
                        "paid_delta_minor",
                    ),
                )
            ),
            *(
                {"kind": "commission", **sample}
                for sample in _samples(
                    row,
                    "commission_samples",
                    ("tenant_id", "commission_id", "earned", "pending", "approved", "paid"),
                )
            ),
        ],
    )


def _no_negative_balance(suites: _Suites, client: Any, database: str) -> CheckResult:
    # Earned, pending, paid and rejected never go below 0. Approved may (a clawback: money
    # owed back), but only through an entry that takes something back - a reversal, a
    # clawback, a rejection, a downward correction: one that lowers earned. An entry that
    # drives approved below 0 without lowering earned (a payment of more than was approved)
    # pays money that was never owed.
    negative = "earned < 0 OR pending < 0 OR paid < 0 OR rejected < 0"
    affiliate_negative = (
        "earned_minor < 0 OR pending_minor < 0 OR paid_minor < 0 OR rejected_minor < 0"
    )
    affiliate_owed = (
        "approved_minor < 0 AND reversed_minor <= 0 AND rejected_minor <= 0 "
        "AND corrected_minor >= 0"
    )
    frame = _frame(
        client,
        f"""
        WITH
        commissions AS (
            SELECT
                count() AS commissions,
                countIf({negative}) AS commissions_negative,
                groupArrayIf({SAMPLE_LIMIT})(
                    (tenant_id, commission_id, affiliate_id, earned, pending, approved, paid,
                     rejected),
                    {negative}
                ) AS negative_samples
            FROM (
                SELECT
                    tenant_id,
                    commission_id,
                    any(affiliate_id) AS affiliate_id,
                    sum(earned_delta_minor) AS earned,
                    sum(pending_delta_minor) AS pending,
                    sum(approved_delta_minor) AS approved,
                    sum(paid_delta_minor) AS paid,
                    sum(rejected_delta_minor) AS rejected
                FROM {database}.fct_ledger_entries
                GROUP BY tenant_id, commission_id
            )
        ),
        overdrawn AS (
            SELECT
                uniqExact(tenant_id, commission_id) AS commissions_owed_without_reversal,
                groupArray({SAMPLE_LIMIT})(
                    (tenant_id, commission_id, affiliate_id, entry_id, entry_type,
                     toString(effective_at), approved_delta_minor, approved_after)
                ) AS overdrawn_samples
            FROM (
                SELECT
                    tenant_id,
                    commission_id,
                    affiliate_id,
                    entry_id,
                    toString(entry_type) AS entry_type,
                    effective_at,
                    earned_delta_minor,
                    approved_delta_minor,
                    sum(approved_delta_minor) OVER (
                        PARTITION BY tenant_id, commission_id
                        ORDER BY effective_at, recorded_at, entry_id
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                    ) AS approved_after
                FROM {database}.fct_ledger_entries
            )
            WHERE approved_after < 0 AND approved_delta_minor < 0 AND earned_delta_minor >= 0
        ),
        affiliates AS (
            SELECT
                count() AS balances,
                countIf({affiliate_negative}) AS balances_negative,
                countIf({affiliate_owed}) AS balances_owed_without_reversal,
                groupArrayIf({SAMPLE_LIMIT})(
                    (tenant_id, affiliate_id, toString(currency), earned_minor, pending_minor,
                     approved_minor, paid_minor, rejected_minor, reversed_minor, corrected_minor),
                    ({affiliate_negative}) OR ({affiliate_owed})
                ) AS balance_samples
            FROM {database}.dim_affiliate_balances
        )
        SELECT * FROM commissions CROSS JOIN overdrawn CROSS JOIN affiliates
        """,
    )
    row = _row(frame)
    counts = [
        "commissions_negative",
        "commissions_owed_without_reversal",
        "balances_negative",
        "balances_owed_without_reversal",
    ]
    negative_keys = (
        "tenant_id",
        "commission_id",
        "affiliate_id",
        "earned",
        "pending",
        "approved",
        "paid",
        "rejected",
    )
    overdrawn_keys = (
        "tenant_id",
        "commission_id",
        "affiliate_id",
        "entry_id",
        "entry_type",
        "effective_at",
        "approved_delta_minor",
        "approved_after",
    )
    balance_keys = (
        "tenant_id",
        "affiliate_id",
        "currency",
        "earned_minor",
        "pending_minor",
        "approved_minor",
        "paid_minor",
        "rejected_minor",
        "reversed_minor",
        "corrected_minor",
    )
    return _result(
        suites,
        name="balances_not_negative_without_reversal",
        asset="dim_affiliate_balances",
        blocking=True,
        description=(
            "No commission (fct_ledger_entries) or affiliate balance (dim_affiliate_balances) "
            "has a negative earned, pending, paid or rejected amount; approved goes below 0 "
            "(owed back) only through a reversal, clawback, rejection or downward correction, "
            "never through a payment or an approval."
        ),
        frame=frame[["commissions", "balances", *counts]],
        expectations=[_zero(column) for column in counts],
        observed={column: row[column] for column in ["commissions", "balances", *counts]},
        samples=[
            *(
                {"kind": "negative_commission", **s}
                for s in _samples(row, "negative_samples", negative_keys)
            ),
            *(
                {"kind": "overdrawing_entry", **s}
                for s in _samples(row, "overdrawn_samples", overdrawn_keys)
            ),
            *(
                {"kind": "affiliate_balance", **s}
                for s in _samples(row, "balance_samples", balance_keys)
            ),
        ],
    )


def _balances_match_ledger(suites: _Suites, client: Any, database: str) -> CheckResult:
    differs = " OR ".join(f"b_{bucket} != l_{bucket}" for bucket in _BUCKETS)
    frame = _frame(
        client,
        f"""
        SELECT
            count() AS keys,
            countIf(in_balances = 0) AS missing_from_balances,
            countIf(in_ledger = 0) AS missing_from_ledger,
            countIf(in_balances = 1 AND in_ledger = 1 AND ({differs})) AS balances_differ,
            groupArrayIf({SAMPLE_LIMIT})(
                (tenant_id, affiliate_id, currency, in_balances, in_ledger,
                 [{", ".join(f"b_{bucket}" for bucket in _BUCKETS)}],
                 [{", ".join(f"l_{bucket}" for bucket in _BUCKETS)}]),
                in_balances = 0 OR in_ledger = 0 OR {differs}
            ) AS samples
        FROM (
            SELECT
                if(balance.in_balances = 1, balance.tenant_id, ledger.tenant_id) AS tenant_id,
                if(balance.in_balances = 1, balance.affiliate_id, ledger.affiliate_id)
                    AS affiliate_id,
                if(balance.in_balances = 1, balance.currency, ledger.currency) AS currency,
                balance.in_balances AS in_balances,
                ledger.in_ledger AS in_ledger,
                {", ".join(f"balance.b_{bucket} AS b_{bucket}" for bucket in _BUCKETS)},
                {", ".join(f"ledger.l_{bucket} AS l_{bucket}" for bucket in _BUCKETS)}
            FROM (
                SELECT
                    toString(tenant_id) AS tenant_id,
                    affiliate_id,
                    toString(currency) AS currency,
                    toUInt8(1) AS in_balances,
                    {", ".join(f"{bucket}_minor AS b_{bucket}" for bucket in _BUCKETS)}
                FROM {database}.dim_affiliate_balances
            ) AS balance
            FULL OUTER JOIN (
                SELECT
                    toString(tenant_id) AS tenant_id,
                    affiliate_id,
                    toString(currency) AS currency,
                    toUInt8(1) AS in_ledger,
                    {", ".join(f"sum({bucket}_delta_minor) AS l_{bucket}" for bucket in _BUCKETS)}
                FROM {database}.fct_ledger_entries
                GROUP BY tenant_id, affiliate_id, currency
            ) AS ledger
                ON ledger.tenant_id = balance.tenant_id
                AND ledger.affiliate_id = balance.affiliate_id
                AND ledger.currency = balance.currency
            SETTINGS join_use_nulls = 0
        )
        """,
    )
    row = _row(frame)
    counts = ["missing_from_balances", "missing_from_ledger", "balances_differ"]
    return _result(
        suites,
        name="balances_match_ledger",
        asset="dim_affiliate_balances",
        blocking=True,
        description=(
            "dim_affiliate_balances has one row per tenant, affiliate and currency of the "
            "ledger, and its earned, pending, approved, paid and rejected are the ledger's sums."
        ),
        frame=frame[["keys", *counts]],
        expectations=[_zero(column) for column in counts],
        observed={column: row[column] for column in ["keys", *counts]},
        samples=[
            {
                "tenant_id": tenant,
                "affiliate_id": affiliate,
                "currency": currency,
                "in_balances": bool(in_balances),
                "in_ledger": bool(in_ledger),
                "balances": dict(zip(_BUCKETS, balance, strict=True)),
                "ledger": dict(zip(_BUCKETS, ledger, strict=True)),
            }
            for tenant, affiliate, currency, in_balances, in_ledger, balance, ledger in row[
                "samples"
            ]
        ],
    )
