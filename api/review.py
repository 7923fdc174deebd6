"""Commission review: the list and queue of commissions with their status, fraud flags and
decisions, and the decisions themselves (approve, reject, hold, release), written to
`commission_decisions`, which the ledger reads. docs/payouts.md explains the workflow.

A commission's **status** is computed here with the ledger's own rules
(docs/attribution.md, section 5) from every decision and payment recorded so far, so a
decision counts the moment it is taken. The ledger's balances move only at its next build
(dbt, scheduled by Dagster): until then a commission shows `awaiting_ledger: true` and its
`ledger` balances as of the last build. Precedence, first match wins:

    rejected   the latest approve/reject decision is a reject
    reversed   refunds, cancellations or chargebacks took all of it back (per the ledger)
    paid       a payout item pays it
    on_hold    the latest hold/release/approve decision is a hold (fraud review, a reviewer)
    approved   an approve decision, or its hold period ended
    pending    otherwise: inside its hold period

Affiliates see their own commissions, with their status and the reason of a rejection, but
never fraud flags, the reasons of holds or who decided: evidence would teach a fraudster
what is watched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.store import Principal, TenantScope, UtcDatetime
from rastro.ids import uuid7

Status = Literal["pending", "on_hold", "approved", "rejected", "paid", "reversed"]
DecisionKind = Literal["approve", "reject", "hold", "release"]

# Decisions that must say why: the affiliate reads a rejection's reason, a reviewer a hold's.
REASON_REQUIRED: frozenset[str] = frozenset({"reject", "hold"})
# decision -> the statuses it is refused for (409): it would be meaningless or undo a fact.
REFUSED_FOR: dict[str, frozenset[str]] = {
    # A rejection is final here; a paid or fully reversed commission has nothing to approve.
    "approve": frozenset({"rejected", "paid", "reversed"}),
    # Rejecting a paid commission is allowed: the ledger books what was paid as owed back.
    "reject": frozenset({"rejected"}),
    # A hold stops a payment; a paid, rejected or reversed commission has none coming.
    "hold": frozenset({"rejected", "paid", "reversed"}),
    "release": frozenset({"pending", "approved", "rejected", "paid", "reversed"}),
}
MAX_DECISIONS = 1000
LEDGER_NOTE = "updates at the next build"


class FraudFlag(BaseModel):
    rule: str = Field(description="The fraud rule that fired (docs/fraud.md)")
    severity: str = Field(description="suspicious | likely")
    evidence: dict[str, Any] = Field(description="The facts that fired the rule")
    threshold: str = Field(description="The rule's threshold as configured when it ran")
    flagged_at: UtcDatetime


class Decision(BaseModel):
    decision_id: str
    decision: DecisionKind
    reason: str = Field(description="Why; for affiliates only a rejection's reason is shown")
    decided_by: str = Field(
        description="A user or API key id, or rule:<name> for a fraud rule; hidden from affiliates"
    )
    decided_at: UtcDatetime
    booked: bool = Field(description="False until the ledger's next build books it")


class LedgerBalances(BaseModel):
    """The commission's buckets in the ledger as of its last build (minor units)."""

    earned_minor: int
    pending_minor: int
    approved_minor: int = Field(description="Payable now; negative: owed back (a clawback)")
    paid_minor: int
    rejected_minor: int
    reversed_minor: int = Field(description="Taken back by refunds, cancellations, chargebacks")


class CommissionSummary(BaseModel):
    commission_id: str = Field(description="conversion_id:affiliate_id")
    conversion_id: str
    order_id: str
    affiliate_id: str
    affiliate_name: str
    campaign_id: str
    converted_at: UtcDatetime
    amount_minor: int = Field(description="What the commission earns, before reversals")
    currency: str
    status: Status = Field(description="Now, with every decision and payment recorded applied")
    hold_until: UtcDatetime = Field(description="When it is approved unless a decision says else")
    awaiting_ledger: bool = Field(
        description="A decision, payment or the end of the hold is not in the ledger yet: "
        "`ledger` shows it after the next build"
    )
    ledger: LedgerBalances
    latest_decision: Decision | None
    payout_id: str | None = Field(description="The payout that paid it, if any")
    paid_at: UtcDatetime | None
    fraud_flags: list[FraudFlag] = Field(description="Empty for affiliates: never shown to them")


