"""Revenue per ship day and market segment, maintained by MERGE from the line-item table.

Reads the ``lineitem`` Delta table (the output of ``tpch_lineitem_daily``) at its
latest version, joins the orders' customer segment, and upserts one row per
``(ship_date, segment)``. Aggregates that did not change are not rewritten, so
a run after a small daily upsert rewrites only the months it touched. The
Delta version read is recorded in the commit's lineage.
"""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd

from etl import RunContext, Schema, Source, Target, pipeline, run

SCHEMA = Schema({"ship_date": "date32", "segment": "string", "ship_month": "string", "revenue": "float64",
                 "line_items": "int64", "quantity": "float64"}, not_null=["ship_month"])


def demo(ctx: RunContext) -> None:
    """Build the line-item table first (its own demo input included), on the same warehouse."""
    run("tpch_lineitem_daily", warehouse=ctx.warehouse, params=dict(ctx.params))


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    out = df.rename(columns={"l_shipdate": "ship_date", "c_mktsegment": "segment"})
    out["ship_month"] = pd.to_datetime(out["ship_date"]).dt.strftime("%Y-%m")
    out["revenue"] = out["revenue"].round(2)
    return out[SCHEMA.names]


@pipeline(
    name="revenue_by_segment_daily",
    sources={"lineitem": Source.delta("{warehouse}/lineitem"),
             "orders": Source.parquet("{warehouse}/raw/orders/*.parquet")},
    target=Target.merge("revenue_by_segment_daily", keys=["ship_date", "segment"], partition_by=["ship_month"]),
    schema=SCHEMA,
    demo=demo,
)
def revenue_by_segment_daily(lineitem: dd.DataFrame, orders: dd.DataFrame) -> dd.DataFrame:
    """Net revenue, line count and quantity per ship day and customer segment."""
    joined = lineitem[["l_orderkey", "l_shipdate", "l_net_revenue", "l_quantity"]].merge(
        orders[["o_orderkey", "c_mktsegment"]], left_on="l_orderkey", right_on="o_orderkey", how="left")
    joined["c_mktsegment"] = joined["c_mktsegment"].fillna("UNKNOWN")
    agg = joined.groupby(["l_shipdate", "c_mktsegment"]).agg(
        revenue=("l_net_revenue", "sum"), line_items=("l_orderkey", "count"), quantity=("l_quantity", "sum"),
    ).reset_index()
    return agg.map_partitions(_finish, meta=SCHEMA.meta())
