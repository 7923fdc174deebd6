"""How close the warehouse's attribution is to the truth: the simulator's expected payable
credit per order against `fct_attributions` (its payable rows: one per conversion per
credited affiliate).

An order matches when the warehouse credits the same set of affiliates as the truth, each
share within `TOLERANCE`; an order the truth leaves unattributed matches when the warehouse
has no payable row for it. Shares of zero are no credit on either side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

TOLERANCE = 1e-6
_ZERO = 1e-12
_KEY = ["tenant_id", "order_id"]
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Group:
    """Orders of one scenario (or one payable model): how many, how many matched."""

    name: str
    count: int
    matched: int

    @property
    def share(self) -> float:
        return self.matched / self.count if self.count else 1.0


@dataclass(frozen=True)
class Mismatch:
    tenant_id: str
    order_id: str
    scenario: str
    expected: dict[str, float]  # affiliate id -> share; empty: unattributed
    got: dict[str, float]


@dataclass(frozen=True)
class Score:
    total: int
    matched: int
    scenarios: list[Group]  # an order counts in each of its scenarios
    models: list[Group]  # by the truth's payable model ("unattributed": none)
    mismatches: list[Mismatch]  # examples, a few scenarios' worth

    @property
    def accuracy(self) -> float:
        return self.matched / self.total if self.total else 1.0


def load_truth(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "orders.parquet")


def fetch_credits(client: Any, database: str, tenant_ids: list[str]) -> pl.DataFrame:
    """The payable rows of `fct_attributions` for these tenants."""
    if not _DATABASE.match(database):
        raise ValueError(f"not a database name: {database!r}")
    result = client.query(
        "SELECT tenant_id, order_id, affiliate_id, toFloat64(share) AS share "
        f"FROM {database}.fct_attributions "
        "WHERE is_payable AND tenant_id IN {tenants:Array(String)}",
        parameters={"tenants": tenant_ids},
    )
    return pl.DataFrame(
        result.result_rows,
        schema={"tenant_id": pl.String, "order_id": pl.String, "affiliate_id": pl.String,
                "share": pl.Float64},
        orient="row",
    )  # fmt: skip


def _credits(frame: pl.DataFrame) -> pl.DataFrame:
    """(tenant, order, affiliate, share), one row per credited affiliate of an order."""
    return (
        frame.filter(pl.col("share").abs() > _ZERO)
        .group_by([*_KEY, "affiliate_id"])
        .agg(pl.col("share").sum())
    )


def compare(truth: pl.DataFrame, got: pl.DataFrame, examples: int = 10) -> Score:
    """Score the warehouse's payable credits `got` (tenant_id, order_id, affiliate_id,
    share) against the truth's orders (`orders.parquet`)."""
    expected = _credits(
        truth.select(*_KEY, "expected").explode("expected").unnest("expected").drop_nulls()
    )
    got = _credits(got.join(truth.select(_KEY), on=_KEY, how="semi"))
    both = expected.join(got, on=[*_KEY, "affiliate_id"], how="full", coalesce=True, suffix="_got")
    wrong = (
        both.filter(
            pl.col("share").is_null()
            | pl.col("share_got").is_null()
            | ((pl.col("share") - pl.col("share_got")).abs() > TOLERANCE)
        )
        .select(_KEY)
        .unique()
    )
    scored = truth.join(wrong.with_columns(pl.lit(False).alias("matched")), on=_KEY, how="left")
    scored = scored.with_columns(
        pl.col("matched").fill_null(True),
        pl.when(pl.col("payable_model") == "")
        .then(pl.lit("unattributed"))
        .otherwise(pl.col("payable_model"))
        .alias("model"),
    )
    return Score(
        total=scored.height,
        matched=int(scored["matched"].sum()),
        scenarios=_groups(scored.explode("scenarios"), "scenarios"),
        models=_groups(scored, "model"),
        mismatches=_examples(scored.filter(~pl.col("matched")), expected, got, examples),
    )


def _groups(scored: pl.DataFrame, column: str) -> list[Group]:
    table = (
        scored.group_by(column)
        .agg(pl.len().alias("count"), pl.col("matched").sum().alias("matched"))
        .sort(["count", column], descending=[True, False])
    )
    return [
        Group(str(name), int(count), int(matched))
        for name, count, matched in table.select(column, "count", "matched").iter_rows()
    ]


def _examples(
    wrong: pl.DataFrame, expected: pl.DataFrame, got: pl.DataFrame, count: int
) -> list[Mismatch]:
    """Up to `count` mismatched orders, taken in turn from each scenario (the scenario with
    the most mismatches first), so that one kind of error does not hide the others."""
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in wrong.sort(_KEY).iter_rows(named=True):
        by_scenario.setdefault(row["scenario"], []).append(row)
    queues = sorted(by_scenario.values(), key=len, reverse=True)
    picked: list[dict[str, Any]] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))

    def shares(frame: pl.DataFrame, tenant_id: str, order_id: str) -> dict[str, float]:
        rows = frame.filter((pl.col("tenant_id") == tenant_id) & (pl.col("order_id") == order_id))
        return {str(a): float(s) for a, s in zip(rows["affiliate_id"], rows["share"], strict=True)}

    return [
        Mismatch(
            row["tenant_id"],
            row["order_id"],
            row["scenario"],
            shares(expected, row["tenant_id"], row["order_id"]),
            shares(got, row["tenant_id"], row["order_id"]),
        )
        for row in picked
    ]


def score(client: Any, database: str, out: Path, examples: int = 10) -> Score:
    """Score the truth under `out` against `database.fct_attributions`."""
    truth = load_truth(out)
    tenants = sorted(set(truth["tenant_id"].to_list()))
    return compare(truth, fetch_credits(client, database, tenants), examples)


def _credit_text(shares: dict[str, float]) -> str:
    if not shares:
        return "unattributed"
    return ", ".join(f"{a[-8:]}={s:.6f}" for a, s in sorted(shares.items()))


def _percent(matched: int, count: int, decimals: int) -> str:
    """Rounded down, in integers: 2,380 of 2,381 must not read 100.0%."""
    if not count:
        return "-"
    units = matched * 100 * 10**decimals // count
    whole, fraction = divmod(units, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d}%"


def format_score(score: Score) -> str:
    """The score as text: overall, per scenario, per payable model, mismatch examples."""
    lines = [
        f"attribution accuracy: {score.matched:,} / {score.total:,} orders "
        f"({_percent(score.matched, score.total, 2)}) match the truth "
        f"(shares within {TOLERANCE:g})",
        "",
    ]
    for title, groups in (("scenario", score.scenarios), ("payable model", score.models)):
        width = max([len(title), *(len(g.name) for g in groups)])
        lines.append(f"{title:<{width}}  {'orders':>8}  {'matched':>8}  {'%':>7}")
        for g in groups:
            share = _percent(g.matched, g.count, 1)
            lines.append(f"{g.name:<{width}}  {g.count:>8,}  {g.matched:>8,}  {share:>7}")
        lines.append("")
    if score.mismatches:
        lines.append("mismatches (affiliate ids shortened to their last 8 characters):")
        for m in score.mismatches:
            lines.append(f"  {m.order_id} [{m.scenario}]")
            lines.append(f"    expected: {_credit_text(m.expected)}")
            lines.append(f"    got:      {_credit_text(m.got)}")
    return "\n".join(lines)
