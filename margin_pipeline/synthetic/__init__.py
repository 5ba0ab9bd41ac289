"""Deterministic synthetic MHHS publications (volumes, prices, tariffs, charges, registrations)."""

from margin_pipeline.synthetic.generator import (
    GenerationSummary,
    generate_history,
    generate_next_day,
    load_state,
    publications_for_day,
)
from margin_pipeline.synthetic.scenario import Scenario

__all__ = [
    "GenerationSummary",
    "Scenario",
    "generate_history",
    "generate_next_day",
    "load_state",
    "publications_for_day",
]
