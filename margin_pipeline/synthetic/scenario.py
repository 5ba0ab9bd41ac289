"""What determines a synthetic MHHS history: the scenario, its timeline and its random streams.

Timeline. The history is a sequence of *as-of days* ``k = 0, 1, 2, ...``; the files of
as-of day ``k`` are those dropped at the close of the *as-of date* ``start + k - 1``.
Day 0 (the day before the first settlement date) sets up the reference data. Settlement
date ``start + j`` (its *date index* is ``j``) gets its day-ahead tariff rates on as-of
day ``j``, its SF run on as-of day ``j + 1`` and each restatement run ``R`` on as-of day
``j + 1 + restatement_offsets[R]``.

Every random draw comes from a stream seeded by ``(seed, day, purpose, ...)``: ``day`` is
the date index for data about a settlement date, the as-of day for data about a
publication, and 0 for static attributes. So the files of one as-of day depend only on
the scenario and that day, never on how long the history is.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from margin_pipeline.contracts.feeds import RUN_RANK

DEFAULT_RESTATEMENT_OFFSETS: dict[str, int] = {"R1": 4, "R2": 10, "R3": 20, "RF": 35}


class Purpose(enum.IntEnum):
    """What a random stream is for; part of its seed so that no two streams share draws."""

    METERS = 1
    ACCOUNTS = 2
    EVENTS = 3
    TARIFF_LEVELS = 4
    QUARTERLY_TARIFF = 5
    CHARGE_LEVELS = 6
    LEVY_RESTATEMENT = 7
    DAY_AHEAD_PRICE = 8
    SETTLEMENT_PRICE = 9
    PRICE_RESTATEMENT = 10
    CONSUMPTION = 11
    METER_READS = 12
    RATE_CORRECTION = 13
    RATE_CORRECTION_DAY = 14


def random_stream(seed: int, day: int, purpose: Purpose, *extra: int) -> np.random.Generator:
    """The generator of one purpose on one day; ``extra`` tells apart several streams of it."""
    return np.random.default_rng([seed, day, int(purpose), *extra])


def _default_offsets() -> dict[str, int]:
    return dict(DEFAULT_RESTATEMENT_OFFSETS)


@dataclass(frozen=True)
class Scenario:
    """Everything that determines the synthetic data; saved as JSON so "next day" can continue.

    ``days`` is the number of settlement dates with an SF run (as-of days ``0..days``);
    ``restatement_offsets`` gives, per restatement run, how many as-of days after the SF it
    is published (real MHHS spreads them over months; compressed so demos show them).
    """

    meters: int = 200
    days: int = 30
    seed: int = 7
    start: dt.date = dt.date(2025, 10, 1)
    restatement_offsets: dict[str, int] = field(default_factory=_default_offsets)

    def __post_init__(self) -> None:
        if self.meters < 1:
            raise ValueError(f"a scenario needs at least one meter, got meters={self.meters}")
        if self.days < 0:
            raise ValueError(f"days must be >= 0, got {self.days}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        unknown = sorted(set(self.restatement_offsets) - (set(RUN_RANK) - {"SF"}))
        if unknown:
            raise ValueError(f"restatement_offsets has unknown or SF runs {unknown}; allowed R1 R2 R3 RF DF")
        offsets = [self.restatement_offsets[run] for run in self.restatement_runs]
        if any(offset < 1 for offset in offsets) or offsets != sorted(set(offsets)):
            raise ValueError(
                "restatement_offsets must be >= 1 and strictly increase with run rank "
                f"(so each date's runs arrive in rank order), got {self.restatement_offsets}"
            )

    @property
    def restatement_runs(self) -> tuple[str, ...]:
        """The restatement runs of the scenario, in rank order."""
        return tuple(sorted(self.restatement_offsets, key=RUN_RANK.__getitem__))

    @property
    def runs(self) -> tuple[str, ...]:
        """SF then the restatement runs; a run's position is its *stage* (SF is stage 0)."""
        return ("SF", *self.restatement_runs)

    def settlement_date(self, date_index: int) -> dt.date:
        return self.start + dt.timedelta(days=date_index)

    def date_index(self, day: dt.date) -> int:
        return (day - self.start).days

    def asof_date(self, asof_day: int) -> dt.date:
        """The calendar date whose close publishes the files of ``asof_day``."""
        return self.start + dt.timedelta(days=asof_day - 1)

    def publication_day(self, date_index: int, run: str) -> int:
        """The as-of day on which ``run`` of settlement date ``date_index`` is published."""
        return date_index + 1 + (0 if run == "SF" else self.restatement_offsets[run])

    def runs_published_on(self, asof_day: int) -> list[tuple[int, str]]:
        """``(date_index, run)`` of every volumes/prices publication of ``asof_day``, SF first."""
        published = [(asof_day - self.publication_day(0, run), run) for run in self.runs]
        return [(date_index, run) for date_index, run in published if date_index >= 0]

    def to_json(self) -> dict[str, Any]:
        return {
            "meters": self.meters,
            "days": self.days,
            "seed": self.seed,
            "start": self.start.isoformat(),
            "restatement_offsets": {run: self.restatement_offsets[run] for run in self.restatement_runs},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        return cls(
            meters=int(data["meters"]),
            days=int(data["days"]),
            seed=int(data["seed"]),
            start=dt.date.fromisoformat(data["start"]),
            restatement_offsets={
                str(run): int(offset) for run, offset in data["restatement_offsets"].items()
            },
        )
