"""Grouping: the layout that makes groups contiguous and in order, against a lexsort reference."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import INT64_MAX, INT64_MIN, SETTINGS

import etl.kernels._grouping as grouping
from etl.kernels._grouping import _sort_run, group_codes, group_layout, group_slots
from etl.kernels._keys import order_key

keys_int = st.one_of(st.integers(-3, 3), st.sampled_from([INT64_MIN, INT64_MAX, 10**12]))
order_ints = st.one_of(st.none(), st.integers(-3, 3), st.integers(INT64_MIN, INT64_MAX),
                       st.sampled_from([INT64_MIN, INT64_MAX]))
rows = st.lists(st.tuples(keys_int, st.sampled_from(["a", "b", None]), order_ints), max_size=60)


def _reference(df: pd.DataFrame, by: list[str], order_by: str | None) -> np.ndarray:
    """Row positions in group order: by group, then nulls first, then key, then position."""
    codes, _ = group_codes(df, by)
    if order_by is None:
        return np.argsort(codes, kind="stable")
    key, valid = order_key(df[order_by])
    return np.lexsort((np.arange(len(df)), key, valid, codes))


def _frame(rows) -> pd.DataFrame:
    k, s, t = zip(*rows) if rows else ((), (), ())
    return pd.DataFrame({"k": pd.Series(list(k), dtype="int64"), "s": pd.Series(list(s), dtype="str"),
                         "t": pd.array(list(t), dtype="Int64"),
                         "f": pd.Series([np.nan if v is None else v / 7 for v in t], dtype="float64")})


def _check(df: pd.DataFrame, by: list[str], order_by: str | None) -> None:
    layout = group_layout(df, by, order_by)
    perm = _reference(df, by, order_by)
    positions = np.arange(len(df))
    assert layout.to_groups(positions).tolist() == perm.tolist()
    assert layout.to_rows(layout.to_groups(positions)).tolist() == positions.tolist()
    assert layout.to_rows(layout.to_groups(positions).copy(), reuse=True).tolist() == positions.tolist()
    flags = positions % 3 == 0
    assert layout.to_rows(layout.to_groups(flags)).tolist() == flags.tolist()
    codes, _ = group_codes(df, by)
    grouped = codes[perm]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(df) else []
    assert layout.offsets.tolist() == [*starts, len(df)]
    if order_by is not None:
        assert layout.key.tolist() == order_key(df[order_by])[0][perm].tolist()


@SETTINGS
@given(rows, st.sampled_from([["k"], ["s"], ["k", "s"]]), st.sampled_from(["t", "f", None]),
       st.sampled_from([1, 4, 1 << 14]), st.booleans())
def test_layout_equals_a_stable_lexsort(rows, by, order_by, rows_per_chunk, pre_sorted):
    df = _frame(rows)
    if pre_sorted:  # already grouped (and maybe in order): the no-copy and sort-only paths
        df = df.sort_values(by, kind="stable", ignore_index=True)
    with _chunks_of(rows_per_chunk):
        _check(df, by, order_by)


def test_layout_on_many_rows_sparse_keys_and_skewed_times():
    rng = np.random.default_rng(7)
    n = 50_000
    df = pd.DataFrame({
        "dense": rng.integers(0, 3_000, n),
        "sparse": rng.integers(0, 2**62, n) // 2**50 * 2**50,       # factorised, not dense
        "t": rng.integers(INT64_MIN, INT64_MAX, n, dtype=np.int64),
        "few": rng.integers(0, 3, n),                                # many ties per group
        "skew": (rng.pareto(0.5, n) * 1000).astype(np.int64),        # clustered: big buckets
        "ts": pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**15, n)))
        .where(rng.random(n) > 0.05),
    })
    for rows_per_chunk in (64, 1 << 14):
        with _chunks_of(rows_per_chunk):
            for by in (["dense"], ["sparse"], ["dense", "few"]):
                for order_by in ("t", "few", "skew", "ts", None):
                    _check(df, by, order_by)
    ordered = df.sort_values("ts", ignore_index=True)
    _check(ordered, ["dense"], "ts")
    _check(df.sort_values(["dense", "t"], ignore_index=True), ["dense"], "t")  # no copy at all
    assert group_layout(df.sort_values(["dense", "t"]), ["dense"], "t").identity


@SETTINGS
@given(st.lists(st.one_of(st.integers(-4, 4), st.integers(INT64_MIN, INT64_MAX),
                          st.sampled_from([INT64_MIN, INT64_MAX, 0])), max_size=300),
       st.integers(0, 3))
def test_sort_run_is_a_stable_sort_whatever_the_distribution(values, repeat):
    key = np.array(values * (repeat + 1), dtype=np.int64)  # repeats: equal keys, big buckets
    idx = np.arange(key.size, dtype=np.int32)
    m = max(key.size, 1)
    moved = _sort_run(key, idx, 0, key.size, np.empty(m, np.int64), np.empty(m, np.int32),
                      np.empty(2 * m + 1, np.int64)) if key.size else False
    original = np.array(values * (repeat + 1), dtype=np.int64)
    expected = np.argsort(original, kind="stable")
    assert idx.tolist() == expected.tolist() and key.tolist() == original[expected].tolist()
    assert moved == (expected.tolist() != list(range(key.size)))


def test_group_slots_use_small_integer_keys_as_they_are():
    keys, low, nslots = group_slots(pd.DataFrame({"a": np.array([7, 5, 7], np.int64)}), ["a"])
    assert (keys - low).tolist() == [2, 0, 2] and nslots == 3
    keys, low, nslots = group_slots(pd.DataFrame({"a": np.array([7, 5, 7], np.uint8)}), ["a"])
    assert (keys - low).tolist() == [2, 0, 2] and nslots == 3
    keys, low, nslots = group_slots(pd.DataFrame({"a": [0, 2**62, 0]}), ["a"])  # too sparse
    assert (keys - low).tolist() == [0, 1, 0] and nslots == 2


@contextmanager
def _chunks_of(rows: int):
    """The layout with ``rows`` rows per chunk (small values: many chunks on few rows)."""
    saved, grouping.ROWS_PER_CHUNK = grouping.ROWS_PER_CHUNK, rows
    try:
        yield
    finally:
        grouping.ROWS_PER_CHUNK = saved
