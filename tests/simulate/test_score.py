"""The scorer: a hand-made truth against fake `fct_attributions` rows in a real database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.simulate.score import Group, format_score, score
from pipelines.simulate.truth import ORDERS_SCHEMA


def truth_row(
    order_id: str, scenarios: list[str], expected: dict[str, float], model: str = "linear"
) -> dict[str, Any]:
    return {
        "tenant_id": "t1",
        "order_id": order_id,
        "scenario": scenarios[0],
        "scenarios": scenarios,
        "fraud_labels": [],
        "cookie_lost": scenarios[0] == "tag_blocked",
        "payable_model": model if expected else "",
        "expected": [{"affiliate_id": a, "share": s} for a, s in expected.items()],
        "converted_at": datetime(2026, 5, 1, tzinfo=UTC),
        "renewal_number": 0,
    }


TRUTH = [
    truth_row("o1", ["direct"], {"ana": 1.0}, "last_click"),  # matches
    truth_row("o2", ["direct", "multi_affiliate"], {"ana": 0.5, "leo": 0.5}),  # share off
    truth_row("o3", ["tag_blocked", "multi_affiliate"], {"ana": 1 / 3, "leo": 2 / 3}),  # matches
    truth_row("o4", ["organic"], {}),  # unattributed, nothing in the warehouse: matches
    truth_row("o5", ["bot"], {}),  # unattributed, but the warehouse credits someone
    truth_row("o6", ["tag_blocked"], {"leo": 1.0}, "last_click"),  # nothing in the warehouse
    truth_row("o7", ["direct"], {"ana": 1.0}, "last_click"),  # the warehouse adds someone
]

# (tenant, order, model, affiliate, share, payable)
ROWS = [
    ("t1", "o1", "last_click", "ana", 1.0, True),
    ("t1", "o1", "first_click", "leo", 1.0, False),  # not payable: ignored
    ("t1", "o2", "linear", "ana", 0.6, True),
    ("t1", "o2", "linear", "leo", 0.4, True),
    ("t1", "o3", "linear", "ana", 1 / 3 + 4e-7, True),  # within 1e-6
    ("t1", "o3", "linear", "leo", 2 / 3 - 4e-7, True),
    ("t1", "o3", "linear", "rui", 0.0, True),  # a zero share is no credit
    ("t1", "o5", "last_click", "ana", 1.0, True),
    ("t1", "o7", "last_click", "ana", 1.0, True),
    ("t1", "o7", "last_click", "leo", 1e-3, True),
    ("t2", "o6", "last_click", "leo", 1.0, True),  # another tenant's order o6
    ("t1", "elsewhere", "last_click", "leo", 1.0, True),  # not a simulated order
]


@pytest.fixture
def truth_dir(tmp_path: Path) -> Path:
    pl.DataFrame(TRUTH, schema=ORDERS_SCHEMA).write_parquet(tmp_path / "orders.parquet")
    return tmp_path


def test_score_against_fct_attributions(client: Any, database: str, truth_dir: Path) -> None:
    client.command(
        "CREATE TABLE fct_attributions (tenant_id String, order_id String, model String, "
        "affiliate_id String, share Float64, is_payable Bool) ENGINE = MergeTree ORDER BY tuple()"
    )
    client.insert(
        "fct_attributions",
        [list(row) for row in ROWS],
        column_names=["tenant_id", "order_id", "model", "affiliate_id", "share", "is_payable"],
    )
    result = score(client, database, truth_dir, examples=3)
    assert (result.total, result.matched) == (7, 3)
    assert result.accuracy == pytest.approx(3 / 7)
    by_name = {g.name: g for g in result.scenarios}
    assert by_name["direct"] == Group("direct", 3, 1)
    assert by_name["multi_affiliate"] == Group("multi_affiliate", 2, 1)
    assert by_name["tag_blocked"] == Group("tag_blocked", 2, 1)
    assert by_name["organic"] == Group("organic", 1, 1)
    assert by_name["bot"] == Group("bot", 1, 0)
    assert {g.name: (g.count, g.matched) for g in result.models} == {
        "linear": (2, 1),
        "last_click": (3, 1),
        "unattributed": (2, 1),
    }
    # Examples come from different scenarios first (direct has two mismatches: one shown).
    assert [m.order_id for m in result.mismatches] == ["o2", "o5", "o6"]
    assert result.mismatches[0].expected == {"ana": 0.5, "leo": 0.5}
    assert result.mismatches[0].got == {"ana": 0.6, "leo": 0.4}
    assert result.mismatches[1].expected == {} and result.mismatches[1].got == {"ana": 1.0}
    assert result.mismatches[2].got == {}

    text = format_score(result)
    assert "3 / 7 orders (42.85%)" in text  # rounded down: never 100% unless all match
    assert ["bot", "1", "0", "0.0%"] in [line.split() for line in text.splitlines()]
    assert "o5 [bot]" in text and "unattributed" in text


def test_a_perfect_score(client: Any, database: str, truth_dir: Path) -> None:
    client.command(
        "CREATE TABLE fct_attributions (tenant_id String, order_id String, affiliate_id String, "
        "share Decimal(18, 12), is_payable UInt8) ENGINE = MergeTree ORDER BY tuple()"
    )
    rows = [
        (r["tenant_id"], r["order_id"], e["affiliate_id"], e["share"], 1)
        for r in TRUTH
        for e in r["expected"]
    ]
    client.insert(
        "fct_attributions",
        rows,
        column_names=["tenant_id", "order_id", "affiliate_id", "share", "is_payable"],
    )
    result = score(client, database, truth_dir)
    assert (result.total, result.matched, result.mismatches) == (7, 7, [])
