"""Numbers, money and dates as people read them in the console's two languages, and money
typed into its forms read back exactly.

Money is always integer minor units plus an ISO 4217 code (rastro/money.py): formatting
scales by the currency's exponent with Decimal, never a float, so every cent shown is the
cent stored. "R$ 1.234,56" in pt-BR, "$1,234.56" in en; a currency without a symbol of its
own shows its code ("KWD 1,234.567").
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rastro.money import CURRENCY_EXPONENTS, parse_amount, to_minor

LOCALES = ("pt-BR", "en")
DEFAULT_LOCALE = "pt-BR"

# (decimal mark, thousands separator, space between symbol and amount)
_SEPARATORS = {"pt-BR": (",", ".", " "), "en": (".", ",", "")}
# Symbols as CLDR gives them per locale; others fall back to the code (and a space).
_SYMBOLS = {
    "pt-BR": {"BRL": "R$", "USD": "US$", "EUR": "€", "GBP": "£", "JPY": "JP¥"},
    "en": {"BRL": "R$", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"},
}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _group(digits: str, separator: str) -> str:
    head = len(digits) % 3 or 3
    groups = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return separator.join(groups)


def format_decimal(value: Decimal | int, locale: str, places: int | None = None) -> str:
    """`value` with the locale's marks; `places` fixes the decimals (None: as many as it has)."""
    number = Decimal(value)
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places))
    mark, thousands, _ = _SEPARATORS[locale]
    sign = "-" if number < 0 else ""
    whole, _, fraction = f"{abs(number):f}".partition(".")
    text = _group(whole, thousands)
    return sign + (f"{text}{mark}{fraction}" if fraction else text)


def format_number(value: int, locale: str) -> str:
    return format_decimal(value, locale, 0)


def format_money(minor: int, currency: str, locale: str) -> str:
    """Exact: 123456 BRL -> "R$ 1.234,56" (pt-BR) or "R$1,234.56" (en)."""
    exponent = CURRENCY_EXPONENTS[currency]
    amount = Decimal(abs(minor)).scaleb(-exponent)
    digits = format_decimal(amount, locale, exponent)
    symbol = _SYMBOLS[locale].get(currency)
    space = _SEPARATORS[locale][2] if symbol else " "
    sign = "-" if minor < 0 else ""
    return f"{sign}{symbol or currency}{space}{digits}"


def format_percent(rate: str | Decimal, locale: str) -> str:
    """A rate as a fraction ("0.125") -> "12,5%" / "12.5%"."""
    percent = Decimal(rate) * 100
    return format_decimal(percent.normalize() if percent else Decimal(0), locale) + "%"


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(value: datetime, timezone: str) -> datetime:
    """An instant (naive values from the warehouse are UTC) in the tenant's time zone."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(_zone(timezone))


def format_date(value: date, locale: str) -> str:
    if locale == "pt-BR":
        return f"{value.day:02d}/{value.month:02d}/{value.year}"
    return f"{_MONTHS_EN[value.month - 1]} {value.day}, {value.year}"


def format_day(value: date, locale: str) -> str:
    """Short, for chart axes: "27/11" / "Nov 27"."""
    if locale == "pt-BR":
        return f"{value.day:02d}/{value.month:02d}"
    return f"{_MONTHS_EN[value.month - 1]} {value.day}"


def format_datetime(value: datetime, timezone: str, locale: str) -> str:
    """In the tenant's time zone: "27/11/2026 14:05" / "Nov 27, 2026 14:05"."""
    local = local_time(value, timezone)
    return f"{format_date(local.date(), locale)} {local:%H:%M}"


def _money_pattern(locale: str) -> re.Pattern[str]:
    mark, thousands, _ = _SEPARATORS[locale]
    m, t = re.escape(mark), re.escape(thousands)
    # Either plain digits, or thousands in groups of exactly three: "12.50" is refused in
    # pt-BR rather than read as 1.250.
    return re.compile(rf"^(\d+|\d{{1,3}}({t}\d{{3}})+)({m}\d+)?$")


def parse_money(text: str, currency: str, locale: str) -> int:
    """Money typed in a form, in the locale's way ("1.234,56" or "1234,56" in pt-BR,
    "1,234.56" in en), as exact minor units of `currency`. ValueError if it is not an
    amount or has more decimals than the currency."""
    mark, thousands, _ = _SEPARATORS[locale]
    cleaned = text.strip().replace(" ", "")
    if not _money_pattern(locale).match(cleaned):
        raise ValueError(text)
    amount = parse_amount(cleaned.replace(thousands, "").replace(mark, "."))
    if amount is None:
        raise ValueError(text)
    return to_minor(amount, currency)


def parse_percent(text: str) -> str:
    """A percentage typed in a form ("12,5" or "12.5": no thousands below 100) as the rate
    the commission rules store: a fraction 0..1 as text, at most 9 decimals ("0.125")."""
    cleaned = text.strip().removesuffix("%").strip().replace(",", ".")
    if not re.fullmatch(r"\d{1,3}(\.\d{1,7})?", cleaned):
        raise ValueError(text)
    percent = Decimal(cleaned)
    if percent > 100:
        raise ValueError(text)
    return f"{(percent / 100).normalize():f}"
