"""Settlement-period calendar (Europe/London) and the MPAN core check digit."""

from __future__ import annotations

import datetime as dt

import pytest

from margin_pipeline.contracts.calendar import (
    days_between,
    local_midnight_utc,
    period_local_start,
    period_start_utc,
    periods_in_day,
)
from margin_pipeline.contracts.mpan import check_digit, is_valid_mpan_core, with_check_digit

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "n"),
    [
        (dt.date(2025, 1, 15), 48),  # GMT
        (dt.date(2025, 7, 1), 48),  # BST
        (dt.date(2025, 3, 29), 48),  # the day before the spring change
        (dt.date(2025, 3, 30), 46),  # spring: 01:00 GMT -> 02:00 BST
        (dt.date(2025, 3, 31), 48),
        (dt.date(2025, 10, 25), 48),
        (dt.date(2025, 10, 26), 50),  # autumn: 02:00 BST -> 01:00 GMT
        (dt.date(2025, 10, 27), 48),
        (dt.date(2026, 3, 29), 46),
        (dt.date(2026, 10, 25), 50),
        (dt.date(2024, 2, 29), 48),  # leap day
    ],
)
def test_periods_in_day(day: dt.date, n: int) -> None:
    assert periods_in_day(day) == n


def test_a_year_has_one_short_and_one_long_day() -> None:
    counts = [periods_in_day(d) for d in days_between(dt.date(2025, 1, 1), dt.date(2025, 12, 31))]
    assert len(counts) == 365
    assert counts.count(46) == 1
    assert counts.count(50) == 1
    assert counts.count(48) == 363


def test_local_midnight_utc() -> None:
    assert local_midnight_utc(dt.date(2025, 1, 15)) == utc(2025, 1, 15, 0, 0)
    assert local_midnight_utc(dt.date(2025, 7, 1)) == utc(2025, 6, 30, 23, 0)
    # Both clock-change days start before the change: spring at GMT midnight, autumn at BST midnight.
    assert local_midnight_utc(dt.date(2025, 3, 30)) == utc(2025, 3, 30, 0, 0)
    assert local_midnight_utc(dt.date(2025, 10, 26)) == utc(2025, 10, 25, 23, 0)


def test_period_start_utc_on_gmt_and_bst_days() -> None:
    assert period_start_utc(dt.date(2025, 1, 15), 1) == utc(2025, 1, 15, 0, 0)
    assert period_start_utc(dt.date(2025, 1, 15), 48) == utc(2025, 1, 15, 23, 30)
    # On a BST day period 1 starts at 23:00 UTC of the previous day.
    assert period_start_utc(dt.date(2025, 7, 1), 1) == utc(2025, 6, 30, 23, 0)
    assert period_start_utc(dt.date(2025, 7, 1), 2) == utc(2025, 6, 30, 23, 30)
    assert period_start_utc(dt.date(2025, 7, 1), 48) == utc(2025, 7, 1, 22, 30)


def test_periods_tile_consecutive_days_without_gaps() -> None:
    for day in days_between(dt.date(2025, 3, 28), dt.date(2025, 4, 1)) + days_between(
        dt.date(2025, 10, 24), dt.date(2025, 10, 28)
    ):
        n = periods_in_day(day)
        next_day = day + dt.timedelta(days=1)
        assert period_start_utc(day, n) + dt.timedelta(minutes=30) == period_start_utc(next_day, 1)


def test_period_local_start_on_the_autumn_day() -> None:
    day = dt.date(2025, 10, 26)
    starts = [period_local_start(day, p) for p in range(1, 51)]
    assert starts[:6] == [
        dt.time(0, 0),
        dt.time(0, 30),
        dt.time(1, 0),  # period 3: 00:00 UTC = 01:00 BST
        dt.time(1, 30),
        dt.time(1, 0),  # period 5: 01:00 UTC = 01:00 GMT (the hour repeats)
        dt.time(1, 30),
    ]
    assert period_start_utc(day, 3) == utc(2025, 10, 26, 0, 0)
    assert period_start_utc(day, 5) == utc(2025, 10, 26, 1, 0)
    assert starts[6] == dt.time(2, 0)
    assert starts[-1] == dt.time(23, 30)


def test_period_local_start_on_the_spring_day() -> None:
    day = dt.date(2025, 3, 30)
    starts = [period_local_start(day, p) for p in range(1, 47)]
    # 01:00 GMT becomes 02:00 BST: there is no local 01:00 or 01:30.
    assert starts[:4] == [dt.time(0, 0), dt.time(0, 30), dt.time(2, 0), dt.time(2, 30)]
    assert dt.time(1, 0) not in starts
    assert dt.time(1, 30) not in starts
    assert starts[-1] == dt.time(23, 30)
    assert period_start_utc(day, 46) == utc(2025, 3, 30, 22, 30)


# Check digits worked by hand: sum(digit_i x prime_i) for primes 3,5,7,13,17,19,23,29,31,37,41,43,
# then % 11 % 10.
#   120000000000: 1*3 + 2*5 = 13;            13 % 11 = 2;  2 % 10 = 2
#   123456789012: 3+10+21+52+85+114+161+232+279+0+41+86 = 1084;  1084 % 11 = 6 (11*98 = 1078); 6
#   000000000001: 1*43 = 43;                 43 % 11 = 10; 10 % 10 = 0  (the "% 10" matters)
#   999999999999: 9 * 268 = 2412;            2412 % 11 = 3 (11*219 = 2409); 3
#   000000000000: 0
@pytest.mark.parametrize(
    ("stem", "digit"),
    [
        ("120000000000", 2),
        ("123456789012", 6),
        ("000000000001", 0),
        ("999999999999", 3),
        ("000000000000", 0),
    ],
)
def test_check_digit_worked_examples(stem: str, digit: int) -> None:
    assert check_digit(stem) == digit
    assert with_check_digit(stem) == stem + str(digit)
    assert is_valid_mpan_core(stem + str(digit))


def test_every_wrong_check_digit_is_invalid() -> None:
    for wrong in "012345789":  # every digit but 6, the check digit of 123456789012
        assert not is_valid_mpan_core("123456789012" + wrong)
    assert is_valid_mpan_core("1234567890126")


@pytest.mark.parametrize(
    "value",
    [
        "120000000000",  # 12 digits
        "12000000000022",  # 14 digits
        "",
        "12000000000A2",  # not all digits
        " 1200000000002",
        "1200000000002 ",
        "-200000000002",
        "1.00000000002",
    ],
)
def test_malformed_mpan_cores_are_invalid(value: str) -> None:
    assert not is_valid_mpan_core(value)


@pytest.mark.parametrize("stem", ["12000000000", "1200000000000", "12000000000A", ""])
def test_check_digit_needs_twelve_digits(stem: str) -> None:
    with pytest.raises(ValueError, match="expected 12 digits"):
        check_digit(stem)
