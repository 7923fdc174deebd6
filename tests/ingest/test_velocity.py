"""ingest.velocity: sliding-window click counts per address, link and affiliate, flagged on
the click past a limit; directly (`VelocityCounter` on click frames) and inside a Bytewax
flow."""

from __future__ import annotations

import contextlib
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from bytewax.dataflow import Dataflow
from bytewax.inputs import AbortExecution
from bytewax.operators import input as bw_input
from bytewax.operators import output as bw_output
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from ingest.velocity import HOUR, MINUTE, VelocityCounter, VelocityRules, add_velocity

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
OFF = VelocityRules(
    ip_per_minute=None,
    ip_per_hour=None,
    link_per_minute=None,
    link_per_hour=None,
    affiliate_per_minute=None,
    affiliate_per_hour=None,
)


def click(ts: int | datetime, ip: str = "ip1", link: str = "L1", **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tenant_id": "t1",
        "ts": ts,
        "ip_hash": ip,
        "link_code": link,
        "affiliate_id": "a1",
        "campaign_id": "c1",
        "is_bot": False,
        "is_head": False,
        "is_preview": False,
    }
    row.update(fields)
    return row


def only(**limits: int | None) -> VelocityRules:
    return VelocityRules(**{**OFF.__dict__, **limits})


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows)


def flags_of(counter: VelocityCounter, rows: list[dict[str, Any]]) -> list[list[str]]:
    return counter.observe(frame(rows)).to_list()


def test_defaults() -> None:
    rules = VelocityRules()
    assert (rules.ip_per_minute, rules.ip_per_hour) == (20, 200)
    assert (rules.link_per_minute, rules.affiliate_per_minute) == (600, 3000)
    assert rules.link_per_hour is None and rules.affiliate_per_hour is None


def test_ip_per_minute_fires_past_the_limit_not_at_it() -> None:
    counter = VelocityCounter()
    flags = flags_of(counter, [click(T0 + i * 1000) for i in range(21)])
    assert flags[:20] == [[]] * 20
    assert flags[20] == ["ip_1m>20"]


def test_each_rule_fires_past_its_own_limit() -> None:
    cases = {
        "ip_per_minute": ("ip_1m", MINUTE, "ip_hash"),
        "ip_per_hour": ("ip_1h", HOUR, "ip_hash"),
        "link_per_minute": ("link_1m", MINUTE, "link_code"),
        "link_per_hour": ("link_1h", HOUR, "link_code"),
        "affiliate_per_minute": ("affiliate_1m", MINUTE, "affiliate_id"),
        "affiliate_per_hour": ("affiliate_1h", HOUR, "affiliate_id"),
    }
    for field, (name, window, column) in cases.items():
        limit = 5
        counter = VelocityCounter(only(**{field: limit}))
        step = (window - 1) // (limit + 1)  # all limit + 1 clicks inside one window
        rows = [click(T0 + i * step) for i in range(limit + 2)]
        # Vary the other keys so that only `column` repeats.
        for i, row in enumerate(rows):
            for other in ("ip_hash", "link_code", "affiliate_id"):
                if other != column:
                    row[other] = f"{other}-{i}"
        flags = flags_of(counter, rows)
        assert flags[:limit] == [[]] * limit, field
        assert flags[limit] == [f"{name}>{limit}"], field
        assert flags[limit + 1] == [f"{name}>{limit}"], field


def test_window_slides_clicks_expire() -> None:
    counter = VelocityCounter(only(ip_per_minute=3))
    # 3 clicks at 0, 10 s, 20 s; the 4th at 59.999 s is inside (t - 60 s, t]: flagged.
    assert flags_of(counter, [click(T0), click(T0 + 10_000), click(T0 + 20_000)]) == [[]] * 3
    assert flags_of(counter, [click(T0 + 59_999)]) == [["ip_1m>3"]]
    # At 70 s the clicks at 0 and 10 s are out: 20 s, 59.999 s, 70 s = 3 clicks, not flagged.
    assert flags_of(counter, [click(T0 + 70_000)]) == [[]]
    # Exactly one window after a click, that click no longer counts: (t - w, t].
    counter = VelocityCounter(only(ip_per_minute=1))
    assert flags_of(counter, [click(T0), click(T0 + MINUTE)]) == [[], []]
    assert flags_of(counter, [click(T0 + MINUTE + 1)]) == [["ip_1m>1"]]


