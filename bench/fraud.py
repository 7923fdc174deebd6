"""Fraud batch detection against labelled fraud (issue 6, item 5): the traffic simulator's
journeys with its fraud (labels in fraud.parquet) into the event log, the ingest job into a
fresh embedded warehouse, `dbt build`, then `pipelines.fraud` with its default thresholds,
and each rule's precision and recall against the labels. Goal: 95% overall.

The unit is the rule's subject (docs/fraud.md, "Evaluation"):
- commission rules (self_referral, fast_ctit, coupon_leakage): a commission (one affiliate's
  credit on one order) is a positive when the truth labels the order with that fraud
  committed by that affiliate; renewals carry their first payment's labels;
- affiliate rules: an affiliate is a positive when the simulator gave it the role the rule is
  for (a click spammer whose spam earned, a cookie stuffer, a buyer of clicks, a faker of
  orders, a payout ring member). A flag on an affiliate with another role whose traffic the
  rule measures (a stuffer's server days are click outliers) is correct, not counted in
  recall.
Overall: every (rule, subject) flagged, micro-averaged. The commissions that affiliate flags
hold are reported beside, not scored (they are the suspects of a pattern, not findings).

Run from the repository root: `.venv/bin/python -m bench.fraud [--conversions 20000]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/fraud.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl

from bench.simulated import simulated_warehouse
from bench.warehouse import machine
from pipelines.fraud import Thresholds, record
from pipelines.fraud.inputs import Inputs, fetch
from pipelines.fraud.rules import AFFILIATE_RULES, COMMISSION_RULES, apply
from pipelines.simulate.run import DEFAULT_END

DATABASE = "bench_fraud"
GOAL = 0.95

# The role (fraud.parquet, subject "affiliate") each affiliate rule is for, and the other
# roles whose traffic it measures too (a correct flag, not counted in its recall).
ROLE = {
    "late_conversions": "click_spam",
    "cookie_stuffing": "cookie_stuffing",
    "click_outlier": "click_burst",
    "conversion_rate_outlier": "conversion_burst",
    "shared_payout_details": "shared_payout_details",
}
ALSO = {
    # Stuffed cookies also credit sales long after a click the buyer never made.
    "late_conversions": ("cookie_stuffing",),
    "click_outlier": ("cookie_stuffing", "conversion_burst"),
}
# A click spammer is a positive when its spam earned: this share of its first-payment
# commissions credits orders its spam touched (short windows and last click leave spam
# nothing: Mercado Sul's 7 days, Loja Verde's last click).
SPAM_EARNED_SHARE = 0.2


@dataclass(frozen=True)
class Tally:
    rule: str
    unit: str
    flagged: int
    correct: int  # flagged subjects that are positives or carry an accepted role
    positives: int
    found: int  # positives flagged

    @property
    def precision(self) -> float:
        return self.correct / self.flagged if self.flagged else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.positives if self.positives else 1.0


def _key(frame: pl.DataFrame, *columns: str) -> set[tuple[Any, ...]]:
    return set(frame.select(columns).iter_rows())


def evaluate(
    flags: pl.DataFrame,
    inputs: Inputs,
    labels: pl.DataFrame,
    orders: pl.DataFrame,
    thresholds: Thresholds,
) -> tuple[list[Tally], dict[str, Any]]:
    """Each rule's tally of `flags` against `labels` (fraud.parquet) over the subjects
    judged (`inputs`); `orders`: (conversion_id, order_id, scenarios), the scenarios from
    orders.parquet."""
    notes: dict[str, Any] = {}
    judged = inputs.commissions.join(
        orders.select("conversion_id", "order_id", "scenarios"), on="conversion_id", how="left"
    )
    order_labels = labels.filter(pl.col("subject") == "order")
    tallies = []
    for rule in COMMISSION_RULES:
        truth = judged.join(
            order_labels.filter(pl.col("label") == rule).select("order_id", "affiliate_id"),
            on=["order_id", "affiliate_id"],
            how="semi",
        )
        if rule == "coupon_leakage" and not thresholds.coupon_leakage_without_clicks:
            # A code typed with no click at all: leaked or posted, nothing tells them apart.
            clickless = pl.col("scenarios").list.contains("coupon_only")
            notes["coupon_leakage_without_clicks"] = truth.filter(clickless).height
            truth = truth.filter(~clickless)
        positives = _key(truth, "commission_id")
        got = _key(
            flags.filter((pl.col("rule") == rule) & (pl.col("subject_kind") == "commission")),
            "subject_id",
        )
        hits = len(got & positives)
        tallies.append(Tally(rule, "commission", len(got), hits, len(positives), hits))

    roles = labels.filter(pl.col("subject") == "affiliate")
    spam = _spam_that_earned(judged, order_labels)
    notes["spammers"] = spam
    for rule in AFFILIATE_RULES:
        wanted = roles.filter(pl.col("label") == ROLE[rule])
        if rule == "late_conversions":
            earned = {a for a, share in spam.items() if share >= SPAM_EARNED_SHARE}
            wanted = wanted.filter(pl.col("affiliate_id").is_in(sorted(earned)))
        positives = _key(wanted, "tenant_id", "affiliate_id")
        accepted = positives | _key(
            roles.filter(pl.col("label").is_in([ROLE[rule], *ALSO.get(rule, ())])),
            "tenant_id",
            "affiliate_id",
        )
        got = _key(
            flags.filter((pl.col("rule") == rule) & (pl.col("subject_kind") == "affiliate")),
            "tenant_id",
            "subject_id",
        )
        tallies.append(
            Tally(
                rule,
                "affiliate",
                len(got),
                len(got & accepted),
                len(positives),
                len(got & positives),
            )
        )

    # The commissions affiliate flags hold: how many credit an order labelled with a fraud of
    # that affiliate, or belong to an affiliate with a fraud role.
    held = flags.filter(
        pl.col("rule").is_in(list(AFFILIATE_RULES)) & (pl.col("subject_kind") == "commission")
    ).join(
        judged.select("commission_id", "order_id"), left_on="subject_id", right_on="commission_id"
    )
    labelled = held.join(order_labels, on=["order_id", "affiliate_id"], how="semi")
    of_roles = held.join(roles, on=["tenant_id", "affiliate_id"], how="semi")
    notes["held_by_affiliate_rules"] = (held.height, labelled.height, of_roles.height)
    return tallies, notes


def _spam_that_earned(judged: pl.DataFrame, order_labels: pl.DataFrame) -> dict[str, float]:
    """Per click spammer: the share of its first-payment commissions on orders its spam
    touched."""
    spammers = order_labels.filter(pl.col("label") == "click_spam")["affiliate_id"].unique()
    firsts = judged.filter(
        (pl.col("renewal_number") == 0) & pl.col("affiliate_id").is_in(spammers.to_list())
    )
    spammed = firsts.join(
        order_labels.filter(pl.col("label") == "click_spam").select("order_id", "affiliate_id"),
        on=["order_id", "affiliate_id"],
        how="semi",
    )
    counts = firsts.group_by("affiliate_id").len()
    hits = dict(spammed.group_by("affiliate_id").len().iter_rows())
    return {a: hits.get(a, 0) / n for a, n in counts.iter_rows()}


def overall(tallies: list[Tally]) -> Tally:
    return Tally(
        "overall",
        "(rule, subject)",
        sum(t.flagged for t in tallies),
        sum(t.correct for t in tallies),
        sum(t.positives for t in tallies),
        sum(t.found for t in tallies),
    )


def format_tallies(tallies: list[Tally]) -> str:
    lines = [
        f"{'rule':<25} {'unit':<16} {'flagged':>8} {'correct':>8} {'labelled':>9} "
        f"{'found':>6} {'precision':>10} {'recall':>8}"
    ]
    for t in [*tallies, overall(tallies)]:
        lines.append(
            f"{t.rule:<25} {t.unit:<16} {t.flagged:>8,} {t.correct:>8,} {t.positives:>9,} "
            f"{t.found:>6,} {t.precision:>10.1%} {t.recall:>8.1%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--conversions", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a threshold for the run (a JSON value): --set late_after_hours=168",
    )
    args = parser.parse_args(argv)
    try:
        overrides = {name: json.loads(value) for name, value in (s.split("=", 1) for s in args.set)}
        thresholds = Thresholds.from_mapping(overrides)
    except ValueError as error:
        parser.error(str(error))

    info = machine()
    as_of = DEFAULT_END  # the simulated period's end: every conversion is judged
    with simulated_warehouse(DATABASE, args.conversions, args.seed) as simulated:
        client, summary = simulated.client, simulated.summary
        simulated_s, built = simulated.simulate_s, simulated.build_s
        started = time.monotonic()
        inputs = fetch(client, DATABASE, as_of, thresholds)
        fetched = time.monotonic() - started
        started = time.monotonic()
        flags = apply(inputs, thresholds)
        ruled = time.monotonic() - started
        started = time.monotonic()
        first = record(client, DATABASE, flags, "bench-1")
        again = record(client, DATABASE, apply(inputs, thresholds), "bench-2")
        recorded = time.monotonic() - started

        labels = pl.read_parquet(summary.out / "fraud.parquet")
        truth = pl.read_parquet(summary.out / "orders.parquet").select("order_id", "scenarios")
        ids = pl.from_arrow(
            client.query_arrow(
                f"SELECT conversion_id, order_id FROM {DATABASE}.int_conversions__current",
            )
        )
        assert isinstance(ids, pl.DataFrame)
        orders = ids.join(truth, on="order_id", how="left")
        tallies, notes = evaluate(flags, inputs, labels, orders, thresholds)

    print("\nmachine")
    for key, value in info.items():
        print(f"  {key:<19} {value}")
    print(
        f"\nsimulate {simulated_s:.1f} s, ingest + dbt build {built:.1f} s; fraud: fetch "
        f"{fetched:.1f} s, rules {ruled:.1f} s, record (twice) {recorded:.1f} s"
    )
    changed = {
        f.name: getattr(thresholds, f.name)
        for f in fields(thresholds)
        if getattr(thresholds, f.name) != getattr(Thresholds(), f.name)
    }
    print(f"thresholds: {'defaults' + (f', except {changed}' if changed else '')}")
    print(
        f"as of {as_of.isoformat()}, lookback {thresholds.lookback_days} days: "
        f"{inputs.commissions.height:,} commissions judged, {flags.height:,} flags "
        f"({_by_kind(flags)})"
    )
    print(
        f"recorded: {first.flags:,} flags, {first.holds:,} holds; second run: "
        f"{again.flags:,} flags, {again.holds:,} new holds, {again.holds_existing:,} already held"
    )
    print("\nprecision and recall per rule, against the simulator's labels (unit: the subject)")
    print(format_tallies(tallies))
    _print_notes(notes)
    total = overall(tallies)
    met = total.precision >= GOAL and total.recall >= GOAL
    print(f"\ngoal {GOAL:.0%} precision and recall overall: {'met' if met else 'NOT met'}")
    return 0


def _by_kind(flags: pl.DataFrame) -> str:
    counts = dict(flags.group_by("subject_kind").len().iter_rows())
    return ", ".join(f"{n:,} on {kind}s" for kind, n in sorted(counts.items()))


def _print_notes(notes: Mapping[str, Any]) -> None:
    held, labelled, of_roles = notes["held_by_affiliate_rules"]
    print(
        f"\ncommissions held by affiliate flags (not scored): {held:,}; {labelled:,} on orders "
        f"labelled with that affiliate's fraud, {of_roles:,} of affiliates with a fraud role"
    )
    if "coupon_leakage_without_clicks" in notes:
        print(
            f"coupon_leakage: {notes['coupon_leakage_without_clicks']:,} labelled leaks with no "
            "click at all are not counted (off by default: nothing in the data tells a leaked "
            "code from a posted one)"
        )
    spam = ", ".join(f"...{a[-8:]} {s:.0%}" for a, s in sorted(notes["spammers"].items()))
    print(
        f"late_conversions: click spammers' commissions earned by their spam: {spam} "
        f"(positives: >= {SPAM_EARNED_SHARE:.0%})"
    )


if __name__ == "__main__":
    sys.exit(main())
