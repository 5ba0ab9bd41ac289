"""Half-hourly margin (docs/contract.md, ``hh_margin``): keys in both hh_revenue and settlement_cost_hh.

kwh         = meter kWh (from hh_revenue)
revenue_gbp = hh_revenue.revenue_gbp
cost_gbp    = settlement_cost_hh.total_cost_gbp
margin_gbp  = revenue_gbp - cost_gbp
"""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

KEY = ["mpan_core", "settlement_date", "settlement_period"]
OUTPUT_COLUMNS = (*KEY, "account_id", "kwh", "revenue_gbp", "cost_gbp", "margin_gbp")

#: An hh_margin row whose cost only changed value, updated in place (``t``: the row, ``s``: the
#: key's new ``total_cost_gbp``): the arithmetic of :func:`hh_margin` from the row's own revenue.
RECOSTED = {"cost_gbp": "s.total_cost_gbp", "margin_gbp": "t.revenue_gbp - s.total_cost_gbp"}


def hh_margin(hh_revenue: DataFrame, settlement_cost_hh: DataFrame) -> DataFrame:
    cost = settlement_cost_hh.select(*KEY, F.col("total_cost_gbp").alias("cost_gbp"))
    return (
        hh_revenue.select(*KEY, "account_id", "kwh", "revenue_gbp")
        .join(cost, KEY)
        .withColumn("margin_gbp", F.col("revenue_gbp") - F.col("cost_gbp"))
        .select(*OUTPUT_COLUMNS)
    )
