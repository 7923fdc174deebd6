"""The fraud rules, on the frames of inputs.py: pure polars, no warehouse. Each rule returns
flags (FLAGS: one row per subject it fired on) with the evidence as a JSON object and the
threshold as configured; docs/fraud.md explains each rule, its evidence and its threshold.

Subjects: a commission (the rules on one sale: self_referral, fast_ctit, coupon_leakage) or
an affiliate (the rules on a pattern: late_conversions, cookie_stuffing, click_outlier,
conversion_rate_outlier, shared_payout_details). An affiliate flag also flags, under the same
rule, the commissions its evidence points at (the late ones, those of the outlier days, ...),
so that they are held for review; and a renewal's commission carries its first payment's
flags (it inherits its credit).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from pipelines.fraud.inputs import TIME, Inputs
from pipelines.fraud.thresholds import Thresholds

RULES = (
    "self_referral",
    "fast_ctit",
    "late_conversions",
    "cookie_stuffing",
    "click_outlier",
    "conversion_rate_outlier",
    "coupon_leakage",
    "shared_payout_details",
)
COMMISSION_RULES = ("self_referral", "fast_ctit", "coupon_leakage")
AFFILIATE_RULES = tuple(rule for rule in RULES if rule not in COMMISSION_RULES)

# The columns of the fraud_flags table (rastro/schema/tables.py, FRAUD_FLAGS).
FLAGS: dict[str, pl.DataType] = {
    "tenant_id": pl.String(),
    "flag_id": pl.String(),
    "rule": pl.String(),
    "subject_kind": pl.String(),  # commission | affiliate
    "subject_id": pl.String(),
    "affiliate_id": pl.String(),
    "commission_id": pl.String(),  # the commission to hold; "" for an affiliate flag
    "severity": pl.String(),  # suspicious | likely
    "evidence": pl.String(),  # JSON object
    "threshold": pl.String(),
    "flagged_at": TIME,
    "run_id": pl.String(),
}
_FINDING = [name for name in FLAGS if name not in ("flag_id", "flagged_at", "run_id")]
MAD_TO_SD = 0.6745  # MAD x 1.4826 estimates the standard deviation: z = 0.6745 (x - m) / MAD
_SALE = ["tenant_id", "conversion_id", "affiliate_id"]  # one affiliate's part in one sale


def flag_id(tenant_id: str, rule: str, subject_kind: str, subject_id: str) -> str:
    """The same finding, the same id: a hash of tenant, rule and subject."""
    key = "\x1f".join((tenant_id, rule, subject_kind, subject_id))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _findings(rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """Rows of (tenant_id, rule, subject_kind, subject_id, affiliate_id, commission_id,
    severity, evidence: dict, threshold) as a frame of the finding columns."""
    records = [{**row, "evidence": _json(row["evidence"])} for row in rows]
    return pl.DataFrame(records, schema={name: FLAGS[name] for name in _FINDING}, orient="row")


def _first_payments(inputs: Inputs) -> pl.DataFrame:
    return inputs.commissions.filter(pl.col("renewal_number") == 0)


def _ctit(inputs: Inputs) -> pl.DataFrame:
    """First-payment commissions with their credited affiliate's latest eligible click."""
    return (
        _first_payments(inputs)
        .join(
            inputs.touches.select(
                *_SALE,
                "last_click_at",
                "last_click_id",
                "last_click_engaged",
            ),
            on=_SALE,
            how="left",
        )
        .with_columns(
            ctit_seconds=(pl.col("converted_at") - pl.col("last_click_at")).dt.total_milliseconds()
            / 1000
        )
    )


# -- rules on one commission ---------------------------------------------------------------------


