"""MPAN core check digit (the 13th digit of a metering point id)."""

from __future__ import annotations

PRIMES = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)


def check_digit(first_twelve: str) -> int:
    """Check digit for the first 12 digits: sum(digit_i x prime_i) % 11 % 10."""
    if len(first_twelve) != 12 or not first_twelve.isdigit():
        raise ValueError(f"expected 12 digits, got {first_twelve!r}")
    return sum(int(c) * p for c, p in zip(first_twelve, PRIMES, strict=True)) % 11 % 10


def is_valid_mpan_core(value: str) -> bool:
    """True when ``value`` is 13 digits whose last digit is the check digit of the first 12."""
    return len(value) == 13 and value.isdigit() and check_digit(value[:12]) == int(value[12])


def with_check_digit(first_twelve: str) -> str:
    """Complete a 12-digit stem into a valid 13-digit MPAN core."""
    return first_twelve + str(check_digit(first_twelve))
