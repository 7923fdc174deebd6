"""Writing a run's flags: each one into fraud_flags (the same finding replaces its row: same
flag_id, a later flagged_at), and for each flagged commission a `hold` decision in
commission_decisions, once: its decision_id is a hash of (tenant, commission, rule), and a
decision already recorded is never written again (a reviewer's later `release` stands).
Nothing is ever deleted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from pipelines.fraud.inputs import check_database
from pipelines.fraud.rules import FLAGS
from rastro.ids import stable_uuid7


@dataclass(frozen=True)
class Recorded:
    flags: int  # rows written to fraud_flags (new and re-found)
    holds: int  # hold decisions written now
    holds_existing: int  # flagged commissions whose hold was recorded by an earlier run


def decision_id(tenant_id: str, commission_id: str, rule: str, converted_at_ms: int) -> str:
    """The hold of `rule` on a commission: the same id in every run. A UUIDv7 whose time is
    the conversion's (the evidence's converted_at), the rest a hash of the key."""
    return stable_uuid7(converted_at_ms, f"fraud-hold\x1f{tenant_id}\x1f{commission_id}\x1f{rule}")


def record(
    client: Any,
    database: str,
    flags: pl.DataFrame,
    run_id: str,
    *,
    at: datetime | None = None,
) -> Recorded:
    """Insert `flags` (as `detect` returns them) stamped with `run_id` and `at` (default:
    now), and a hold for each flagged commission that has none from this rule yet."""
    check_database(database)
    missing = [name for name in FLAGS if name not in flags.columns]
    if missing:
        raise ValueError(f"flags lack columns {missing}")
    when = (at or datetime.now(UTC)).astimezone(UTC)
    if flags.is_empty():
        return Recorded(0, 0, 0)
    stamped = flags.select(list(FLAGS)).with_columns(
        run_id=pl.lit(run_id), flagged_at=pl.lit(when, dtype=FLAGS["flagged_at"])
    )
    client.insert(
        "fraud_flags",
        stamped.rows(),
        column_names=list(FLAGS),
        database=database,
    )
    holds = stamped.filter(pl.col("commission_id") != "")
    if holds.is_empty():
        return Recorded(stamped.height, 0, 0)
    existing = _existing_holds(client, database, holds["tenant_id"].unique().to_list())
    rows = []
    already = 0
    for flag in holds.iter_rows(named=True):
        evidence = json.loads(flag["evidence"])
        decision = decision_id(
            flag["tenant_id"],
            flag["commission_id"],
            flag["rule"],
            _ms(evidence.get("converted_at")),
        )
        if decision in existing:
            already += 1
            continue
        existing.add(decision)
        rows.append(
            [
                flag["tenant_id"],
                decision,
                flag["commission_id"],
                "hold",
                reason(flag["rule"], evidence, flag["threshold"]),
                f"rule:{flag['rule']}",
                when,
            ]
        )
    if rows:
        client.insert(
            "commission_decisions",
            rows,
            column_names=[
                "tenant_id",
                "decision_id",
                "commission_id",
                "decision",
                "reason",
                "decided_by",
                "decided_at",
            ],
            database=database,
        )
    return Recorded(stamped.height, len(rows), already)


def _ms(text: Any) -> int:
    """Epoch milliseconds of an ISO timestamp from the evidence (0 when absent)."""
    if not isinstance(text, str) or not text:
        return 0
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _existing_holds(client: Any, database: str, tenants: list[str]) -> set[str]:
    """The ids of the rules' hold decisions already recorded for `tenants`."""
    result = client.query(
        f"SELECT decision_id FROM {database}.commission_decisions "
        "WHERE tenant_id IN {tenants:Array(String)} AND decision = 'hold' "
        "AND startsWith(decided_by, 'rule:')",
        parameters={"tenants": tenants},
    )
    return {row[0] for row in result.result_rows}


# -- the sentence a reviewer (and, for rejections, the affiliate) reads ---------------------------


def reason(rule: str, evidence: dict[str, Any], threshold: str) -> str:
    """Why a commission is held, in one sentence with the evidence."""
    if "first_payment" in evidence:
        first = reason(rule, evidence["first_payment"], threshold)
        return (
            f"Renewal {evidence.get('renewal_number')} of a subscription whose first payment "
            f"was held: {first}"
        )
    text = _SENTENCES.get(rule)
    body = text(evidence) if text is not None else json.dumps(evidence, sort_keys=True)
    return f"Held for fraud review (rule {rule}): {body} Threshold: {threshold}."


def _self_referral(e: dict[str, Any]) -> str:
    found = []
    if e.get("email_match"):
        found.append("the order's email is the affiliate's")
    if e.get("same_person"):
        found.append("the buyer's identity includes the affiliate's email")
    if e.get("shared_devices"):
        found.append(f"{e['shared_devices']} device(s) of the affiliate's own were the buyer's")
    elif e.get("shared_addresses"):
        found.append(f"{e['shared_addresses']} address(es) of the affiliate's own were the buyer's")
    return "the affiliate appears to be the buyer: " + "; ".join(found) + "."


def _fast_ctit(e: dict[str, Any]) -> str:
    return (
        f"the credited click ({e.get('click_id')}) came {e.get('ctit_seconds')} s before the "
        "order, as an injected click would."
    )


def _coupon_leakage(e: dict[str, Any]) -> str:
    others = e.get("other_affiliates_clicked", 0)
    return "the affiliate's coupon earned the sale but the buyer never clicked the affiliate" + (
        f"; the buyer clicked {others} other affiliate(s)." if others else "."
    )


def _late(e: dict[str, Any]) -> str:
    return (
        f"the affiliate converts unusually late after its clicks (flag "
        f"{e.get('affiliate_flag_id')}), and this sale came {e.get('ctit_hours')} h after its "
        "click."
    )


def _stuffing(e: dict[str, Any]) -> str:
    return (
        f"the affiliate's links drop cookies from servers (flag {e.get('affiliate_flag_id')}), "
        f"and this sale's credited click {e.get('unengaged_click_id')} never reached the site."
    )


def _click_outlier(e: dict[str, Any]) -> str:
    return (
        f"the affiliate's clicks on {e.get('click_day')} were far above its history (flag "
        f"{e.get('affiliate_flag_id')}), and this sale's credited click is from that day."
    )


def _rate_outlier(e: dict[str, Any]) -> str:
    return (
        f"the affiliate's conversion rate on {e.get('conversion_day')} was far above its "
        f"history (flag {e.get('affiliate_flag_id')}), and this sale is from that day."
    )


def _shared_payout(e: dict[str, Any]) -> str:
    return (
        f"the affiliate's payout account is shared with other affiliates (flag "
        f"{e.get('affiliate_flag_id')}); its sales wait until the account is checked."
    )


_SENTENCES = {
    "self_referral": _self_referral,
    "fast_ctit": _fast_ctit,
    "coupon_leakage": _coupon_leakage,
    "late_conversions": _late,
    "cookie_stuffing": _stuffing,
    "click_outlier": _click_outlier,
    "conversion_rate_outlier": _rate_outlier,
    "shared_payout_details": _shared_payout,
}