class CommissionPage(BaseModel):
    items: list[CommissionSummary]
    next_after: str | None = Field(description="Pass as `after` for the next page")


class LedgerEntry(BaseModel):
    entry_id: str
    entry_type: str = Field(
        description="accrual | approval | hold | rejection | reversal | clawback | payment | "
        "correction"
    )
    effective_at: UtcDatetime
    earned_delta_minor: int
    pending_delta_minor: int
    approved_delta_minor: int
    paid_delta_minor: int
    rejected_delta_minor: int
    source_id: str
    recorded_at: UtcDatetime


class Payment(BaseModel):
    payout_id: str
    amount_minor: int
    currency: str
    method: str
    paid_at: UtcDatetime


class CommissionDetail(CommissionSummary):
    order_amount_minor: int
    attribution_model: str
    share: str = Field(description="The affiliate's share of the order's credit")
    campaign_terms_version: int
    rule_ids: list[str] = Field(description="The commission rules that priced it, in order")
    rule_amounts: list[str] = Field(description="Each rule's exact amount for the whole order")
    ledger_entries: list[LedgerEntry] = Field(description="Oldest first (as of the last build)")
    decisions: list[Decision] = Field(description="Oldest first")
    payments: list[Payment]


@dataclass(frozen=True)
class Filters:
    status: Status | None = None
    affiliate_id: str | None = None
    campaign_id: str | None = None
    flagged: bool | None = None
    converted_from: datetime | None = None
    converted_to: datetime | None = None


# Every commission with what decides its status. The ledger's last build replayed the events
# in int_commission_events__replayed (all of them, also those that moved no money): an event
# missing there is one the ledger has not booked yet.
_COMMISSIONS_SQL = """
WITH
ledger AS (
    SELECT commission_id,
           sum(earned_delta_minor) AS earned_minor,
           sum(pending_delta_minor) AS pending_minor,
           sum(approved_delta_minor) AS approved_minor,
           sum(paid_delta_minor) AS paid_minor,
           sum(rejected_delta_minor) AS rejected_minor,
           -sumIf(earned_delta_minor, entry_type IN ('reversal', 'clawback')) AS reversed_minor
    FROM fct_ledger_entries
    GROUP BY commission_id
),
decisions AS (
    SELECT commission_id,
           argMaxIf(decision, (decided_at, decision_id), decision IN ('approve', 'reject'))
               AS verdict,
           argMaxIf(decision, (decided_at, decision_id), decision IN ('hold', 'release', 'approve'))
               AS hold_state,
           argMax((decision_id, decision, reason, decided_by, decided_at),
                  (decided_at, decision_id)) AS latest,
           groupArray(decision_id) AS decision_ids
    FROM commission_decisions FINAL
    GROUP BY commission_id
),
payments AS (
    SELECT commission_id,
           argMax(payout_id, paid_at) AS last_payout_id,
           max(paid_at) AS last_paid_at,
           groupArray(payout_id) AS payout_ids
    FROM payout_items FINAL
    GROUP BY commission_id
),
booked AS (
    SELECT commission_id, groupArray(source_id) AS source_ids
    FROM int_commission_events__replayed
    WHERE source_kind IN ('decision', 'payout', 'hold_end')
    GROUP BY commission_id
),
flags AS (
    SELECT commission_id,
           arraySort(f -> f.5, groupArray((rule, severity, evidence, threshold, flagged_at)))
               AS fraud_flags
    FROM fraud_flags FINAL
    WHERE commission_id != ''
    GROUP BY commission_id
),
names AS (
    SELECT id, display_name FROM affiliates FINAL
),
joined AS (
    SELECT
        c.commission_id AS commission_id,
        c.conversion_id AS conversion_id,
        c.order_id AS order_id,
        c.affiliate_id AS affiliate_id,
        names.display_name AS affiliate_name,
        c.campaign_id AS campaign_id,
        c.converted_at AS converted_at,
        c.commission_minor AS amount_minor,
        toString(c.currency) AS currency,
        c.hold_until AS hold_until,
        ledger.earned_minor AS earned_minor,
        ledger.pending_minor AS pending_minor,
        ledger.approved_minor AS approved_minor,
        ledger.paid_minor AS paid_minor,
        ledger.rejected_minor AS rejected_minor,
        ledger.reversed_minor AS reversed_minor,
        decisions.verdict AS verdict,
        decisions.latest AS latest,
        has(booked.source_ids, decisions.latest.1) AS latest_booked,
        payments.last_payout_id AS payout_id,
        payments.last_paid_at AS paid_at,
        flags.fraud_flags AS fraud_flags,
        multiIf(
            decisions.verdict = 'reject', 'rejected',
            c.commission_minor > 0 AND ledger.reversed_minor >= c.commission_minor, 'reversed',
            payments.last_payout_id != '', 'paid',
            decisions.hold_state = 'hold', 'on_hold',
            decisions.verdict = 'approve' OR c.hold_until <= now64(3, 'UTC'), 'approved',
            'pending'
        ) AS status,
        arrayExists(id -> NOT has(booked.source_ids, id), decisions.decision_ids)
            OR arrayExists(id -> NOT has(booked.source_ids, id), payments.payout_ids)
            OR (c.hold_until <= now64(3, 'UTC') AND NOT has(booked.source_ids, 'hold_end'))
            AS awaiting_ledger
    FROM fct_commissions AS c
    LEFT JOIN ledger ON ledger.commission_id = c.commission_id
    LEFT JOIN decisions ON decisions.commission_id = c.commission_id
    LEFT JOIN payments ON payments.commission_id = c.commission_id
    LEFT JOIN booked ON booked.commission_id = c.commission_id
    LEFT JOIN flags ON flags.commission_id = c.commission_id
    LEFT JOIN names ON names.id = c.affiliate_id
)
SELECT *
FROM joined
"""


