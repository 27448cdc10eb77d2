"""The one home of number parsing and range checks: the advisor's records and optimiser, the
engine's run settings and the TUI's form and flags all call these, so a number means the same
thing everywhere and every bad one is refused for the same reason.

Each check raises `BadNumber`, an `AdvisorError` whose message names the field and the value
("budget must be greater than 0, got -1") and whose `reason` is the bare rule ("must be greater
than 0") for a surface that shows it beside the field. Text is read one way: an optional sign,
digits with an optional decimal point, `_` or thousands commas in groups of three ("12,000");
any other comma — a decimal comma such as "0,5" — is refused rather than read as another number.
"""

from __future__ import annotations

import math
import re

from advisor.errors import AdvisorError

MAX_COUNT = 10**12  # more examples than anyone buys; keeps every count exact in a float and in SQLite
THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?$")


class BadNumber(AdvisorError):
    """A number refused by one of the checks below; `reason` omits the field's name."""

    def __init__(self, name: str, reason: str, value: object):
        super().__init__(f"{name} {reason}, got {value!r}")
        self.reason = reason


def _from_text(name: str, text: str) -> float:
    stripped = text.strip()
    if "," in stripped:
        if not THOUSANDS.match(stripped):
            raise BadNumber(name, "must use a decimal point, not a comma (0.5, not 0,5)", text)
        stripped = stripped.replace(",", "")
    try:
        return float(stripped)
    except ValueError:
        raise BadNumber(name, "must be a number", text) from None


def finite(name: str, value) -> float:
    """`value` (a number or its text) as a float; NaN, infinities, booleans and non-numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadNumber(name, "must be a number", value)
    try:
        number = _from_text(name, value) if isinstance(value, str) else float(value)
    except OverflowError:  # an int past the float range
        raise BadNumber(name, "is too large", value) from None
    if not math.isfinite(number):
        raise BadNumber(name, "must be a finite number", value)
    return number


def positive(name: str, value) -> float:
    number = finite(name, value)
    if number <= 0:
        raise BadNumber(name, "must be greater than 0", value)
    return number


def non_negative(name: str, value) -> float:
    number = finite(name, value)
    if number < 0:
        raise BadNumber(name, "must be 0 or more", value)
    return number


def fraction(name: str, value) -> float:
    """A score such as accuracy or win rate: between 0 and 1."""
    number = finite(name, value)
    if not 0.0 <= number <= 1.0:
        raise BadNumber(name, "must be between 0 and 1 (a fraction such as accuracy)", value)
    return number


def below_one(name: str, value) -> float:
    """A share such as a dropout or warm-up ratio: 0 or more and below 1."""
    number = non_negative(name, value)
    if number >= 1:
        raise BadNumber(name, "must be below 1", value)
    return number


def count(name: str, value, *, at_least: int = 0, at_most: int = MAX_COUNT) -> int:
    """A whole number of examples (100 and 100.0 are fine, 100.5, -1 and 10**40 are not)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value  # exact, however large: checked against the bounds before any float
    else:
        number = finite(name, value)
        if number != int(number):
            raise BadNumber(name, "must be a whole number", value)
        number = int(number)
    if number < at_least:
        raise BadNumber(name, "must be 0 or more" if at_least == 0 else f"must be at least {at_least:,}", value)
    if number > at_most:
        raise BadNumber(name, f"must be at most {at_most:,}", value)
    return number


def label_money(budget: float, compute_cost: float) -> float | None:
    """The money left for labels once compute is paid for; None when compute takes it all."""
    money = budget - (compute_cost or 0.0)
    return money if money > 0 else None


def check_purchase(money: float, sft_cost: float, pft_cost: float) -> None:
    """Refuse prices at which the money would buy more examples than a count can hold."""
    most = money / min(sft_cost, pft_cost)
    if not most <= MAX_COUNT:
        raise AdvisorError(f"a budget of {money:g} buys more than {MAX_COUNT:,} examples at these costs "
                           f"(SFT {sft_cost:g}, preference pair {pft_cost:g}): check the prices")
