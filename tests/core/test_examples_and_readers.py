"""The example pipelines run out of the box, and what we write is a plain Delta table for other readers."""

from __future__ import annotations

import glob
import json
import os

import pandas as pd
import pyarrow.dataset as ds
from deltalake import DeltaTable

import etl

PIPELINES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "pipelines")


def _lineitem_oracle(warehouse: str) -> pd.DataFrame:
    raw = pd.concat(pd.read_parquet(f) for f in sorted(glob.glob(f"{warehouse}/raw/lineitem/ds=*/*.parquet")))
    return raw.sort_values("l_updated_at", kind="stable").drop_duplicates(["l_orderkey", "l_linenumber"],
                                                                           keep="last")


def test_examples_on_an_empty_warehouse_and_other_readers(client, warehouse, monkeypatch):
    monkeypatch.setenv("ETL_PIPELINES", PIPELINES)
    r = etl.run("revenue_by_segment_daily", warehouse=warehouse, client=client, params={"demo_orders": 600})
    assert r.status == "committed" and r.inserted > 0
    line_url, rev_url = f"{warehouse}/lineitem", f"{warehouse}/revenue_by_segment_daily"
    want = _lineitem_oracle(warehouse)
    got = DeltaTable(line_url).to_pandas()
    assert len(got) == len(want) and not got.duplicated(["l_orderkey", "l_linenumber"]).any()
    merged = got.merge(want, on=["l_orderkey", "l_linenumber"], suffixes=("", "_w"))
    assert (merged.l_quantity == merged.l_quantity_w).all() and (merged.l_comment == merged.l_comment_w).all()
    expected_net = (merged.l_extendedprice * (1 - merged.l_discount) * (1 + merged.l_tax)).round(2)
    assert (merged.l_net_revenue - expected_net).abs().max() < 0.011  # the numba kernel's derived column

    # the aggregate equals pandas over the committed line items
    rev = DeltaTable(rev_url).to_pandas()
    assert abs(rev.revenue.sum() - got.l_net_revenue.sum()) < 1.0 and rev.line_items.sum() == len(got)
    lineage = DeltaTable(rev_url).history(1)[0]
    assert json.loads(lineage["etl.sources"])[0]["version"] == DeltaTable(line_url).version()

    # other readers: polars, DuckDB over the live files, a pyarrow dataset
    import duckdb
    import polars as pl

    assert pl.read_delta(line_url).height == len(want)
    files = DeltaTable(line_url).file_uris()
    n = duckdb.sql(f"select count(*) from read_parquet({files!r})").fetchall()[0][0]
    assert n == len(want)
    assert DeltaTable(line_url).to_pyarrow_dataset().count_rows() == len(want)
    assert ds.dataset(files, format="parquet").count_rows() == len(want)
    # the rerun of an already-committed batch writes nothing
    again = etl.run("tpch_lineitem_daily", warehouse=warehouse, client=client, params={"demo_orders": 600})
    assert again.status == "skipped"
