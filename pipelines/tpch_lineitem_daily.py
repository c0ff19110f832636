"""Daily upsert of TPC-H line items into a Delta table partitioned by ship month.

Input: one folder of Parquet files per arrival day (``raw/lineitem/ds=YYYY-MM-DD``),
each holding new line items and changed versions of existing ones. The table
keeps one row per ``(l_orderkey, l_linenumber)``: the latest by ``l_updated_at``.
A numba kernel derives the net revenue and the shipping delay of each line.

Run it: ``etl run tpch_lineitem_daily`` (all days) or ``--date 2026-01-02`` (one day).
"""

from __future__ import annotations

import dask.dataframe as dd
import numba
import numpy as np
import pandas as pd

from etl import RunContext, Schema, Source, Target, pipeline
from etl.demo.tpch import write_demo

SCHEMA = Schema({
    "l_orderkey": "int64", "l_linenumber": "int64", "l_partkey": "int64", "l_suppkey": "int64",
    "l_quantity": "float64", "l_extendedprice": "float64", "l_discount": "float64", "l_tax": "float64",
    "l_returnflag": "string", "l_linestatus": "string", "l_shipdate": "date32", "l_commitdate": "date32",
    "l_receiptdate": "date32", "l_shipinstruct": "string", "l_shipmode": "string", "l_comment": "string",
    "l_updated_at": "timestamp[us, UTC]", "l_net_revenue": "float64", "l_delay_days": "int32",
    "ship_month": "string",
}, not_null=["l_shipdate", "ship_month", "l_updated_at"])


@numba.njit(cache=True, nogil=True)
def _net_and_delay(price, discount, tax, commit_days, receipt_days):
    n = len(price)
    net = np.empty(n, np.float64)
    delay = np.empty(n, np.int32)
    for i in range(n):
        net[i] = round(price[i] * (1.0 - discount[i]) * (1.0 + tax[i]), 2)
        delay[i] = max(0, receipt_days[i] - commit_days[i])
    return net, delay


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Per partition: net revenue and delay (numba), ship month."""
    days = lambda c: pd.to_datetime(df[c]).to_numpy("datetime64[D]").astype("int64")  # noqa: E731
    net, delay = _net_and_delay(df["l_extendedprice"].to_numpy("float64"), df["l_discount"].to_numpy("float64"),
                                df["l_tax"].to_numpy("float64"), days("l_commitdate"), days("l_receiptdate"))
    out = df.assign(l_net_revenue=net, l_delay_days=delay)
    out["ship_month"] = pd.to_datetime(df["l_shipdate"]).dt.strftime("%Y-%m").astype("string[pyarrow]")
    return out[SCHEMA.names]


def demo(ctx: RunContext) -> None:
    """Three days of demo input (an initial extract and two change batches)."""
    write_demo(ctx.warehouse, orders_count=int(ctx.params.get("demo_orders", 20_000)))


@pipeline(
    name="tpch_lineitem_daily",
    sources={"lineitem": Source.parquet("{warehouse}/raw/lineitem/ds={date}/*.parquet")},
    target=Target.merge("lineitem", keys=["l_orderkey", "l_linenumber"], partition_by=["ship_month"],
                        order_by="l_updated_at"),
    schema=SCHEMA,
    demo=demo,
)
def tpch_lineitem_daily(lineitem: dd.DataFrame) -> dd.DataFrame:
    """Upsert the day's line items (latest version per key wins), partitioned by ship month."""
    return lineitem.map_partitions(derive, meta=SCHEMA.meta())
