"""Number checks shared by the records and the optimiser, so every bad number gets the same
one-line `AdvisorError` that names the field and the value."""

from __future__ import annotations

import math

from advisor.errors import AdvisorError


def finite(name: str, value) -> float:
    """`value` as a float; NaN, infinities, booleans and non-numbers are refused."""
    if isinstance(value, bool):
        raise AdvisorError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AdvisorError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise AdvisorError(f"{name} must be a finite number, got {value!r}")
    return number


def positive(name: str, value) -> float:
    number = finite(name, value)
    if number <= 0:
        raise AdvisorError(f"{name} must be greater than 0, got {value!r}")
    return number


def non_negative(name: str, value) -> float:
    number = finite(name, value)
    if number < 0:
        raise AdvisorError(f"{name} must be 0 or more, got {value!r}")
    return number


def fraction(name: str, value) -> float:
    """A score such as accuracy or win rate: between 0 and 1."""
    number = finite(name, value)
    if not 0.0 <= number <= 1.0:
        raise AdvisorError(f"{name} must be between 0 and 1 (a fraction such as accuracy), got {value!r}")
    return number


def count(name: str, value) -> int:
    """A whole number of examples (100 and 100.0 are fine, 100.5 and -1 are not)."""
    number = non_negative(name, value)
    if number != int(number):
        raise AdvisorError(f"{name} must be a whole number, got {value!r}")
    return int(number)