def self_referral(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """The affiliate and the buyer share an identity: the same email hash, the affiliate's
    email in the buyer's identity component, or a device (IP hash and user agent) or an
    address (IP hash) of the affiliate's own browsers on the buyer's."""
    found = _first_payments(inputs).join(inputs.identities, on=_SALE, how="inner")
    threshold = (
        "same email hash, same identity component, or a device or address shared "
        f"(addresses seen with at most {thresholds.self_referral_max_cookies_per_address} "
        "cookies)"
    )
    rows = []
    for row in found.iter_rows(named=True):
        strong = row["email_match"] or row["same_person"] or row["shared_devices"] > 0
        if not strong and row["shared_addresses"] == 0:
            continue
        rows.append(
            _commission_flag(
                row,
                "self_referral",
                "likely" if strong else "suspicious",
                {
                    "conversion_id": row["conversion_id"],
                    "converted_at": row["converted_at"],
                    "email_match": row["email_match"],
                    "same_person": row["same_person"],
                    "shared_devices": row["shared_devices"],
                    "shared_addresses": row["shared_addresses"],
                },
                threshold,
            )
        )
    return _findings(rows)


def fast_ctit(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """The credited affiliate's latest click came seconds before the conversion: a click
    injected at checkout (coupon poaching, a browser extension)."""
    found = _ctit(inputs).filter(
        pl.col("ctit_seconds").is_not_null()
        & (pl.col("ctit_seconds") < thresholds.ctit_suspicious_seconds)
    )
    threshold = (
        f"ctit < {thresholds.ctit_suspicious_seconds:g} s suspicious, "
        f"< {thresholds.ctit_likely_seconds:g} s likely"
    )
    rows = [
        _commission_flag(
            row,
            "fast_ctit",
            "likely" if row["ctit_seconds"] < thresholds.ctit_likely_seconds else "suspicious",
            {
                "conversion_id": row["conversion_id"],
                "click_id": row["last_click_id"],
                "clicked_at": row["last_click_at"],
                "converted_at": row["converted_at"],
                "ctit_seconds": _round(row["ctit_seconds"]),
            },
            threshold,
        )
        for row in found.iter_rows(named=True)
    ]
    return _findings(rows)


def coupon_leakage(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """A commission earned by the affiliate's coupon on an order whose buyer never clicked
    that affiliate, but clicked others: the code reached the buyer through someone else (a
    coupon site). Without any click at all, only with `coupon_leakage_without_clicks`."""
    touches = inputs.touches
    per_conversion = touches.group_by("tenant_id", "conversion_id").agg(
        pl.col("clicks").sum().alias("all_clicks"),
        pl.col("affiliate_id").filter(pl.col("clicks") > 0).sort().alias("clicked"),
    )
    found = (
        _first_payments(inputs)
        .join(
            touches.select(*_SALE, "clicks", "coupon"),
            on=_SALE,
            how="inner",
        )
        .filter(pl.col("coupon") & (pl.col("clicks") == 0))
        .join(per_conversion, on=["tenant_id", "conversion_id"], how="left")
    )
    threshold = "coupon credited, no click of its affiliate" + (
        "" if thresholds.coupon_leakage_without_clicks else ", another affiliate clicked"
    )
    rows = []
    for row in found.iter_rows(named=True):
        others = row["clicked"] or []
        if not others and not thresholds.coupon_leakage_without_clicks:
            continue
        rows.append(
            _commission_flag(
                row,
                "coupon_leakage",
                "likely" if others else "suspicious",
                {
                    "conversion_id": row["conversion_id"],
                    "converted_at": row["converted_at"],
                    "via": row["via"],
                    "affiliate_clicks": 0,
                    "other_affiliates_clicked": len(others),
                    "other_affiliates": others[:5],
                },
                threshold,
            )
        )
    return _findings(rows)


def _commission_flag(
    row: dict[str, Any], rule: str, severity: str, evidence: dict[str, Any], threshold: str
) -> dict[str, Any]:
    return {
        "tenant_id": row["tenant_id"],
        "rule": rule,
        "subject_kind": "commission",
        "subject_id": row["commission_id"],
        "affiliate_id": row["affiliate_id"],
        "commission_id": row["commission_id"],
        "severity": severity,
        "evidence": evidence,
        "threshold": threshold,
    }


# -- rules on an affiliate's pattern ------------------------------------------------------------


def late_conversions(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Click spamming: more than `late_max_share` of the affiliate's conversions came more
    than `late_after_hours` after its click, over at least `late_min_conversions`, and its
    share stands out from its tenant's other affiliates' (binomial z >= `late_min_z`)."""
    late_after = thresholds.late_after_hours * 3600
    measured = _ctit(inputs).filter(pl.col("ctit_seconds").is_not_null())
    measured = measured.with_columns(late=pl.col("ctit_seconds") > late_after)
    per_affiliate = measured.group_by("tenant_id", "affiliate_id").agg(
        conversions=pl.len(), late=pl.col("late").sum()
    )
    totals = per_affiliate.group_by("tenant_id").agg(
        tenant_conversions=pl.col("conversions").sum(), tenant_late=pl.col("late").sum()
    )
    scored = (
        per_affiliate.join(totals, on="tenant_id")
        .with_columns(
            share=pl.col("late") / pl.col("conversions"),
            others=(pl.col("tenant_late") - pl.col("late"))
            / (pl.col("tenant_conversions") - pl.col("conversions")),
        )
        .with_columns(
            z=(pl.col("share") - pl.col("others"))
            / (pl.col("others") * (1 - pl.col("others")) / pl.col("conversions")).sqrt()
        )
    )
    threshold = (
        f"late (> {thresholds.late_after_hours:g} h) share > {thresholds.late_max_share:g} "
        f"of >= {thresholds.late_min_conversions} conversions"
        + (f", z >= {thresholds.late_min_z:g} vs the tenant" if thresholds.late_min_z else "")
    )
    found = scored.filter(
        (pl.col("conversions") >= thresholds.late_min_conversions)
        & (pl.col("share") > thresholds.late_max_share)
        & (
            pl.lit(thresholds.late_min_z <= 0)
            | (pl.col("z").fill_nan(float("inf")) >= thresholds.late_min_z)
        )
    )
    rows = []
    for row in found.iter_rows(named=True):
        z = row["z"]
        rows.append(
            _affiliate_flag(
                row,
                "late_conversions",
                "suspicious",
                {
                    "conversions": row["conversions"],
                    "late_conversions": row["late"],
                    "late_share": _round(row["share"]),
                    "tenant_late_share": _round(row["others"]),
                    "z": None if z is None or z != z or abs(z) == float("inf") else _round(z),
                    "late_after_hours": thresholds.late_after_hours,
                },
                threshold,
            )
        )
    flags = _findings(rows)
    implicated = measured.filter(pl.col("late")).select(
        "tenant_id",
        "affiliate_id",
        "commission_id",
        evidence=pl.struct(
            "conversion_id", "converted_at", ctit_hours=(pl.col("ctit_seconds") / 3600).round(2)
        ),
    )
    return _with_implicated(flags, implicated)


def cookie_stuffing(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Addresses whose clicks on the affiliate's links each brought a new cookie and never
    came back (no page of the site, no order with the click id): a server dropping cookies."""
    addresses = inputs.addresses.filter(
        pl.col("unengaged_cookies") >= thresholds.stuffing_min_cookies_per_address
    )
    per_affiliate = (
        addresses.sort("unengaged_cookies", descending=True)
        .group_by("tenant_id", "affiliate_id")
        .agg(
            addresses=pl.len(),
            cookies=pl.col("unengaged_cookies").sum(),
            clicks=pl.col("unengaged_clicks").sum(),
            top=pl.struct(
                ip_hash=pl.col("ip_hash").str.slice(0, 12),
                cookies=pl.col("unengaged_cookies"),
                first_click_at=pl.col("first_click_at"),
                last_click_at=pl.col("last_click_at"),
            ).head(5),
        )
        .filter(pl.col("addresses") >= thresholds.stuffing_min_addresses)
    )
    threshold = (
        f">= {thresholds.stuffing_min_addresses} address(es) with >= "
        f"{thresholds.stuffing_min_cookies_per_address} cookies of never-engaged clicks"
    )
    rows = [
        _affiliate_flag(
            row,
            "cookie_stuffing",
            "likely",
            {
                "addresses": row["addresses"],
                "unengaged_cookies": row["cookies"],
                "unengaged_clicks": row["clicks"],
                "top_addresses": row["top"],
            },
            threshold,
        )
        for row in per_affiliate.iter_rows(named=True)
    ]
    implicated = (
        _ctit(inputs)
        .filter(pl.col("last_click_id").fill_null("") != "")
        .filter(~pl.col("last_click_engaged").fill_null(True))
        .select(
            "tenant_id",
            "affiliate_id",
            "commission_id",
            evidence=pl.struct(
                "conversion_id", "converted_at", unengaged_click_id=pl.col("last_click_id")
            ),
        )
    )
    return _with_implicated(_findings(rows), implicated)


def click_outlier(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Days whose clicks on the affiliate's links are far above its own history. Measured
    as its share of the clicks of the tenant's other affiliates that day, so that a sale
    day, a launch or a season, which lift every affiliate, flag none: robust z-score of the
    day's clicks against those the history's median share predicts, the MAD never below
    their Poisson spread."""
    days = _daily_series(inputs, thresholds).with_columns(
        scale=pl.col("other_clicks").cast(pl.Float64),
    )
    days = days.with_columns(
        value=pl.when(pl.col("scale") > 0).then(pl.col("clicks") / pl.col("scale")),
        observed=pl.col("clicks").cast(pl.Float64),
    )
    scored = _scored(_history(days, thresholds), MAD_TO_SD)
    outliers = scored.filter(
        (pl.col("z") >= thresholds.outlier_z)
        & (pl.col("observed") >= thresholds.outlier_min_ratio * pl.col("expected"))
        & (pl.col("clicks") >= thresholds.click_outlier_min_clicks)
    )
    threshold = (
        f"robust z >= {thresholds.outlier_z:g} (likely >= {thresholds.outlier_likely_z:g}) "
        f"and >= {thresholds.outlier_min_ratio:g}x the expected clicks, from the "
        f"{thresholds.outlier_history_days} days before (share of the tenant's other "
        f"affiliates' clicks), >= {thresholds.outlier_min_history_days} days of history, >= "
        f"{thresholds.click_outlier_min_clicks} clicks"
    )
    detail = pl.struct(
        "day",
        "clicks",
        expected_clicks=pl.col("expected").round(1),
        other_affiliates_clicks="other_clicks",
        z=pl.col("z").round(2),
    )
    flags = _outlier_flags(outliers, detail, "click_outlier", thresholds, threshold)
    implicated = _on_outlier_days(_ctit(inputs), "last_click_at", outliers, "click_day")
    return _with_implicated(flags, implicated)


def conversion_rate_outlier(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Days whose conversion rate (payable conversions / clicks) is far above the
    affiliate's own. Measured against the rate of the tenant's other affiliates that day
    (terms changes and seasons move every rate), on days with enough clicks: robust z-score
    of the day's conversions against those the history's median relative rate predicts, the
    MAD never below their Poisson spread."""
    others_rate = pl.col("other_conversions") / pl.col("other_clicks")
    days = (
        _daily_series(inputs, thresholds)
        .with_columns(
            scale=pl.when(
                (pl.col("clicks") >= thresholds.conversion_rate_min_clicks)
                & (pl.col("other_conversions") > 0)
            ).then(pl.col("clicks") * others_rate),
            observed=pl.col("conversions").cast(pl.Float64),
        )
        .with_columns(value=pl.col("conversions") / pl.col("scale"))
    )
    scored = _scored(_history(days, thresholds), MAD_TO_SD)
    outliers = scored.filter(
        (pl.col("z") >= thresholds.outlier_z)
        & (pl.col("observed") >= thresholds.outlier_min_ratio * pl.col("expected"))
        & (pl.col("conversions") >= thresholds.conversion_rate_min_conversions)
    )
    threshold = (
        f"robust z >= {thresholds.outlier_z:g} (likely >= {thresholds.outlier_likely_z:g}) "
        f"and >= {thresholds.outlier_min_ratio:g}x the expected conversions, from the "
        f"{thresholds.outlier_history_days} days before (rate relative to the tenant's other "
        f"affiliates'), >= {thresholds.outlier_min_history_days} days of history with >= "
        f"{thresholds.conversion_rate_min_clicks} clicks, >= "
        f"{thresholds.conversion_rate_min_conversions} conversions"
    )
    detail = pl.struct(
        "day",
        "clicks",
        "conversions",
        expected_conversions=pl.col("expected").round(1),
        rate=(pl.col("conversions") / pl.col("clicks")).round(4),
        other_affiliates_rate=others_rate.round(4),
        z=pl.col("z").round(2),
    )
    flags = _outlier_flags(outliers, detail, "conversion_rate_outlier", thresholds, threshold)
    implicated = _on_outlier_days(
        _first_payments(inputs), "converted_at", outliers, "conversion_day"
    )
    return _with_implicated(flags, implicated)


def shared_payout_details(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Affiliates of one tenant paid into the same account (payout_fingerprint): one person
    behind several partner accounts."""
    groups = (
        inputs.affiliates.filter(pl.col("payout_fingerprint") != "")
        .group_by("tenant_id", "payout_fingerprint")
        .agg(pl.col("affiliate_id").sort().alias("members"))
        .filter(pl.col("members").list.len() >= thresholds.shared_payout_min_affiliates)
    )
    threshold = f">= {thresholds.shared_payout_min_affiliates} affiliates on one payout account"
    rows = []
    for group in groups.iter_rows(named=True):
        members = group["members"]
        for affiliate_id in members:
            rows.append(
                _affiliate_flag(
                    {"tenant_id": group["tenant_id"], "affiliate_id": affiliate_id},
                    "shared_payout_details",
                    "likely",
                    {
                        "payout_fingerprint": group["payout_fingerprint"][:12],
                        "affiliates_sharing": len(members),
                        "other_affiliates": [m for m in members if m != affiliate_id][:10],
                    },
                    threshold,
                )
            )
    implicated = _first_payments(inputs).select(
        "tenant_id",
        "affiliate_id",
        "commission_id",
        evidence=pl.struct("conversion_id", "converted_at"),
    )
    return _with_implicated(_findings(rows), implicated)


def _affiliate_flag(
    row: dict[str, Any], rule: str, severity: str, evidence: dict[str, Any], threshold: str
) -> dict[str, Any]:
    return {
        "tenant_id": row["tenant_id"],
        "rule": rule,
        "subject_kind": "affiliate",
        "subject_id": row["affiliate_id"],
        "affiliate_id": row["affiliate_id"],
        "commission_id": "",
        "severity": severity,
        "evidence": evidence,
        "threshold": threshold,
    }


def _on_outlier_days(
    commissions: pl.DataFrame, at: str, outliers: pl.DataFrame, day_name: str
) -> pl.DataFrame:
    """The commissions whose `at` falls on one of their affiliate's outlier days, with the
    evidence of each (the day named `day_name`)."""
    return (
        commissions.filter(pl.col(at).is_not_null())
        .with_columns(day=pl.col(at).dt.date())
        .join(
            outliers.select("tenant_id", "affiliate_id", "day"),
            on=["tenant_id", "affiliate_id", "day"],
            how="semi",
        )
        .select(
            "tenant_id",
            "affiliate_id",
            "commission_id",
            evidence=pl.struct("conversion_id", "converted_at", pl.col("day").alias(day_name)),
        )
    )


def _with_implicated(flags: pl.DataFrame, implicated: pl.DataFrame) -> pl.DataFrame:
    """The affiliate flags, and a flag of the same rule on each commission of a flagged
    affiliate that `implicated` names (tenant_id, affiliate_id, commission_id, evidence: a
    struct), pointing back at the affiliate's flag."""
    if flags.is_empty():
        return flags
    parents = flags.select(
        "tenant_id", "affiliate_id", "rule", "threshold", parent="subject_id"
    ).with_columns(
        affiliate_flag_id=pl.struct("tenant_id", "rule", "parent").map_elements(
            lambda key: flag_id(key["tenant_id"], key["rule"], "affiliate", key["parent"]),
            return_dtype=pl.String(),
        )
    )
    joined = implicated.join(parents, on=["tenant_id", "affiliate_id"], how="inner")
    rows = [
        {
            "tenant_id": row["tenant_id"],
            "rule": row["rule"],
            "subject_kind": "commission",
            "subject_id": row["commission_id"],
            "affiliate_id": row["affiliate_id"],
            "commission_id": row["commission_id"],
            "severity": "suspicious",
            "evidence": {"affiliate_flag_id": row["affiliate_flag_id"], **row["evidence"]},
            "threshold": row["threshold"],
        }
        for row in joined.iter_rows(named=True)
    ]
    return pl.concat([flags, _findings(rows)])


# -- daily series ------------------------------------------------------------------------------


def _daily_series(inputs: Inputs, thresholds: Thresholds) -> pl.DataFrame:
    """Every day of every affiliate from its first day with clicks (within the history's
    reach) to as_of, zeros included, with the clicks and conversions of the tenant's other
    affiliates that day."""
    end = inputs.as_of.astimezone(UTC).date()
    start = end - timedelta(days=thresholds.lookback_days + thresholds.outlier_history_days)
    daily = inputs.daily.filter((pl.col("day") > start) & (pl.col("day") <= end))
    spans = daily.group_by("tenant_id", "affiliate_id").agg(first_day=pl.col("day").min())
    totals = daily.group_by("tenant_id", "day").agg(
        tenant_clicks=pl.col("clicks").sum(), tenant_conversions=pl.col("conversions").sum()
    )
    calendar = pl.DataFrame({"day": pl.date_range(start, end, eager=True)})
    return (
        spans.join(calendar, how="cross")
        .filter(pl.col("day") >= pl.col("first_day"))
        .join(daily, on=["tenant_id", "affiliate_id", "day"], how="left")
        .join(totals, on=["tenant_id", "day"], how="left")
        .with_columns(pl.col("^clicks|conversions|tenant_clicks|tenant_conversions$").fill_null(0))
        .with_columns(
            other_clicks=pl.col("tenant_clicks") - pl.col("clicks"),
            other_conversions=pl.col("tenant_conversions") - pl.col("conversions"),
        )
    )


def _history(days: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """Each judged day (the lookback window's) with the median and MAD of `value` over the
    `outlier_history_days` days before it that have one; only days with at least
    `outlier_min_history_days` of them."""
    keys = ["tenant_id", "affiliate_id"]
    if days.is_empty():
        return days.with_columns(
            median=pl.lit(None, pl.Float64), mad=pl.lit(None, pl.Float64), history=pl.lit(0)
        )
    end = days["day"].max()
    assert isinstance(end, date)
    first_judged = end - timedelta(days=thresholds.lookback_days - 1)
    judged = days.lazy().filter((pl.col("day") >= first_judged) & pl.col("value").is_not_null())
    past = days.lazy().select(*keys, history_day=pl.col("day"), history_value=pl.col("value"))
    pairs = (
        judged.select(*keys, "day")
        .join(past, on=keys, how="inner")
        .filter(
            (pl.col("history_day") < pl.col("day"))
            & (
                pl.col("history_day")
                >= pl.col("day") - timedelta(days=thresholds.outlier_history_days)
            )
            & pl.col("history_value").is_not_null()
        )
    )
    medians = pairs.group_by(*keys, "day").agg(
        median=pl.col("history_value").median(), history=pl.len()
    )
    mads = (
        pairs.join(medians, on=[*keys, "day"])
        .group_by(*keys, "day")
        .agg(mad=(pl.col("history_value") - pl.col("median")).abs().median())
    )
    return (
        judged.join(medians, on=[*keys, "day"], how="inner")
        .join(mads, on=[*keys, "day"], how="inner")
        .filter(pl.col("history") >= thresholds.outlier_min_history_days)
        .collect()
    )


def _scored(history: pl.DataFrame, mad_to_sd: float) -> pl.DataFrame:
    """The robust z-score of each day's `observed` count against `expected` = the history's
    median value x the day's `scale`, in units of the history's MAD x scale, never below the
    Poisson spread of the expected count (counts vary at least that much)."""
    return (
        history.with_columns(expected=pl.col("median") * pl.col("scale"))
        .with_columns(
            spread=pl.max_horizontal(
                pl.col("mad") * pl.col("scale"),
                mad_to_sd * pl.max_horizontal(pl.col("expected"), pl.lit(1.0)).sqrt(),
            )
        )
        .with_columns(z=mad_to_sd * (pl.col("observed") - pl.col("expected")) / pl.col("spread"))
    )


def _outlier_flags(
    outliers: pl.DataFrame,
    detail: pl.Expr,
    rule: str,
    thresholds: Thresholds,
    threshold: str,
) -> pl.DataFrame:
    per_affiliate = (
        outliers.sort("day")
        .group_by("tenant_id", "affiliate_id")
        .agg(days=detail, max_z=pl.col("z").max())
    )
    rows = [
        _affiliate_flag(
            row,
            rule,
            "likely" if row["max_z"] >= thresholds.outlier_likely_z else "suspicious",
            {
                "outlier_days": len(row["days"]),
                "max_z": _round(row["max_z"], 2),
                "days": row["days"][:10],
            },
            threshold,
        )
        for row in per_affiliate.iter_rows(named=True)
    ]
    return _findings(rows)


# -- all of them ---------------------------------------------------------------------------------

Rule = Callable[[Inputs, Thresholds], pl.DataFrame]
RULE_FUNCTIONS: dict[str, Rule] = {
    "self_referral": self_referral,
    "fast_ctit": fast_ctit,
    "late_conversions": late_conversions,
    "cookie_stuffing": cookie_stuffing,
    "click_outlier": click_outlier,
    "conversion_rate_outlier": conversion_rate_outlier,
    "coupon_leakage": coupon_leakage,
    "shared_payout_details": shared_payout_details,
}


def inherit_to_renewals(flags: pl.DataFrame, inputs: Inputs) -> pl.DataFrame:
    """A renewal's commission inherits every commission flag of its first payment's
    commission (the same affiliate): its credit is the first payment's."""
    renewals = inputs.commissions.filter(pl.col("renewal_number") > 0).select(
        "tenant_id",
        "affiliate_id",
        "commission_id",
        "conversion_id",
        "converted_at",
        "first_conversion_id",
        "renewal_number",
    )
    firsts = _first_payments(inputs).select(
        "tenant_id", first_commission_id="commission_id", first_conversion_id="conversion_id"
    )
    parents = flags.filter(pl.col("subject_kind") == "commission").join(
        firsts,
        left_on=["tenant_id", "commission_id"],
        right_on=["tenant_id", "first_commission_id"],
        how="inner",
    )
    joined = renewals.join(
        parents.select(
            "tenant_id",
            "affiliate_id",
            "first_conversion_id",
            "rule",
            "severity",
            "evidence",
            "threshold",
            parent="commission_id",
        ),
        on=["tenant_id", "affiliate_id", "first_conversion_id"],
        how="inner",
    )
    rows = [
        {
            "tenant_id": row["tenant_id"],
            "rule": row["rule"],
            "subject_kind": "commission",
            "subject_id": row["commission_id"],
            "affiliate_id": row["affiliate_id"],
            "commission_id": row["commission_id"],
            "severity": row["severity"],
            "evidence": {
                "conversion_id": row["conversion_id"],
                "converted_at": row["converted_at"],
                "renewal_number": row["renewal_number"],
                "inherited_from": row["parent"],
                "first_payment": json.loads(row["evidence"]),
            },
            "threshold": row["threshold"],
        }
        for row in joined.iter_rows(named=True)
    ]
    return pl.concat([flags, _findings(rows)])


def apply(
    inputs: Inputs,
    thresholds: Thresholds,
    rules: Iterable[str] = RULES,
    flagged_at: datetime | None = None,
) -> pl.DataFrame:
    """Every rule's flags (FLAGS), renewals included, with their ids; `flagged_at` defaults
    to now, run_id is empty until recorded."""
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown fraud rules: {', '.join(unknown)}")
    found = [RULE_FUNCTIONS[rule](inputs, thresholds) for rule in rules]
    findings = inherit_to_renewals(pl.concat(found), inputs) if found else _findings([])
    # A commission appears once per rule (an implicated commission may also be a renewal).
    findings = findings.unique(["tenant_id", "rule", "subject_kind", "subject_id"], keep="first")
    at = (flagged_at or datetime.now(UTC)).astimezone(UTC)
    ids = [
        flag_id(t, r, k, s)
        for t, r, k, s in findings.select(
            "tenant_id", "rule", "subject_kind", "subject_id"
        ).iter_rows()
    ]
    return (
        findings.with_columns(
            flag_id=pl.Series(ids, dtype=pl.String()),
            flagged_at=pl.lit(at, dtype=TIME),
            run_id=pl.lit(""),
        )
        .select(list(FLAGS))
        .sort("tenant_id", "rule", "subject_kind", "subject_id")
    )
