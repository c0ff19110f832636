"""Declaring kernels: validation, numba compile checks, nulls, dtypes, pickling, compile counts."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import SETTINGS, maybe_ints, maybe_seconds

from etl.errors import ConfigError, SchemaError
from etl.kernels import Kernel, compile_counts, kernel, warm_up


@kernel(inputs={"x": "int64"}, outputs={"doubled": "Int64", "positive": "boolean"})
def double(x, x_null, doubled, doubled_null, positive, positive_null):
    for i in range(x.size):
        doubled[i] = 2 * x[i]
        doubled_null[i] = x_null[i]
        positive[i] = x[i] > 0
        positive_null[i] = x_null[i]


@kernel(inputs={"x": "float64"}, outputs={"rank": "int64", "prev": "Float64"}, by="k", order_by="t")
def rank_in_group(x, offsets, rank, prev, prev_null):
    for g in range(offsets.size - 1):
        for i in range(offsets[g], offsets[g + 1]):
            rank[i] = i - offsets[g]
            if i == offsets[g]:
                prev_null[i] = True
            else:
                prev[i] = x[i - 1]


@kernel(inputs={"ts": "int64"}, outputs={"first_ts": "like:ts"}, by="k")
def first_time(ts, ts_null, offsets, first_ts, first_ts_null):
    for g in range(offsets.size - 1):
        for i in range(offsets[g], offsets[g + 1]):
            first_ts[i] = ts[offsets[g]]
            first_ts_null[i] = ts_null[offsets[g]]


@SETTINGS
@given(maybe_ints, st.sampled_from(["Int64", "int64[pyarrow]", "object"]))
def test_row_kernel_keeps_nulls_null_in_every_backing(values, dtype):
    values = [v if v is None else v // 4 for v in values]  # 2 * x must not overflow
    df = pd.DataFrame({"x": pd.Series(values, dtype=dtype, index=np.arange(len(values))[::-1])})
    out = double(df)
    assert out.index.equals(df.index) and list(out.columns) == ["x", "doubled", "positive"]
    assert out["doubled"].dtype == "Int64" and out["positive"].dtype == "boolean"
    expected = [None if v is None else 2 * v for v in values]
    assert [None if pd.isna(v) else v for v in out["doubled"]] == expected
    assert [None if pd.isna(v) else v for v in out["positive"]] == [
        None if v is None else v > 0 for v in values]


def test_nulls_without_a_mask_parameter_are_refused():
    @kernel(inputs={"x": "int64"}, outputs={"y": "int64"})
    def copy(x, y):
        y[:] = x

    assert copy(pd.DataFrame({"x": [1, 2]}))["y"].tolist() == [1, 2]
    with pytest.raises(SchemaError, match=r"'x' has 1 nulls.*x_null"):
        copy(pd.DataFrame({"x": pd.array([1, None], dtype="Int64")}))


def _grouped_reference(df: pd.DataFrame) -> pd.DataFrame:
    ordered = df.sort_values("t", kind="stable", na_position="first")
    rank = ordered.groupby("k", dropna=False).cumcount()
    prev = ordered.groupby("k", dropna=False)["x"].shift(1).astype("Float64")
    prev[ordered.groupby("k", dropna=False).cumcount() == 0] = pd.NA
    return pd.DataFrame({"rank": rank, "prev": prev}).loc[df.index]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.one_of(st.none(), st.integers(0, 9)),
                          st.integers(-100, 100)), max_size=30),
       st.sampled_from(["str", "category", "string[pyarrow]"]))
def test_grouped_kernel_equals_pandas_groupby_on_unsorted_input(rows, key_dtype):
    df = pd.DataFrame(rows, columns=["k", "t", "x"]).astype(
        {"k": key_dtype, "t": "Int64", "x": "float64"})
    out = rank_in_group(df)
    expected = _grouped_reference(df)
    assert out["rank"].tolist() == expected["rank"].tolist()
    pd.testing.assert_series_equal(out["prev"], expected["prev"], check_names=False)


@SETTINGS
@given(maybe_seconds, st.sampled_from(["Europe/Paris", "UTC", None]))
def test_like_output_gives_back_the_input_dtype_with_its_time_zone(seconds, tz):
    ts = pd.Series(pd.to_datetime(pd.Series(seconds, dtype="Int64"), unit="s"))
    ts = ts.dt.tz_localize(tz) if tz else ts
    df = pd.DataFrame({"k": [i % 3 for i in range(len(seconds))], "ts": ts})
    out = first_time(df)
    assert out["first_ts"].dtype == df["ts"].dtype
    first_of = {}
    for k, t in zip(df["k"], df["ts"]):
        first_of.setdefault(k, t)
    expected = pd.Series([first_of[k] for k in df["k"]], dtype=df["ts"].dtype)
    pd.testing.assert_series_equal(out["first_ts"], expected, check_names=False)


def test_codes_input_decodes_back_through_like_output():
    @kernel(inputs={"city": "codes"}, outputs={"next_city": "like:city"})
    def shift_codes(city, city_null, next_city, next_city_null):
        for i in range(city.size):
            j = (i + 1) % city.size
            next_city[i], next_city_null[i] = city[j], city_null[j]

    for dtype in ("str", "category", "string[pyarrow]"):
        df = pd.DataFrame({"city": pd.Series(["paris", None, "rome"], dtype=dtype)})
        out = shift_codes(df)["next_city"]
        assert out.dtype == df["city"].dtype
        assert [None if pd.isna(v) else v for v in out] == [None, "rome", "paris"]


@pytest.mark.parametrize("dtype", ["int64[pyarrow]", "Int64", "UInt64", "double[pyarrow]",
                                   "datetime64[us, Asia/Tokyo]", "timedelta64[ns]"])
def test_declared_nullable_outputs_hold_nulls(dtype):
    @kernel(inputs={"x": "int64"}, outputs={"y": dtype})
    def every_other(x, y, y_null):
        for i in range(x.size):
            y[i] = x[i]
            y_null[i] = i % 2 == 1

    out = every_other(pd.DataFrame({"x": [10, 20, 30]}))["y"]
    assert str(out.dtype) == str(pd.api.types.pandas_dtype(dtype))
    assert out.isna().tolist() == [False, True, False]


def test_empty_and_one_row_frames():
    empty = pd.DataFrame({"k": pd.Series([], dtype="int64"), "t": pd.Series([], dtype="int64"),
                          "x": pd.Series([], dtype="float64")})
    out = rank_in_group(empty)
    assert len(out) == 0 and out["rank"].dtype == "int64" and out["prev"].dtype == "Float64"
    one = rank_in_group(pd.DataFrame({"k": [1], "t": [5], "x": [2.0]}))
    assert one["rank"].tolist() == [0] and one["prev"].isna().all()


@pytest.mark.parametrize("declare, message", [
    (dict(inputs={"x": "int64"}, outputs={"y": "float64"}), r"parameter 'z' is not a declared"),
    (dict(inputs={"x": "text"}, outputs={"y": "float64"}, ), r"kind 'text'"),
    (dict(inputs={"x": "int64"}, outputs={"y": "int8"}), r"64-bit"),
    (dict(inputs={"x": "int64"}, outputs={"y": "float64", "z": "float64"}, by="k"), r"no 'offsets'"),
    (dict(inputs={"x": "int64", "w": "int64"}, outputs={"y": "float64", "z": "float64"}),
     r"declares \['w'\]"),
    (dict(inputs={"x": "int64"}, outputs={"y": "like:q", "z": "float64"}), r"'q' is not an input"),
])
def test_declarations_that_do_not_match_the_function_fail_early(declare, message):
    def f(x, y, z):
        pass

    with pytest.raises(ConfigError, match=message) as info:
        kernel(**declare)(f)
    assert "test_kernels_decorator" in str(info.value) and info.value.kernel.endswith(".f")


def test_writing_nulls_into_a_non_nullable_output_is_refused_at_declaration():
    def f(x, y, y_null):
        pass

    with pytest.raises(ConfigError, match=r"'y_null'.*'float64'.*cannot hold nulls"):
        kernel(inputs={"x": "int64"}, outputs={"y": "float64"})(f)


def test_a_kernel_numba_cannot_compile_fails_at_check_naming_the_kernel():
    @kernel(inputs={"x": "int64"}, outputs={"y": "int64"})
    def uses_python_objects(x, y):
        lookup = {"a": object()}
        for i in range(x.size):
            y[i] = len(lookup[str(x[i])])

    with pytest.raises(ConfigError) as info:
        uses_python_objects.check()
    message = str(info.value)
    assert "uses_python_objects" in message and "numba says" in message
    assert "TypingError" in message or "Untyped global name" in message or "object" in message
    assert info.value.kernel == uses_python_objects.name
    with pytest.raises(ConfigError, match="uses_python_objects"):
        uses_python_objects(pd.DataFrame({"x": [1]}))


def test_missing_params_and_keys_are_config_errors():
    @kernel(inputs={"x": "int64"}, outputs={"y": "int64"}, params={"step": "int64"})
    def add(x, step, y):
        for i in range(x.size):
            y[i] = x[i] + step

    with pytest.raises(ConfigError, match=r"param 'step'"):
        add(pd.DataFrame({"x": [1]}))
    assert add.bind(step=5)(pd.DataFrame({"x": [1]}))["y"].tolist() == [6]
    with pytest.raises(ConfigError, match="no input, output or param"):
        add.bind(stpe=5)
    with pytest.raises(ConfigError, match="no key columns"):
        first_time.bind(by=[]).__class__(first_time.func, first_time.spec,
                                         type(first_time.binding)(), first_time.token).check()
    with pytest.raises(SchemaError, match="'missing'"):
        double(pd.DataFrame({"missing": [1]}))


def test_compiles_once_per_process_and_bind_shares_machine_code():
    before = compile_counts().get(double.name, {}).get("materialisations", 0)
    stats = warm_up(double)[double.name]
    assert stats["materialisations"] == 1 and stats["pid"] > 0 and stats["cached_on_disk"]
    for _ in range(3):
        double.bind(columns={"x": "z"})(pd.DataFrame({"z": [1, 2]}))
    after = compile_counts()[double.name]
    assert after["materialisations"] == max(before, 1) == 1
    assert double._compiled.dispatcher().signatures == [double.spec.numba_signature()]


def test_pickles_by_reference_and_by_value_sharing_the_compiled_code():
    again = pickle.loads(pickle.dumps(double.bind(outputs={"doubled": "d"})))
    assert again.token == double.token and again._compiled is double._compiled
    assert again(pd.DataFrame({"x": [4]}))["d"].tolist() == [8]

    @kernel(inputs={"x": "int64"}, outputs={"y": "int64"}, params={"n": "int64"})
    def local(x, n, y):
        for i in range(x.size):
            y[i] = x[i] * n

    copy = cloudpickle.loads(cloudpickle.dumps(local.bind(n=3)))
    assert copy._compiled is local._compiled
    assert copy(pd.DataFrame({"x": [2]}))["y"].tolist() == [6]


def test_meta_comes_from_the_declaration():
    frame = pd.DataFrame({"k": pd.Series([], dtype="str"), "ts": pd.Series([], dtype="datetime64[ms, UTC]")})
    meta = first_time.meta(frame)
    assert meta.dtypes.to_dict() == {"k": frame["k"].dtype, "ts": frame["ts"].dtype,
                                     "first_ts": frame["ts"].dtype}
    assert isinstance(double, Kernel) and "per-row" in repr(double)


def test_kernels_package_never_imports_dask():
    package = Path(__file__).resolve().parents[2] / "etl" / "kernels"
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0] if node.level == 0 else "")
    assert len(list(package.glob("*.py"))) >= 8
    assert "numba" in imported and not imported & {"dask", "distributed"}


def test_public_names_are_pinned():
    import etl.kernels

    assert sorted(etl.kernels.__all__) == sorted([
        "Kernel", "LIBRARY_KERNELS", "cache_dir", "compile_counts", "dedup_latest", "duplicate_keys",
        "fingerprint", "fingerprint_hex", "fingerprint_table", "from_numpy", "hash_rows", "hash_table",
        "kernel", "latest_per_key", "match_keys", "rolling_agg", "running_agg", "sessionize",
        "to_numpy", "warm_up"])
    assert all(getattr(etl.kernels, name) is not None for name in etl.kernels.__all__)
