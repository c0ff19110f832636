"""The per-group kernel example on a real LocalCluster equals a pandas reference."""

from __future__ import annotations

import glob
import os

import pandas as pd
from deltalake import DeltaTable

import etl

PIPELINES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "pipelines")


def test_click_sessions_equal_pandas_reference(client, warehouse, monkeypatch):
    monkeypatch.setenv("ETL_PIPELINES", PIPELINES)
    r = etl.run("click_sessions", warehouse=warehouse, client=client, params={"demo_users": 60})
    assert r.status == "committed"
    got = DeltaTable(f"{warehouse}/click_sessions").to_pandas().sort_values(["user_id", "session_start"])
    raw = pd.concat(pd.read_parquet(f) for f in glob.glob(f"{warehouse}/raw/clicks/*/*.parquet"))
    raw = raw.sort_values(["user_id", "ts"])
    raw["session"] = (raw.groupby("user_id").ts.diff() > pd.Timedelta("30min")).groupby(raw.user_id).cumsum()
    want = raw.groupby(["user_id", "session"]).agg(start=("ts", "min"), end=("ts", "max"), events=("ts", "size"),
                                                   pages=("page", "nunique")).reset_index()
    assert len(got) == len(want) and got.events.sum() == len(raw)
    assert got.events.tolist() == want.events.tolist() and got.pages.tolist() == want.pages.tolist()
    assert (got.session_start.to_numpy() == want.start.dt.as_unit("us").to_numpy()).all()
    assert (got.duration_s >= 0).all() and got.duplicated(["user_id", "session_start"]).sum() == 0
