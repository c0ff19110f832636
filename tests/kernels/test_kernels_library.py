"""The kernel library against pure-Python references, on unsorted, null-laden, extreme input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import INT64_MAX, INT64_MIN, SETTINGS

from etl.errors import ConfigError
from etl.kernels import dedup_latest, library, rolling_agg, running_agg, sessionize

times = st.one_of(st.none(), st.integers(-50, 50), st.sampled_from([INT64_MIN, INT64_MAX]))
values = st.one_of(st.none(), st.integers(-1000, 1000).map(float), st.just(math.nan))
rows = st.lists(st.tuples(st.sampled_from(["u1", "u2", "é", None]), times, values), max_size=40)
KEY_DTYPES = ["str", "string[pyarrow]", "category", "object"]


def _time_ordered(rows: list) -> list:
    """The rows sorted by time (stably), rows with a null time left where they were."""
    timed = iter(sorted((r for r in rows if r[1] is not None), key=lambda r: r[1]))
    return [r if r[1] is None else next(timed) for r in rows]


# unsorted rows, and rows already in time order (the one-pass path of sessionize and running_agg)
any_rows = st.one_of(rows, rows.map(_time_ordered))


def _frame(rows, key_dtype="str") -> pd.DataFrame:
    index = np.arange(len(rows))[::-1] * 10
    users, ts, vs = zip(*rows) if rows else ((), (), ())
    data = np.array([0.0 if v is None else v for v in vs], dtype=float)
    return pd.DataFrame({
        "user": pd.Series(list(users), dtype=key_dtype, index=index),
        "t": pd.Series(pd.array(list(ts), dtype="Int64"), index=index),
        "v": pd.Series(pd.arrays.FloatingArray(data, np.array([v is None for v in vs], bool)),
                       index=index),
    })


def _groups(df: pd.DataFrame) -> dict:
    """``{key: [(time, value or None, position)]}`` for rows with a time, keys as strings."""
    groups: dict = {}
    for pos, (user, t, v) in enumerate(zip(df["user"], df["t"], df["v"])):
        if not pd.isna(t):
            value = None if pd.isna(v) or math.isnan(v) else float(v)
            groups.setdefault(str(user), []).append((int(t), value, pos))
    return groups


def _cells(series: pd.Series) -> list:
    return [None if pd.isna(x) else x for x in series]


@SETTINGS
@given(any_rows, st.one_of(st.integers(0, 100), st.sampled_from([INT64_MAX])), st.sampled_from(KEY_DTYPES))
def test_sessionize_equals_python_reference(rows, gap, key_dtype):
    df = _frame(rows, key_dtype)
    expected = [None] * len(df)
    for members in _groups(df).values():
        number, prev = -1, None
        for t, _, pos in sorted(members, key=lambda m: m[0]):
            number += 1 if prev is None or t - prev > gap else 0
            expected[pos], prev = number, t
    out = sessionize(df, by="user", time="t", gap=gap, out="sid")
    assert out.index.equals(df.index) and out["sid"].dtype == "Int64"
    assert _cells(out["sid"]) == expected


@SETTINGS
@given(any_rows, st.sampled_from(KEY_DTYPES))
def test_running_agg_equals_python_reference(rows, key_dtype):
    df = _frame(rows, key_dtype)
    expected = {a: [None] * len(df) for a in ("sum", "count", "mean", "max")}
    for members in _groups(df).values():
        for t, _, pos in members:
            seen = [v for u, v, _ in members if u <= t and v is not None]
            expected["count"][pos] = len(seen)
            if seen:
                expected["sum"][pos], expected["max"][pos] = sum(seen), max(seen)
                expected["mean"][pos] = sum(seen) / len(seen)
    out = running_agg(df, by="user", time="t", value="v", prefix="r_")
    for agg, column in expected.items():
        assert _cells(out[f"r_{agg}"]) == pytest.approx(column, nan_ok=True), agg


@SETTINGS
@given(rows, st.one_of(st.integers(0, 30), st.sampled_from([INT64_MAX])),
       st.sampled_from(["right", "both", "left", "neither"]))
def test_rolling_agg_equals_python_reference(rows, window, closed):
    df = _frame(rows)
    left, right = closed in ("both", "left"), closed in ("both", "right")
    expected = {a: [None] * len(df) for a in ("sum", "count", "mean")}
    for members in _groups(df).values():
        for t, _, pos in members:
            inside = [v for u, v, _ in members if v is not None
                      and (u < t or (right and u == t))
                      and (t - u < window or (left and t - u == window))]
            expected["count"][pos] = len(inside)
            if inside:
                expected["sum"][pos], expected["mean"][pos] = sum(inside), sum(inside) / len(inside)
    out = rolling_agg(df, by="user", time="t", value="v", window=window, closed=closed, prefix="w_")
    for agg, column in expected.items():
        assert _cells(out[f"w_{agg}"]) == pytest.approx(column), agg


@SETTINGS
@given(rows.map(_time_ordered), st.sampled_from([*KEY_DTYPES, "int64", "sparse int64"]),
       st.one_of(st.integers(0, 100), st.sampled_from([INT64_MAX])))
def test_time_ordered_rows_give_exactly_the_kernels_results(rows, key_dtype, gap):
    if key_dtype.endswith("int64"):  # dense integer keys are their own slots; sparse ones are factorised
        scale = 2**60 if key_dtype.startswith("sparse") else 1
        rows = [({"u1": 1, "u2": 2, "é": -1, None: 0}[u] * scale, t, v) for u, t, v in rows]
    df = _frame(rows, "int64" if key_dtype.endswith("int64") else key_dtype)
    kernel = library._sessions.bind(columns={"time": "t"}, outputs={"session": "sid"}, by=["user"],
                                    order_by="t", gap=gap)
    pd.testing.assert_frame_equal(sessionize(df, "user", "t", gap, out="sid"), kernel.apply(df))
    names = {a: f"r_{a}" for a in ("sum", "count", "mean", "max")}
    kernel = library._running.bind(columns={"time": "t", "value": "v"}, outputs=names, by=["user"],
                                   order_by="t")
    pd.testing.assert_frame_equal(running_agg(df, "user", "t", "v", prefix="r_"), kernel.apply(df))
    some = running_agg(df, "user", "t", "v", aggs=["mean", "count"], prefix="r_")
    pd.testing.assert_frame_equal(some, kernel.bind(outputs={"mean": "r_mean", "count": "r_count"}).apply(df))


def test_time_ordered_rows_take_one_pass_and_others_the_kernel(monkeypatch):
    calls = []
    original = library._running_in_row_order
    monkeypatch.setattr(library, "_running_in_row_order", lambda *a: calls.append(1) or original(*a))
    df = pd.DataFrame({"user": [1, 2, 1, 1], "t": pd.array([1, None, 1, 5], dtype="Int64"),
                       "v": [1.0, 2.0, 4.0, 8.0]})
    assert _cells(running_agg(df, "user", "t", "v", aggs=["sum"])["v_running_sum"]) == [5.0, None, 5.0, 13.0]
    assert calls == [1]
    shuffled = df.iloc[[3, 0, 1, 2]]
    assert _cells(running_agg(shuffled, "user", "t", "v", aggs=["sum"])["v_running_sum"]) == [13.0, 5.0, None, 5.0]
    assert calls == [1]


def test_rolling_agg_matches_pandas_time_rolling_on_distinct_times():
    rng = np.random.default_rng(3)
    n = 500
    df = pd.DataFrame({"user": rng.integers(0, 20, n),
                       "ts": pd.Timestamp("2024-01-01", tz="Europe/Paris")
                       + pd.to_timedelta(rng.permutation(n) * 3600, unit="s"),
                       "amount": rng.integers(0, 100, n).astype(float)})
    out = rolling_agg(df, by="user", time="ts", value="amount", window="7D", aggs=["sum"])
    ordered = df.sort_values("ts")
    reference = ordered.groupby("user").rolling("7D", on="ts")["amount"].sum()
    reference = reference.reset_index(level=0, drop=True).loc[df["ts"]]  # times are distinct
    np.testing.assert_allclose(out["amount_rolling_sum"].to_numpy(dtype=float), reference.to_numpy())


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.integers(0, 10**6)), max_size=30), st.sampled_from(["s", "min"]),
       st.sampled_from(["Europe/Paris", None]))
def test_sessionize_on_timestamps_equals_the_integer_version(seconds, unit, tz):
    ts = pd.Series(pd.to_datetime(pd.Series(seconds, dtype="Int64"), unit="s"))
    df = pd.DataFrame({"user": [i % 4 for i in range(len(seconds))],
                       "ts": ts.dt.tz_localize(tz) if tz else ts,
                       "secs": pd.Series(seconds, dtype="Int64")})
    gap = 90 if unit == "s" else 60 * 90
    by_time = sessionize(df, "user", "ts", f"{90}{unit}")
    by_int = sessionize(df, ["user"], "secs", gap)
    assert _cells(by_time["session"]) == _cells(by_int["session"])


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 2),
                          st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX))), max_size=40))
def test_dedup_latest_equals_pandas_sort_drop_duplicates(rows):
    k1, k2, version = zip(*rows) if rows else ((), (), ())
    df = pd.DataFrame({"k1": pd.Series(list(k1), dtype="str"), "k2": pd.Series(list(k2), dtype="int64"),
                       "version": pd.array(list(version), dtype="Int64"),
                       "payload": np.arange(len(rows))})
    out = dedup_latest(df, by=["k1", "k2"], order_by="version")
    reference = (df.sort_values("version", kind="stable", na_position="first")
                 .drop_duplicates(["k1", "k2"], keep="last").sort_index())
    pd.testing.assert_frame_equal(out, reference)


def test_one_key_many_keys_and_empty_input():
    many = pd.DataFrame({"user": np.arange(1000), "t": np.zeros(1000, dtype=np.int64)})
    assert (sessionize(many, "user", "t", 0)["session"] == 0).all()
    one = pd.DataFrame({"user": [7] * 5, "t": [0, 10, 20, 100, 105]})
    assert sessionize(one, "user", "t", 10)["session"].tolist() == [0, 0, 0, 1, 1]
    empty = one.iloc[:0]
    assert len(running_agg(empty, "user", "t", "t")) == 0
    assert list(rolling_agg(empty, "user", "t", "t", 5).columns) == [
        "user", "t", "t_rolling_sum", "t_rolling_count", "t_rolling_mean"]
    assert len(dedup_latest(empty, "user", "t")) == 0


def test_library_options_are_validated():
    df = pd.DataFrame({"user": [1], "t": [1], "ts": pd.to_datetime(["2024-01-01"])})
    with pytest.raises(ConfigError, match="negative"):
        sessionize(df, "user", "t", -1)
    with pytest.raises(ConfigError, match="duration"):
        sessionize(df, "user", "ts", "soon")
    with pytest.raises(ConfigError, match="closed"):
        rolling_agg(df, "user", "t", "t", 1, closed="middle")
    with pytest.raises(ConfigError, match="median"):
        running_agg(df, "user", "t", "t", aggs=["median"])
    with pytest.raises(ConfigError, match="at least one"):
        sessionize(df, [], "t", 1)
