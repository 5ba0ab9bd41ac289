"""The supplier's book: meters, accounts and tariffs, and the registration events that change it.

Every attribute is drawn once per ``(meters, seed, start)`` from the static streams, and so
is the as-of day of every registration event, which makes each day's files a pure
function of the scenario and the day:

- *late metering point*: about 1% of meters (at least one) have their metering point
  published on an as-of day in 2..20 instead of day 0 (their volumes arrive from the start);
- *tariff switch*: one meter of a monthly tariff switches on a day in 8..22 whose new
  supply date is not the 1st (a mid-month switch), and every other meter switches once
  after a geometric wait (mean 2,000 days); the old agreement gets a ``supply_end`` and a
  new agreement of the same account on another tariff starts the next date;
- *registration correction*: about 0.2% of meters (at least one, the first found on a day
  in 10..20, others in 10..90) turn out not to be ours from a date 5..8 days before it
  was found: their agreement's ``supply_end`` is corrected and every volumes run published
  from then on leaves them out of the affected dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import SupportsIndex

import numpy as np
import pyarrow as pa

from margin_pipeline.contracts.feeds import GSP_GROUPS
from margin_pipeline.contracts.mpan import with_check_digit
from margin_pipeline.synthetic.catalogue import HH_TARIFFS, STANDARD_TARIFF, TARIFFS, TariffKind
from margin_pipeline.synthetic.landing import feed_table, rows_table
from margin_pipeline.synthetic.scenario import Purpose, Scenario, random_stream

DISTRIBUTOR_GSP_GROUP: dict[int, str] = dict(
    zip(
        range(10, 24),
        ("_A", "_B", "_C", "_D", "_E", "_F", "_G", "_P", "_N", "_J", "_H", "_K", "_L", "_M"),
        strict=True,
    )
)
"""GB distributor ids (MPAN core digits 1-2) and the GSP group each serves."""
NEVER = 0


@dataclass(frozen=True)
class Population:
    """Per-meter attributes, indexed by meter number ``0..meters-1``.

    Event days are as-of days, ``NEVER`` (0) when the event does not happen; a switch
    published on as-of day ``s`` starts the new agreement on settlement date index ``s``.
    """

    mpan_core: tuple[str, ...]
    gsp_index: np.ndarray
    line_loss_factor: np.ndarray
    annual_kwh: np.ndarray
    ev_charger: np.ndarray
    heat_pump_kw: np.ndarray
    account_id: tuple[str, ...]
    tariff_index: np.ndarray
    supply_start: tuple[dt.date, ...]
    metering_point_day: np.ndarray
    switch_day: np.ndarray
    switch_tariff_index: np.ndarray
    correction_day: np.ndarray
    corrected_from: np.ndarray

    @property
    def size(self) -> int:
        return len(self.mpan_core)

    def supplied(self, date_index: int, asof_day: int) -> np.ndarray:
        """Which meters are ours on a settlement date, as known on ``asof_day``."""
        corrected = (self.correction_day != NEVER) & (self.correction_day <= asof_day)
        return ~(corrected & (self.corrected_from <= date_index))


def population(scenario: Scenario) -> Population:
    """The book of ``scenario`` (cached: it depends only on meters, seed and start)."""
    return _draw_population(scenario.meters, scenario.seed, scenario.start)


def _frozen(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


@lru_cache(maxsize=16)
def _draw_population(meters: int, seed: int, start: dt.date) -> Population:
    draw = random_stream(seed, 0, Purpose.METERS)
    distributor = draw.integers(10, 24, meters)
    serial = draw.choice(10**10, size=meters, replace=False)
    mpan_core = tuple(with_check_digit(f"{d:02d}{s:010d}") for d, s in zip(distributor, serial, strict=True))
    gsp_index = np.array([GSP_GROUPS.index(DISTRIBUTOR_GSP_GROUP[d]) for d in distributor])
    line_loss_factor = draw.uniform(1.05, 1.10, meters)
    annual_kwh = draw.lognormal(np.log(2700.0), 0.45, meters)
    tariff_index = draw.choice(len(TARIFFS), size=meters, p=[t.share for t in TARIFFS])
    kinds = np.array([TARIFFS[i].kind for i in tariff_index])
    ev_charger = (kinds == TariffKind.TIME_OF_USE) | (
        (kinds == TariffKind.DYNAMIC) & (draw.random(meters) < 0.25)
    )
    heat_pump_kw = np.where(draw.random(meters) < 0.06, draw.uniform(0.5, 1.5, meters), 0.0)

    accounts = random_stream(seed, 0, Purpose.ACCOUNTS)
    shares_account_with_next = accounts.random(meters) < 0.15
    supply_days_before_start = accounts.integers(20, 1500, meters)
    account_number = np.empty(meters, dtype=np.int64)
    meter, number = 0, 0
    while meter < meters:
        width = 2 if shares_account_with_next[meter] and meter + 1 < meters else 1
        account_number[meter : meter + width] = number
        meter, number = meter + width, number + 1
    account_id = tuple(f"ACC-{n + 1:06d}" for n in account_number)
    supply_start = tuple(start - dt.timedelta(days=int(d)) for d in supply_days_before_start)

    events = random_stream(seed, 0, Purpose.EVENTS)
    metering_point_day = np.zeros(meters, dtype=np.int64)
    late = events.choice(meters, size=max(1, round(0.01 * meters)), replace=False)
    metering_point_day[late] = events.integers(2, 21, late.size)

    correction_day = np.zeros(meters, dtype=np.int64)
    corrected_from = np.zeros(meters, dtype=np.int64)
    corrected = events.choice(meters, size=max(1, round(0.002 * meters)), replace=False)
    correction_day[corrected] = np.concatenate(
        [events.integers(10, 21, 1), events.integers(10, 91, corrected.size - 1)]
    )
    corrected_from[corrected] = correction_day[corrected] - events.integers(5, 9, corrected.size)

    switch_day = 1 + events.geometric(1 / 2000, meters)
    switch_day[corrected] = NEVER
    is_hh = np.isin(tariff_index, HH_TARIFFS)
    switch_tariff_index = np.where(is_hh, STANDARD_TARIFF, events.choice(HH_TARIFFS, meters))
    candidates = np.flatnonzero(switch_day != NEVER)
    monthly_candidates = candidates[~is_hh[candidates]]
    pool = monthly_candidates if monthly_candidates.size else candidates
    if pool.size:
        mid_month_switcher = events.choice(pool)
        day = int(events.integers(8, 23))
        switch_day[mid_month_switcher] = day + 1 if (start + dt.timedelta(days=day)).day == 1 else day

    return Population(
        mpan_core=mpan_core,
        gsp_index=_frozen(gsp_index),
        line_loss_factor=_frozen(line_loss_factor),
        annual_kwh=_frozen(annual_kwh),
        ev_charger=_frozen(ev_charger),
        heat_pump_kw=_frozen(heat_pump_kw),
        account_id=account_id,
        tariff_index=_frozen(tariff_index),
        supply_start=supply_start,
        metering_point_day=_frozen(metering_point_day),
        switch_day=_frozen(switch_day),
        switch_tariff_index=_frozen(switch_tariff_index),
        correction_day=_frozen(correction_day),
        corrected_from=_frozen(corrected_from),
    )


def metering_points_table(book: Population, asof_day: int) -> pa.Table | None:
    """Metering points published on ``asof_day``: the book on day 0, late arrivals after."""
    meters = np.flatnonzero(book.metering_point_day == asof_day)
    if not meters.size:
        return None
    return feed_table(
        "metering_points",
        {
            "mpan_core": [book.mpan_core[m] for m in meters],
            "gsp_group": [GSP_GROUPS[g] for g in book.gsp_index[meters]],
            "line_loss_factor": book.line_loss_factor[meters],
        },
    )


def tariffs_table() -> pa.Table:
    """The product catalogue, published on day 0."""
    return feed_table(
        "tariffs",
        {"tariff_code": [t.code for t in TARIFFS], "billing_grain": [t.billing_grain for t in TARIFFS]},
    )


def supply_agreements_table(scenario: Scenario, book: Population, asof_day: int) -> pa.Table | None:
    """Agreements upserted on ``asof_day``: all open agreements on day 0, then switches and corrections."""

    def agreement(
        m: SupportsIndex, tariff: SupportsIndex, start: dt.date, end: dt.date | None
    ) -> tuple[object, ...]:
        return book.account_id[m], book.mpan_core[m], TARIFFS[tariff].code, start, end

    if asof_day == 0:
        rows = [agreement(m, book.tariff_index[m], book.supply_start[m], None) for m in range(book.size)]
        return rows_table("supply_agreements", rows)
    rows = []
    new_start = scenario.settlement_date(asof_day)
    for m in np.flatnonzero(book.switch_day == asof_day):
        rows.append(
            agreement(m, book.tariff_index[m], book.supply_start[m], new_start - dt.timedelta(days=1))
        )
        rows.append(agreement(m, book.switch_tariff_index[m], new_start, None))
    for m in np.flatnonzero(book.correction_day == asof_day):
        last_day_ours = scenario.settlement_date(int(book.corrected_from[m]) - 1)
        rows.append(agreement(m, book.tariff_index[m], book.supply_start[m], last_day_ours))
    return rows_table("supply_agreements", rows) if rows else None