def test_keys_are_isolated() -> None:
    counter = VelocityCounter(only(ip_per_minute=2, link_per_minute=3))
    rows = [
        click(T0, ip="a", link="x"),
        click(T0 + 1, ip="b", link="y"),
        click(T0 + 2, ip="a", link="z"),
        click(T0 + 3, ip="b", link="x"),
        click(T0 + 4, ip="a", link="x"),  # third from a; second... third on x
        click(T0 + 5, ip="c", link="x"),  # fourth on x
        click(T0 + 6, ip="a", link="w", tenant_id="t2"),  # another tenant's "a"
    ]
    assert flags_of(counter, rows) == [[], [], [], [], ["ip_1m>2"], ["link_1m>3"], []]


def test_per_campaign_thresholds() -> None:
    strict = only(ip_per_minute=2)
    counter = VelocityCounter(only(ip_per_minute=10), per_campaign={"promo": strict})
    rows = [click(T0 + i, campaign_id="promo") for i in range(3)]
    rows += [click(T0 + 10 + i, ip="ip2", campaign_id="c1") for i in range(3)]
    assert flags_of(counter, rows) == [[], [], ["ip_1m>2"], [], [], []]
    # Counts are per address across campaigns; each click is judged by its campaign's limit.
    more = flags_of(counter, [click(T0 + 20, ip="ip2", campaign_id="promo")])
    assert more == [["ip_1m>2"]]
    # A campaign may switch a rule off.
    counter = VelocityCounter(only(ip_per_minute=1), per_campaign={"open": OFF})
    assert flags_of(
        counter, [click(T0, campaign_id="open"), click(T0 + 1, campaign_id="open")]
    ) == [
        [],
        [],
    ]


def test_batches_spanning_windows_and_out_of_order_rows() -> None:
    counter = VelocityCounter(only(ip_per_minute=2))
    # One batch spanning three minutes, rows out of order: judged in ts order.
    rows = [click(T0 + 2 * MINUTE), click(T0), click(T0 + 1), click(T0 + 2), click(T0 + MINUTE + 5)]
    assert flags_of(counter, rows) == [[], [], [], ["ip_1m>2"], []]
    # The next batches continue the same windows: (60.001 s, 120.001 s] holds 65.005 s,
    # 120 s and this one; a minute later only the click itself is left.
    assert flags_of(counter, [click(T0 + 2 * MINUTE + 1)]) == [["ip_1m>2"]]
    assert flags_of(counter, [click(T0 + 3 * MINUTE + 1)]) == [[]]


def test_a_late_click_across_batches_is_counted_in_place() -> None:
    counter = VelocityCounter(only(ip_per_minute=2))
    assert flags_of(counter, [click(T0 + 1000), click(T0 + 30_000)]) == [[], []]
    # Late: the window ending at 10 s holds 1 s and 10 s (30 s is after it).
    assert flags_of(counter, [click(T0 + 10_000)]) == [[]]
    # Late again: 1 s, 10 s and 20 s.
    assert flags_of(counter, [click(T0 + 20_000)]) == [["ip_1m>2"]]
    # And the in-order clicks see the late ones: 10 s, 20 s, 30 s and 40 s.
    assert flags_of(counter, [click(T0 + 40_000)]) == [["ip_1m>2"]]


def test_bots_heads_and_previews_neither_count_nor_get_flags() -> None:
    counter = VelocityCounter(only(ip_per_minute=1))
    rows = [
        click(T0),
        click(T0 + 1, is_bot=True),
        click(T0 + 2, is_head=True),
        click(T0 + 3, is_preview=True),
        click(T0 + 4),
    ]
    assert flags_of(counter, rows) == [[], [], [], [], ["ip_1m>1"]]


def test_missing_keys_are_not_counted() -> None:
    counter = VelocityCounter(only(ip_per_minute=1))
    assert flags_of(counter, [click(T0, ip=""), click(T0 + 1, ip="")]) == [[], []]


def test_several_rules_fire_together() -> None:
    counter = VelocityCounter(only(ip_per_minute=1, ip_per_hour=1, link_per_minute=1))
    assert flags_of(counter, [click(T0), click(T0 + 1)])[1] == ["ip_1m>1", "ip_1h>1", "link_1m>1"]


