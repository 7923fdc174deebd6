"""Each fraud rule on hand-made frames (no warehouse): it fires on the planted case, with its
evidence and threshold, and stays quiet on clean traffic and just under its threshold."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import polars as pl
import pytest

from pipelines.fraud import FLAGS, RULES, Thresholds, apply, flag_id
from pipelines.fraud.inputs import ADDRESSES, AFFILIATES, IDENTITIES, Inputs, frame
from pipelines.fraud.rules import (
    click_outlier,
    conversion_rate_outlier,
    cookie_stuffing,
    coupon_leakage,
    fast_ctit,
    late_conversions,
    self_referral,
    shared_payout_details,
)
from tests.fraud.builders import AS_OF, TENANT, Sales, at, daily, wobble

DEFAULTS = Thresholds()


def evidence(flags: pl.DataFrame, subject_id: str) -> dict[str, Any]:
    rows = flags.filter(pl.col("subject_id") == subject_id)
    assert rows.height == 1, rows
    parsed = json.loads(rows["evidence"][0])
    assert isinstance(parsed, dict)
    return parsed


def subjects(flags: pl.DataFrame, kind: str) -> set[str]:
    return set(flags.filter(pl.col("subject_kind") == kind)["subject_id"].to_list())


# -- self_referral -------------------------------------------------------------------------------


def test_self_referral_by_email_person_device_or_address() -> None:
    sales = Sales()
    by_email = sales.sale("c1", "ana", at(3))
    by_person = sales.sale("c2", "ana", at(4))
    by_device = sales.sale("c3", "leo", at(5))
    by_address = sales.sale("c4", "leo", at(6))
    clean = sales.sale("c5", "leo", at(7))

    def found(conversion: str, affiliate: str, *evidence: Any) -> dict[str, Any]:
        names = ("email_match", "same_person", "shared_devices", "shared_addresses")
        row = {"tenant_id": TENANT, "conversion_id": conversion, "affiliate_id": affiliate}
        return {**row, **dict(zip(names, evidence, strict=True))}

    identities = frame(
        IDENTITIES,
        [
            found("c1", "ana", True, True, 0, 0),
            found("c2", "ana", False, True, 0, 0),
            found("c3", "leo", False, False, 1, 1),
            found("c4", "leo", False, False, 0, 2),
            found("c5", "leo", False, False, 0, 0),  # nothing shared: no evidence at all
            # Evidence about an affiliate the sale did not credit: not a commission.
            found("c5", "ana", True, True, 0, 0),
        ],
    )
    flags = self_referral(sales.inputs(identities=identities), DEFAULTS)
    assert subjects(flags, "commission") == {by_email, by_person, by_device, by_address}
    assert clean not in set(flags["subject_id"])
    severity = dict(flags.select("subject_id", "severity").iter_rows())
    assert severity == {
        by_email: "likely",
        by_person: "likely",
        by_device: "likely",
        by_address: "suspicious",
    }
    assert evidence(flags, by_device)["shared_devices"] == 1
    assert evidence(flags, by_email)["email_match"] is True
    assert "10 cookies" in flags["threshold"][0]


# -- fast_ctit -------------------------------------------------------------------------------------


def test_fast_ctit_under_15_seconds_likely_under_5() -> None:
    sales = Sales()
    injected = sales.sale("c1", "poacher", at(2), ctit_seconds=2.5)
    quick = sales.sale("c2", "poacher", at(3), ctit_seconds=12)
    sales.sale("c3", "ana", at(4), ctit_seconds=15)  # not under 15 s
    sales.sale("c4", "ana", at(5), ctit_seconds=600)
    sales.sale("c5", "ana", at(6), ctit_seconds=None, coupon=True)  # a coupon, no click
    flags = fast_ctit(sales.inputs(), DEFAULTS)
    assert dict(flags.select("subject_id", "severity").iter_rows()) == {
        injected: "likely",
        quick: "suspicious",
    }
    found = evidence(flags, injected)
    assert found["ctit_seconds"] == 2.5 and found["click_id"] == "k-c1-poacher"
    assert found["converted_at"].endswith("Z")
    assert flags["threshold"][0] == "ctit < 15 s suspicious, < 5 s likely"
    # Per run: a stricter threshold keeps only the injected click.
    strict = fast_ctit(sales.inputs(), replace(DEFAULTS, ctit_suspicious_seconds=5))
    assert set(strict["subject_id"]) == {injected}


# -- coupon_leakage ------------------------------------------------------------------------------


def test_coupon_leakage_needs_a_buyer_who_clicked_someone_else() -> None:
    sales = Sales()
    leaked = sales.sale("c1", "influ", at(2), ctit_seconds=None, coupon=True, via="coupon",
                        others=("cupons",))  # fmt: skip
    own = sales.sale("c2", "influ", at(3), coupon=True, via="coupon", clicks=2)
    clickless = sales.sale("c3", "influ", at(4), ctit_seconds=None, coupon=True, via="coupon")
    sales.sale("c4", "ana", at(5), others=("leo",))  # a click, no coupon
    flags = coupon_leakage(sales.inputs(), DEFAULTS)
    assert set(flags["subject_id"]) == {leaked}
    assert own not in set(flags["subject_id"])
    found = evidence(flags, leaked)
    assert found["other_affiliates"] == ["cupons"] and found["affiliate_clicks"] == 0
    # The literal rule (no touch of the affiliate, whatever else) also flags the clickless one.
    literal = coupon_leakage(sales.inputs(), replace(DEFAULTS, coupon_leakage_without_clicks=True))
    assert dict(literal.select("subject_id", "severity").iter_rows()) == {
        leaked: "likely",
        clickless: "suspicious",
    }


# -- late_conversions ----------------------------------------------------------------------------


def late_world(spammer_late: int, normal_late: int, per_affiliate: int = 40) -> Sales:
    """Four affiliates with `per_affiliate` sales each: `normal_late` of them more than a day
    after the click for ana, leo and bia, `spammer_late` for spam."""
    sales = Sales()
    for affiliate_id, late in (("ana", normal_late), ("leo", normal_late), ("bia", normal_late),
                               ("spam", spammer_late)):  # fmt: skip
        for n in range(per_affiliate):
            ctit = 3 * 86_400 if n < late else 2 * 3600
            sales.sale(f"{affiliate_id}-{n}", affiliate_id, at(1 + n), ctit_seconds=ctit)
    return sales


def test_late_conversions_flags_the_spammer_and_holds_its_late_sales() -> None:
    sales = late_world(spammer_late=30, normal_late=6)
    flags = late_conversions(sales.inputs(), DEFAULTS)
    assert subjects(flags, "affiliate") == {"spam"}
    found = evidence(flags, "spam")
    assert found["conversions"] == 40 and found["late_conversions"] == 30
    assert found["late_share"] == 0.75 and found["tenant_late_share"] == 0.15
    assert found["z"] > 3
    # Its late sales are held, each pointing at the affiliate's flag; its quick ones are not.
    held = flags.filter(pl.col("subject_kind") == "commission")
    assert held.height == 30 and set(held["affiliate_id"]) == {"spam"}
    assert set(held["commission_id"]) == {f"spam-{n}:spam" for n in range(30)}
    parent = flag_id(TENANT, "late_conversions", "affiliate", "spam")
    assert {json.loads(e)["affiliate_flag_id"] for e in held["evidence"]} == {parent}


def test_late_conversions_quiet_on_clean_traffic_and_small_samples() -> None:
    # Everyone equally late (long journeys): above 30%, but nobody stands out.
    assert late_conversions(late_world(16, 16).inputs(), DEFAULTS).is_empty()
    # The absolute rule alone (min z 0) flags them all: why the comparison is on by default.
    absolute = late_conversions(late_world(16, 16).inputs(), replace(DEFAULTS, late_min_z=0))
    assert subjects(absolute, "affiliate") == {"ana", "leo", "bia", "spam"}
    # A spammer with too few conversions is no sample.
    assert late_conversions(late_world(20, 2, per_affiliate=25).inputs(), DEFAULTS).is_empty()
    # Under 30% late is fine whatever the others do.
    assert late_conversions(late_world(11, 0).inputs(), DEFAULTS).is_empty()


# -- cookie_stuffing -----------------------------------------------------------------------------


def test_cookie_stuffing_many_cookies_from_one_address_never_engaged() -> None:
    addresses = frame(
        ADDRESSES,
        [
            {"tenant_id": TENANT, "affiliate_id": "stuffer", "ip_hash": "a" * 32,
             "unengaged_cookies": 25, "unengaged_clicks": 25,
             "first_click_at": at(10), "last_click_at": at(10, -3600)},
            # A busy office sending a few unengaged clicks: below the threshold.
            {"tenant_id": TENANT, "affiliate_id": "ana", "ip_hash": "b" * 32,
             "unengaged_cookies": 9, "unengaged_clicks": 12,
             "first_click_at": at(10), "last_click_at": at(9)},
        ],
    )  # fmt: skip
    sales = Sales()
    stuffed = sales.sale("c1", "stuffer", at(3), ctit_seconds=3 * 86_400, engaged=False)
    sales.sale("c2", "stuffer", at(4), engaged=True)  # its real visitors are not held
    sales.sale("c3", "ana", at(5), engaged=False)  # an ad blocker: not a flagged affiliate
    flags = cookie_stuffing(sales.inputs(addresses=addresses), DEFAULTS)
    assert subjects(flags, "affiliate") == {"stuffer"}
    assert subjects(flags, "commission") == {stuffed}
    found = evidence(flags, "stuffer")
    assert found["addresses"] == 1 and found["unengaged_cookies"] == 25
    assert found["top_addresses"][0]["ip_hash"] == "a" * 12
    two = cookie_stuffing(
        sales.inputs(addresses=addresses), replace(DEFAULTS, stuffing_min_addresses=2)
    )
    assert two.is_empty()


# -- click_outlier / conversion_rate_outlier ----------------------------------------------------


def test_click_outlier_flags_a_burst_not_a_sale_day() -> None:
    days = 60
    series = {
        name: [(c, 0) for c in wobble(base, days, 4, seed)]
        for seed, (name, base) in enumerate((("ana", 40), ("leo", 30), ("bia", 25), ("burst", 20)))
    }
    burst_day = days - 10
    clicks, _ = series["burst"][burst_day]
    series["burst"][burst_day] = (clicks + 90, 0)
    # A sale day: every affiliate triples. Nobody is an outlier against the others.
    sale_day = days - 20
    for name in series:
        clicks, _ = series[name][sale_day]
        series[name][sale_day] = (clicks * 3, 0)
    sales = Sales()
    on_burst = sales.sale("c1", "burst", at(9, -7200), ctit_seconds=3600)  # clicked that day
    sales.sale("c2", "burst", at(5))
    flags = click_outlier(sales.inputs(daily=daily(series)), DEFAULTS)
    assert subjects(flags, "affiliate") == {"burst"}
    found = evidence(flags, "burst")
    assert found["outlier_days"] == 1 and found["max_z"] >= DEFAULTS.outlier_likely_z
    (day,) = found["days"]
    assert day["day"] == str(AS_OF.date() - timedelta(days=days - 1 - burst_day))
    assert day["clicks"] >= 100 and 15 < day["expected_clicks"] < 30
    assert subjects(flags, "commission") == {on_burst}
    assert flags.filter(pl.col("subject_kind") == "affiliate")["severity"][0] == "likely"


def test_click_outlier_needs_history() -> None:
    # A new affiliate (10 days) whose clicks jump is not judged: no history to leave.
    series = {
        "ana": [(c, 0) for c in wobble(40, 60, 4)],
        "new": [(10, 0)] * 9 + [(120, 0)],  # its first clicks 10 days ago
    }
    assert click_outlier(Sales().inputs(daily=daily(series)), DEFAULTS).is_empty()
    # The same jump after 20 days of history is one.
    series["new"] = [(10, 0)] * 19 + [(120, 0)]
    flags = click_outlier(Sales().inputs(daily=daily(series)), DEFAULTS)
    assert subjects(flags, "affiliate") == {"new"}


def test_conversion_rate_outlier_flags_fake_orders() -> None:
    days = 60
    series = {
        name: list(zip(wobble(100, days, 5, seed), wobble(10, days, 2, seed + 1), strict=True))
        for seed, name in enumerate(("ana", "leo", "bia", "fake"))
    }
    fake_day = days - 5
    clicks, conversions = series["fake"][fake_day]
    series["fake"][fake_day] = (clicks + 30, conversions + 30)
    sales = Sales()
    faked = sales.sale("c1", "fake", at(4, -3600))  # converted on the burst day
    flags = conversion_rate_outlier(sales.inputs(daily=daily(series)), DEFAULTS)
    assert subjects(flags, "affiliate") == {"fake"}
    (day,) = evidence(flags, "fake")["days"]
    assert day["conversions"] >= 38 and day["expected_conversions"] < 15
    assert subjects(flags, "commission") == {faked}
    # Without the burst: quiet.
    series["fake"][fake_day] = (clicks, conversions)
    assert conversion_rate_outlier(Sales().inputs(daily=daily(series)), DEFAULTS).is_empty()


# -- shared_payout_details -----------------------------------------------------------------------


def test_shared_payout_details_within_a_tenant() -> None:
    def account(affiliate: str, fingerprint: str, tenant: str = TENANT) -> dict[str, Any]:
        return {"tenant_id": tenant, "affiliate_id": affiliate, "status": "approved",
                "payout_fingerprint": fingerprint}  # fmt: skip

    affiliates = frame(
        AFFILIATES,
        [
            account("a1", "f" * 64),
            account("a2", "f" * 64),
            account("a3", "e" * 64),
            account("a4", ""),  # no payout account set: never "shared"
            account("a5", ""),
            account("b1", "e" * 64, "t-2"),  # the same account in another tenant
        ],
    )
    sales = Sales()
    held = sales.sale("c1", "a1", at(3))
    sales.sale("c2", "a3", at(3))
    flags = shared_payout_details(sales.inputs(affiliates=affiliates), DEFAULTS)
    assert subjects(flags, "affiliate") == {"a1", "a2"}
    assert evidence(flags, "a1")["other_affiliates"] == ["a2"]
    assert subjects(flags, "commission") == {held}


# -- all rules together --------------------------------------------------------------------------


def planted() -> Inputs:
    sales = Sales()
    sales.sale("c1", "poacher", at(70), ctit_seconds=2, renewals=2)
    sales.sale("c2", "ana", at(3))
    return sales.inputs()


def test_apply_gives_fraud_flags_rows_with_stable_ids_and_renewals_inherit() -> None:
    flags = apply(planted(), DEFAULTS)
    assert flags.schema == pl.Schema(FLAGS)
    assert set(flags["commission_id"]) == {"c1:poacher", "c1-r1:poacher", "c1-r2:poacher"}
    renewal = evidence(flags, "c1-r2:poacher")
    assert renewal["inherited_from"] == "c1:poacher" and renewal["renewal_number"] == 2
    assert renewal["first_payment"]["ctit_seconds"] == 2
    assert flags["flag_id"][0] == flag_id(TENANT, "fast_ctit", "commission", flags["subject_id"][0])
    again = apply(planted(), DEFAULTS)
    assert again["flag_id"].to_list() == flags["flag_id"].to_list()
    assert flags["flag_id"].n_unique() == flags.height
    assert set(flags["run_id"]) == {""}


def test_clean_traffic_flags_nothing() -> None:
    sales = Sales()
    for n in range(60):
        sales.sale(
            f"c{n}", ("ana", "leo", "bia")[n % 3], at(n % 80 + 1), ctit_seconds=3600 * (1 + n % 30)
        )
    series = {
        name: list(zip(wobble(60, 100, 6, seed), wobble(6, 100, 2, seed), strict=True))
        for seed, name in enumerate(("ana", "leo", "bia"))
    }
    assert apply(sales.inputs(daily=daily(series)), DEFAULTS).is_empty()


def test_thresholds_are_checked_and_overridable() -> None:
    assert Thresholds.from_mapping({"ctit_likely_seconds": 3}).ctit_likely_seconds == 3
    with pytest.raises(ValueError, match="unknown fraud thresholds: ctit_seconds"):
        Thresholds.from_mapping({"ctit_seconds": 3})
    with pytest.raises(ValueError):
        Thresholds(ctit_likely_seconds=20)
    with pytest.raises(ValueError, match="unknown fraud rules"):
        apply(planted(), DEFAULTS, rules=["fast_ctit", "typo"])
    only = apply(planted(), DEFAULTS, rules=["self_referral"])
    assert only.is_empty()
    assert set(RULES) == {
        "self_referral", "fast_ctit", "late_conversions", "cookie_stuffing", "click_outlier",
        "conversion_rate_outlier", "coupon_leakage", "shared_payout_details",
    }  # fmt: skip


def test_rules_of_one_tenant_ignore_another() -> None:
    sales = Sales()
    sales.sale("c1", "poacher", at(2), ctit_seconds=1, tenant_id="t-2")
    flags = apply(sales.inputs(), DEFAULTS)
    assert set(flags["tenant_id"]) == {"t-2"}
    assert flags["flag_id"][0] == flag_id("t-2", "fast_ctit", "commission", "c1:poacher")
    assert flags["flag_id"][0] != flag_id(TENANT, "fast_ctit", "commission", "c1:poacher")
