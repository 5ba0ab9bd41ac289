"""The monthly stream's tuning profile: its run config, with its defaults in this one place."""

import datetime as dt

from pydantic import Field

from margin_pipeline.streams.shared.compute import DatabricksCompute
from margin_pipeline.streams.shared.profile import StreamProfile


class MonthlyCompute(DatabricksCompute):
    """An aggregation of MPAN-days to account x month: general-purpose nodes, a small fixed cluster."""

    node_type_id: str = "Standard_D4ds_v5"
    num_workers: int = 2


class MonthlyProfile(StreamProfile):
    """An aggregation to account x month: few output rows, so few shuffle partitions; the
    per-MPAN-day ledger it aggregates is small enough to broadcast-join the agreements."""

    shuffle_partitions: int = Field(default=2, description="spark.sql.shuffle.partitions for this stream.")
    broadcast_threshold_mb: int = Field(
        default=64, description="Reference tables below this size are broadcast to the joins."
    )
    databricks: MonthlyCompute | None = Field(
        default=None,
        description="Job cluster when engine is databricks (default: MonthlyCompute); ignored otherwise.",
    )
    CLUSTER = MonthlyCompute
    backfill_from: str | None = Field(
        default=None,
        description="Backfill: recompute every account of the months backfill_from..backfill_to (YYYY-MM, "
        "inclusive) of monthly_margin from the day ledger, through the same per-month steps as an "
        "incremental run. Watermarks are left alone. Empty: consume the change feed as usual.",
    )
    backfill_to: str | None = Field(default=None, description="Last month of a backfill (YYYY-MM).")

    def backfill_months(self) -> list[dt.date] | None:
        """The first days of the backfill's months, or None when this is not a backfill."""
        if self.backfill_from is None and self.backfill_to is None:
            return None
        first, last = (_month(self.backfill_from, "backfill_from"), _month(self.backfill_to, "backfill_to"))
        if last < first:
            raise ValueError(f"backfill_to {self.backfill_to} is before backfill_from {self.backfill_from}")
        return months_between(first, last)


def next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of the months from ``first``'s month to ``last``'s, inclusive."""
    months = [first.replace(day=1)]
    while next_month(months[-1]) <= last:
        months.append(next_month(months[-1]))
    return months


def _month(text: str | None, name: str) -> dt.date:
    try:
        return dt.datetime.strptime(text or "", "%Y-%m").date()
    except ValueError:
        raise ValueError(
            f"{name} must be a month YYYY-MM (both ends of a backfill are needed), got {text!r}"
        ) from None