def test_state_is_bounded_and_idle_keys_expire() -> None:
    counter = VelocityCounter(only(ip_per_minute=3))
    flags_of(counter, [click(T0 + i, ip=f"k{i}") for i in range(1000)])
    flags_of(counter, [click(T0 + i) for i in range(100)])
    per_key = counter.windows["ip_hash"].group_by("key").len()
    assert per_key["len"].max() == 4  # the limit + 1 newest
    assert len(counter) == 1001
    flags_of(counter, [click(T0 + 2 * MINUTE)])
    assert len(counter) == 1  # only the key still inside its window


def test_apply_writes_velocity_flags_and_datetimes_work() -> None:
    counter = VelocityCounter(only(ip_per_minute=1))
    rows = [
        click(datetime(2026, 1, 1, tzinfo=UTC), velocity_flags=["manual"]),
        click(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), velocity_flags=[]),
    ]
    flagged = counter.apply(frame(rows))
    assert flagged["velocity_flags"].to_list() == [["manual"], ["ip_1m>1"]]


def test_snapshot_round_trip_and_reconfigure() -> None:
    counter = VelocityCounter(only(ip_per_minute=2))
    flags_of(counter, [click(T0), click(T0 + 1)])
    restored: VelocityCounter = pickle.loads(pickle.dumps(counter))
    assert flags_of(restored, [click(T0 + 2)]) == [["ip_1m>2"]]
    # Restored under a higher limit: history kept, limit from configuration.
    restored.configure(only(ip_per_minute=3))
    assert flags_of(restored, [click(T0 + 3)]) == [["ip_1m>3"]]
    restored.configure(only(ip_per_minute=10))
    assert flags_of(restored, [click(T0 + 4)]) == [[]]


def test_in_a_bytewax_flow() -> None:
    batches = [
        frame(
            [click(T0 + i) for i in range(3)] + [click(T0 + i, tenant_id="t2") for i in range(2)]
        ),
        frame([click(T0 + 10), click(T0 + 11, ip="other")]),
        frame([click(T0 + MINUTE + 10)]),
        pl.DataFrame(),
    ]
    out: list[pl.DataFrame] = []
    flow = Dataflow("velocity_test")
    stream = bw_input("in", flow, TestingSource(batches))
    flagged = add_velocity("velocity", stream, only(ip_per_minute=2))
    bw_output("out", flagged, TestingSink(out))
    run_main(flow)  # type: ignore[no-untyped-call]

    seen = sorted(
        (
            (row["tenant_id"], row["ts"] - T0, row["ip_hash"], row["velocity_flags"])
            for batch in out
            for row in batch.to_dicts()
        ),
    )
    assert seen == [
        ("t1", 0, "ip1", []),
        ("t1", 1, "ip1", []),
        ("t1", 2, "ip1", ["ip_1m>2"]),
        ("t1", 10, "ip1", ["ip_1m>2"]),
        ("t1", 11, "other", []),
        ("t1", MINUTE + 10, "ip1", []),  # 0..10 ms expired at 60.010 s
        ("t2", 0, "ip1", []),
        ("t2", 1, "ip1", []),
    ]
    assert len(out) == 4  # one batch per tenant per input batch; none for the empty batch


def test_window_state_survives_a_crash_through_bytewax_recovery(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)  # type: ignore[no-untyped-call]
    recovery = RecoveryConfig(str(tmp_path))  # type: ignore[no-untyped-call]
    # Two clicks, a crash, then the third click from the same address in the same minute:
    # flagged only if the window state was snapshotted and restored.
    batches: list[Any] = [
        frame([click(T0)]),
        frame([click(T0 + 1)]),
        TestingSource.ABORT(),
        frame([click(T0 + 2)]),
    ]

    def run(out: list[pl.DataFrame]) -> None:
        flow = Dataflow("velocity_recovery")
        stream = bw_input("in", flow, TestingSource(batches))
        bw_output("out", add_velocity("velocity", stream, only(ip_per_minute=2)), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]

    before: list[pl.DataFrame] = []
    with contextlib.suppress(AbortExecution):
        run(before)
    assert [flags for batch in before for flags in batch["velocity_flags"].to_list()] == [[], []]
    after: list[pl.DataFrame] = []
    run(after)
    assert len(after) in (1, 2)  # resumed after the snapshot, not from the start
    assert [flags for batch in after for flags in batch["velocity_flags"].to_list()][-1] == [
        "ip_1m>2"
    ]
