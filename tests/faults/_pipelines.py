"""Pipelines of the fault suite that the command line must find too (imported by a module in a
``--pipelines`` folder the tests write)."""

from __future__ import annotations

import dask.dataframe as dd
import pandas as pd

from etl import Source, Target, pipeline
from etl.contracts import Check, Contract
from tests.core.helpers import SCHEMA

CONTRACT_NAME = "t_faults_contract"


def coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Upstream files disagree on types: numbers as strings, keys with nulls. Unparsable values become null."""
    out = df.copy()
    for col in ("k1", "ts"):
        out[col] = pd.to_numeric(out[col].astype(object), errors="coerce").astype("Int64")
    out["v"] = pd.to_numeric(out["v"].astype(object), errors="coerce").astype("float64")
    return out


def contract_pipeline():
    """The helper pipeline's table and keys, under a contract that quarantines bad rows."""
    contract = Contract(checks=[Check.not_null("k1", action="quarantine"),
                                Check.not_null("ts", action="quarantine", name="ts_parses"),
                                Check.in_range("v", -10.0, 10.0, action="quarantine"),
                                Check.unique(["k1", "k2"], action="quarantine")],
                        error_budget=0.5)

    def typed(src: dd.DataFrame) -> dd.DataFrame:
        meta = src._meta.assign(k1=pd.Series([], dtype="Int64"), ts=pd.Series([], dtype="Int64"),
                                v=pd.Series([], dtype="float64"))
        return src.map_partitions(coerce, meta=meta)

    return pipeline(name=CONTRACT_NAME, sources={"src": Source.parquet("{warehouse}/in/ds={date}/*.parquet")},
                    target=Target.merge("t", keys=["k1", "k2"], partition_by=["part"], order_by="ts",
                                        delete_when="op_delete"),
                    schema=SCHEMA, contract=contract)(typed)
