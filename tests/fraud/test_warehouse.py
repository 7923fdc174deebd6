"""Fraud detection end to end on a real warehouse: hand-made landing rows with planted fraud
and a clean sale, `dbt run` of Rastro's models, `detect`, `record` twice (the same flags, each
hold once), then the ledger: a held commission is not approved when its hold period ends.

The tenant's campaign: last click, 30 days, holds of 30 days, 10% of net, default conflict
rules (coupon wins, self-referral excluded: attribution cannot see this one, see `selfie`).
Times are days after T0, 60 days ago: personal data (cookies, addresses) older than the TTL
would be cleared by the tables themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.dbt import run_dbt
from pipelines.fraud import Thresholds, detect, record
from rastro.schema.migrate import migrate
from rastro.warehouse.client import insert_rows
from tests.conftest import client_for

TENANT = "t-fraud"
T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=60)
AS_OF = T0 + timedelta(days=30, seconds=-1)
RECORDED_AT = AS_OF + timedelta(hours=6)  # before any hold period ends (the first: day 39)
LATER = T0 + timedelta(days=60, seconds=-1)  # after every hold period
AFFILIATES = ("ana", "poacher", "influ", "cupons", "selfie", "stuffer", "ring1", "ring2")


def at(when: str) -> datetime:
    """The time of day "HH:MM[:SS]" of `day` days after T0, from "<day> HH:MM[:SS]"."""
    day, clock = when.split(" ")
    hours, minutes, *seconds = (int(part) for part in clock.split(":"))
    return T0 + timedelta(days=int(day), hours=hours, minutes=minutes, seconds=sum(seconds))


def stamps() -> dict[str, Any]:
    return {"created_at": at("-30 00:00"), "updated_at": at("-30 00:00"), "version": 1}


def click(
    click_id: str, ts: str, affiliate: str, cookie: str, ip: str = "", agent: str = "UA-1"
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{click_id}",
        "click_id": click_id,
        "source": "redirect",
        "link_id": f"link-{affiliate}",
        "link_code": affiliate.upper(),
        "affiliate_id": affiliate,
        "campaign_id": "camp-1",
        "campaign_terms_version": 1,
        "cookie_id": cookie,
        "ip_hash": ip or f"ip-{cookie}",
        "user_agent": agent,
        "received_at": at(ts),
    }


def page(
    event_id: str,
    ts: str,
    cookie: str,
    *,
    click_id: str = "",
    email_hash: str = "",
    kind: str = "page_view",
    ip: str = "",
    agent: str = "UA-1",
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": event_id,
        "type": kind,
        "click_id": click_id,
        "cookie_id": cookie,
        "email_hash": email_hash,
        "consent": "unknown",
        "ip_hash": ip or f"ip-{cookie}",
        "user_agent": agent,
        "received_at": at(ts),
    }


def order(
    order_id: str,
    ts: str,
    *,
    click_id: str = "",
    cookie: str = "",
    coupons: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "ts": at(ts),
        "event_id": f"ev-{order_id}",
        "conversion_id": f"conv-{order_id}",
        "order_id": order_id,
        "version": 1,
        "amount_minor": 10000,
        "net_minor": 9000,
        "currency": "BRL",
        "coupon_codes": coupons or [],
        "click_id": click_id,
        "cookie_id": cookie,
        "email_hash": f"eh-buyer-{order_id}",
        "is_new_customer": True,
        "source": "s2s",
        "received_at": at(ts),
    }


def land(client: Any) -> None:
    insert_rows(
        client,
        "campaigns",
        [
            {
                "tenant_id": TENANT,
                "campaign_id": "camp-1",
                "terms_version": 1,
                "name": "Geral",
                "status": "active",
                "valid_from": at("-30 00:00"),
                "valid_to": None,
                "attribution_model": "last_click",
                "attribution_window_days": 30,
                "hold_days": 30,
                "commission_rules": json.dumps(
                    [{"id": "base", "type": "percent", "rate": "0.10", "base": "net"}]
                ),
                "conflict_rules": "{}",
                **stamps(),
            }
        ],
    )
    insert_rows(
        client,
        "affiliates",
        [
            {
                "tenant_id": TENANT,
                "id": name,
                "display_name": name,
                "status": "approved",
                "segment": "content",
                "email_hash": f"eh-{name}",
                # ring1 and ring2: one person, two accounts, one payout account.
                "payout_fingerprint": "fp-ring" if name.startswith("ring") else f"fp-{name}",
                **stamps(),
            }
            for name in AFFILIATES
        ],
    )
    links = [
        {"tenant_id": TENANT, "id": f"link-{name}", "kind": "link", "code": name.upper(),
         "affiliate_id": name, "campaign_id": "camp-1", "status": "active", **stamps()}
        for name in AFFILIATES
    ]  # fmt: skip
    links.append(
        {"tenant_id": TENANT, "id": "coupon-influ", "kind": "coupon", "code": "INFLU10",
         "affiliate_id": "influ", "campaign_id": "camp-1", "status": "active", **stamps()}
    )  # fmt: skip
    insert_rows(client, "links", links)
    stuffing = [
        click(f"k-stuff-{n}", f"4 03:{n:02d}", "stuffer", f"fresh-{n}", ip="ip-server")
        for n in range(12)
    ]
    insert_rows(
        client,
        "clicks",
        [
            click("k-ana", "9 10:00", "ana", "ck-1"),  # clean: 2 h before the order
            click("k-poach", "11 10:00:00", "poacher", "ck-2"),
            click("k-cupons", "13 09:00", "cupons", "ck-3"),
            # The affiliate's own phone (the address and agent it logged in from at home).
            click("k-self", "15 10:00", "selfie", "buy-ck", ip="ip-home", agent="UA-home"),
            click("k-stuffed", "17 09:00", "stuffer", "vic-ck"),
            *stuffing,
        ],
    )
    pages = [
        page("pe-ana", "9 10:00:02", "tag-1", click_id="k-ana"),
        page("pe-cupons", "13 09:00:02", "tag-3", click_id="k-cupons"),
        # selfie at home: logged in with the affiliate's own email, in another browser.
        page("pe-home", "0 20:00", "home-ck", email_hash="eh-selfie", kind="identify",
             ip="ip-home", agent="UA-home"),
        page("pe-self", "15 10:00:02", "buy-tag", click_id="k-self", ip="ip-home",
             agent="UA-home"),
    ]  # fmt: skip
    insert_rows(client, "page_events", pages)
    insert_rows(
        client,
        "conversions",
        [
            order("o-clean", "9 12:00", click_id="k-ana"),
            order("o-poach", "11 10:00:03", click_id="k-poach"),
            order("o-leak", "13 10:00", click_id="k-cupons", coupons=["influ10"]),
            order("o-self", "15 12:00", click_id="k-self"),
            order("o-stuffed", "18 12:00", cookie="vic-ck"),
        ],
    )


def dbt_run(warehouse_url: str, database: str, work_dir: Path, as_of: str) -> None:
    result = run_dbt(
        ["run", "--vars", json.dumps({"ledger__as_of": as_of})],
        warehouse_url,
        database,
        work_dir=work_dir,
        capture=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


@pytest.fixture(scope="module")
def warehouse(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str, Path]]:
    """One database for the module: landed and built once (dbt takes seconds)."""
    database = "test_fraud_" + datetime.now(UTC).strftime("%H%M%S%f")
    admin = client_for(warehouse_url)
    admin.command(f"CREATE DATABASE {database}")
    client = client_for(warehouse_url, database=database)
    work_dir = tmp_path_factory.mktemp("fraud-dbt")
    try:
        migrate(client, database)
        land(client)
        dbt_run(warehouse_url, database, work_dir, AS_OF.isoformat())
        yield client, database, work_dir
    finally:
        client.close()
        admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        admin.close()


def found(flags: pl.DataFrame) -> set[tuple[str, str, str]]:
    return set(flags.select("rule", "subject_kind", "subject_id").iter_rows())


def test_detect_finds_the_planted_fraud_and_nothing_else(warehouse: tuple[Any, str, Path]) -> None:
    client, database, _ = warehouse
    flags = detect(client, database, AS_OF, Thresholds())
    assert found(flags) == {
        ("fast_ctit", "commission", "conv-o-poach:poacher"),
        ("coupon_leakage", "commission", "conv-o-leak:influ"),
        ("self_referral", "commission", "conv-o-self:selfie"),
        ("cookie_stuffing", "affiliate", "stuffer"),
        ("cookie_stuffing", "commission", "conv-o-stuffed:stuffer"),
        ("shared_payout_details", "affiliate", "ring1"),
        ("shared_payout_details", "affiliate", "ring2"),
    }
    assert set(flags["tenant_id"]) == {TENANT}
    by_rule = {row["rule"] + ":" + row["subject_kind"]: row for row in flags.iter_rows(named=True)}
    self_ref = json.loads(by_rule["self_referral:commission"]["evidence"])
    # Attribution could not see it (another email, no shared identifier): the device did.
    assert self_ref["email_match"] is False and self_ref["same_person"] is False
    assert self_ref["shared_devices"] == 1
    assert json.loads(by_rule["fast_ctit:commission"]["evidence"])["ctit_seconds"] == 3.0
    leak = json.loads(by_rule["coupon_leakage:commission"]["evidence"])
    assert leak["other_affiliates"] == ["cupons"] and leak["via"] == "coupon"
    stuffing = json.loads(by_rule["cookie_stuffing:affiliate"]["evidence"])
    assert stuffing["addresses"] == 1 and stuffing["unengaged_cookies"] == 12
    # Data after as_of, or before the lookback, is not judged.
    assert (
        detect(client, database, at("10 00:00"), Thresholds())
        .filter(pl.col("subject_kind") == "commission")
        .is_empty()
    )
    assert (
        detect(client, database, AS_OF, Thresholds(lookback_days=10))
        .filter(pl.col("rule") == "fast_ctit")
        .is_empty()
    )
    # Per tenant: another tenant's run finds nothing here.
    assert detect(client, database, AS_OF, tenants=["t-other"]).is_empty()


def test_record_twice_same_flags_holds_once_and_the_ledger_keeps_them_pending(
    warehouse: tuple[Any, str, Path], warehouse_url: str
) -> None:
    client, database, work_dir = warehouse
    flags = detect(client, database, AS_OF, Thresholds())
    first = record(client, database, flags, "run-1", at=RECORDED_AT)
    assert (first.flags, first.holds, first.holds_existing) == (flags.height, 4, 0)
    again = record(client, database, detect(client, database, AS_OF), "run-2", at=RECORDED_AT)
    assert (again.flags, again.holds, again.holds_existing) == (flags.height, 0, 4)

    stored = client.query(
        "SELECT flag_id, rule, subject_id, commission_id, run_id FROM fraud_flags FINAL"
    ).result_rows
    assert len(stored) == flags.height  # re-found flags replaced their rows
    assert {row[4] for row in stored} == {"run-2"}
    holds = client.query(
        "SELECT commission_id, decision, decided_by, reason FROM commission_decisions FINAL "
        "ORDER BY commission_id"
    ).result_rows
    assert [(c, d, by) for c, d, by, _ in holds] == [
        ("conv-o-leak:influ", "hold", "rule:coupon_leakage"),
        ("conv-o-poach:poacher", "hold", "rule:fast_ctit"),
        ("conv-o-self:selfie", "hold", "rule:self_referral"),
        ("conv-o-stuffed:stuffer", "hold", "rule:cookie_stuffing"),
    ]
    poach_reason = next(reason for c, _, _, reason in holds if c == "conv-o-poach:poacher")
    assert "3.0 s before the order" in poach_reason and "ctit < 15 s" in poach_reason

    # After the hold periods: the clean sale is approved, the held ones stay pending.
    dbt_run(warehouse_url, database, work_dir, LATER.isoformat())
    entries = client.query(
        "SELECT commission_id, groupArray(entry_type) FROM "
        "(SELECT * FROM fct_ledger_entries ORDER BY effective_at) GROUP BY commission_id"
    ).result_rows
    history = {commission: types for commission, types in entries}
    assert history["conv-o-clean:ana"] == ["accrual", "approval"]
    for held in ("conv-o-poach:poacher", "conv-o-leak:influ", "conv-o-self:selfie"):
        assert history[held] == ["accrual"], (held, history[held])
