"""Small pipelines built in code for tests, and a pandas oracle for MERGE."""

from __future__ import annotations

import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
from deltalake import DeltaTable

from etl import Schema, Source, Target, pipeline

KEYS = ["k1", "k2"]
SCHEMA = Schema({"k1": "int64", "k2": "string", "part": "string", "v": "float64", "s": "string", "ts": "int64"})


def make_pipeline(name: str = "t_merge", *, keys=KEYS, partition_by=("part",), order_by="ts",
                  delete_when="op_delete", mode="merge", table="t", schema=SCHEMA, transform=None, **target_kw):
    """A pipeline reading ``{warehouse}/in/ds={date}/*.parquet`` into table ``t``."""
    if mode == "merge":
        target = Target.merge(table, keys=keys, partition_by=partition_by, order_by=order_by,
                              delete_when=delete_when, **target_kw)
    elif mode == "append":
        target = Target.append(table, partition_by=partition_by, **target_kw)
    else:
        target = Target.overwrite(table, partition_by=partition_by, **target_kw)

    def identity(src: dd.DataFrame) -> dd.DataFrame:
        return src

    return pipeline(name=name, sources={"src": Source.parquet("{warehouse}/in/ds={date}/*.parquet")},
                    target=target, schema=schema)(transform or identity)


def random_batch(rng: np.random.Generator, n: int, key_space: int = 60, parts: int = 4, ts0: int = 0,
                 delete_frac: float = 0.1) -> pd.DataFrame:
    """Rows over a small key space: duplicates, nulls, several partitions, some deletes; ts unique."""
    k1 = rng.integers(0, key_space, n)
    v = rng.normal(size=n).round(3)
    v[rng.random(n) < 0.15] = np.nan
    s = np.array([f"s{x}" for x in rng.integers(0, 5, n)], dtype=object)
    s[rng.random(n) < 0.15] = None
    return pd.DataFrame({
        "k1": k1.astype("int64"),
        "k2": pd.array([f"b{x % 3}" for x in k1 + rng.integers(0, 2, n)], dtype="string"),
        "part": pd.array([f"p{x}" for x in rng.integers(0, parts, n)], dtype="string"),
        "v": v,
        "s": pd.array(s, dtype="string"),
        "ts": (ts0 + rng.permutation(n)).astype("int64"),
        "op_delete": rng.random(n) < delete_frac,
    })


def write_batch(warehouse: str, date: str, df: pd.DataFrame, files: int = 2) -> None:
    folder = os.path.join(warehouse, "in", f"ds={date}")
    os.makedirs(folder, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), files)):
        df.iloc[chunk].to_parquet(os.path.join(folder, f"part-{i}.parquet"), index=False)


def oracle(batches: list[pd.DataFrame], keys=KEYS) -> pd.DataFrame:
    """The expected table after merging ``batches`` in order: latest ts wins, deletes remove the key."""
    table: dict = {}
    for b in batches:
        latest = b.sort_values("ts", kind="stable").drop_duplicates(keys, keep="last")
        for row in latest.to_dict("records"):
            key = tuple(row[k] for k in keys)
            if row.get("op_delete"):
                table.pop(key, None)
            else:
                table[key] = {c: row[c] for c in SCHEMA.names}
    out = pd.DataFrame(list(table.values()), columns=SCHEMA.names)
    return normalise(out, keys)


def normalise(df: pd.DataFrame, keys=KEYS) -> pd.DataFrame:
    out = df[SCHEMA.names].copy()
    out["k1"] = out["k1"].astype("int64")
    out["ts"] = out["ts"].astype("int64")
    out["v"] = out["v"].astype("float64")
    for c in ("k2", "part", "s"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.sort_values(keys).reset_index(drop=True)


def table_frame(url: str, keys=KEYS) -> pd.DataFrame:
    return normalise(DeltaTable(url).to_pandas(), keys)


def live_files(url: str) -> set:
    import pyarrow as pa

    return set(pa.table(DeltaTable(url).get_add_actions(flatten=True)).column("path").to_pylist())


def data_files_on_disk(url: str) -> set:
    out = set()
    for root, _, files in os.walk(url):
        for f in files:
            if f.endswith(".parquet"):
                out.add(os.path.relpath(os.path.join(root, f), url))
    return out
