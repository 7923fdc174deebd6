"""From validated events to landing-table frames, and from frames to Arrow.

A batch moves through the flow as `Frames`: one polars DataFrame per landing table, with that
table's columns (rastro/schema/tables.py) in order and the polars types of the Arrow types
ClickHouse reads into them. Every step after validation works on whole columns, never on one
event at a time: that is what keeps Python's per-object cost out of the per-event cost
(docs/ingest.md has the figures).

Times are `Datetime("ms", "UTC")` built from the log's epoch milliseconds; arrays are lists;
`conversions.line_items` a list of structs in the column's tuple order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from rastro.contracts import Click, Conversion, Event, IdentityLink, OrderUpdate, PageEvent
from rastro.eventlog import partition_number
from rastro.schema import tables

Row = dict[str, Any]
Frames = dict[str, pl.DataFrame]  # table name -> rows for it: what flows from validation on

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
EVENT_TABLES: dict[type[Event], str] = {
    Click: tables.CLICKS.name,
    PageEvent: tables.PAGE_EVENTS.name,
    Conversion: tables.CONVERSIONS.name,
    OrderUpdate: tables.ORDER_UPDATES.name,
    IdentityLink: tables.IDENTITY_LINKS.name,
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


# ---- Arrow and polars types ----------------------------------------------------------------

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


ARROW_SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema(
        [
            pa.field(column.name, _OVERRIDES.get((name, column.name)) or arrow_type(column.type))
            for column in table.columns
        ]
    )
    for name, table in LANDING_TABLES.items()
}
SCHEMAS: dict[str, pl.Schema] = {
    name: pl.from_arrow(schema.empty_table()).schema  # type: ignore[union-attr]
    for name, schema in ARROW_SCHEMAS.items()
}


def to_arrow(table: str, frame: pl.DataFrame) -> pa.Table:
    """A table's frame as Arrow with the exact types of the table's columns (polars hands
    out large strings and lists; the cast makes them the plain ones ClickHouse maps)."""
    return frame.select(COLUMNS[table]).to_arrow().cast(ARROW_SCHEMAS[table])


def frame_of_rows(table: str, rows: Iterable[Row]) -> pl.DataFrame:
    """Rows (dicts keyed by column name; times as datetimes or epoch ms) as a table's frame."""
    schema = SCHEMAS[table]
    rows = list(rows)
    return pl.DataFrame(
        {name: [row[name] for row in rows] for name in schema.names()}, schema=schema
    )


def lists_at(name: str, length: int, index: pl.Series, lists: pl.Series) -> pl.Series:
    """A List(String) column of `length` rows: `lists[i]` at row `index[i]`, [] elsewhere
    (polars cannot scatter into a list column, so the few rows that have lists are joined)."""
    found = pl.DataFrame({"index": index.cast(pl.UInt32), "lists": lists})
    return (
        pl.DataFrame({"index": pl.arange(0, length, dtype=pl.UInt32, eager=True)})
        .join(found, on="index", how="left", maintain_order="left")
        .select(pl.col("lists").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        .to_series()
        .alias(name)
    )


# ---- events -> frames ----------------------------------------------------------------------

_FIELDS: dict[type[Event], tuple[str, ...]] = {
    kind: tuple(name for name in kind.__struct_fields__ if name != "v") for kind in EVENT_TABLES
}
_json = msgspec.json.Encoder()


def _line_items(conversion: Conversion) -> list[Row]:
    return [
        {
            "sku": item.sku,
            "product_id": "",
            "category": item.category,
            "quantity": item.quantity,
            "amount_minor": item.amount_minor,
        }
        for item in conversion.line_items
    ]


def events_frame(
    kind: type[Event], events: Sequence[Event], partitions: Sequence[int], offsets: Sequence[int]
) -> pl.DataFrame:
    """Events of one type (with each one's log partition number and offset) as the frame of
    their landing table, column by column."""
    table = EVENT_TABLES[kind]
    schema = SCHEMAS[table]
    columns: dict[str, list[Any]] = {
        name: [getattr(event, name) for event in events] for name in _FIELDS[kind]
    }
    if kind is PageEvent:
        columns["type"] = columns.pop("kind")
        columns["properties"] = [_json.encode(p).decode() for p in columns["properties"]]
    elif kind is Conversion:
        columns["line_items"] = [_line_items(event) for event in events]  # type: ignore[arg-type]
    columns["log_partition"] = list(partitions)
    columns["log_offset"] = list(offsets)
    frame = pl.DataFrame(columns, schema={name: schema[name] for name in columns})
    missing = [name for name in COLUMNS[table] if name not in columns]
    if missing:
        frame = frame.with_columns(
            pl.lit(_default(table, name), dtype=schema[name]).alias(name) for name in missing
        )
    return frame.select(COLUMNS[table])


def _default(table: str, column: str) -> Any:
    if table == tables.CLICKS.name:
        return CLICK_ENRICHED_DEFAULTS[column]
    if (table, column) == (tables.CONVERSIONS.name, "affiliate_id"):
        return ""  # only a manual or API credit names the affiliate
    raise KeyError(f"{table}.{column} has no value from the event and no default")


# ---- dead letters ------------------------------------------------------------------------

_KNOWN_TYPES = frozenset(kind.__struct_config__.tag for kind in EVENT_TABLES)


def dead_letter_row(payload: bytes, reason: str, partition: str, offset: int, now: datetime) -> Row:
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
        "log_offset": offset,
    }
