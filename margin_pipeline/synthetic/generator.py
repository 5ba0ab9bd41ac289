"""Deterministic synthetic MHHS publications, written day by day into a landing folder.

What each as-of day ``k`` publishes (as-of date ``start + k - 1``; see ``scenario``):

- day 0: ``tariffs``, ``metering_points`` (all but the late ones), ``supply_agreements``,
  ``charges`` and monthly ``tariff_rates`` of the periods holding the start date, and the
  day-ahead HH ``tariff_rates`` of the first settlement date;
- every day ``k >= 1``: day-ahead HH ``tariff_rates`` of date ``start + k``; the SF
  ``prices`` and ``settlement_volumes`` of date ``start + k - 1``; the restatement runs due
  that day; new charge and monthly tariff rate periods starting on ``start + k``; and the
  registration and rate events of ``population`` and ``market`` that fall on the day.

The files of day ``k`` depend only on the scenario (not its ``days``) and ``k``, so a
history extended by ``generate_next_day`` is byte-identical to one generated longer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from margin_pipeline.contracts.feeds import FEEDS
from margin_pipeline.synthetic.consumption import volumes_table
from margin_pipeline.synthetic.landing import landing_path, write_feed_csv
from margin_pipeline.synthetic.market import (
    charges_table,
    corrected_hh_rates,
    hh_tariff_rates,
    monthly_tariff_rates,
    prices_table,
)
from margin_pipeline.synthetic.population import (
    metering_points_table,
    population,
    supply_agreements_table,
    tariffs_table,
)
from margin_pipeline.synthetic.scenario import Scenario

STATE_FILE = "synthetic_state.json"


@dataclass(frozen=True)
class GenerationSummary:
    """What one generation wrote: the files, the data rows per feed, the as-of days covered."""

    files: tuple[Path, ...]
    rows_per_feed: dict[str, int]
    asof_days: tuple[int, ...]

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_feed.values())


def _concat(tables: list[pa.Table | None]) -> pa.Table | None:
    present = [t for t in tables if t is not None and t.num_rows]
    return pa.concat_tables(present) if present else None


def publications_for_day(scenario: Scenario, asof_day: int) -> dict[str, pa.Table]:
    """The file contents of one as-of day, by feed name (only feeds that publish that day).

    Volumes and prices hold complete publications: for each ``(settlement_date, run_type)``
    due that day, every period of every meter supplied on that date as known that day.
    """
    if asof_day < 0:
        raise ValueError(f"as-of days start at 0, got {asof_day}")
    book = population(scenario)
    publications = scenario.runs_published_on(asof_day)
    by_feed = {
        "tariffs": tariffs_table() if asof_day == 0 else None,
        "metering_points": metering_points_table(book, asof_day),
        "supply_agreements": supply_agreements_table(scenario, book, asof_day),
        "charges": charges_table(scenario, asof_day),
        "tariff_rates": _concat(
            [
                monthly_tariff_rates(scenario, asof_day),
                hh_tariff_rates(scenario, asof_day),
                corrected_hh_rates(scenario, asof_day),
            ]
        ),
        "prices": _concat([prices_table(scenario, date_index, run) for date_index, run in publications]),
        "settlement_volumes": _concat(
            [volumes_table(scenario, book, date_index, run, asof_day) for date_index, run in publications]
        ),
    }
    return {feed: by_feed[feed] for feed in FEEDS if by_feed[feed] is not None}


def _write_days(landing: Path, scenario: Scenario, asof_days: range) -> GenerationSummary:
    files: list[Path] = []
    rows = {feed: 0 for feed in FEEDS}
    for asof_day in asof_days:
        for feed, table in publications_for_day(scenario, asof_day).items():
            path = landing_path(landing, feed, scenario.asof_date(asof_day))
            write_feed_csv(path, feed, table)
            files.append(path)
            rows[feed] += table.num_rows
    return GenerationSummary(tuple(files), rows, tuple(asof_days))


def state_path(landing: Path) -> Path:
    """Where the scenario of a data root is kept: beside its ``landing`` folder."""
    return landing.parent / STATE_FILE


def _save_state(landing: Path, scenario: Scenario) -> None:
    path = state_path(landing)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(scenario.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def load_state(landing: Path) -> Scenario:
    """The scenario last generated into ``landing``; its ``days`` is the last as-of day written."""
    path = state_path(landing)
    if not path.exists():
        raise FileNotFoundError(f"no synthetic history at {path}: run generate_history first")
    return Scenario.from_json(json.loads(path.read_text(encoding="utf-8")))


def generate_history(landing: Path, scenario: Scenario) -> GenerationSummary:
    """Write as-of days ``0..scenario.days`` into ``landing`` and save the scenario beside it."""
    summary = _write_days(landing, scenario, range(scenario.days + 1))
    _save_state(landing, scenario)
    return summary


def generate_next_day(landing: Path) -> GenerationSummary:
    """Write the next as-of day of the saved scenario (one more settlement date) and save it."""
    saved = load_state(landing)
    extended = dataclasses.replace(saved, days=saved.days + 1)
    summary = _write_days(landing, extended, range(extended.days, extended.days + 1))
    _save_state(landing, extended)
    return summary
