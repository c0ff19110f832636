"""Kernels on Dask frames equal the pandas results, also when a key starts in several partitions."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import SETTINGS

from etl.errors import SchemaError
from etl.frames.kernel_apply import apply_kernel, is_dask_frame, map_by_key
from etl.kernels import dedup_latest, kernel, rolling_agg, running_agg, sessionize


@kernel(inputs={"x": "float64"}, outputs={"cum": "float64"}, by="k", order_by="t")
def cumulative(x, offsets, cum):
    for g in range(offsets.size - 1):
        total = 0.0
        for i in range(offsets[g], offsets[g + 1]):
            total += x[i]
            cum[i] = total


@kernel(inputs={"x": "float64"}, outputs={"half": "float64"})
def halve(x, half):
    for i in range(x.size):
        half[i] = x[i] / 2


def _events(n: int, keys: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user": pd.Series([f"user-{i}" for i in rng.integers(0, keys, n)], dtype="str"),
        "ts": pd.Timestamp("2024-03-01", tz="Europe/Paris")
        + pd.to_timedelta(rng.permutation(n) * 60, unit="s"),
        "amount": rng.integers(0, 100, n).astype(float),
    })


def _compute(ddf) -> pd.DataFrame:
    with dask.config.set({"scheduler": "sync", "dataframe.shuffle.method": "tasks"}):
        return ddf.compute()


def _same(dask_result: pd.DataFrame, pandas_result: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(dask_result.sort_index(), pandas_result.sort_index())


@SETTINGS
@given(st.integers(1, 60), st.integers(1, 8), st.integers(1, 6), st.integers(0, 1000))
def test_grouped_kernel_on_dask_equals_pandas(n, keys, npartitions, seed):
    rng = np.random.default_rng(seed)
    pdf = pd.DataFrame({"k": rng.integers(0, keys, n), "t": rng.permutation(n),
                        "x": rng.integers(-5, 5, n).astype(float)})
    ddf = dd.from_pandas(pdf, npartitions=npartitions, sort=False)
    out = cumulative(ddf)
    assert is_dask_frame(out)
    _same(_compute(out), cumulative(pdf))


def test_keys_spanning_partitions_give_the_pandas_result_for_every_library_kernel():
    ddf = dd.from_pandas(_events(3000, 40, seed=1), npartitions=7, sort=False)
    pdf = _compute(ddf)  # dask stores strings as string[pyarrow]; compare like with like
    spread = ddf.map_partitions(lambda p: p[["user"]].drop_duplicates()).compute(scheduler="sync")
    assert spread["user"].duplicated().any(), "test needs keys that start in several partitions"
    cases = [
        lambda df: sessionize(df, by="user", time="ts", gap="30min"),
        lambda df: running_agg(df, by="user", time="ts", value="amount"),
        lambda df: rolling_agg(df, by="user", time="ts", value="amount", window="2h", closed="both"),
        lambda df: dedup_latest(df, by="user", order_by="ts"),
    ]
    for case in cases:
        _same(_compute(case(ddf)), case(pdf))


def test_meta_is_declared_and_matches_what_partitions_return():
    ddf = dd.from_pandas(_events(200, 5, seed=2), npartitions=3, sort=False)
    pdf = _compute(ddf)
    out = sessionize(ddf, by="user", time="ts", gap="1h")
    assert out._meta.dtypes.to_dict() == {**pdf.dtypes.to_dict(), "session": pd.Int64Dtype()}
    assert _compute(out).dtypes.equals(out._meta.dtypes)
    half = halve.bind(columns={"x": "amount"})
    rows = apply_kernel(ddf, half)
    assert list(rows._meta.columns) == ["user", "ts", "amount", "half"]
    _same(_compute(rows), half(pdf))
    assert _compute(half(ddf)).equals(_compute(rows))


def test_dask_errors_are_raised_when_the_graph_is_built():
    ddf = dd.from_pandas(pd.DataFrame({"y": [1.0]}), npartitions=1)
    with pytest.raises(SchemaError, match="'x'"):
        halve(ddf)
    with pytest.raises(SchemaError, match="'k'"):
        cumulative(dd.from_pandas(pd.DataFrame({"x": [1.0], "t": [1]}), npartitions=1))
    with pytest.raises(TypeError, match="pandas or Dask"):
        halve([1, 2])
    with pytest.raises(TypeError, match="Dask"):
        map_by_key(pd.DataFrame(), lambda p: p, ["k"])
