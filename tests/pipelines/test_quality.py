"""The data-quality checks (pipelines/quality.py): every check passes on clean data, and each
planted bad row fails exactly the check meant to catch it, with its blocking flag, the
observed values and the offending row among the samples."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipelines.quality import (
    LANDING_CHECKS,
    MART_CHECKS,
    CheckResult,
    Thresholds,
    check_landing,
    check_marts,
)
from rastro.schema.migrate import migrate
from rastro.warehouse.client import insert_rows
from tests.pipelines.helpers import (
    ANA_O1,
    BRL,
    LEO_O2,
    TENANT,
    at,
    attribution,
    build_balances,
    conversion,
    entry,
    land_clean_marts,
    order_update,
)

# Recent: dead letters and identity links expire (TTL) once they are old.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def ago(minutes: int) -> datetime:
    return NOW - timedelta(minutes=minutes)


def clean_landing() -> dict[str, list[dict[str, Any]]]:
    """An hour of clean events, received within the checks' window before NOW."""
    return {
        "clicks": [
            {
                "tenant_id": TENANT,
                "ts": ago(120 - n),
                "event_id": f"ev-click-{n}",
                "click_id": f"clk-{n}",
                "source": "redirect",
                "received_at": ago(120 - n),
            }
            for n in range(3)
        ],
        "page_events": [
            {
                "tenant_id": TENANT,
                "ts": ago(115),
                "event_id": "ev-page-1",
                "type": "page_view",
                "received_at": ago(115),
            }
        ],
        "conversions": [
            conversion("o-1", 1, ago(120), 10000, 9000, tax_minor=1000),
            conversion("o-2", 1, ago(90), 0, 0, kind="lead"),
            conversion("o-3", 1, ago(80), 5000, 5000, "USD"),
        ],
        "order_updates": [order_update("rf-1", "o-1", ago(60), 2500)],
        "identity_links": [
            {
                "tenant_id": TENANT,
                "ts": ago(114),
                "event_id": "ev-identify-1",
                "left_kind": "cookie",
                "left_id": "cookie-1",
                "right_kind": "customer",
                "right_id": "customer-1",
                "source": "identify",
                "consent": "granted",
                "received_at": ago(114),
            }
        ],
    }


def land(client: Any, data: dict[str, list[dict[str, Any]]]) -> None:
    for table, table_rows in data.items():
        if table_rows:
            insert_rows(client, table, table_rows)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    named = {result.name: result for result in results}
    assert len(named) == len(results), "check names are unique"
    return named


def failing(results: list[CheckResult]) -> set[str]:
    return {result.name for result in results if not result.passed}


def test_landing_checks_pass_on_clean_data(client: Any, database: str) -> None:
    migrate(client, database)
    land(client, clean_landing())

    results = check_landing(client, database, NOW)

    named = by_name(results)
    assert list(named) == list(LANDING_CHECKS)
    assert failing(results) == set()
    assert named["clicks_ids_present"].observed["rows"] == 3
    assert named["conversions_amounts_valid"].observed["currencies"] == [
        {
            "currency": "BRL",
            "rows": 2,
            "min_amount_minor": 0,
            "max_amount_minor": 10000,
            "min_net_minor": 0,
            "net_above_amount": 0,
            "negative_parts": 0,
        },
        {
            "currency": "USD",
            "rows": 1,
            "min_amount_minor": 5000,
            "max_amount_minor": 5000,
            "min_net_minor": 5000,
            "net_above_amount": 0,
            "negative_parts": 0,
        },
    ]
    assert named["dead_letter_rate"].observed["accepted"] == 9
    # Blocking: ids and amounts; timestamps and the dead-letter rate warn.
    assert {r.name for r in results if r.blocking} == {
        name for name in LANDING_CHECKS if name.endswith(("_ids_present", "_amounts_valid"))
    }
    for result in results:
        assert result.severity == ("ERROR" if result.blocking else "WARN")
        assert result.validation["success"] is True
        assert result.validation["evaluated_expectations"] == len(result.expectations) > 0
        json.dumps(result.metadata())  # what Dagster stores must be JSON


def test_landing_checks_pass_on_empty_tables(client: Any, database: str) -> None:
    migrate(client, database)
    assert failing(check_landing(client, database, NOW)) == set()


