"""Half-hourly meter volumes of a settlement date and how each settlement run reports them.

The *true* consumption of every meter and period is drawn once per date: a lognormal
annual volume (median 2,700 kWh) spread over a household evening-peak profile with
winter and weekend uplifts, plus overnight EV charging (~3.5 kWh a half-hour) and
winter heat-pump load for the meters that have them.

What a run reports differs from the truth in two ways, both drawn once per date. At SF,
3–8% of half-hours are *estimated* (quality ``E``, off by up to ±20%); and about 0.2% of
the *actual* reads are wrong. Each cell has a *resolving stage*: the first run (SF = 0,
then the restatement runs in rank order) that reports the true value as an actual.
Most estimates resolve at the first restatement, fewer at each later one and all by the
last; wrong actuals are corrected at a random restatement. A cell reported identically
by two runs is "unchanged".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from margin_pipeline.synthetic.landing import feed_table
from margin_pipeline.synthetic.population import Population
from margin_pipeline.synthetic.scenario import Purpose, Scenario, random_stream
from margin_pipeline.synthetic.shapes import (
    SLOTS_PER_DAY,
    day_grid,
    heating_need,
    hourly_profile,
    is_weekend,
    winter_factor,
)

HOUSEHOLD_PROFILE = hourly_profile(
    [
        (6, 0.45),
        (7, 0.7),
        (9, 1.2),
        (12, 0.85),
        (14, 0.95),
        (16, 0.85),
        (17, 1.3),
        (20, 2.3),
        (22, 1.6),
        (24, 0.9),
    ],
    normalise=True,
)
HEAT_PUMP_PROFILE = hourly_profile([(5, 0.6), (9, 1.5), (16, 0.8), (22, 1.3), (24, 0.7)], normalise=True)
EV_CHARGE_KWH = 3.5


def true_consumption(scenario: Scenario, book: Population, date_index: int) -> np.ndarray:
    """kWh of every meter (rows) in every period (columns) of a settlement date."""
    day = scenario.settlement_date(date_index)
    grid = day_grid(day)
    draw = random_stream(scenario.seed, date_index, Purpose.CONSUMPTION)
    level = (
        book.annual_kwh / (365.25 * SLOTS_PER_DAY) * winter_factor(day) * (1.08 if is_weekend(day) else 1.0)
    )
    noise = draw.lognormal(-0.08, 0.4, (book.size, grid.periods))
    kwh = level[:, None] * HOUSEHOLD_PROFILE[grid.local_slot][None, :] * noise

    charging = book.ev_charger & (draw.random(book.size) < 0.5)
    first_slot = draw.integers(1, 7, book.size)
    length = draw.integers(2, 7, book.size)
    slot = grid.local_slot[None, :]
    plugged_in = charging[:, None] & (slot >= first_slot[:, None]) & (slot < (first_slot + length)[:, None])
    kwh += plugged_in * EV_CHARGE_KWH * draw.uniform(0.9, 1.0, (book.size, grid.periods))

    heat = book.heat_pump_kw * heating_need(day)
    kwh += (
        heat[:, None]
        * HEAT_PUMP_PROFILE[grid.local_slot][None, :]
        * draw.uniform(0.8, 1.2, (book.size, grid.periods))
    )
    return kwh


def _resolving_probabilities(restatements: int) -> np.ndarray:
    """Chance that an estimate first becomes actual at restatement 1, 2, ... (all by the last)."""
    weights = np.array([0.75 * 0.25**i for i in range(restatements)])
    weights[-1] += 1.0 - weights.sum()
    return weights


def reported_volumes(
    scenario: Scenario, book: Population, date_index: int, stage: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(kwh, estimated)`` per meter and period as reported by the run at ``stage``."""
    truth = true_consumption(scenario, book, date_index)
    restatements = len(scenario.restatement_runs)
    draw = random_stream(scenario.seed, date_index, Purpose.METER_READS)
    shape = truth.shape
    estimated_at_sf = draw.random(shape) < draw.uniform(0.03, 0.08)
    wrong_actual = ~estimated_at_sf & (draw.random(shape) < 0.002)
    reported_factor = np.where(estimated_at_sf, draw.uniform(0.8, 1.2, shape), draw.uniform(0.7, 1.3, shape))
    if restatements:
        estimate_resolves = 1 + draw.choice(
            restatements, size=shape, p=_resolving_probabilities(restatements)
        )
        wrong_resolves = draw.integers(1, restatements + 1, shape)
    else:
        estimate_resolves = wrong_resolves = np.ones(shape, dtype=np.int64)
    resolving_stage = np.where(estimated_at_sf, estimate_resolves, np.where(wrong_actual, wrong_resolves, 0))
    pending = resolving_stage > stage
    kwh = np.where(pending, truth * reported_factor, truth)
    return kwh, pending & estimated_at_sf


def volumes_table(scenario: Scenario, book: Population, date_index: int, run: str, asof_day: int) -> pa.Table:
    """The complete ``run`` publication of a settlement date: every supplied meter, every period."""
    grid = day_grid(scenario.settlement_date(date_index))
    kwh, estimated = reported_volumes(scenario, book, date_index, scenario.runs.index(run))
    meters = np.flatnonzero(book.supplied(date_index, asof_day))
    rows = meters.size * grid.periods
    return feed_table(
        "settlement_volumes",
        {
            "mpan_core": pa.array(book.mpan_core).take(np.repeat(meters, grid.periods)),
            "settlement_date": np.full(rows, np.datetime64(grid.day, "D")),
            "settlement_period": np.tile(grid.period_numbers, meters.size),
            "run_type": pa.repeat(pa.scalar(run), rows),
            "kwh": kwh[meters].ravel(),
            "quality": pa.array(["A", "E"]).take(estimated[meters].ravel().astype(np.int64)),
        },
    )
