"""Wholesale prices, retail tariff rates and industry charges, as published day by day.

- *Day-ahead price* of a settlement date (£/MWh): a daily level around £72 (higher in
  winter, lower at weekends) on a local-time shape with a morning and a 16:00–19:00
  evening peak and a midday solar dip; on about one day in twenty a renewable surplus
  pushes night and midday periods down, some below zero. It drives the HH tariffs.
- *Settlement price* (the ``prices`` feed): the day-ahead price plus imbalance noise and
  rare evening spikes to £500–1,200; each restatement run nudges some periods a little.
- *HH tariff rates* for a date are published day-ahead, one row per period and GSP group:
  dynamic = min(100p, (≈2.2 × wholesale p/kWh + ≈12p from 16:00 to 19:00) × VAT);
  tracker = one rate for the day from the average wholesale price; EV time-of-use = a
  cheap 23:30–05:30 rate. Now and then (and once on a set day in 5..20) some dynamic
  rows of the previous settlement date are corrected (same key, new value).
- *Monthly tariff rates* (standard variable, fixed) have one row per quarter and group,
  from local midnight to local midnight, published the day before the quarter starts.
- *Charges* are published the day before their period starts; each quarter's policy levy
  is restated (same key, rate moved 1–4%) 10–20 days after it starts.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from margin_pipeline.contracts.calendar import local_midnight_utc
from margin_pipeline.contracts.feeds import GSP_GROUPS
from margin_pipeline.synthetic.catalogue import (
    CHARGES,
    DYNAMIC_TARIFF,
    HH_TARIFFS,
    MONTHLY_TARIFFS,
    POLICY_LEVY,
    TARIFFS,
    VAT,
    Charge,
    TariffKind,
    Validity,
)
from margin_pipeline.synthetic.landing import feed_table, rows_table
from margin_pipeline.synthetic.scenario import Purpose, Scenario, random_stream
from margin_pipeline.synthetic.shapes import (
    DayGrid,
    day_grid,
    hourly_profile,
    in_local_window,
    is_weekend,
    winter_factor,
)

GROUPS = len(GSP_GROUPS)
PRICE_PROFILE = hourly_profile(
    [(5, 0.85), (7, 0.95), (10, 1.15), (15, 0.82), (16, 1.0), (19, 1.4), (21, 1.15), (24, 0.95)]
)
RENEWABLE_SURPLUS = hourly_profile([(6, 1.0), (10, 0.5), (15, 1.0), (19, 0.2), (24, 0.6)])
DYNAMIC_CAP_P_PER_KWH = 100.0


def day_ahead_prices(scenario: Scenario, date_index: int) -> np.ndarray:
    """Day-ahead wholesale price (£/MWh) of every period of a settlement date."""
    day = scenario.settlement_date(date_index)
    grid = day_grid(day)
    draw = random_stream(scenario.seed, date_index, Purpose.DAY_AHEAD_PRICE)
    level = draw.normal(72.0, 9.0) + 40.0 * (winter_factor(day) - 1.0) - (9.0 if is_weekend(day) else 0.0)
    prices = level * PRICE_PROFILE[grid.local_slot] + draw.normal(0.0, 4.0, grid.periods)
    surplus = draw.uniform(55.0, 90.0) if draw.random() < 0.05 else 0.0
    return prices - surplus * RENEWABLE_SURPLUS[grid.local_slot]


def settlement_prices(scenario: Scenario, date_index: int, stage: int) -> np.ndarray:
    """Settlement price (£/MWh) of every period as published by the run at ``stage``."""
    grid = day_grid(scenario.settlement_date(date_index))
    draw = random_stream(scenario.seed, date_index, Purpose.SETTLEMENT_PRICE)
    prices = day_ahead_prices(scenario, date_index) + draw.normal(0.0, 6.0, grid.periods)
    spike = in_local_window(grid.local_slot, 16, 20) & (draw.random(grid.periods) < 0.003)
    prices = np.where(spike, draw.uniform(500.0, 1200.0, grid.periods), prices)
    for restatement in range(1, stage + 1):
        nudge = random_stream(scenario.seed, date_index, Purpose.PRICE_RESTATEMENT, restatement)
        moved = nudge.random(grid.periods) < 0.15
        prices = prices + moved * nudge.normal(0.0, 1.0, grid.periods) * (1.5 + 0.02 * np.abs(prices))
    return prices


def prices_table(scenario: Scenario, date_index: int, run: str) -> pa.Table:
    """The complete ``run`` price publication of a settlement date."""
    grid = day_grid(scenario.settlement_date(date_index))
    return feed_table(
        "prices",
        {
            "settlement_date": np.full(grid.periods, np.datetime64(grid.day, "D")),
            "settlement_period": grid.period_numbers,
            "run_type": [run] * grid.periods,
            "price_gbp_per_mwh": settlement_prices(scenario, date_index, scenario.runs.index(run)),
        },
    )


def _hh_tariff_grid(
    scenario: Scenario, tariff: int, grid: DayGrid, wholesale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(unit rate per group x period, standing charge per group)`` of an HH tariff, incl. VAT."""
    levels = random_stream(scenario.seed, 0, Purpose.TARIFF_LEVELS, tariff)
    standing = levels.uniform(46.0, 58.0, GROUPS)
    kind = TARIFFS[tariff].kind
    if kind is TariffKind.DYNAMIC:
        multiplier, peak_adder = levels.uniform(2.1, 2.3, GROUPS), levels.uniform(11.0, 13.5, GROUPS)
        peak = in_local_window(grid.local_slot, 16, 19)
        pre_vat = multiplier[:, None] * wholesale[None, :] / 10.0 + peak_adder[:, None] * peak[None, :]
        return np.minimum(DYNAMIC_CAP_P_PER_KWH, pre_vat * VAT), standing
    if kind is TariffKind.TRACKER:
        margin = levels.uniform(13.0, 15.5, GROUPS)
        daily = np.round(np.clip((1.25 * wholesale.mean() / 10.0 + margin) * VAT, 15.0, 35.0), 2)
        return np.repeat(daily[:, None], grid.periods, axis=1), standing
    if kind is TariffKind.TIME_OF_USE:
        off_peak, on_peak = (
            np.round(levels.uniform(7.0, 8.5, GROUPS), 2),
            np.round(levels.uniform(26.0, 29.0, GROUPS), 2),
        )
        cheap = in_local_window(grid.local_slot, 23.5, 5.5)
        return np.where(cheap[None, :], off_peak[:, None], on_peak[:, None]), standing
    raise ValueError(f"{TARIFFS[tariff].code} is not a half-hourly tariff")


