"""The dataflow with TestingSource/TestingSink: validation, dead letters, to-frames, enrich."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from ingest.flow import build_flow
from ingest.frames import COLUMNS, Frames, events_frame, frame_of_rows, from_millis, to_arrow
from ingest.sink import SINK_KEY
from ingest.source import Corrupt
from ingest.velocity import VelocityRules
from rastro.contracts import encode
from rastro.eventlog import Offset
from tests.ingest import helpers as h


def run(batches: list[list[Any]], enricher: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Every row the flow sent to the sink, by table, in order (the flow may split a batch's
    tables across sink items: clicks go through the velocity windows on their own)."""
    out: list[tuple[str, Frames]] = []
    run_main(build_flow(TestingSource(batches), TestingSink(out), enricher=enricher))  # type: ignore[no-untyped-call]
    assert all(key == SINK_KEY for key, _ in out)
    merged: dict[str, list[dict[str, Any]]] = {}
    for _, frames in out:
        for table, frame in frames.items():
            merged.setdefault(table, []).extend(frame.to_dicts())
    return merged


def event_row(event: Any, partition: int, offset: Offset) -> tuple[str, dict[str, Any]]:
    frame = events_frame(type(event), [event], [partition], [offset.to_int()])
    [row] = frame.to_dicts()
    return next(t for t, columns in COLUMNS.items() if columns == tuple(frame.columns)), row


def test_bad_records_become_dead_letters_and_the_flow_goes_on() -> None:
    bad_contract = json.loads(encode(h.click(2)))
    bad_contract["currency_x"] = 1
    batch1 = [
        h.record(h.click(1), 10),
        h.record(b"{not json", 20),
        h.record(json.dumps(bad_contract).encode(), 30),
        Corrupt("p-0001", Offset(0, 40), "crc mismatch", b"\x00garbage"),
        h.record(h.click(3), 50),
    ]
    batch2 = [h.record(h.conversion(4), 60)]
    merged = run([batch1, batch2])
    assert [row["event_id"] for row in merged["clicks"]] == ["click-1", "click-3"]
    dead = merged["dead_letters"]
    assert [(d["log_partition"], d["log_offset"]) for d in dead] == [(1, 20), (1, 30), (1, 40)]
    assert dead[0]["payload"] == b"{not json" and "json" in dead[0]["reason"].lower()
    assert dead[0]["event_type_guess"] == "unknown" and dead[0]["tenant_id"] == ""
    assert "currency_x" in dead[1]["reason"]
    assert dead[1]["event_type_guess"] == "click" and dead[1]["tenant_id"] == h.TENANT
    assert dead[1]["received_at"] == from_millis(h.TS + 2 + 5)
    assert dead[2]["payload"] == b"\x00garbage" and "crc mismatch" in dead[2]["reason"]
    assert all(d["source"] == "eventlog" for d in dead)
    assert [row["event_id"] for row in merged["conversions"]] == ["conv-4"]
    for table, table_rows in merged.items():
        for row in table_rows:
            assert tuple(row) == COLUMNS[table] or set(row) == set(COLUMNS[table])
    to_arrow("dead_letters", frame_of_rows("dead_letters", dead))  # the types fit


def test_an_empty_or_all_bad_batch_does_not_stop_the_flow() -> None:
    merged = run([[], [h.record(b"[]", 1)], [h.record(h.click(1), 2)]])
    assert sorted(merged) == ["clicks", "dead_letters"]
    assert len(merged["dead_letters"]) == 1 and len(merged["clicks"]) == 1


@pytest.mark.parametrize("maker", h.MAKERS)
def test_each_event_maps_to_its_table_row(maker: Any) -> None:
    event = maker(7)
    table, row = event_row(event, 3, Offset(2, 96))
    assert set(row) == set(COLUMNS[table])
    assert row["event_id"] == event.event_id
    assert row["ts"] == datetime(2026, 1, 1, 0, 0, 0, 130_000, tzinfo=UTC)
    assert row["received_at"] >= row["ts"]
    assert row["log_partition"] == 3
    assert row["log_offset"] == (2 << 32) | 96
    arrow = to_arrow(table, frame_of_rows(table, [row, row]))
    assert arrow.num_rows == 2 and arrow.column_names == list(COLUMNS[table])


def test_the_mapping_details() -> None:
    _, page = event_row(h.page_event(), 0, Offset(0, 16))
    assert page["type"] == "identify" and json.loads(page["properties"]) == {"plan": "pro", "n": 3}
    _, conv = event_row(h.conversion(), 0, Offset(0, 16))
    assert conv["affiliate_id"] == "" and conv["coupon_codes"] == ["ANA10"]
    items = to_arrow("conversions", frame_of_rows("conversions", [conv]))
    items = items.column("line_items").to_pylist()
    assert items == [
        [
            {
                "sku": "sku-1",
                "product_id": "",
                "category": "shoes",
                "quantity": 2,
                "amount_minor": 12345,
            }
        ]
    ]
    _, clk = event_row(h.click(), 0, Offset(0, 16))
    assert clk["browser"] == "" and clk["velocity_flags"] == [] and clk["is_bot"] is False
    clicks = to_arrow("clicks", frame_of_rows("clicks", [clk]))
    assert clicks.column("ts").to_pylist()[0] == clk["ts"]


def test_enrich_gets_the_click_rows_and_its_result_is_kept() -> None:
    seen: list[list[str]] = []

    def enrich(clicks: pl.DataFrame) -> pl.DataFrame:
        seen.append(clicks["event_id"].to_list())
        return clicks.with_columns(browser=pl.lit("Firefox"))

    merged = run(
        [[h.record(h.click(1), 1), h.record(h.page_event(2), 2), h.record(h.click(3), 3)]], enrich
    )
    assert seen == [["click-1", "click-3"]]
    assert [row["browser"] for row in merged["clicks"]] == ["Firefox", "Firefox"]
    assert merged["page_events"][0]["event_id"] == "page-2"


def test_velocity_flags_reach_the_sink_through_the_whole_flow() -> None:
    out: list[tuple[str, Frames]] = []
    clicks: list[Any] = [h.record(h.click(i, ip_hash="ip-a"), 10 * i) for i in range(4)]
    rules = VelocityRules(ip_per_minute=2, ip_per_hour=None)
    flow = build_flow(
        TestingSource([clicks[:2], clicks[2:]]),
        TestingSink(out),
        enricher=None,
        velocity_rules=rules,
    )
    run_main(flow)  # type: ignore[no-untyped-call]
    rows = [row for _, frames in out if "clicks" in frames for row in frames["clicks"].to_dicts()]
    flags = {row["event_id"]: row["velocity_flags"] for row in rows}
    assert flags == {"click-0": [], "click-1": [], "click-2": ["ip_1m>2"], "click-3": ["ip_1m>2"]}
