"""hash_rows / fingerprint: deterministic, backing-independent, order-sensitive across columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import (SETTINGS, float_variants, int_variants, maybe_floats, maybe_ints,
                               maybe_seconds, maybe_texts, string_variants, time_variants)

from etl.errors import SchemaError
from etl.kernels import fingerprint, fingerprint_hex, hash_rows


def _hash(series: pd.Series) -> np.ndarray:
    return hash_rows(pd.DataFrame({"c": series.reset_index(drop=True)}), ["c"])


def _all_equal(variants: dict[str, pd.Series]) -> None:
    hashes = {name: _hash(s) for name, s in variants.items()}
    first_name, first = next(iter(hashes.items()))
    for name, h in hashes.items():
        assert h.dtype == np.uint64
        np.testing.assert_array_equal(h, first, err_msg=f"{name} differs from {first_name}")


@SETTINGS
@given(maybe_ints)
def test_integers_hash_alike_in_every_backing(values):
    _all_equal(int_variants(values))


@SETTINGS
@given(maybe_texts)
def test_strings_hash_alike_in_every_backing(values):
    _all_equal(string_variants(values))


@SETTINGS
@given(st.lists(st.sampled_from([True, False, None]), max_size=20))
def test_booleans_hash_alike_in_every_backing(values):
    variants = {"boolean": pd.Series(values, dtype="boolean"),
                "bool[pyarrow]": pd.Series(values, dtype="bool[pyarrow]"),
                "object": pd.Series(values, dtype=object)}
    if None not in values:
        variants["bool"] = pd.Series(values, dtype=bool)
    _all_equal(variants)


@SETTINGS
@given(maybe_floats)
def test_floats_hash_alike_in_every_backing(values):
    _all_equal(float_variants(values))


@SETTINGS
@given(maybe_seconds)
def test_timestamps_hash_alike_in_every_unit_and_time_zone(values):
    _all_equal(time_variants(values))


@SETTINGS
@given(st.lists(st.tuples(st.integers(-5, 5), st.sampled_from(["a", "b", "é", ""])), min_size=2,
                max_size=30, unique=True))
def test_distinct_rows_hash_differently(rows):
    df = pd.DataFrame(rows, columns=["i", "s"])
    assert len(np.unique(hash_rows(df, ["i", "s"]))) == len(rows)


@pytest.mark.parametrize("left, right", [
    ({"a": 1, "b": "x"}, {"a": 2, "b": "x"}),
    ({"a": 1, "b": "x"}, {"a": 1, "b": "y"}),
    ({"a": 1, "b": "xy"}, {"a": 1, "b": "x"}),
    ({"a": 1, "b": "a\x00"}, {"a": 1, "b": "a"}),
    ({"a": 1, "b": "12345678"}, {"a": 1, "b": "12345679"}),
    ({"a": 0, "b": ""}, {"a": 0, "b": None}),
])
def test_rows_differing_in_one_column_hash_differently(left, right):
    df = pd.DataFrame([left, right])
    h = hash_rows(df, ["a", "b"])
    assert h[0] != h[1]


def test_column_order_matters():
    df = pd.DataFrame({"a": [1, 2], "b": [2, 1]})
    assert (hash_rows(df, ["a", "b"]) != hash_rows(df, ["b", "a"])).all()
    assert hash_rows(df, ["a", "b"])[0] != hash_rows(df, ["a", "b"])[1]


def test_null_is_distinct_from_nan_zero_empty_and_false():
    values = {
        "null": _hash(pd.Series([None], dtype="Float64"))[0],
        "nan": _hash(pd.Series([np.nan], dtype="float64"))[0],
        "zero_int": _hash(pd.Series([0]))[0],
        "zero_float": _hash(pd.Series([0.0]))[0],
        "empty": _hash(pd.Series([""]))[0],
        "false": _hash(pd.Series([False]))[0],
        "epoch": _hash(pd.Series(pd.to_datetime([0])))[0],
        "min_int": _hash(pd.Series([-(2**63)]))[0],
    }
    assert len(set(values.values())) == len(values)
    for dtype in ("Int64", "string[pyarrow]", "boolean", "datetime64[ns, UTC]", "category"):
        assert _hash(pd.Series([None], dtype=dtype))[0] == values["null"], dtype


def test_float_normalisation_and_type_tags():
    nans = pd.Series(np.array([np.nan, -np.nan, np.float64("nan")]))
    assert len(set(_hash(nans))) == 1
    assert _hash(pd.Series([0.0]))[0] == _hash(pd.Series([-0.0]))[0]
    assert _hash(pd.Series([1.0], dtype="float32"))[0] == _hash(pd.Series([1.0]))[0]
    one = {_hash(pd.Series([1]))[0], _hash(pd.Series([1.0]))[0], _hash(pd.Series([True]))[0],
           _hash(pd.Series(["1"]))[0], _hash(pd.Series([b"1"], dtype=object))[0]}
    assert len(one) == 5


def test_big_uint64_does_not_collide_with_negative_int64():
    big = _hash(pd.Series([2**63], dtype="uint64"))[0]
    assert big != _hash(pd.Series([-(2**63)], dtype="int64"))[0]
    assert _hash(pd.Series([7], dtype="uint64"))[0] == _hash(pd.Series([7], dtype="int64"))[0]


# Pinned values: the hash is part of the on-disk contract (idempotence fingerprints,
# merge keys). A change here breaks tables written by earlier versions.
GOLDEN = [
    ("int", pd.Series([1, -1, 2**63 - 1])),
    ("str", pd.Series(["", "a", "hello, world!", "é"])),
    ("float", pd.Series([0.5, np.nan, -np.inf])),
    ("ts", pd.Series(pd.to_datetime(["2024-01-01T00:00:00Z", None]))),
    ("null", pd.Series([None], dtype="Int64")),
]


def _golden_hex() -> dict[str, list[str]]:
    return {name: [f"{h:016x}" for h in _hash(s)] for name, s in GOLDEN}


def test_hash_is_identical_in_a_fresh_process_with_another_hash_seed():
    code = ("import sys; sys.path.insert(0, 'tests/kernels');"
            "import test_kernels_hashing as t; print(t._golden_hex())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env, cwd=_repo_root())
    assert out.stdout.strip() == str(_golden_hex())


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def test_golden_values_are_stable():
    assert _golden_hex() == {
        "int": ["0f8d2c1472b68271", "262b7a15e64f28c5", "05a02aed4fb9f819"],
        "str": ["04e3828e5d2789f6", "1540d03338286a3d", "3aaea3f8fda389c3", "e32f8998f51a3882"],
        "float": ["707c8f5121dc4f76", "a474280a2b1de981", "18cd636a88e3f205"],
        "ts": ["39d70dc224031522", "e05a3de235af5f2a"],
        "null": ["e05a3de235af5f2a"],
    }


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["x", "y", None])), max_size=30),
       st.randoms(use_true_random=False))
def test_fingerprint_is_order_independent(rows, random):
    df = pd.DataFrame(rows, columns=["k", "s"]).astype({"k": "int64", "s": "str"})
    shuffled = df.sample(frac=1.0, random_state=random.randint(0, 2**31))
    assert fingerprint(df, ["k", "s"]) == fingerprint(shuffled, ["k", "s"])
    assert fingerprint_hex(df, ["k", "s"]) == f"{fingerprint(df, ['k', 's']):016x}"
    assert 0 <= fingerprint(df, ["k", "s"]) < 2**64


@SETTINGS
@given(st.lists(st.integers(0, 5), min_size=1, max_size=20), st.integers(0, 5))
def test_fingerprint_sees_multiplicity_and_adds_over_batches(values, extra):
    df = pd.DataFrame({"k": values})
    more = pd.concat([df, pd.DataFrame({"k": [extra]})], ignore_index=True)
    assert fingerprint(more, ["k"]) != fingerprint(df, ["k"])
    parts = fingerprint(df, ["k"]) + fingerprint(pd.DataFrame({"k": [extra]}), ["k"])
    assert parts % 2**64 == fingerprint(more, ["k"])


def test_empty_frame_and_errors():
    empty = pd.DataFrame({"a": pd.Series([], dtype="int64")})
    assert hash_rows(empty, ["a"]).shape == (0,)
    assert fingerprint(empty, ["a"]) == 0
    with pytest.raises(SchemaError, match="'b'"):
        hash_rows(empty, ["b"])
    with pytest.raises(SchemaError, match="cannot hash"):
        hash_rows(pd.DataFrame({"d": [{"x": 1}]}), ["d"])


def test_two_million_distinct_rows_hash_apart_and_alike_in_any_split():
    """At scale: no two distinct rows share a hash, and a row's hash does not depend on the
    rows around it (a frame hashes like its halves)."""
    n = 2_000_000
    df = pd.DataFrame({"a": np.arange(n), "b": np.arange(n)[::-1].copy()})
    whole = hash_rows(df, ["a", "b"])
    assert len(np.unique(whole)) == n
    halves = np.concatenate([hash_rows(df.iloc[: n // 3], ["a", "b"]), hash_rows(df.iloc[n // 3:], ["a", "b"])])
    np.testing.assert_array_equal(whole, halves)
