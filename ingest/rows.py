"""From validated events to landing-table rows, and from rows to Arrow tables.

A row is a dict keyed by the table's column names (rastro/schema/tables.py); times are
timezone-aware `datetime`s (DateTime64(3, 'UTC')), arrays are lists, `line_items` a list of
tuples in the column's tuple order. `to_arrow` turns one table's rows into a `pyarrow.Table`
column by column, with the types of the table's columns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from rastro.contracts import Click, Conversion, Event, IdentityLink, OrderUpdate, PageEvent
from rastro.eventlog import Offset, partition_number
from rastro.schema import tables

Row = dict[str, Any]
TableRows = dict[str, list[Row]]  # table name -> rows: what flows from to_rows to the sink

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LANDING_TABLES: dict[str, tables.Table] = {
    table.name: table
    for table in (
        tables.CLICKS,
        tables.PAGE_EVENTS,
        tables.CONVERSIONS,
        tables.ORDER_UPDATES,
        tables.IDENTITY_LINKS,
        tables.DEAD_LETTERS,
    )
}
COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(column.name for column in table.columns) for name, table in LANDING_TABLES.items()
}
# What the edge cannot know about a click; ingest.enrich fills them (these are the defaults).
CLICK_ENRICHED_DEFAULTS: dict[str, Any] = {
    "referrer_host": "",
    "browser": "",
    "os": "",
    "device_type": "",
    "paid_click_markers": [],
    "velocity_flags": [],
}
DEAD_LETTER_SOURCE = "eventlog"


def from_millis(ms: int) -> datetime:
    """Epoch milliseconds -> an aware UTC datetime, exactly (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def _base(event: Event, partition: str, offset: Offset) -> Row:
    row = event.model_dump()
    del row["v"], row["type"]
    row["ts"] = from_millis(event.ts)
    row["received_at"] = from_millis(event.received_at)
    row["log_partition"] = partition_number(partition)
    row["log_offset"] = offset.to_int()
    return row


def event_row(event: Event, partition: str, offset: Offset) -> tuple[str, Row]:
    """The landing table of `event` and its row there."""
    row = _base(event, partition, offset)
    if isinstance(event, Click):
        row.update(CLICK_ENRICHED_DEFAULTS)
        row["paid_click_markers"] = []
        row["velocity_flags"] = []
        return tables.CLICKS.name, row
    if isinstance(event, PageEvent):
        row["type"] = row.pop("kind")
        row["properties"] = json.dumps(event.properties, separators=(",", ":"), ensure_ascii=False)
        return tables.PAGE_EVENTS.name, row
    if isinstance(event, Conversion):
        row["line_items"] = [
            (item.sku, "", item.category, item.quantity, item.amount_minor)
            for item in event.line_items
        ]
        row["affiliate_id"] = ""  # only a manual or API credit names the affiliate
        return tables.CONVERSIONS.name, row
    if isinstance(event, OrderUpdate):
        return tables.ORDER_UPDATES.name, row
    if isinstance(event, IdentityLink):
        return tables.IDENTITY_LINKS.name, row
    raise TypeError(f"no landing table for {type(event).__name__}")


_KNOWN_TYPES = frozenset({"click", "page_event", "conversion", "order_update", "identity_link"})


def dead_letter_row(
    payload: bytes, reason: str, partition: str, offset: Offset, now: datetime
) -> Row:
    """A rejected record, kept raw; tenant, type and received_at taken from it when readable."""
    tenant_id, guess, received_at = "", "unknown", now
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("tenant_id"), str):
            tenant_id = data["tenant_id"][:64]
        if data.get("type") in _KNOWN_TYPES:
            guess = data["type"]
        stamp = data.get("received_at")
        if isinstance(stamp, int) and 0 <= stamp < 32503680000000:
            received_at = from_millis(stamp)
    return {
        "tenant_id": tenant_id,
        "received_at": received_at,
        "source": DEAD_LETTER_SOURCE,
        "event_type_guess": guess,
        "reason": reason,
        "payload": payload,
        "log_partition": partition_number(partition),
        "log_offset": offset.to_int(),
    }


# ---- Arrow -------------------------------------------------------------------------------

_SCALARS: dict[str, pa.DataType] = {
    "String": pa.string(),
    "Bool": pa.bool_(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int64": pa.int64(),
    "DateTime64(3, 'UTC')": pa.timestamp("ms", tz="UTC"),
}
_WRAPPED = re.compile(r"^(LowCardinality|Array|Nullable)\((.*)\)$")
_FIELD = re.compile(r"^([a-z_][a-z0-9_]*) (.+)$")
# Raw bytes, stored as they came (a String column holds any bytes).
_OVERRIDES: dict[tuple[str, str], pa.DataType] = {("dead_letters", "payload"): pa.binary()}


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def arrow_type(clickhouse_type: str) -> pa.DataType:
    """The Arrow type ClickHouse reads into `clickhouse_type` (the types the landing tables use)."""
    if clickhouse_type in _SCALARS:
        return _SCALARS[clickhouse_type]
    if clickhouse_type.startswith("Tuple(") and clickhouse_type.endswith(")"):
        fields = []
        for part in _split_top(clickhouse_type[len("Tuple(") : -1]):
            match = _FIELD.match(part)
            if match is None:
                raise ValueError(f"unnamed tuple element in {clickhouse_type!r}")
            fields.append(pa.field(match[1], arrow_type(match[2])))
        return pa.struct(fields)
    match = _WRAPPED.match(clickhouse_type)
    if match is None:
        raise ValueError(f"no Arrow type for ClickHouse type {clickhouse_type!r}")
    inner = arrow_type(match[2])
    return pa.list_(inner) if match[1] == "Array" else inner


SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema(
        [
            pa.field(column.name, _OVERRIDES.get((name, column.name)) or arrow_type(column.type))
            for column in table.columns
        ]
    )
    for name, table in LANDING_TABLES.items()
}


def to_arrow(table: str, rows: Iterable[Row]) -> pa.Table:
    """One table's rows as a pyarrow Table with the table's columns and types."""
    rows = list(rows)
    schema = SCHEMAS[table]
    arrays = [pa.array([row[field.name] for row in rows], type=field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
