"""Data contracts in a real run: bad rows quarantined with a reason, good rows committed, budgets enforced."""

from __future__ import annotations

import json

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

import etl
from etl import Schema, Source, Target, pipeline
from etl.contracts import Check, Contract
from tests.core.helpers import random_batch, write_batch

SCHEMA = Schema({"k1": "int64", "k2": "string", "part": "string", "v": "float64", "s": "string", "ts": "int64"})


def _pipe(budget=0.5):
    contract = Contract(checks=[Check.in_range("v", -2.0, 2.0, action="quarantine"),
                                Check.allowed("s", {"s0", "s1", "s2", "s3", "s4"}, action="quarantine"),
                                Check.row("ts_positive", lambda df: df.ts >= 0, action="warn")],
                        error_budget=budget)

    def ident(src: dd.DataFrame) -> dd.DataFrame:
        return src

    return pipeline(name="t_contract", sources={"src": Source.parquet("{warehouse}/in/ds={date}/*.parquet")},
                    target=Target.merge("t", keys=["k1", "k2"], partition_by=["part"], order_by="ts",
                                        delete_when="op_delete"),
                    schema=SCHEMA, contract=contract)(ident)


def test_bad_rows_go_to_quarantine_and_the_rest_commits(client, warehouse):
    rng = np.random.default_rng(0)
    batch = random_batch(rng, 200, key_space=10_000, delete_frac=0.0).drop_duplicates(["k1", "k2"])
    batch["v"] = batch["v"].clip(-1.9, 1.9)
    batch.loc[batch.index[:5], "v"] = 99.0          # out of range
    batch.loc[batch.index[5:8], "s"] = "weird"       # not allowed
    write_batch(warehouse, "2026-01-01", batch, files=2)
    r = etl.run(_pipe(), date="2026-01-01", warehouse=warehouse, client=client)
    assert r.quarantined == 8 and r.inserted == len(batch) - 8
    assert r.rows_read == r.inserted + r.quarantined + r.duplicates_dropped  # reconciliation
    table = DeltaTable(f"{warehouse}/t").to_pandas()
    assert not (table.v.abs() > 2).any() and not table.s.isin(["weird"]).any()
    q = DeltaTable(f"{warehouse}/_etl_quarantine").to_pandas()
    assert len(q) == 8 and len(set(q.check)) == 2
    assert q.reason.str.len().min() > 0 and set(q.column) == {"v", "s"}
    assert (q.run_id == r.run_id).all() and (q.batch == "2026-01-01").all()
    assert q.source_file.str.contains("ds=2026-01-01/part-").all() and (q.row >= 0).all()
    raw = json.loads(q.sort_values("row").raw.iloc[0])
    assert {"k1", "v", "s"} <= set(raw)
    # a rerun skips both the data and the quarantine commit
    assert etl.run(_pipe(), date="2026-01-01", warehouse=warehouse, client=client).status == "skipped"
    assert len(DeltaTable(f"{warehouse}/_etl_quarantine").to_pandas()) == 8


def test_over_budget_batch_fails_and_commits_nothing(client, warehouse):
    rng = np.random.default_rng(1)
    batch = random_batch(rng, 100, delete_frac=0.0)
    batch["v"] = 50.0  # every row out of range
    write_batch(warehouse, "2026-01-01", batch)
    with pytest.raises(etl.ContractError, match="budget") as info:
        etl.run(_pipe(budget=0.1), date="2026-01-01", warehouse=warehouse, client=client)
    assert info.value.exit_code == 7
    assert DeltaTable(f"{warehouse}/t").version() == 0 and len(DeltaTable(f"{warehouse}/t").to_pandas()) == 0
    assert not DeltaTable.is_deltatable(f"{warehouse}/_etl_quarantine")
