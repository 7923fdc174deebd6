"""The commission ledger (fct_commissions, fct_ledger_entries, dim_affiliate_balances) built by
Rastro's dbt project against the warehouse under test, from hand-made landing rows.

One story in two builds, the ledger's clock pinned by `ledger__as_of`:
- build 1 (as of 2024-03-31): Ana's sale o-1 (refunded by a quarter, then approved when its
  hold ends) and Leo's sale o-2 (approved, then paid);
- between the builds: o-1 is corrected (a lower net), o-2 is refunded after its payment, Ana
  sells o-3 under the campaign's new terms and the merchant rejects it;
- build 2 (as of 2024-04-30) must append exactly the entries those facts imply, leave every
  entry of build 1 byte-identical, and a third build or a --full-refresh must change nothing.
docs/attribution.md (sections 4 and 5) explains every number below.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines.dbt import run_dbt
from rastro.schema.migrate import migrate
from rastro.warehouse.client import insert_rows

BUILD_TIMEOUT = 600  # seconds; the whole project builds in well under a minute
TENANT = "t-ledger"
BRL = "BRL"

# Build 1 sees March; build 2 sees April.
AS_OF_1 = "2024-03-31T23:59:59Z"
AS_OF_2 = "2024-04-30T23:59:59Z"

RULES_V1 = [{"id": "base", "type": "percent", "rate": "0.10", "base": "net"}]
# From April: 12%, and Ana (an influencer) has her own rule.
RULES_V2 = [
    {"id": "base", "type": "percent", "rate": "0.12", "base": "net"},
    {"id": "influencers", "type": "percent", "rate": "0.15", "segment": "influencers"},
]

LEDGER_COLUMNS = (
    "commission_id, entry_type, toString(effective_at), earned_delta_minor, pending_delta_minor,"
    " approved_delta_minor, paid_delta_minor, rejected_delta_minor, source_id"
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def row_version(ts: str) -> dict[str, Any]:
    return {"created_at": at(ts), "updated_at": at(ts), "version": 1}


def campaign_terms(
    version: int, valid_from: str, valid_to: str | None, rules: list[Any]
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "campaign_id": "camp-1",
        "terms_version": version,
        "name": "Spring",
        "status": "active",
        "valid_from": at(valid_from),
        "valid_to": at(valid_to) if valid_to else None,
        "attribution_model": "last_click",
        "hold_days": 30,
        "commission_rules": json.dumps(rules),
        **row_version("2024-01-01 00:00"),
    }


def affiliate(affiliate_id: str, segment: str) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "id": affiliate_id,
        "display_name": affiliate_id,
        "status": "approved",
        "segment": segment,
        "email_hash": f"hash-{affiliate_id}",
        **row_version("2024-01-01 00:00"),
    }


def link(link_id: str, code: str, affiliate_id: str) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "id": link_id,
        "kind": "link",
        "code": code,
        "affiliate_id": affiliate_id,
        "campaign_id": "camp-1",
        "status": "active",
        **row_version("2024-01-01 00:00"),
    }


def click(click_id: str, ts: str, affiliate_id: str, link_id: str, code: str) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{click_id}",
        "click_id": click_id,
        "source": "redirect",
        "link_id": link_id,
        "link_code": code,
        "affiliate_id": affiliate_id,
        "campaign_id": "camp-1",
        "campaign_terms_version": 1,
        "cookie_id": f"cookie-{click_id}",
        "received_at": at(ts),
    }


def conversion(
    order_id: str, version: int, ts: str, amount: int, net: int, click_id: str
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{order_id}-v{version}",
        "conversion_id": f"conv-{order_id}",
        "order_id": order_id,
        "version": version,
        "amount_minor": amount,
        "net_minor": net,
        "currency": BRL,
        "click_id": click_id,
        "customer_id": f"customer-{order_id}",
        "is_new_customer": True,
        "source": "s2s",
        "received_at": at(ts),
    }


def order_update(update_id: str, order_id: str, ts: str, kind: str, amount: int) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{update_id}",
        "update_id": update_id,
        "order_id": order_id,
        "kind": kind,
        "amount_minor": amount,
        "currency": BRL,
        "source": "api",
        "received_at": at(ts),
    }


ANA_O1 = "conv-o-1:aff-ana"
LEO_O2 = "conv-o-2:aff-leo"
ANA_O3 = "conv-o-3:aff-ana"


def land_first_batch(client: Any) -> None:
    insert_rows(
        client,
        "campaigns",
        [
            campaign_terms(1, "2024-01-01 00:00", "2024-04-01 00:00", RULES_V1),
            campaign_terms(2, "2024-04-01 00:00", None, RULES_V2),
        ],
    )
    insert_rows(
        client, "affiliates", [affiliate("aff-ana", "influencers"), affiliate("aff-leo", "")]
    )
    insert_rows(
        client, "links", [link("link-ana", "ANA", "aff-ana"), link("link-leo", "LEO", "aff-leo")]
    )
    insert_rows(
        client,
        "clicks",
        [
            click("clk-1", "2024-02-09 10:00", "aff-ana", "link-ana", "ANA"),
            click("clk-2", "2024-02-10 09:00", "aff-leo", "link-leo", "LEO"),
            click("clk-3", "2024-04-09 08:00", "aff-ana", "link-ana", "ANA"),
        ],
    )
    insert_rows(
        client,
        "conversions",
        [
            # R$ 100.00, net R$ 90.00: 10% of net = 900.
            conversion("o-1", 1, "2024-02-10 12:00", 10000, 9000, "clk-1"),
            # R$ 200.00, net R$ 180.00: 1800.
            conversion("o-2", 1, "2024-02-11 12:00", 20000, 18000, "clk-2"),
        ],
    )
    # A quarter of o-1 is refunded: a quarter of its commission is reversed (225).
    insert_rows(
        client, "order_updates", [order_update("rf-1", "o-1", "2024-02-20 08:00", "refund", 2500)]
    )
    insert_rows(
        client,
        "payout_items",
        [
            {
                "tenant_id": TENANT,
                "payout_id": "payout-1",
                "commission_id": LEO_O2,
                "affiliate_id": "aff-leo",
                "amount_minor": 1800,
                "currency": BRL,
                "method": "pix",
                "paid_at": at("2024-03-20 15:00"),
            }
        ],
    )


def land_second_batch(client: Any) -> None:
    insert_rows(
        client,
        "conversions",
        [
            # o-1 corrected: net R$ 80.00, so 800 earned, 600 after the quarter refunded.
            conversion("o-1", 2, "2024-02-10 12:00", 10000, 8000, "clk-1"),
            # Under the April terms Ana's influencer rule gives 15% of R$ 50.00 = 750.
            conversion("o-3", 1, "2024-04-10 12:00", 5000, 5000, "clk-3"),
        ],
    )
    # o-2 is refunded by R$ 50.00 after its commission was paid: a clawback of 450.
    insert_rows(
        client, "order_updates", [order_update("rf-2", "o-2", "2024-04-05 10:00", "refund", 5000)]
    )
    insert_rows(
        client,
        "commission_decisions",
        [
            {
                "tenant_id": TENANT,
                "decision_id": "dec-1",
                "commission_id": ANA_O3,
                "decision": "reject",
                "reason": "coupon abuse",
                "decided_by": "user-1",
                "decided_at": at("2024-04-15 09:00"),
            }
        ],
    )


def dbt(warehouse_url: str, database: str, work_dir: Path, args: list[str]) -> dict[str, Any]:
    """Runs `dbt <args>`, checks that it and every node succeeded; returns run_results.json."""
    result = run_dbt(
        args, warehouse_url, database, work_dir=work_dir, capture=True, timeout=BUILD_TIMEOUT
    )
    print(result.stdout + result.stderr)
    assert result.returncode == 0, f"dbt {args[0]} failed; every statement is in {work_dir}/logs"
    run_results: dict[str, Any] = json.loads((work_dir / "target" / "run_results.json").read_text())
    statuses = {node["unique_id"]: node["status"] for node in run_results["results"]}
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    return run_results


def build(warehouse_url: str, database: str, as_of: str, work_dir: Path, *args: str) -> str:
    """`dbt build` of the ledger and everything it reads; returns the invocation id."""
    selection = ["--select", "+fct_ledger_entries+", "--vars", json.dumps({"ledger__as_of": as_of})]
    run_results = dbt(warehouse_url, database, work_dir, ["build", *selection, *args])
    invocation_id: str = run_results["metadata"]["invocation_id"]
    return invocation_id


def rows(client: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql).result_rows]


def ledger(client: Any, where: str = "1") -> list[tuple[Any, ...]]:
    return rows(
        client,
        f"SELECT {LEDGER_COLUMNS} FROM fct_ledger_entries WHERE {where}"
        " ORDER BY commission_id, effective_at, entry_type",
    )


def whole_ledger(client: Any) -> list[tuple[Any, ...]]:
    """Every column of every entry, as stored."""
    return rows(client, "SELECT * FROM fct_ledger_entries ORDER BY entry_id")


@pytest.mark.slow
def test_ledger_appends_only_what_new_facts_imply(
    warehouse_url: str, database: str, client: Any, tmp_path: Path
) -> None:
    migrate(client, database)
    land_first_batch(client)

    run1 = build(warehouse_url, database, AS_OF_1, tmp_path)

    assert rows(
        client,
        "SELECT commission_id, campaign_terms_version, rule_ids, rule_bases_minor,"
        " toString(gross_amount), commission_minor, toString(hold_until)"
        " FROM fct_commissions ORDER BY commission_id",
    ) == [
        (ANA_O1, 1, ["base"], [9000], "900", 900, "2024-03-11 12:00:00.000"),
        (LEO_O2, 1, ["base"], [18000], "1800", 1800, "2024-03-12 12:00:00.000"),
    ]
    first_entries = [
        (ANA_O1, "accrual", "2024-02-10 12:00:00.000", 900, 900, 0, 0, 0, "conv-o-1"),
        (ANA_O1, "reversal", "2024-02-20 08:00:00.000", -225, -225, 0, 0, 0, "ev-rf-1"),
        (ANA_O1, "approval", "2024-03-11 12:00:00.000", 0, -675, 675, 0, 0, "hold_end"),
        (LEO_O2, "accrual", "2024-02-11 12:00:00.000", 1800, 1800, 0, 0, 0, "conv-o-2"),
        (LEO_O2, "approval", "2024-03-12 12:00:00.000", 0, -1800, 1800, 0, 0, "hold_end"),
        (LEO_O2, "payment", "2024-03-20 15:00:00.000", 0, 0, -1800, 1800, 0, "payout-1"),
    ]
    assert ledger(client) == first_entries
    assert rows(
        client,
        "SELECT affiliate_id, currency, earned_minor, pending_minor, approved_minor, paid_minor,"
        " rejected_minor, reversed_minor FROM dim_affiliate_balances ORDER BY affiliate_id",
    ) == [
        ("aff-ana", BRL, 675, 0, 675, 0, 0, 225),
        ("aff-leo", BRL, 1800, 0, 0, 1800, 0, 0),
    ]
    stored_after_run1 = whole_ledger(client)
    assert {row[-1] for row in stored_after_run1} == {run1}

    land_second_batch(client)
    run2 = build(warehouse_url, database, AS_OF_2, tmp_path)
    assert run2 != run1

    # Build 1's entries are untouched, to the byte; build 2 only appended.
    assert whole_ledger(client) == sorted(
        stored_after_run1
        + rows(client, f"SELECT * FROM fct_ledger_entries WHERE dbt_invocation_id = '{run2}'")
    )
    assert (
        rows(
            client,
            f"SELECT * FROM fct_ledger_entries WHERE dbt_invocation_id = '{run1}'"
            " ORDER BY entry_id",
        )
        == stored_after_run1
    )
    assert ledger(client, f"dbt_invocation_id = '{run2}'") == [
        # o-1's commission is now 800: the recorded 900 - 225 approved becomes 600.
        (ANA_O1, "correction", "2024-04-30 23:59:59.000", -75, 0, -75, 0, 0, "after-3"),
        (LEO_O2, "clawback", "2024-04-05 10:00:00.000", -450, 0, -450, 0, 0, "ev-rf-2"),
        (ANA_O3, "accrual", "2024-04-10 12:00:00.000", 750, 750, 0, 0, 0, "conv-o-3"),
        (ANA_O3, "rejection", "2024-04-15 09:00:00.000", -750, -750, 0, 0, 750, "dec-1"),
    ]
    assert rows(
        client,
        "SELECT affiliate_id, earned_minor, pending_minor, approved_minor, paid_minor,"
        " rejected_minor, reversed_minor, corrected_minor FROM dim_affiliate_balances"
        " ORDER BY affiliate_id",
    ) == [
        ("aff-ana", 600, 0, 600, 0, 750, 225, -75),
        # Paid 1800, then 450 clawed back: 450 is owed and comes off the next payout.
        ("aff-leo", 1350, 0, -450, 1800, 0, 450, 0),
    ]
    stored_after_run2 = whole_ledger(client)

    # Nothing new happened: a third build at the same clock appends nothing, and
    # --full-refresh does not rebuild the append-only ledger (unit tests ran in build 1).
    build(warehouse_url, database, AS_OF_2, tmp_path, "--exclude-resource-type", "unit_test")
    assert whole_ledger(client) == stored_after_run2
    build(
        warehouse_url,
        database,
        AS_OF_2,
        tmp_path,
        "--full-refresh",
        "--exclude-resource-type",
        "unit_test",
    )
    assert whole_ledger(client) == stored_after_run2