PLANTED_LANDING = [
    # (id, table, overrides of a copy of the table's first clean row, the check that must fail)
    ("click without click_id", "clicks", {"click_id": ""}, "clicks_ids_present"),
    ("click without tenant", "clicks", {"tenant_id": ""}, "clicks_ids_present"),
    ("page event without event_id", "page_events", {"event_id": ""}, "page_events_ids_present"),
    ("conversion without order_id", "conversions", {"order_id": ""}, "conversions_ids_present"),
    ("update without order_id", "order_updates", {"order_id": ""}, "order_updates_ids_present"),
    ("edge without right id", "identity_links", {"right_id": ""}, "identity_links_ids_present"),
    ("lower-case currency", "conversions", {"currency": "brl"}, "conversions_amounts_valid"),
    ("not a currency code", "conversions", {"currency": "REAL"}, "conversions_amounts_valid"),
    ("net above amount", "conversions", {"net_minor": 10001}, "conversions_amounts_valid"),
    ("negative amount", "conversions", {"amount_minor": -1}, "conversions_amounts_valid"),
    (
        "amount above the bound",
        "conversions",
        {"amount_minor": 10**10 + 1},
        "conversions_amounts_valid",
    ),
    ("negative tax", "conversions", {"tax_minor": -5}, "conversions_amounts_valid"),
    ("refund of 0", "order_updates", {"amount_minor": 0}, "order_updates_amounts_valid"),
    ("refund currency", "order_updates", {"currency": "Brl"}, "order_updates_amounts_valid"),
    ("click from 1970", "clicks", {"ts": at("1970-01-02 00:00")}, "clicks_timestamps_sane"),
    (
        "page event from the future",
        "page_events",
        {"ts": NOW + timedelta(minutes=6)},
        "page_events_timestamps_sane",
    ),
    (
        "received in the future",
        "order_updates",
        {"received_at": NOW + timedelta(hours=1)},
        "order_updates_timestamps_sane",
    ),
]


@pytest.mark.parametrize(
    ("table", "overrides", "check"),
    [case[1:] for case in PLANTED_LANDING],
    ids=[case[0] for case in PLANTED_LANDING],
)
def test_landing_check_fails_on_a_planted_row(
    client: Any, database: str, table: str, overrides: dict[str, Any], check: str
) -> None:
    migrate(client, database)
    data = clean_landing()
    bad = {**data[table][0], "event_id": "ev-planted", **overrides}
    data[table].append(bad)
    land(client, data)

    results = check_landing(client, database, NOW)

    assert failing(results) == {check}
    result = by_name(results)[check]
    assert result.blocking is not check.endswith("_timestamps_sane")
    assert result.validation["success"] is False
    assert result.validation["unsuccessful_expectations"] >= 1
    assert any(not e["success"] for e in result.expectations)
    # Whoever investigates gets the row: its event id (or, if that is what is missing, its
    # other ids) is among the samples.
    planted = bad["event_id"] or ""
    assert any(sample.get("event_id") == planted for sample in result.samples), result.samples
    json.dumps(result.metadata())


def test_landing_checks_only_look_at_the_window(client: Any, database: str) -> None:
    migrate(client, database)
    data = clean_landing()
    old = {**data["clicks"][0], "event_id": "ev-old", "click_id": ""}
    old["received_at"] = NOW - timedelta(days=2)
    data["clicks"].append(old)
    land(client, data)

    assert failing(check_landing(client, database, NOW)) == set()
    # A wider window sees it.
    wider = Thresholds(window=timedelta(days=3))
    assert failing(check_landing(client, database, NOW, thresholds=wider)) == {"clicks_ids_present"}


def test_dead_letter_rate_warns_above_its_threshold(client: Any, database: str) -> None:
    migrate(client, database)
    land(client, clean_landing())  # 9 events accepted
    dead = {
        "tenant_id": TENANT,
        "received_at": ago(60),
        "source": "eventlog",
        "event_type_guess": "click",
        "reason": "Expected `int`, got `str` - at `$.ts`",
        "payload": b'{"type": "click"}',
        "log_partition": 0,
    }
    insert_rows(client, "dead_letters", [{**dead, "log_offset": offset} for offset in (16, 99)])
    # A replayed dead letter (same log position) counts once.
    insert_rows(client, "dead_letters", [{**dead, "log_offset": 99}])

    results = by_name(check_landing(client, database, NOW))

    rate = results["dead_letter_rate"]
    assert not rate.passed and not rate.blocking and rate.severity == "WARN"
    assert rate.observed["dead_letters"] == 2 and isinstance(rate.observed["dead_letters"], int)
    assert rate.observed["accepted"] == 9
    assert rate.observed["rate"] == pytest.approx(2 / 11)
    assert rate.observed["top_reasons"][0]["dead_letters"] == 2
    # At 20% allowed, it passes.
    relaxed = check_landing(client, database, NOW, thresholds=Thresholds(dead_letter_rate=0.2))
    assert failing(relaxed) == set()


# -- marts ----------------------------------------------------------------------------------------


def test_mart_checks_pass_on_clean_data(client: Any, database: str) -> None:
    land_clean_marts(client)

    results = check_marts(client, database)

    named = by_name(results)
    assert list(named) == list(MART_CHECKS)
    assert failing(results) == set(), [r.observed for r in results if not r.passed]
    assert all(result.blocking for result in results)
    assert named["attribution_splits_exact"].observed["splits"] == 5
    assert named["ledger_balances"].observed == {
        "entries": 10,
        "unbalanced_entries": 0,
        "commissions": 3,
        "unbalanced_commissions": 0,
    }
    # Leo's approved is -450 (a clawback after payment): negative, but after a reversal.
    assert named["balances_not_negative_without_reversal"].observed["balances"] == 2
    for result in results:
        json.dumps(result.metadata())


