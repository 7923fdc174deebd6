"""Reconciliations: Rastro's facts compared with an independent reference, every difference
written to `reconciliation_differences` (one row per check, tenant, day, currency and key).

- `orders_vs_reported`: orders received (the current version of each order, per UTC day and
  currency: count and gross amount; refunds from order_updates) against the merchant's own
  report (`merchant_reports`);
- `ledger_vs_orders`: every payable commission (fct_commissions, commission > 0) has its
  accrual in the ledger, and no ledger entry belongs to a commission whose conversion is not
  in `conversions`;
- `log_vs_warehouse`: click records per event-log partition (and tenant) in the log still on
  disk against the clicks the warehouse has from those log positions.

Each function computes its differences, writes them (a ReplacingMergeTree keyed by tenant,
check, day, currency and key: a run that finds a difference again replaces the row, so a rerun
is idempotent) and returns them as a polars frame with the table's columns, for the caller to
alert on. An empty frame means the two sides agree. docs/quality.md explains how to
investigate each kind of difference.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ingest.frames import DEAD_LETTER_SOURCE
from rastro.eventlog import CorruptRecord, LogReader, Offset, partition_number
from rastro.eventlog.format import segment_name
from rastro.schema import tables
from rastro.schema.migrate import check_database_name

ORDERS_VS_REPORTED = "orders_vs_reported"
LEDGER_VS_ORDERS = "ledger_vs_orders"
LOG_VS_WAREHOUSE = "log_vs_warehouse"

# Days compared by default: a merchant may correct its report for about a month.
DEFAULT_DAYS = 35
# The landing tables ingest writes from the log (their highest log offset is how far it got).
_LOGGED_TABLES = ("clicks", "page_events", "conversions", "order_updates", "identity_links")
_READ_BATCH = 10_000

DIFFERENCE_SCHEMA: dict[str, Any] = {
    "tenant_id": pl.String,
    "check_name": pl.String,
    "day": pl.Date,
    "currency": pl.String,
    "key": pl.String,
    "expected": pl.Int64,
    "actual": pl.Int64,
    "details": pl.String,
    "found_at": pl.Datetime("ms", "UTC"),
    "run_id": pl.String,
}
assert list(DIFFERENCE_SCHEMA) == [c.name for c in tables.RECONCILIATION_DIFFERENCES.columns]


@dataclass(frozen=True)
class Difference:
    tenant_id: str
    day: date
    currency: str
    key: str
    expected: int
    actual: int
    details: Mapping[str, Any]


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC)


def _literal(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{text}', 3, 'UTC')"


def _json(value: Any) -> str:
    def default(item: Any) -> Any:
        if isinstance(item, datetime | date):
            return item.isoformat()
        return str(item)

    return json.dumps(value, sort_keys=True, default=default)


def _rows(client: Any, sql: str) -> list[dict[str, Any]]:
    result = client.query(sql)
    names = list(result.column_names)
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


def differences_frame(
    check_name: str, differences: Iterable[Difference], *, run_id: str, found_at: datetime
) -> pl.DataFrame:
    """The differences as rows of `reconciliation_differences`."""
    found_at = _now(found_at)
    rows = [
        {
            "tenant_id": d.tenant_id,
            "check_name": check_name,
            "day": d.day,
            "currency": d.currency,
            "key": d.key,
            "expected": d.expected,
            "actual": d.actual,
            "details": _json(d.details),
            "found_at": found_at,
            "run_id": run_id,
        }
        for d in differences
    ]
    if not rows:
        return pl.DataFrame(schema=DIFFERENCE_SCHEMA)
    return pl.DataFrame(rows, schema=DIFFERENCE_SCHEMA).sort("tenant_id", "day", "currency", "key")


def write_differences(client: Any, database: str, frame: pl.DataFrame) -> int:
    """Insert the differences (a frame from `differences_frame`); returns how many."""
    check_database_name(database)
    if frame.is_empty():
        return 0
    columns = list(DIFFERENCE_SCHEMA)
    client.insert(
        tables.RECONCILIATION_DIFFERENCES.name,
        [list(row) for row in frame.select(columns).iter_rows()],
        column_names=columns,
        database=database,
    )
    return frame.height


def _finish(
    client: Any,
    database: str,
    check_name: str,
    differences: list[Difference],
    *,
    run_id: str,
    now: datetime,
    write: bool,
) -> pl.DataFrame:
    frame = differences_frame(check_name, differences, run_id=run_id, found_at=now)
    if write:
        write_differences(client, database, frame)
    return frame


# -- orders vs the merchant's report --------------------------------------------------------------


def reconcile_orders_vs_reported(
    client: Any,
    database: str,
    *,
    run_id: str,
    now: datetime | None = None,
    since: date | None = None,
    until: date | None = None,
    write: bool = True,
) -> pl.DataFrame:
    """Orders received against the merchant's own report, for each (tenant, UTC day) the
    merchant reported between `since` and `until` (inclusive; default: the last
    `DEFAULT_DAYS` days up to `now`'s). Per currency: `orders` (sales, the current version of
    each order, by the day it was placed), `gross` (their amount_minor) and `refunds`
    (order_updates of the day: refunds, cancellations and chargebacks). A currency the merchant
    did not report on a day it reported counts as 0 there; days it did not report are skipped
    (there is nothing to compare with)."""
    check_database_name(database)
    now = _now(now)
    until = until or now.date()
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    days = f"BETWEEN toDate('{since.isoformat()}') AND toDate('{until.isoformat()}')"
    # An order's versions normally share their ts; a week's margin finds the versions of an
    # order whose current version falls in the range even if an earlier one did not.
    margin = (
        f"BETWEEN toDate('{(since - timedelta(days=7)).isoformat()}')"
        f" AND toDate('{(until + timedelta(days=7)).isoformat()}')"
    )
    reported = _rows(
        client,
        f"""
        SELECT
            toString(tenant_id) AS tenant_id,
            day,
            toString(currency) AS currency,
            argMax(orders, reported_at) AS reported_orders,
            argMax(gross_minor, reported_at) AS reported_gross,
            argMax(refunds_minor, reported_at) AS reported_refunds,
            toString(argMax(source, reported_at)) AS report_source,
            max(reported_at) AS last_reported_at
        FROM {database}.merchant_reports FINAL
        WHERE day {days}
        GROUP BY tenant_id, day, currency
        """,
    )
    received = _rows(
        client,
        f"""
        SELECT
            order_tenant AS tenant_id,
            toDate(placed_at) AS day,
            order_currency AS currency,
            count() AS orders,
            sum(order_amount) AS gross
        FROM (
            SELECT
                toString(tenant_id) AS order_tenant,
                order_id,
                argMax(ts, version) AS placed_at,
                toString(argMax(currency, version)) AS order_currency,
                argMax(amount_minor, version) AS order_amount,
                toString(argMax(kind, version)) AS order_kind
            FROM {database}.conversions_dedup
            WHERE toDate(ts) {margin}
            GROUP BY tenant_id, order_id
        )
        WHERE order_kind = 'sale' AND toDate(placed_at) {days}
        GROUP BY order_tenant, toDate(placed_at), order_currency
        """,
    )
    refunded = _rows(
        client,
        f"""
        SELECT
            toString(tenant_id) AS update_tenant,
            toDate(ts) AS day,
            toString(currency) AS update_currency,
            sum(amount_minor) AS refunds,
            count() AS updates
        FROM {database}.order_updates_dedup
        WHERE toDate(ts) {days}
        GROUP BY update_tenant, day, update_currency
        """,
    )
    reports = {(r["tenant_id"], r["day"], r["currency"]): r for r in reported}
    metrics = {
        "orders": "reported_orders",
        "gross": "reported_gross",
        "refunds": "reported_refunds",
    }
    report_days = {(tenant, day) for tenant, day, _ in reports}
    ours: dict[tuple[str, date, str], dict[str, int]] = {}
    for row in received:
        key = (row["tenant_id"], row["day"], row["currency"])
        ours.setdefault(key, {}).update(orders=int(row["orders"]), gross=int(row["gross"]))
    for row in refunded:
        key = (row["update_tenant"], row["day"], row["update_currency"])
        ours.setdefault(key, {}).update(refunds=int(row["refunds"]), updates=int(row["updates"]))

    differences: list[Difference] = []
    for key in sorted(set(reports) | {k for k in ours if (k[0], k[1]) in report_days}):
        tenant, day, currency = key
        report = reports.get(key)
        mine = ours.get(key, {})
        for metric, column in metrics.items():
            expected = int(report[column]) if report else 0
            actual = mine.get(metric, 0)
            if expected == actual:
                continue
            differences.append(
                Difference(
                    tenant_id=tenant,
                    day=day,
                    currency=currency,
                    key=metric,
                    expected=expected,
                    actual=actual,
                    details={
                        "difference": actual - expected,
                        "reported": report is not None,
                        "report_source": report["report_source"] if report else None,
                        "reported_at": report["last_reported_at"] if report else None,
                        "rastro": mine,
                        "since": since,
                        "until": until,
                    },
                )
            )
    return _finish(
        client, database, ORDERS_VS_REPORTED, differences, run_id=run_id, now=now, write=write
    )


# -- ledger vs orders -----------------------------------------------------------------------------


def reconcile_ledger_vs_orders(
    client: Any,
    database: str,
    *,
    run_id: str,
    now: datetime | None = None,
    ledger_as_of: datetime | None = None,
    write: bool = True,
) -> pl.DataFrame:
    """The ledger against the orders:
    - `accrual_missing:<commission_id>`: a commission of fct_commissions that earns something
      (commission_minor > 0), converted by the ledger's clock (`ledger_as_of`, default `now`:
      pass the dbt var `ledger__as_of` when the ledger runs on a pinned clock), without an
      accrual entry; expected its amount, actual what the ledger accrued (0);
    - `conversion_missing:<commission_id>`: a commission with ledger entries whose conversion
      is not in `conversions` (no version of it was ever received); expected 0 entries,
      actual its entries, its balances in details."""
    check_database_name(database)
    now = _now(now)
    clock = _now(ledger_as_of) if ledger_as_of is not None else now
    unaccrued = _rows(
        client,
        f"""
        SELECT
            toString(commissions.tenant_id) AS tenant_id,
            commissions.commission_id AS commission_id,
            commissions.conversion_id AS conversion_id,
            commissions.order_id AS order_id,
            commissions.affiliate_id AS affiliate_id,
            toString(commissions.currency) AS currency,
            commissions.converted_at AS converted_at,
            commissions.commission_minor AS commission_minor
        FROM {database}.fct_commissions AS commissions
        LEFT ANTI JOIN (
            SELECT DISTINCT toString(tenant_id) AS tenant_id, commission_id
            FROM {database}.fct_ledger_entries
            WHERE entry_type = 'accrual'
        ) AS accruals
            ON accruals.tenant_id = toString(commissions.tenant_id)
            AND accruals.commission_id = commissions.commission_id
        WHERE commissions.commission_minor > 0 AND commissions.converted_at <= {_literal(clock)}
        """,
    )
    orphans = _rows(
        client,
        f"""
        SELECT
            toString(entries.tenant_id) AS tenant_id,
            entries.commission_id AS commission_id,
            any(entries.conversion_id) AS conversion_id,
            any(entries.affiliate_id) AS affiliate_id,
            toString(any(entries.currency)) AS currency,
            count() AS entries,
            groupUniqArray(toString(entries.entry_type)) AS entry_types,
            min(entries.effective_at) AS first_effective_at,
            sum(entries.earned_delta_minor) AS earned_minor,
            sum(entries.pending_delta_minor) AS pending_minor,
            sum(entries.approved_delta_minor) AS approved_minor,
            sum(entries.paid_delta_minor) AS paid_minor
        FROM {database}.fct_ledger_entries AS entries
        LEFT ANTI JOIN (
            SELECT DISTINCT toString(tenant_id) AS tenant_id, conversion_id
            FROM {database}.conversions
        ) AS received
            ON received.tenant_id = toString(entries.tenant_id)
            AND received.conversion_id = entries.conversion_id
        GROUP BY entries.tenant_id, entries.commission_id
        """,
    )
    differences = [
        Difference(
            tenant_id=row["tenant_id"],
            day=row["converted_at"].date(),
            currency=row["currency"],
            key=f"accrual_missing:{row['commission_id']}",
            expected=int(row["commission_minor"]),
            actual=0,
            details={
                "commission_id": row["commission_id"],
                "conversion_id": row["conversion_id"],
                "order_id": row["order_id"],
                "affiliate_id": row["affiliate_id"],
                "converted_at": row["converted_at"],
                "ledger_as_of": clock,
            },
        )
        for row in unaccrued
    ] + [
        Difference(
            tenant_id=row["tenant_id"],
            day=row["first_effective_at"].date(),
            currency=row["currency"],
            key=f"conversion_missing:{row['commission_id']}",
            expected=0,
            actual=int(row["entries"]),
            details={
                "commission_id": row["commission_id"],
                "conversion_id": row["conversion_id"],
                "affiliate_id": row["affiliate_id"],
                "entry_types": sorted(row["entry_types"]),
                "earned_minor": row["earned_minor"],
                "pending_minor": row["pending_minor"],
                "approved_minor": row["approved_minor"],
                "paid_minor": row["paid_minor"],
            },
        )
        for row in orphans
    ]
    return _finish(
        client, database, LEDGER_VS_ORDERS, differences, run_id=run_id, now=now, write=write
    )


# -- event log vs warehouse -----------------------------------------------------------------------


class _Tag(msgspec.Struct):
    """The two fields of a log record this needs; every other field is skipped unparsed."""

    type: str = ""
    tenant_id: str = ""


_tag_decoder = msgspec.json.Decoder(_Tag)


@dataclass
class _Partition:
    """What reading one partition of the log found."""

    name: str
    number: int
    first: Offset  # the first record on disk: older segments were deleted by retention
    clicks: list[tuple[str, int]] = field(default_factory=list)  # (tenant_id, log_offset)
    segment_last: dict[int, int] = field(default_factory=dict)  # seq -> its last log_offset
    undecodable: int = 0
    corrupt: int = 0


def _read_partition(reader: LogReader, name: str) -> _Partition | None:
    """The click records of a partition (None if it has no record), decoding only each
    record's type tag and tenant."""
    offset = Offset.start()
    found: _Partition | None = None
    corrupt = 0
    while True:
        try:
            records = reader.read(name, offset, max_records=_READ_BATCH, max_bytes=64 << 20)
        except CorruptRecord as exc:  # ingest dead-letters it and reads on: so do we
            corrupt += 1
            offset = exc.resume
            continue
        if not records:
            break
        if found is None:
            found = _Partition(name, partition_number(name), records[0].offset)
        for record in records:
            position = record.offset_int()
            found.segment_last[record.segment] = position
            try:
                tag = _tag_decoder.decode(record.payload)
            except msgspec.DecodeError:
                found.undecodable += 1
                continue
            if tag.type == "click":
                found.clicks.append((tag.tenant_id, position))
        offset = records[-1].next_offset
    if found is not None:
        found.corrupt = corrupt
    return found