def _flag(values: tuple[Any, ...]) -> FraudFlag:
    rule, severity, evidence, threshold, flagged_at = values
    return FraudFlag(
        rule=rule,
        severity=severity,
        evidence=json.loads(evidence),
        threshold=threshold,
        flagged_at=flagged_at,
    )


def _decision(values: tuple[Any, ...], booked: bool, for_affiliate: bool) -> Decision | None:
    """A decision from (decision_id, decision, reason, decided_by, decided_at), as the
    affiliate or the merchant may see it."""
    decision_id, decision, reason, decided_by, decided_at = values
    if not decision_id:  # no decision (the LEFT JOIN's default)
        return None
    if for_affiliate:
        reason = reason if decision == "reject" else ""
        decided_by = ""
    return Decision(
        decision_id=decision_id,
        decision=decision,
        reason=reason,
        decided_by=decided_by,
        decided_at=decided_at,
        booked=booked,
    )


def _summary(row: dict[str, Any], for_affiliate: bool) -> dict[str, Any]:
    """The CommissionSummary fields of a row of _COMMISSIONS_SQL."""
    latest = row["latest"]
    return {
        "commission_id": row["commission_id"],
        "conversion_id": row["conversion_id"],
        "order_id": row["order_id"],
        "affiliate_id": row["affiliate_id"],
        "affiliate_name": row["affiliate_name"],
        "campaign_id": row["campaign_id"],
        "converted_at": row["converted_at"],
        "amount_minor": row["amount_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "hold_until": row["hold_until"],
        "awaiting_ledger": bool(row["awaiting_ledger"]),
        "ledger": LedgerBalances(**{k: row[k] for k in LedgerBalances.model_fields}),
        "latest_decision": _decision(latest, bool(row["latest_booked"]), for_affiliate),
        "payout_id": row["payout_id"] or None,
        "paid_at": row["paid_at"] if row["payout_id"] else None,
        "fraud_flags": [] if for_affiliate else [_flag(f) for f in row["fraud_flags"]],
    }


def _after(cursor: str) -> tuple[int, str]:
    """A page cursor: '<converted_at epoch ms>~<commission_id>'. ValueError if malformed."""
    millis, sep, commission_id = cursor.partition("~")
    if not sep or not millis.isdigit() or len(millis) > 15 or not commission_id:
        raise ValueError("`after` must be a next_after value from a previous page")
    return int(millis), commission_id


def list_commissions(
    scope: TenantScope, filters: Filters, limit: int = 100, after: str = ""
) -> CommissionPage:
    """Commissions oldest first (by conversion time), `limit` per page after the cursor
    `after` (a previous page's next_after). ValueError for a malformed cursor."""
    after_ms, after_id = _after(after) if after else (-(2**62), "")
    rows = scope.rows(
        _COMMISSIONS_SQL
        + """
        WHERE ({status:String} = '' OR status = {status:String})
          AND ({affiliate_id:String} = '' OR affiliate_id = {affiliate_id:String})
          AND ({campaign_id:String} = '' OR campaign_id = {campaign_id:String})
          AND ({flagged:Int8} = -1 OR notEmpty(fraud_flags) = {flagged:Int8})
          AND toUnixTimestamp64Milli(converted_at) >= {from_ms:Int64}
          AND toUnixTimestamp64Milli(converted_at) < {to_ms:Int64}
          AND (toUnixTimestamp64Milli(converted_at), commission_id)
              > ({after_ms:Int64}, {after_id:String})
        ORDER BY converted_at, commission_id
        LIMIT {limit:UInt32}
        """,
        status=filters.status or "",
        affiliate_id=filters.affiliate_id or "",
        campaign_id=filters.campaign_id or "",
        flagged=-1 if filters.flagged is None else int(filters.flagged),
        from_ms=_millis(filters.converted_from) if filters.converted_from else -(2**62),
        to_ms=_millis(filters.converted_to) if filters.converted_to else 2**62,
        after_ms=after_ms,
        after_id=after_id,
        limit=limit + 1,
    )
    for_affiliate = scope.affiliate_id is not None
    items = [CommissionSummary(**_summary(row, for_affiliate)) for row in rows[:limit]]
    next_after = None
    if len(rows) > limit:
        last = items[-1]
        next_after = f"{_millis(last.converted_at)}~{last.commission_id}"
    return CommissionPage(items=items, next_after=next_after)


def as_utc(at: datetime) -> datetime:
    # The warehouse's DateTime64(3, 'UTC') comes back naive: it is UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _millis(at: datetime) -> int:
    return int(as_utc(at).timestamp() * 1000)


def _rows_by_id(scope: TenantScope, commission_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = scope.rows(
        _COMMISSIONS_SQL + " WHERE commission_id IN {ids:Array(String)}", ids=commission_ids
    )
    return {row["commission_id"]: row for row in rows}


def commission(scope: TenantScope, commission_id: str) -> CommissionDetail | None:
    """One commission with its pricing, ledger entries, decisions and payments; None if the
    scope has no such commission."""
    row = _rows_by_id(scope, [commission_id]).get(commission_id)
    if row is None:
        return None
    for_affiliate = scope.affiliate_id is not None
    [pricing] = scope.rows(
        "SELECT order_amount_minor, toString(attribution_model) AS attribution_model, "
        "toString(share) AS share, campaign_terms_version, rule_ids, "
        "arrayMap(a -> toString(a), rule_amounts) AS rule_amounts "
        "FROM fct_commissions WHERE commission_id = {id:String}",
        id=commission_id,
    )
    entries = scope.rows(
        "SELECT entry_id, toString(entry_type) AS entry_type, effective_at, earned_delta_minor, "
        "pending_delta_minor, approved_delta_minor, paid_delta_minor, rejected_delta_minor, "
        "source_id, recorded_at FROM fct_ledger_entries WHERE commission_id = {id:String} "
        "ORDER BY effective_at, recorded_at, entry_id",
        id=commission_id,
    )
    booked = {
        r["source_id"]
        for r in scope.rows(
            "SELECT source_id FROM int_commission_events__replayed "
            "WHERE commission_id = {id:String}",
            id=commission_id,
        )
    }
    decisions = scope.rows(
        "SELECT decision_id, decision, reason, decided_by, decided_at "
        "FROM commission_decisions FINAL WHERE commission_id = {id:String} "
        "ORDER BY decided_at, decision_id",
        id=commission_id,
    )
    payments = scope.rows(
        "SELECT payout_id, amount_minor, toString(currency) AS currency, "
        "toString(method) AS method, paid_at "
        "FROM payout_items FINAL WHERE commission_id = {id:String} ORDER BY paid_at, payout_id",
        id=commission_id,
    )
    history = [
        _decision(tuple(d.values()), d["decision_id"] in booked, for_affiliate) for d in decisions
    ]
    return CommissionDetail(
        **_summary(row, for_affiliate),
        **pricing,
        ledger_entries=[LedgerEntry(**e) for e in entries],
        decisions=[d for d in history if d is not None],
        payments=[Payment(**p) for p in payments],
    )


# -- decisions ------------------------------------------------------------------------------------


class UnknownCommissions(Exception):
    """Ids the scope has no commission for (404): nothing was written."""

    def __init__(self, commission_ids: list[str]) -> None:
        super().__init__(f"no such commission(s): {', '.join(commission_ids)}")
        self.commission_ids = commission_ids


class DecisionConflict(Exception):
    """Commissions whose status refuses the decision (409): nothing was written."""

    def __init__(self, decision: str, conflicts: dict[str, str]) -> None:
        listed = ", ".join(f"{cid} ({status})" for cid, status in conflicts.items())
        super().__init__(f"cannot {decision} commission(s) that are: {listed}")
        self.conflicts = conflicts


class DecidedCommission(BaseModel):
    commission_id: str
    decision_id: str
    previous_status: Status
    status: Status = Field(description="The status with this decision applied")


class DecisionsRecorded(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "decision": "approve",
                    "reason": "Order delivered",
                    "decided_by": "0197b8fb-d000-7e2e-b3a7-b1a4da5b8234",
                    "decided_at": "2026-11-28T12:00:00Z",
                    "commissions": [
                        {
                            "commission_id": "0197b8fb-d000-7a8d-b12a-114bc21b523a:"
                            "0197b8fb-d000-714a-9dd8-e1b7a8687fca",
                            "decision_id": "0197c2a1-5e00-7b3c-9a51-6f0d2e8c4b17",
                            "previous_status": "pending",
                            "status": "approved",
                        }
                    ],
                    "ledger": LEDGER_NOTE,
                }
            ]
        }
    )

    decision: DecisionKind
    reason: str
    decided_by: str
    decided_at: UtcDatetime
    commissions: list[DecidedCommission]
    ledger: str = Field(
        LEDGER_NOTE,
        description="The status applies now; the ledger's balances move at its next build",
    )


