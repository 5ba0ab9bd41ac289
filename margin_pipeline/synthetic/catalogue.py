"""The supplier's products and the industry charges it pays, and how long their rates last.

Tariff unit rates and standing charges are pence including 5% VAT. Charges follow the GB
structure: balancing (BSUoS, one national £/MWh), policy levies (£/MWh per GSP group,
reset quarterly), distribution use of system (DUoS: a p/kWh unit rate for every period,
a p/kWh red-band adder 16:00–19:00 and a p/day fixed charge per GSP group, reset each
charging year starting 1 April).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class Validity(enum.Enum):
    """How long one rate lasts; a new rate row is published the day before its period starts."""

    OPEN = "open"
    QUARTER = "quarter"
    CHARGING_YEAR = "charging_year"

    def period_containing(self, day: dt.date) -> tuple[dt.date, dt.date | None]:
        """``[valid_from, valid_to)`` of the rate period holding ``day`` (``None``: open-ended)."""
        year_start = dt.date(day.year if day.month >= 4 else day.year - 1, 4, 1)
        if self is Validity.OPEN:
            return year_start, None
        if self is Validity.CHARGING_YEAR:
            return year_start, dt.date(year_start.year + 1, 4, 1)
        quarter_start = dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        following = quarter_start.month + 3
        return quarter_start, dt.date(quarter_start.year + following // 13, (following - 1) % 12 + 1, 1)

    def starts_on(self, day: dt.date) -> bool:
        """Whether a new rate period of this kind begins on ``day``."""
        return self is not Validity.OPEN and self.period_containing(day)[0] == day

    def ordinal(self, period_start: dt.date) -> int:
        """A non-negative number naming the period (seeds the period's rate draws)."""
        return period_start.year * 12 + period_start.month


class TariffKind(enum.Enum):
    DYNAMIC = "dynamic"
    TRACKER = "tracker"
    TIME_OF_USE = "time_of_use"
    STANDARD_VARIABLE = "standard_variable"
    FIXED = "fixed"


@dataclass(frozen=True)
class Tariff:
    """A retail product; ``share`` is the part of the book on it when the history starts."""

    code: str
    billing_grain: str
    kind: TariffKind
    share: float

    @property
    def half_hourly(self) -> bool:
        return self.billing_grain == "HH"


TARIFFS: tuple[Tariff, ...] = (
    Tariff("AGILE-HH-25", "HH", TariffKind.DYNAMIC, 0.15),
    Tariff("EV-TOU-HH-25", "HH", TariffKind.TIME_OF_USE, 0.09),
    Tariff("TRACKER-HH-25", "HH", TariffKind.TRACKER, 0.06),
    Tariff("STANDARD-VAR-25", "MONTHLY", TariffKind.STANDARD_VARIABLE, 0.52),
    Tariff("FIXED-12M-25", "MONTHLY", TariffKind.FIXED, 0.18),
)
HH_TARIFFS: tuple[int, ...] = tuple(i for i, t in enumerate(TARIFFS) if t.half_hourly)
MONTHLY_TARIFFS: tuple[int, ...] = tuple(i for i, t in enumerate(TARIFFS) if not t.half_hourly)
DYNAMIC_TARIFF: int = next(i for i, t in enumerate(TARIFFS) if t.kind is TariffKind.DYNAMIC)
STANDARD_TARIFF: int = next(i for i, t in enumerate(TARIFFS) if t.kind is TariffKind.STANDARD_VARIABLE)
VAT = 1.05


@dataclass(frozen=True)
class Charge:
    """An industry charge; its rate per GSP group is drawn in ``[low, high)`` in its unit."""

    code: str
    unit: str
    per_gsp: bool
    validity: Validity
    low: float
    high: float
    band: tuple[str, str] | None = None


CHARGES: tuple[Charge, ...] = (
    Charge("BSUOS", "GBP_PER_MWH", per_gsp=False, validity=Validity.OPEN, low=12.0, high=15.0),
    Charge("POLICY_LEVY", "GBP_PER_MWH", per_gsp=True, validity=Validity.QUARTER, low=31.0, high=37.0),
    Charge("DUOS_UNIT", "P_PER_KWH", per_gsp=True, validity=Validity.CHARGING_YEAR, low=2.0, high=4.0),
    Charge(
        "DUOS_RED",
        "P_PER_KWH",
        per_gsp=True,
        validity=Validity.CHARGING_YEAR,
        low=8.0,
        high=15.0,
        band=("16:00", "19:00"),
    ),
    Charge("DUOS_FIXED", "P_PER_DAY", per_gsp=True, validity=Validity.CHARGING_YEAR, low=8.0, high=20.0),
)
POLICY_LEVY: int = next(i for i, c in enumerate(CHARGES) if c.code == "POLICY_LEVY")
