"""Reducing a change feed to what a stream must recompute."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from margin_pipeline.store.base import CHANGE_TYPE, COMMIT_VERSION


def union_all(parts: Sequence[DataFrame]) -> DataFrame:
    """One DataFrame of every row of ``parts`` (same columns, matched by name); ``parts`` is not empty."""
    return reduce(DataFrame.unionByName, parts)


def changed_keys(changes: DataFrame, columns: Sequence[str]) -> DataFrame:
    """Distinct ``columns`` over every change row: inserts, deletes, and both images of updates.

    Pre-images matter: a row that moved (a tariff switched, a validity shortened)
    affects both where it was and where it is now.
    """
    return changes.select(*columns).distinct()


def latest_state(changes: DataFrame, key: Sequence[str]) -> tuple[DataFrame, DataFrame]:
    """State at the end of the change range for every key the feed touched.

    Returns ``(alive, deleted_keys)``: rows whose last change leaves them present
    (with their values as of the range end), and keys whose last change deleted them.
    Only valid for a complete change feed ``(watermark, N]``. A RESTORE commit can delete a key
    (from a file it removes) and insert it (from a file it re-adds): the insert is its state.
    """
    last = Window.partitionBy(*key).orderBy(
        F.col(COMMIT_VERSION).desc(), (F.col(CHANGE_TYPE) == "delete").asc()
    )
    latest = (
        changes.where(F.col(CHANGE_TYPE) != "update_preimage")
        .withColumn("_rank", F.row_number().over(last))
        .where(F.col("_rank") == 1)
    )
    alive = latest.where(F.col(CHANGE_TYPE) != "delete").drop("_rank", CHANGE_TYPE, COMMIT_VERSION)
    deleted = latest.where(F.col(CHANGE_TYPE) == "delete").select(*key)
    return alive, deleted
