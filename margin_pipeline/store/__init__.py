"""Delta Lake I/O behind one interface: delta-rs embedded, delta-spark on clusters."""

from margin_pipeline.store.base import (
    ChangeFeed,
    DeltaStore,
    MergeOutcome,
    StaleWatermarkError,
    TableSpec,
)

__all__ = ["ChangeFeed", "DeltaStore", "MergeOutcome", "StaleWatermarkError", "TableSpec"]