def ledger_with(client: Any, *extra: dict[str, Any]) -> None:
    insert_rows(client, "fct_ledger_entries", list(extra))
    build_balances(client)  # the dimension follows the ledger, as dbt rebuilds it


PLANTED_MARTS: list[tuple[str, str, Any]] = [
    (
        "shares sum to 1.1",
        "attribution_splits_exact",
        lambda client: insert_rows(
            client,
            "fct_attributions",
            [attribution("conv-o-3", "linear", "aff-ana", 1.1, 5000, 5000)],
        ),
    ),
    (
        "a cent lost in the split",
        "attribution_splits_exact",
        lambda client: insert_rows(
            client,
            "fct_attributions",
            [
                attribution("conv-o-3", "linear", "aff-ana", 0.5, 2500, 2500),
                attribution("conv-o-3", "linear", "aff-leo", 0.5, 2499, 2500),
            ],
        ),
    ),
    (
        "an entry that does not balance",
        "ledger_balances",
        lambda client: ledger_with(
            client, entry(ANA_O1, "correction", "2024-05-01", 100, 90, 0, 0, 0, "after-4")
        ),
    ),
    (
        "a payment beyond what was approved",
        "balances_not_negative_without_reversal",
        lambda client: ledger_with(
            client, entry(ANA_O1, "payment", "2024-05-02", 0, 0, -800, 800, 0, "payout-2")
        ),
    ),
    (
        "pending below zero",
        "balances_not_negative_without_reversal",
        lambda client: ledger_with(
            client, entry(ANA_O1, "correction", "2024-05-02", 0, -100, 100, 0, 0, "after-4")
        ),
    ),
    (
        "balances not rebuilt after a new entry",
        "balances_match_ledger",
        lambda client: insert_rows(
            client,
            "fct_ledger_entries",
            [entry("conv-o-4:aff-ana", "accrual", "2024-05-03", 50, 50, 0, 0, 0, "conv-o-4")],
        ),
    ),
    (
        "a balance the ledger does not have",
        "balances_match_ledger",
        lambda client: client.command(
            "INSERT INTO dim_affiliate_balances (tenant_id, affiliate_id, currency, earned_minor)"
            f" VALUES ('{TENANT}', 'aff-ghost', '{BRL}', 0)"
        ),
    ),
]


@pytest.mark.parametrize(
    ("check", "plant"),
    [case[1:] for case in PLANTED_MARTS],
    ids=[case[0] for case in PLANTED_MARTS],
)
def test_mart_check_fails_on_planted_rows(
    client: Any, database: str, check: str, plant: Any
) -> None:
    land_clean_marts(client)
    plant(client)

    results = check_marts(client, database)

    assert failing(results) == {check}
    result = by_name(results)[check]
    assert result.blocking and result.severity == "ERROR"
    assert result.samples, "the offending rows are named"
    assert result.validation["unsuccessful_expectations"] >= 1
    json.dumps(result.metadata())


def test_approved_goes_negative_only_through_a_reversal(client: Any, database: str) -> None:
    land_clean_marts(client)
    # Leo's o-2: paid 1800, then 450 clawed back (approved -450: fine). A second payment of
    # 450 takes approved to -900 through a payment, not a reversal.
    ledger_with(client, entry(LEO_O2, "payment", "2024-05-02", 0, 0, -450, 450, 0, "payout-2"))

    result = by_name(check_marts(client, database))["balances_not_negative_without_reversal"]

    assert not result.passed
    assert result.observed["commissions_owed_without_reversal"] == 1
    assert result.observed["balances_owed_without_reversal"] == 0  # Leo did have a clawback
    assert [(s["kind"], s["entry_id"], s["approved_after"]) for s in result.samples] == [
        ("overdrawing_entry", f"{LEO_O2}|payment|payout-2", -900)
    ]


def test_a_subset_of_checks_reads_only_its_tables(client: Any, database: str) -> None:
    # Only fct_attributions exists (the ledger is not built yet): its check runs alone.
    client.command(
        "CREATE TABLE fct_attributions AS SELECT * FROM generateRandom("
        "'tenant_id String, conversion_id String, model String, share Float64,"
        " credited_amount_minor Int64, credited_net_minor Int64, order_amount_minor Int64,"
        " order_net_minor Int64') LIMIT 0"
    )
    results = check_marts(client, database, names={"attribution_splits_exact"})
    assert [(r.name, r.passed) for r in results] == [("attribution_splits_exact", True)]

    migrate(client, database)
    landing = check_landing(client, database, NOW, names=["dead_letter_rate", "clicks_ids_present"])
    assert [r.name for r in landing] == ["clicks_ids_present", "dead_letter_rate"]

    with pytest.raises(ValueError, match="unknown checks"):
        check_marts(client, database, names={"ledger_balanced"})
