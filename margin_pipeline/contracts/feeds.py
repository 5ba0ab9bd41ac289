"""Landing feeds of docs/contract.md: columns, keys, types and publication kind.

Each feed lands as CSV files under ``landing/<feed>/`` and is kept in a substrate
Delta table of the same name. ``UPSERT`` feeds merge on their key;
``PUBLICATION`` feeds (volumes, prices) replace whole settlement dates by run rank.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pyarrow as pa

RUN_TYPES: tuple[str, ...] = ("SF", "R1", "R2", "R3", "RF", "DF")
RUN_RANK: dict[str, int] = {run: rank for rank, run in enumerate(RUN_TYPES)}
FINAL_RUN_TYPES: frozenset[str] = frozenset({"RF", "DF"})
GSP_GROUPS: tuple[str, ...] = tuple(f"_{c}" for c in "ABCDEFGHJKLMNP")
BILLING_GRAINS: tuple[str, ...] = ("HH", "MONTHLY")
CHARGE_UNITS: tuple[str, ...] = ("GBP_PER_MWH", "P_PER_KWH", "P_PER_DAY")
QUALITIES: tuple[str, ...] = ("A", "E")

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


class Kind(enum.Enum):
    UPSERT = "upsert"
    PUBLICATION = "publication"


class ColumnType(enum.Enum):
    """How a CSV cell is parsed; ``arrow`` is the substrate type."""

    STRING = "string"
    INT = "int"
    DOUBLE = "double"
    DATE = "date"  # YYYY-MM-DD, a local GB date
    TIMESTAMP = "timestamp"  # YYYY-MM-DDTHH:MM:SSZ, UTC
    TIME = "time"  # HH:MM local wall clock, kept as text

    @property
    def arrow(self) -> pa.DataType:
        return {
            ColumnType.STRING: pa.string(),
            ColumnType.INT: pa.int32(),
            ColumnType.DOUBLE: pa.float64(),
            ColumnType.DATE: pa.date32(),
            ColumnType.TIMESTAMP: UTC_TIMESTAMP,
            ColumnType.TIME: pa.string(),
        }[self]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = True
    #: Stored instead of null for an empty cell, where empty has a meaning and is part of a key.
    empty_as: str | None = None


@dataclass(frozen=True)
class Feed:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    kind: Kind
    partition_by: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.column_names if c not in self.key)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field(c.name, c.type.arrow, nullable=not c.required and c.empty_as is None)
                for c in self.columns
            ]
        )


S, INT, F, D, TS, TM = (
    ColumnType.STRING,
    ColumnType.INT,
    ColumnType.DOUBLE,
    ColumnType.DATE,
    ColumnType.TIMESTAMP,
    ColumnType.TIME,
)

METERING_POINTS = Feed(
    "metering_points",
    (Column("mpan_core", S), Column("gsp_group", S), Column("line_loss_factor", F)),
    key=("mpan_core",),
    kind=Kind.UPSERT,
)
TARIFFS = Feed(
    "tariffs",
    (Column("tariff_code", S), Column("billing_grain", S)),
    key=("tariff_code",),
    kind=Kind.UPSERT,
)
TARIFF_RATES = Feed(
    "tariff_rates",
    (
        Column("tariff_code", S),
        Column("gsp_group", S),
        Column("valid_from", TS),
        Column("valid_to", TS),
        Column("unit_rate_p_per_kwh", F),
        Column("standing_charge_p_per_day", F),
    ),
    key=("tariff_code", "gsp_group", "valid_from"),
    kind=Kind.UPSERT,
)
SUPPLY_AGREEMENTS = Feed(
    "supply_agreements",
    (
        Column("account_id", S),
        Column("mpan_core", S),
        Column("tariff_code", S),
        Column("supply_start", D),
        Column("supply_end", D, required=False),
    ),
    key=("account_id", "mpan_core", "supply_start"),
    kind=Kind.UPSERT,
)
CHARGES = Feed(
    "charges",
    (
        Column("charge_code", S),
        # Empty in the file means "every GSP group"; kept as "" so it can be part of the key.
        Column("gsp_group", S, required=False, empty_as=""),
        Column("unit", S),
        Column("rate", F),
        Column("valid_from", D),
        Column("valid_to", D, required=False),
        Column("band_start", TM, required=False),
        Column("band_end", TM, required=False),
    ),
    key=("charge_code", "gsp_group", "valid_from"),
    kind=Kind.UPSERT,
)
SETTLEMENT_VOLUMES = Feed(
    "settlement_volumes",
    (
        Column("mpan_core", S),
        Column("settlement_date", D),
        Column("settlement_period", INT),
        Column("run_type", S),
        Column("kwh", F),
        Column("quality", S),
    ),
    key=("mpan_core", "settlement_date", "settlement_period"),
    kind=Kind.PUBLICATION,
    partition_by=("settlement_date",),
)
PRICES = Feed(
    "prices",
    (
        Column("settlement_date", D),
        Column("settlement_period", INT),
        Column("run_type", S),
        Column("price_gbp_per_mwh", F),
    ),
    key=("settlement_date", "settlement_period"),
    kind=Kind.PUBLICATION,
)

FEEDS: dict[str, Feed] = {
    f.name: f
    for f in (METERING_POINTS, TARIFFS, TARIFF_RATES, SUPPLY_AGREEMENTS, CHARGES, SETTLEMENT_VOLUMES, PRICES)
}
