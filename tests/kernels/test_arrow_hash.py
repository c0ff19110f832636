"""``hash_table``: the Arrow-native row hash the framework fingerprints commits and tables with."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.commit.files import to_arrow
from etl.define.schema import to_pandas
from etl.errors import SchemaError
from etl.kernels import fingerprint_table, hash_rows, hash_table

ints = st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), max_size=30)
floats = st.lists(st.one_of(st.none(), st.floats(allow_nan=False, width=64)), max_size=30)
strings = st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=30)
dates = st.lists(st.one_of(st.none(), st.dates(dt.date(1700, 1, 1), dt.date(2250, 1, 1))), max_size=30)
stamps = st.lists(st.one_of(st.none(), st.datetimes(dt.datetime(1700, 1, 1), dt.datetime(2250, 1, 1))), max_size=30)


@st.composite
def tables(draw):
    n = draw(st.integers(0, 30))

    def col(strategy):
        values = draw(strategy)
        return (values * (n // max(1, len(values)) + 1))[:n] if values else [None] * n

    return pa.table({
        "i": pa.array(col(ints), pa.int64()),
        "f": pa.array(col(floats), pa.float64()),
        "s": pa.array(col(strings), pa.string()),
        "d": pa.array(col(dates), pa.date32()),
        "t": pa.array(col(stamps), pa.timestamp("us", tz="UTC")),
        "b": pa.array([None if v is None else v % 2 == 0 for v in col(ints)], pa.bool_()),
    })


COLS = ["i", "f", "s", "d", "t", "b"]


@settings(max_examples=150, deadline=None)
@given(tables())
def test_equals_the_pandas_hash_of_the_same_logical_values(t):
    frame = t.to_pandas(types_mapper=pd.ArrowDtype)
    cols = COLS[:-1]  # bool[pyarrow] with nulls: see test_booleans_hash_as_the_pandas_nullable_booleans
    assert (hash_table(t, cols) == hash_rows(frame, cols)).all()


def test_booleans_hash_as_the_pandas_nullable_booleans():
    t = pa.table({"b": pa.array([True, None, False])})
    assert (hash_table(t, ["b"]) == hash_rows(pd.DataFrame({"b": pd.array([True, None, False], "boolean")}),
                                              ["b"])).all()


@settings(max_examples=150, deadline=None)
@given(tables())
def test_survives_the_frameworks_trip_through_pandas(t):
    """What a task hashes in pandas-land and what is read back from the file agree (ints with nulls
    become floats in pandas and come back as ints)."""
    back = to_arrow(to_pandas(t, exact=True), t.schema)
    assert (hash_table(back, COLS) == hash_table(t, COLS)).all()


@settings(max_examples=100, deadline=None)
@given(tables(), st.integers(0, 30))
def test_fingerprints_add_over_any_split_and_ignore_order(t, cut):
    cut = min(cut, t.num_rows)
    whole = fingerprint_table(t, COLS)
    assert (fingerprint_table(t.slice(0, cut), COLS) + fingerprint_table(t.slice(cut), COLS)) % 2**64 == whole
    chunked = pa.Table.from_batches(t.to_batches(max_chunksize=max(1, cut)), schema=t.schema)
    assert fingerprint_table(chunked, COLS) == whole
    order = np.random.default_rng(cut).permutation(t.num_rows)
    assert fingerprint_table(t.take(pa.array(order, pa.int64())), COLS) == whole


def test_types_of_one_logical_value_hash_alike_and_nan_like_null():
    a = pa.table({"k": pa.array([1, None, 3], pa.int8()), "v": pa.array([0.5, float("nan"), -0.0], pa.float32()),
                  "s": pa.array(["x", None, "é"]).dictionary_encode()})
    b = pa.table({"k": pa.array([1, None, 3], pa.uint64()), "v": pa.array([0.5, None, 0.0], pa.float64()),
                  "s": pa.array(["x", None, "é"], pa.large_string())})
    assert (hash_table(a, ["k", "v", "s"]) == hash_table(b, ["k", "v", "s"])).all()


def test_values_that_differ_hash_differently():
    t = pa.table({"k": [1, 1, 2, None], "s": ["a", "b", "a", "a"]})
    h = hash_table(t, ["k", "s"])
    assert len(set(h.tolist())) == 4
    assert (hash_table(t, ["s", "k"]) != h).all()  # column order matters


def test_missing_and_unhashable_columns_are_named():
    t = pa.table({"k": [1], "l": pa.array([[1, 2]])})
    with pytest.raises(SchemaError, match="'nope'"):
        hash_table(t, ["nope"])
    with pytest.raises(SchemaError, match="'l'"):
        hash_table(t, ["l"])
