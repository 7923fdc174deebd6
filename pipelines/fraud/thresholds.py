"""The fraud rules' thresholds, one frozen object per run (docs/fraud.md explains each rule).

The defaults are the field's (Everflow's CTIT guidance, Iglewicz and Hoaglin's 3.5 for the
robust z-score) where there is one, and otherwise the smallest evidence the evaluation on
simulated traffic (bench/fraud.py) showed to be enough. A run overrides any of them:
`Thresholds(ctit_likely_seconds=3)`, or `Thresholds.from_mapping({...})` from configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    # -- every rule ---------------------------------------------------------------------------
    lookback_days: int = 90  # conversions, clicks and days judged: this many days up to as_of

    # -- self_referral: the affiliate and the buyer share an identity -------------------------
    # An address (IP hash) seen with more cookies than this is shared (an office, a carrier's
    # NAT): meeting the buyer there says nothing about who the buyer is.
    self_referral_max_cookies_per_address: int = 10

    # -- fast_ctit: click-to-conversion time of the credited affiliate's latest click --------
    ctit_suspicious_seconds: float = 15.0  # Everflow: under 15 s is suspicious
    ctit_likely_seconds: float = 5.0  # under 5 s in e-commerce: coupon poaching (injected click)

    # -- late_conversions: click spamming ------------------------------------------------------
    late_after_hours: float = 24.0  # a conversion this long after the credited click is late
    late_max_share: float = 0.30  # Everflow: more than 30% of conversions late is suspicious
    late_min_conversions: int = 30  # fewer conversions are no sample
    # ... and the affiliate's late share must stand out from the rest of its tenant's (a
    # binomial z-score against their pooled share): where normal journeys are long, most
    # affiliates pass 30%. 0 turns the comparison off (the absolute rule alone).
    late_min_z: float = 3.0

    # -- cookie_stuffing: many cookies per address, never engaged ------------------------------
    stuffing_min_cookies_per_address: int = 10  # distinct cookies of unengaged clicks per IP hash
    stuffing_min_addresses: int = 1  # addresses like that an affiliate needs to be flagged

    # -- click_outlier / conversion_rate_outlier: a day far outside the affiliate's history ---
    outlier_z: float = 3.5  # robust z-score (median, MAD) that makes a day an outlier
    outlier_likely_z: float = 7.0  # ... and a likely one
    # ... and at least this many times what the history predicts: with big volumes a small
    # wobble is statistically significant, and not worth a review.
    outlier_min_ratio: float = 2.0
    outlier_history_days: int = 28  # the days before the judged day that make its history
    outlier_min_history_days: int = 14  # history days needed before a day is judged
    click_outlier_min_clicks: int = 30  # a day with fewer clicks is never an outlier
    conversion_rate_min_clicks: int = 50  # days with fewer clicks have no meaningful rate
    conversion_rate_min_conversions: int = 10  # a day with fewer conversions is never an outlier

    # -- coupon_leakage: the coupon earned, its affiliate never touched the buyer --------------
    # Also flag coupon conversions whose buyer touched no affiliate at all (a code seen in a
    # video is how coupons work: off by default, see docs/fraud.md).
    coupon_leakage_without_clicks: bool = False

    # -- shared_payout_details -----------------------------------------------------------------
    shared_payout_min_affiliates: int = 2  # affiliates of a tenant on one payout account

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Thresholds:
        """Thresholds from a mapping (configuration, an API request): unknown names are an
        error, not silently ignored."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fraud thresholds: {', '.join(unknown)}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.lookback_days < 1:
            raise ValueError("lookback_days must be at least 1")
        if not 0 < self.ctit_likely_seconds <= self.ctit_suspicious_seconds:
            raise ValueError("need 0 < ctit_likely_seconds <= ctit_suspicious_seconds")
        if not 0 <= self.late_max_share < 1:
            raise ValueError("late_max_share must be in [0, 1)")
        if self.outlier_min_history_days > self.outlier_history_days:
            raise ValueError("outlier_min_history_days exceeds outlier_history_days")
        if self.shared_payout_min_affiliates < 2:
            raise ValueError("shared_payout_min_affiliates must be at least 2")
