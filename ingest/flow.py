"""The ingest dataflow: event-log batches -> validated events -> landing-table rows ->
enriched clicks -> ClickHouse.

    read_event_log  EventLogSource (or a TestingSource of record lists)
    validate        decode each payload (rastro.contracts); bad ones become dead letters
    to_rows         each event to its landing table's row; dead letters to dead_letters
    enrich          ingest.enrich.enrich_batch on the click rows (when that module exists)
    key_for_sink    ("warehouse", rows): the sink's single partition
    write_warehouse ClickHouseSink (or a TestingSink)

Every item is a batch (a list of records, then a dict table -> rows), never one event: a
step costs ~7 µs per item in Bytewax (docs/ingest.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import ValidationError

from ingest.enrich import enrich_batch
from ingest.metrics import IngestMetrics, get_metrics
from ingest.rows import Row, TableRows, dead_letter_row, event_row
from ingest.settings import IngestSettings
from ingest.sink import SINK_KEY, SinkItem
from ingest.source import Corrupt, LogBatch
from ingest.velocity import DEFAULT_RULES, VelocityRules, add_velocity
from rastro.contracts import Event, decode
from rastro.eventlog import Offset
from rastro.schema import tables

log = logging.getLogger("rastro.ingest")

REASON_LIMIT = 2000
METRICS_INTERVAL_S = 10.0

Enricher = Callable[[list[Row]], list[Row]]


@dataclass
class Validated:
    """One batch after validation: the good events with where they came from, and the dead
    letters' rows."""

    events: list[tuple[Event, str, Offset]] = field(default_factory=list)
    dead_letters: list[Row] = field(default_factory=list)


def _reason(exc: ValidationError) -> str:
    errors = [
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return ("; ".join(errors) or str(exc))[:REASON_LIMIT]


def validate_batch(batch: LogBatch, metrics: IngestMetrics | None = None) -> Validated:
    """Decode each record; invalid JSON, contract violations and corrupt bytes become dead
    letters with the raw payload, the reason, the partition and the offset."""
    out = Validated()
    now = datetime.now(UTC)
    for item in batch:
        if isinstance(item, Corrupt):
            out.dead_letters.append(
                dead_letter_row(
                    item.data, f"corrupt record: {item.reason}", item.partition, item.offset, now
                )
            )
            continue
        try:
            event = decode(item.payload)
        except ValidationError as exc:
            out.dead_letters.append(
                dead_letter_row(item.payload, _reason(exc), item.partition, item.offset, now)
            )
            continue
        out.events.append((event, item.partition, item.offset))
    if metrics is not None:
        metrics.count_batch(len(batch), len(out.events), len(out.dead_letters))
        metrics.maybe_log()
    return out


def to_rows(validated: Validated) -> TableRows:
    """Each event to its landing table's row; dead letters to `dead_letters`."""
    rows: TableRows = {}
    for event, partition, offset in validated.events:
        table, row = event_row(event, partition, offset)
        rows.setdefault(table, []).append(row)
    if validated.dead_letters:
        rows[tables.DEAD_LETTERS.name] = validated.dead_letters
    return rows


def enrich_rows(rows: TableRows, enricher: Enricher | None) -> TableRows:
    clicks = rows.get(tables.CLICKS.name)
    if enricher is not None and clicks:
        rows[tables.CLICKS.name] = enricher(clicks)
    return rows


def _clicks_of(rows: TableRows) -> list[Row]:
    return rows.get(tables.CLICKS.name, [])


def _as_clicks(clicks: list[Row]) -> TableRows:
    return {tables.CLICKS.name: clicks}


def _without_clicks(rows: TableRows) -> TableRows:
    return {table: batch for table, batch in rows.items() if table != tables.CLICKS.name}


def build_flow(
    source: Source[LogBatch],
    sink: Sink[SinkItem],
    *,
    settings: IngestSettings | None = None,
    enricher: Enricher | None = enrich_batch,
    velocity_rules: VelocityRules = DEFAULT_RULES,
) -> Dataflow:
    """The dataflow from `source` (items: lists of log records) to `sink` (items:
    `("warehouse", {table: rows})`). Tests may pass `enricher=None` to skip enrichment."""
    del settings  # the batching knobs live in the source and sink; kept for a stable signature
    metrics = get_metrics()

    flow = Dataflow("rastro_ingest")
    batches = op.input("read_event_log", flow, source)
    validated = op.map("validate", batches, lambda batch: validate_batch(batch, metrics))
    rows = op.map("to_rows", validated, to_rows)
    enriched = op.map("enrich", rows, lambda batch: enrich_rows(batch, enricher))
    # Velocity windows need every click of a tenant in one place: the clicks leave the batch,
    # go through the stateful windows (keyed by tenant), and join the other tables again.
    clicks = op.filter("has_clicks", op.map("clicks_only", enriched, _clicks_of), bool)
    flagged = op.map("as_click_table", add_velocity("velocity", clicks, velocity_rules), _as_clicks)
    others = op.map("without_clicks", enriched, _without_clicks)
    merged = op.merge("merge_tables", flagged, others)
    non_empty = op.filter("drop_empty", merged, bool)
    keyed = op.map("key_for_sink", non_empty, lambda batch: (SINK_KEY, batch))
    op.output("write_warehouse", keyed, sink)
    return flow