def hh_tariff_rates(scenario: Scenario, date_index: int) -> pa.Table:
    """Day-ahead rates of every HH tariff and group for every period of a settlement date."""
    grid = day_grid(scenario.settlement_date(date_index))
    wholesale = day_ahead_prices(scenario, date_index)
    units, standings = zip(*(_hh_tariff_grid(scenario, t, grid, wholesale) for t in HH_TARIFFS), strict=True)
    per_tariff = GROUPS * grid.periods
    return feed_table(
        "tariff_rates",
        {
            "tariff_code": pa.array([TARIFFS[t].code for t in HH_TARIFFS]).take(
                np.repeat(np.arange(len(HH_TARIFFS)), per_tariff)
            ),
            "gsp_group": pa.array(GSP_GROUPS).take(
                np.tile(np.repeat(np.arange(GROUPS), grid.periods), len(HH_TARIFFS))
            ),
            "valid_from": np.tile(grid.utc_start, GROUPS * len(HH_TARIFFS)),
            "valid_to": np.tile(grid.utc_end, GROUPS * len(HH_TARIFFS)),
            "unit_rate_p_per_kwh": np.concatenate([u.ravel() for u in units]),
            "standing_charge_p_per_day": np.concatenate([np.repeat(s, grid.periods) for s in standings]),
        },
    )


def corrected_hh_rates(scenario: Scenario, asof_day: int) -> pa.Table | None:
    """Dynamic tariff rows of the previous settlement date re-published with corrected rates.

    Happens on one set as-of day in 5..20 and, by chance, on about one as-of day in 25.
    """
    set_day = int(random_stream(scenario.seed, 0, Purpose.RATE_CORRECTION_DAY).integers(5, 21))
    draw = random_stream(scenario.seed, asof_day, Purpose.RATE_CORRECTION)
    if asof_day < 2 or not (asof_day == set_day or draw.random() < 0.04):
        return None
    date_index = asof_day - 2
    grid = day_grid(scenario.settlement_date(date_index))
    groups = draw.choice(GROUPS, size=int(draw.integers(1, 4)), replace=False)
    first = int(draw.integers(0, grid.periods - 8))
    periods = np.arange(first, first + int(draw.integers(3, 9)))
    rows = hh_tariff_rates(scenario, date_index)
    dynamic_rows = HH_TARIFFS.index(DYNAMIC_TARIFF) * GROUPS * grid.periods
    selected = (dynamic_rows + groups[:, None] * grid.periods + periods[None, :]).ravel()
    corrected = rows.take(np.sort(selected))
    old = corrected.column("unit_rate_p_per_kwh").to_numpy()
    step = draw.uniform(0.5, 4.0, old.size) * draw.choice([-1.0, 1.0], old.size)
    new = np.where(old + step > DYNAMIC_CAP_P_PER_KWH, old - np.abs(step), old + step)
    column = corrected.schema.get_field_index("unit_rate_p_per_kwh")
    return corrected.set_column(column, corrected.schema.field(column), [np.round(new, 4)])


def _periods_published(
    scenario: Scenario, asof_day: int, validity: Validity
) -> list[tuple[dt.date, dt.date | None]]:
    """Rate periods whose rows appear on ``asof_day``: the one holding the start on day 0, else
    the one starting on the next settlement date."""
    if asof_day == 0:
        return [validity.period_containing(scenario.start)]
    day = scenario.settlement_date(asof_day)
    return [validity.period_containing(day)] if validity.starts_on(day) else []


