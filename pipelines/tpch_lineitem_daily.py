"""Daily upsert of TPC-H line items into a Delta table partitioned by ship month.

Input: one folder of Parquet files per arrival day (``raw/lineitem/ds=YYYY-MM-DD``),
each holding new line items and changed versions of existing ones. The table
keeps one row per ``(l_orderkey, l_linenumber)``: the latest by ``l_updated_at``.
A numba row kernel (``@etl.kernel``) derives the net revenue and the delivery delay of each line.

Run it: ``etl run tpch_lineitem_daily`` (all days) or ``--date 2026-01-02`` (one day).
"""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd

from etl import RunContext, Schema, Source, Target, kernel, pipeline
from etl.demo.tpch import write_demo

SCHEMA = Schema({
    "l_orderkey": "int64", "l_linenumber": "int64", "l_partkey": "int64", "l_suppkey": "int64",
    "l_quantity": "float64", "l_extendedprice": "float64", "l_discount": "float64", "l_tax": "float64",
    "l_returnflag": "string", "l_linestatus": "string", "l_shipdate": "date32", "l_commitdate": "date32",
    "l_receiptdate": "date32", "l_shipinstruct": "string", "l_shipmode": "string", "l_comment": "string",
    "l_updated_at": "timestamp[us, UTC]", "l_net_revenue": "float64", "l_delay_days": "int64",
    "ship_month": "string",
}, not_null=["l_shipdate", "ship_month", "l_updated_at"])


@kernel(inputs={"l_extendedprice": "float64", "l_discount": "float64", "l_tax": "float64",
                "commit_day": "int64", "receipt_day": "int64"},
        outputs={"l_net_revenue": "float64", "l_delay_days": "int64"})
def net_and_delay(l_extendedprice, l_discount, l_tax, commit_day, receipt_day, l_net_revenue, l_delay_days):
    """Net revenue (price after discount and tax, in cents) and days delivered late (0 if on time)."""
    for i in range(l_extendedprice.size):
        l_net_revenue[i] = round(l_extendedprice[i] * (1.0 - l_discount[i]) * (1.0 + l_tax[i]), 2)
        l_delay_days[i] = max(0, receipt_day[i] - commit_day[i])


def _days(s: pd.Series) -> pd.Series:
    return pd.Series(pd.to_datetime(s).to_numpy("datetime64[D]").astype("int64"), index=s.index)


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Per partition: the kernel's derived columns, and the ship month."""
    out = net_and_delay(df.assign(commit_day=_days(df["l_commitdate"]), receipt_day=_days(df["l_receiptdate"])))
    out["ship_month"] = pd.to_datetime(df["l_shipdate"]).dt.strftime("%Y-%m")
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
