"""Money: ISO 4217 currencies and exact conversion to integer minor units.

Every amount Rastro stores is an integer in the currency's minor unit (cents for BRL, yen
for JPY, fils for KWD) next to its currency code, so sums and commissions are exact to the
cent. Input is parsed as Decimal, never float.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Active ISO 4217 currencies by minor-unit exponent (the ISO list as of 2025, without funds
# codes, precious metals and withdrawn codes). An unknown code is refused.
_ISO_4217 = """
0: BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF
3: BHD IQD JOD KWD LYD OMR TND
2: AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD
2: CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
2: GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD
2: LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB
2: PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC
2: SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG
"""
CURRENCY_EXPONENTS: dict[str, int] = {
    code: int(exponent)
    for exponent, codes in (line.split(":") for line in _ISO_4217.strip().splitlines())
    for code in codes.split()
}
# The largest amount accepted: the event contract's bound. Beyond it a value is a unit or
# parsing mistake (10^15 cents is ten trillion dollars), not an order.
MAX_MINOR = 10**15

_DECIMAL_TEXT = re.compile(r"^-?\d{1,24}(\.\d{1,24})?$")


def canonical(value: Decimal) -> Decimal:
    """The same number without trailing fractional zeros (exact: no context, no rounding)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Decimal(0)
    kept = list(digits)
    while exponent < 0 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    return Decimal((sign, tuple(kept), exponent))


def parse_amount(value: object) -> Decimal | None:
    """A decimal string or a JSON number (JSON numbers must be parsed as Decimal, never float)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be a number or a decimal string, not a boolean")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):  # only when called with Python objects, never from JSON
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.match(value.strip()):
            raise ValueError(
                'must be a decimal number such as "129.90": digits, an optional "." and '
                "decimals (no thousands separators, no comma, no exponent)"
            )
        number = Decimal(value.strip())
    else:
        raise ValueError("must be a number or a decimal string")
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number < 0:
        raise ValueError("must not be negative")
    if number != 0 and number.adjusted() > 18:
        raise ValueError(f"is too large (at most {MAX_MINOR} minor units)")
    return canonical(number)


def parse_currency(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO 4217 code such as BRL")
    code = value.strip().upper()
    if code not in CURRENCY_EXPONENTS:
        raise ValueError(f"{value!r} is not an active ISO 4217 currency code (such as BRL, USD)")
    return code


def to_minor(value: Decimal, currency: str) -> int:
    """`value` in minor units of `currency`, exactly; ValueError if it has more decimals
    than the currency or exceeds `MAX_MINOR`."""
    exponent = CURRENCY_EXPONENTS[currency]
    sign, digits, exp = canonical(value).as_tuple()
    assert isinstance(exp, int)
    if -exp > exponent:
        if exponent == 0:
            raise ValueError(f"{currency} has no minor unit: send a whole number (got {value})")
        raise ValueError(
            f"{currency} amounts have at most {exponent} decimals (got {value}, with {-exp})"
        )
    minor = int("".join(map(str, digits))) * int(10 ** (exp + exponent))
    if minor > MAX_MINOR:
        raise ValueError(f"is too large: {minor} minor units of {currency} (at most {MAX_MINOR})")
    return -minor if sign else minor


def format_minor(minor: int, currency: str) -> str:
    exponent = CURRENCY_EXPONENTS[currency]
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f} {currency}"
