"""latest_per_key, duplicate_keys, match_keys against pandas / numpy references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import INT64_MAX, INT64_MIN, SETTINGS, ints

from etl.errors import SchemaError
from etl.kernels import duplicate_keys, latest_per_key, match_keys

# few distinct keys, including the uint64 extremes, so duplicates are common
keys = st.lists(st.sampled_from([0, 1, 2, 2**63, 2**64 - 1]), max_size=40)


def _reference_latest(key_hash: np.ndarray, order: pd.Series) -> list[int]:
    """pandas: stable sort by order (missing first), keep the last row per key."""
    frame = pd.DataFrame({"key": key_hash, "order": order.reset_index(drop=True),
                          "pos": np.arange(len(key_hash))})
    ordered = frame.sort_values("order", kind="stable", na_position="first")
    return sorted(ordered.drop_duplicates("key", keep="last")["pos"].tolist())


def _orders(n: int):
    int_orders = st.lists(st.one_of(st.none(), ints), min_size=n, max_size=n)
    float_orders = st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.just(-0.0)),
                            min_size=n, max_size=n)
    return st.one_of(
        int_orders.map(lambda v: pd.Series(v, dtype="Int64")),
        int_orders.map(lambda v: pd.Series([x if x is not None else 0 for x in v], dtype="int64")),
        float_orders.map(lambda v: pd.Series([np.nan if x is None else x for x in v], dtype="float64")),
        st.lists(st.one_of(st.none(), st.integers(-10**18, 10**18)), min_size=n, max_size=n).map(
            lambda v: pd.Series(pd.to_datetime(pd.Series(v, dtype="Int64"), unit="ns")
                                ).dt.tz_localize("UTC")),
    )


@SETTINGS
@given(st.data())
def test_latest_per_key_equals_pandas_sort_drop_duplicates(data):
    key_hash = np.array(data.draw(keys), dtype=np.uint64)
    order = data.draw(_orders(len(key_hash)))
    assert latest_per_key(key_hash, order).tolist() == _reference_latest(key_hash, order)


@SETTINGS
@given(st.data())
def test_latest_per_key_accepts_numpy_orders(data):
    key_hash = np.array(data.draw(keys), dtype=np.uint64)
    order = data.draw(_orders(len(key_hash)))
    if isinstance(order.dtype, pd.DatetimeTZDtype):
        raw = order.dt.tz_localize(None).to_numpy()
    elif order.dtype == "Int64":
        raw = order.to_numpy(dtype="float64", na_value=np.nan)  # nulls become NaN
    else:
        raw = order.to_numpy()
    assert latest_per_key(key_hash, raw).tolist() == _reference_latest(key_hash, order)


def test_latest_per_key_ties_go_to_the_last_position_and_nulls_lose():
    key_hash = np.array([5, 5, 5, 6, 6], dtype=np.uint64)
    assert latest_per_key(key_hash, np.array([1, 3, 3, 0, 0])).tolist() == [2, 4]
    order = pd.Series([INT64_MIN, None, None, None, None], dtype="Int64")
    assert latest_per_key(key_hash, order).tolist() == [0, 4]
    assert latest_per_key(key_hash, np.array([INT64_MAX, INT64_MIN, 0, 1, 2])).tolist() == [0, 4]


def test_latest_per_key_without_order_keeps_every_row_and_many_keys():
    assert latest_per_key(np.array([3, 3], dtype=np.uint64), None).tolist() == [0, 1]
    assert latest_per_key(np.zeros(0, np.uint64), np.zeros(0)).tolist() == []
    rng = np.random.default_rng(1)
    key_hash = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    key_hash[::7] = key_hash[0]
    order = rng.permutation(key_hash.size)
    assert latest_per_key(key_hash, order).tolist() == _reference_latest(key_hash, pd.Series(order))


def test_latest_per_key_rejects_bad_input():
    with pytest.raises(SchemaError, match="uint64"):
        latest_per_key(np.array([1, 2]), None)
    with pytest.raises(SchemaError, match="rows"):
        latest_per_key(np.array([1, 2], dtype=np.uint64), np.array([1]))
    with pytest.raises(SchemaError, match="order"):
        latest_per_key(np.array([1], dtype=np.uint64), np.array(["a"], dtype=object))


@SETTINGS
@given(keys)
def test_duplicate_keys_equals_numpy_unique_counts(values):
    key_hash = np.array(values, dtype=np.uint64)
    uniques, counts = np.unique(key_hash, return_counts=True)
    result = duplicate_keys(key_hash)
    assert result.dtype == np.uint64
    assert result.tolist() == uniques[counts > 1].tolist()


@SETTINGS
@given(st.lists(st.integers(0, 2**64 - 1), max_size=50), st.lists(st.integers(0, 2**64 - 1), max_size=50),
       st.lists(st.integers(0, 2**64 - 1), max_size=10))
def test_match_keys_equals_isin(left, right, shared):
    left_hash = np.array(left + shared, dtype=np.uint64)
    right_hash = np.array(shared + right, dtype=np.uint64)
    result = match_keys(left_hash, right_hash)
    assert result.dtype == np.bool_
    assert result.tolist() == np.isin(left_hash, right_hash).tolist()


@pytest.mark.parametrize("right_size", [3, 100_000, 1_500_000])
def test_match_keys_at_scale_with_right_sorted_or_not(right_size):
    """Large and tiny right sides (bit set from its floor to its cap), sorted as np.unique leaves
    it or shuffled; the uint64 extremes included."""
    rng = np.random.default_rng(7)
    right = rng.integers(0, 2**64 - 1, right_size, dtype=np.uint64)
    right[:2] = [0, 2**64 - 1]
    left = np.concatenate([rng.integers(0, 2**64 - 1, 300_000, dtype=np.uint64), right[::97],
                           np.array([0, 2**64 - 2], dtype=np.uint64)])
    expected = np.isin(left, right)
    assert expected.sum() >= len(right[::97])
    np.testing.assert_array_equal(match_keys(left, right), expected)
    np.testing.assert_array_equal(match_keys(left, np.unique(right)), expected)