def _quarterly_tariff_rates(
    scenario: Scenario, tariff: int, quarter: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    """``(unit rate, standing charge)`` per group of a monthly tariff in a quarter, incl. VAT."""
    levels = random_stream(scenario.seed, 0, Purpose.TARIFF_LEVELS, tariff)
    if TARIFFS[tariff].kind is TariffKind.FIXED:
        return np.round(levels.uniform(23.2, 24.6, GROUPS), 2), levels.uniform(44.0, 50.0, GROUPS)
    unit, standing = levels.uniform(24.6, 26.4, GROUPS), levels.uniform(47.0, 56.0, GROUPS)
    cap = random_stream(scenario.seed, 0, Purpose.QUARTERLY_TARIFF, Validity.QUARTER.ordinal(quarter))
    unit_move, standing_move = cap.normal(0.0, 0.015), cap.normal(0.0, 0.03)
    return np.round(unit * (1.0 + unit_move), 2), standing * (1.0 + standing_move)


def monthly_tariff_rates(scenario: Scenario, asof_day: int) -> pa.Table | None:
    """Quarterly rows of the monthly tariffs published on ``asof_day``."""
    rows: list[tuple[object, ...]] = []
    for quarter, next_quarter in _periods_published(scenario, asof_day, Validity.QUARTER):
        valid_from, valid_to = local_midnight_utc(quarter), local_midnight_utc(next_quarter or quarter)
        for tariff in MONTHLY_TARIFFS:
            units, standings = _quarterly_tariff_rates(scenario, tariff, quarter)
            rows += [
                (TARIFFS[tariff].code, group, valid_from, valid_to, unit, standing)
                for group, unit, standing in zip(GSP_GROUPS, units, standings, strict=True)
            ]
    return rows_table("tariff_rates", rows) if rows else None


def _charge_rates(scenario: Scenario, charge: int, period_start: dt.date) -> np.ndarray:
    """Rate per group (one value if national) of a charge for the period starting ``period_start``."""
    spec = CHARGES[charge]
    levels = random_stream(scenario.seed, 0, Purpose.CHARGE_LEVELS, charge)
    base = levels.uniform(spec.low, spec.high, GROUPS if spec.per_gsp else 1)
    if spec.validity is Validity.OPEN:
        return base
    drift = random_stream(
        scenario.seed, 0, Purpose.CHARGE_LEVELS, charge, spec.validity.ordinal(period_start)
    )
    return base * (1.0 + drift.normal(0.0, 0.04))


def _levy_restatement(scenario: Scenario, quarter: dt.date) -> tuple[int, np.ndarray]:
    """``(as-of day, restated rate per group)`` of the policy levy of a quarter."""
    draw = random_stream(scenario.seed, 0, Purpose.LEVY_RESTATEMENT, Validity.QUARTER.ordinal(quarter))
    asof_day = max(1, scenario.date_index(quarter)) + int(draw.integers(10, 21))
    change = draw.uniform(0.01, 0.04, GROUPS) * draw.choice([-1.0, 1.0], GROUPS)
    return asof_day, _charge_rates(scenario, POLICY_LEVY, quarter) * (1.0 + change)


def _restated_levy_quarters(scenario: Scenario, asof_day: int) -> list[tuple[dt.date, np.ndarray]]:
    """Quarters whose policy levy is restated on ``asof_day``, with the restated rates."""
    quarter, _ = Validity.QUARTER.period_containing(scenario.start)
    restated = []
    while scenario.date_index(quarter) < asof_day:
        day, rates = _levy_restatement(scenario, quarter)
        if day == asof_day:
            restated.append((quarter, rates))
        quarter = Validity.QUARTER.period_containing(quarter + dt.timedelta(days=92))[0]
    return restated


def _charge_rows(
    spec: Charge, valid: tuple[dt.date, dt.date | None], rates: np.ndarray
) -> list[tuple[object, ...]]:
    groups: list[str | None] = list(GSP_GROUPS) if spec.per_gsp else [None]
    band_start, band_end = spec.band or (None, None)
    return [
        (spec.code, g, spec.unit, float(r), valid[0], valid[1], band_start, band_end)
        for g, r in zip(groups, rates, strict=True)
    ]


def charges_table(scenario: Scenario, asof_day: int) -> pa.Table | None:
    """Charge rows published on ``asof_day``: new rate periods and policy levy restatements."""
    rows: list[tuple[object, ...]] = []
    for index, spec in enumerate(CHARGES):
        for valid in _periods_published(scenario, asof_day, spec.validity):
            rows += _charge_rows(spec, valid, _charge_rates(scenario, index, valid[0]))
    for quarter, rates in _restated_levy_quarters(scenario, asof_day):
        rows += _charge_rows(CHARGES[POLICY_LEVY], Validity.QUARTER.period_containing(quarter), rates)
    return rows_table("charges", rows) if rows else None
