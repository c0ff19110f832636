"""Sessions of click events, cut by a numba per-group kernel, maintained by MERGE.

Each user's clicks are sessionised by a 30-minute inactivity gap with
:func:`etl.kernels.sessionize` (a per-group kernel: the framework shuffles by
user so a user's rows are contiguous in one partition, sorts them by time and
hands the kernel group offsets). Each session becomes one row keyed by
``(user_id, session_start)``, partitioned by day.
"""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd

from etl import RunContext, Schema, Source, Target, pipeline
from etl.demo.clicks import write_demo
from etl.kernels import sessionize

SCHEMA = Schema({"user_id": "int64", "session_start": "timestamp[us, UTC]", "day": "string",
                 "session_end": "timestamp[us, UTC]", "events": "int64", "duration_s": "float64",
                 "pages": "int64"}, not_null=["day"])


def demo(ctx: RunContext) -> None:
    write_demo(ctx.warehouse, users=int(ctx.params.get("demo_users", 500)))


def _summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["user_id", "session"], sort=False)
    out = g.agg(session_start=("ts", "min"), session_end=("ts", "max"), events=("ts", "size"),
                pages=("page", "nunique")).reset_index()
    out["duration_s"] = (out["session_end"] - out["session_start"]).dt.total_seconds()
    out["day"] = out["session_start"].dt.strftime("%Y-%m-%d")
    for c in ("session_start", "session_end"):
        out[c] = out[c].dt.as_unit("us")
    return out[SCHEMA.names].astype({"events": "int64", "pages": "int64"})


@pipeline(
    name="click_sessions",
    sources={"clicks": Source.parquet("{warehouse}/raw/clicks/ds={date}/*.parquet")},
    target=Target.merge("click_sessions", keys=["user_id", "session_start"], partition_by=["day"]),
    schema=SCHEMA,
    demo=demo,
)
def click_sessions(clicks: dd.DataFrame) -> dd.DataFrame:
    """One row per user session (30-minute inactivity gap): start, end, events, distinct pages."""
    sessions = sessionize(clicks, by="user_id", time="ts", gap="30min")
    # sessionize left every user's rows in one partition: summarise partition by partition
    return sessions.map_partitions(_summarise, meta=SCHEMA.meta())