def _status_after(decision: str, row: dict[str, Any]) -> Status:
    """The status once `decision` is the latest (refused transitions never get here)."""
    if decision == "reject":
        return "rejected"
    if decision == "hold":
        return "on_hold"
    if decision == "approve":
        return "approved"
    # release: approved if an approval or the end of the hold period says so.
    hold_ended = as_utc(row["hold_until"]) <= datetime.now(UTC)
    return "approved" if row["verdict"] == "approve" or hold_ended else "pending"


def decide(
    scope: TenantScope,
    actor: Principal,
    decision: DecisionKind,
    commission_ids: list[str],
    reason: str,
) -> DecisionsRecorded:
    """One decision row per commission, all or nothing: UnknownCommissions if any id is not
    the scope's, DecisionConflict if any status refuses the decision, ValueError if a reason
    is required and missing. Each decision is audited (`commission.<decision>`)."""
    reason = reason.strip()
    if decision in REASON_REQUIRED and not reason:
        raise ValueError(f"{decision} needs a reason")
    unique = list(dict.fromkeys(commission_ids))
    rows = _rows_by_id(scope, unique)
    unknown = [cid for cid in unique if cid not in rows]
    if unknown:
        raise UnknownCommissions(unknown)
    refused = REFUSED_FOR[decision]
    conflicts = {cid: rows[cid]["status"] for cid in unique if rows[cid]["status"] in refused}
    if conflicts:
        raise DecisionConflict(decision, conflicts)
    decided_at = datetime.now(UTC)
    decided = [
        DecidedCommission(
            commission_id=cid,
            decision_id=uuid7(),
            previous_status=rows[cid]["status"],
            status=_status_after(decision, rows[cid]),
        )
        for cid in unique
    ]
    scope.insert(
        "commission_decisions",
        [
            {
                "decision_id": d.decision_id,
                "commission_id": d.commission_id,
                "decision": decision,
                "reason": reason,
                "decided_by": actor.actor_id,
                "decided_at": decided_at,
            }
            for d in decided
        ],
    )
    audit.record_many(
        scope,
        actor,
        f"commission.{decision}",
        "commission",
        [
            (
                d.commission_id,
                {
                    "decision_id": d.decision_id,
                    "previous_status": d.previous_status,
                    "status": d.status,
                },
            )
            for d in decided
        ],
        reason,
        at=decided_at,
    )
    return DecisionsRecorded(
        decision=decision,
        reason=reason,
        decided_by=actor.actor_id,
        decided_at=decided_at,
        commissions=decided,
    )
