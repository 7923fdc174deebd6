"""The ingest dataflow: event-log batches -> validated events -> landing-table frames ->
enriched, velocity-flagged clicks -> ClickHouse.

    read_event_log  EventLogSource (or a TestingSource of record lists)
    validate        decode each payload (rastro.contracts); bad ones become dead letters
    to_frames       the events as one polars frame per landing table (ingest.frames)
    enrich          ingest.enrich.enrich_clicks on the clicks frame
    velocity        the clicks through the per-tenant sliding windows (ingest.velocity)
    key_for_sink    ("warehouse", frames): the sink's single partition
    write_warehouse ClickHouseSink (or a TestingSink)

Every item is a batch (a list of records, then a dict table -> frame), never one event: a
step costs ~7 us per item in Bytewax, and past validation every step works on columns
(docs/ingest.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import bytewax.operators as op
import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from ingest.enrich import enrich_clicks
from ingest.frames import EVENT_TABLES, Frames, Row, dead_letter_row, events_frame, frame_of_rows
from ingest.metrics import IngestMetrics, get_metrics
from ingest.settings import IngestSettings
from ingest.sink import SINK_KEY, SinkItem
from ingest.source import Corrupt, LogBatch
from ingest.velocity import DEFAULT_RULES, VelocityRules, add_velocity
from rastro.contracts import ContractError, Event, decode
from rastro.eventlog import partition_number
from rastro.schema import tables

REASON_LIMIT = 2000

Enricher = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass
class Located:
    """Events of one type, with the log partition number and offset of each."""

    events: list[Event] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


@dataclass
class Validated:
    """One batch after validation: the good events by type, and the dead letters' rows."""

    events: dict[type[Event], Located] = field(default_factory=dict)
    dead_letters: list[Row] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(located.events) for located in self.events.values())


def validate_batch(batch: LogBatch, metrics: IngestMetrics | None = None) -> Validated:
    """Decode each record; invalid JSON, contract violations and corrupt bytes become dead
    letters with the raw payload, the reason, the partition and the offset."""
    out = Validated()
    now = datetime.now(UTC)
    numbers: dict[str, int] = {}  # partition name -> number, once per batch
    for item in batch:
        if isinstance(item, Corrupt):
            out.dead_letters.append(
                dead_letter_row(
                    item.data,
                    f"corrupt record: {item.reason}",
                    item.partition,
                    item.offset.to_int(),
                    now,
                )
            )
            continue
        try:
            event = decode(item.payload)
        except ContractError as exc:
            reason = str(exc)[:REASON_LIMIT]
            out.dead_letters.append(
                dead_letter_row(item.payload, reason, item.partition, item.offset_int(), now)
            )
            continue
        located = out.events.get(type(event))
        if located is None:
            located = out.events[type(event)] = Located()
        number = numbers.get(item.partition)
        if number is None:
            number = numbers[item.partition] = partition_number(item.partition)
        located.events.append(event)
        located.partitions.append(number)
        located.offsets.append(item.offset_int())
    if metrics is not None:
        metrics.count_batch(len(batch), len(out), len(out.dead_letters))
        metrics.maybe_log()
    return out


def to_frames(validated: Validated) -> Frames:
    """Each type's events as its landing table's frame; dead letters as `dead_letters`."""
    frames: Frames = {
        EVENT_TABLES[kind]: events_frame(kind, located.events, located.partitions, located.offsets)
        for kind, located in validated.events.items()
    }
    if validated.dead_letters:
        frames[tables.DEAD_LETTERS.name] = frame_of_rows(
            tables.DEAD_LETTERS.name, validated.dead_letters
        )
    return frames


def enrich_frames(frames: Frames, enricher: Enricher | None) -> Frames:
    clicks = frames.get(tables.CLICKS.name)
    if enricher is not None and clicks is not None:
        frames[tables.CLICKS.name] = enricher(clicks)
    return frames


def _clicks_of(frames: Frames) -> pl.DataFrame | None:
    return frames.get(tables.CLICKS.name)


def _as_clicks(clicks: pl.DataFrame) -> Frames:
    return {tables.CLICKS.name: clicks}


def _without_clicks(frames: Frames) -> Frames:
    return {table: frame for table, frame in frames.items() if table != tables.CLICKS.name}


def build_flow(
    source: Source[LogBatch],
    sink: Sink[SinkItem],
    *,
    settings: IngestSettings | None = None,
    enricher: Enricher | None = enrich_clicks,
    velocity_rules: VelocityRules = DEFAULT_RULES,
) -> Dataflow:
    """The dataflow from `source` (items: lists of log records) to `sink` (items:
    `("warehouse", {table: frame})`). Tests may pass `enricher=None` to skip enrichment."""
    del settings  # the batching knobs live in the source and sink; kept for a stable signature
    metrics = get_metrics()

    flow = Dataflow("rastro_ingest")
    batches = op.input("read_event_log", flow, source)
    validated = op.map("validate", batches, lambda batch: validate_batch(batch, metrics))
    frames = op.map("to_frames", validated, to_frames)
    enriched = op.map("enrich", frames, lambda batch: enrich_frames(batch, enricher))
    # Velocity windows need every click of a tenant in one place: the clicks leave the batch,
    # go through the stateful windows (keyed by tenant), and join the other tables again.
    clicks = op.filter_map("clicks_only", enriched, _clicks_of)
    flagged = op.map("as_click_table", add_velocity("velocity", clicks, velocity_rules), _as_clicks)
    others = op.map("without_clicks", enriched, _without_clicks)
    merged = op.merge("merge_tables", flagged, others)
    non_empty = op.filter("drop_empty", merged, bool)
    keyed = op.map("key_for_sink", non_empty, lambda batch: (SINK_KEY, batch))
    op.output("write_warehouse", keyed, sink)
    return flow
