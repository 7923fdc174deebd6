"""Hand-made inputs for the pure rule tests: commissions, touches and daily series of one or
two tenants, as the frames of pipelines/fraud/inputs.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from pipelines.fraud.inputs import COMMISSIONS, DAILY, TOUCHES, Inputs, frame

AS_OF = datetime(2026, 3, 31, tzinfo=UTC)
TENANT = "t-1"


def at(days_before: float, seconds: float = 0) -> datetime:
    """A time `days_before` days (plus `seconds` earlier) before AS_OF."""
    return AS_OF - timedelta(days=days_before, seconds=seconds)


class Sales:
    """Commissions and the touches behind them, one call per sale."""

    def __init__(self) -> None:
        self.commissions: list[dict[str, Any]] = []
        self.touches: list[dict[str, Any]] = []

    def sale(
        self,
        conversion_id: str,
        affiliate_id: str,
        converted_at: datetime,
        *,
        ctit_seconds: float | None = 3600,
        engaged: bool = True,
        coupon: bool = False,
        clicks: int | None = None,
        tenant_id: str = TENANT,
        via: str = "click",
        others: tuple[str, ...] = (),  # other affiliates whose clicks the buyer made
        renewals: int = 0,
    ) -> str:
        """A first payment credited to `affiliate_id` (and its monthly renewals); returns its
        commission id."""
        commission_id = f"{conversion_id}:{affiliate_id}"
        self.commissions.append(
            {
                "tenant_id": tenant_id,
                "commission_id": commission_id,
                "conversion_id": conversion_id,
                "affiliate_id": affiliate_id,
                "converted_at": converted_at,
                "renewal_number": 0,
                "first_conversion_id": conversion_id,
                "via": via,
            }
        )
        clicked = ctit_seconds is not None
        self.touches.append(
            {
                "tenant_id": tenant_id,
                "conversion_id": conversion_id,
                "affiliate_id": affiliate_id,
                "last_click_at": converted_at - timedelta(seconds=ctit_seconds)
                if ctit_seconds is not None
                else None,
                "last_click_id": f"k-{conversion_id}-{affiliate_id}" if clicked else "",
                "last_click_engaged": engaged if clicked else False,
                "clicks": clicks if clicks is not None else int(clicked),
                "coupon": coupon,
            }
        )
        for other in others:
            self.touches.append(
                {
                    "tenant_id": tenant_id,
                    "conversion_id": conversion_id,
                    "affiliate_id": other,
                    "last_click_at": converted_at - timedelta(hours=5),
                    "last_click_id": f"k-{conversion_id}-{other}",
                    "last_click_engaged": True,
                    "clicks": 1,
                    "coupon": False,
                }
            )
        for n in range(1, renewals + 1):
            renewal_id = f"{conversion_id}-r{n}"
            self.commissions.append(
                {
                    "tenant_id": tenant_id,
                    "commission_id": f"{renewal_id}:{affiliate_id}",
                    "conversion_id": renewal_id,
                    "affiliate_id": affiliate_id,
                    "converted_at": converted_at + timedelta(days=30 * n),
                    "renewal_number": n,
                    "first_conversion_id": conversion_id,
                    "via": "renewal",
                }
            )
        return commission_id

    def inputs(self, **frames: pl.DataFrame) -> Inputs:
        return Inputs.empty(
            AS_OF,
            commissions=frame(COMMISSIONS, self.commissions),
            touches=frame(TOUCHES, self.touches),
            **frames,
        )


def daily(series: dict[str, list[tuple[int, int]]], tenant_id: str = TENANT) -> pl.DataFrame:
    """DAILY rows from `series`: affiliate -> [(clicks, conversions)] for consecutive days
    ending on AS_OF's day."""
    end = AS_OF.date()
    rows = []
    for affiliate_id, values in series.items():
        for n, (clicks, conversions) in enumerate(values):
            day: date = end - timedelta(days=len(values) - 1 - n)
            rows.append(
                {
                    "tenant_id": tenant_id,
                    "affiliate_id": affiliate_id,
                    "day": day,
                    "clicks": clicks,
                    "conversions": conversions,
                }
            )
    return frame(DAILY, rows)


def wobble(base: int, days: int, amplitude: int, seed: int = 0) -> list[int]:
    """A steady series around `base` that moves by up to `amplitude` (deterministic)."""
    return [base + ((n * 7 + seed * 3) % (2 * amplitude + 1)) - amplitude for n in range(days)]