def _settled_until(partition: _Partition, directory: Path, cutoff: datetime) -> int:
    """The last log_offset of the partition's segments untouched since `cutoff`: ingest has
    had time to read those, whatever the warehouse says (-1: none)."""
    last = -1
    for seq, position in partition.segment_last.items():
        try:
            modified = (directory / segment_name(seq)).stat().st_mtime
        except FileNotFoundError:  # deleted by retention meanwhile: it was consumed
            modified = 0.0
        if modified <= cutoff.timestamp():
            last = max(last, position)
    return last


def reconcile_log_vs_warehouse(
    client: Any,
    database: str,
    event_log_dir: Path | None = None,
    *,
    run_id: str,
    now: datetime | None = None,
    settle: timedelta = timedelta(minutes=10),
    write: bool = True,
) -> pl.DataFrame:
    """Click records in the event log on disk (`event_log_dir`, default the settings') against
    the clicks the warehouse has from the same positions, per partition and tenant.

    Compared per partition: the positions from its oldest segment still on disk up to the
    later of the highest position ingest wrote (to any landing table, or as a dead letter) and
    the end of the last segment nobody wrote to during `settle` before `now` (so a partition
    ingest never read is compared too). Later records are not ingested yet: counted in
    details, never a difference. Expected: the click records in that range; actual: distinct
    log_offset in `clicks` there, plus click records ingest dead-lettered there (both in
    details). Key: the partition (`p-0000`); day: `now`'s."""
    check_database_name(database)
    now = _now(now)
    if event_log_dir is None:
        from rastro.settings import get_settings

        event_log_dir = get_settings().event_log_dir
    root = Path(event_log_dir)
    reader = LogReader(root)
    partitions = [found for name in reader.partitions() if (found := _read_partition(reader, name))]
    if not partitions:
        return _finish(client, database, LOG_VS_WAREHOUSE, [], run_id=run_id, now=now, write=write)

    numbers = ", ".join(str(p.number) for p in partitions)
    logged = " UNION ALL ".join(
        [
            *(
                f"SELECT log_partition, log_offset FROM {database}.{table}"
                f" WHERE log_partition IN ({numbers})"
                for table in _LOGGED_TABLES
            ),
            f"SELECT log_partition, log_offset FROM {database}.dead_letters"
            f" WHERE source = '{DEAD_LETTER_SOURCE}' AND log_partition IN ({numbers})",
        ]
    )
    high_water = {
        int(row["log_partition"]): int(row["high_water"])
        for row in _rows(
            client,
            f"SELECT log_partition, max(log_offset) AS high_water FROM ({logged})"
            " GROUP BY log_partition",
        )
    }
    # The compared range of each partition: [its first record on disk, upper].
    ranges = {
        p.number: (
            p.first.to_int(),
            max(high_water.get(p.number, -1), _settled_until(p, root / p.name, now - settle)),
        )
        for p in partitions
    }
    where = " OR ".join(
        f"(log_partition = {number} AND log_offset BETWEEN {low} AND {upper})"
        for number, (low, upper) in ranges.items()
        if upper >= low
    )
    landed: Counter[tuple[int, str]] = Counter()
    dead: Counter[tuple[int, str]] = Counter()
    if where:
        for counter, sql in (
            (landed, f"SELECT {{columns}} FROM {database}.clicks WHERE {where}"),
            (
                dead,
                f"SELECT {{columns}} FROM {database}.dead_letters WHERE source ="
                f" '{DEAD_LETTER_SOURCE}' AND event_type_guess = 'click' AND ({where})",
            ),
        ):
            columns = "toString(tenant_id) AS tenant_id, log_partition, uniqExact(log_offset) AS n"
            for row in _rows(
                client, sql.format(columns=columns) + " GROUP BY tenant_id, log_partition"
            ):
                counter[(int(row["log_partition"]), row["tenant_id"])] = int(row["n"])

    differences: list[Difference] = []
    for p in partitions:
        upper = ranges[p.number][1]
        expected: Counter[str] = Counter()
        for tenant, position in p.clicks:
            if position <= upper:
                expected[tenant] += 1
        waiting = sum(1 for _, position in p.clicks if position > upper)
        tenants = set(expected) | {t for n, t in [*landed, *dead] if n == p.number}
        for tenant in sorted(tenants):
            actual = landed[(p.number, tenant)] + dead[(p.number, tenant)]
            if actual == expected[tenant]:
                continue
            differences.append(
                Difference(
                    tenant_id=tenant,
                    day=now.date(),
                    currency="",
                    key=p.name,
                    expected=expected[tenant],
                    actual=actual,
                    details={
                        "partition": p.name,
                        "from_offset": p.first.to_str(),
                        "to_offset": Offset.from_int(upper).to_str() if upper >= 0 else None,
                        "ingest_high_water": (
                            Offset.from_int(high_water[p.number]).to_str()
                            if p.number in high_water
                            else None
                        ),
                        "landed": landed[(p.number, tenant)],
                        "dead_lettered": dead[(p.number, tenant)],
                        "clicks_not_ingested_yet": waiting,
                        "undecodable_records": p.undecodable,
                        "corrupt_records": p.corrupt,
                        "event_log_dir": str(root),
                    },
                )
            )
    return _finish(
        client, database, LOG_VS_WAREHOUSE, differences, run_id=run_id, now=now, write=write
    )


def reconcile_all(
    client: Any,
    database: str,
    *,
    run_id: str,
    now: datetime | None = None,
    event_log_dir: Path | None = None,
    ledger_as_of: datetime | None = None,
) -> pl.DataFrame:
    """The three reconciliations, written; their differences in one frame."""
    now = _now(now)
    return pl.concat(
        [
            reconcile_orders_vs_reported(client, database, run_id=run_id, now=now),
            reconcile_ledger_vs_orders(
                client, database, run_id=run_id, now=now, ledger_as_of=ledger_as_of
            ),
            reconcile_log_vs_warehouse(client, database, event_log_dir, run_id=run_id, now=now),
        ]
    )
